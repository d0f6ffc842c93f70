//! Transfers inside a call (DESIGN.md §3): a REFER from the agent's phone (RFC 3515) picks a
//! type and target ([`crate::transfer::select()`]), the policy table decides when the agent's
//! leg is released and what happens on failure ([`crate::transfer::decide`]), and this module
//! with its siblings carries it out with re-INVITE bridging (RFC 3725 flow: late offer to the
//! target, its offer re-INVITEd to the customer, the customer's answer in the target's ACK).
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
//!
//! This file holds the transfer's types, the REFER and control-API entry, the policy
//! decision, the NOTIFYs and the agent's release. Beside it: [`super::bridging`] (re-INVITE
//! bridging and the target's leg), [`super::fallback`] (failure paths and transfer timers),
//! [`super::transfer_bye`] (BYE during a transfer), [`super::ivr`] (IVR return and IVR
//! flows sending the call on).

use std::time::Instant;

use bytes::Bytes;

use super::core::{Call, LegId, LegState, Purpose, TxnKey};
use super::registry::branch_for;
use crate::config::{Target, TransferType};
use crate::events::Event;
use crate::incoming::IncomingRequest;
use crate::sip::{HeaderName, Method};
use crate::transaction::{ClientNonInvite, Reliability};
use crate::transfer::{
    decide, select, warning_header_value, History, Policy, ReleaseMoment, Request as PolicyRequest,
    TargetKind,
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
    /// The agent left earlier (a fallback after a failed transfer): nothing to release.
    pub agent_gone: bool,
}

/// `%XX` escapes of a URI user part decoded (a REFER may carry `%2A1` for `*1`).
pub(super) fn percent_decode(s: &str) -> String {
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

pub(super) fn reliability(p: Protocol) -> Reliability {
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
                agent_gone: false,
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
            agent_gone: false,
        };
        self.begin_transfer(leg, customer_leg, selection, policy, origin, now);
    }

    /// Carries out a transfer that passed the policy (from a REFER or the control API).
    pub(super) fn begin_transfer(
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
            agent_gone,
        } = origin;
        let agent_id = self.legs.get(leg).and_then(|l| l.agent.clone());
        tracing::info!(
            call = self.key,
            transfer = selection.transfer.as_str(),
            target = %selection.target,
            "transfer started"
        );
        self.transfer = Some(Box::new(TransferRun {
            kind: selection.transfer,
            policy,
            target: selection.target.clone(),
            agent_leg: leg,
            customer_leg,
            target_leg: None,
            notify: wants_notify.then_some(leg),
            hold_pending: false,
            target_offer: None,
            agent_gone,
            agent_id,
            stage: Stage::Calling,
            ringing_notified: false,
            ring_deadline: None,
            retry: None,
            agent_released: agent_gone,
            rebridge: None,
        }));
        let (tt, tg) = (
            selection.transfer.as_str().to_owned(),
            selection.target.to_string(),
        );
        self.log_transfer(&tt, &tg, "pending".into());
        self.publish(|| Event::TransferStarted {
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
    pub(super) fn refuse_refer(
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
        if self.transfer.as_ref().is_some_and(|t| t.agent_released) {
            return;
        }
        self.transfer_released("policy");
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
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
            self.publish(|| Event::TransferSucceeded {
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
