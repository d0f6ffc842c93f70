//! Transfers through handover driven by three SIPp instances (DESIGN.md §3): the customer (SIPp
//! UAC over the trunk), agent A = 2001 (SIPp UAS at a static contact) who sends REFER, and the
//! target B = agent 2002 (SIPp UAS at its own static contact). A and B are started first; the
//! customer's call then runs the whole flow. Every test asserts all three SIPp exit codes and
//! call counts, the agents' states during and after, and that the server drains.
//!
//! Scenarios: `sipp-scenarios/transfer/` (each file's header gives its role and flow). Media
//! ports in the SDP bodies identify the parties: A answers with m=audio 7070, B offers 7078, so
//! the customer's re-INVITE checks show whose media handover bridged.
//!
//! Skipped (with a message) when `sipp` is not installed and `HANDOVER_REQUIRE_SIPP` is unset;
//! `HANDOVER_SIPP_TRACE=1` keeps every SIPp message trace in its run directory.

mod support;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use handover::app::RunningServer;
use handover::transport::Protocol;
use support::checks::{reach, STATE_WAIT};
use support::sipp::TRACE_ENV;
use support::{
    assert_drained, free_port, sip_addr, skip_without_sipp, start_server, wait_until, within, Sipp,
    SippOutcome, TestConfig,
};

const AGENT_A: &str = "2001";
const TARGET_B: &str = "2002";
/// Per-SIPp timeout: generous for a loaded 2-core machine, well under the test limit.
const SIPP_TIMEOUT: Duration = Duration::from_secs(40);
/// Hard limit of one test.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// Agent A's pause between the ACK and the REFER.
const A_PAUSE_MS: u64 = 300;
/// The customer's pause between the last re-INVITE and its BYE: the window in which the
/// states during the transfer are observed.
const CUSTOMER_PAUSE_MS: u64 = 2000;

/// Ports of the two agent phones and of the IVR flow.
struct Phones {
    a: u16,
    b: u16,
    ivr: u16,
}

/// A server with agents 2001 (A) and 2002 (B) at static UDP contacts, the IVR flow `survey`
/// (number 7000) at a static URI, the spec's transfer prefixes, the release default for untyped
/// REFERs, and a 5 s transfer ring timeout.
async fn transfer_server() -> (RunningServer, Phones) {
    let phones = Phones {
        a: free_port(),
        b: free_port(),
        ivr: free_port(),
    };
    let mut toml = TestConfig::new()
        .agent_at(
            AGENT_A,
            "pass2001",
            &format!("sip:{AGENT_A}@127.0.0.1:{}", phones.a),
        )
        .agent_at(
            TARGET_B,
            "pass2002",
            &format!("sip:{TARGET_B}@127.0.0.1:{}", phones.b),
        )
        .to_toml();
    let _ = write!(
        toml,
        r#"
[[ivr]]
name = "survey"
number = "7000"
uri = "sip:survey@127.0.0.1:{}"

[transfer]
default_blind = "release"
prefixes = {{ success = "*1", release = "*2", conversation = "*3", hangup = "*4" }}
ring_timeout_s = 5
"#,
        phones.ivr
    );
    (start_server(&toml).await, phones)
}

/// The customer: a SIPp UAC on a free port calling agent A at the server.
fn customer(scenario: &str, server: SocketAddr) -> Sipp {
    Sipp::new(scenario)
        .remote(server)
        .local_port(free_port())
        .service(AGENT_A)
        .pause_ms(CUSTOMER_PAUSE_MS)
        .timeout(SIPP_TIMEOUT)
}

/// Agent A's phone: a SIPp UAS on its static contact port. The server address is its remote
/// host so that `[remote_ip]:[remote_port]` in the Refer-To names handover; `-s` is the target.
fn agent_a(scenario: &str, server: SocketAddr, port: u16) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/transfer/{scenario}.xml"))
        .remote(server)
        .local_port(port)
        .service(TARGET_B)
        .pause_ms(A_PAUSE_MS)
        .timeout(SIPP_TIMEOUT)
}

