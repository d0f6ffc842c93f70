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
//! The harness (Python, ports, running the script) is `support::pjsua`.

mod support;

use std::time::Duration;

use handover::app::RunningServer;
use support::pjsua::{
    drained, expect_states, free_port, pjsua_available, python, run_script, start_server,
    DRAIN_TIMEOUT,
};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

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
    let (server, port) = start_server(&[agent_a, agent_b, customer], config_toml).await;

    let mut args = vec![
        "--server".to_owned(),
        format!("127.0.0.1:{port}"),
        "--agent-a-port".to_owned(),
        agent_a.to_string(),
        "--agent-b-port".to_owned(),
        agent_b.to_string(),
        "--customer-port".to_owned(),
        customer.to_string(),
    ];
    for s in scenarios {
        args.extend(["--scenario".to_owned(), (*s).to_owned()]);
    }
    let srv = &server;
    let mut failures = run_script(
        &python,
        "transfer.py",
        &args,
        SCRIPT_TIMEOUT,
        expected,
        move |name| async move { at_checkpoint(srv, &name).await },
    )
    .await;

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
