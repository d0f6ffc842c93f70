//! Skill queues (DESIGN.md §2): the single owner of every queue's waiting calls, as a sans-IO
//! state machine.
//!
//! ```text
//!  join ──admitted──► waiting ──distribution──► offered (agent ringing) ──answered──► gone
//!    │                 ▲  │                      │   │
//!    └─refused         │  └─max_wait─► Overflow  │   └─ring_timeout─► OfferTimeout (lead CANCELs,
//!   (Unknown, Full,    │     or Expired (480)    │                    then reports offer_failed)
//!    NoAgents)         └──── offer_failed ───────┘   (back at the head: keeps its place)
//!  leave (customer hung up): gone at once, from any state, with its timers.
//! ```
//!
//! Contract:
//! - Admission: an unknown queue, a full queue (`max_waiting` counts every call still in it,
//!   ringing ones included) or — with `when_no_agents = "refuse"` — a queue none of whose agents
//!   is logged in, refuses the call with a [`Refused`] reason; the caller keeps the call (an
//!   INVITE is answered with an error, a release transfer leaves the customer with the agent,
//!   DESIGN §3). Otherwise the call waits, in FIFO order.
//! - Distribution runs the moment something can change a pairing: after [`QueueSet::join`],
//!   after [`QueueSet::offer_failed`], and on [`QueueSet::agent_available`] (the lead calls it
//!   whenever an agent becomes `idle`). No polling. The oldest waiting call across all queues
//!   is served first; it goes to the longest-idle `idle` agent that has its queue's skill and is
//!   not already being offered a call by this set. Pending offers are tracked here because the
//!   agent directory may lag behind the offers in flight. One call is offered to at most one
//!   agent, one agent is offered at most one call.
//! - An agent who just missed an offer counts as idle since that moment, so other idle agents
//!   are tried before it is rung again.
//! - `max_missed_offers` consecutive failed offers (no answer, busy or error) make the agent
//!   `not_ready`: [`QueueAction::AgentNotReady`] is emitted once per run of misses and the agent
//!   is not offered anything further in that pass. An answered offer resets the count.
//! - `max_wait_s` is not enforced while the call is being offered (the agent's phone is ringing
//!   and the customer may be served); if that offer fails after the wait ran out, the call
//!   overflows at once instead of returning to the queue.
//!
//! Driving it: the owner (one task, or a mutex never held across an await) calls one method,
//! then drains [`QueueSet::poll_action`] and executes the actions in order before calling in
//! again (in particular it applies `AgentNotReady` to the agent directory), and re-arms one
//! timer at [`QueueSet::next_deadline`]. Every offer must end in exactly one of
//! `offer_answered`, `offer_failed` or `leave`, or the agent stays reserved.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::cc::agents::{Agent, AgentDirectory, AgentState};
use crate::config::{Queue, Target, WhenNoAgents};

/// The call actor's key: how the lead names a call to the queues.
pub type CallRef = u64;

/// A successful admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// 1-based place in the queue on admission (1 = next to be served).
    pub position: usize,
}

/// Why a call was not admitted; the text is fit for a SIP Warning header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no queue named `{0}`")]
    Unknown(String),
    #[error("queue `{0}` is full")]
    Full(String),
    #[error("no agent of queue `{0}` is logged in")]
    NoAgents(String),
    /// The call is already in a queue (it must `leave` or be handed out first).
    #[error("the call is already in queue `{0}`")]
    AlreadyQueued(String),
}

/// How an offer to an agent ended without the agent taking the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferFailure {
    /// Ring timeout, or the agent's phone stopped ringing without answering.
    NoAnswer,
    /// The agent's phone declined (486/600/603).
    Busy,
    /// Any other failure of the agent leg (unreachable, 4xx/5xx).
    Error,
}

