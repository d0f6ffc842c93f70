//! Real-softphone transfer interop: pjsua2 (PyPI `pjsua2-python`, see
//! `tests/interop/requirements.txt`) phones transfer calls through an in-process handover.
//!
//! `tests/interop/transfer.py` registers agents 1001 (UDP, the transferor A) and 1002 (TCP,
//! the target B) and has an unregistered trunk-side phone (the customer C) call 1001 for each
//! scenario: blind success transfer with `Call.xfer` (`;transfer=success` in the Refer-To),
//! the same to a target that answers 486, attended transfer with `Call.xferReplaces` after a
//! consultation call, and a release transfer (no type: `default_blind = "release"`). The script
//! asserts on each phone the NOTIFY progress it saw, which call it ends up in, that the
//! customer keeps its original dialog (handover bridges by re-INVITE, never REFERs a phone) and
//! that media flows between the right phones; it prints PASS/FAIL per check and exits non-zero
//! on any failure. At its `CHECKPOINT` lines this test checks agent states and call counts on
//! the server and then lets the script go on.
//!
//! Python is `HANDOVER_PYTHON` (set by `scripts/test.sh` to the venv it creates), else `python3`.
//! Without pjsua2 the test is skipped (and passes, with a message) unless
//! `HANDOVER_REQUIRE_PJSUA` is set, in which case it fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use handover::app::RunningServer;
use handover::transport::Protocol;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
const STATE_SETTLE: Duration = Duration::from_secs(3);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpoints the script reaches when its default scenarios run to their end.
const ALL_SCENARIOS_CHECKPOINTS: [&str; 10] = [
    "registered",
    // blind success: C talks to B
    "talking 1002",
    "idle",
    // blind success to a busy target: C stays with A
    "talking 1001",
    "idle",
    // attended: A consults B, then C talks to B
    "consulting",
    "talking 1002",
    "idle",
    // release: C talks to B
    "talking 1002",
    "idle",
];

