//! TCP: listeners, outbound connects, and the reader/writer task pair of each connection.
//!
//! ```text
//!            accept / connect
//!                   │
//!   reader task ◄── socket ──► writer task ◄── bounded queue ◄── Transport::send
//!     │ frame (framing.rs), deliver                 ▲
//!     │ ping → CRLF pong ───────────────────────────┘
//!     │ framing error → deliver, drain ≤ 1 s until the reply is written (send_and_close)
//!     └ EOF / error / idle / shutdown / close signal → close signal, leave the table
//! ```
//! Either task ending closes the connection (a shared close signal); the socket is closed
//! when both halves are dropped.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::connections::{new_conn, ConnShared, Outgoing};
use super::framing::{head_range, FrameStatus, Framer};
use super::{wait_shutdown, FramingError, Inbound, Inner, Protocol, Source};

/// How long the receiver of a framing error has to send its reply before the connection is
/// closed without one.
const REPLY_GRACE: Duration = Duration::from_secs(1);
/// After the reply is written, how long to keep draining input so that closing does not
/// reset the connection (and destroy the reply) while the peer still sends.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Read buffer growth step; the framer bounds the total to about `max_message_bytes`.
const READ_CHUNK: usize = 8 * 1024;
const MIN_READ: usize = 1024;
const PONG: &[u8] = b"\r\n";

/// Accepts connections until shutdown.
pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, local: SocketAddr) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => admit(&inner, stream, remote, local),
                Err(error) => {
                    warn!(%local, %error, "TCP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = wait_shutdown(&mut shutdown) => break,
        }
    }
    debug!(%local, "TCP listener stopped");
}

/// Registers an accepted connection within the limits, or closes it at once.
fn admit(inner: &Arc<Inner>, stream: TcpStream, remote: SocketAddr, listener: SocketAddr) {
    let mut table = inner.table();
    if let Err(limit) = table.admit_inbound(remote.ip(), &inner.limits) {
        drop(table);
        inner
            .counters
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        warn!(%remote, %limit, "TCP connection refused: limit reached");
        return; // dropping the stream closes it
    }
    let (conn, rx) = new_conn(inner.new_id(), remote, true);
    table.insert(Arc::clone(&conn));
    drop(table);
    let local = stream.local_addr().unwrap_or(listener);
    debug!(id = %conn.id, %remote, %local, "TCP connection accepted");
    tokio::spawn(run(Arc::clone(inner), stream, conn, rx, local));
}

/// Connects an outbound connection already in the table, then runs it. On failure the queued
/// messages are dropped and the connection leaves the table.
pub(super) async fn connect(
    inner: Arc<Inner>,
    conn: Arc<ConnShared>,
    rx: mpsc::Receiver<Outgoing>,
) {
    let mut shutdown = inner.shutdown.clone();
    let timeout = inner.limits.connect_timeout;
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, TcpStream::connect(conn.remote)) => result,
        () = wait_shutdown(&mut shutdown) => return finish(&inner, &conn, "shutdown"),
        () = conn.closer.closed() => return finish(&inner, &conn, "closed while connecting"),
    };
    match result {
        Ok(Ok(stream)) => {
            let local = match stream.local_addr() {
                Ok(local) => local,
                Err(error) => {
                    debug!(id = %conn.id, %error, "TCP connection without local address");
                    return finish(&inner, &conn, "socket error");
                }
            };
            debug!(id = %conn.id, remote = %conn.remote, %local, "TCP connection established");
            run(inner, stream, conn, rx, local).await;
        }
        Ok(Err(error)) => {
            debug!(id = %conn.id, remote = %conn.remote, %error, "TCP connect failed");
            finish(&inner, &conn, "connect failed");
        }
        Err(_) => finish(&inner, &conn, "connect timed out"),
    }
}

/// Marks the connection closed and removes it from the table.
fn finish(inner: &Inner, conn: &ConnShared, why: &'static str) {
    conn.closer.close();
    inner.table().remove(conn.id);
    debug!(id = %conn.id, remote = %conn.remote, why, "TCP connection closed");
}

/// Runs an open connection until it closes.
async fn run(
    inner: Arc<Inner>,
    stream: TcpStream,
    conn: Arc<ConnShared>,
    rx: mpsc::Receiver<Outgoing>,
    local: SocketAddr,
) {
    // SIP messages are small and latency matters more than segment count.
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    conn.activity.touch();
    let source = Source {
        protocol: Protocol::Tcp,
        remote: conn.remote,
        local,
        connection: Some(conn.id),
    };
    let writer = tokio::spawn(write_loop(write, rx, Arc::clone(&conn)));
    let why = read_loop(&inner, read, &conn, source).await;
    finish(&inner, &conn, why);
    let _ = writer.await;
}

