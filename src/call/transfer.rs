//! Transfers inside a call (DESIGN.md §3): a REFER from the agent's phone (RFC 3515) picks a
//! type and target ([`crate::transfer::select`]), the policy table decides when the agent's
//! leg is released and what happens on failure ([`crate::transfer::decide`]), and this file
//! carries it out with re-INVITE bridging (RFC 3725 flow: late offer to the target, its
//! offer re-INVITEd to the customer, the customer's answer in the target's ACK).
//!
//! ```text
//!  agent: REFER ──► 202, NOTIFY 100        customer: re-INVITE sendonly (hold) ──► 200 ─ ACK
//!  target: INVITE (no SDP) ─► 180 (NOTIFY 180) ─► 200 + offer
//!  customer: re-INVITE with the target's offer ─► 200 + answer ─ ACK;  target: ACK + answer
//!  release moment of the type (policy): NOTIFY 200 (terminated), BYE to the agent
//!  failure: NOTIFY <status>; success/conversation: customer un-held, back with the agent;
//!           release (or agent gone): customer released with a Reason header
//!  hang-up: IVR answered ─► NOTIFY 200, agent `waiting`; IVR BYE/REFER ─► INVITE the agent
//!           again (late offer), bridge the customer to it, agent `talking`
//! ```
//!
//! Rule 7: the agent's BYE after the 202 never costs the customer — the transfer goes on as
//! a release transfer. Rule 8: the NOTIFY 200 goes out exactly at the type's release moment.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{Call, LegId, LegState, Purpose, TxnKey};
use super::dialog::Dialog;
use super::registry::{branch_for, call_id_for, tag_for};
use crate::config::{Target, TransferType};
use crate::events::Event;
use crate::incoming::IncomingRequest;
use crate::sdp::{set_direction, Direction as SdpDirection, LegSdpOrigin};
use crate::sip::{HeaderName, Method, SipMessage};
use crate::transaction::{ClientInvite, ClientNonInvite, Reliability};
use crate::transfer::{
    decide, select, warning_header_value, FailurePath, History, Policy, ReleaseMoment,
    Request as PolicyRequest, TargetKind,
};
use crate::transport::Protocol;

/// The Reason of the BYE that releases a transferring agent.
const TRANSFERRED: &str = "SIP;cause=200;text=\"Call transferred\"";

/// Which re-INVITE handover itself sent to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reinvite {
    /// Hold the customer while the target rings (`a=sendonly`).
    Hold,
    /// Give the customer the target's offer.
    Bridge,
    /// Take the customer off hold, back to the agent (`a=sendrecv`).
    Unhold,
    /// A re-INVITE without SDP: the leg's answer is a fresh offer (RFC 3725 flow IV), whose
    /// answer travels in our ACK.
    FetchOffer,
    /// The fresh offer of another leg delivered to this one.
    Deliver,
    /// An RFC 4028 session refresh, offering the SDP last sent on the leg again.
    Refresh,
}

/// What a re-bridge (fresh offer from one leg delivered to another) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Conversation transfer completed by the agent: customer ↔ target.
    CompleteConversation,
    /// The consulted target hung up: customer ↔ agent again.
    BackToAgent,
    /// Attended transfer (REFER with Replaces): the customer ↔ the other call's party.
    CompleteAttended,
}

/// A re-bridge in progress: `offerer` is asked for a fresh offer, then it goes to `answerer`.
#[derive(Debug, Clone)]
pub struct Rebridge {
    pub offerer: LegId,
    pub answerer: LegId,
    pub goal: Goal,
    /// The offerer's 2xx (CSeq, offer), once it came.
    pub offer: Option<(u32, Bytes)>,
}

/// Where a running transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The target (or, for a hang-up transfer's return, the agent) is being called.
    Calling,
    /// The target answered; the customer is being re-INVITEd with its offer.
    Bridging,
    /// Hang-up transfer: the customer is with the IVR flow, the agent reserved.
    WithIvr,
    /// Conversation transfer: the agent talks to the target, the customer is held.
    Consulting,
}

/// One transfer in progress.
#[derive(Debug)]
pub struct TransferRun {
    pub kind: TransferType,
    pub policy: Policy,
    pub target: Target,
    pub agent_leg: LegId,
    pub customer_leg: LegId,
    pub target_leg: Option<LegId>,
    /// The leg whose REFER subscription gets NOTIFYs (`None`: `Refer-Sub: false`, already
    /// terminated, or the agent is gone).
    pub notify: Option<LegId>,
    pub hold_pending: bool,
    /// The target's 2xx (CSeq, offer) waiting for the bridge.
    pub target_offer: Option<(u32, Bytes)>,
    pub agent_gone: bool,
    pub agent_id: Option<String>,
    pub stage: Stage,
    pub ringing_notified: bool,
    pub ring_deadline: Option<Instant>,
    /// A re-INVITE answered 491, to send again at this time (RFC 3261 §14.1).
    pub retry: Option<(Instant, LegId, Reinvite)>,
    /// Released the agent already (NOTIFY 200 + BYE sent).
    pub agent_released: bool,
    /// A re-bridge in progress (conversation transfer completion or roll-back).
    pub rebridge: Option<Rebridge>,
}

impl TransferRun {
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.ring_deadline, self.retry.map(|r| r.0)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Where a transfer request came from: a REFER (with its subscription and Referred-By) or
/// the control API (neither).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub notify: bool,
    pub referred_by: Option<String>,
}

/// `%XX` escapes of a URI user part decoded (a REFER may carry `%2A1` for `*1`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reliability(p: Protocol) -> Reliability {
    match p {
        Protocol::Udp => Reliability::Unreliable,
        Protocol::Tcp => Reliability::Reliable,
    }
}

