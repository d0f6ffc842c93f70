//! Fault scenarios through handover, driven by SIPp (robustness issue, item 5): a customer that
//! never ACKs the 200, an agent phone that never answers (Timer B and the ring timeout), packet
//! loss on a call flow and on a transfer flow, CANCEL racing the 200, 491 glare on crossing
//! re-INVITEs, a BYE crossing a re-INVITE, a transfer target vanishing, and a TCP connection
//! reset mid-call. Every test ends with no call, no transaction and every agent `idle`.
//!
//! Scenarios: `sipp-scenarios/faults/` (each file's header gives its role and flow). Servers use
//! T1 = 100 ms ([`TEST_T1_MS`]), so 64*T1 = 6.4 s.
//!
//! Skipped (with a message) when `sipp` is not installed and `HANDOVER_REQUIRE_SIPP` is unset.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use handover::app::RunningServer;
use handover::transport::Protocol;
use support::sipp::TRACE_ENV;
use support::{
    assert_drained, free_media_port, free_port, run_pair, sip_addr, skip_without_sipp,
    start_server, wait_agent_state, within, Sipp, SippOutcome, TestConfig, Transport, TEST_T1_MS,
};

const AGENT: &str = "2001";
const TARGET: &str = "2002";
/// Hard limit of one test.
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// How long a state may take to be reached.
const SETTLE: Duration = Duration::from_secs(15);
/// 64*T1: Timers B, F, H and the 2xx-without-ACK limit (RFC 3261 §13.3.1.4, §17).
const SIXTY_FOUR_T1: Duration = Duration::from_millis(64 * TEST_T1_MS);

fn faults(name: &str) -> String {
    format!("sipp-scenarios/faults/{name}.xml")
}

/// Server config: agents 2001 (and 2002) at static contacts on the given ports (`tcp` adds
/// `;transport=tcp` to 2001's), `[sip]` extra lines (e.g. the ring timeout) and extra sections.
fn config(
    agent_port: u16,
    target_port: Option<u16>,
    tcp: bool,
    sip_extra: &str,
    extra: &str,
) -> String {
    let transport = if tcp { ";transport=tcp" } else { "" };
    let mut cfg = TestConfig::new().agent_at(
        AGENT,
        "pass2001",
        &format!("sip:{AGENT}@127.0.0.1:{agent_port}{transport}"),
    );
    if let Some(port) = target_port {
        cfg = cfg.agent_at(
            TARGET,
            "pass2002",
            &format!("sip:{TARGET}@127.0.0.1:{port}"),
        );
    }
    let t1 = format!("t1_ms = {TEST_T1_MS}\n");
    let toml = cfg.to_toml();
    assert!(
        toml.contains(&t1),
        "test config has no `{t1}` line to extend"
    );
    let mut toml = toml.replacen(&t1, &format!("{t1}{sip_extra}"), 1);
    toml.push_str(extra);
    toml
}

/// `-mp`: SIPp binds an RTP socket for `[media_port]`; a free port of its own avoids clashing
/// with other SIPp instances running at the same time (SIPp exits 254 on a clash).
fn media_port(sipp: Sipp) -> Sipp {
    sipp.arg("-mp").arg(free_media_port().to_string())
}

/// The customer: a SIPp UAC on a free port calling `number` at the server.
fn customer(scenario: &str, server: SocketAddr, number: &str) -> Sipp {
    media_port(Sipp::new(scenario))
        .remote(server)
        .local_port(free_port())
        .service(number)
        .pause_ms(300)
        .timeout(Duration::from_secs(40))
}

/// An agent's phone: a SIPp UAS on its static contact port.
fn phone(scenario: &str, port: u16) -> Sipp {
    media_port(Sipp::new(scenario))
        .local_port(port)
        .timeout(Duration::from_secs(40))
}