/// Target B's phone: a SIPp UAS on its static contact port; `-d` is how long it rings.
fn target_b(scenario: &str, port: u16, ring_ms: u64) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/transfer/{scenario}.xml"))
        .local_port(port)
        .pause_ms(ring_ms)
        .timeout(SIPP_TIMEOUT)
}

fn transfer_scenario(name: &str) -> String {
    format!("sipp-scenarios/transfer/{name}.xml")
}

/// Outcome of one three-party run.
struct Run {
    outcomes: Vec<SippOutcome>,
    /// Failures of the checks made while the SIPp flows ran.
    during: Vec<String>,
}

/// Starts A and (if any) B, waits until they have bound their ports, runs the customer to
/// completion while `during` observes the server, then waits for A and B (at most 10 s more
/// when the customer failed, so one failure does not wait for every other timeout).
async fn run_three<F>(a: Sipp, b: Option<Sipp>, cust: Sipp, during: F) -> Run
where
    F: Future<Output = Vec<String>>,
{
    let started = Instant::now();
    let mut a = a.spawn();
    a.ready().await;
    let mut b = b.map(Sipp::spawn);
    if let Some(b) = b.as_mut() {
        b.ready().await;
    }
    let cust = cust.spawn();
    let (cust, during) = tokio::join!(cust.wait(), during);
    let cust_ok = cust.is_success(1);
    let finish = |p: support::SippProcess| async move {
        if cust_ok {
            p.wait().await
        } else {
            p.wait_at_most(started.elapsed() + Duration::from_secs(10))
                .await
        }
    };
    let mut outcomes = vec![cust];
    outcomes.push(finish(a).await);
    if let Some(b) = b {
        outcomes.push(finish(b).await);
    }
    Run { outcomes, during }
}

impl Run {
    /// Every SIPp exited 0 with exactly one successful and no failed call, and every check made
    /// during the run held; otherwise panics with all three diagnostics (a failure on one leg
    /// is usually explained by what another leg received).
    fn assert_ok(&self) {
        let mut report = String::new();
        for o in &self.outcomes {
            if !o.is_success(1) {
                let _ = writeln!(
                    report,
                    "{}: expected exit 0 with 1 successful / 0 failed call, got exit {:?}, successful {:?}, failed {:?}",
                    o.label, o.exit_code, o.successful, o.failed
                );
            }
        }
        for d in &self.during {
            let _ = writeln!(report, "during the run: {d}");
        }
        if !report.is_empty() {
            for o in &self.outcomes {
                let _ = writeln!(report, "{}", o.diagnostics);
            }
            panic!("transfer run failed:\n{report}");
        }
        if std::env::var_os(TRACE_ENV).is_none() {
            for o in &self.outcomes {
                let _ = std::fs::remove_dir_all(&o.dir);
            }
        }
    }
}

/// Both agents idle again, then no call and no transaction left.
async fn assert_end_state(server: &RunningServer) {
    for id in [AGENT_A, TARGET_B] {
        let ok = wait_until(
            || server.agent_state(id).as_deref() == Some("idle"),
            STATE_WAIT,
        )
        .await;
        assert!(
            ok,
            "agent {id}: expected idle after the test, still {:?}",
            server.agent_state(id)
        );
    }
    assert_drained(server).await;
}

