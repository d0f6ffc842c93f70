//! Test server: a config generator for loopback tests, `start_server`, and polling helpers.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use handover::app::RunningServer;
use handover::transport::Protocol;

/// Registrar domain and digest realm of test servers.
pub const DOMAIN: &str = "handover.test";

/// `[registrar]` line that makes the digest challenge usable by SIPp 3.6.1: SIPp answers only
/// the first `WWW-Authenticate` header, and only with MD5 (it aborts on `algorithm=SHA-256`).
pub const SIPP_DIGEST_COMPAT: &str = r#"algorithms = ["MD5"]"#;

/// T1 of test servers: small so that Timer B/F/H/J (64*T1) drain fast after each test, large
/// enough that SIPp on a loaded 2-core machine is not flooded with retransmissions.
pub const TEST_T1_MS: u64 = 100;

/// One `[[agents]]` entry.
#[derive(Debug, Clone)]
pub struct AgentCfg {
    pub id: String,
    pub password: String,
    pub contact: Option<String>,
}

/// Generator of a loopback test config: SIP on 127.0.0.1 port 0 (UDP and TCP), one trunk
/// accepting customer calls from 127.0.0.1, the given agents.
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    agents: Vec<AgentCfg>,
    registrar_extra: Vec<String>,
}

impl TestConfig {
    pub fn new() -> Self {
        TestConfig::default()
    }

    /// An agent that must REGISTER to receive calls.
    pub fn agent(mut self, id: &str, password: &str) -> Self {
        self.agents.push(AgentCfg {
            id: id.into(),
            password: password.into(),
            contact: None,
        });
        self
    }

    /// An agent with a static contact, e.g. `sip:2001@127.0.0.1:PORT` or `...;transport=tcp`.
    pub fn agent_at(mut self, id: &str, password: &str, contact: &str) -> Self {
        self.agents.push(AgentCfg {
            id: id.into(),
            password: password.into(),
            contact: Some(contact.into()),
        });
        self
    }

    /// An extra line in `[registrar]`, e.g. [`SIPP_DIGEST_COMPAT`].
    pub fn registrar_line(mut self, line: &str) -> Self {
        self.registrar_extra.push(line.into());
        self
    }

    pub fn to_toml(&self) -> String {
        let tmp = std::env::temp_dir();
        let cdr = tmp.join(format!(
            "handover-test-cdr-{}-{}.jsonl",
            std::process::id(),
            fastrand_u32()
        ));
        let mut t = String::new();
        let _ = writeln!(
            t,
            r#"[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"
t1_ms = {TEST_T1_MS}

[registrar]
min_expires_s = 60
max_expires_s = 3600
nonce_ttl_s = 300"#
        );
        for line in &self.registrar_extra {
            let _ = writeln!(t, "{line}");
        }
        let _ = writeln!(
            t,
            r#"
[http]
listen = "127.0.0.1:0"
token = "test-token"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:9"
access_number = "+3215550000"

[cdr]
path = "{}"
"#,
            cdr.display().to_string().replace('\\', "/")
        );
        for a in &self.agents {
            let _ = writeln!(
                t,
                "[[agents]]\nid = \"{}\"\npassword = \"{}\"\nskills = [\"sales\"]",
                a.id, a.password
            );
            if let Some(c) = &a.contact {
                let _ = writeln!(t, "contact = \"{c}\"");
            }
            t.push('\n');
        }
        t
    }
}

/// A unique-enough number for file names, without a dependency.
fn fastrand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9)
}

/// Installs a tracing subscriber once when `RUST_LOG` is set (server logs in test output).
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Parses `toml` and starts handover; panics with the config errors if it is rejected.
pub async fn start_server(toml: &str) -> RunningServer {
    init_tracing();
    let config = handover::config::Config::from_toml_str(toml)
        .unwrap_or_else(|e| panic!("test config rejected:\n{e}\n--- config ---\n{toml}"));
    handover::app::start(config)
        .await
        .unwrap_or_else(|e| panic!("handover did not start: {e}\n--- config ---\n{toml}"))
}

/// The server's bound SIP address for `protocol`.
pub fn sip_addr(server: &RunningServer, protocol: Protocol) -> SocketAddr {
    server
        .sip_addr(protocol)
        .unwrap_or_else(|| panic!("server has no SIP listener for the requested protocol"))
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub async fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to `timeout` for agent `id` to be in `state`; panics with the last state seen.
pub async fn wait_agent_state(server: &RunningServer, id: &str, state: &str, timeout: Duration) {
    let ok = wait_until(|| server.agent_state(id).as_deref() == Some(state), timeout).await;
    assert!(
        ok,
        "agent {id}: expected state {state:?} within {timeout:?}, still {:?}",
        server.agent_state(id)
    );
}

/// After a test: no call and no transaction may be left. Transactions linger for Timer
/// D/I/J/K (up to 64*T1 or T4 = 5 s, Timer D up to 32 s), so this polls for up to 60 s.
pub async fn assert_drained(server: &RunningServer) {
    let calls_gone = wait_until(|| server.stats().active_calls == 0, Duration::from_secs(20)).await;
    let s = server.stats();
    assert!(
        calls_gone,
        "calls left after the test: active_calls = {}, transactions = {}",
        s.active_calls, s.transactions
    );
    let txns_gone = wait_until(|| server.stats().transactions == 0, Duration::from_secs(60)).await;
    let s = server.stats();
    assert!(
        txns_gone,
        "transactions left after the test: active_calls = {}, transactions = {}",
        s.active_calls, s.transactions
    );
    // Each call's actor ends after its last transaction, and takes its routing entries along.
    let actors_gone = wait_until(
        || server.stats().initial_invites == 0,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        actors_gone,
        "initial INVITEs still routed after the test: {:?}",
        server.stats()
    );
}

/// Runs `f` with a hard limit so that a hung server fails the test instead of hanging CI.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {limit:?}"))
}