/// Panics with both diagnostics unless both sides completed `calls` calls successfully; on
/// success removes the run directories (unless traces were asked for).
fn assert_both_ok(uas: &SippOutcome, uac: &SippOutcome, calls: u64) {
    if !uac.is_success(calls) || !uas.is_success(calls) {
        panic!(
            "expected {calls} successful call(s) on both sides.\nUAC {}: exit {:?} ok {:?} failed {:?}\nUAS {}: exit {:?} ok {:?} failed {:?}\n{}\n{}",
            uac.label, uac.exit_code, uac.successful, uac.failed,
            uas.label, uas.exit_code, uas.successful, uas.failed,
            uac.diagnostics, uas.diagnostics
        );
    }
    cleanup(&[uas, uac]);
}

fn cleanup(outcomes: &[&SippOutcome]) {
    if std::env::var_os(TRACE_ENV).is_none() {
        for o in outcomes {
            let _ = std::fs::remove_dir_all(&o.dir);
        }
    }
}

/// Every agent `idle`, then no call and no transaction left.
async fn assert_idle_and_drained(server: &RunningServer, agents: &[&str]) {
    for id in agents {
        wait_agent_state(server, id, "idle", SETTLE).await;
    }
    assert_drained(server).await;
}

/// Start lines of the messages SIPp received, in order, from its `-trace_msg` file.
fn received_start_lines(outcome: &SippOutcome) -> Vec<String> {
    let text = std::fs::read_to_string(outcome.dir.join("messages.log")).unwrap_or_default();
    let mut lines = Vec::new();
    let mut take_next = false;
    for line in text.lines() {
        if take_next && !line.trim().is_empty() {
            lines.push(line.trim().to_owned());
            take_next = false;
        }
        if line.contains("message received") {
            take_next = true;
        }
    }
    lines
}

// ---------------------------------------------------------------------------------------------

/// The customer never ACKs the 200: handover retransmits it (T1, 2T1, ... capped at T2) and,
/// after 64*T1, BYEs the customer with a Reason header (RFC 3261 §13.3.1.4) and the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_never_acks_the_200() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "no ACK", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let started = Instant::now();
        let (uas, uac) = run_pair(
            phone("sipp-scenarios/basic/agent_answer_wait_bye.xml", agent_port),
            customer(&faults("customer_no_ack"), addr, AGENT).trace_msg(),
        )
        .await;
        let elapsed = started.elapsed();
        let seen = received_start_lines(&uac);
        let oks = seen.iter().filter(|l| l.starts_with("SIP/2.0 200")).count();
        // 200 at 0, then at 0.1, 0.3, 0.7, 1.5, 3.1 s (+T2 steps) before 6.4 s: at least 5.
        assert!(
            oks >= 5,
            "expected the unACKed 200 to be retransmitted (>= 5 copies before the BYE), got {oks}: {seen:?}\n{}",
            uac.diagnostics
        );
        assert!(
            seen.iter().any(|l| l.starts_with("BYE ")),
            "customer got no BYE: {seen:?}"
        );
        assert!(
            elapsed >= SIXTY_FOUR_T1,
            "the call ended after {elapsed:?}, before 64*T1"
        );
        assert_both_ok(&uas, &uac, 1);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// Same fault, agent's view: handover's BYE to the agent also says why (Reason, RFC 3326).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_never_acks_the_200_agent_bye_has_a_reason() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "no ACK, agent's BYE", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let (uas, uac) = run_pair(
            phone(&faults("agent_answer_expect_bye"), agent_port),
            customer(&faults("customer_no_ack"), addr, AGENT),
        )
        .await;
        assert_both_ok(&uas, &uac, 1);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// The agent's phone never answers (not even 100/180) and the ring timeout is longer than
