//! SIP transport: UDP and TCP over IPv4 and IPv6 (RFC 3261 §18).
//!
//! The transport is the I/O shell under the transaction layer. It binds the configured
//! listeners, turns datagrams and byte streams into complete SIP messages and hands each one,
//! unparsed, to an [`InboundSink`]; it sends with a synchronous, non-blocking
//! [`Transport::send`], so call actors and the dispatcher never await on I/O.
//!
//! ```text
//!  UDP socket ── recv task ──────────────────────────┐
//!  TCP listener ─ accept ─► connection ─ reader task ─┼─► InboundSink::deliver(Inbound)
//!  Transport::send ─► try_send_to (UDP)              │
//!                  └► bounded queue ─► writer task ◄─┘ (CRLF pong, reply-then-close)
//! ```
//!
//! Contract:
//! - UDP: one datagram is one message (RFC 3261 §18.3). Datagrams over `max_message_bytes`
//!   arrive as [`FramingError::TooLarge`] with their head; CRLF keep-alives are dropped.
//!   Sending uses `try_send_to`; a full socket buffer drops the datagram and counts it
//!   (UDP is lossy; transactions retransmit).
//! - TCP: messages are framed by Content-Length ([`framing`]); CRLFCRLF pings are answered
//!   with CRLF (RFC 5626 §4.4.1). A framing error is delivered as [`Inbound::FramingError`];
//!   the receiver answers with [`Transport::send_and_close`], and the connection is closed
//!   after that reply or after one second without one.
//! - Connection reuse (RFC 3261 §18.2.2 responses, §18.1.1 requests): a TCP send goes over the
//!   connection named in the [`Destination`] if it is open, else over any open connection to
//!   the destination address (inbound or outbound: phones connect from ephemeral ports and
//!   must be reached over the connection they opened), else over a new outbound connection.
//!   Messages sent while it connects are queued; if the connect fails they are dropped.
//! - Bounds: message size, total and per-IP inbound connections (beyond them a new
//!   connection is closed at once), queued outgoing bytes per connection (a full queue is
//!   [`SendError::Backpressure`]), idle TCP connections (no bytes either way for
//!   `tcp_idle_timeout`) are closed.
//! - Shutdown: when the watch value becomes `true` (or its sender is dropped), listeners stop
//!   accepting, receive tasks end and connections close; later sends fail with
//!   [`SendError::Shutdown`].
//!
//! RFC 3581 `received`/`rport` values come from [`Source::remote`]; writing them into the Via
//! is the receiver's job (the transport never parses messages).

pub mod framing;

mod connections;
mod tcp;
mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::{debug, trace, warn};

pub use framing::FramingError;

use connections::{ConnTable, Outgoing};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    /// The lower-case name of listen specs and the `transport=` URI parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }

    /// The upper-case name of a Via's `sent-protocol` (RFC 3261 §20.42), as displayed.
    pub fn via_token(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        }
    }
}

/// The upper-case name, as in a Via (RFC 3261 §20.42) and in logs.
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Identifies one TCP connection for the lifetime of the process (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One listener: `udp:IP:PORT`, `tcp:IP:PORT`, `udp:[v6]:PORT` (protocol case-insensitive),
/// as written in `[sip] listen` and `--listen`. Port 0 asks the OS for a free port (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

/// Why a listen spec did not parse (the config reports it with its line and field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenSpecError {
    #[error("expected PROTOCOL:IP:PORT, e.g. `udp:127.0.0.1:5060` or `tcp:[::1]:5060`")]
    MissingProtocol,
    #[error("unknown protocol `{0}` (expected `udp` or `tcp`)")]
    UnknownProtocol(String),
    #[error("`{0}` is not IP:PORT (write IPv6 addresses in brackets: `[::1]:5060`)")]
    BadAddress(String),
}

impl FromStr for ListenSpec {
    type Err = ListenSpecError;

