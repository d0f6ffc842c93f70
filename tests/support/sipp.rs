//! SIPp runner: builds a `sipp` command line, runs it with a hard timeout (killed on drop), and
//! reads the outcome from SIPp's exit code and the last row of its `-trace_stat` CSV.
//!
//! SIPp exit codes: 0 = every call succeeded, 1 = at least one call failed, 97 = stopped by an
//! internal command or `-timeout` (without `-timeout_error`), 99 = no call processed,
//! 255/254 = fatal error / could not bind.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::ports::wait_bound;

/// Env var: when set, a missing `sipp` fails the test instead of skipping it (CI sets it).
pub const REQUIRE_SIPP_ENV: &str = "HANDOVER_REQUIRE_SIPP";
/// Env var: when set, every SIPp run also writes `-trace_msg` (kept in the run directory).
pub const TRACE_ENV: &str = "HANDOVER_SIPP_TRACE";

/// Is a runnable `sipp` on PATH?
pub fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// True when the test must be skipped: `sipp` is missing and [`REQUIRE_SIPP_ENV`] is unset.
/// Panics when `sipp` is missing but required.
pub fn skip_without_sipp() -> bool {
    if sipp_available() {
        return false;
    }
    if std::env::var_os(REQUIRE_SIPP_ENV).is_some() {
        panic!("sipp is not installed but {REQUIRE_SIPP_ENV} is set (install Debian `sip-tester`)");
    }
    eprintln!(
        "SKIPPED: `sipp` not found on PATH (install Debian `sip-tester`); set {REQUIRE_SIPP_ENV}=1 to make this a failure"
    );
    true
}

/// SIPp transport mode (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `u1`: one UDP socket.
    Udp,
    /// `t1`: one TCP connection (a UAS accepts any number).
    Tcp,
    /// `tn`: one TCP connection per call.
    TcpPerCall,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
            Transport::TcpPerCall => "tn",
        }
    }

    fn is_tcp(self) -> bool {
        self != Transport::Udp
    }
}

/// Builder for one SIPp process. Scenario paths are relative to the crate root
/// (`env!("CARGO_MANIFEST_DIR")`), e.g. `"sipp-scenarios/basic/customer_call_bye.xml"`.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    remote: Option<SocketAddr>,
    local_port: Option<u16>,
    transport: Transport,
    calls: u64,
    rate: Option<(u32, u32)>,
    limit: Option<u32>,
    service: Option<String>,
    auth: Option<(String, String)>,
    keys: Vec<(String, String)>,
    pause_ms: Option<u64>,
    timeout: Duration,
    trace_msg: bool,
    extra: Vec<String>,
}

impl Sipp {
    pub fn new(scenario: &str) -> Self {
        Sipp {
            scenario: scenario.to_owned(),
            remote: None,
            local_port: None,
            transport: Transport::Udp,
            calls: 1,
            rate: None,
            limit: None,
            service: None,
            auth: None,
            keys: Vec::new(),
            pause_ms: None,
            timeout: Duration::from_secs(60),
            trace_msg: std::env::var_os(TRACE_ENV).is_some(),
            extra: Vec::new(),
        }
    }