impl Call {
    /// REFER inside a dialog of this call (RFC 3515).
    pub(super) fn on_refer(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        // The IVR flow of a hang-up transfer returning the call by REFER.
        if let Some(t) = &self.transfer {
            if t.stage == Stage::WithIvr && t.target_leg == Some(leg) {
                return self.ivr_refer(leg, key, req, now);
            }
        }
        let is_ivr_leg = self.legs.get(leg).is_some_and(|l| l.role == "ivr");
        if is_ivr_leg && self.transfer.is_none() {
            return self.ivr_sends_on(leg, key, req, now);
        }
        let is_agent_leg = self.legs.get(leg).is_some_and(|l| l.agent.is_some());
        if !is_agent_leg {
            return self.refuse_refer(
                leg,
                key,
                req,
                403,
                "only an agent can transfer this call",
                now,
            );
        }
        if self.transfer.is_some() {
            return self.answer_with(leg, key, req, (491, "Request Pending"), None, now);
        }
        let customer_leg = match self.peer_of(leg) {
            Some(c)
                if self
                    .legs
                    .get(c)
                    .is_some_and(|l| l.state == LegState::Confirmed) =>
            {
                c
            }
            _ => {
                return self.refuse_refer(leg, key, req, 403, "no connected call to transfer", now)
            }
        };
        let refer_to = match req.msg.refer_to() {
            Ok(Some(r)) => r,
            _ => return self.answer_with(leg, key, req, (400, "Bad Refer-To"), None, now),
        };
        if let Ok(Some(replaces)) = refer_to.uri.replaces() {
            // Attended transfer: the agent consulted the target on a call of its own.
            let origin = Origin {
                notify: !req
                    .msg
                    .header(HeaderName::ReferSub)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
                referred_by: None,
            };
            self.answer_with(leg, key, req, (202, "Accepted"), None, now);
            return self.start_attended(leg, customer_leg, replaces, origin, now);
        }
        let user = percent_decode(refer_to.uri.user_str());
        // `transfer=` as a URI parameter (`<sip:x;transfer=success>`) or, when a phone sends
        // the Refer-To without angle brackets (pjsua copies the dialled string as is), as a
        // header parameter (RFC 3261 §20: there it belongs to the header).
        let param = refer_to
            .uri
            .param("transfer")
            .flatten()
            .or_else(|| refer_to.param("transfer").flatten())
            .map(str::to_owned);
        let config = self.ep.config();
        let selection = match select(&config, &user, param.as_deref(), None) {
            Ok(s) => s,
            Err(e) => {
                let w = e.warning_header_value();
                return self.answer_with(leg, key, req, (403, "Forbidden"), Some(w), now);
            }
        };
        let Some(kind) = TargetKind::of(&config, &selection.target) else {
            return self.refuse_refer(leg, key, req, 403, "transfer target is not configured", now);
        };
        let direction = match self.caller {
            super::Caller::Customer { .. } => crate::transfer::Direction::Inbound,
            super::Caller::Agent { .. } => crate::transfer::Direction::AgentOutbound,
        };
        let request = PolicyRequest {
            transfer: selection.transfer,
            target: kind,
            direction,
            history: History {
                customer_left_during_conversation: self.customer_left_during_conversation,
                from_ivr: false,
            },
        };
        let policy = match decide(&request, config.transfer.agent_hangup_during_conversation) {
            Ok(p) => p,
            Err(refusal) => {
                let outcome = format!("refused:{}", refusal.rule);
                self.log_transfer(
                    selection.transfer.as_str(),
                    &selection.target.to_string(),
                    outcome.clone(),
                );
                self.transfer_outcome(&outcome);
                let w = refusal.warning_header_value();
                return self.answer_with(leg, key, req, (403, "Forbidden"), Some(w), now);
            }
        };

        let wants_notify = !req
            .msg
            .header(HeaderName::ReferSub)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        let referred_by = req
            .msg
            .header(HeaderName::ReferredBy)
            .map(|v| v.into_owned());
        self.answer_with(leg, key, req, (202, "Accepted"), None, now);
        let origin = Origin {
            notify: wants_notify,
            referred_by,
        };
        self.begin_transfer(leg, customer_leg, selection, policy, origin, now);
    }

    /// Carries out a transfer that passed the policy (from a REFER or the control API).
    fn begin_transfer(
        &mut self,
        leg: LegId,
        customer_leg: LegId,
        selection: crate::transfer::Selection,
        policy: Policy,
        origin: Origin,
        now: Instant,
    ) {
        let Origin {
            notify: wants_notify,
            referred_by,
        } = origin;
        let agent_id = self.legs.get(leg).and_then(|l| l.agent.clone());
        tracing::info!(
            call = self.key,
            transfer = selection.transfer.as_str(),
            target = %selection.target,
            "transfer started"
        );
        self.transfer = Some(TransferRun {
            kind: selection.transfer,
            policy,
            target: selection.target.clone(),
            agent_leg: leg,
            customer_leg,
            target_leg: None,
            notify: wants_notify.then_some(leg),
            hold_pending: false,
            target_offer: None,
            agent_gone: false,
            agent_id,
            stage: Stage::Calling,
            ringing_notified: false,
            ring_deadline: None,
            retry: None,
            agent_released: false,
            rebridge: None,
        });
        let (tt, tg) = (
            selection.transfer.as_str().to_owned(),
            selection.target.to_string(),
        );
        self.log_transfer(&tt, &tg, "pending".into());
        self.publish(Event::TransferStarted {
            call_id: self.call_id(),
            transfer_type: tt,
            target: tg,
        });
        self.notify("SIP/2.0 100 Trying", false, now);
        let presented = self
            .legs
            .get(customer_leg)
            .map(|l| l.dialog.remote_party.clone())
            .unwrap_or_default();
        let customer_identity =
            matches!(self.caller, super::Caller::Customer { .. }).then(|| presented.clone());
        let target = match crate::cc::dialplan::call_target(
            &self.ep,
            &selection.target,
            presented,
            customer_identity,
            true,
            now,
        ) {
            Ok(t) => t,
            Err(refuse) => {
                let line = format!("SIP/2.0 {} {}", refuse.code, refuse.reason);
                self.notify(&line, true, now);
                self.transfer = None;
                return;
            }
        };
        if let Target::Queue(queue) = &selection.target {
            // The queue admits the call or refuses it; the offered agent becomes the target.
            if let Err(refused) = self.ep.queue_join(queue, self.key) {
                let (code, reason) = super::queueing::refusal_response(&refused);
                self.notify(&format!("SIP/2.0 {code} {reason}"), true, now);
                self.transfer = None;
                return;
            }
            self.queued = Some(queue.clone());
            if policy.release == ReleaseMoment::QueueAdmitted {
                self.release_agent(now);
            }
            if policy.hold_customer {
                self.hold_customer(now);
            }
            return;
        }
        if policy.release == ReleaseMoment::Immediately {
            // Release transfer: handover has taken the call over (rule 8).
            self.release_agent(now);
        }
        if policy.hold_customer {
            self.hold_customer(now);
        }
        self.call_transfer_target(&target, referred_by.as_deref(), now);
    }

    /// Answers a REFER with 403 and a Warning; the call stays as it was.
    fn refuse_refer(
        &mut self,
        leg: LegId,
        key: TxnKey,
        req: IncomingRequest,
        code: u16,
        why: &str,
        now: Instant,
    ) {
        let w = warning_header_value(why);
        self.answer_with(leg, key, req, (code, "Forbidden"), Some(w), now);
    }

