//! UDP: one datagram is one message (RFC 3261 §18.3, no Content-Length framing needed).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;

use bytes::Bytes;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info, trace, warn};

use super::framing::{head_range, is_keepalive_datagram};
use super::{
    wait_shutdown, Destination, FramingError, Inbound, Inner, Protocol, SendError, Source,
};

/// The largest UDP payload over IPv4/IPv6 without jumbograms.
const MAX_DATAGRAM: usize = 65_535;

/// Pause after a receive error, so a persistent error cannot spin the task.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Kernel buffer requested for each UDP socket, each direction.
///
/// Linux's default (`net.core.rmem_default`, usually 208 KiB: about 200 INVITEs with SDP) fills
/// in a few milliseconds at thousands of calls per second whenever the receive task is not
/// running (the cores are shared, e.g. with the media or SIPp); the excess datagrams are lost
/// and each costs a retransmission 500 ms later, and the call once T1 doubling runs out. Measured
/// with the shared harness at 2000–5500 calls/s: ~1000–7000 datagrams dropped by the server's
/// socket per run with the default, none with 4 MiB. Linux caps the request at
/// `net.core.rmem_max` / `wmem_max` (the granted size is logged at startup); raise those
/// sysctls to get the full size. Memory is only used while datagrams are queued.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// One bound UDP socket.
pub(super) struct UdpEndpoint {
    pub(super) socket: Arc<UdpSocket>,
    pub(super) local: SocketAddr,
}

/// Datagrams taken from the socket by one `recvmmsg` call.
///
/// At 2,000 calls/s the socket holds several datagrams whenever the loop comes back to it
/// (the receive and the call actors share one thread); one system call takes them all instead
/// of one `recvfrom` each (measured: 7.8 receive calls per basic call became 2.2). Each needs
/// a receive buffer of `max_message_bytes` + 1: 8 × 64 KiB with the default, once per socket.
const RECV_BATCH: usize = 8;

/// One received datagram: its length (at most the buffer's, so `len > max` means it was cut)
/// and who sent it.
type Received = (usize, Option<SocketAddr>);

/// Receives datagrams until shutdown and delivers them to the sink.
pub(super) async fn receive_loop(inner: Arc<Inner>, socket: Arc<UdpSocket>, local: SocketAddr) {
    enlarge_buffers(&socket, local);
    let max = inner.limits.max_message_bytes;
    // One byte more than allowed per datagram, so an oversized datagram is seen as such (the
    // kernel truncates it to the buffer).
    let slot = max.min(MAX_DATAGRAM).saturating_add(1);
    let mut buffers = vec![0u8; slot * RECV_BATCH];
    let mut received: [Received; RECV_BATCH] = [(0, None); RECV_BATCH];
    // One shutdown future for the loop's whole life: it registers its waiter on the watch
    // channel once. A future made per iteration registered and dropped a waiter each time
    // the socket ran dry (about once per call at 2,000 calls/s: ~2,800 instructions).
    let mut shutdown_watch = inner.shutdown.clone();
    let shutdown_signal = wait_shutdown(&mut shutdown_watch);
    tokio::pin!(shutdown_signal);
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            // Receive first; the cheap version check below keeps a flood (the socket always
            // ready) from delaying shutdown. `readable` spends tokio's cooperative budget, so
            // a flood also lets the call actors run between batches.
            biased;
            ready = socket.readable() => if let Err(error) = ready {
                debug!(%local, %error, "UDP socket not readable");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            },
            () = &mut shutdown_signal => break,
        }
        let count = match socket.try_io(Interest::READABLE, || {
            receive_batch(&socket, &mut buffers, slot, &mut received)
        }) {
            Ok(count) => count,
            Err(error) if error.kind() == ErrorKind::WouldBlock => continue,
            Err(error) => {
                // E.g. ICMP port unreachable reported on some platforms; not fatal.
                debug!(%local, %error, "UDP receive error");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        if shutdown.has_changed().unwrap_or(true) && *shutdown.borrow_and_update() {
            break;
        }
        for (index, &(len, remote)) in received.iter().take(count).enumerate() {
            if index > 0 {
                // The same share of the budget per datagram as one receive each.
                tokio::task::consume_budget().await;
            }
            let Some(remote) = remote else {
                continue; // no source address: nowhere to answer
            };
            let Some(datagram) = buffers
                .get(index * slot..)
                .and_then(|rest| rest.get(..len.min(slot)))
            else {
                continue;
            };
            deliver(&inner, datagram, len, max, remote, local);
        }
    }
    debug!(%local, "UDP receiver stopped");
}