/// 64*T1: Timer B ends the agent leg and the customer gets 408 (RFC 3261 §17.1.1.2, §16.7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_timer_b_gives_408() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "Timer B", async {
        let agent_port = free_port();
        let server = start_server(&config(
            agent_port,
            None,
            false,
            "ring_timeout_s = 20\n",
            "",
        ))
        .await;
        let addr = sip_addr(&server, Protocol::Udp);
        let started = Instant::now();
        let (uas, uac) = run_pair(
            phone(&faults("agent_silent"), agent_port).pause_ms(8000),
            customer(&faults("customer_expect_408"), addr, AGENT),
        )
        .await;
        assert_both_ok(&uas, &uac, 1);
        assert!(
            started.elapsed() >= SIXTY_FOUR_T1,
            "408 after {:?}, before Timer B (64*T1)",
            started.elapsed()
        );
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// The agent's phone never answers and the ring timeout (2 s) is shorter than 64*T1: the
/// customer gets 480 at the ring timeout; the agent leg (no provisional, so no CANCEL may be
/// sent, RFC 3261 §9.1) ends by Timer B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_ring_timeout_gives_480() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "ring timeout", async {
        let agent_port = free_port();
        let server =
            start_server(&config(agent_port, None, false, "ring_timeout_s = 2\n", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let started = Instant::now();
        let (uas, uac) = run_pair(
            phone(&faults("agent_silent"), agent_port).pause_ms(8000),
            customer("sipp-scenarios/basic/customer_expect_480.xml", addr, AGENT),
        )
        .await;
        let answered_in = started.elapsed();
        assert_both_ok(&uas, &uac, 1);
        assert!(
            answered_in >= Duration::from_secs(2),
            "480 after {answered_in:?}, before the 2 s ring timeout"
        );
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// Calls and per-call receive timeout of the packet-loss runs.
const LOSS_CALLS: u64 = 20;
const LOSS_TRANSFERS: u64 = 3;
const RECV_TIMEOUT_MS: &str = "8000";

/// `-lost 10` (10 % of the messages each SIPp sends or receives are dropped) and a receive
/// timeout so that a call whose peer gave up fails instead of waiting for ever.
fn lossy(sipp: Sipp) -> Sipp {
    sipp.arg("-lost")
        .arg("10")
        .arg("-recv_timeout")
        .arg(RECV_TIMEOUT_MS)
}

/// A run under packet loss: SIPp was not killed, exited 0 (all calls ok) or 1 (some failed),
/// and accounted for every one of `calls` calls. Returns the successful count.
fn assert_clean_under_loss(o: &SippOutcome, calls: u64) -> u64 {
    let ok = o.successful.unwrap_or(0);
    let failed = o.failed.unwrap_or(0);
    assert!(
        !o.killed && matches!(o.exit_code, Some(0) | Some(1)) && ok + failed == calls,
        "{}: expected every one of {calls} calls to complete or fail cleanly, got exit {:?} (killed: {}), successful {:?}, failed {:?}\n{}",
        o.label, o.exit_code, o.killed, o.successful, o.failed, o.diagnostics
    );
    eprintln!(
        "{}: {ok} of {calls} calls completed under 10 % loss",
        o.label
    );
    ok
}

/// 10 % packet loss on both sides of 20 basic calls: every call completes or fails cleanly
/// (retransmissions recover most), and the server drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_on_a_basic_call_flow() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "packet loss, calls", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let (uas, uac) = run_pair(
            lossy(
                phone("sipp-scenarios/basic/agent_answer_wait_bye.xml", agent_port)
                    .calls(LOSS_CALLS)
                    .timeout(Duration::from_secs(70)),
            ),
            lossy(
                customer("sipp-scenarios/basic/customer_call_bye.xml", addr, AGENT)
                    .calls(LOSS_CALLS)
                    .rate(10, 1000)
                    .limit(LOSS_CALLS as u32)
                    .timeout(Duration::from_secs(60)),
            ),
        )
        .await;
        let ok = assert_clean_under_loss(&uac, LOSS_CALLS);
        assert_clean_under_loss(&uas, LOSS_CALLS);
        assert!(
            ok >= LOSS_CALLS / 2,
            "only {ok} of {LOSS_CALLS} calls completed under 10 % loss: retransmissions should recover most\n{}\n{}",
            uac.diagnostics, uas.diagnostics
        );
        cleanup(&[&uas, &uac]);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// 10 % packet loss on the customer, agent A and target B of a few success transfers (one at a
/// time): every call completes or fails cleanly and the server drains, both agents idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_on_a_transfer_flow() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "packet loss, transfers", async {
        let (a_port, b_port) = (free_port(), free_port());
        let server = start_server(&config(a_port, Some(b_port), false, "", TRANSFER_SECTION)).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let mut a = lossy(
            phone("sipp-scenarios/transfer/agent_refer_success.xml", a_port)
                .remote(addr)
                .service(TARGET)
                .calls(LOSS_TRANSFERS)
                .timeout(Duration::from_secs(80)),
        )
        .spawn();
        a.ready().await;
        let mut b = lossy(
            phone(
                "sipp-scenarios/transfer/target_answer_late_offer.xml",
                b_port,
            )
            .pause_ms(300)
            .calls(LOSS_TRANSFERS)
            .timeout(Duration::from_secs(80)),
        )
        .spawn();
        b.ready().await;
        let started = Instant::now();
        let cust = lossy(
            customer(
                "sipp-scenarios/transfer/customer_transferred.xml",
                addr,
                AGENT,
            )
            .calls(LOSS_TRANSFERS)
            .limit(1)
            .pause_ms(500)
            .timeout(Duration::from_secs(75)),
        )
        .run()
        .await;
        let grace = started.elapsed() + Duration::from_secs(20);
        let a = a.wait_at_most(grace).await;
        // B may see fewer calls than the customer (a lost REFER fails a call before B is
        // involved): it is only required not to hang, so it is bounded by the same grace.
        let b = b.wait_at_most(grace).await;
        assert_clean_under_loss(&cust, LOSS_TRANSFERS);
        assert_clean_under_loss(&a, LOSS_TRANSFERS);
        eprintln!(
            "target B: exit {:?}, successful {:?}, failed {:?}",
            b.exit_code, b.successful, b.failed
        );
        cleanup(&[&cust, &a, &b]);
        assert_idle_and_drained(&server, &[AGENT, TARGET]).await;
        server.shutdown().await;
    })
    .await;
}