    /// Answers `req` through a server transaction, with an optional Warning.
    pub(super) fn answer_with(
        &mut self,
        leg: LegId,
        key: TxnKey,
        req: IncomingRequest,
        (code, reason): (u16, &str),
        warning: Option<String>,
        now: Instant,
    ) {
        let dest = req.response_destination();
        let mut b = req.response(code, reason, None);
        b.header("Server", &self.ep.user_agent);
        if let Some(w) = &warning {
            b.header("Warning", w);
        }
        if code == 202
            && req
                .msg
                .header(HeaderName::ReferSub)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            // RFC 4488 §4: the 202 says the subscription was suppressed.
            b.header("Refer-Sub", "false");
        }
        let mut machine =
            crate::transaction::ServerNonInvite::new(reliability(dest.protocol), self.ep.timers);
        if let Ok(actions) = machine.respond(code, b.finish(), now) {
            self.execute(&dest, actions);
        }
        self.insert_txn(key, leg, machine.into(), Purpose::Local);
    }

    /// NOTIFY with a `message/sipfrag` status line on the REFER's subscription (RFC 3515
    /// §2.4.5); `terminated` ends the subscription.
    pub(super) fn notify(&mut self, status_line: &str, terminated: bool, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let Some(leg) = t.notify else { return };
        if terminated {
            t.notify = None;
        }
        // One NOTIFY at a time per subscription, so the agent sees the progress in order
        // even when a datagram is lost (RFC 6665 §4.2.2).
        let in_flight = self.txns.values().any(|e| {
            e.leg == leg
                && matches!(e.purpose, Purpose::Notify)
                && super::core::txn_active(&e.machine)
        });
        if in_flight {
            self.notify_queue
                .push_back((leg, status_line.to_owned(), terminated));
            return;
        }
        self.send_notify(leg, status_line, terminated, now);
    }

    /// The previous NOTIFY on `leg` got its final response (or timed out): send the next,
    /// or the BYE that waited for the last one.
    pub(super) fn notify_done(&mut self, leg: LegId, now: Instant) {
        if let Some(pos) = self.notify_queue.iter().position(|n| n.0 == leg) {
            if let Some((leg, line, terminated)) = self.notify_queue.remove(pos) {
                self.send_notify(leg, &line, terminated, now);
            }
        } else if self.bye_after_notify == Some(leg) {
            self.bye_after_notify = None;
            if self
                .legs
                .get(leg)
                .is_some_and(|l| l.state == LegState::Confirmed)
            {
                self.send_bye(leg, Some(TRANSFERRED), now);
            }
        }
    }

    fn send_notify(&mut self, leg: LegId, status_line: &str, terminated: bool, now: Instant) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.state != LegState::Confirmed {
            return;
        }
        let branch = branch_for(self.key);
        let flow = l.dialog.flow;
        let mut b = l.dialog.next_request(&self.ep, &Method::Notify, &branch);
        b.header("Event", "refer");
        b.header(
            "Subscription-State",
            if terminated {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        b.header("User-Agent", &self.ep.user_agent);
        let bytes = b.body(
            "message/sipfrag;version=2.0",
            format!("{status_line}\r\n").as_bytes(),
        );
        let (machine, actions) =
            ClientNonInvite::new(bytes, reliability(flow.protocol), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            leg,
            machine.into(),
            Purpose::Notify,
        );
    }

    /// The agent's release moment: NOTIFY 200 (terminated) and BYE its leg.
    pub(super) fn release_agent(&mut self, now: Instant) {
        self.transfer_released("policy");
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.agent_released {
            return;
        }
        t.agent_released = true;
        let agent_leg = t.agent_leg;
        let gone = t.agent_gone;
        self.notify("SIP/2.0 200 OK", true, now);
        if !gone
            && self
                .legs
                .get(agent_leg)
                .is_some_and(|l| l.state == LegState::Confirmed)
        {
            if self.notify_queue.iter().any(|n| n.0 == agent_leg) {
                // The final NOTIFY is still queued: the BYE follows it, never overtakes it.
                self.bye_after_notify = Some(agent_leg);
            } else {
                self.send_bye(agent_leg, Some(TRANSFERRED), now);
            }
        }
    }

    /// Sends a re-INVITE handover originates on `leg` with `sdp` as its offer.
    pub(super) fn local_reinvite(
        &mut self,
        leg: LegId,
        sdp: Option<Bytes>,
        kind: Reinvite,
        now: Instant,
    ) {
        if self
            .legs
            .get(leg)
            .is_none_or(|l| l.state != LegState::Confirmed)
        {
            return;
        }
        let session = self.session_request_headers(leg);
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let branch = branch_for(self.key);
        let flow = l.dialog.flow;
        let mut b = l.dialog.next_request(&self.ep, &Method::Invite, &branch);
        b.header("Allow", super::core::ALLOW);
        for (name, value) in &session {
            b.header(name, value);
        }
        b.header("User-Agent", &self.ep.user_agent);
        let bytes = match sdp {
            Some(sdp) if !sdp.is_empty() => {
                let sdp = l.sdp.apply(&sdp, false);
                b.body("application/sdp", &sdp)
            }
            _ => b.finish(),
        };
        let (machine, actions) =
            ClientInvite::new(bytes, reliability(flow.protocol), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            leg,
            machine.into(),
            Purpose::LocalReinvite(kind),
        );
    }

    /// The SDP for a hold or resume re-INVITE on `leg`: the last body sent there with its
    /// direction changed.
    fn direction_offer(&self, leg: LegId, direction: SdpDirection) -> Option<Bytes> {
        let last = self.legs.get(leg)?.sdp.last_sent()?;
        Some(set_direction(&last, direction))
    }

    fn hold_customer(&mut self, now: Instant) {
        let Some(customer) = self.transfer.as_ref().map(|t| t.customer_leg) else {
            return;
        };
        let held = self
            .legs
            .get(customer)
            .and_then(|l| l.sdp.last_sent())
            .and_then(|sdp| crate::sdp::inspect(&sdp).ok())
            .is_some_and(|s| s.is_hold());
        if held {
            // Still held from an earlier attempt (a fallback after a failed transfer).
            return;
        }
        if let Some(offer) = self.direction_offer(customer, SdpDirection::SendOnly) {
            if let Some(t) = self.transfer.as_mut() {
                t.hold_pending = true;
            }
            self.local_reinvite(customer, Some(offer), Reinvite::Hold, now);
        }
    }

    /// INVITEs the transfer target (late offer) on a new leg of this call.
    fn call_transfer_target(
        &mut self,
        target: &super::CallTarget,
        referred_by: Option<&str>,
        now: Instant,
    ) {
        let Some((uri, flow)) = target.contacts.first().cloned() else {
            return self.transfer_failed(480, "Temporarily Unavailable", now);
        };
        let dialog = Dialog::outgoing(
            call_id_for(self.key, &self.ep.config().sip.domain),
            tag_for(self.key),
            target.presented_caller.clone(),
            target.party.clone(),
            uri.clone(),
            flow,
        );
        let branch = branch_for(self.key);
        let cseq = dialog.local_cseq;
        let mut b = dialog.request(&self.ep, &Method::Invite, &uri, &branch, cseq);
        b.header("Allow", super::core::ALLOW);
        self.add_initial_session_headers(&mut b);
        b.header("User-Agent", &self.ep.user_agent);
        if let Some(rb) = referred_by {
            b.header("Referred-By", rb);
        }
        b.header_fmt(
            "Call-Info",
            format_args!("<urn:handover:call:{}>;purpose=info", self.key),
        );
        for (name, value) in &self.call_data {
            b.header(name, value);
        }
        for (name, value) in &target.headers {
            b.header(name, value);
        }
        let bytes = b.finish();
        let id = self.new_leg(dialog, target.agent.clone(), branch.clone(), uri, cseq);
        if let Some(l) = self.legs.get_mut(id) {
            l.role = target.role;
            l.created_at = Some(self.now);
        }
        let (machine, actions) =
            ClientInvite::new(bytes, reliability(flow.protocol), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            id,
            machine.into(),
            Purpose::TransferTarget,
        );
        let ring = self
            .ep
            .config()
            .transfer
            .ring_timeout()
            .max(Duration::from_secs(1));
        if let Some(t) = self.transfer.as_mut() {
            t.target_leg = Some(id);
            t.stage = Stage::Calling;
            t.target_offer = None;
            t.ringing_notified = false;
            t.ring_deadline = Some(now + ring);
        }
    }

    /// A response to the INVITE of a transfer target (or of the agent called back).
    pub(super) fn on_transfer_target_response(
        &mut self,
        leg: LegId,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) {
        let current = self.transfer.as_ref().and_then(|t| t.target_leg) == Some(leg);
        match status {
            100 => {}
            101..=199 => {
                if let Some(l) = self.legs.get_mut(leg) {
                    if msg.to_tag().is_some() {
                        l.dialog.confirm(msg);
                        if l.state == LegState::Calling {
                            l.state = LegState::Early;
                        }
                    }
                    if let Some(inv) = l.invite.as_mut() {
                        inv.provisional_seen = true;
                    }
                }
                let wanted = self
                    .legs
                    .get(leg)
                    .and_then(|l| l.invite.as_ref())
                    .is_some_and(|i| i.cancel == super::core::CancelState::Wanted);
                if wanted || !current {
                    return self.cancel_leg(leg, now);
                }
                let first = self.transfer.as_mut().is_some_and(|t| {
                    let first = !t.ringing_notified;
                    t.ringing_notified = true;
                    first
                });
                if first && (status == 180 || status == 183) {
                    self.publish(Event::TransferProgress {
                        call_id: self.call_id(),
                        status: 180,
                    });
                    self.notify("SIP/2.0 180 Ringing", false, now);
                }
            }
            200..=299 => {
                let cseq = msg.cseq().seq;
                if let Some(l) = self.legs.get_mut(leg) {
                    l.dialog.confirm(msg);
                }
                self.set_leg_state(leg, LegState::Confirmed);
                if !current {
                    // The transfer ended meanwhile: take the 2xx and hang up (RFC 3261 §13.2.2.4).
                    self.send_2xx_ack(leg, cseq, None);
                    return self.send_bye(leg, None, now);
                }
                if let Some(agent) = self.queue_offer.take() {
                    self.ep.queue_offer_answered(self.key, &agent);
                    if let Some(q) = self.queued.take() {
                        self.via_queue = Some(q.clone());
                        self.queue_left(q, "answered");
                    }
                }
                let offer = msg.body();
                let hold_pending = match self.transfer.as_mut() {
                    Some(t) => {
                        t.ring_deadline = None;
                        t.target_offer = Some((cseq, offer));
                        t.stage = Stage::Bridging;
                        t.hold_pending
                    }
                    None => false,
                };
                if !hold_pending {
                    self.start_bridge(now);
                }
            }
            _ if current && self.queue_offer.is_some() => {
                // The queue's agent did not take it: back to the head of the queue.
                self.set_leg_state(leg, LegState::Ended);
                if let Some(agent) = self.queue_offer.take() {
                    if let Some(t) = self.transfer.as_mut() {
                        t.target_leg = None;
                    }
                    let failure = super::queueing::offer_failure(status);
                    self.ep.queue_offer_failed(self.key, &agent, failure);
                }
            }
            _ => {
                self.set_leg_state(leg, LegState::Ended);
                if current {
                    let reason = msg
                        .reason()
                        .unwrap_or_else(|| crate::sip::default_reason(status))
                        .to_owned();
                    self.transfer_failed(status, &reason, now);
                }
            }
        }
    }

    /// Re-INVITEs the customer with the target's offer.
    fn start_bridge(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        // A conversation transfer joins the agent to the target first (the consultation);
        // the customer follows when the agent completes it.
        let customer = if t.kind == TransferType::Conversation && !t.agent_gone {
            t.agent_leg
        } else {
            t.customer_leg
        };
        let offer = t.target_offer.as_ref().map(|(_, o)| o.clone());
        match offer {
            Some(o) if !o.is_empty() => {
                self.local_reinvite(customer, Some(o), Reinvite::Bridge, now)
            }
            _ => {
                // A target that answered without an offer: resume the customer's last media
                // towards it (rare; RFC 3725 flow IV would need a second round).
                let resume = self.direction_offer(customer, SdpDirection::SendRecv);
                self.local_reinvite(customer, resume, Reinvite::Bridge, now)
            }
        }
    }

    /// A response to a re-INVITE handover sent itself.
    pub(super) fn on_local_reinvite_response(
        &mut self,
        leg: LegId,
        kind: Reinvite,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) {
        if status < 200 {
            return;
        }
        if (200..300).contains(&status) && kind != Reinvite::FetchOffer {
            self.send_2xx_ack(leg, msg.cseq().seq, None);
        }
        match (kind, status) {
            (Reinvite::Refresh, 408 | 481) => self.leg_lost(leg, now),
            (Reinvite::Refresh, 491) => {
                if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                    t.retry_soon(now);
                }
            }
            (Reinvite::Refresh, _) => {}
            (Reinvite::FetchOffer, 200..=299) => {
                self.rebridge_offer(leg, msg.cseq().seq, msg.body(), now)
            }
            (Reinvite::Deliver, 200..=299) => self.rebridge_answer(leg, msg.body(), now),
            (Reinvite::FetchOffer | Reinvite::Deliver, 491) => {
                let at = now + glare_delay();
                if let Some(t) = self.transfer.as_mut() {
                    t.retry = Some((at, leg, kind));
                }
            }
            (Reinvite::FetchOffer | Reinvite::Deliver, _) => {
                // A leg refused to be re-bridged: nobody can be joined reliably any more.
                self.transfer = None;
                self.end_call("re-bridge refused", usize::MAX, now);
            }
            (Reinvite::Hold, _) => {
                // A customer that refuses to be held still gets transferred.
                let ready = match self.transfer.as_mut() {
                    Some(t) if status == 491 => {
                        t.retry = Some((now + glare_delay(), leg, Reinvite::Hold));
                        false
                    }
                    Some(t) => {
                        t.hold_pending = false;
                        t.target_offer.is_some()
                    }
                    None => false,
                };
                if ready {
                    self.start_bridge(now);
                }
                if self.unhold_after_hold == Some(leg) {
                    self.unhold_after_hold = None;
                    let offer = self.direction_offer(leg, SdpDirection::SendRecv);
                    self.local_reinvite(leg, offer, Reinvite::Unhold, now);
                }
            }
            (Reinvite::Bridge, 200..=299) => self.bridge_completed(leg, msg.body(), now),
            (Reinvite::Bridge, 491) => {
                if let Some(t) = self.transfer.as_mut() {
                    t.retry = Some((now + glare_delay(), leg, Reinvite::Bridge));
                }
            }
            (Reinvite::Bridge, _) => {
                // The customer refused the target's media: end the target leg, roll back.
                if let Some(target) = self.transfer.as_ref().and_then(|t| t.target_leg) {
                    if let Some((cseq, _)) =
                        self.transfer.as_ref().and_then(|t| t.target_offer.clone())
                    {
                        self.send_2xx_ack(target, cseq, None);
                    }
                    self.hang_up_leg(target, now);
                }
                self.transfer_failed(status, "Not Acceptable Here", now);
            }
            (Reinvite::Unhold, 491) => {
                let at = now + glare_delay();
                self.unhold_retry = Some((at, leg));
            }
            (Reinvite::Unhold, _) => {}
        }
    }

    /// The customer took the target's media: ACK the target with the answer and move the
    /// bridge; the release moment of success and hang-up transfers.
    fn bridge_completed(&mut self, customer: LegId, answer: Bytes, now: Instant) {
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        let Some(target) = t.target_leg else { return };
        let offer = t.target_offer.clone();
        let release = t.policy.release;
        let returning = t.stage == Stage::Bridging && self.reserved_agent.is_some();
        if let Some((cseq, _)) = offer {
            self.send_2xx_ack(target, cseq, Some(answer));
        }
        self.bridge = Some((customer, target));
        let consulting = self
            .transfer
            .as_ref()
            .is_some_and(|t| t.kind == TransferType::Conversation && customer == t.agent_leg);
        if consulting {
            tracing::info!(call = self.key, "consultation: agent talks to the target");
            if let Some(t) = self.transfer.as_mut() {
                t.stage = Stage::Consulting;
                t.target_offer = None;
            }
            return;
        }
        tracing::info!(call = self.key, target_leg = target, "transfer bridged");
        if returning {
            // Hang-up transfer: the agent took the call back.
            self.transfer_succeeded("agent answered the return call");
            self.unreserve_agent();
            self.transfer = None;
            return;
        }
        match release {
            ReleaseMoment::IvrAnswered => {
                self.transfer_succeeded("IVR answered");
                let agent = self.transfer.as_ref().and_then(|t| t.agent_id.clone());
                self.notify("SIP/2.0 200 OK", true, now);
                if let Some(agent) = agent {
                    self.reserve_agent(&agent);
                    let max = match self.transfer.as_ref().map(|t| &t.target) {
                        Some(Target::Ivr(name)) => {
                            self.ep.config().ivr(name).map(|v| v.max_waiting())
                        }
                        _ => None,
                    };
                    self.waiting_until = max.map(|m| now + m);
                }
                if let Some(t) = self.transfer.as_mut() {
                    t.stage = Stage::WithIvr;
                    t.target_offer = None;
                }
            }
            _ => {
                self.release_agent(now);
                self.transfer_succeeded("target answered");
                self.transfer = None;
            }
        }
    }

    /// The target failed (busy, declined, no answer, unreachable) or the bridge did: report
    /// it and take the failure path of the policy.
    pub(super) fn transfer_failed(&mut self, code: u16, reason: &str, now: Instant) {
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        let (customer, agent_leg, gone, released) =
            (t.customer_leg, t.agent_leg, t.agent_gone, t.agent_released);
        let path = t.policy.on_target_failure;
        let target_leg = t.target_leg;
        let hold_pending = t.hold_pending;
        let returning = self.reserved_agent.is_some();
        self.record_transfer_failure(code);
        self.notify(&format!("SIP/2.0 {code} {reason}"), true, now);
        if let Some(target) = target_leg {
            if self
                .legs
                .get(target)
                .is_some_and(|l| matches!(l.state, LegState::Calling | LegState::Early))
            {
                self.cancel_leg(target, now);
            }
        }
        self.transfer = None;
        let agent_there = !gone
            && !released
            && self
                .legs
                .get(agent_leg)
                .is_some_and(|l| l.state == LegState::Confirmed);
        let back_to_agent = matches!(
            path,
            FailurePath::RebridgeAgent
                | FailurePath::CustomerBackToAgent
                | FailurePath::AgentKeepsCustomer
        );
        // The waiting agent did not answer the return call: the agent's queue or fallback.
        let path = if returning {
            FailurePath::AgentQueueOrFallback
        } else {
            path
        };
        if agent_there && back_to_agent && !returning {
            self.bridge = Some((customer, agent_leg));
            if hold_pending {
                // One INVITE transaction at a time on a dialog (RFC 3261 §14.1): resume
                // once the hold re-INVITE has its final response.
                self.unhold_after_hold = Some(customer);
            } else {
                let offer = self.direction_offer(customer, SdpDirection::SendRecv);
                self.local_reinvite(customer, offer, Reinvite::Unhold, now);
            }
        } else {
            self.unreserve_agent();
            self.fallback_or_release(customer, agent_leg, path, code, reason, now);
        }
    }

    /// The CDR outcome, counters and event of a failed attempt.
    fn record_transfer_failure(&mut self, code: u16) {
        tracing::info!(call = self.key, code, "transfer failed");
        self.transfer_outcome(&format!("failed:{code}"));
        if let Some(last) = self.transfer_log.last() {
            self.publish(Event::TransferFailed {
                call_id: self.call_id(),
                transfer_type: last.transfer_type.clone(),
                target: last.target.clone(),
                status: code,
            });
        }
    }

    /// DESIGN.md §3 failure paths without the agent: the customer goes to the call's queue
    /// (hang-up transfer, when it came through one) or the `[transfer] fallback`, as a
    /// release transfer; without either — or when that fails too — the customer is released
    /// with a Reason carrying the failure.
    fn fallback_or_release(
        &mut self,
        customer: LegId,
        agent_leg: LegId,
        path: FailurePath,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        let customer_up = self
            .legs
            .get(customer)
            .is_some_and(|l| l.state == LegState::Confirmed);
        let config = self.ep.config();
        let target = match path {
            FailurePath::AgentQueueOrFallback => self
                .via_queue
                .clone()
                .map(Target::Queue)
                .or_else(|| config.transfer.fallback_target()),
            _ => config.transfer.fallback_target(),
        }
        .filter(|_| customer_up && !self.fallback_used);
        if let Some(target) = target {
            self.fallback_used = true;
            let policy = TargetKind::of(&config, &target).and_then(|kind| {
                let request = PolicyRequest {
                    transfer: TransferType::Release,
                    target: kind,
                    direction: crate::transfer::Direction::Inbound,
                    history: History::default(),
                };
                decide(&request, config.transfer.agent_hangup_during_conversation).ok()
            });
            if let Some(policy) = policy {
                tracing::info!(call = self.key, target = %target, "customer goes to the fallback");
                let selection = crate::transfer::Selection {
                    transfer: TransferType::Release,
                    source: crate::transfer::TypeSource::GlobalDefault,
                    dialled: target.to_string(),
                    target,
                };
                self.begin_transfer(
                    agent_leg,
                    customer,
                    selection,
                    policy,
                    Origin::default(),
                    now,
                );
                if let Some(t) = self.transfer.as_mut() {
                    // The agent is gone already: nothing to release or notify.
                    t.agent_gone = true;
                    t.agent_released = true;
                    return;
                }
                // Refused at once (queue full, no agent logged in): released below.
            }
        }
        let reason_header = format!("SIP;cause={code};text=\"Transfer failed: {reason}\"");
        if customer_up {
            self.send_bye(customer, Some(&reason_header), now);
        }
        self.end_call("transfer failed", customer, now);
    }

    /// A BYE on a leg while a transfer runs; `true` when the transfer consumed it (the call
    /// goes on).
    pub(super) fn transfer_bye(&mut self, leg: LegId, req: &IncomingRequest, now: Instant) -> bool {
        let Some(t) = self.transfer.as_mut() else {
            return false;
        };
        if t.kind == TransferType::Conversation {
            if let Some(consumed) = self.conversation_bye(leg, now) {
                return consumed;
            }
        }
        let Some(t) = self.transfer.as_mut() else {
            return false;
        };
        if leg == t.agent_leg {
            // Rule 7: the agent leaving after the 202 never costs the customer.
            t.agent_gone = true;
            t.notify = None;
            self.transfer_released("agent");
            let Some(t) = self.transfer.as_mut() else {
                return true;
            };
            if matches!(t.kind, TransferType::Success | TransferType::Conversation) {
                t.policy.on_target_failure = FailurePath::FallbackOrRelease;
            }
            tracing::info!(
                call = self.key,
                "agent left during the transfer; it goes on"
            );
            return true;
        }
        if Some(leg) == t.target_leg {
            if t.stage == Stage::WithIvr {
                self.ivr_returned(leg, &req.msg, now);
            } else {
                self.transfer_failed(487, "Request Terminated", now);
            }
            return true;
        }
        // The customer left: the transfer ends with the call.
        self.transfer = None;
        self.unreserve_agent();
        false
    }

    /// The IVR flow returns the call by REFER (to the waiting agent only, rule 1).
    fn ivr_refer(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        // The agent who handed the call over (still reserved, or freed after max_waiting_s:
        // then the return goes to the queue or fallback, but it is still a return).
        let agent = self
            .reserved_agent
            .clone()
            .or_else(|| self.transfer.as_ref().and_then(|t| t.agent_id.clone()))
            .unwrap_or_default();
        let to_agent = !agent.is_empty()
            && match req.msg.refer_to() {
                Ok(Some(r)) => {
                    let user = percent_decode(r.uri.user_str());
                    let user = self
                        .ep
                        .config()
                        .transfer
                        .split_prefix(&user)
                        .map(|(_, u)| u.to_owned())
                        .unwrap_or(user);
                    user == agent
                }
                _ => false,
            };
        if !to_agent {
            let w = crate::transfer::REFUSE_IVR_TRANSFER.warning_header_value();
            return self.answer_with(leg, key, req, (403, "Forbidden"), Some(w), now);
        }
        let msg = req.msg.clone();
        self.answer_with(leg, key, req, (202, "Accepted"), None, now);
        self.ivr_returned(leg, &msg, now);
        if self
            .legs
            .get(leg)
            .is_some_and(|l| l.state == LegState::Confirmed)
        {
            self.send_bye(
                leg,
                Some("SIP;cause=200;text=\"Call returned to the agent\""),
                now,
            );
        }
    }

    /// The IVR flow ended its part: keep the data it returned and call the waiting agent
    /// back (late offer), to bridge the customer to the answer.
    fn ivr_returned(&mut self, ivr_leg: LegId, msg: &SipMessage, now: Instant) {
        for (name, raw, value) in msg.headers() {
            if name == HeaderName::Other
                && raw.len() > 2
                && raw.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
            {
                self.call_data.retain(|(n, _)| !n.eq_ignore_ascii_case(raw));
                self.call_data.push((raw.to_owned(), value.into_owned()));
            }
        }
        let customer = self
            .transfer
            .as_ref()
            .map(|t| t.customer_leg)
            .unwrap_or(super::core::CALLER);
        if self.bridge == Some((customer, ivr_leg)) {
            self.bridge = None;
        }
        let Some(agent) = self.reserved_agent.clone() else {
            // The agent's waiting time ran out: the call goes to its queue or the fallback.
            let agent_leg = self
                .transfer
                .as_ref()
                .map(|t| t.agent_leg)
                .unwrap_or(ivr_leg);
            self.transfer = None;
            let path = FailurePath::AgentQueueOrFallback;
            return self.fallback_or_release(
                customer,
                agent_leg,
                path,
                480,
                "Agent not waiting",
                now,
            );
        };
        tracing::info!(call = self.key, agent = %agent, "IVR flow returned the call");
        let agent_leg = self.transfer.as_ref().map(|t| t.agent_leg);
        if let Some(agent_leg) = agent_leg.filter(|l| {
            self.legs
                .get(*l)
                .is_some_and(|l| l.state == LegState::Confirmed)
        }) {
            // The agent leg is still up (an API-started transfer): re-INVITE it instead of
            // calling the agent again.
            return self.rebridge(agent_leg, customer, Goal::BackToAgent, now);
        }
        let presented = self
            .legs
            .get(customer)
            .map(|l| l.dialog.remote_party.clone())
            .unwrap_or_default();
        match crate::cc::dialplan::call_target(
            &self.ep,
            &Target::Agent(agent),
            presented,
            None,
            true,
            now,
        ) {
            Ok(target) => {
                if let Some(t) = self.transfer.as_mut() {
                    t.stage = Stage::Bridging;
                }
                // Calling the agent back is a new "target" of the same transfer.
                self.call_transfer_target(&target, None, now);
                if let Some(t) = self.transfer.as_mut() {
                    t.stage = Stage::Calling;
                }
            }
            Err(_) => self.transfer_failed(480, "Temporarily Unavailable", now),
        }
    }

    /// Transfer timers: the target's ring timeout and 491 retries.
    pub(super) fn transfer_timeouts(&mut self, now: Instant) {
        if let Some((at, leg)) = self.unhold_retry {
            if at <= now {
                self.unhold_retry = None;
                let offer = self.direction_offer(leg, SdpDirection::SendRecv);
                self.local_reinvite(leg, offer, Reinvite::Unhold, now);
            }
        }
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if let Some((at, leg, kind)) = t.retry {
            if at <= now {
                t.retry = None;
                let body = match kind {
                    Reinvite::Hold => self.direction_offer(leg, SdpDirection::SendOnly),
                    Reinvite::Bridge => self
                        .transfer
                        .as_ref()
                        .and_then(|t| t.target_offer.as_ref().map(|o| o.1.clone())),
                    Reinvite::Unhold => self.direction_offer(leg, SdpDirection::SendRecv),
                    Reinvite::FetchOffer => None,
                    Reinvite::Refresh => self.legs.get(leg).and_then(|l| l.sdp.last_sent()),
                    Reinvite::Deliver => self.transfer.as_ref().and_then(|t| {
                        t.rebridge
                            .as_ref()
                            .and_then(|r| r.offer.as_ref().map(|o| o.1.clone()))
                    }),
                };
                self.local_reinvite(leg, body, kind, now);
            }
        }
        if self.waiting_until.is_some_and(|d| d <= now) {
            // `[[ivr]] max_waiting_s`: the agent is free again; the IVR's return will go to
            // the call's queue or the fallback (DESIGN.md §3, hang-up row).
            tracing::info!(call = self.key, "agent waited too long for the IVR; freed");
            self.unreserve_agent();
        }
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.ring_deadline.is_some_and(|d| d <= now) {
            t.ring_deadline = None;
            if let Some(target) = t.target_leg {
                self.cancel_leg(target, now);
            }
            self.transfer_failed(408, "Request Timeout", now);
        }
    }

    /// Adds a leg handover starts (transfer target, agent called back).
    fn new_leg(
        &mut self,
        dialog: Dialog,
        agent: Option<String>,
        branch: String,
        request_uri: String,
        cseq: u32,
    ) -> LegId {
        let id = self.legs.len();
        self.legs.push(super::core::Leg::outgoing(
            dialog,
            LegSdpOrigin::new(fastrand::u64(1..1 << 62)),
            agent,
            super::core::OutgoingInvite {
                branch,
                request_uri,
                cseq,
                provisional_seen: false,
                cancel: super::core::CancelState::No,
                answered_elsewhere: false,
            },
        ));
        self.set_offered(id, true);
        id
    }
}

