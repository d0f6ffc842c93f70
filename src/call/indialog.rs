//! Requests that reach a call: retransmissions and CANCEL of the caller's INVITE, ACKs, and
//! requests inside a dialog (RFC 3261 §12.2.2), which handover answers itself (BYE,
//! OPTIONS) or relays to the bridged leg (re-INVITE, UPDATE, INFO, MESSAGE) with the SDP
//! rewritten under that leg's own `o=` line.
//!
//! Glare (RFC 3261 §14.2): a re-INVITE while another INVITE transaction is open on either
//! bridged leg is answered 491, so no offer is ever lost or crossed.

use std::time::Instant;

use super::core::{Call, LegId, LegState, Purpose, TxnKey, ALLOW, CALLER};
use super::dialog::copy_passthrough_headers;
use super::registry::branch_for;
use crate::incoming::IncomingRequest;
use crate::sip::{Method, SipMessage};
use crate::transaction::{
    Action, ClientInvite, ClientNonInvite, Reliability, ServerInvite, ServerNonInvite, Transaction,
};
use crate::transport::Protocol;

fn reliability(p: Protocol) -> Reliability {
    match p {
        Protocol::Udp => Reliability::Unreliable,
        Protocol::Tcp => Reliability::Reliable,
    }
}

fn server_key(leg: LegId, msg: &SipMessage, invite: bool) -> TxnKey {
    let branch = match msg.branch() {
        Some(b) => b.into(),
        // RFC 2543 peers without a magic-cookie branch: key on CSeq number instead.
        None => format!("cseq-{}", msg.cseq().seq).into(),
    };
    TxnKey::Server {
        leg,
        branch,
        invite,
    }
}

impl Call {
    /// A request for this call.
    pub fn on_request(&mut self, req: IncomingRequest, now: Instant) {
        let Some(method) = req.msg.method().cloned() else {
            return;
        };
        let Some(leg) = self.leg_for_request(&req.msg) else {
            if method != Method::Ack {
                self.reply_stateless(&req, 481, "Call/Transaction Does Not Exist");
            }
            return;
        };
        match method {
            Method::Ack => self.on_ack(leg, req, now),
            Method::Cancel => self.on_cancel(leg, req, now),
            _ => {
                let key = server_key(leg, &req.msg, method == Method::Invite);
                if let Some(entry) = self.txns.get_mut(&key) {
                    // A retransmission: the transaction answers it, the TU never sees it.
                    let actions = match &mut entry.machine {
                        Transaction::ServerInvite(m) => m.on_request(),
                        Transaction::ServerNonInvite(m) => m.on_request(),
                        _ => return,
                    };
                    let dest = req.response_destination();
                    self.execute(&dest, actions);
                    return;
                }
                if req.msg.to_tag().is_none() {
                    // An initial INVITE with our caller's identifiers but a new branch: a
                    // merged request (RFC 3261 §8.2.2.2).
                    self.reply_stateless(&req, 482, "Loop Detected");
                    return;
                }
                self.on_new_request(leg, key, method, req, now);
            }
        }
    }

    /// Answers `req` without a transaction (a request that matched nothing here).
    pub fn reply_stateless(&mut self, req: &IncomingRequest, code: u16, reason: &str) {
        let mut b = req.response(code, reason, None);
        b.header("Server", &self.ep.user_agent);
        let bytes = b.finish();
        self.send(req.response_destination(), bytes);
    }

    fn on_ack(&mut self, leg: LegId, req: IncomingRequest, now: Instant) {
        // The ACK of a non-2xx final response belongs to the INVITE server transaction.
        let key = server_key(leg, &req.msg, true);
        if let Some(entry) = self.txns.get_mut(&key) {
            if let Transaction::ServerInvite(m) = &mut entry.machine {
                let actions = m.on_ack(now);
                let dest = req.response_destination();
                let rest = self.execute(&dest, actions);
                if rest.contains(&Action::Terminated) {
                    self.txns.remove(&key);
                }
                if !rest.contains(&Action::PassToTu) {
                    return;
                }
            }
        }
        // The ACK for a 2xx: stop retransmitting it.
        let rkey = TxnKey::Retransmit2xx(leg);
        let acked = match self.txns.get_mut(&rkey) {
            Some(entry) => match (&mut entry.machine, &entry.purpose) {
                (Transaction::Uas2xx(m), Purpose::Await2xxAck { cseq })
                    if *cseq == req.msg.cseq().seq =>
                {
                    let _ = m.ack_received();
                    true
                }
                _ => false,
            },
            None => false,
        };
        if acked {
            self.txns.remove(&rkey);
        }
        // A late offer's answer travels on to the leg that made the offer in its 2xx.
        if let Some((other, cseq)) = self.pending_ack {
            if other != leg && acked {
                self.pending_ack = None;
                let body = req.msg.body();
                self.send_2xx_ack(other, cseq, Some(body));
            }
        }
    }

