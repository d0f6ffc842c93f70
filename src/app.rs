//! Starting and stopping the server: binds the transport, wires the dispatcher, runs the
//! housekeeping task (dispatcher transaction timers, registration expiry), and shuts down
//! on request (STYLE.md rule 6: shutdown is a parameter, shared by `main` and the tests).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cc::agents::AgentEvent;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::endpoint::Endpoint;
use crate::transaction::TimerConfig;
use crate::transport::{self, Protocol, Transport};

/// What tests and metrics read about a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls with a leg still up.
    pub active_calls: usize,
    /// Call actors alive, including calls whose legs have ended but whose last transactions
    /// still absorb retransmissions (up to 64·T1).
    pub call_actors: usize,
    /// Peers' initial INVITEs (Call-ID, From tag) remembered for their calls' lifetime, to
    /// route retransmissions and CANCEL; 0 once every call actor has ended.
    pub initial_invites: usize,
    /// Live SIP transactions of every kind.
    pub transactions: usize,
    /// Stored registrar bindings.
    pub registrations: usize,
    /// Messages that did not parse.
    pub parse_errors: u64,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid timers: {0}")]
    Timers(#[from] crate::transaction::TimerConfigError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("no tokio runtime: {0}")]
    Runtime(String),
    #[error("cannot open the CDR file {0}")]
    Cdr(String),
    #[error("cannot start the control API on {0}")]
    Http(String),
}

/// A running server.
pub struct RunningServer {
    ep: Arc<Endpoint>,
    transport: Transport,
    shutdown: watch::Sender<bool>,
    housekeeping: JoinHandle<()>,
    api: Option<crate::api::ApiServer>,
    cdr: Option<crate::cdr::CdrWriter>,
    control: Arc<crate::control::ControlPlane>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Binds every `[sip] listen` socket and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    start_from(config, None).await
}

/// [`start`] remembering the file the config came from, for reloads (SIGHUP, API).
pub async fn start_from(
    config: Config,
    config_path: Option<std::path::PathBuf>,
) -> Result<RunningServer, StartError> {
    let (t1, t2, t4) = config.sip.timers();
    let timers = TimerConfig::new(t1, t2, t4)?;
    let config = Arc::new(config);
    let ep = Endpoint::new(Arc::clone(&config), timers, now());
    let dispatcher = Dispatcher::new(Arc::clone(&ep));
    let limits = transport::Limits {
        max_message_bytes: config.sip.max_message_bytes,
        max_connections: config.sip.max_tcp_connections,
        max_connections_per_ip: config.limits.tcp_connections_per_source,
        tcp_idle_timeout: config.sip.tcp_idle_timeout(),
        max_buffered_bytes: config.limits.tcp_buffered_bytes,
        slow_sender_timeout: Duration::from_secs(config.limits.slow_sender_timeout_s.max(1)),
        ..transport::Limits::default()
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let transport = Transport::bind(
        &config.sip.listen,
        limits,
        dispatcher.clone(),
        shutdown_rx.clone(),
    )
    .await?;
    ep.set_transport(transport.clone());
    for (protocol, addr) in transport.local_addrs() {
        tracing::info!(%protocol, %addr, "listening");
    }
    let cdr = match &config.cdr.path {
        Some(path) => {
            let writer = crate::cdr::CdrWriter::open(path.clone(), config.cdr.flush_interval())
                .await
                .map_err(|e| StartError::Cdr(format!("{}: {e}", path.display())))?;
            let _ = ep.cdr.set(writer.handle());
            Some(writer)
        }
        None => None,
    };
    let control = Arc::new(crate::control::ControlPlane::new(
        Arc::clone(&ep),
        config_path,
    ));
    let api = if config.http.enabled {
        let server = crate::api::serve(
            config.http.listen,
            config.http.token.clone(),
            control.clone(),
            shutdown_rx.clone(),
        )
        .await
        .map_err(|e| StartError::Http(format!("{}: {e}", config.http.listen)))?;
        Some(server)
    } else {
        None
    };
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&ep), dispatcher, shutdown_rx));
    Ok(RunningServer {
        ep,
        transport,
        shutdown,
        housekeeping,
        api,
        cdr,
        control,
    })
}