/// RFC 3261 §14.1: after a 491, a UAC that does not own the Call-ID waits 0–2 s, the owner
/// 2.1–4 s. handover is both on different legs; waiting within 0.5–2 s keeps transfers brisk
/// while the phone (which owns its own Call-ID on the leg it started) waits its longer share.
fn glare_delay() -> Duration {
    Duration::from_millis(fastrand::u64(500..2000))
}

impl Call {
    /// The bridge re-INVITE to the customer timed out.
    pub(super) fn on_transfer_target_response_timeout(&mut self, now: Instant) {
        if let Some(target) = self.transfer.as_ref().and_then(|t| t.target_leg) {
            if let Some((cseq, _)) = self.transfer.as_ref().and_then(|t| t.target_offer.clone()) {
                self.send_2xx_ack(target, cseq, None);
            }
            self.hang_up_leg(target, now);
        }
        self.transfer = None;
        self.unreserve_agent();
    }
}

impl Call {
    /// A BYE during a conversation transfer (DESIGN.md §3 row "conversation", rules 4 and 6).
    /// `Some(consumed)` when handled here, `None` to fall through to the common handling.
    fn conversation_bye(&mut self, leg: LegId, now: Instant) -> Option<bool> {
        let t = self.transfer.as_ref()?;
        let (agent, customer, target, stage) = (t.agent_leg, t.customer_leg, t.target_leg, t.stage);
        let hangup_action = t.policy.agent_hangup_before_answer;
        match stage {
            Stage::Consulting if leg == agent => {
                // The agent completes the transfer by hanging up after talking to the target.
                tracing::info!(call = self.key, "agent completed the conversation transfer");
                self.transfer_released("agent");
                if let Some(t) = self.transfer.as_mut() {
                    t.agent_gone = true;
                    t.notify = None;
                }
                let target = target?;
                self.rebridge(target, customer, Goal::CompleteConversation, now);
                Some(true)
            }
            Stage::Consulting if Some(leg) == target => {
                // The target hung up: the agent goes back to the customer and may transfer
                // again.
                self.record_transfer_failure(487);
                self.notify("SIP/2.0 487 Request Terminated", true, now);
                self.rebridge(customer, agent, Goal::BackToAgent, now);
                Some(true)
            }
            Stage::Consulting if leg == customer => {
                // Rule 4: the agent stays with the target (customer 2) and may not transfer
                // it to an external number.
                self.customer_left_during_conversation = true;
                self.record_transfer_failure(487);
                self.notify("SIP/2.0 487 Request Terminated", true, now);
                self.transfer = None;
                if let Some(t) = target {
                    self.bridge = Some((agent, t));
                }
                Some(true)
            }
            Stage::Calling | Stage::Bridging if leg == agent => {
                // Rule 6: by default the attempt goes on as a release transfer.
                if hangup_action == crate::transfer::AgentHangupAction::Cancel {
                    self.transfer_released("agent");
                    self.record_transfer_failure(487);
                    if let Some(t) = target {
                        self.hang_up_leg(t, now);
                    }
                    self.transfer = None;
                    let reason = "SIP;cause=487;text=\"Transfer cancelled: the agent hung up\"";
                    if self
                        .legs
                        .get(customer)
                        .is_some_and(|l| l.state == LegState::Confirmed)
                    {
                        self.send_bye(customer, Some(reason), now);
                    }
                    self.end_call(
                        "agent hung up during a conversation transfer",
                        customer,
                        now,
                    );
                    return Some(true);
                }
                None
            }
            _ => None,
        }
    }

