//! The state every part of the server shares: config, transport, call registry, registrar
//! and agent directory, and the counters tests and metrics read.
//!
//! Nothing here is per call. Each mutex guards one small structure for one synchronous
//! operation and is never held across an await (STYLE.md rule 4/5).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::{BufMut, Bytes};
use tokio::sync::broadcast;

use crate::call::registry::CallRegistry;
use crate::call::CallEvent;
use crate::cc::agents::{AgentDirectory, AgentEvent, AgentState, AgentStateChange};
use crate::cc::queue::{Admitted, OfferFailure, QueueAction, QueueSet, Refused};
use crate::config::Config;
use crate::location::Location;
use crate::transaction::TimerConfig;
use crate::transport::{Destination, Protocol, Transport};

/// Counters of the server, read by tests and (later) metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Live transactions of every kind (call actors' and the dispatcher's).
    pub transactions: AtomicUsize,
    /// Messages that did not parse and were dropped or answered 400.
    pub parse_errors: AtomicU64,
    /// Responses that matched no transaction.
    pub stray_responses: AtomicU64,
    /// Requests refused before reaching a call (4xx/5xx from the dispatcher).
    pub rejected_requests: AtomicU64,
    /// Calls started since the server started.
    pub calls_started: AtomicU64,
    /// Retransmissions sent by transactions (requests and responses).
    pub retransmissions: AtomicU64,
    /// Calls with at least one leg still up (a call whose legs have all ended may keep its
    /// actor a little longer, absorbing retransmissions until its transactions end).
    pub active_calls: AtomicUsize,
}

/// A guard that counts one live transaction while it exists.
pub struct TransactionCount(Arc<Endpoint>);

impl std::fmt::Debug for TransactionCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransactionCount")
    }
}