fn python() -> String {
    std::env::var("HANDOVER_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Is pjsua2 importable? Fails the test instead of skipping when `HANDOVER_REQUIRE_PJSUA` is set.
fn pjsua_available(python: &str) -> bool {
    let ok = Command::new(python)
        .args(["-c", "import pjsua2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("HANDOVER_REQUIRE_PJSUA").is_none(),
            "HANDOVER_REQUIRE_PJSUA is set but `{python} -c 'import pjsua2'` fails: \
             install tests/interop/requirements.txt (scripts/test.sh does) or set HANDOVER_PYTHON"
        );
        println!("skipped: pjsua2 not installed (`{python} -c 'import pjsua2'` fails)");
    }
    ok
}

/// A port on 127.0.0.1 free for both UDP and TCP right now, different from `taken`.
fn free_port(taken: &[u16]) -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port on 127.0.0.1 free for both UDP and TCP");
}

fn config_toml(port: u16) -> String {
    format!(
        r#"[sip]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
domain = "interop.local"
t1_ms = 100

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:5999"
access_number = "100"

[[agents]]
id = "1001"
password = "pass1001"
skills = ["sales"]

[[agents]]
id = "1002"
password = "pass1002"
skills = ["sales"]

[transfer]
default_blind = "release"
"#
    )
}

/// Starts handover on a port free for UDP and TCP (retrying if another process takes it first).
async fn start_server(avoid: &[u16]) -> (RunningServer, u16) {
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port(avoid);
        let config = handover::config::Config::from_toml_str(&config_toml(port))
            .unwrap_or_else(|e| panic!("test config rejected: {e:?}"));
        match handover::app::start(config).await {
            Ok(server) => {
                assert_eq!(
                    server.sip_addr(Protocol::Udp),
                    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                );
                assert_eq!(
                    server.sip_addr(Protocol::Tcp),
                    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                );
                return (server, port);
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    panic!("handover did not start: {last_error}");
}

/// What the script printed, line by line, then `None` at end of output.
fn forward_lines(
    reader: impl std::io::Read + Send + 'static,
    tx: mpsc::UnboundedSender<Option<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
}

/// Waits until every `(agent, state)` holds, or `STATE_SETTLE` passes; returns the mismatches.
async fn expect_states(server: &RunningServer, want: &[(&str, &str)]) -> Vec<String> {
    let deadline = Instant::now() + STATE_SETTLE;
    loop {
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|(id, state)| {
                let got = server.agent_state(id);
                (got.as_deref() != Some(*state))
                    .then(|| format!("agent {id} is {got:?}, expected {state:?}"))
            })
            .collect();
        if wrong.is_empty() || Instant::now() >= deadline {
            return wrong;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no call has a leg up, or `DRAIN_TIMEOUT` passes; returns the count left.
async fn drained(server: &RunningServer) -> usize {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while server.stats().active_calls != 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    server.stats().active_calls
}

/// Server-side checks at a script checkpoint. Returns the failures.
async fn at_checkpoint(server: &RunningServer, name: &str) -> Vec<String> {
    let mut failures = match name {
        "registered" | "idle" => {
            let mut f = expect_states(server, &[("1001", "idle"), ("1002", "idle")]).await;
            let stats = server.stats();
            if stats.registrations != 2 {
                f.push(format!("{} registrations, expected 2", stats.registrations));
            }
            // Every call of the scenario has ended on every leg: none may linger.
            let left = drained(server).await;
            if left != 0 {
                f.push(format!("{left} calls still active {DRAIN_TIMEOUT:?} later"));
            }
            f
        }
        "talking 1001" => expect_states(server, &[("1001", "talking"), ("1002", "idle")]).await,
        "talking 1002" => expect_states(server, &[("1001", "idle"), ("1002", "talking")]).await,
        "consulting" => expect_states(server, &[("1001", "talking"), ("1002", "talking")]).await,
        other => vec![format!("unknown checkpoint {other:?}")],
    };
    if name != "registered" && name != "idle" && server.stats().active_calls == 0 {
        failures.push("no active call during the call".to_owned());
    }
    for f in &mut failures {
        *f = format!("checkpoint {name:?}: {f}");
    }
    failures
}

fn resume(stdin: &mut Option<ChildStdin>) {
    if let Some(s) = stdin.as_mut() {
        let _ = s.write_all(b"go\n").and_then(|()| s.flush());
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `transfer.py` (only `scenarios`, or its defaults when empty) against a fresh server,
/// checking the server at each checkpoint, that the checkpoints reached are `expected` and that
/// nothing is left afterwards. Panics with every failure.
async fn run_transfer_script(scenarios: &[&str], expected: &[&str]) {
    let python = python();
    if !pjsua_available(&python) {
        return;
    }
    let agent_a = free_port(&[]);
    let agent_b = free_port(&[agent_a]);
    let customer = free_port(&[agent_a, agent_b]);
    let (server, port) = start_server(&[agent_a, agent_b, customer]).await;

    let script = format!("{}/tests/interop/transfer.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&python)
        .arg("-u")
        .arg(&script)
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--agent-a-port", &agent_a.to_string()])
        .args(["--agent-b-port", &agent_b.to_string()])
        .args(["--customer-port", &customer.to_string()])
        .arg("--checkpoints")
        .args(scenarios.iter().flat_map(|s| ["--scenario", s]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
    let mut stdin = child.stdin.take();
    let (tx, mut lines) = mpsc::unbounded_channel();
    forward_lines(child.stdout.take().unwrap(), tx);
    let (etx, mut err_lines) = mpsc::unbounded_channel();
    forward_lines(child.stderr.take().unwrap(), etx);

    let mut failures: Vec<String> = Vec::new();
    let mut checkpoints = Vec::new();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            lines.recv(),
        )
        .await
        {
            Ok(Some(Some(line))) => {
                println!("{line}");
                if let Some(name) = line.strip_prefix("CHECKPOINT ") {
                    failures.extend(at_checkpoint(&server, name.trim()).await);
                    checkpoints.push(name.trim().to_owned());
                    resume(&mut stdin);
                }
            }
            Ok(Some(None)) | Ok(None) => break,
            Err(_) => {
                kill(&mut child);
                failures.push(format!("script killed after {SCRIPT_TIMEOUT:?}"));
                break;
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            failures.push(format!("script did not exit within {SCRIPT_TIMEOUT:?}"));
            break None;
        }
        sleep(Duration::from_millis(50)).await;
    };
    while let Ok(Some(line)) = err_lines.try_recv() {
        println!("stderr: {line}");
    }
    if let Some(status) = status {
        if !status.success() {
            failures.push(format!("transfer.py failed: {status} (see its FAIL lines)"));
        }
    }
    if checkpoints != expected {
        failures.push(format!(
            "checkpoints reached {checkpoints:?}, expected {expected:?}"
        ));
    }

    // Every call was hung up and both phones unregistered: nothing may be left.
    let left = drained(&server).await;
    if left != 0 {
        failures.push(format!(
            "{left} calls still active {DRAIN_TIMEOUT:?} after the script ended"
        ));
    }
    let wrong = expect_states(&server, &[("1001", "logged_out"), ("1002", "logged_out")]).await;
    failures.extend(wrong.into_iter().map(|w| format!("after unregister: {w}")));
    server.shutdown().await;
    assert!(
        failures.is_empty(),
        "interop failures:\n  {}",
        failures.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsua2_blind_busy_attended_and_release_transfers() {
    run_transfer_script(&[], &ALL_SCENARIOS_CHECKPOINTS).await;
}

/// pjsua's `Call.xfer(dest)` puts `dest` verbatim in Refer-To: given the bare URI
/// `sip:1002@HOST:PORT;transfer=success` (no angle brackets), RFC 3261 section 20 makes
/// `transfer=success` a Refer-To header parameter rather than a URI parameter. A phone user
/// asking for a success transfer must still get one (not the release default, which would
/// drop the customer if the target is busy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsua2_blind_success_transfer_with_a_bare_refer_to() {
    run_transfer_script(&["blind-bare"], &["registered", "talking 1002", "idle"]).await;
}
