//! A transfer that fails (DESIGN.md §3 failure paths, rule 5): the NOTIFY with the
//! target's status, the CDR entry, then the policy's failure path — back to the agent,
//! to the fallback target, or the customer released — and the transfer timers that lead
//! there (the target's ring timeout, 491 retries of our re-INVITEs).

use std::time::Instant;

use super::core::{Call, LegId, LegState};
use super::transfer::{Origin, Reinvite};
use crate::config::{Target, TransferType};
use crate::events::Event;
use crate::sdp::Direction as SdpDirection;
use crate::transfer::{decide, FailurePath, History, Request as PolicyRequest, TargetKind};

impl Call {
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
        if returning {
            // A hang-up transfer reached its release moment when the IVR answered: it stays
            // `succeeded` in the CDR; what becomes of the customer is the next entry's.
            tracing::info!(
                call = self.key,
                code,
                "the waiting agent did not take the call back"
            );
        } else {
            self.record_transfer_failure(code);
        }
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
    pub(super) fn record_transfer_failure(&mut self, code: u16) {
        tracing::info!(call = self.key, code, "transfer failed");
        self.transfer_outcome(&format!("failed:{code}"));
        if let Some(last) = self.transfer_log.last() {
            self.publish(|| Event::TransferFailed {
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
    pub(super) fn fallback_or_release(
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
                // The agent is gone already: nothing to release or notify.
                let origin = Origin {
                    agent_gone: true,
                    ..Origin::default()
                };
                self.begin_transfer(agent_leg, customer, selection, policy, origin, now);
                if self.transfer.is_some() {
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
}