/// The finest resolution of the housekeeping timers.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(10);

/// Timers that belong to no call: the dispatcher's transactions and binding expiry.
async fn housekeeping(
    ep: Arc<Endpoint>,
    dispatcher: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = now();
        let next_txn = dispatcher.handle_timeouts(now);
        let expired = ep.location().expire(now);
        for aor in expired {
            tracing::info!(agent = %aor, "registration expired");
            ep.agent_event(&aor, AgentEvent::LoggedOut);
        }
        let next_expiry = ep.location().next_expiry();
        let next_queue = ep.queue_timeouts();
        let next_probe = crate::agent_probe::run(&ep, now);
        // Wake at the earliest timer, and at least every 200 ms: the dispatcher's table is
        // filled from receive tasks, which do not wake this task.
        let mut wake = now + Duration::from_millis(200);
        for d in [next_txn, next_expiry, next_queue, next_probe]
            .into_iter()
            .flatten()
        {
            wake = wake.min(d);
        }
        // Batch timers at least HOUSEKEEPING_TICK apart: under load a lingering transaction
        // expires every few hundred microseconds, and waking for each would cost more than the
        // work. Every timer here (Timer G/J, OPTIONS probes, queue and wrap-up deadlines,
        // binding expiry) is coarser than that by far.
        wake = wake.max(now + HOUSEKEEPING_TICK);
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
    }
}

impl RunningServer {
    /// The bound SIP address for `protocol` (IPv4 preferred).
    pub fn sip_addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.transport
            .local_addr(protocol, false)
            .or_else(|| self.transport.local_addr(protocol, true))
    }

    pub fn stats(&self) -> Stats {
        Stats {
            active_calls: self.ep.counters.active_calls.load(Ordering::Relaxed),
            call_actors: self.ep.calls.len(),
            initial_invites: self.ep.calls.initial_len(),
            transactions: self.ep.counters.transactions.load(Ordering::Relaxed),
            registrations: self.ep.location().bindings.count(),
            parse_errors: self.ep.counters.parse_errors.load(Ordering::Relaxed),
        }
    }

    /// An agent's state as the control API shows it (`idle`, `talking`, ...).
    pub fn agent_state(&self, id: &str) -> Option<String> {
        self.ep.agent_state(id).map(|s| s.as_str().to_owned())
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.ep
    }

    /// The control API's address, when `[http]` is configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// Reloads the config file (SIGHUP): see [`Endpoint::reload`].
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        use crate::api::Control;
        self.control.reload().await
    }

    /// Reopens the CDR file (SIGHUP, after log rotation).
    pub fn reopen_cdr(&self) {
        if let Some(cdr) = self.ep.cdr.get() {
            cdr.reopen();
        }
    }

    /// Graceful shutdown (SIGTERM): new calls get 503 with Retry-After, calls in progress
    /// go on for up to `drain`, then the rest get BYE with a Reason; CDRs are flushed.
    pub async fn drain_and_shutdown(self, drain: Duration) {
        self.ep.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            drain_s = drain.as_secs(),
            calls = self.ep.calls.len(),
            "draining"
        );
        let deadline = tokio::time::Instant::now() + drain;
        while self.ep.counters.active_calls.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shutdown().await;
    }

    /// Stops accepting, ends every call (BYE with a Reason), and waits briefly for the calls
    /// to finish.
    pub async fn shutdown(self) {
        self.ep.draining.store(true, Ordering::Relaxed);
        for handle in self.ep.calls.handles() {
            let _ = handle.deliver(crate::call::CallEvent::Hangup(
                crate::call::HangupCause::Shutdown,
            ));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !self.ep.calls.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.shutdown.send(true);
        self.housekeeping.abort();
        // Transactions left in the shared tables hold the endpoint (their counts point at it):
        // dropping them lets it be freed, and the counters read 0 afterwards.
        self.ep.lingering().clear();
        self.ep.probes().clear();
        if let Some(api) = self.api {
            let _ = api.join().await;
        }
        if let Some(cdr) = self.cdr {
            cdr.shutdown().await;
        }
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}
