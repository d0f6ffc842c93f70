//! Re-INVITE bridging for transfers (RFC 3725 flow IV, RFC 3261 §14): the re-INVITEs
//! handover itself sends (hold, bridge, unhold, fetch and deliver a fresh offer), the
//! transfer target's leg (late-offer INVITE, its responses), bridging the customer to the
//! target's offer, re-bridging two legs, and the 491 glare back-off (§14.1).
//!
//! ```text
//!  customer: re-INVITE sendonly (hold) ──► 200 ─ ACK
//!  target: INVITE (no SDP) ─► 180 ─► 200 + offer
//!  customer: re-INVITE with the target's offer ─► 200 + answer ─ ACK;  target: ACK + answer
//!  re-bridge: re-INVITE (no SDP) ─► offerer's 200 + offer ─► re-INVITE to the answerer
//!             ─► 200 + answer ─► ACK + answer to the offerer
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{Call, LegId, LegState, Purpose, TxnKey};
use super::dialog::Dialog;
use super::registry::{branch_for, call_id_for, tag_for};
use super::transfer::{reliability, Goal, Rebridge, Reinvite, Stage};
use crate::config::{Target, TransferType};
use crate::events::Event;
use crate::sdp::{set_direction, Direction as SdpDirection, LegSdpOrigin};
use crate::sip::{Method, SipMessage};
use crate::transaction::ClientInvite;
use crate::transfer::ReleaseMoment;

impl Call {
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
    pub(super) fn direction_offer(&self, leg: LegId, direction: SdpDirection) -> Option<Bytes> {
        let last = self.legs.get(leg)?.sdp.last_sent()?;
        Some(set_direction(&last, direction))
    }

    pub(super) fn hold_customer(&mut self, now: Instant) {
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
    pub(super) fn call_transfer_target(
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
                    self.publish(|| Event::TransferProgress {
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

    /// Joins `offerer` and `answerer`: a re-INVITE without SDP to the offerer, whose offer
    /// goes to the answerer; the answer returns in the offerer's ACK (RFC 3725 flow IV).
    pub(super) fn rebridge(&mut self, offerer: LegId, answerer: LegId, goal: Goal, now: Instant) {
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