    /// Joins `offerer` and `answerer`: a re-INVITE without SDP to the offerer, whose offer
    /// goes to the answerer; the answer returns in the offerer's ACK (RFC 3725 flow IV).
    fn rebridge(&mut self, offerer: LegId, answerer: LegId, goal: Goal, now: Instant) {
        if let Some(t) = self.transfer.as_mut() {
            t.rebridge = Some(Rebridge {
                offerer,
                answerer,
                goal,
                offer: None,
            });
        }
        self.local_reinvite(offerer, None, Reinvite::FetchOffer, now);
    }

    fn rebridge_offer(&mut self, offerer: LegId, cseq: u32, offer: Bytes, now: Instant) {
        let answerer = match self.transfer.as_mut().and_then(|t| t.rebridge.as_mut()) {
            Some(r) if r.offerer == offerer => {
                r.offer = Some((cseq, offer.clone()));
                r.answerer
            }
            _ => return self.send_2xx_ack(offerer, cseq, None),
        };
        self.local_reinvite(answerer, Some(offer), Reinvite::Deliver, now);
    }

    fn rebridge_answer(&mut self, answerer: LegId, answer: Bytes, now: Instant) {
        let Some(r) = self.transfer.as_mut().and_then(|t| t.rebridge.take()) else {
            return;
        };
        if r.answerer != answerer {
            return;
        }
        if let Some((cseq, _)) = r.offer {
            self.send_2xx_ack(r.offerer, cseq, Some(answer));
        }
        self.bridge = Some((r.offerer, r.answerer));
        match r.goal {
            Goal::CompleteConversation => {
                tracing::info!(call = self.key, "conversation transfer completed");
                self.transfer_succeeded("agent completed");
                self.transfer = None;
            }
            Goal::CompleteAttended => self.attended_completed(now),
            Goal::BackToAgent => {
                tracing::info!(call = self.key, "agent back with the customer");
                if self.reserved_agent.is_some() {
                    self.transfer_succeeded("agent took the call back");
                    self.unreserve_agent();
                }
                self.transfer = None;
            }
        }
        let _ = now;
    }
}

