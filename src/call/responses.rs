//! Responses in a call (RFC 3261 §13.2.2, §13.3.1, §17): the final responses it sends on
//! the caller's INVITE and on relayed server transactions, and the responses it receives on
//! its client transactions — provisional relay, the first 2xx that wins the forked INVITE
//! (ACK, CANCEL the other forks), failures ranked into the caller's final response, and the
//! ACKs (non-2xx ACK within the transaction, 2xx ACK end to end).

use std::time::Instant;

use bytes::Bytes;

use super::core::{
    reliability, Call, CancelState, Failure, LegId, LegState, Phase, Purpose, TxnKey, ALLOW, CALLER,
};
use super::dialog::copy_passthrough_headers;
use super::registry::branch_for;
use crate::sip::{default_reason, Method, SipMessage};
use crate::transaction::{Action, ClientInviteState, Transaction, Uas2xx};

/// Failure ranking for the caller's final response when every fork failed (RFC 3261
/// §16.7 step 6 in spirit): 6xx first, then busy/decline, then the lowest class.
fn failure_rank(code: u16) -> u16 {
    match code {
        600..=699 => 0,
        486 => 1,
        480 => 3,
        408 => 4,
        400..=499 => 2,
        500..=599 => 5,
        _ => 6,
    }
}

impl Call {
    // ------------------------------------------------------------------ caller responses

    /// Sends a final non-2xx to the caller's INVITE (if it is still unanswered) and ends
    /// every other leg.
    pub fn reject_caller(&mut self, code: u16, reason: &str, warning: Option<&str>, now: Instant) {
        self.leave_queue();
        if self.end_reason.is_none() {
            self.end_reason = Some(format!("{code} {reason}"));
        }
        self.phase = Phase::Ending;
        if let Some(key) = self.caller_invite_key() {
            self.respond_server(&key, code, reason, None, now, |b| {
                if let Some(w) = warning {
                    b.header("Warning", w);
                }
            });
        }
        self.set_leg_state(CALLER, LegState::Ended);
        for leg in 1..self.legs.len() {
            self.hang_up_leg(leg, now);
        }
    }

    /// Responds on server transaction `key` with `code`; `body` is relayed SDP already
    /// rewritten for that leg (or another body with its content type).
    pub fn respond_server(
        &mut self,
        key: &TxnKey,
        code: u16,
        reason: &str,
        body: Option<(&str, Bytes)>,
        now: Instant,
        extra: impl FnOnce(&mut crate::sip::MessageBuilder),
    ) {
        let Some(entry) = self.txns.get(key) else {
            return;
        };
        let leg = entry.leg;
        let request = match &entry.purpose {
            Purpose::CallerInvite(r) => r,
            Purpose::Relayed { request, .. } => request,
            _ => return,
        };
        let local_tag = self.legs.get(leg).map(|l| l.dialog.local_tag.clone());
        let dest = request.response_destination();
        let is_invite = request.msg.method() == Some(&Method::Invite);
        let is_update = request.msg.method() == Some(&Method::Update);
        let session = ((is_invite || is_update) && (200..300).contains(&code))
            .then(|| super::session_timer::answer(&request.msg, self.session_policy(), now));
        let cseq = request.msg.cseq().seq;
        let mut b = request.response(code, reason, local_tag.as_deref());
        if is_invite && (101..300).contains(&code) {
            if let Some(l) = self.legs.get(leg) {
                l.dialog.add_contact(&self.ep, &mut b);
            }
        }
        if code >= 200 && is_invite && code < 300 {
            b.header("Allow", ALLOW);
            b.header("Supported", super::liveness::SUPPORTED);
        }
        if let Some((decision, timer)) = session {
            for (name, value) in self.session_uas_2xx(leg, decision, timer, now) {
                b.header(name, &value);
            }
        }
        b.header("Server", &self.ep.user_agent);
        extra(&mut b);
        let bytes = match body {
            Some((ct, body)) => b.body(ct, &body),
            None => b.finish(),
        };
        let Some(entry) = self.txns.get_mut(key) else {
            return;
        };
        let actions = match &mut entry.machine {
            Transaction::ServerInvite(m) => m.respond(code, bytes.clone(), now),
            Transaction::ServerNonInvite(m) => m.respond(code, bytes.clone(), now),
            _ => return,
        };
        let Ok(actions) = actions else { return };
        let terminated = actions.is_terminated();
        self.execute(&dest, actions);
        if terminated {
            self.txns.remove(key);
        } else if code >= 200 {
            if let Some(entry) = self.txns.get_mut(key) {
                // The final response is out: the machine answers retransmissions by itself
                // (Timers L/J, up to 32 s), so the request itself is no longer needed.
                entry.purpose = Purpose::Local;
            }
        }
        if is_invite && (200..300).contains(&code) {
            // RFC 3261 §13.3.1.4: the UAS core retransmits the 2xx until the ACK.
            let retransmit = Uas2xx::new(bytes, reliability(&dest), self.ep.timers, now);
            self.insert_txn(
                TxnKey::Retransmit2xx(leg),
                leg,
                retransmit.into(),
                Purpose::Await2xxAck { cseq },
            );
        }
    }