    /// Where a UAC sends its first request.
    pub fn remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// `-p`: the local SIP port (always on 127.0.0.1).
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = Some(port);
        self
    }

    /// `-t`.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// `-m`: stop after this many calls (default 1).
    pub fn calls(mut self, calls: u64) -> Self {
        self.calls = calls;
        self
    }

    /// `-r calls -rp period_ms`.
    pub fn rate(mut self, calls: u32, period_ms: u32) -> Self {
        self.rate = Some((calls, period_ms));
        self
    }

    /// `-l`: maximum simultaneous calls.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// `-s`: the `[service]` keyword (dialled number / agent id).
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// `-au user -ap password` for `[authentication]`.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// `-key name value`: a `[name]` keyword in the scenario.
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `-d`: the length of `<pause/>` in milliseconds.
    pub fn pause_ms(mut self, ms: u64) -> Self {
        self.pause_ms = Some(ms);
        self
    }

    /// `-timeout` (with `-timeout_error`): SIPp gives up and fails after this long. The process
    /// is killed 20 s later if it has not exited by then.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `-trace_msg`: keep every message in the run directory.
    pub fn trace_msg(mut self) -> Self {
        self.trace_msg = true;
        self
    }

    /// Any other SIPp argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    fn label(&self) -> String {
        Path::new(&self.scenario)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.scenario.clone())
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join(&self.scenario);
        let mut a: Vec<String> = vec!["-sf".into(), scenario.to_string_lossy().into_owned()];
        if let Some(remote) = self.remote {
            a.push(remote.to_string());
        }
        a.extend(["-i", "127.0.0.1", "-bind_local", "-nostdin"].map(String::from));
        a.extend(["-t".into(), self.transport.flag().into()]);
        if self.transport == Transport::TcpPerCall {
            // SIPp refuses to start when its default socket budget exceeds `ulimit -n`.
            a.extend(["-max_socket".into(), "1024".into()]);
        }
        if let Some(port) = self.local_port {
            a.extend(["-p".into(), port.to_string()]);
        }
        if !self.extra.iter().any(|x| x == "-mp") {
            // Each SIPp binds an RTP port (default 6000 + n): concurrent instances clash
            // unless each gets a free one.
            a.extend(["-mp".into(), super::ports::free_media_port().to_string()]);
        }
        a.extend(["-m".into(), self.calls.to_string()]);
        if let Some((calls, period)) = self.rate {
            a.extend([
                "-r".into(),
                calls.to_string(),
                "-rp".into(),
                period.to_string(),
            ]);
        }
        if let Some(limit) = self.limit {
            a.extend(["-l".into(), limit.to_string()]);
        }
        if let Some(service) = &self.service {
            a.extend(["-s".into(), service.clone()]);
        }
        if let Some((user, password)) = &self.auth {
            a.extend(["-au".into(), user.clone(), "-ap".into(), password.clone()]);
        }
        for (name, value) in &self.keys {
            a.extend(["-key".into(), name.clone(), value.clone()]);
        }
        if let Some(ms) = self.pause_ms {
            a.extend(["-d".into(), ms.to_string()]);
        }
        a.extend([
            "-timeout".into(),
            format!("{}s", self.timeout.as_secs().max(1)),
            "-timeout_error".into(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.join("errors.log").to_string_lossy().into_owned(),
            "-trace_stat".into(),
            "-fd".into(),
            "1".into(),
            "-stf".into(),
            dir.join("stat.csv").to_string_lossy().into_owned(),
        ]);
        if self.trace_msg {
            a.extend([
                "-trace_msg".into(),
                "-message_file".into(),
                dir.join("messages.log").to_string_lossy().into_owned(),
            ]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts SIPp and returns at once. For a UAS with a local port, await
    /// [`SippProcess::ready`] before starting the peer that sends to it.
    pub fn spawn(self) -> SippProcess {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "handover-sipp-{}-{}-{}",
            std::process::id(),
            n,
            self.label()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create SIPp run directory");
        let args = self.args(&dir);
        let stdout = std::fs::File::create(dir.join("stdout.log")).expect("create SIPp stdout log");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create SIPp stderr log");
        let child = Command::new("sipp")
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start sipp ({e}); is Debian `sip-tester` installed?")
            });
        SippProcess {
            label: self.label(),
            command: format!("sipp {}", args.join(" ")),
            dir,
            child: Some(child),
            started: Instant::now(),
            hard_timeout: self.timeout + Duration::from_secs(20),
            local_port: self.local_port,
            tcp: self.transport.is_tcp(),
        }
    }

    /// Runs SIPp to completion.
    pub async fn run(self) -> SippOutcome {
        self.spawn().wait().await
    }
}

/// A running SIPp; killed when dropped.
#[derive(Debug)]
pub struct SippProcess {
    label: String,
    command: String,
    dir: PathBuf,
    child: Option<Child>,
    started: Instant,
    hard_timeout: Duration,
    local_port: Option<u16>,
    tcp: bool,
}

