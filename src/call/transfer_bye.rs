//! A BYE while a transfer runs (DESIGN.md §3): the agent leaving after the 202 never costs
//! the customer (rule 7), the target leaving fails the transfer (or returns the call from
//! an IVR flow), and the conversation transfer's own rules for who may leave when (rules 4
//! and 6).

use std::time::Instant;

use super::core::{Call, LegId, LegState};
use super::transfer::{Goal, Stage};
use crate::config::TransferType;
use crate::incoming::IncomingRequest;
use crate::transfer::FailurePath;

impl Call {
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
}