impl Call {
    /// The queue offered the transferred call to an agent: call it (the queue times the
    /// ringing, so no transfer ring timeout).
    pub(super) fn queue_transfer_offer(&mut self, target: &super::CallTarget, now: Instant) {
        self.call_transfer_target(target, None, now);
        if let Some(t) = self.transfer.as_mut() {
            t.ring_deadline = None;
        }
    }

    /// A transfer to a queue ended without an agent (max wait, overflow).
    pub(super) fn queue_transfer_failed(&mut self, code: u16, reason: &str, now: Instant) {
        self.leave_queue();
        self.transfer_failed(code, reason, now);
    }
}

impl Call {
    /// The transfer reached its release moment (DESIGN.md §3 rule 8).
    pub(super) fn transfer_succeeded(&mut self, moment: &str) {
        self.transfer_outcome("succeeded");
        if let Some(last) = self.transfer_log.last() {
            self.publish(Event::TransferSucceeded {
                call_id: self.call_id(),
                transfer_type: last.transfer_type.clone(),
                target: last.target.clone(),
                release_moment: moment.to_owned(),
            });
        }
    }
}

impl Call {
    /// The control API asks for a transfer (DESIGN.md §4): the same policy as a REFER, the
    /// same refusals, no REFER subscription.
    pub fn api_transfer(
        &mut self,
        transfer: TransferType,
        target: Target,
        now: Instant,
    ) -> Result<(), crate::api::ApiError> {
        use crate::api::ApiError;
        let agent_leg = match self.caller {
            super::Caller::Agent { .. } => super::core::CALLER,
            super::Caller::Customer { .. } => self
                .peer_of(super::core::CALLER)
                .ok_or_else(|| ApiError::Conflict("the call is not connected".into()))?,
        };
        if self
            .legs
            .get(agent_leg)
            .is_none_or(|l| l.agent.is_none() || l.state != LegState::Confirmed)
        {
            return Err(ApiError::Conflict(
                "no agent is talking on this call".into(),
            ));
        }
        if self.transfer.is_some() {
            return Err(ApiError::Conflict(
                "a transfer is already in progress".into(),
            ));
        }
        let customer_leg = self
            .peer_of(agent_leg)
            .ok_or_else(|| ApiError::Conflict("the call is not connected".into()))?;
        let config = self.ep.config();
        let kind = TargetKind::of(&config, &target)
            .filter(|_| config.target_exists(&target))
            .ok_or_else(|| ApiError::NotFound(format!("target {target} is not configured")))?;
        let direction = match self.caller {
            super::Caller::Customer { .. } => crate::transfer::Direction::Inbound,
            super::Caller::Agent { .. } => crate::transfer::Direction::AgentOutbound,
        };
        let request = PolicyRequest {
            transfer,
            target: kind,
            direction,
            history: History {
                customer_left_during_conversation: self.customer_left_during_conversation,
                from_ivr: false,
            },
        };
        let policy = match decide(&request, config.transfer.agent_hangup_during_conversation) {
            Ok(p) => p,
            Err(refusal) => {
                let outcome = format!("refused:{}", refusal.rule);
                self.log_transfer(transfer.as_str(), &target.to_string(), outcome.clone());
                self.transfer_outcome(&outcome);
                return Err(ApiError::Refused {
                    rule: refusal.rule,
                    warning: refusal.warning.to_owned(),
                });
            }
        };
        let selection = crate::transfer::Selection {
            transfer,
            source: crate::transfer::TypeSource::Api,
            dialled: target.to_string(),
            target,
        };
        self.begin_transfer(
            agent_leg,
            customer_leg,
            selection,
            policy,
            Origin::default(),
            now,
        );
        Ok(())
    }
}

