//! Property: no datagram disturbs the server (DESIGN.md §5). Random bytes and mutations of
//! valid INVITE / REGISTER / BYE / OPTIONS / CANCEL / ACK templates (byte flips, truncation,
//! header duplication, huge values, random methods, inserted bytes) are sent over UDP to one
//! running server; after each case an OPTIONS must still get 200, and after the run the
//! server must return to zero active calls and zero transactions (Timer J = 64·T1 = 6.4 s
//! with `t1_ms = 100`, so that is polled for up to 20 s).
//!
//! The same test replays every crashing input the fuzzers found (`fuzz/regressions/`),
//! through the codec, the SDP inspector and the server.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use handover::app::RunningServer;
use handover::config::Config;
use handover::sip::SipMessage;
use handover::transport::Protocol;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};

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

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
                   a=sendrecv\r\n";

/// A valid request of `method` whose responses go to `sink` (rport).
fn template(method: &str, user: &str, sink: u16, id: u64) -> Vec<u8> {
    let body = if method == "INVITE" { SDP } else { "" };
    let to_tag = if method == "BYE" { ";tag=x1" } else { "" };
    let mut m = format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{sink};rport;branch=z9hG4bK-prop{id}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Prop\" <sip:2000@127.0.0.1>;tag=f{id}\r\n\
         To: <sip:{user}@test.local>{to_tag}\r\n\
         Call-ID: prop{id}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:2000@127.0.0.1:{sink};ob>\r\n\
         Supported: replaces, timer\r\n\
         Session-Expires: 1800\r\n\
         Expires: 60\r\n"
    );
    if !body.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m.into_bytes()
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    Flips(Vec<(usize, u8)>),
    Truncate(usize),
    DuplicateHeader { line: usize, times: usize },
    HugeValue { line: usize, len: usize },
    Method(String),
    Insert { at: usize, bytes: Vec<u8> },
    Garbage(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => Just(Mutation::None),
        4 => prop::collection::vec((any::<usize>(), any::<u8>()), 1..8).prop_map(Mutation::Flips),
        3 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), 1usize..300)
            .prop_map(|(line, times)| Mutation::DuplicateHeader { line, times }),
        2 => (any::<usize>(), prop_oneof![Just(5_000usize), Just(60_000), 100usize..20_000])
            .prop_map(|(line, len)| Mutation::HugeValue { line, len }),
        2 => "[A-Za-z!%*_+`'~.-]{1,70}".prop_map(Mutation::Method),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => prop::collection::vec(any::<u8>(), 0..1500).prop_map(Mutation::Garbage),
    ]
}

/// Byte offsets where each header line starts (after the start line, before the blank).
fn header_lines(msg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = match msg.windows(2).position(|w| w == b"\r\n") {
        Some(p) => p + 2,
        None => return out,
    };
    while let Some(rel) = msg[pos..].windows(2).position(|w| w == b"\r\n") {
        if rel == 0 {
            break;
        }
        out.push((pos, pos + rel + 2));
        pos += rel + 2;
    }
    out
}

fn apply(mut msg: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::None => msg,
        Mutation::Flips(flips) => {
            let len = msg.len();
            for &(i, b) in flips {
                msg[i % len] = b;
            }
            msg
        }
        Mutation::Truncate(at) => {
            msg.truncate(at % (msg.len() + 1));
            msg
        }
        Mutation::DuplicateHeader { line, times } => {
            let lines = header_lines(&msg);
            let (s, e) = lines[line % lines.len()];
            let copy = msg[s..e].to_vec();
            let mut out = msg[..e].to_vec();
            for _ in 0..*times {
                out.extend_from_slice(&copy);
            }
            out.extend_from_slice(&msg[e..]);
            out
        }
        Mutation::HugeValue { line, len } => {
            let lines = header_lines(&msg);
            let (_, e) = lines[line % lines.len()];
            let mut out = msg[..e - 2].to_vec();
            out.resize(out.len() + *len, b'a');
            out.extend_from_slice(&msg[e - 2..]);
            out
        }
        Mutation::Method(method) => {
            let sp = msg.iter().position(|&c| c == b' ').unwrap_or(0);
            let mut out = method.as_bytes().to_vec();
            out.extend_from_slice(&msg[sp..]);
            out
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (msg.len() + 1);
            msg.splice(at..at, bytes.iter().copied());
            msg
        }
        Mutation::Garbage(bytes) => bytes.clone(),
    }
}

struct Peer {
    server: SocketAddr,
    sock: UdpSocket,
    probe_sock: UdpSocket,
    probes: u64,
}