    // ------------------------------------------------------------------ responses

    /// A response to one of our requests.
    pub fn on_response(&mut self, msg: SipMessage, now: Instant) {
        let Some(branch) = msg.branch() else { return };
        let key = TxnKey::Client(branch.into());
        let cancel_key = if msg.cseq().method == Method::Cancel {
            Some(TxnKey::Client(format!("{branch}-cancel").into()))
        } else {
            None
        };
        let key = cancel_key.unwrap_or(key);
        let Some(status) = msg.status() else { return };
        let Some(entry) = self.txns.get_mut(&key) else {
            // A 2xx retransmitted after our INVITE transaction ended: ACK it again.
            if (200..300).contains(&status) && msg.cseq().method == Method::Invite {
                self.reack(&msg);
            } else {
                self.ep
                    .counters
                    .stray_responses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        };
        let leg = entry.leg;
        let flow = self.legs.get(leg).map(|l| l.dialog.flow);
        // A 2xx retransmitted while the INVITE is already Accepted (RFC 6026 §7.2) only
        // needs the same ACK again (RFC 3261 §13.2.2.4); acting on it twice would start a
        // second bridge, relay a second 200, and so on.
        let retransmitted_2xx = (200..300).contains(&status)
            && matches!(&entry.machine, Transaction::ClientInvite(m) if m.state() == ClientInviteState::Accepted);
        if retransmitted_2xx {
            if let Transaction::ClientInvite(m) = &mut entry.machine {
                let _ = m.on_response(status, now);
            }
            return self.reack(&msg);
        }
        let actions = match &mut entry.machine {
            Transaction::ClientInvite(m) => m.on_response(status, now),
            Transaction::ClientNonInvite(m) => m.on_response(status, now),
            _ => return,
        };
        let Some(flow) = flow else { return };
        let rest = self.execute(&flow, actions);
        let mut terminated = false;
        for action in rest {
            match action {
                Action::PassToTu => self.on_transaction_response(&key, leg, &msg, now),
                Action::BuildAck => self.build_non2xx_ack(&key, leg, &msg, now),
                Action::Terminated => terminated = true,
                Action::Timeout | Action::TransportError | Action::NoAck | Action::Transmit(_) => {}
            }
        }
        if terminated {
            self.txns.remove(&key);
        }
    }

    fn reack(&mut self, msg: &SipMessage) {
        let seq = msg.cseq().seq;
        let found = self.legs.iter().find(|l| {
            l.dialog.call_id == msg.call_id() && l.last_ack.as_ref().is_some_and(|(s, _)| *s == seq)
        });
        if let Some(l) = found {
            if let Some((_, ack)) = &l.last_ack {
                let (flow, ack) = (l.dialog.flow, ack.clone());
                self.send(flow, ack);
            }
        }
    }

    /// RFC 3261 §17.1.1.3: the ACK for a non-2xx final response, built once and handed to
    /// the transaction, which re-sends it for retransmitted responses.
    fn build_non2xx_ack(&mut self, key: &TxnKey, leg: LegId, resp: &SipMessage, now: Instant) {
        let Some(l) = self.legs.get(leg) else { return };
        let (request_uri, branch, cseq) = match (&l.invite, key) {
            (Some(inv), TxnKey::Client(b)) if **b == *inv.branch => {
                (inv.request_uri.clone(), inv.branch.clone(), inv.cseq)
            }
            _ => {
                let TxnKey::Client(b) = key else { return };
                (
                    l.dialog.remote_target.clone(),
                    b.to_string(),
                    resp.cseq().seq,
                )
            }
        };
        let mut d = l.dialog.clone();
        d.remote_tag = resp.to_tag().map(str::to_owned);
        if l.invite.as_ref().is_some_and(|i| i.branch == branch) {
            d.route_set.clear();
        }
        let ack = d
            .request(&self.ep, &Method::Ack, &request_uri, &branch, cseq)
            .finish();
        let flow = d.flow;
        if let Some(entry) = self.txns.get_mut(key) {
            if let Transaction::ClientInvite(m) = &mut entry.machine {
                let actions = m.set_ack(ack, now);
                let terminated = actions.is_terminated();
                self.execute(&flow, actions);
                if terminated {
                    self.txns.remove(key);
                }
            }
        }
    }

    /// Sends the ACK for a 2xx on `leg` (RFC 3261 §13.2.2.4: a new transaction of the UAC
    /// core), with `body` when the offer was in the 2xx.
    pub fn send_2xx_ack(&mut self, leg: LegId, cseq: u32, body: Option<Bytes>) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let branch = branch_for(self.key);
        let target = l.dialog.remote_target.clone();
        let b = l
            .dialog
            .request(&self.ep, &Method::Ack, &target, &branch, cseq);
        let ack = match body {
            Some(sdp) if !sdp.is_empty() => {
                let sdp = l.sdp.apply(&sdp, false);
                b.body("application/sdp", &sdp)
            }
            _ => b.finish(),
        };
        l.last_ack = Some((cseq, ack.clone()));
        let flow = l.dialog.flow;
        self.send(flow, ack);
    }