impl Call {
    /// An IVR flow reached directly by the customer sends the call on (DESIGN.md §2, the
    /// contact-centre issue): by REFER to a number that resolves in the dial plan to an
    /// agent or a queue, as a release transfer. Anything else from an IVR is refused (rule 1:
    /// an IVR flow cannot transfer to another device).
    fn ivr_sends_on(&mut self, leg: LegId, key: TxnKey, req: IncomingRequest, now: Instant) {
        let config = self.ep.config();
        let target = match req.msg.refer_to() {
            Ok(Some(r)) => config.target_for_number(&percent_decode(r.uri.user_str())),
            _ => return self.answer_with(leg, key, req, (400, "Bad Refer-To"), None, now),
        };
        let customer_leg = match self.peer_of(leg) {
            Some(c) => c,
            None => {
                return self.refuse_refer(leg, key, req, 403, "no connected call to transfer", now)
            }
        };
        let (target, kind) = match target {
            Some(t @ Target::Agent(_)) => (t, TargetKind::Agent),
            Some(t @ Target::Queue(_)) => (t, TargetKind::Queue),
            _ => {
                let w = crate::transfer::REFUSE_IVR_TRANSFER.warning_header_value();
                return self.answer_with(leg, key, req, (403, "Forbidden"), Some(w), now);
            }
        };
        let request = PolicyRequest {
            transfer: TransferType::Release,
            target: kind,
            direction: crate::transfer::Direction::Inbound,
            history: History::default(),
        };
        let Ok(policy) = decide(&request, config.transfer.agent_hangup_during_conversation) else {
            let w = crate::transfer::REFUSE_IVR_TRANSFER.warning_header_value();
            return self.answer_with(leg, key, req, (403, "Forbidden"), Some(w), now);
        };
        let referred_by = req
            .msg
            .header(HeaderName::ReferredBy)
            .map(|v| v.into_owned());
        self.answer_with(leg, key, req, (202, "Accepted"), None, now);
        let selection = crate::transfer::Selection {
            transfer: TransferType::Release,
            source: crate::transfer::TypeSource::GlobalDefault,
            dialled: target.to_string(),
            target,
        };
        let origin = Origin {
            notify: true,
            referred_by,
        };
        self.begin_transfer(leg, customer_leg, selection, policy, origin, now);
    }
}