/// One `recvmmsg` without waiting: fills `received` with each datagram's length and source,
/// datagram `i` in `buffers[i * slot..]`. Returns how many came.
fn receive_batch(
    socket: &UdpSocket,
    buffers: &mut [u8],
    slot: usize,
    received: &mut [Received; RECV_BATCH],
) -> std::io::Result<usize> {
    RECV_HEADERS.with(|headers| {
        let mut headers = headers
            .try_borrow_mut()
            .map_err(|_| std::io::Error::other("receive headers in use"))?;
        let mut chunks = buffers.chunks_exact_mut(slot);
        let mut slices: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        let mut count = 0;
        for (slot, result) in received.iter_mut().zip(results) {
            *slot = (
                result.bytes,
                result.address.and_then(|address| socket_addr(&address)),
            );
            count += 1;
        }
        Ok(count)
    })
}

thread_local! {
    /// `recvmmsg`'s message headers, one set per thread (they hold raw pointers, so they
    /// cannot live in the receive task, which may move between threads; nix rewrites every
    /// field the kernel reads on each use).
    static RECV_HEADERS: std::cell::RefCell<MultiHeaders<SockaddrStorage>> =
        std::cell::RefCell::new(MultiHeaders::preallocate(RECV_BATCH, None));
}

/// The standard form of a datagram's source address (IPv4 or IPv6; anything else is none).
fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Hands one received datagram to the sink (or its framing error, when it was too large).
fn deliver(
    inner: &Inner,
    datagram: &[u8],
    len: usize,
    max: usize,
    remote: SocketAddr,
    local: SocketAddr,
) {
    if is_keepalive_datagram(datagram) {
        trace!(%remote, %local, len, "UDP keep-alive ignored");
        return;
    }
    let source = Source {
        protocol: Protocol::Udp,
        remote,
        local,
        connection: None,
    };
    trace!(%remote, %local, len, "UDP datagram received");
    if len > max {
        let head = datagram.get(head_range(datagram, max)).unwrap_or_default();
        inner
            .counters
            .framing_errors
            .fetch_add(1, Ordering::Relaxed);
        warn!(%remote, len, limit = max, "oversized UDP datagram");
        inner.sink.deliver(Inbound::FramingError {
            head: Bytes::copy_from_slice(head),
            error: FramingError::TooLarge { limit: max },
            source,
        });
    } else {
        // One exact-size copy; the receive buffers are reused.
        inner.sink.deliver(Inbound::Message {
            data: Bytes::copy_from_slice(datagram),
            source,
        });
    }
}

/// Asks for [`SOCKET_BUFFER_BYTES`] in both directions; a refusal is logged, not fatal.
fn enlarge_buffers(socket: &UdpSocket, local: SocketAddr) {
    let sock = socket2::SockRef::from(socket);
    if let Err(error) = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        warn!(%local, %error, "cannot set the UDP receive buffer size");
    }
    if let Err(error) = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        warn!(%local, %error, "cannot set the UDP send buffer size");
    }
    // Linux reports twice the size it granted (the double covers its bookkeeping).
    let granted = |reported: usize| {
        if cfg!(target_os = "linux") {
            reported / 2
        } else {
            reported
        }
    };
    let receive = granted(sock.recv_buffer_size().unwrap_or(0));
    let send = granted(sock.send_buffer_size().unwrap_or(0));
    if receive < SOCKET_BUFFER_BYTES || send < SOCKET_BUFFER_BYTES {
        info!(
            %local, receive, send, wanted = SOCKET_BUFFER_BYTES,
            "UDP socket buffers capped by net.core.rmem_max/wmem_max; raise them for high call rates"
        );
    } else {
        debug!(%local, receive, send, "UDP socket buffers");
    }
}

/// The socket a datagram to `remote` leaves by: one of the destination's family, preferring
/// one whose loopback-ness matches (so a 127.0.0.1 socket is not used for a routable peer).
pub(super) fn endpoint_for(inner: &Inner, remote: SocketAddr) -> Result<&UdpEndpoint, SendError> {
    let same_family = |e: &&UdpEndpoint| e.local.is_ipv6() == remote.is_ipv6();
    inner
        .udp
        .iter()
        .filter(same_family)
        .find(|e| e.local.ip().is_loopback() == remote.ip().is_loopback())
        .or_else(|| inner.udp.iter().find(same_family))
        .ok_or(SendError::NoSocket {
            protocol: Protocol::Udp,
            family: if remote.is_ipv6() { "IPv6" } else { "IPv4" },
        })
}

