//! The TCP connection table and the per-connection state shared by its tasks.
//!
//! One [`ConnShared`] per connection holds the bounded outgoing queue (its sender), the byte
//! count queued, the close signal and the last-activity clock. The table maps ids and remote
//! addresses to connections for reuse (RFC 3261 §18.2.2, §18.1.1) and counts inbound
//! connections per IP for the limits. It lives behind a `std::sync::Mutex` that is never held
//! across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{ConnectionId, Limits, SendError};

/// Messages queued per connection (the byte bound, `Limits::max_buffered_bytes`, usually
/// bites first).
const QUEUE_CAPACITY: usize = 256;

/// An item for a connection's writer task.
#[derive(Debug)]
pub(super) enum Outgoing {
    Data(Bytes),
    /// Write, then close the connection (the reply to a framing error).
    ThenClose(Bytes),
}

impl Outgoing {
    pub(super) fn bytes(&self) -> &Bytes {
        match self {
            Outgoing::Data(b) | Outgoing::ThenClose(b) => b,
        }
    }
}

/// A one-way close signal: once closed, stays closed.
#[derive(Debug)]
pub(super) struct Closer(watch::Sender<bool>);

impl Closer {
    fn new() -> Closer {
        Closer(watch::Sender::new(false))
    }

    pub(super) fn close(&self) {
        self.0.send_replace(true);
    }

    pub(super) fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once `close` was called.
    pub(super) async fn closed(&self) {
        let mut rx = self.0.subscribe();
        // The sender is `self`, so `wait_for` can only end by seeing `true`.
        let _ = rx.wait_for(|closed| *closed).await;
    }
}

/// When bytes last moved either way, for the idle timeout.
#[derive(Debug)]
pub(super) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The instant the connection becomes idle, given the timeout.
    pub(super) fn idle_at(&self, timeout: Duration) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        last.checked_add(timeout)
            .and_then(|d| self.base.checked_add(d))
            // An absurdly long timeout: a year is "never" for a connection.
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }
}

/// State of one connection, shared by the table, its reader and writer tasks.
#[derive(Debug)]
pub(super) struct ConnShared {
    pub(super) id: ConnectionId,
    pub(super) remote: SocketAddr,
    /// Accepted by a listener (counts toward the per-IP limit) rather than opened by us.
    pub(super) inbound: bool,
    pub(super) closer: Closer,
    pub(super) activity: Activity,
    queued: AtomicUsize,
    tx: mpsc::Sender<Outgoing>,
}

impl ConnShared {
    /// Queues without waiting. A message is refused when the queue holds other messages and
    /// adding it would pass `max_buffered` bytes (a lone large message is always accepted, so
    /// nothing up to `max_message_bytes` can starve).
    pub(super) fn enqueue(&self, out: Outgoing, max_buffered: usize) -> Result<(), SendError> {
        if self.closer.is_closed() {
            return Err(SendError::ConnectionClosed);
        }
        let len = out.bytes().len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > max_buffered {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            tracing::warn!(id = %self.id, remote = %self.remote, queued = before, "TCP send queue full");
            return Err(SendError::Backpressure);
        }
        match self.tx.try_send(out) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                tracing::warn!(id = %self.id, remote = %self.remote, "TCP send queue full");
                Err(SendError::Backpressure)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                Err(SendError::ConnectionClosed)
            }
        }
    }

    /// The writer has written (or dropped) `len` queued bytes.
    pub(super) fn dequeued(&self, len: usize) {
        // Never underflows: every dequeued length was added by `enqueue` first.
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(len))
            });
    }
}

/// A new connection's shared state and the receiving end of its queue (for the writer).
pub(super) fn new_conn(
    id: ConnectionId,
    remote: SocketAddr,
    inbound: bool,
) -> (Arc<ConnShared>, mpsc::Receiver<Outgoing>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let shared = ConnShared {
        id,
        remote,
        inbound,
        closer: Closer::new(),
        activity: Activity::new(),
        queued: AtomicUsize::new(0),
        tx,
    };
    (Arc::new(shared), rx)
}

/// Why an inbound connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Total,
    PerIp,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        })
    }
}

/// Every open (or connecting) TCP connection.
#[derive(Debug, Default)]
pub(super) struct ConnTable {
    by_id: HashMap<ConnectionId, Arc<ConnShared>>,
    /// The newest connection to each remote address.
    by_remote: HashMap<SocketAddr, ConnectionId>,
    inbound_per_ip: HashMap<IpAddr, usize>,
}

impl ConnTable {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn get(&self, id: ConnectionId) -> Option<&Arc<ConnShared>> {
        self.by_id.get(&id)
    }

    /// The preferred connection if open, else an open connection to `remote`.
    pub(super) fn find(
        &self,
        preferred: Option<ConnectionId>,
        remote: SocketAddr,
    ) -> Option<&Arc<ConnShared>> {
        let open = |id: &ConnectionId| self.by_id.get(id).filter(|c| !c.closer.is_closed());
        preferred
            .as_ref()
            .and_then(open)
            .or_else(|| self.by_remote.get(&remote).and_then(open))
    }

