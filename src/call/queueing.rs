//! A call waiting in a skill queue (DESIGN.md §2): it joins, stays in early state (180)
//! while it waits, and rings whichever agent the queue offers it to; a failed offer puts it
//! back at the head of its queue, `max_wait_s` sends it to the overflow target or ends it
//! with 480. The queue itself ([`crate::cc::queue::QueueSet`]) decides; this file executes.
//!
//! A transfer to a queue uses the same path: the offered agent becomes the transfer target.

use std::time::Instant;

use super::core::{Call, LegState, Phase, CALLER};
use crate::cc::queue::{OfferFailure, Refused};
use crate::config::Target;

/// How a failed offer counts for the agent's missed offers.
pub fn offer_failure(code: u16) -> OfferFailure {
    match code {
        486 | 600 | 603 => OfferFailure::Busy,
        408 | 480 | 487 => OfferFailure::NoAnswer,
        _ => OfferFailure::Error,
    }
}

/// The response for a refused admission, and its Warning text.
pub fn refusal_response(refused: &Refused) -> (u16, &'static str) {
    match refused {
        Refused::Unknown(_) => (404, "Not Found"),
        Refused::Full(_) => (486, "Busy Here"),
        Refused::NoAgents(_) => (480, "Temporarily Unavailable"),
        Refused::AlreadyQueued(_) => (491, "Request Pending"),
    }
}

impl Call {
    /// The caller joins `queue`: 180 while waiting, or the refusal with a Warning.
    pub fn join_queue(&mut self, queue: &str, now: Instant) {
        self.queued = Some(queue.to_owned());
        match self.ep.queue_join(queue, self.key) {
            Ok(admitted) => {
                tracing::info!(
                    call = self.key,
                    queue,
                    position = admitted.position,
                    "queued"
                );
                self.publish(|| crate::events::Event::QueueJoined {
                    queue: queue.to_owned(),
                    call_id: self.call_id(),
                    position: admitted.position,
                });
                if let Some(key) = self.caller_invite_key() {
                    self.respond_server(&key, 180, "Ringing", None, now, |_| {});
                }
                let music = self
                    .ep
                    .config()
                    .queue(queue)
                    .and_then(|q| q.music_uri.clone());
                if let Some(uri) = music {
                    self.dial_queue_music(&uri, now);
                }
            }
            Err(refused) => {
                self.queued = None;
                let (code, reason) = refusal_response(&refused);
                let warning = crate::transfer::warning_header_value(&refused.to_string());
                self.reject_caller(code, reason, Some(&warning), now);
            }
        }
    }

    /// Queue music (`[[queues]] music_uri`): the caller is answered by the music server
    /// while it waits (DESIGN.md §2). An agent offered meanwhile rings with the caller's own
    /// offer as usual; once the music answers, the waiting call works like a transfer to the
    /// queue with the music leg as the transferor (late offer to the agent, re-INVITE of the
    /// caller, BYE to the music leg when the agent's media is bridged).
    fn dial_queue_music(&mut self, uri: &str, now: Instant) {
        let Some(dest) = crate::sip::Uri::parse(uri)
            .ok()
            .and_then(|u| crate::incoming::uri_destination(&u))
        else {
            tracing::warn!(
                call = self.key,
                uri,
                "queue music URI has no IP address; callers wait with 180"
            );
            return;
        };
        let presented = self
            .legs
            .get(CALLER)
            .map(|l| l.dialog.remote_party.clone())
            .unwrap_or_default();
        let target = super::CallTarget {
            agent: None,
            party: format!("<{uri}>"),
            contacts: vec![(uri.to_owned(), dest)],
            presented_caller: presented,
            headers: Vec::new(),
            queue: None,
            role: "music",
        };
        let offer = self.caller_invite_offer().unwrap_or_default();
        self.add_callee(&target, uri, dest, &offer, now);
    }

    /// The music server answered a queued caller: wait for an agent as a transfer to the
    /// queue whose release moment is the agent's answer.
    pub(super) fn start_queue_music(&mut self, music_leg: crate::call::core::LegId, now: Instant) {
        let Some(queue) = self.queued.clone() else {
            return;
        };
        let policy = crate::transfer::Policy {
            release: crate::transfer::ReleaseMoment::TargetAnswered,
            notify_final_at: crate::transfer::ReleaseMoment::TargetAnswered,
            on_target_failure: crate::transfer::FailurePath::FallbackOrRelease,
            on_return_failure: None,
            agent_after: crate::transfer::AgentAfter::IdleOrWrapUp,
            hold_customer: false,
            late_offer_to_target: true,
            agent_hangup_before_answer: crate::transfer::AgentHangupAction::ContinueAsRelease,
        };
        tracing::info!(call = self.key, queue = %queue, "caller hears the queue music");
        self.transfer = Some(Box::new(super::transfer::TransferRun {
            kind: crate::config::TransferType::Release,
            policy,
            target: Target::Queue(queue),
            agent_leg: music_leg,
            customer_leg: CALLER,
            target_leg: None,
            notify: None,
            hold_pending: false,
            target_offer: None,
            agent_gone: false,
            agent_id: None,
            stage: super::transfer::Stage::Calling,
            ringing_notified: false,
            ring_deadline: None,
            retry: None,
            agent_released: false,
            rebridge: None,
        }));
        let _ = now;
    }