impl Peer {
    fn new(server: SocketAddr) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let probe_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe_sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Peer {
            server,
            sock,
            probe_sock,
            probes: 0,
        }
    }

    fn sink_port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn send(&self, bytes: &[u8]) {
        // Datagrams over the UDP limit cannot be sent at all; cut them there.
        let _ = self
            .sock
            .send_to(&bytes[..bytes.len().min(65_507)], self.server);
    }

    /// An OPTIONS from the probe socket must get 200 within 3 s.
    fn options_ok(&mut self) -> Result<(), String> {
        self.probes += 1;
        let n = self.probes;
        let port = self.probe_sock.local_addr().unwrap().port();
        let msg = format!(
            "OPTIONS sip:test.local SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-probe{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@127.0.0.1>;tag=p{n}\r\n\
             To: <sip:test.local>\r\n\
             Call-ID: probe{n}@prop\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.probe_sock
            .send_to(msg.as_bytes(), self.server)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok((len, _)) = self.probe_sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]);
                if text.contains(&format!("probe{n}@prop")) {
                    return if text.starts_with("SIP/2.0 200") {
                        Ok(())
                    } else {
                        Err(format!("probe answered {:?}", text.lines().next()))
                    };
                }
            }
        }
        Err("OPTIONS probe not answered within 3 s".into())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(rt: &tokio::runtime::Runtime) -> RunningServer {
    let config = Config::from_toml_str(CONFIG).expect("test config");
    rt.block_on(handover::app::start(config))
        .expect("server starts")
}

/// Polls until no call and no transaction is left.
fn assert_idle(server: &RunningServer, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = server.stats();
        if s.active_calls == 0
            && s.transactions == 0
            && s.call_actors == 0
            && s.initial_invites == 0
        {
            return;
        }
        assert!(Instant::now() < deadline, "server not idle: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mutated_sip_over_udp_never_disturbs_the_server() {
    let rt = runtime();
    let server = start(&rt);
    let mut peer = Peer::new(server.sip_addr(Protocol::Udp).unwrap());
    peer.options_ok().expect("server answers before the run");

    let methods = ["INVITE", "REGISTER", "BYE", "OPTIONS", "CANCEL", "ACK"];
    // 1001 is an agent (not registered), 100 the trunk access number, 9999 nobody.
    let users = ["1001", "100", "9999"];
    let strategy = (0..methods.len(), 0..users.len(), any::<u32>(), mutation());
    let mut runner = TestRunner::new(PropConfig {
        cases: 300,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let sink = peer.sink_port();
    let peer = std::cell::RefCell::new(peer);
    let result = runner.run(&strategy, |(m, u, id, mutation)| {
        let msg = apply(
            template(methods[m], users[u], sink, u64::from(id)),
            &mutation,
        );
        // The codec first: it must not panic either.
        let _ = SipMessage::parse(Bytes::from(msg.clone()));
        let mut peer = peer.borrow_mut();
        peer.send(&msg);
        peer.options_ok().map_err(|e| {
            TestCaseError::fail(format!(
                "{e} after {:?}",
                String::from_utf8_lossy(&msg[..msg.len().min(2000)])
            ))
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_idle(&server, Duration::from_secs(20));
    peer.borrow_mut()
        .options_ok()
        .expect("server answers after the run");
    rt.block_on(server.shutdown());
}

fn regression_inputs() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_file() && path.extension().is_none_or(|e| e != "md") {
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_regressions_replay_through_codec_sdp_and_server() {
    let inputs = regression_inputs();
    for (name, data) in &inputs {
        // Panics here fail the test with the file name in the backtrace context.
        println!("replaying {name} ({} bytes)", data.len());
        if let Ok(msg) = SipMessage::parse(Bytes::from(data.clone())) {
            let _ = (
                msg.vias(),
                msg.from(),
                msg.to(),
                msg.contacts(),
                msg.request_uri(),
            );
            let _ = (msg.refer_to(), msg.replaces(), msg.session_expires());
        }
        let _ = handover::sdp::inspect(data);
        let _ = handover::sdp::LegSdpOrigin::new(1).apply(data, false);
        let _ = handover::sdp::set_direction(data, handover::sdp::Direction::SendOnly);
    }
    let rt = runtime();
    let server = start(&rt);
    let mut peer = Peer::new(server.sip_addr(Protocol::Udp).unwrap());
    for (name, data) in &inputs {
        peer.send(data);
        peer.options_ok()
            .unwrap_or_else(|e| panic!("after regression input {name}: {e}"));
    }
    assert_idle(&server, Duration::from_secs(20));
    rt.block_on(server.shutdown());
}
