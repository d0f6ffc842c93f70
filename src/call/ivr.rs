//! IVR flows in a call (DESIGN.md §2–§3, rule 1): the hang-up transfer's return — the IVR
//! hands the call back by REFER or BYE, the waiting agent is called again (late offer) and
//! the customer bridged to it — and an IVR flow reached directly that sends the call on by
//! REFER to an agent or a queue.
//!
//! ```text
//!  IVR answered ─► NOTIFY 200, agent `waiting`
//!  IVR BYE/REFER ─► INVITE the agent again (late offer), bridge the customer, agent `talking`
//! ```

use std::time::Instant;

use super::core::{Call, LegId, LegState, TxnKey};
use super::transfer::{percent_decode, Goal, Origin, Stage};
use crate::config::{Target, TransferType};
use crate::incoming::IncomingRequest;
use crate::sip::{HeaderName, SipMessage};
use crate::transfer::{decide, FailurePath, History, Request as PolicyRequest, TargetKind};

impl Call {
    /// The IVR flow returns the call by REFER (to the waiting agent only, rule 1).
    pub(super) fn ivr_refer(
        &mut self,
        leg: LegId,
        key: TxnKey,
        req: IncomingRequest,
        now: Instant,
    ) {
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
    pub(super) fn ivr_returned(&mut self, ivr_leg: LegId, msg: &SipMessage, now: Instant) {
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

    /// An IVR flow reached directly by the customer sends the call on (DESIGN.md §2, the
    /// contact-centre issue): by REFER to a number that resolves in the dial plan to an
    /// agent or a queue, as a release transfer. Anything else from an IVR is refused (rule 1:
    /// an IVR flow cannot transfer to another device).
    pub(super) fn ivr_sends_on(
        &mut self,
        leg: LegId,
        key: TxnKey,
        req: IncomingRequest,
        now: Instant,
    ) {
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
            agent_gone: false,
        };
        self.begin_transfer(leg, customer_leg, selection, policy, origin, now);
    }
}