/// Sends one datagram (see [`endpoint_for`]).
pub(super) fn send(inner: &Inner, remote: SocketAddr, data: &[u8]) -> Result<(), SendError> {
    send_on(inner, endpoint_for(inner, remote)?, remote, data)
}

/// Sends `run` — datagrams that all leave by `endpoint` — in one `sendmmsg` system call,
/// in order. Calls `failed` for each one that could not be sent.
///
/// One call instead of one per datagram saves the system call overhead, and the scheduler
/// switches to a peer woken by the first datagram at most once, after the whole run. A call
/// actor sends two or three messages per event (a response to one leg and a request to the
/// other), so this halves handover's send calls.
pub(super) fn send_run(
    inner: &Inner,
    endpoint: &UdpEndpoint,
    run: &[(Destination, Bytes)],
    failed: &mut dyn FnMut(&Destination, SendError),
) {
    for chunk in run.chunks(RUN_CHUNK) {
        send_chunk(inner, endpoint, chunk, failed);
    }
}

/// Most datagrams handed to one `sendmmsg`: a call actor's event sends two or three, and
/// the headers for this many live on the stack and in one reused per-thread table.
const RUN_CHUNK: usize = 8;

thread_local! {
    /// `sendmmsg`'s message headers, allocated once per thread instead of per call (nix
    /// rewrites every field it passes to the kernel on each use).
    static HEADERS: std::cell::RefCell<MultiHeaders<SockaddrStorage>> =
        std::cell::RefCell::new(MultiHeaders::preallocate(RUN_CHUNK, None));
}

fn send_chunk(
    inner: &Inner,
    endpoint: &UdpEndpoint,
    chunk: &[(Destination, Bytes)],
    failed: &mut dyn FnMut(&Destination, SendError),
) {
    let mut slices = [[IoSlice::new(&[])]; RUN_CHUNK];
    let mut addrs: [Option<SockaddrStorage>; RUN_CHUNK] = [None; RUN_CHUNK];
    for ((slice, addr), (dest, data)) in slices.iter_mut().zip(addrs.iter_mut()).zip(chunk) {
        *slice = [IoSlice::new(data)];
        *addr = Some(SockaddrStorage::from(dest.addr));
    }
    let n = chunk.len().min(RUN_CHUNK);
    let no_control: [ControlMessage<'_>; 0] = [];
    let sent = HEADERS.with(|headers| {
        let Ok(mut headers) = headers.try_borrow_mut() else {
            return 0; // not reentrant; the loop below sends one by one
        };
        match sendmmsg(
            endpoint.socket.as_raw_fd(),
            &mut headers,
            slices.get(..n).unwrap_or_default(),
            addrs.get(..n).unwrap_or_default(),
            no_control,
            MsgFlags::empty(),
        ) {
            Ok(results) => results.count(),
            // The first datagram failed: the loop below sends each on its own, so each gets
            // the outcome (and the log line) a single send would.
            Err(_) => 0,
        }
    });
    for (index, (dest, data)) in chunk.iter().enumerate() {
        if index < sent {
            trace!(local = %endpoint.local, remote = %dest.addr, len = data.len(), "UDP datagram sent");
        } else if let Err(error) = send_on(inner, endpoint, dest.addr, data) {
            failed(dest, error);
        }
    }
}

fn send_on(
    inner: &Inner,
    endpoint: &UdpEndpoint,
    remote: SocketAddr,
    data: &[u8],
) -> Result<(), SendError> {
    match endpoint.socket.try_send_to(data, remote) {
        Ok(_) => {
            trace!(local = %endpoint.local, %remote, len = data.len(), "UDP datagram sent");
            Ok(())
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => {
            // Lossy by nature: the transaction layer retransmits.
            inner
                .counters
                .udp_send_dropped
                .fetch_add(1, Ordering::Relaxed);
            warn!(local = %endpoint.local, %remote, "UDP socket buffer full; datagram dropped");
            Ok(())
        }
        Err(error) => {
            debug!(local = %endpoint.local, %remote, %error, "UDP send failed");
            Err(SendError::Io(error.kind()))
        }
    }
}
