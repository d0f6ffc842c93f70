//! Agent accounting of a call's legs (DESIGN.md §2 agent states): which agents are
//! `ringing` (offered) or `talking` on a leg, the leg state changes that drive them, and the
//! agent reserved as `waiting` during a hang-up transfer (DESIGN.md §3).

use super::core::{Call, LegId, LegState};
use crate::cc::agents::AgentEvent;

impl Call {
    // ------------------------------------------------------------------ agent accounting

    pub(super) fn set_offered(&mut self, leg: LegId, on: bool) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.offered == on {
            return;
        }
        l.offered = on;
        if let Some(agent) = l.agent.clone() {
            let ev = if on {
                AgentEvent::Offered
            } else {
                AgentEvent::OfferEnded
            };
            self.ep.agent_event(&agent, ev);
        }
    }

    fn set_talking(&mut self, leg: LegId, on: bool) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.talking == on {
            return;
        }
        l.talking = on;
        if let Some(agent) = l.agent.clone() {
            let ev = if on {
                AgentEvent::CallStarted
            } else {
                AgentEvent::CallEnded
            };
            self.ep.agent_event(&agent, ev);
        }
    }

    /// Moves `leg` to `state`, keeping its agent's counters right.
    pub fn set_leg_state(&mut self, leg: LegId, state: LegState) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        l.state = state;
        match state {
            LegState::Confirmed if l.answered_at.is_none() => l.answered_at = Some(self.now),
            LegState::Terminating | LegState::Ended if l.ended_at.is_none() => {
                l.ended_at = Some(self.now)
            }
            _ => {}
        }
        match state {
            LegState::Calling | LegState::Early => {}
            LegState::Confirmed => {
                // Talking first, so the agent goes ringing → talking without an idle blip.
                self.set_talking(leg, true);
                self.set_offered(leg, false);
            }
            LegState::Terminating | LegState::Ended => {
                self.set_offered(leg, false);
                self.set_talking(leg, false);
            }
        }
    }

    /// Releases everything the call counted for agents (called when the actor ends, so a
    /// lost message never leaves an agent `talking` or `ringing`).
    pub fn release_agents(&mut self) {
        for leg in 0..self.legs.len() {
            self.set_offered(leg, false);
            self.set_talking(leg, false);
        }
        self.unreserve_agent();
    }

    /// Reserves `agent` for this call (`waiting`, hang-up transfer).
    pub fn reserve_agent(&mut self, agent: &str) {
        if self.reserved_agent.is_none() {
            self.reserved_agent = Some(agent.to_owned());
            self.ep.agent_event(agent, AgentEvent::WaitingStarted);
        }
    }

    pub fn unreserve_agent(&mut self) {
        self.waiting_until = None;
        if let Some(agent) = self.reserved_agent.take() {
            self.ep.agent_event(&agent, AgentEvent::WaitingEnded);
        }
    }
}
