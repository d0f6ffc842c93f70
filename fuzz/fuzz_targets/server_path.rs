//! Fuzz target: arbitrary datagrams through the whole server (transport → dispatcher →
//! registrar / call actors), DESIGN.md §5.
//!
//! One server runs for the whole fuzzing session on a tokio runtime created once. Each input
//! is sent as one UDP datagram to it; every `PROBE_EVERY` inputs an OPTIONS must be answered
//! 200 within `PROBE_TIMEOUT`, so a panicked task, a dead receive loop or a wedged
//! dispatcher is reported as a crash (the probe aborts the process). A panic inside a server
//! task is caught by tokio, so a panic hook turns any panic into an abort first.

#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use handover::app::RunningServer;
use handover::config::Config;
use handover::transport::Protocol;
use libfuzzer_sys::fuzz_target;
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

const CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "test.local"
t1_ms = 100

[[trunks]]
name = "t"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:9"
access_number = "100"

[[agents]]
id = "1001"
password = "pass1001"
skills = ["s"]
"#;

const PROBE_EVERY: u64 = 200;
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

struct Harness {
    rt: Runtime,
    server: SocketAddr,
    sender: std::net::UdpSocket,
    // Kept alive for the whole run; its stats are printed when a probe fails.
    running: RunningServer,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        // A panic on any server task must be a crash, not a silently dead task.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::abort();
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = Config::from_toml_str(CONFIG).expect("config");
        let running = rt
            .block_on(handover::app::start(config))
            .expect("server starts");
        let server = running.sip_addr(Protocol::Udp).expect("udp listener");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender socket");
        Harness {
            rt,
            server,
            sender,
            running,
        }
    })
}

/// Sends an OPTIONS from a fresh socket and requires a 200 for it. The request is
/// retransmitted every 500 ms (RFC 3261 Timer E), as a real UAC would: under fuzzing load the
/// kernel may drop a datagram when the server's receive buffer is full.
fn probe(h: &Harness, n: u64) {
    let outcome = h.rt.block_on(async {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let port = sock.local_addr().map_err(|e| e.to_string())?.port();
        let msg = format!(
            "OPTIONS sip:test.local SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-probe{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@127.0.0.1>;tag=p{n}\r\n\
             To: <sip:test.local>\r\n\
             Call-ID: probe{n}@fuzz\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
        let mut last = String::from("nothing");
        while tokio::time::Instant::now() < deadline {
            let _ = sock.send_to(msg.as_bytes(), h.server).await;
            let resend = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((len, _))) =
                tokio::time::timeout_at(resend, sock.recv_from(&mut buf)).await
            {
                let text = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned();
                if text.contains(&format!("probe{n}@fuzz")) {
                    if text.starts_with("SIP/2.0 200") {
                        return Ok(());
                    }
                    last = text;
                }
            }
        }
        Err(format!("last answer: {last}"))
    });
    if let Err(e) = outcome {
        eprintln!(
            "server stopped answering OPTIONS after {n} inputs ({e}); stats {:?}",
            h.running.stats()
        );
        std::process::abort();
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    if data.len() <= 65507 {
        let _ = h.sender.send_to(data, h.server);
    }
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if n % PROBE_EVERY == 0 {
        probe(h, n);
    }
});