    fn from_str(s: &str) -> Result<ListenSpec, ListenSpecError> {
        // A bare address (`127.0.0.1:5060`, `[::1]:5060`) lacks the protocol prefix; say so
        // rather than call its first part an unknown protocol.
        if s.parse::<SocketAddr>().is_ok() {
            return Err(ListenSpecError::MissingProtocol);
        }
        let (proto, addr) = s.split_once(':').ok_or(ListenSpecError::MissingProtocol)?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "udp" => Protocol::Udp,
            "tcp" => Protocol::Tcp,
            "" => return Err(ListenSpecError::MissingProtocol),
            _ => return Err(ListenSpecError::UnknownProtocol(proto.to_owned())),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| ListenSpecError::BadAddress(addr.to_owned()))?;
        Ok(ListenSpec { protocol, addr })
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SocketAddr's Display already brackets IPv6 addresses.
        write!(f, "{}:{}", self.protocol.as_str(), self.addr)
    }
}

/// Resource bounds. The defaults suit a contact centre whose agents may share one office
/// NAT address (hence a generous per-IP limit) and whose phones send TCP keep-alives every
/// 90 s or so (hence an idle timeout well above that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (headers + body) accepted or framed; bigger ones are `TooLarge`.
    pub max_message_bytes: usize,
    /// Open TCP connections in total (inbound and outbound).
    pub max_connections: usize,
    /// Open inbound TCP connections from one IP address.
    pub max_connections_per_ip: usize,
    /// A TCP connection with no bytes either way for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Outgoing bytes queued per TCP connection before `send` reports backpressure.
    pub max_buffered_bytes: usize,
    /// Outbound TCP connect attempts give up after this.
    pub connect_timeout: Duration,
    /// A peer that sends part of a message and then stalls for this long is cut off.
    pub slow_sender_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 65_535,
            max_connections: 4096,
            max_connections_per_ip: 256,
            tcp_idle_timeout: Duration::from_secs(600),
            max_buffered_bytes: 256 * 1024,
            connect_timeout: Duration::from_secs(5),
            slow_sender_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub protocol: Protocol,
    /// The peer's address as seen by us (RFC 3581 `received`/`rport`).
    pub remote: SocketAddr,
    /// Our address the message arrived on.
    pub local: SocketAddr,
    /// The TCP connection, `None` for UDP.
    pub connection: Option<ConnectionId>,
}

impl Source {
    /// Where a reply goes: back over the same connection, or to the source address
    /// (RFC 3261 §18.2.2 with RFC 3581 symmetric response routing).
    pub fn reply_destination(&self) -> Destination {
        Destination {
            protocol: self.protocol,
            addr: self.remote,
            connection: self.connection,
        }
    }
}

/// What the transport received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Exactly one complete SIP message (headers and body), not parsed.
    Message { data: Bytes, source: Source },
    /// A message that cannot be framed. `head` holds its header section (as much as was
    /// buffered, at most `max_message_bytes`) so that a response can be built. On TCP the
    /// connection is closed after the receiver's [`Transport::send_and_close`], or after one
    /// second without it.
    FramingError {
        head: Bytes,
        error: FramingError,
        source: Source,
    },
}

/// Receives every inbound message. Called from receive tasks: must not block.
pub trait InboundSink: Send + Sync + 'static {
    fn deliver(&self, inbound: Inbound);
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// For TCP: the connection to prefer (e.g. the one a request came on).
    pub connection: Option<ConnectionId>,
}

/// `bind` failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {protocol} {addr}: {source}")]
    Bind {
        protocol: Protocol,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `send` failed; the message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no {protocol} socket for the {family} destination")]
    NoSocket {
        protocol: Protocol,
        family: &'static str,
    },
    #[error("send queue of the connection is full")]
    Backpressure,
    #[error("TCP connection limit reached")]
    ConnectionLimit,
    #[error("TCP connection is closed")]
    ConnectionClosed,
    #[error("transport is shut down")]
    Shutdown,
    #[error("UDP send failed: {0}")]
    Io(std::io::ErrorKind),
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// UDP datagrams dropped because the socket buffer was full.
    pub udp_send_dropped: u64,
    /// Inbound TCP connections closed at once because of a connection limit.
    pub connections_refused: u64,
    /// Framing errors delivered (TCP and UDP).
    pub framing_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    udp_send_dropped: AtomicU64,
    connections_refused: AtomicU64,
    framing_errors: AtomicU64,
}