impl Drop for TransactionCount {
    fn drop(&mut self) {
        self.0.counters.transactions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shared server state.
pub struct Endpoint {
    /// The config in force; replaced as a whole on reload (calls keep the `Arc` they took).
    config: std::sync::RwLock<Arc<Config>>,
    pub timers: TimerConfig,
    transport: OnceLock<Transport>,
    pub calls: CallRegistry,
    cc: Mutex<ContactCentre>,
    location: Mutex<Location>,
    pub counters: Counters,
    pub agent_events: broadcast::Sender<AgentStateChange>,
    /// Live events for the control API (SSE).
    pub events: crate::events::EventBus,
    /// Where finished calls' CDRs go, when `[cdr] path` is set.
    pub cdr: OnceLock<crate::cdr::CdrHandle>,
    /// Outcome counters for metrics.
    pub outcomes: Mutex<Outcomes>,
    /// Shutting down: new calls are refused with 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Server transactions no call owns any more: the dispatcher's own (REGISTER, OPTIONS,
    /// 481s) and those of calls that have ended, absorbing retransmissions until their
    /// timers run out, so a finished call's actor can go at once.
    lingering: Mutex<Lingering>,
    /// OPTIONS keep-alives to registered phones in flight.
    probes: Mutex<crate::agent_probe::AgentProbes>,
    /// Per-source rate of new requests (`[limits] requests_per_source`).
    limiter: Mutex<crate::ratelimit::SourceLimiter>,
    /// `Server`/`User-Agent` header value.
    pub user_agent: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a single synchronous update; a panic inside one cannot leave
    // a torn structure that is worse than refusing service, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Endpoint {
    pub fn new(config: Arc<Config>, timers: TimerConfig, now: Instant) -> Arc<Self> {
        let agents = AgentDirectory::new(
            config
                .agents
                .iter()
                .map(|a| (a.id.as_str(), a.skills.clone(), a.contact.is_some())),
            now,
        );
        let location = Location::new(&config, now);
        let queues = config.queues.clone();
        let wrap_up = config.transfer.wrap_up();
        let requests_per_source = config.limits.requests_per_source;
        let (agent_events, _) = broadcast::channel(1024);
        Arc::new(Endpoint {
            user_agent: format!("handover/{}", env!("CARGO_PKG_VERSION")),
            config: std::sync::RwLock::new(config),
            timers,
            transport: OnceLock::new(),
            calls: CallRegistry::default(),
            cc: Mutex::new(ContactCentre {
                queues: QueueSet::new(&queues),
                agents,
                wrap_up,
                changes: Vec::new(),
            }),
            location: Mutex::new(location),
            counters: Counters::default(),
            agent_events,
            events: crate::events::EventBus::new(crate::events::DEFAULT_CAPACITY),
            cdr: OnceLock::new(),
            outcomes: Mutex::new(Outcomes::default()),
            draining: std::sync::atomic::AtomicBool::new(false),
            lingering: Mutex::new(Lingering::default()),
            probes: Mutex::new(crate::agent_probe::AgentProbes::default()),
            limiter: Mutex::new(crate::ratelimit::SourceLimiter::new(requests_per_source)),
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `config` in force (reload). The caller checked it can be applied.
    pub fn replace_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn set_transport(&self, transport: Transport) {
        let _ = self.transport.set(transport);
    }

    pub fn transport(&self) -> Option<&Transport> {
        self.transport.get()
    }

    /// Sends `data` without waiting; a failure is logged (transactions retransmit or time
    /// out, so a lost send surfaces to the TU through them).
    pub fn send(&self, dest: &Destination, data: Bytes) -> bool {
        match self.transport.get() {
            Some(t) => {
                tracing::trace!(to = %dest.addr, protocol = %dest.protocol, len = data.len(), "send");
                match t.send(dest, data) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(to = %dest.addr, error = ?e, "send failed");
                        false
                    }
                }
            }
            None => {
                tracing::warn!("send before the transport was bound");
                false
            }
        }
    }

    /// Sends `messages` in order without waiting (consecutive UDP datagrams in one system
    /// call); returns the destinations a send failed for, each once.
    pub fn send_all(&self, messages: &[(Destination, Bytes)]) -> Vec<Destination> {
        let mut failed: Vec<Destination> = Vec::new();
        let mut note = |dest: &Destination| {
            if !failed.contains(dest) {
                failed.push(*dest);
            }
        };
        match self.transport.get() {
            Some(t) => t.send_all(messages, &mut |dest, error| {
                tracing::debug!(to = %dest.addr, ?error, "send failed");
                note(dest);
            }),
            None => {
                tracing::warn!("send before the transport was bound");
                messages.iter().for_each(|(dest, _)| note(dest));
            }
        }
        failed
    }

    /// handover's Via on a request it sends to `dest` (RFC 3261 §18.1.1), asking for
    /// `rport` (RFC 3581).
    pub fn add_via(&self, b: &mut crate::sip::MessageBuilder, dest: &Destination, branch: &str) {
        let local = crate::sip::HostPort(self.local_addr_for(dest));
        b.header_with("Via", |out| {
            out.put_slice(b"SIP/2.0/");
            out.put_slice(dest.protocol.via_token().as_bytes());
            out.put_u8(b' ');
            local.put(out);
            out.put_slice(b";branch=");
            out.put_slice(branch.as_bytes());
            out.put_slice(b";rport");
        });
    }

    /// The address handover puts in Via and Contact for messages to `dest`.
    pub fn local_addr_for(&self, dest: &Destination) -> SocketAddr {
        let v6 = dest.addr.is_ipv6();
        self.transport
            .get()
            .and_then(|t| {
                t.local_addr(dest.protocol, v6)
                    .or_else(|| t.local_addr(dest.protocol, !v6))
                    .or_else(|| t.local_addr(Protocol::Udp, v6))
            })
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    pub fn count_transaction(self: &Arc<Self>) -> TransactionCount {
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        TransactionCount(Arc::clone(self))
    }

    pub fn location(&self) -> MutexGuard<'_, Location> {
        lock(&self.location)
    }

    pub fn agent_state(&self, id: &str) -> Option<AgentState> {
        lock(&self.cc).agents.state(id)
    }

    /// Runs `f` on the contact centre (agents and queues) in one short critical section,
    /// then carries out the queue decisions it produced, outside the lock.
    pub fn with_cc<R>(&self, f: impl FnOnce(&mut ContactCentre, Instant) -> R) -> R {
        let now = tokio::time::Instant::now().into_std();
        let (result, changes, actions) = {
            let mut cc = lock(&self.cc);
            let result = f(&mut cc, now);
            let changes = std::mem::take(&mut cc.changes);
            let mut actions = Vec::new();
            while let Some(a) = cc.queues.poll_action() {
                actions.push(a);
            }
            (result, changes, actions)
        };
        for change in changes {
            tracing::info!(agent = %change.agent, from = %change.from, to = %change.to, "agent state");
            self.events
                .publish_with(|| crate::events::Event::AgentState {
                    agent: change.agent.clone(),
                    from: change.from.to_string(),
                    to: change.to.to_string(),
                });
            let _ = self.agent_events.send(change);
        }
        self.carry_out(actions);
        result
    }

    pub fn agent_event(&self, id: &str, event: AgentEvent) {
        self.with_cc(|cc, now| cc.apply(id, event, now));
    }

    /// Delivers queue decisions to the call actors they concern. An `AgentNotReady` is
    /// applied to the directory (and may trigger more distribution).
    fn carry_out(&self, actions: Vec<QueueAction>) {
        for action in actions {
            let (call, event) = match action {
                QueueAction::Offer {
                    call,
                    agent,
                    queue,
                    ring_timeout,
                } => (
                    call,
                    CallEvent::QueueOffer(Box::new(crate::call::QueueOffer {
                        agent,
                        queue,
                        ring_timeout,
                    })),
                ),
                QueueAction::OfferTimeout { call, agent } => {
                    (call, CallEvent::QueueOfferTimeout(Box::new(agent)))
                }
                QueueAction::Overflow { call, target } => {
                    (call, CallEvent::QueueOverflow(Box::new(target)))
                }
                QueueAction::Expired { call } => (call, CallEvent::QueueExpired),
                QueueAction::AgentNotReady { agent } => {
                    tracing::info!(agent = %agent, "missed offers: agent set not_ready");
                    self.agent_event(&agent, AgentEvent::SetNotReady(true));
                    continue;
                }
            };
            match self.calls.get(call) {
                Some(handle) => {
                    if handle.deliver(event).is_err() {
                        tracing::warn!(call, "queue decision not delivered: call busy or gone");
                        self.with_cc(|cc, now| cc.queues.leave(call, now));
                    }
                }
                None => {
                    self.with_cc(|cc, now| cc.queues.leave(call, now));
                }
            }
        }
    }

    pub fn queue_join(&self, name: &str, call: u64) -> Result<Admitted, Refused> {
        self.with_cc(|cc, now| {
            let ContactCentre { agents, queues, .. } = cc;
            queues.join(name, call, agents, now)
        })
    }

    pub fn queue_leave(&self, call: u64) {
        self.with_cc(|cc, now| {
            cc.queues.leave(call, now);
            let ContactCentre { agents, queues, .. } = cc;
            queues.agent_available(agents, now);
        });
    }

    pub fn queue_offer_answered(&self, call: u64, agent: &str) {
        self.with_cc(|cc, now| cc.queues.offer_answered(call, agent, now));
    }

    pub fn queue_offer_failed(&self, call: u64, agent: &str, reason: OfferFailure) {
        self.with_cc(|cc, now| {
            let ContactCentre { agents, queues, .. } = cc;
            queues.offer_failed(call, agent, reason, agents, now)
        });
    }

    /// Queue timers (ring timeouts, max waits) and wrap-up ends; the next deadline.
    pub fn queue_timeouts(&self) -> Option<Instant> {
        self.with_cc(|cc, now| {
            if cc.queues.next_deadline().is_some_and(|d| d <= now) {
                cc.queues.handle_timeout(now);
            }
            for agent in cc.agents.wrap_up_due(now) {
                cc.apply(&agent, AgentEvent::WrapUpEnded, now);
            }
            [cc.queues.next_deadline(), cc.agents.next_wrap_up_end()]
                .into_iter()
                .flatten()
                .min()
        })
    }

    pub fn queue_status(&self) -> Vec<crate::cc::queue::QueueStatus> {
        let now = tokio::time::Instant::now().into_std();
        lock(&self.cc).queues.status(now)
    }

    /// A snapshot of every agent: (id, state, skills, registered or static).
    pub fn agents_snapshot(&self) -> Vec<(String, AgentState, Vec<String>)> {
        lock(&self.cc)
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.state(), a.skills.clone()))
            .collect()
    }
}

impl Endpoint {
    /// Reload (DESIGN.md §4, issue: "replaced without dropping a call"): agents, queues, IVR
    /// flows, external numbers and transfer settings from `new`. Listen sockets and timers
    /// need a restart, so a change to them is refused; so is a change to a queue while calls
    /// wait in it (they would lose their place). On any error the old config stays.
    pub fn reload(&self, new: Config) -> Result<(), Vec<String>> {
        let old = self.config();
        let mut errors = Vec::new();
        if new.sip.listen != old.sip.listen {
            errors.push("sip.listen: listen sockets change only on restart".to_owned());
        }
        if new.sip.timers() != old.sip.timers() || new.sip.domain != old.sip.domain {
            errors.push("sip: timers and domain change only on restart".to_owned());
        }
        let now = tokio::time::Instant::now().into_std();
        let waiting: Vec<String> = lock(&self.cc)
            .queues
            .status(now)
            .into_iter()
            .filter(|q| q.waiting > 0)
            .map(|q| q.name)
            .collect();
        if !waiting.is_empty() && old.queues != new.queues {
            errors.push(format!(
                "queues: calls are waiting in {}; change queues when they are empty",
                waiting.join(", ")
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let new = Arc::new(new);
        self.location().reconfigure(&new);
        if new.limits.requests_per_source != old.limits.requests_per_source {
            *self.rate_limiter() =
                crate::ratelimit::SourceLimiter::new(new.limits.requests_per_source);
        }
        self.with_cc(|cc, now| {
            cc.wrap_up = new.transfer.wrap_up();
            cc.agents.reconcile(
                new.agents
                    .iter()
                    .map(|a| (a.id.as_str(), a.skills.clone(), a.contact.is_some())),
                now,
            );
            if old.queues != new.queues {
                cc.queues = QueueSet::new(&new.queues);
            }
            let ContactCentre { agents, queues, .. } = cc;
            queues.agent_available(agents, now);
        });
        self.replace_config(new);
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

impl Endpoint {
    pub fn lingering(&self) -> MutexGuard<'_, Lingering> {
        lock(&self.lingering)
    }

    /// Hands a retransmitted request to the lingering transaction under `key` and sends its
    /// answer (after the table is unlocked). `false` when no transaction has that key.
    pub fn absorb_lingering(
        &self,
        key: &crate::dispatch::LingerKey,
        ack: bool,
        now: Instant,
    ) -> bool {
        let Some((dest, sends)) = self.lingering().absorb(key, ack, now) else {
            return false;
        };
        for bytes in sends {
            self.send(&dest, bytes);
        }
        true
    }

    pub fn probes(&self) -> MutexGuard<'_, crate::agent_probe::AgentProbes> {
        lock(&self.probes)
    }

    pub fn rate_limiter(&self) -> MutexGuard<'_, crate::ratelimit::SourceLimiter> {
        lock(&self.limiter)
    }
}

/// Server transactions kept only to absorb retransmissions (see [`Endpoint::lingering`]):
/// their retransmissions go to a [`Destination`], and each counts as a live transaction.
pub type Lingering =
    crate::transaction::Lingering<crate::dispatch::LingerKey, Destination, TransactionCount>;

/// Counters by label, for metrics.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub calls: std::collections::BTreeMap<String, u64>,
    pub transfers: std::collections::BTreeMap<(String, String), u64>,
    pub rejected: std::collections::BTreeMap<String, u64>,
}

impl Endpoint {
    pub fn outcomes(&self) -> MutexGuard<'_, Outcomes> {
        lock(&self.outcomes)
    }