    /// Leaves the queue at once (caller gone, call answered elsewhere, call ending).
    pub fn leave_queue(&mut self) {
        let queue = self.queued.take();
        if queue.is_some() || self.queue_offer.take().is_some() {
            self.ep.queue_leave(self.key);
        }
        if let Some(queue) = queue {
            self.queue_left(queue, "abandoned");
        }
    }

    /// Publishes that the call left `queue` (`answered`, `abandoned`, `overflow`, `expired`).
    pub(super) fn queue_left(&self, queue: String, outcome: &str) {
        self.publish(|| crate::events::Event::QueueLeft {
            queue,
            call_id: self.call_id(),
            outcome: outcome.to_owned(),
        });
    }

    /// The queue offers this call to `agent`: ring its contacts (or, for a transfer to a
    /// queue, make it the transfer target).
    pub fn on_queue_offer(&mut self, agent: &str, queue: &str, now: Instant) {
        let waiting_transfer = self
            .transfer
            .as_ref()
            .is_some_and(|t| matches!(t.target, Target::Queue(_)) && t.target_leg.is_none());
        let waiting_call = self.phase == Phase::Routing && self.queued.is_some();
        if !waiting_call && !waiting_transfer {
            return self
                .ep
                .queue_offer_failed(self.key, agent, OfferFailure::Error);
        }
        let presented = self
            .legs
            .get(CALLER)
            .map(|l| l.dialog.remote_party.clone())
            .unwrap_or_default();
        let target = match crate::cc::dialplan::call_target(
            &self.ep,
            &Target::Agent(agent.to_owned()),
            presented,
            None,
            false,
            now,
        ) {
            Ok(t) => t,
            Err(_) => {
                return self
                    .ep
                    .queue_offer_failed(self.key, agent, OfferFailure::Error)
            }
        };
        tracing::info!(call = self.key, queue, agent, "queue offer");
        self.queue_offer = Some(agent.to_owned());
        if waiting_transfer {
            return self.queue_transfer_offer(&target, now);
        }
        let offer = match self.caller_invite_offer() {
            Some(o) => o,
            None => bytes::Bytes::new(),
        };
        for (uri, flow) in &target.contacts {
            self.add_callee(&target, uri, *flow, &offer, now);
        }
    }

    /// The offer rang for the queue's ring timeout: cancel it; the 487 reports the miss.
    pub fn on_queue_offer_timeout(&mut self, agent: &str, now: Instant) {
        if self.queue_offer.as_deref() != Some(agent) {
            return;
        }
        if let Some(t) = self.transfer.as_ref().and_then(|t| t.target_leg) {
            return self.cancel_leg(t, now);
        }
        for leg in 1..self.legs.len() {
            if self
                .legs
                .get(leg)
                .is_some_and(|l| matches!(l.state, LegState::Calling | LegState::Early))
            {
                self.cancel_leg(leg, now);
            }
        }
    }

    /// `max_wait_s` passed: the overflow target (a queue, an IVR flow, an agent).
    pub fn on_queue_overflow(&mut self, target: &Target, now: Instant) {
        if let Some(q) = self.queued.take() {
            self.queue_left(q, "overflow");
        }
        if self.transfer.is_some() {
            return self.queue_transfer_failed(480, "Temporarily Unavailable", now);
        }
        if self.phase != Phase::Routing {
            return;
        }
        tracing::info!(call = self.key, %target, "queue overflow");
        if let Target::Queue(q) = target {
            return self.join_queue(q, now);
        }
        let presented = self
            .legs
            .get(CALLER)
            .map(|l| l.dialog.remote_party.clone())
            .unwrap_or_default();
        match crate::cc::dialplan::call_target(&self.ep, target, presented, None, false, now) {
            Ok(t) => {
                let offer = self.caller_invite_offer().unwrap_or_default();
                for (uri, flow) in &t.contacts {
                    self.add_callee(&t, uri, *flow, &offer, now);
                }
                self.arm_ring_timeout(now);
            }
            Err(refuse) => {
                let warning = refuse.warning.clone();
                self.reject_caller(refuse.code, refuse.reason, warning.as_deref(), now);
            }
        }
    }

    /// `max_wait_s` passed without an overflow target.
    pub fn on_queue_expired(&mut self, now: Instant) {
        if let Some(q) = self.queued.take() {
            self.queue_left(q, "expired");
        }
        if self.transfer.is_some() {
            return self.queue_transfer_failed(480, "Temporarily Unavailable", now);
        }
        if self.phase == Phase::Routing {
            let warning = crate::transfer::warning_header_value(
                "no agent answered within the queue's max_wait_s",
            );
            self.reject_caller(480, "Temporarily Unavailable", Some(&warning), now);
        }
    }
}
