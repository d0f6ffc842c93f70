//! What a call tells the outside: live events for the control API (SSE), outcome counters for
//! metrics, and one CDR per finished call (DESIGN.md §4). Built from the call's own state;
//! wall-clock times derive from the call's start, so the core still reads no clock.

use std::borrow::Cow;
use std::time::Instant;

use super::core::{Call, Leg};
use crate::cdr::{CdrLeg, CdrRecord, CdrTransfer};
use crate::events::Event;

impl Call {
    /// This call's id in events, CDRs and the control API.
    pub fn call_id(&self) -> String {
        self.key.to_string()
    }

    pub fn direction(&self) -> &'static str {
        match self.caller {
            super::Caller::Customer { .. } => "inbound",
            super::Caller::Agent { .. } => "outbound",
        }
    }

    /// Unix ms of an instant of this call.
    pub fn unix_ms(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.started).as_millis() as u64;
        self.started_unix_ms.saturating_add(since)
    }

    /// Publishes the event `event` builds, if anyone is subscribed.
    pub fn publish(&self, event: impl FnOnce() -> Event) {
        self.ep.events.publish_with(event);
    }

    /// Records a transfer attempt for the CDR and the metrics; returns its index.
    pub(super) fn log_transfer(
        &mut self,
        transfer_type: &str,
        target: &str,
        outcome: String,
    ) -> usize {
        self.transfer_log.push(CdrTransfer {
            transfer_type: transfer_type.to_owned(),
            target: target.to_owned(),
            outcome,
            agent_released_ms: None,
            released_by: "none".to_owned(),
        });
        self.transfer_log.len() - 1
    }

    /// Sets the outcome of the last transfer attempt and counts it.
    pub(super) fn transfer_outcome(&mut self, outcome: &str) {
        let Some(last) = self.transfer_log.last_mut() else {
            return;
        };
        last.outcome = outcome.to_owned();
        let label = outcome.split(':').next().unwrap_or(outcome).to_owned();
        *self
            .ep
            .outcomes()
            .transfers
            .entry((last.transfer_type.clone(), label))
            .or_default() += 1;
    }

    /// Notes when and by whom the transferring agent was released.
    pub(super) fn transfer_released(&mut self, by: &str) {
        let at = self.unix_ms(self.now);
        if let Some(last) = self.transfer_log.last_mut() {
            if last.agent_released_ms.is_none() {
                last.agent_released_ms = Some(at);
                last.released_by = by.to_owned();
            }
        }
    }

    fn cdr_leg<'a>(&'a self, leg: &'a Leg) -> CdrLeg<'a> {
        let created = leg.created_at.unwrap_or(self.started);
        CdrLeg {
            role: Cow::Borrowed(leg.role),
            party: Cow::Borrowed(&leg.dialog.remote_party),
            agent: leg.agent.as_deref().map(Cow::Borrowed),
            start_ms: self.unix_ms(created),
            answer_ms: leg.answered_at.map(|t| self.unix_ms(t)),
            end_ms: self.unix_ms(leg.ended_at.unwrap_or(self.now)),
            end_reason: Cow::Borrowed(match leg.answered_at {
                Some(_) => "completed",
                None => "not answered",
            }),
        }
    }

    /// The call's CDR (DESIGN.md §4), borrowing the call's text.
    pub fn cdr(&self) -> CdrRecord<'_> {
        let caller = self.legs.first();
        CdrRecord {
            call_id: Cow::Owned(self.call_id()),
            interaction_id: Cow::Borrowed(&self.interaction_id),
            direction: Cow::Borrowed(self.direction()),
            from: Cow::Borrowed(caller.map_or("", |l| l.dialog.remote_party.as_str())),
            to: Cow::Borrowed(caller.map_or("", |l| l.dialog.local_party.as_str())),
            start_ms: self.started_unix_ms,
            answer_ms: caller.and_then(|l| l.answered_at).map(|t| self.unix_ms(t)),
            end_ms: self.unix_ms(self.now),
            legs: self.legs.iter().map(|l| self.cdr_leg(l)).collect(),
            transfers: Cow::Borrowed(&self.transfer_log),
            release_cause: Cow::Borrowed(self.end_reason.as_deref().unwrap_or("ended")),
        }
    }

    /// The call ended: event, outcome counter, CDR.
    pub fn report_end(&mut self) {
        let answered = self.legs.first().and_then(|l| l.answered_at).is_some();
        let outcome = if answered { "answered" } else { "unanswered" };
        {
            let mut outcomes = self.ep.outcomes();
            match outcomes.calls.get_mut(outcome) {
                Some(count) => *count += 1,
                None => {
                    outcomes.calls.insert(outcome.to_owned(), 1);
                }
            }
        }
        self.publish(|| Event::CallEnded {
            call_id: self.call_id(),
            reason: self
                .end_reason
                .clone()
                .unwrap_or_else(|| "ended".to_owned()),
            duration_ms: self.now.saturating_duration_since(self.started).as_millis() as u64,
        });
        if let Some(cdr) = self.ep.cdr.get() {
            cdr.write(&self.cdr());
        }
    }
}

impl Call {
    /// The call as the control API shows it.
    pub fn info(&self) -> crate::api::CallInfo {
        use crate::api::{CallInfo, LegInfo, TransferInfo};
        let state = if self.all_legs_ended() {
            "ended"
        } else if self.queued.is_some() {
            "queued"
        } else if self.transfer.is_some() {
            "transferring"
        } else if self.bridge.is_some() {
            "connected"
        } else {
            "ringing"
        };
        CallInfo {
            id: self.call_id(),
            interaction_id: self.interaction_id.clone(),
            direction: self.direction().to_owned(),
            state: state.to_owned(),
            started_at_ms: self.started_unix_ms,
            legs: self
                .legs
                .iter()
                .enumerate()
                .map(|(i, l)| LegInfo {
                    id: i.to_string(),
                    role: l.role.to_owned(),
                    party: l.dialog.remote_party.clone(),
                    state: format!("{:?}", l.state).to_lowercase(),
                    agent: l.agent.clone(),
                })
                .collect(),
            transfer: self.transfer.as_ref().map(|t| TransferInfo {
                transfer_type: t.kind.as_str().to_owned(),
                target: t.target.to_string(),
                stage: format!("{:?}", t.stage).to_lowercase(),
            }),
            call_data: self.call_data.iter().cloned().collect(),
        }
    }
}