/// Frames and delivers inbound messages; returns why the connection ends.
async fn read_loop(
    inner: &Inner,
    mut read: OwnedReadHalf,
    conn: &ConnShared,
    source: Source,
) -> &'static str {
    let limits = &inner.limits;
    let max = limits.max_message_bytes;
    let mut shutdown = inner.shutdown.clone();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut framer = Framer::new(max);
    // When the buffer last went from empty to holding part of a message.
    let mut partial_since: Option<Instant> = None;
    // The futures below live as long as the loop: a read does not arm and drop two timers
    // and two watch waiters. The idle timer is re-armed lazily: when it fires early (the
    // connection moved bytes since), it moves to the new deadline instead of closing.
    let idle = tokio::time::sleep_until(conn.activity.idle_at(limits.tcp_idle_timeout));
    tokio::pin!(idle);
    let slow = tokio::time::sleep_until(Instant::now());
    tokio::pin!(slow);
    let closed = conn.closer.closed();
    tokio::pin!(closed);
    let mut shutdown_watch = inner.shutdown.clone();
    let shutdown_signal = wait_shutdown(&mut shutdown_watch);
    tokio::pin!(shutdown_signal);
    loop {
        loop {
            let status = match framer.next(&buf) {
                Ok(status) => status,
                Err(error) => {
                    let head = buf.get(head_range(&buf, max)).unwrap_or_default();
                    let head = Bytes::copy_from_slice(head);
                    inner
                        .counters
                        .framing_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if matches!(error, FramingError::TooLarge { .. }) {
                        warn!(id = %conn.id, remote = %conn.remote, %error, "TCP message too large");
                    } else {
                        debug!(id = %conn.id, remote = %conn.remote, %error, "TCP framing error");
                    }
                    inner.sink.deliver(Inbound::FramingError {
                        head,
                        error,
                        source,
                    });
                    return drain_until_closed(read, conn, &mut shutdown).await;
                }
            };
            if status.consumed() > buf.len() {
                // Cannot happen (the framer only reports bytes it saw); never panic on it.
                return "framer inconsistency";
            }
            match status {
                FrameStatus::Complete { skip, len } => {
                    buf.advance(skip);
                    let data = buf.split_to(len).freeze();
                    trace!(id = %conn.id, remote = %conn.remote, len, "TCP message received");
                    inner.sink.deliver(Inbound::Message { data, source });
                }
                FrameStatus::KeepAlive { len } => {
                    buf.advance(len);
                    trace!(id = %conn.id, remote = %conn.remote, "keep-alive ping; pong");
                    let pong = Outgoing::Data(Bytes::from_static(PONG));
                    let _ = conn.enqueue(pong, limits.max_buffered_bytes);
                }
                FrameStatus::Incomplete => break,
            }
        }
        if buf.capacity().saturating_sub(buf.len()) < MIN_READ {
            buf.reserve(READ_CHUNK);
        }
        // A slow sender (part of a message, then silence) is cut off, so half-sent messages
        // cannot pin buffers and connections (robustness issue, limits).
        if buf.is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            let now = Instant::now();
            partial_since = Some(now);
            slow.as_mut().reset(now + limits.slow_sender_timeout);
        }
        tokio::select! {
            read_result = read.read_buf(&mut buf) => match read_result {
                Ok(0) => return "closed by peer",
                Ok(len) => {
                    conn.activity.touch();
                    trace!(id = %conn.id, remote = %conn.remote, len, "TCP bytes read");
                }
                Err(error) => {
                    debug!(id = %conn.id, remote = %conn.remote, %error, "TCP read error");
                    return "read error";
                }
            },
            () = &mut idle => {
                // Reads and writes since it was armed moved the deadline: close only if it
                // has passed, else wait for the new one.
                let idle_at = conn.activity.idle_at(limits.tcp_idle_timeout);
                if idle_at <= Instant::now() {
                    return "idle timeout";
                }
                idle.as_mut().reset(idle_at);
            }
            () = &mut slow, if partial_since.is_some() => {
                debug!(id = %conn.id, remote = %conn.remote, "slow sender: partial message stalled");
                return "slow sender";
            }
            () = &mut closed => return "closed",
            () = &mut shutdown_signal => return "shutdown",
        }
    }
}

/// After a framing error: discard input while the receiver's reply is written, then linger
/// briefly so the peer can read it before the socket closes. A peer that already half-closed
/// still gets the reply.
async fn drain_until_closed(
    mut read: OwnedReadHalf,
    conn: &ConnShared,
    shutdown: &mut watch::Receiver<bool>,
) -> &'static str {
    let mut deadline = Instant::now() + REPLY_GRACE;
    let mut replied = false;
    let mut peer_sending = true;
    let mut scratch = [0u8; 2048];
    loop {
        tokio::select! {
            read_result = read.read(&mut scratch), if peer_sending => match read_result {
                Ok(0) | Err(_) if replied => return "framing error",
                Ok(0) | Err(_) => peer_sending = false,
                Ok(_) => {} // the stream position is lost; discard
            },
            () = conn.closer.closed(), if !replied => {
                if !peer_sending {
                    return "framing error";
                }
                replied = true;
                deadline = Instant::now() + CLOSE_LINGER;
            }
            () = tokio::time::sleep_until(deadline) => return "framing error",
            () = wait_shutdown(shutdown) => return "shutdown",
        }
    }
}

/// Writes queued messages in order until closed.
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    conn: Arc<ConnShared>,
) {
    loop {
        let out = tokio::select! {
            biased;
            out = rx.recv() => match out {
                Some(out) => out,
                None => break,
            },
            () = conn.closer.closed() => break,
        };
        let (data, then_close) = match out {
            Outgoing::Data(data) => (data, false),
            Outgoing::ThenClose(data) => (data, true),
        };
        let written = tokio::select! {
            result = write.write_all(&data) => result,
            () = conn.closer.closed() => break,
        };
        conn.dequeued(data.len());
        if let Err(error) = written {
            debug!(id = %conn.id, remote = %conn.remote, %error, "TCP write error");
            break;
        }
        conn.activity.touch();
        trace!(id = %conn.id, remote = %conn.remote, len = data.len(), "TCP message sent");
        if then_close {
            // FIN after the reply, so the peer reads it and then EOF.
            let _ = write.shutdown().await;
            break;
        }
    }
    conn.closer.close();
}
