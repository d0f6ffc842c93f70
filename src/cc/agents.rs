//! Agent directory: who the agents are and what state each one is in (DESIGN.md §2).
//!
//! ```text
//!  logged_out ──REGISTER──► idle ──offered──► ringing ──answered──► talking
//!       ▲                    ▲  ◄──missed/failed──┘                     │
//!       └──binding expired───┘  ◄────────────── call released ─────────┘
//!  not_ready: set by the operator (control API); an agent with a call keeps `talking`.
//! ```
//!
//! The state is *derived* from a few counters (bindings, calls offered, calls answered) and
//! the operator's `not_ready` flag, so a lost event can never leave a stale state behind:
//! when a call actor ends, its Drop guard releases what it counted, and the state heals.
//! The directory is a plain struct; its owner serialises access (one short mutex section per
//! change, never held across an await).

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

/// The externally visible state of an agent (DESIGN.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    LoggedOut,
    Idle,
    Ringing,
    Talking,
    Waiting,
    WrapUp,
    NotReady,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Idle => "idle",
            AgentState::Ringing => "ringing",
            AgentState::Talking => "talking",
            AgentState::Waiting => "waiting",
            AgentState::WrapUp => "wrap_up",
            AgentState::NotReady => "not_ready",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One agent's bookkeeping.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub skills: Vec<String>,
    /// Agents with a static contact are reachable without registering.
    pub static_contact: bool,
    registered: bool,
    not_ready: bool,
    offers: u32,
    calls: u32,
    waiting: u32,
    /// In wrap-up after a call until this time (`[transfer] wrap_up_s`).
    wrap_up_until: Option<Instant>,
    /// When the agent last became idle: queues offer to the longest-idle agent.
    pub idle_since: Instant,
}

impl Agent {
    pub fn state(&self) -> AgentState {
        if !self.registered && !self.static_contact {
            AgentState::LoggedOut
        } else if self.calls > 0 {
            AgentState::Talking
        } else if self.waiting > 0 {
            AgentState::Waiting
        } else if self.offers > 0 {
            AgentState::Ringing
        } else if self.wrap_up_until.is_some() {
            AgentState::WrapUp
        } else if self.not_ready {
            AgentState::NotReady
        } else {
            AgentState::Idle
        }
    }
}

/// A state change, published for the control API and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStateChange {
    pub agent: String,
    pub from: AgentState,
    pub to: AgentState,
}

/// What happened to one agent; each variant adjusts one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent {
    LoggedIn,
    LoggedOut,
    Offered,
    OfferEnded,
    CallStarted,
    CallEnded,
    /// Wrap-up after a call, until the given time (`[transfer] wrap_up_s`).
    WrapUpUntil(Instant),
    WrapUpEnded,
    /// Reserved for a call that will come back (hang-up transfer).
    WaitingStarted,
    WaitingEnded,
    SetNotReady(bool),
}

/// Every configured agent and its state.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    agents: HashMap<String, Agent>,
}

impl AgentDirectory {
    pub fn new<'a>(
        agents: impl IntoIterator<Item = (&'a str, Vec<String>, bool)>,
        now: Instant,
    ) -> Self {
        let agents = agents
            .into_iter()
            .map(|(id, skills, static_contact)| {
                (
                    id.to_owned(),
                    Agent {
                        id: id.to_owned(),
                        skills,
                        static_contact,
                        registered: false,
                        not_ready: false,
                        offers: 0,
                        calls: 0,
                        waiting: 0,
                        wrap_up_until: None,
                        idle_since: now,
                    },
                )
            })
            .collect();
        AgentDirectory { agents }
    }

