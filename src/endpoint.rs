//! The state every part of the server shares: config, transport, call registry, registrar
//! and agent directory, and the counters tests and metrics read.
//!
//! Nothing here is per call. Each mutex guards one small structure for one synchronous
//! operation and is never held across an await (STYLE.md rule 4/5).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::call::registry::CallRegistry;
use crate::cc::agents::{AgentDirectory, AgentEvent, AgentStateChange};
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
    pub config: Arc<Config>,
    pub timers: TimerConfig,
    transport: OnceLock<Transport>,
    pub calls: CallRegistry,
    agents: Mutex<AgentDirectory>,
    location: Mutex<Location>,
    pub counters: Counters,
    pub agent_events: broadcast::Sender<AgentStateChange>,
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
        let (agent_events, _) = broadcast::channel(1024);
        Arc::new(Endpoint {
            user_agent: format!("handover/{}", env!("CARGO_PKG_VERSION")),
            config,
            timers,
            transport: OnceLock::new(),
            calls: CallRegistry::default(),
            agents: Mutex::new(agents),
            location: Mutex::new(location),
            counters: Counters::default(),
            agent_events,
        })
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

    pub fn agent_state(&self, id: &str) -> Option<crate::cc::agents::AgentState> {
        lock(&self.agents).state(id)
    }

    pub fn agent_event(&self, id: &str, event: AgentEvent) {
        let change = lock(&self.agents).apply(id, event, Instant::now());
        if let Some(change) = change {
            tracing::info!(agent = %change.agent, from = %change.from, to = %change.to, "agent state");
            let _ = self.agent_events.send(change);
        }
    }
}