    /// Counts a request refused before reaching a call, by status code.
    pub fn count_rejected(&self, code: u16) {
        self.counters
            .rejected_requests
            .fetch_add(1, Ordering::Relaxed);
        *lock(&self.outcomes)
            .rejected
            .entry(code.to_string())
            .or_default() += 1;
    }
}

/// Agents and skill queues under one owner, so distribution sees agent states exactly as
/// they are (DESIGN.md §2). Changes are collected and published after the lock is released.
pub struct ContactCentre {
    pub agents: AgentDirectory,
    pub queues: QueueSet,
    /// `[transfer] wrap_up_s`.
    pub wrap_up: std::time::Duration,
    changes: Vec<AgentStateChange>,
}

impl ContactCentre {
    /// Applies an agent event; an agent that became idle is offered waiting calls at once.
    pub fn apply(&mut self, id: &str, event: AgentEvent, now: Instant) {
        // DESIGN.md §2: after a call the agent goes to wrap_up for `wrap_up_s`, then idle.
        let event = match event {
            AgentEvent::CallEnded if !self.wrap_up.is_zero() && self.agents.calls(id) == 1 => {
                let _ = self
                    .agents
                    .apply(id, AgentEvent::WrapUpUntil(now + self.wrap_up), now);
                AgentEvent::CallEnded
            }
            e => e,
        };
        if let Some(change) = self.agents.apply(id, event, now) {
            let idle = change.to == AgentState::Idle;
            self.changes.push(change);
            if idle {
                self.queues.agent_available(&self.agents, now);
            }
        }
    }
}