    fn on_transaction_response(
        &mut self,
        key: &TxnKey,
        leg: LegId,
        msg: &SipMessage,
        now: Instant,
    ) {
        let Some(status) = msg.status() else { return };
        if (200..300).contains(&status)
            && matches!(msg.cseq().method, Method::Invite | Method::Update)
        {
            self.session_uac_2xx(leg, msg, now);
        }
        let purpose = match self.txns.get(key).map(|e| &e.purpose) {
            Some(Purpose::CalleeInvite) => 0,
            Some(Purpose::RelayOut { .. }) => 1,
            Some(Purpose::Bye) => 2,
            Some(Purpose::TransferTarget) => 4,
            Some(Purpose::Keepalive) => {
                if matches!(status, 408 | 481) {
                    self.leg_lost(leg, now);
                }
                return;
            }
            Some(Purpose::SessionRefresh) => {
                if status >= 200 {
                    self.on_session_refresh_response(leg, status, now);
                }
                return;
            }
            Some(Purpose::Notify) => {
                if status >= 200 {
                    self.notify_done(leg, now);
                }
                return;
            }
            Some(Purpose::LocalReinvite(kind)) => {
                let kind = *kind;
                return self.on_local_reinvite_response(leg, kind, msg, status, now);
            }
            _ => 3,
        };
        match purpose {
            0 => self.on_callee_invite_response(leg, msg, status, now),
            1 => self.on_relay_response(key, leg, msg, status, now),
            2 if status >= 200 => self.set_leg_state(leg, LegState::Ended),
            4 => self.on_transfer_target_response(leg, msg, status, now),
            _ => {}
        }
    }

    fn on_callee_invite_response(
        &mut self,
        leg: LegId,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) {
        match status {
            100 => {}
            101..=199 => {
                let cancel_wanted = match self.legs.get_mut(leg) {
                    Some(l) => {
                        if msg.to_tag().is_some() {
                            l.dialog.confirm(msg);
                            if l.state == LegState::Calling {
                                l.state = LegState::Early;
                            }
                        }
                        match l.invite.as_mut() {
                            Some(inv) => {
                                inv.provisional_seen = true;
                                inv.cancel == CancelState::Wanted
                            }
                            None => false,
                        }
                    }
                    None => false,
                };
                if cancel_wanted {
                    self.cancel_leg(leg, now);
                    return;
                }
                if self.phase == Phase::Routing {
                    self.relay_provisional(msg, status, now);
                }
            }
            200..=299 => self.on_callee_answer(leg, msg, now),
            _ => {
                self.set_leg_state(leg, LegState::Ended);
                let reason = msg
                    .reason()
                    .unwrap_or_else(|| default_reason(status))
                    .to_owned();
                self.callee_failed(status, reason, now);
            }
        }
    }

    /// Relays a callee's 18x to the caller (SDP under the caller leg's `o=` line).
    fn relay_provisional(&mut self, msg: &SipMessage, status: u16, now: Instant) {
        let Some(key) = self.caller_invite_key() else {
            return;
        };
        let body = msg.body();
        let body = if body.is_empty() {
            None
        } else {
            self.legs
                .get_mut(CALLER)
                .map(|l| ("application/sdp", l.sdp.apply(&body, false)))
        };
        let reason = msg
            .reason()
            .unwrap_or_else(|| default_reason(status))
            .to_owned();
        self.respond_server(&key, status, &reason, body, now, |b| {
            copy_passthrough_headers(b, msg)
        });
    }