    /// Checks the limits for a new inbound connection from `ip`.
    pub(super) fn admit_inbound(&self, ip: IpAddr, limits: &Limits) -> Result<(), Refusal> {
        if self.by_id.len() >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let from_ip = self.inbound_per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        Ok(())
    }

    pub(super) fn insert(&mut self, conn: Arc<ConnShared>) {
        if conn.inbound {
            let count = self.inbound_per_ip.entry(conn.remote.ip()).or_insert(0);
            *count = count.saturating_add(1);
        }
        self.by_remote.insert(conn.remote, conn.id);
        self.by_id.insert(conn.id, conn);
    }

    pub(super) fn remove(&mut self, id: ConnectionId) {
        let Some(conn) = self.by_id.remove(&id) else {
            return;
        };
        if self.by_remote.get(&conn.remote) == Some(&id) {
            self.by_remote.remove(&conn.remote);
            // Another open connection to the same address (rare) takes over.
            if let Some(other) = self.by_id.values().find(|c| c.remote == conn.remote) {
                self.by_remote.insert(conn.remote, other.id);
            }
        }
        if conn.inbound {
            if let Some(count) = self.inbound_per_ip.get_mut(&conn.remote.ip()) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.inbound_per_ip.remove(&conn.remote.ip());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn enqueue_bounds_bytes_and_reports_closed() {
        let (conn, mut rx) = new_conn(ConnectionId(1), addr("127.0.0.1:5060"), true);
        let msg = || Outgoing::Data(Bytes::from_static(b"0123456789"));
        // A lone message larger than the bound is accepted; a second one is not.
        assert_eq!(conn.enqueue(msg(), 5), Ok(()));
        assert_eq!(conn.enqueue(msg(), 5), Err(SendError::Backpressure));
        assert_eq!(conn.enqueue(msg(), 20), Ok(()));
        assert_eq!(conn.enqueue(msg(), 20), Err(SendError::Backpressure));
        // The writer drains one: room again.
        let out = rx.try_recv().unwrap();
        conn.dequeued(out.bytes().len());
        assert_eq!(conn.enqueue(msg(), 20), Ok(()));
        conn.closer.close();
        assert_eq!(conn.enqueue(msg(), 1000), Err(SendError::ConnectionClosed));
    }

    #[test]
    fn enqueue_bounds_message_count() {
        let (conn, _rx) = new_conn(ConnectionId(1), addr("127.0.0.1:5060"), false);
        for _ in 0..QUEUE_CAPACITY {
            conn.enqueue(Outgoing::Data(Bytes::from_static(b"x")), usize::MAX)
                .unwrap();
        }
        assert_eq!(
            conn.enqueue(Outgoing::Data(Bytes::from_static(b"x")), usize::MAX),
            Err(SendError::Backpressure)
        );
    }

    #[test]
    fn table_finds_by_id_then_remote_and_counts_per_ip() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let mut table = ConnTable::default();
        let a = addr("10.0.0.1:40000");
        let (c1, _r1) = new_conn(ConnectionId(1), a, true);
        let (c2, _r2) = new_conn(ConnectionId(2), addr("10.0.0.1:40001"), true);
        table.insert(Arc::clone(&c1));
        table.insert(c2);
        assert_eq!(table.admit_inbound(a.ip(), &limits), Err(Refusal::PerIp));
        assert_eq!(
            table.admit_inbound(addr("10.0.0.2:1").ip(), &limits),
            Ok(())
        );
        let (c3, _r3) = new_conn(ConnectionId(3), addr("10.0.0.3:5060"), false);
        table.insert(c3);
        assert_eq!(
            table.admit_inbound(addr("10.0.0.2:1").ip(), &limits),
            Err(Refusal::Total)
        );

        assert_eq!(
            table.find(Some(ConnectionId(2)), a).unwrap().id,
            ConnectionId(2)
        );
        assert_eq!(
            table.find(Some(ConnectionId(9)), a).unwrap().id,
            ConnectionId(1)
        );
        assert!(table.find(None, addr("10.0.0.9:5060")).is_none());
        c1.closer.close();
        assert!(
            table.find(None, a).is_none(),
            "closed connections are not reused"
        );

        table.remove(ConnectionId(1));
        table.remove(ConnectionId(1));
        assert_eq!(table.len(), 2);
        assert_eq!(table.admit_inbound(a.ip(), &Limits::default()), Ok(()));
        assert_eq!(table.inbound_per_ip.get(&a.ip()), Some(&1));
    }

    #[test]
    fn idle_deadline_follows_activity() {
        let activity = Activity::new();
        let t = Duration::from_secs(30);
        let first = activity.idle_at(t);
        assert!(first <= Instant::now() + t);
        // Huge timeouts do not overflow.
        assert!(activity.idle_at(Duration::MAX) > Instant::now());
    }
}