/// `[transfer]` of the transfer tests: the spec's prefixes, release by default, targets ring
/// for at most 2 s.
const TRANSFER_SECTION: &str = r#"
[transfer]
default_blind = "release"
prefixes = { success = "*1", release = "*2", conversation = "*3", hangup = "*4" }
ring_timeout_s = 2
"#;

/// The agent's phone is on TCP and dies mid-call (SIPp killed: its connection is closed and
/// nothing listens any more). The customer then hangs up: its BYE is answered 200, handover's
/// BYE to the agent fails at the transport (new connection refused) and ends the leg; the
/// server drains and the agent is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_agent_connection_reset_mid_call() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "TCP reset", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, true, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let mut agent = phone("sipp-scenarios/basic/agent_answer_wait_bye.xml", agent_port)
            .transport(Transport::Tcp)
            .spawn();
        agent.ready().await;
        let cust = customer("sipp-scenarios/basic/customer_call_bye.xml", addr, AGENT)
            .pause_ms(3000)
            .spawn();
        wait_agent_state(&server, AGENT, "talking", SETTLE).await;
        // The phone vanishes: SIGKILL closes its TCP connection and its listening socket.
        drop(agent);
        let cust = cust.wait().await;
        cust.assert_success(1);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// Lines of SIPp's `-trace_logs` file (the scenario's `<log>` actions) containing `needle`.
