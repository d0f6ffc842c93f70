//! pjsua2 interop harness: runs a `tests/interop/*.py` script (PyPI `pjsua2-python`) against an
//! in-process handover, relays its output, and answers its `CHECKPOINT` lines after a
//! per-test server inspection.
//!
//! Python is `HANDOVER_PYTHON` (set by `scripts/test.sh` to the venv it creates), else `python3`.
//! Without pjsua2 a test is skipped (and passes, with a message) unless
//! `HANDOVER_REQUIRE_PJSUA` is set, in which case it fails.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use handover::app::RunningServer;
use handover::transport::Protocol;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

/// How long `expect_states` waits for the agent states to settle.
pub const STATE_SETTLE: Duration = Duration::from_secs(3);
/// How long `drained` waits for the last calls to end.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn python() -> String {
    std::env::var("HANDOVER_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Is pjsua2 importable? Fails the test instead of skipping when `HANDOVER_REQUIRE_PJSUA` is set.
pub fn pjsua_available(python: &str) -> bool {
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

/// A port on 127.0.0.1 free for both UDP and TCP right now, different from `taken`: one of
/// [`super::ports::free_port`]'s, outside the range that sockets bound to port 0 are given.
pub fn free_port(taken: &[u16]) -> u16 {
    loop {
        let port = super::ports::free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
}

/// Starts handover with `config_toml(port)` on a port free for UDP and TCP (retrying if another
/// process takes it first).
pub async fn start_server(avoid: &[u16], config_toml: fn(u16) -> String) -> (RunningServer, u16) {
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
pub async fn expect_states(server: &RunningServer, want: &[(&str, &str)]) -> Vec<String> {
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
pub async fn drained(server: &RunningServer) -> usize {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while server.stats().active_calls != 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    server.stats().active_calls
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

/// Runs `python -u tests/interop/<script> <args> --checkpoints` within `script_timeout`,
/// echoing its output. At each `CHECKPOINT <name>` line it awaits `at_checkpoint(name)` (the
/// server-side checks, returning failures) and then lets the script go on. Returns the
/// failures: those of the checkpoints, a timeout, a non-zero exit, and checkpoints reached
/// other than `expected`.
pub async fn run_script<F, Fut>(
    python: &str,
    script: &str,
    args: &[String],
    script_timeout: Duration,
    expected: &[&str],
    mut at_checkpoint: F,
) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg("-u")
        .arg(&path)
        .args(args)
        .arg("--checkpoints")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {path}: {e}"));
    let mut stdin = child.stdin.take();
    let (tx, mut lines) = mpsc::unbounded_channel();
    forward_lines(child.stdout.take().unwrap(), tx);
    let (etx, mut err_lines) = mpsc::unbounded_channel();
    forward_lines(child.stderr.take().unwrap(), etx);

    let mut failures: Vec<String> = Vec::new();
    let mut checkpoints = Vec::new();
    let deadline = Instant::now() + script_timeout;
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
                    failures.extend(at_checkpoint(name.trim().to_owned()).await);
                    checkpoints.push(name.trim().to_owned());
                    resume(&mut stdin);
                }
            }
            Ok(Some(None)) | Ok(None) => break,
            Err(_) => {
                kill(&mut child);
                failures.push(format!("script killed after {script_timeout:?}"));
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
            failures.push(format!("script did not exit within {script_timeout:?}"));
            break None;
        }
        sleep(Duration::from_millis(50)).await;
    };
    while let Ok(Some(line)) = err_lines.try_recv() {
        println!("stderr: {line}");
    }
    if let Some(status) = status {
        if !status.success() {
            failures.push(format!("{script} failed: {status} (see its FAIL lines)"));
        }
    }
    if checkpoints != expected {
        failures.push(format!(
            "checkpoints reached {checkpoints:?}, expected {expected:?}"
        ));
    }
    failures
}