    fn on_cancel(&mut self, leg: LegId, req: IncomingRequest, now: Instant) {
        let invite_key = server_key(leg, &req.msg, true);
        let Some(entry) = self.txns.get(&invite_key) else {
            self.reply_stateless(&req, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let unanswered = matches!(&entry.machine, Transaction::ServerInvite(m)
            if m.state() == crate::transaction::ServerInviteState::Proceeding);
        let is_caller_invite = matches!(entry.purpose, Purpose::CallerInvite(_));
        // The CANCEL is a transaction of its own, answered 200 (RFC 3261 §9.2).
        let cancel_key = server_key(leg, &req.msg, false);
        let dest = req.response_destination();
        let mut machine = ServerNonInvite::new(reliability(dest.protocol), self.ep.timers);
        let tag = self.legs.get(leg).map(|l| l.dialog.local_tag.clone());
        let mut b = req.response(200, "OK", tag.as_deref());
        b.header("Server", &self.ep.user_agent);
        if let Ok(actions) = machine.respond(200, b.finish(), now) {
            self.execute(&dest, actions);
        }
        self.insert_txn(cancel_key, leg, machine.into(), Purpose::Local);
        if unanswered && is_caller_invite {
            tracing::info!(call = self.key, "caller cancelled");
            self.end_reason
                .get_or_insert_with(|| "caller cancelled".into());
            self.reject_caller(487, "Request Terminated", None, now);
        } else if unanswered {
            self.respond_server(&invite_key, 487, "Request Terminated", None, now, |_| {});
        }
    }

    fn on_new_request(
        &mut self,
        leg: LegId,
        key: TxnKey,
        method: Method,
        req: IncomingRequest,
        now: Instant,
    ) {
        // CSeq must grow within a dialog (RFC 3261 §12.2.2).
        let seq = req.msg.cseq().seq;
        if let Some(l) = self.legs.get_mut(leg) {
            if l.dialog.remote_cseq.is_some_and(|r| seq <= r) {
                self.reply_stateless(&req, 500, "CSeq Out of Order");
                return;
            }
            l.dialog.remote_cseq = Some(seq);
        }
        match method {
            Method::Bye => self.on_bye(leg, key, req, now),
            Method::Options => self.answer_local(leg, key, &req, 200, "OK", now),
            Method::Invite => self.on_reinvite(leg, key, req, now),
            // A body-less UPDATE changes nothing for the other leg: it is this leg's session
            // refresh (RFC 4028 §9), answered here.
            Method::Update if req.msg.body().is_empty() => {
                self.answer_local(leg, key, &req, 200, "OK", now)
            }
            Method::Update | Method::Info | Method::Message => self.relay(leg, key, req, now),
            Method::Refer => self.on_refer(leg, key, req, now),
            Method::Prack | Method::Subscribe | Method::Notify | Method::Publish => {
                self.answer_local(leg, key, &req, 501, "Not Implemented", now)
            }
            _ => self.answer_local(leg, key, &req, 501, "Not Implemented", now),
        }
    }

    /// Answers a request on `leg` ourselves, through a server transaction.
    fn answer_local(
        &mut self,
        leg: LegId,
        key: TxnKey,
        req: &IncomingRequest,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        let dest = req.response_destination();
        let mut b = req.response(code, reason, None);
        b.header("Server", &self.ep.user_agent);
        if req.msg.method() == Some(&Method::Update) && (200..300).contains(&code) {
            let (decision, timer) =
                super::session_timer::answer(&req.msg, self.session_policy(), now);
            for (name, value) in self.session_uas_2xx(leg, decision, timer, now) {
                b.header(name, &value);
            }
        }
        if req.msg.method() == Some(&Method::Options) || code == 501 || code == 405 {
            b.header("Allow", ALLOW);
            b.header("Accept", "application/sdp");
            b.header("Supported", super::liveness::SUPPORTED);
        }
        let mut machine = ServerNonInvite::new(reliability(dest.protocol), self.ep.timers);
        if let Ok(actions) = machine.respond(code, b.finish(), now) {
            self.execute(&dest, actions);
        }
        self.insert_txn(key, leg, machine.into(), Purpose::Local);
    }

    fn on_bye(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        self.answer_local(leg, key, &req, 200, "OK", now);
        // A BYE ends any 2xx retransmission on the leg (RFC 3261 §15.1.2 allows BYE before
        // the ACK; the ACK is then moot).
        self.txns.remove(&TxnKey::Retransmit2xx(leg));
        self.set_leg_state(leg, LegState::Ended);
        if self.transfer_bye(leg, &req, now) {
            return;
        }
        if self.bridge.is_some() && self.peer_of(leg).is_none() {
            // A leg outside the bridge (an agent released by a transfer, whose BYE crossed
            // ours): only that leg ends.
            return;
        }
        let who = if leg == CALLER {
            "caller hung up"
        } else {
            "callee hung up"
        };
        tracing::info!(call = self.key, leg, "{who}");
        self.end_call(who, leg, now);
    }

    /// A re-INVITE on a bridged leg: relayed to the peer leg unless an INVITE is already
    /// open on either (491, RFC 3261 §14.2).
    fn on_reinvite(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        let peer = self.peer_of(leg);
        let glare =
            self.invite_in_progress(leg) || peer.is_some_and(|p| self.invite_in_progress(p));
        let peer_ready = peer.is_some_and(|p| {
            self.legs
                .get(p)
                .is_some_and(|l| l.state == LegState::Confirmed)
        });
        let dest = req.response_destination();
        let trying = req.response(100, "Trying", None).finish();
        let (machine, actions) =
            ServerInvite::new(trying, reliability(dest.protocol), self.ep.timers);
        self.execute(&dest, actions);
        let body = req.msg.body();
        let sdp_error = if body.is_empty() {
            None
        } else {
            crate::sdp::check(&body).err()
        };
        if let Some(l) = self.legs.get_mut(leg) {
            l.dialog.refresh_target(&req.msg);
        }
        self.insert_txn(
            key.clone(),
            leg,
            machine.into(),
            Purpose::Relayed {
                request: Box::new(req),
                client: None,
            },
        );
        if glare {
            self.respond_server(&key, 491, "Request Pending", None, now, |_| {});
            return;
        }
        if let Some(e) = sdp_error {
            let warning = e.warning_value();
            self.respond_server(&key, 488, "Not Acceptable Here", None, now, |b| {
                b.header("Warning", &warning);
            });
            return;
        }
        match peer {
            Some(peer) if peer_ready => self.relay_out(leg, peer, &key, now),
            _ => self.respond_server(&key, 491, "Request Pending", None, now, |_| {}),
        }
    }

    /// A non-INVITE request relayed to the bridged leg (UPDATE, INFO, MESSAGE).
    fn relay(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        let peer = self.peer_of(leg).filter(|p| {
            self.legs
                .get(*p)
                .is_some_and(|l| l.state == LegState::Confirmed)
        });
        let dest = req.response_destination();
        let machine = ServerNonInvite::new(reliability(dest.protocol), self.ep.timers);
        self.insert_txn(
            key.clone(),
            leg,
            machine.into(),
            Purpose::Relayed {
                request: Box::new(req),
                client: None,
            },
        );
        match peer {
            Some(peer) => self.relay_out(leg, peer, &key, now),
            None => self.respond_server(
                &key,
                481,
                "Call/Transaction Does Not Exist",
                None,
                now,
                |_| {},
            ),
        }
    }

    /// Sends the request of server transaction `server` on leg `to`.
    pub(super) fn relay_out(&mut self, _from: LegId, to: LegId, server: &TxnKey, now: Instant) {
        let Some(Purpose::Relayed { request, .. }) = self.txns.get(server).map(|e| &e.purpose)
        else {
            return;
        };
        let msg = request.msg.clone();
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if msg.max_forwards().ok().flatten() == Some(0) {
            self.respond_server(server, 483, "Too Many Hops", None, now, |_| {});
            return;
        }
        let session = if matches!(method, Method::Invite | Method::Update) {
            self.session_request_headers(to)
        } else {
            Vec::new()
        };
        let Some(l) = self.legs.get_mut(to) else {
            return;
        };
        let branch = branch_for(self.key);
        let flow = l.dialog.flow;
        let mut b = l.dialog.next_request(&self.ep, &method, &branch);
        copy_passthrough_headers(&mut b, &msg);
        for (name, value) in &session {
            b.header(name, value);
        }
        b.header("User-Agent", &self.ep.user_agent);
        let body = msg.body();
        let offer_in_request = !body.is_empty();
        let bytes = if body.is_empty() {
            b.finish()
        } else {
            let content_type = msg
                .content_type()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            if is_sdp(&content_type) {
                let sdp = l.sdp.apply(&body, false);
                b.body(&content_type, &sdp)
            } else {
                b.body(&content_type, &body)
            }
        };
        let client = TxnKey::Client(branch.into());
        let machine: Transaction = if method == Method::Invite {
            let (m, actions) =
                ClientInvite::new(bytes, reliability(flow.protocol), self.ep.timers, now);
            self.execute(&flow, actions);
            m.into()
        } else {
            let (m, actions) =
                ClientNonInvite::new(bytes, reliability(flow.protocol), self.ep.timers, now);
            self.execute(&flow, actions);
            m.into()
        };
        self.insert_txn(
            client.clone(),
            to,
            machine,
            Purpose::RelayOut {
                server: server.clone(),
                offer_in_request,
            },
        );
        if let Some(entry) = self.txns.get_mut(server) {
            if let Purpose::Relayed { client: c, .. } = &mut entry.purpose {
                *c = Some(client);
            }
        }
    }

    /// A final (or provisional) response to a relayed request: answer the original.
    pub(super) fn on_relay_response(
        &mut self,
        key: &TxnKey,
        leg: LegId,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) {
        let Some(Purpose::RelayOut {
            server,
            offer_in_request,
        }) = self.txns.get(key).map(|e| &e.purpose)
        else {
            return;
        };
        let (server, offer_in_request) = (server.clone(), *offer_in_request);
        if status < 200 {
            return;
        }
        let is_invite = msg.cseq().method == Method::Invite;
        let server_leg = self.txns.get(&server).map(|e| e.leg);
        if is_invite && (200..300).contains(&status) {
            if let Some(l) = self.legs.get_mut(leg) {
                l.dialog.refresh_target(msg);
            }
            let cseq = msg.cseq().seq;
            if offer_in_request {
                self.send_2xx_ack(leg, cseq, None);
            } else {
                self.pending_ack = Some((leg, cseq));
            }
        }
        let body = msg.body();
        let body = match (body.is_empty(), server_leg) {
            (false, Some(sl)) => {
                let ct = msg
                    .content_type()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                if is_sdp(&ct) {
                    self.legs
                        .get_mut(sl)
                        .map(|l| (l.sdp.apply(&body, false), ct))
                } else {
                    Some((body, ct))
                }
            }
            _ => None,
        };
        let reason = msg.reason().unwrap_or("").to_owned();
        let reason = if reason.is_empty() {
            crate::sip::default_reason(status).to_owned()
        } else {
            reason
        };
        match body {
            Some((b, ct)) => {
                self.respond_server(&server, status, &reason, Some((&ct, b)), now, |bld| {
                    copy_passthrough_headers(bld, msg)
                })
            }
            None => self.respond_server(&server, status, &reason, None, now, |bld| {
                copy_passthrough_headers(bld, msg)
            }),
        }
        if let Some(new) = server_leg.filter(|l| self.replacing.is_some_and(|r| r.0 == *l)) {
            self.replacement_answered(new, status, now);
        }
        // A 481 or 408 to an in-dialog request ends the dialog (RFC 3261 §12.2.1.2).
        if matches!(status, 408 | 481) {
            self.set_leg_state(leg, LegState::Ended);
            self.end_call("peer lost the dialog", leg, now);
        }
    }
}

fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}