/// Success transfer: the customer is held, B gets a late-offer INVITE, B's offer is re-INVITEd
/// to the customer, B gets the answer in the ACK, then A gets NOTIFY 200 and a BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_transfer_bridges_the_customer_to_the_target() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "success transfer", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_success", addr, phones.a),
            Some(target_b("target_answer_late_offer", phones.b, 300)),
            customer(&transfer_scenario("customer_transferred"), addr),
            async {
                let mut f = Vec::new();
                // B answered and talks to the customer; A released once B answered.
                reach(&server, TARGET_B, "talking", &mut f).await;
                reach(&server, AGENT_A, "idle", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Success transfer to a busy target: A gets NOTIFY 486, the customer is taken off hold with
/// A's media, A keeps the call and gets the customer's BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_transfer_to_a_busy_target_leaves_the_agent_with_the_customer() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "success transfer, busy target", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_fails", addr, phones.a),
            Some(target_b("target_busy", phones.b, 0)),
            customer(&transfer_scenario("customer_transfer_fails"), addr),
            async {
                let mut f = Vec::new();
                // The failed attempt over (B's INVITE answered 486), A still talks.
                reach(&server, AGENT_A, "talking", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Release transfer: 202, NOTIFY 200 and BYE to A at once (A idle while B still rings), then
/// the customer is bridged to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_transfer_releases_the_agent_at_once() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "release transfer", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_release", addr, phones.a),
            // B rings 1.5 s: A must be idle before B answers.
            Some(target_b("target_answer_late_offer", phones.b, 1500)),
            customer(&transfer_scenario("customer_transferred"), addr),
            async {
                let mut f = Vec::new();
                // A talks to the customer, then B rings; A is released while B still rings.
                reach(&server, AGENT_A, "talking", &mut f).await;
                reach(&server, TARGET_B, "ringing", &mut f).await;
                reach(&server, AGENT_A, "idle", &mut f).await;
                if server.agent_state(TARGET_B).as_deref() != Some("ringing") {
                    f.push(format!(
                        "agent 2001 became idle only when the target was {:?}, not while it rang",
                        server.agent_state(TARGET_B)
                    ));
                }
                reach(&server, TARGET_B, "talking", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Release transfer to a busy target: A is released at once all the same; the customer is
/// released with a BYE carrying a Reason header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_transfer_to_a_busy_target_releases_the_customer_with_a_reason() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "release transfer, busy target", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_release", addr, phones.a),
            Some(target_b("target_busy", phones.b, 0)),
            customer(&transfer_scenario("customer_released_on_failure"), addr),
            async {
                let mut f = Vec::new();
                // A talks to the customer, then is released at once although B is busy.
                reach(&server, AGENT_A, "talking", &mut f).await;
                reach(&server, AGENT_A, "idle", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Rule 7: A's phone hangs up ~300 ms after the 202 of a success transfer, while B still rings.
/// handover answers the BYE; the transfer goes on as a release transfer and the customer still
/// reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_bye_after_the_202_never_costs_the_customer() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "rule 7", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_then_bye", addr, phones.a),
            // B rings 1.5 s, so A's BYE comes while the target is still ringing.
            Some(target_b("target_answer_late_offer", phones.b, 1500)),
            customer(&transfer_scenario("customer_transferred"), addr),
            async {
                let mut f = Vec::new();
                // A talks, B rings, A's BYE frees A while B still rings, then B answers.
                reach(&server, AGENT_A, "talking", &mut f).await;
                reach(&server, TARGET_B, "ringing", &mut f).await;
                reach(&server, AGENT_A, "idle", &mut f).await;
                if server.agent_state(TARGET_B).as_deref() != Some("ringing") {
                    f.push(format!(
                        "agent 2002 should still ring when agent 2001 is idle, got {:?}",
                        server.agent_state(TARGET_B)
                    ));
                }
                reach(&server, TARGET_B, "talking", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// A refused type (hang-up transfer to an agent, rule 1): 403 with a Warning, no re-INVITE to
/// the customer, no INVITE to the target; the customer then hangs up with A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfer_type_gets_403_and_leaves_the_call_as_it_was() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "refused transfer", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_refused", addr, phones.a),
            None,
            // customer_call_bye accepts no re-INVITE: a transfer attempt would fail it.
            customer("sipp-scenarios/basic/customer_call_bye.xml", addr),
            async {
                // Give the REFER time to be refused (A pauses 300 ms after the ACK), then check
                // nothing moved: A talking, B untouched.
                let mut f = Vec::new();
                reach(&server, AGENT_A, "talking", &mut f).await;
                tokio::time::sleep(Duration::from_millis(A_PAUSE_MS + 700)).await;
                for (id, want) in [(AGENT_A, "talking"), (TARGET_B, "idle")] {
                    let got = server.agent_state(id);
                    if got.as_deref() != Some(want) {
                        f.push(format!(
                            "agent {id}: expected {want:?} after the refusal, got {got:?}"
                        ));
                    }
                }
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Refer-Sub: false (RFC 4488): a release transfer with a 202 and no NOTIFY at all, then the
/// BYE to A; the customer reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refer_sub_false_transfers_without_notify() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "Refer-Sub: false", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let run = run_three(
            agent_a("agent_refer_nosub", addr, phones.a),
            Some(target_b("target_answer_late_offer", phones.b, 300)),
            customer(&transfer_scenario("customer_transferred"), addr),
            async {
                let mut f = Vec::new();
                // A talks, is released by the BYE after the 202, then B talks.
                reach(&server, AGENT_A, "talking", &mut f).await;
                reach(&server, AGENT_A, "idle", &mut f).await;
                reach(&server, TARGET_B, "talking", &mut f).await;
                f
            },
        )
        .await;
        run.assert_ok();
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// Hang-up transfer to the IVR flow by dial prefix (`*47000`): the customer gets the IVR's
/// media, A hangs up on the final NOTIFY and waits (`waiting`); the IVR's BYE carries
/// `X-Flow-Result: paid`, handover calls A back (new dialog, late offer, the flow's result) and
/// bridges the customer to A again; the customer's BYE reaches A's return call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_to_the_ivr_returns_the_call_to_the_agent() {
    if skip_without_sipp() {
        return;
    }
    within(TEST_LIMIT, "hang-up transfer", async {
        let (server, phones) = transfer_server().await;
        let addr = sip_addr(&server, Protocol::Udp);
        let mut a = agent_a("agent_refer_hangup_ivr", addr, phones.a)
            .service("*47000")
            .calls(2)
            .spawn();
        a.ready().await;
        let mut ivr = Sipp::new(&transfer_scenario("ivr_flow_returns"))
            .local_port(phones.ivr)
            .pause_ms(1500)
            .timeout(SIPP_TIMEOUT)
            .spawn();
        ivr.ready().await;
        let started = Instant::now();
        let cust = customer(&transfer_scenario("customer_hangup_transfer"), addr).spawn();
        let during = async {
            let mut f = Vec::new();
            // The IVR runs 1.5 s: A is `waiting` (reserved, its phone hung up), then talking
            // again on the return call.
            reach(&server, AGENT_A, "waiting", &mut f).await;
            reach(&server, AGENT_A, "talking", &mut f).await;
            f
        };
        let (cust, during) = tokio::join!(cust.wait(), during);
        let grace = started.elapsed() + Duration::from_secs(10);
        let (a, ivr) = if cust.is_success(1) {
            (a.wait().await, ivr.wait().await)
        } else {
            (a.wait_at_most(grace).await, ivr.wait_at_most(grace).await)
        };
        // A's UAS handles two calls: the customer's and the return call.
        let a_ok = a.is_success(2);
        let run = Run {
            outcomes: vec![cust, ivr],
            during,
        };
        if !a_ok {
            panic!(
                "agent_refer_hangup_ivr: expected exit 0 with 2 successful / 0 failed calls, got exit {:?}, successful {:?}, failed {:?}\n{}\n{}",
                a.exit_code,
                a.successful,
                a.failed,
                a.diagnostics,
                run.outcomes.iter().map(|o| o.diagnostics.as_str()).collect::<Vec<_>>().join("\n")
            );
        }
        run.assert_ok();
        if std::env::var_os(TRACE_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&a.dir);
        }
        assert_end_state(&server).await;
        server.shutdown().await;
    })
    .await;
}