    fn on_callee_answer(&mut self, leg: LegId, msg: &SipMessage, now: Instant) {
        let cseq = msg.cseq().seq;
        if let Some(l) = self.legs.get_mut(leg) {
            l.dialog.confirm(msg);
        }
        // Queue music answering while an agent's offer rings: the agent wins; the music
        // leg is taken and hung up like a second fork.
        let music_late =
            self.legs.get(leg).is_some_and(|l| l.role == "music") && self.queue_offer.is_some();
        let already = self.answered.is_some_and(|a| a != leg) || music_late;
        if already || self.phase == Phase::Ending {
            // A second fork answered, or the caller left meanwhile: take the 2xx and end the
            // leg (RFC 3261 §13.2.2.4).
            self.set_leg_state(leg, LegState::Confirmed);
            self.send_2xx_ack(leg, cseq, None);
            self.send_bye(
                leg,
                Some("SIP;cause=200;text=\"Call completed elsewhere\""),
                now,
            );
            return;
        }
        if self.answered == Some(leg) {
            return;
        }
        self.answered = Some(leg);
        self.bridge = Some((CALLER, leg));
        self.arm_keepalive(now);
        if let Some(agent) = self.queue_offer.take() {
            self.ep.queue_offer_answered(self.key, &agent);
            if let Some(q) = self.queued.take() {
                self.via_queue = Some(q.clone());
                self.queue_left(q, "answered");
            }
        }
        self.phase = Phase::Connected;
        self.ring_deadline = None;
        self.set_leg_state(leg, LegState::Confirmed);
        let caller_offered = match self.caller_invite_purpose() {
            Some(Purpose::CallerInvite(req)) => !req.msg.body().is_empty(),
            _ => true,
        };
        if caller_offered {
            self.send_2xx_ack(leg, cseq, None);
        } else {
            // Late offer (RFC 3725 flow I): the answer comes in the caller's ACK.
            self.pending_ack = Some((leg, cseq));
        }
        for other in 1..self.legs.len() {
            if other != leg {
                if let Some(inv) = self.legs.get_mut(other).and_then(|l| l.invite.as_mut()) {
                    inv.answered_elsewhere = true;
                }
                self.cancel_leg(other, now);
            }
        }
        let Some(key) = self.caller_invite_key() else {
            return;
        };
        let body = msg.body();
        let body = if body.is_empty() {
            None
        } else {
            self.legs
                .get_mut(CALLER)
                .map(|l| ("application/sdp", l.sdp.apply(&body, false)))
        };
        let reason = msg.reason().unwrap_or("OK").to_owned();
        self.respond_server(&key, 200, &reason, body, now, |b| {
            copy_passthrough_headers(b, msg)
        });
        self.set_leg_state(CALLER, LegState::Confirmed);
        tracing::info!(call = self.key, callee_leg = leg, "call answered");
        if self.legs.get(leg).is_some_and(|l| l.role == "music") {
            self.start_queue_music(leg, now);
        }
        let agent = self.legs.get(leg).and_then(|l| l.agent.clone());
        self.publish(|| crate::events::Event::CallAnswered {
            call_id: self.call_id(),
            agent,
        });
    }

    pub(super) fn callee_failed(&mut self, code: u16, reason: String, now: Instant) {
        let better = self
            .best_failure
            .as_ref()
            .is_none_or(|f| failure_rank(code) < failure_rank(f.code));
        if better {
            self.best_failure = Some(Failure { code, reason });
        }
        let ringing = self
            .legs
            .iter()
            .skip(1)
            .any(|l| matches!(l.state, LegState::Calling | LegState::Early));
        if !ringing && self.phase == Phase::Routing {
            if let Some(agent) = self.queue_offer.take() {
                // A queue offer failed: the call goes back to the head of its queue.
                self.best_failure = None;
                return self.ep.queue_offer_failed(
                    self.key,
                    &agent,
                    super::queueing::offer_failure(code),
                );
            }
            let f = self.best_failure.clone().unwrap_or(Failure {
                code: 480,
                reason: "Temporarily Unavailable".into(),
            });
            let code = if (300..400).contains(&f.code) || f.code == 401 || f.code == 407 {
                480
            } else {
                f.code
            };
            self.reject_caller(code, &f.reason, None, now);
        }
    }
}
