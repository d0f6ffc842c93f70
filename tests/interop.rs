//! Real-softphone interop: pjsua2 (PyPI `pjsua2-python`, see `tests/interop/requirements.txt`)
//! phones against an in-process handover server.
//!
//! `tests/interop/basic_call.py` registers agents 1001 (UDP) and 1002 (TCP) with digest auth and
//! calls each of them from an unregistered trunk-side phone: answer, RTP, hold, resume, BYE. It
//! prints PASS/FAIL per check and exits non-zero on any failure. At its `CHECKPOINT` lines this
//! test inspects the server (agent states, call counts) and then lets the script go on.
//!
//! The harness (Python, ports, running the script) is `support::pjsua`.

mod support;

use std::time::Duration;

use handover::app::RunningServer;
use support::pjsua::{
    drained, expect_states, free_port, pjsua_available, python, run_script, start_server,
    DRAIN_TIMEOUT,
};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

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
            f
        }
        "talking 1001" => expect_states(server, &[("1001", "talking"), ("1002", "idle")]).await,
        "talking 1002" => expect_states(server, &[("1001", "idle"), ("1002", "talking")]).await,
        other => vec![format!("unknown checkpoint {other:?}")],
    };
    // A finished call's actor lives on while its last transactions drain (64*T1), so the
    // previous call may still be counted here: at least this one must be.
    if name.starts_with("talking") && server.stats().active_calls == 0 {
        failures.push("no active call during the call".to_owned());
    }
    for f in &mut failures {
        *f = format!("checkpoint {name:?}: {f}");
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsua2_agents_register_and_take_calls_with_hold_over_udp_and_tcp() {
    let python = python();
    if !pjsua_available(&python) {
        return;
    }
    let udp_agent = free_port(&[]);
    let tcp_agent = free_port(&[udp_agent]);
    let customer = free_port(&[udp_agent, tcp_agent]);
    let (server, port) = start_server(&[udp_agent, tcp_agent, customer], config_toml).await;

    let args = [
        "--server".to_owned(),
        format!("127.0.0.1:{port}"),
        "--udp-agent-port".to_owned(),
        udp_agent.to_string(),
        "--tcp-agent-port".to_owned(),
        tcp_agent.to_string(),
        "--customer-port".to_owned(),
        customer.to_string(),
    ];
    let expected = ["registered", "talking 1001", "idle", "talking 1002", "idle"];
    let srv = &server;
    let mut failures = run_script(
        &python,
        "basic_call.py",
        &args,
        SCRIPT_TIMEOUT,
        &expected,
        move |name| async move { at_checkpoint(srv, &name).await },
    )
    .await;

    // The script unregistered both phones and hung up every call: nothing may be left.
    let left = drained(&server).await;
    if left != 0 {
        failures.push(format!(
            "{left} calls still active {DRAIN_TIMEOUT:?} after the script ended"
        ));
    }
    let wrong = expect_states(&server, &[("1001", "logged_out"), ("1002", "logged_out")]).await;
    failures.extend(wrong.into_iter().map(|w| format!("after unregister: {w}")));
    if server.stats().registrations != 0 {
        failures.push(format!(
            "{} registrations left after unregister",
            server.stats().registrations
        ));
    }
    server.shutdown().await;
    assert!(
        failures.is_empty(),
        "interop failures:\n  {}",
        failures.join("\n  ")
    );
}
