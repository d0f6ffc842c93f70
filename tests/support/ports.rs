//! Loopback ports for test peers, and readiness checks that do not race the peer's bind.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Ports handed out in this test process: parallel tests in one binary never get the same one.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

fn claim(port: u16) -> bool {
    handed_out()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(port)
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Where [`free_port`] picks from: below Linux's default ephemeral range (32768–60999) and
/// below [`MEDIA_PORTS`]. A port picked from the ephemeral range and released could be given
/// to the next socket bound to port 0 — a handover under test in a parallel test binds its
/// listeners that way — before the peer it was meant for binds it: SIPp then failed with
/// "Address already in use", and its readiness check saw the other listener and passed.
const PEER_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A port on 127.0.0.1 that is free for BOTH UDP and TCP right now, from [`PEER_PORTS`], and
/// claimed in this process (parallel tests never get the same one).
pub fn free_port() -> u16 {
    for _ in 0..500 {
        let port = fastrand::u16(PEER_PORTS);
        if udp_free(port) && tcp_free(port) && claim(port) {
            return port;
        }
    }
    panic!("no free UDP+TCP port on 127.0.0.1 in {PEER_PORTS:?} after 500 tries");
}

/// Lowest and highest base for [`free_media_port`]: below Linux's default ephemeral range
/// (32768–60999), so no socket bound to port 0 — a server under test, another peer — is
/// given one of these ports between the check and SIPp's bind.
const MEDIA_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A base port for SIPp's `-mp`: SIPp binds audio RTP/RTCP at P, P+1 and video at P+2, P+3,
/// and exits 254 if any of them is taken. All four are free for UDP now and are claimed in
/// this process, and they lie outside the ephemeral range (see [`MEDIA_PORTS`]).
pub fn free_media_port() -> u16 {
    let slots = (MEDIA_PORTS.end - MEDIA_PORTS.start) / 4;
    for _ in 0..500 {
        let base = MEDIA_PORTS.start + 4 * fastrand::u16(0..slots);
        let block = base..base + 4;
        if block.clone().all(udp_free) && block.clone().all(claim) {
            return base;
        }
    }
    panic!("no four free UDP ports for SIPp media on 127.0.0.1 after 500 tries");
}

/// A free UDP port on 127.0.0.1 (also free for TCP, see [`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A free TCP port on 127.0.0.1 (also free for UDP, see [`free_port`]).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// Is something bound to 127.0.0.1:`port` (UDP) or listening on it (TCP)? Reads /proc/net so
/// that probing never steals the port from a peer that is about to bind it.
pub fn is_bound(port: u16, tcp: bool) -> Option<bool> {
    let table = if tcp {
        "/proc/net/tcp"
    } else {
        "/proc/net/udp"
    };
    let text = std::fs::read_to_string(table).ok()?;
    // local_address is "0100007F:PORT" (hex); TCP state 0A = LISTEN.
    let wanted_local = format!("0100007F:{port:04X}");
    let wanted_any = format!("00000000:{port:04X}");
    Some(text.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1).unwrap_or("");
        let state = cols.nth(1).unwrap_or("");
        (local == wanted_local || local == wanted_any) && (!tcp || state == "0A")
    }))
}

/// Waits until a peer has bound 127.0.0.1:`port`. Returns false on timeout. Where /proc/net is
/// unavailable it waits a fixed second instead.
pub async fn wait_bound(port: u16, tcp: bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match is_bound(port, tcp) {
            Some(true) => return true,
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                return true;
            }
            Some(false) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