/// A decision for the lead to execute, in the order they are polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Ring `agent` with `call`; report the outcome with `offer_answered`/`offer_failed`.
    Offer {
        call: CallRef,
        agent: String,
        queue: String,
        ring_timeout: Duration,
    },
    /// The offer rang out: CANCEL the agent leg, then report `offer_failed(NoAnswer)`.
    OfferTimeout { call: CallRef, agent: String },
    /// `max_wait_s` passed: the call has left the queue and goes to `target`.
    Overflow { call: CallRef, target: Target },
    /// `max_wait_s` passed without an overflow target: the call has left the queue (480).
    Expired { call: CallRef },
    /// The agent missed `max_missed_offers` offers in a row: set it `not_ready`.
    AgentNotReady { agent: String },
}

/// One queue's numbers, for the control API and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub name: String,
    /// Calls in the queue, those being offered included.
    pub waiting: usize,
    /// How long the oldest call in the queue has been in it (zero when empty).
    pub longest_wait: Duration,
    /// Calls currently ringing an agent.
    pub offers_pending: usize,
}

/// Every configured queue and every call in one of them.
#[derive(Debug)]
pub struct QueueSet {
    queues: Vec<QueueState>,
    by_name: HashMap<String, usize>,
    calls: HashMap<CallRef, QueuedCall>,
    /// Agent id → the call it is being offered (the directory may not show `ringing` yet).
    offering: HashMap<String, CallRef>,
    /// Consecutive failed offers per agent.
    missed: HashMap<String, u32>,
    /// When each agent's last offer failed: it ranks as idle since then.
    offer_ended: HashMap<String, Instant>,
    actions: VecDeque<QueueAction>,
    next_seq: u64,
}

#[derive(Debug)]
struct QueueState {
    config: Queue,
    /// Calls not being offered, oldest (lowest seq) first.
    waiting: VecDeque<CallRef>,
    /// Calls in this queue: `waiting` plus those being offered. Bounded by `max_waiting`.
    members: usize,
}

#[derive(Debug)]
struct QueuedCall {
    queue: usize,
    /// Join order across all queues: ties between equal instants and the FIFO order.
    seq: u64,
    joined: Instant,
    /// `None`: the wait limit is beyond what `Instant` can represent.
    wait_until: Option<Instant>,
    state: CallState,
}

#[derive(Debug)]
enum CallState {
    Waiting,
    Offered { agent: String, phase: OfferPhase },
}

#[derive(Debug)]
enum OfferPhase {
    Ringing {
        until: Option<Instant>,
    },
    /// `OfferTimeout` was emitted; waiting for the lead's `offer_failed` (or a late answer).
    TimedOut,
}

