//! Core call flows through handover, driven by SIPp: customer (SIPp UAC) -> handover -> agent
//! (SIPp UAS). Each test starts its own server on 127.0.0.1 port 0 and its SIPp peers on free
//! ports, and ends with no call and no transaction left in the server.
//!
//! Skipped (with a message) when `sipp` is not installed and `HANDOVER_REQUIRE_SIPP` is unset.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use handover::app::RunningServer;
use handover::transport::Protocol;
use support::{
    assert_drained, free_port, run_pair_ok, sip_addr, skip_without_sipp, start_server,
    wait_agent_state, wait_until, Sipp, TestConfig, Transport, DOMAIN, SIPP_DIGEST_COMPAT,
};

const AGENT: &str = "2001";
const AGENT_PASSWORD: &str = "pass2001";
const SETTLE: Duration = Duration::from_secs(15);

/// The customer's side: a SIPp UAC on a free port dialling `number` at the server.
fn customer(scenario: &str, server: SocketAddr, number: &str) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/basic/{scenario}.xml"))
        .remote(server)
        .local_port(free_port())
        .service(number)
        .pause_ms(300)
        .timeout(Duration::from_secs(60))
}

/// The agent's phone: a SIPp UAS on `port`.
fn agent(scenario: &str, port: u16) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/basic/{scenario}.xml"))
        .local_port(port)
        .timeout(Duration::from_secs(60))
}

/// A server with agent 2001 at a static UDP contact on `agent_port`.
async fn server_with_static_agent(agent_port: u16) -> RunningServer {
    let toml = TestConfig::new()
        .agent_at(
            AGENT,
            AGENT_PASSWORD,
            &format!("sip:{AGENT}@127.0.0.1:{agent_port}"),
        )
        .to_toml();
    start_server(&toml).await
}

/// Registration steps run from the agent's own port, so its later UAS run is the registered binding.
fn register_step(
    scenario: &str,
    server: SocketAddr,
    port: u16,
    user: &str,
    password: &str,
) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/register/{scenario}.xml"))
        .remote(server)
        .local_port(port)
        .service(user)
        .auth(user, password)
        .key("domain", DOMAIN)
        .timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_call_unregister_moves_agent_through_idle_and_logged_out() {
    if skip_without_sipp() {
        return;
    }
    let toml = TestConfig::new()
        .agent("1001", "pass1001")
        .registrar_line(SIPP_DIGEST_COMPAT)
        .to_toml();
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    let agent_port = free_port();
    assert_eq!(server.agent_state("1001").as_deref(), Some("logged_out"));

    register_step("agent_register", addr, agent_port, "1001", "pass1001")
        .run()
        .await
        .assert_success(1);
    wait_agent_state(&server, "1001", "idle", SETTLE).await;
    assert_eq!(server.stats().registrations, 1);

    // The registered binding receives the call: SIPp UAS on the port it registered from.
    run_pair_ok(
        agent("agent_answer_wait_bye", agent_port),
        customer("customer_call_bye", addr, "1001"),
        1,
    )
    .await;
    wait_agent_state(&server, "1001", "idle", SETTLE).await;

    register_step("agent_unregister", addr, agent_port, "1001", "pass1001")
        .run()
        .await
        .assert_success(1);
    wait_agent_state(&server, "1001", "logged_out", SETTLE).await;
    assert!(wait_until(|| server.stats().registrations == 0, SETTLE).await);

    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_wrong_password_or_unknown_user_is_challenged_again() {
    if skip_without_sipp() {
        return;
    }
    let toml = TestConfig::new()
        .agent("1001", "pass1001")
        .registrar_line(SIPP_DIGEST_COMPAT)
        .to_toml();
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);

    register_step(
        "agent_register_wrong_password",
        addr,
        free_port(),
        "1001",
        "not-the-password",
    )
    .run()
    .await
    .assert_success(1);
    register_step(
        "agent_register_wrong_password",
        addr,
        free_port(),
        "9999",
        "pass1001",
    )
    .run()
    .await
    .assert_success(1);

    assert_eq!(server.agent_state("1001").as_deref(), Some("logged_out"));
    assert_eq!(server.stats().registrations, 0);
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_bye_from_customer() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_answer_wait_bye", agent_port),
        customer("customer_call_bye", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_bye_from_agent() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_answer_send_bye", agent_port).pause_ms(300),
        customer("customer_call_wait_bye", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing_reaches_the_agent() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_ring_no_answer", agent_port),
        customer("customer_cancel_while_ringing", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_agent_gives_486_to_the_customer() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_answer_486", agent_port),
        customer("customer_expect_486", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_agent_gives_480() {
    if skip_without_sipp() {
        return;
    }
    let toml = TestConfig::new().agent("1001", "pass1001").to_toml();
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    customer("customer_expect_480", addr, "1001")
        .run()
        .await
        .assert_success(1);
    assert_eq!(server.agent_state("1001").as_deref(), Some("logged_out"));
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_number_gives_404() {
    if skip_without_sipp() {
        return;
    }
    let server = server_with_static_agent(free_port()).await;
    let addr = sip_addr(&server, Protocol::Udp);
    customer("customer_expect_404", addr, "5999")
        .run()
        .await
        .assert_success(1);
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_from_the_customer() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_accept_hold_resume", agent_port),
        customer("customer_hold_unhold", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_from_the_agent() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    run_pair_ok(
        agent("agent_hold_resume", agent_port),
        customer("customer_accept_hold_resume", addr, AGENT),
        1,
    )
    .await;
    assert_drained(&server).await;
    server.shutdown().await;
}

/// 200 calls at 50 calls/s, each held 500 ms: a few dozen concurrent calls.
const LOAD_CALLS: u64 = 200;

fn load_pair(
    agent_port: u16,
    server: SocketAddr,
    transport: (Transport, Transport),
) -> (Sipp, Sipp) {
    let uas = agent("agent_answer_wait_bye", agent_port)
        .transport(transport.0)
        .calls(LOAD_CALLS)
        .timeout(Duration::from_secs(150));
    let uac = customer("customer_call_bye", server, AGENT)
        .transport(transport.1)
        .calls(LOAD_CALLS)
        .rate(50, 1000)
        .limit(100)
        .pause_ms(500)
        .timeout(Duration::from_secs(120));
    (uas, uac)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_calls_at_50_cps_over_udp() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let server = server_with_static_agent(agent_port).await;
    let addr = sip_addr(&server, Protocol::Udp);
    let (uas, uac) = load_pair(agent_port, addr, (Transport::Udp, Transport::Udp));
    run_pair_ok(uas, uac, LOAD_CALLS).await;
    assert_drained(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_calls_at_50_cps_over_tcp() {
    if skip_without_sipp() {
        return;
    }
    let agent_port = free_port();
    let toml = TestConfig::new()
        .agent_at(
            AGENT,
            AGENT_PASSWORD,
            &format!("sip:{AGENT}@127.0.0.1:{agent_port};transport=tcp"),
        )
        .to_toml();
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Tcp);
    // Agent: one listening socket accepting handover's connection(s); customers: one TCP
    // connection per call, so the server also sees 200 connections come and go.
    let (uas, uac) = load_pair(agent_port, addr, (Transport::Tcp, Transport::TcpPerCall));
    run_pair_ok(uas, uac, LOAD_CALLS).await;
    assert_drained(&server).await;
    server.shutdown().await;
}