    pub fn get(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    pub fn state(&self, id: &str) -> Option<AgentState> {
        self.agents.get(id).map(Agent::state)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    /// Reload: agents in `agents` are added or get their new skills (an agent keeps its
    /// state and counters); agents no longer configured are removed.
    pub fn reconcile<'a>(
        &mut self,
        agents: impl IntoIterator<Item = (&'a str, Vec<String>, bool)>,
        now: Instant,
    ) {
        let mut keep = std::collections::HashSet::new();
        for (id, skills, static_contact) in agents {
            keep.insert(id.to_owned());
            match self.agents.get_mut(id) {
                Some(a) => {
                    a.skills = skills;
                    a.static_contact = static_contact;
                }
                None => {
                    self.agents.insert(
                        id.to_owned(),
                        Agent {
                            id: id.to_owned(),
                            skills,
                            static_contact,
                            registered: false,
                            not_ready: false,
                            offers: 0,
                            calls: 0,
                            waiting: 0,
                            wrap_up_until: None,
                            idle_since: now,
                        },
                    );
                }
            }
        }
        self.agents.retain(|id, _| keep.contains(id));
    }

    /// Agents whose wrap-up is over at `now`.
    pub fn wrap_up_due(&self, now: Instant) -> Vec<String> {
        self.agents
            .values()
            .filter(|a| a.wrap_up_until.is_some_and(|t| t <= now))
            .map(|a| a.id.clone())
            .collect()
    }

    /// The earliest end of a wrap-up.
    pub fn next_wrap_up_end(&self) -> Option<Instant> {
        self.agents.values().filter_map(|a| a.wrap_up_until).min()
    }

    /// Calls the agent is in right now.
    pub fn calls(&self, id: &str) -> u32 {
        self.agents.get(id).map_or(0, |a| a.calls)
    }

    /// Applies `event` to agent `id`; returns the state change, if the state changed.
    pub fn apply(&mut self, id: &str, event: AgentEvent, now: Instant) -> Option<AgentStateChange> {
        let agent = self.agents.get_mut(id)?;
        let before = agent.state();
        match event {
            AgentEvent::LoggedIn => agent.registered = true,
            AgentEvent::LoggedOut => agent.registered = false,
            AgentEvent::Offered => agent.offers = agent.offers.saturating_add(1),
            AgentEvent::OfferEnded => agent.offers = agent.offers.saturating_sub(1),
            AgentEvent::CallStarted => agent.calls = agent.calls.saturating_add(1),
            AgentEvent::CallEnded => agent.calls = agent.calls.saturating_sub(1),
            AgentEvent::WrapUpUntil(until) => agent.wrap_up_until = Some(until),
            AgentEvent::WrapUpEnded => agent.wrap_up_until = None,
            AgentEvent::WaitingStarted => agent.waiting = agent.waiting.saturating_add(1),
            AgentEvent::WaitingEnded => agent.waiting = agent.waiting.saturating_sub(1),
            AgentEvent::SetNotReady(on) => agent.not_ready = on,
        }
        let after = agent.state();
        if after == AgentState::Idle && before != AgentState::Idle {
            agent.idle_since = now;
        }
        (before != after).then(|| AgentStateChange {
            agent: id.to_owned(),
            from: before,
            to: after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> AgentDirectory {
        AgentDirectory::new(
            [
                ("1001", vec!["sales".to_owned()], false),
                ("2001", vec![], true),
            ],
            Instant::now(),
        )
    }

    #[test]
    fn registration_is_login_and_expiry_is_logout() {
        let mut d = directory();
        let now = Instant::now();
        assert_eq!(d.state("1001"), Some(AgentState::LoggedOut));
        let change = d.apply("1001", AgentEvent::LoggedIn, now).unwrap();
        assert_eq!(
            (change.from, change.to),
            (AgentState::LoggedOut, AgentState::Idle)
        );
        assert!(d.apply("1001", AgentEvent::LoggedIn, now).is_none());
        d.apply("1001", AgentEvent::LoggedOut, now);
        assert_eq!(d.state("1001"), Some(AgentState::LoggedOut));
    }

    #[test]
    fn static_contact_agents_are_idle_without_registering() {
        assert_eq!(directory().state("2001"), Some(AgentState::Idle));
    }

    #[test]
    fn offer_answer_release_cycle() {
        let mut d = directory();
        let now = Instant::now();
        d.apply("1001", AgentEvent::LoggedIn, now);
        d.apply("1001", AgentEvent::Offered, now);
        assert_eq!(d.state("1001"), Some(AgentState::Ringing));
        d.apply("1001", AgentEvent::CallStarted, now);
        d.apply("1001", AgentEvent::OfferEnded, now);
        assert_eq!(d.state("1001"), Some(AgentState::Talking));
        d.apply("1001", AgentEvent::SetNotReady(true), now);
        assert_eq!(
            d.state("1001"),
            Some(AgentState::Talking),
            "a call outranks not_ready"
        );
        d.apply("1001", AgentEvent::CallEnded, now);
        assert_eq!(d.state("1001"), Some(AgentState::NotReady));
        d.apply("1001", AgentEvent::SetNotReady(false), now);
        assert_eq!(d.state("1001"), Some(AgentState::Idle));
    }

    #[test]
    fn wrap_up_holds_the_agent_until_it_ends() {
        let mut d = directory();
        let now = Instant::now();
        d.apply("1001", AgentEvent::LoggedIn, now);
        d.apply("1001", AgentEvent::CallStarted, now);
        d.apply("1001", AgentEvent::CallEnded, now);
        let until = now + std::time::Duration::from_secs(5);
        d.apply("1001", AgentEvent::WrapUpUntil(until), now);
        assert_eq!(d.state("1001"), Some(AgentState::WrapUp));
        assert!(d.wrap_up_due(now).is_empty());
        assert_eq!(d.wrap_up_due(until), vec!["1001".to_owned()]);
        d.apply("1001", AgentEvent::WrapUpEnded, until);
        assert_eq!(d.state("1001"), Some(AgentState::Idle));
    }

    #[test]
    fn counters_never_underflow() {
        let mut d = directory();
        let now = Instant::now();
        d.apply("2001", AgentEvent::CallEnded, now);
        d.apply("2001", AgentEvent::OfferEnded, now);
        assert_eq!(d.state("2001"), Some(AgentState::Idle));
        assert!(d.apply("nobody", AgentEvent::LoggedIn, now).is_none());
    }
}