/// Shared state behind the [`Transport`] handle and its tasks.
struct Inner {
    limits: Limits,
    sink: Arc<dyn InboundSink>,
    udp: Vec<udp::UdpEndpoint>,
    tcp_listeners: Vec<SocketAddr>,
    conns: Mutex<ConnTable>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
    counters: Counters,
}

impl Inner {
    /// The connection table; a poisoned lock is still usable (the table stays consistent
    /// because no method panics half-way).
    fn table(&self) -> MutexGuard<'_, ConnTable> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_shutdown(&self) -> bool {
        // A dropped sender counts as shutdown, as in `wait_shutdown`.
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn new_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// Resolves when shutdown is requested or the shutdown sender is gone.
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Cheap, cloneable handle to the running transport.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("local_addrs", &self.local_addrs())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Transport {
    /// Binds every listener (port 0 picks a free port) and starts the receive tasks on the
    /// current tokio runtime. Fails if any listener cannot be bound.
    pub async fn bind(
        specs: &[ListenSpec],
        limits: Limits,
        sink: Arc<dyn InboundSink>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Transport, TransportError> {
        let mut udp_sockets = Vec::new();
        let mut tcp_listeners = Vec::new();
        for spec in specs {
            let bind_error = |source| TransportError::Bind {
                protocol: spec.protocol,
                addr: spec.addr,
                source,
            };
            match spec.protocol {
                Protocol::Udp => {
                    let socket = UdpSocket::bind(spec.addr).await.map_err(bind_error)?;
                    let local = socket.local_addr().map_err(bind_error)?;
                    udp_sockets.push(udp::UdpEndpoint {
                        socket: Arc::new(socket),
                        local,
                    });
                }
                Protocol::Tcp => {
                    let listener = TcpListener::bind(spec.addr).await.map_err(bind_error)?;
                    let local = listener.local_addr().map_err(bind_error)?;
                    tcp_listeners.push((listener, local));
                }
            }
        }
        let inner = Arc::new(Inner {
            limits,
            sink,
            udp: udp_sockets,
            tcp_listeners: tcp_listeners.iter().map(|(_, local)| *local).collect(),
            conns: Mutex::new(ConnTable::default()),
            next_id: AtomicU64::new(1),
            shutdown,
            runtime: tokio::runtime::Handle::current(),
            counters: Counters::default(),
        });
        for endpoint in &inner.udp {
            debug!(local = %endpoint.local, "listening on UDP");
            tokio::spawn(udp::receive_loop(
                Arc::clone(&inner),
                Arc::clone(&endpoint.socket),
                endpoint.local,
            ));
        }
        for (listener, local) in tcp_listeners {
            debug!(%local, "listening on TCP");
            tokio::spawn(tcp::accept_loop(Arc::clone(&inner), listener, local));
        }
        Ok(Transport { inner })
    }

    /// The first bound address of `protocol` in the given IP family (for Via, Contact and
    /// Record-Route, and for tests that bind port 0).
    pub fn local_addr(&self, protocol: Protocol, ipv6: bool) -> Option<SocketAddr> {
        let family = |addr: &SocketAddr| addr.is_ipv6() == ipv6;
        match protocol {
            Protocol::Udp => self.inner.udp.iter().map(|e| e.local).find(family),
            Protocol::Tcp => self.inner.tcp_listeners.iter().copied().find(family),
        }
    }

    /// Every bound address, UDP first, in configuration order.
    pub fn local_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        let udp = self.inner.udp.iter().map(|e| (Protocol::Udp, e.local));
        let tcp = self.inner.tcp_listeners.iter().map(|a| (Protocol::Tcp, *a));
        udp.chain(tcp).collect()
    }

    /// Sends one message without blocking or awaiting (see the module docs for connection
    /// choice). `Ok` means sent (UDP) or queued (TCP), not delivered.
    pub fn send(&self, dest: &Destination, data: Bytes) -> Result<(), SendError> {
        if self.inner.is_shutdown() {
            return Err(SendError::Shutdown);
        }
        match dest.protocol {
            Protocol::Udp => udp::send(&self.inner, dest.addr, &data),
            Protocol::Tcp => self.send_tcp(dest, data),
        }
    }

    /// Sends `messages` in order, like [`Self::send`] each; a run of consecutive UDP
    /// datagrams leaving by the same socket goes out in one system call. Calls `failed` for
    /// each message that could not be sent.
    pub fn send_all(
        &self,
        messages: &[(Destination, Bytes)],
        failed: &mut dyn FnMut(&Destination, SendError),
    ) {
        // The UDP socket a message leaves by; `None` for TCP, no socket, or shutdown (where
        // `send` gives each message its error).
        let udp_socket = |dest: &Destination| {
            (dest.protocol == Protocol::Udp && !self.inner.is_shutdown())
                .then(|| udp::endpoint_for(&self.inner, dest.addr).ok())
                .flatten()
        };
        let mut rest = messages;
        while let Some(((dest, data), after)) = rest.split_first() {
            let socket = udp_socket(dest);
            let run_len = socket.map_or(1, |socket| {
                let same = |(d, _): &&(Destination, Bytes)| {
                    udp_socket(d).is_some_and(|s| std::ptr::eq(s, socket))
                };
                1 + after.iter().take_while(same).count()
            });
            let (run, after_run) = rest.split_at(run_len.min(rest.len()));
            match socket {
                Some(socket) if run.len() > 1 => udp::send_run(&self.inner, socket, run, failed),
                _ => {
                    if let Err(error) = self.send(dest, data.clone()) {
                        failed(dest, error);
                    }
                }
            }
            rest = after_run;
        }
    }

    fn send_tcp(&self, dest: &Destination, data: Bytes) -> Result<(), SendError> {
        let len = data.len();
        let max_buffered = self.inner.limits.max_buffered_bytes;
        let mut table = self.inner.table();
        if let Some(conn) = table.find(dest.connection, dest.addr) {
            let result = conn.enqueue(Outgoing::Data(data), max_buffered);
            trace!(id = %conn.id, remote = %conn.remote, len, ok = result.is_ok(), "queued for TCP");
            return result;
        }
        if table.len() >= self.inner.limits.max_connections {
            drop(table);
            warn!(remote = %dest.addr, "TCP connection limit reached; not connecting");
            return Err(SendError::ConnectionLimit);
        }
        let (conn, rx) = connections::new_conn(self.inner.new_id(), dest.addr, false);
        // Queued before the connect starts; written once it succeeds.
        let result = conn.enqueue(Outgoing::Data(data), max_buffered);
        table.insert(Arc::clone(&conn));
        drop(table);
        debug!(id = %conn.id, remote = %dest.addr, "opening outbound TCP connection");
        trace!(id = %conn.id, remote = %dest.addr, len, "queued for TCP");
        self.inner
            .runtime
            .spawn(tcp::connect(Arc::clone(&self.inner), conn, rx));
        result
    }

    /// Writes `data` on the connection, then closes it (used to answer a framing error).
    /// If the connection is gone or its queue is full, it is closed without the reply.
    pub fn send_and_close(&self, connection: ConnectionId, data: Bytes) {
        let max_buffered = self.inner.limits.max_buffered_bytes;
        let table = self.inner.table();
        let Some(conn) = table.get(connection) else {
            return;
        };
        if conn
            .enqueue(Outgoing::ThenClose(data), max_buffered)
            .is_err()
        {
            conn.closer.close();
        }
    }

    /// Open TCP connections (inbound, outbound and still connecting).
    pub fn connection_count(&self) -> usize {
        self.inner.table().len()
    }

    /// True while the connection is open (or still connecting).
    pub fn is_open(&self, connection: ConnectionId) -> bool {
        self.inner
            .table()
            .get(connection)
            .is_some_and(|conn| !conn.closer.is_closed())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let c = &self.inner.counters;
        TransportStats {
            udp_send_dropped: c.udp_send_dropped.load(Ordering::Relaxed),
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
            framing_errors: c.framing_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