impl SippProcess {
    /// Waits until SIPp has bound its local port (UDP) or listens on it (TCP). Panics with SIPp's
    /// output if it exits or does not bind within 15 s.
    pub async fn ready(&mut self) {
        let Some(port) = self.local_port else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if wait_bound(port, self.tcp, Duration::from_millis(200)).await {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let outcome = self.outcome(status.code(), false);
                    panic!(
                        "{} exited before binding port {port}:\n{}",
                        self.label, outcome.diagnostics
                    );
                }
            }
        }
        panic!(
            "{} did not bind 127.0.0.1:{port} within 15 s ({})",
            self.label, self.command
        );
    }

    /// Waits for SIPp to exit (killing it after its hard timeout) and collects the outcome.
    pub async fn wait(mut self) -> SippOutcome {
        self.wait_for(self.hard_timeout).await
    }

    /// Like [`SippProcess::wait`] but kills SIPp once `limit` has passed since it started
    /// (used for a UAS whose UAC already failed: it would otherwise wait for its own timeout).
    pub async fn wait_at_most(mut self, limit: Duration) -> SippOutcome {
        let limit = limit.min(self.hard_timeout);
        self.wait_for(limit).await
    }

    async fn wait_for(&mut self, limit: Duration) -> SippOutcome {
        let mut killed = false;
        let code = loop {
            let Some(child) = self.child.as_mut() else {
                break None;
            };
            match child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.label),
            }
            if self.started.elapsed() > limit {
                let _ = child.kill();
                let status = child.wait().ok();
                killed = true;
                break status.and_then(|s| s.code());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.child = None;
        self.outcome(code, killed)
    }

    fn outcome(&self, exit_code: Option<i32>, killed: bool) -> SippOutcome {
        let stat = read_stat(&self.dir.join("stat.csv"));
        let get = |k: &str| {
            stat.iter()
                .find(|(name, _)| name == k)
                .and_then(|(_, v)| v.parse().ok())
        };
        let mut diagnostics = String::new();
        let _ = writeln!(
            diagnostics,
            "--- {} (exit {exit_code:?}{})",
            self.label,
            if killed {
                ", KILLED after hard timeout"
            } else {
                ""
            }
        );
        let _ = writeln!(diagnostics, "command: {}", self.command);
        let _ = writeln!(diagnostics, "run directory: {}", self.dir.display());
        for (file, lines) in [("errors.log", 40), ("stderr.log", 20), ("stdout.log", 45)] {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let text = text.trim();
            if !text.is_empty() {
                let tail: Vec<&str> = text.lines().rev().take(lines).collect();
                let _ = writeln!(diagnostics, "--- {file} (last {lines} lines)");
                for line in tail.into_iter().rev() {
                    let _ = writeln!(diagnostics, "{line}");
                }
            }
        }
        SippOutcome {
            label: self.label.clone(),
            exit_code,
            killed,
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
            dir: self.dir.clone(),
            diagnostics,
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Header row and last row of a SIPp `-trace_stat` CSV (`;`-separated), as (column, value).
fn read_stat(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let Some(last) = lines.next_back() else {
        return Vec::new();
    };
    header
        .trim_end_matches(';')
        .split(';')
        .zip(last.trim_end_matches(';').split(';'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What one SIPp run did.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// Scenario file stem.
    pub label: String,
    /// Process exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// Killed by the harness after its hard timeout.
    pub killed: bool,
    /// `SuccessfulCall(C)` of the final statistics row (`None`: no statistics written).
    pub successful: Option<u64>,
    /// `FailedCall(C)` of the final statistics row.
    pub failed: Option<u64>,
    /// Run directory (statistics, error log, message trace).
    pub dir: PathBuf,
    /// Command line and the tails of SIPp's error log, stderr and final screen.
    pub diagnostics: String,
}

impl SippOutcome {
    /// Exit code 0 and exactly `calls` successful, 0 failed calls.
    pub fn is_success(&self, calls: u64) -> bool {
        self.exit_code == Some(0) && self.successful == Some(calls) && self.failed == Some(0)
    }

    /// Panics with SIPp's diagnostics unless [`SippOutcome::is_success`]. On success the run
    /// directory is removed (unless a message trace was asked for).
    pub fn assert_success(&self, calls: u64) {
        assert!(
            self.is_success(calls),
            "{}: expected exit 0 with {calls} successful / 0 failed calls, got exit {:?}, successful {:?}, failed {:?}\n{}",
            self.label,
            self.exit_code,
            self.successful,
            self.failed,
            self.diagnostics
        );
        if std::env::var_os(TRACE_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs an agent-side UAS and a customer-side UAC: starts `uas`, waits until it has bound its
/// port, runs `uac` to completion, then waits for `uas` (at most 15 s more if the UAC failed,
/// so a failure does not wait for the UAS's own timeout). Returns (uas, uac).
pub async fn run_pair(uas: Sipp, uac: Sipp) -> (SippOutcome, SippOutcome) {
    let mut uas = uas.spawn();
    uas.ready().await;
    let uac = uac.run().await;
    let uas = if uac.exit_code == Some(0) {
        uas.wait().await
    } else {
        let grace = uas.started.elapsed() + Duration::from_secs(15);
        uas.wait_at_most(grace).await
    };
    (uas, uac)
}

/// [`run_pair`], then asserts that both sides completed `calls` calls successfully (UAC first:
/// its failure usually explains the UAS's).
pub async fn run_pair_ok(uas: Sipp, uac: Sipp, calls: u64) {
    let (uas, uac) = run_pair(uas, uac).await;
    if !uac.is_success(calls) && !uas.is_success(calls) {
        panic!(
            "both SIPp sides failed.\nUAC: exit {:?} ok {:?} failed {:?}\nUAS: exit {:?} ok {:?} failed {:?}\n{}\n{}",
            uac.exit_code, uac.successful, uac.failed, uas.exit_code, uas.successful, uas.failed,
            uac.diagnostics, uas.diagnostics
        );
    }
    uac.assert_success(calls);
    uas.assert_success(calls);
}