fn count_logged(outcome: &SippOutcome, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(&outcome.dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_logs.log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

const RACE_CALLS: u64 = 10;

/// CANCEL racing the agent's 200: the agent answers at once; the customer CANCELs at once or
/// on the 180. Either the CANCEL wins (487 to the customer, the agent's late 200 is ACKed and
/// BYEd) or the answer wins (200 to the customer, who hangs up); both are accepted, every
/// call must complete on both sides and the server drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_the_200() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "CANCEL race", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let (uas, uac) = run_pair(
            phone(&faults("agent_answer_at_once"), agent_port).calls(RACE_CALLS),
            customer(&faults("customer_cancel_race"), addr, AGENT)
                .calls(RACE_CALLS)
                .rate(5, 1000)
                .arg("-trace_logs"),
        )
        .await;
        let cancelled = count_logged(&uac, "outcome: cancelled");
        let answered = count_logged(&uac, "outcome: answered");
        eprintln!("CANCEL race: {cancelled} cancelled, {answered} answered");
        assert_eq!(
            (cancelled + answered) as u64,
            RACE_CALLS,
            "every call must end in one of the two outcomes\n{}",
            uac.diagnostics
        );
        assert_both_ok(&uas, &uac, RACE_CALLS);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// 491 glare: the agent sends its own re-INVITE while handover's relayed copy of the
/// customer's re-INVITE is pending towards it. handover must answer the agent 491 (RFC 3261
/// §14.2) and relay the agent's 491 to the customer; after the §14.1 delays (agent, not the
/// Call-ID owner: 0.5 s; customer, the owner: 2.1 s) both retries succeed and the call ends
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_on_crossing_reinvites_491_then_retries() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "491 glare", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let (uas, uac) = run_pair(
            phone(&faults("agent_glare"), agent_port),
            customer(&faults("customer_glare"), addr, AGENT),
        )
        .await;
        assert_both_ok(&uas, &uac, 1);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// BYE crossing a re-INVITE: the customer re-INVITEs, handover relays it, and the agent hangs
/// up instead of answering. Both legs end; the customer's pending re-INVITE gets a final
/// response (487 or 481, RFC 3261 §15.1.2) besides the BYE; the agent's 487 to the relayed
/// re-INVITE is ACKed; the server drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_crossing_a_reinvite() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "BYE crossing re-INVITE", async {
        let agent_port = free_port();
        let server = start_server(&config(agent_port, None, false, "", "")).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let (uas, uac) = run_pair(
            phone(&faults("agent_bye_during_reinvite"), agent_port),
            customer(&faults("customer_bye_crosses_reinvite"), addr, AGENT),
        )
        .await;
        assert_both_ok(&uas, &uac, 1);
        assert_idle_and_drained(&server, &[AGENT]).await;
        server.shutdown().await;
    })
    .await;
}

/// A success-transfer target rings and then vanishes (never answers the INVITE nor the
/// CANCEL). At the transfer ring timeout (2 s) handover CANCELs it, A gets the failure NOTIFY
/// (408/480), the customer is taken off hold back to A, who keeps the call; the dead target's
/// transactions end by their timers and the server drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_target_vanishes_customer_back_to_agent() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "target vanishes", async {
        let (a_port, b_port) = (free_port(), free_port());
        let server =
            start_server(&config(a_port, Some(b_port), false, "", TRANSFER_SECTION)).await;
        let addr = sip_addr(&server, Protocol::Udp);
        let mut a = phone(&faults("agent_refer_target_vanishes"), a_port)
            .remote(addr)
            .service(TARGET)
            .spawn();
        a.ready().await;
        let mut b = phone(&faults("target_ring_then_vanish"), b_port)
            .pause_ms(SIXTY_FOUR_T1.as_millis() as u64 + 1000)
            .spawn();
        b.ready().await;
        let cust = customer("sipp-scenarios/transfer/customer_transfer_fails.xml", addr, AGENT)
            .pause_ms(500)
            .run()
            .await;
        let a = a.wait().await;
        let b = b.wait().await;
        for o in [&cust, &a, &b] {
            assert!(
                o.is_success(1),
                "{}: expected exit 0 with 1 successful call, got exit {:?}, successful {:?}, failed {:?}\n{}\n{}\n{}",
                o.label, o.exit_code, o.successful, o.failed,
                cust.diagnostics, a.diagnostics, b.diagnostics
            );
        }
        cleanup(&[&cust, &a, &b]);
        assert_idle_and_drained(&server, &[AGENT, TARGET]).await;
        server.shutdown().await;
    })
    .await;
}