impl QueueSet {
    pub fn new(queues: &[Queue]) -> Self {
        let queues: Vec<QueueState> = queues
            .iter()
            .map(|q| QueueState {
                config: q.clone(),
                waiting: VecDeque::new(),
                members: 0,
            })
            .collect();
        let by_name = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.config.name.clone(), i))
            .collect();
        QueueSet {
            queues,
            by_name,
            calls: HashMap::new(),
            offering: HashMap::new(),
            missed: HashMap::new(),
            offer_ended: HashMap::new(),
            actions: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// A call asks to join queue `name`: a customer dialled its number, or an agent's release
    /// transfer targets it. On success the call waits at the tail and distribution runs at
    /// once (an `Offer` may already be queued).
    pub fn join(
        &mut self,
        name: &str,
        call: CallRef,
        agents: &AgentDirectory,
        now: Instant,
    ) -> Result<Admitted, Refused> {
        let qi = *self
            .by_name
            .get(name)
            .ok_or_else(|| Refused::Unknown(name.to_owned()))?;
        if let Some(c) = self.calls.get(&call) {
            return Err(Refused::AlreadyQueued(self.queue_name(c.queue).to_owned()));
        }
        let q = self
            .queues
            .get_mut(qi)
            .ok_or_else(|| Refused::Unknown(name.to_owned()))?;
        if q.members >= q.config.max_waiting {
            return Err(Refused::Full(name.to_owned()));
        }
        if q.config.when_no_agents == WhenNoAgents::Refuse
            && !agents
                .iter()
                .any(|a| a.state() != AgentState::LoggedOut && has_skill(a, &q.config.skill))
        {
            return Err(Refused::NoAgents(name.to_owned()));
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        // The new call has the highest seq, so the tail keeps `waiting` sorted.
        q.waiting.push_back(call);
        q.members = q.members.saturating_add(1);
        let position = q.members;
        self.calls.insert(
            call,
            QueuedCall {
                queue: qi,
                seq,
                joined: now,
                wait_until: now.checked_add(q.config.max_wait()),
                state: CallState::Waiting,
            },
        );
        tracing::debug!(call, queue = name, position, "call joined queue");
        self.distribute(agents, now, None);
        Ok(Admitted { position })
    }

    /// The call left (customer hung up, or it went elsewhere): removed at once with its timers
    /// and any undelivered action about it. An agent it was being offered to is free again for
    /// this set; the call actor cancels that agent leg itself. Returns whether it was queued.
    pub fn leave(&mut self, call: CallRef, _now: Instant) -> bool {
        let Some(c) = self.remove_call(call) else {
            return false;
        };
        if let CallState::Offered { agent, .. } = &c.state {
            self.release_agent(agent, call);
        }
        self.actions.retain(|a| a.call() != Some(call));
        tracing::debug!(call, queue = self.queue_name(c.queue), "call left queue");
        true
    }

    /// The agent answered the offer: the call leaves the queue, the agent's missed-offer count
    /// is reset. Returns false (and changes nothing) if `call` is not being offered to `agent`.
    pub fn offer_answered(&mut self, call: CallRef, agent: &str, _now: Instant) -> bool {
        if !self.is_offered_to(call, agent) {
            return false;
        }
        self.remove_call(call);
        self.release_agent(agent, call);
        self.missed.remove(agent);
        tracing::debug!(call, agent, "queue offer answered");
        true
    }

    /// The offer failed: the call goes back to the head of its queue (it keeps its place by
    /// join order), the agent's miss is counted, and distribution runs again. Returns false
    /// (and changes nothing) if `call` is not being offered to `agent`.
    pub fn offer_failed(
        &mut self,
        call: CallRef,
        agent: &str,
        reason: OfferFailure,
        agents: &AgentDirectory,
        now: Instant,
    ) -> bool {
        if !self.is_offered_to(call, agent) {
            return false;
        }
        self.release_agent(agent, call);
        self.offer_ended.insert(agent.to_owned(), now);
        tracing::debug!(call, agent, ?reason, "queue offer failed");

        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let qi = c.queue;
        let threshold = self
            .queues
            .get(qi)
            .map_or(0, |q| q.config.max_missed_offers);
        let misses = self
            .missed
            .get(agent)
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        let benched = threshold > 0 && misses >= threshold;
        if benched {
            self.missed.remove(agent);
            self.actions.push_back(QueueAction::AgentNotReady {
                agent: agent.to_owned(),
            });
        } else {
            self.missed.insert(agent.to_owned(), misses);
        }

        if c.wait_until.is_some_and(|t| t <= now) {
            // The wait ran out while the agent was ringing: no second round in this queue.
            self.expire(call);
        } else {
            c.state = CallState::Waiting;
            let seq = c.seq;
            if let Some(q) = self.queues.get_mut(qi) {
                let calls = &self.calls;
                let at = q
                    .waiting
                    .iter()
                    .position(|w| calls.get(w).is_some_and(|o| o.seq > seq))
                    .unwrap_or(q.waiting.len());
                q.waiting.insert(at, call);
            }
        }
        // The lead applies AgentNotReady after this returns: keep the agent out of this pass.
        self.distribute(agents, now, benched.then_some(agent));
        true
    }

    /// An agent became available (idle after login, a call, wrap-up or not_ready): pair
    /// waiting calls with idle agents. Cheap when nothing waits.
    pub fn agent_available(&mut self, agents: &AgentDirectory, now: Instant) {
        self.distribute(agents, now, None);
    }

    /// The next decision for the lead, oldest first.
    pub fn poll_action(&mut self) -> Option<QueueAction> {
        self.actions.pop_front()
    }

    /// The earliest timer: a waiting call's `max_wait_s` or a ringing offer's `ring_timeout_s`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.calls.values().filter_map(QueuedCall::deadline).min()
    }

    /// Fires every timer due at `now`, oldest deadline first.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, u64, CallRef)> = self
            .calls
            .iter()
            .filter_map(|(&call, c)| c.deadline().map(|t| (t, c.seq, call)))
            .filter(|&(t, _, _)| t <= now)
            .collect();
        due.sort_unstable();
        for (_, _, call) in due {
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            match &mut c.state {
                CallState::Waiting => self.expire(call),
                CallState::Offered { agent, phase } => {
                    *phase = OfferPhase::TimedOut;
                    tracing::debug!(call, agent = agent.as_str(), "queue offer timed out");
                    self.actions.push_back(QueueAction::OfferTimeout {
                        call,
                        agent: agent.clone(),
                    });
                }
            }
        }
    }

    /// Every queue in configuration order.
    pub fn status(&self, now: Instant) -> Vec<QueueStatus> {
        let mut out: Vec<QueueStatus> = self
            .queues
            .iter()
            .map(|q| QueueStatus {
                name: q.config.name.clone(),
                waiting: q.members,
                longest_wait: Duration::ZERO,
                offers_pending: q.members.saturating_sub(q.waiting.len()),
            })
            .collect();
        for c in self.calls.values() {
            if let Some(s) = out.get_mut(c.queue) {
                s.longest_wait = s.longest_wait.max(now.saturating_duration_since(c.joined));
            }
        }
        out
    }

    /// The queue a call is in and its 1-based place there (calls being offered count, ahead
    /// of those still waiting).
    pub fn position(&self, call: CallRef) -> Option<(String, usize)> {
        let c = self.calls.get(&call)?;
        let ahead = self
            .calls
            .values()
            .filter(|o| o.queue == c.queue && o.seq < c.seq)
            .count();
        Some((self.queue_name(c.queue).to_owned(), ahead.saturating_add(1)))
    }

    /// The agent `call` is being offered to, if any.
    pub fn offered_to(&self, call: CallRef) -> Option<&str> {
        match &self.calls.get(&call)?.state {
            CallState::Offered { agent, .. } => Some(agent),
            CallState::Waiting => None,
        }
    }

    /// Pairs waiting calls with idle agents until no pair is left: the oldest call first
    /// (across queues), each to the longest-idle eligible agent.
    fn distribute(&mut self, agents: &AgentDirectory, now: Instant, exclude: Option<&str>) {
        loop {
            let mut heads: Vec<(Instant, u64, usize, CallRef)> = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(qi, q)| {
                    let call = *q.waiting.front()?;
                    let c = self.calls.get(&call)?;
                    Some((c.joined, c.seq, qi, call))
                })
                .collect();
            if heads.is_empty() {
                return;
            }
            heads.sort_unstable();
            // Within a queue every call needs the same skill: if its head finds no agent, no
            // call of that queue does, so only heads need trying.
            let pair = heads.iter().find_map(|&(_, _, qi, call)| {
                let skill = &self.queues.get(qi)?.config.skill;
                let agent = self.pick_agent(skill, agents, exclude)?;
                Some((qi, call, agent.id.clone()))
            });
            let Some((qi, call, agent)) = pair else {
                return;
            };
            if !self.offer(qi, call, agent, now) {
                return; // unreachable: the pair came from a queue head; never spin
            }
        }
    }

    /// The longest-idle agent in state `idle` with `skill`, not being offered a call.
    fn pick_agent<'a>(
        &self,
        skill: &str,
        agents: &'a AgentDirectory,
        exclude: Option<&str>,
    ) -> Option<&'a Agent> {
        agents
            .iter()
            .filter(|a| {
                a.state() == AgentState::Idle
                    && has_skill(a, skill)
                    && !self.offering.contains_key(&a.id)
                    && exclude != Some(a.id.as_str())
            })
            .min_by(|a, b| {
                self.idle_rank(a)
                    .cmp(&self.idle_rank(b))
                    .then_with(|| a.id.cmp(&b.id))
            })
    }

    fn idle_rank(&self, agent: &Agent) -> Instant {
        match self.offer_ended.get(&agent.id) {
            Some(&t) => t.max(agent.idle_since),
            None => agent.idle_since,
        }
    }

    /// Offers the head `call` of queue `qi` to `agent`; false if `call` is not that head.
    fn offer(&mut self, qi: usize, call: CallRef, agent: String, now: Instant) -> bool {
        let Some(q) = self.queues.get_mut(qi) else {
            return false;
        };
        if q.waiting.front() != Some(&call) {
            return false;
        }
        q.waiting.pop_front();
        let ring_timeout = q.config.ring_timeout();
        let queue = q.config.name.clone();
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Offered {
                agent: agent.clone(),
                phase: OfferPhase::Ringing {
                    until: now.checked_add(ring_timeout),
                },
            };
        }
        self.offering.insert(agent.clone(), call);
        tracing::debug!(
            call,
            agent = agent.as_str(),
            queue = queue.as_str(),
            "queue offer"
        );
        self.actions.push_back(QueueAction::Offer {
            call,
            agent,
            queue,
            ring_timeout,
        });
        true
    }

    /// Removes a call for good and emits where it goes (overflow target or 480).
    fn expire(&mut self, call: CallRef) {
        let Some(c) = self.remove_call(call) else {
            return;
        };
        let overflow = self
            .queues
            .get(c.queue)
            .and_then(|q| q.config.overflow.clone());
        tracing::debug!(call, queue = self.queue_name(c.queue), "queue wait expired");
        self.actions.push_back(match overflow {
            Some(target) => QueueAction::Overflow { call, target },
            None => QueueAction::Expired { call },
        });
    }

    /// Takes a call out of every structure but the agent bookkeeping.
    fn remove_call(&mut self, call: CallRef) -> Option<QueuedCall> {
        let c = self.calls.remove(&call)?;
        if let Some(q) = self.queues.get_mut(c.queue) {
            q.members = q.members.saturating_sub(1);
            if matches!(c.state, CallState::Waiting) {
                q.waiting.retain(|&w| w != call);
            }
        }
        Some(c)
    }

    fn release_agent(&mut self, agent: &str, call: CallRef) {
        if self.offering.get(agent) == Some(&call) {
            self.offering.remove(agent);
        }
    }

    fn is_offered_to(&self, call: CallRef, agent: &str) -> bool {
        self.offered_to(call) == Some(agent)
    }

    fn queue_name(&self, qi: usize) -> &str {
        self.queues.get(qi).map_or("", |q| q.config.name.as_str())
    }
}

impl QueuedCall {
    /// The one timer that runs in this state (`max_wait_s` is not enforced while an agent
    /// rings; `offer_failed` checks it).
    fn deadline(&self) -> Option<Instant> {
        match &self.state {
            CallState::Waiting => self.wait_until,
            CallState::Offered {
                phase: OfferPhase::Ringing { until },
                ..
            } => *until,
            CallState::Offered {
                phase: OfferPhase::TimedOut,
                ..
            } => None,
        }
    }
}

impl QueueAction {
    /// The call the action is about (`AgentNotReady` is about an agent only).
    pub fn call(&self) -> Option<CallRef> {
        match self {
            QueueAction::Offer { call, .. }
            | QueueAction::OfferTimeout { call, .. }
            | QueueAction::Overflow { call, .. }
            | QueueAction::Expired { call } => Some(*call),
            QueueAction::AgentNotReady { .. } => None,
        }
    }
}

fn has_skill(agent: &Agent, skill: &str) -> bool {
    agent.skills.iter().any(|s| s == skill)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
