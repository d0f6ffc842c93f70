//! Conversation transfers through handover with real SIP peers: three SIPp instances per test
//! (DESIGN.md §3, row "conversation", rules 4, 5, 6 and 8). The customer is a SIPp UAC over the
//! trunk, agent A = 2001 is a SIPp UAS at a static contact that sends REFER, the target B =
//! agent 2002 is a SIPp UAS at its own static contact. A and B start first; the customer's call
//! then runs the whole flow.
//!
//! Every test asserts all three SIPp exit codes and call counts (the scenarios check each
//! message they receive: NOTIFY sipfrag and Subscription-State, whose media each re-INVITE or
//! ACK carries, the 403's Warning, the BYE's Reason), the agents' states and the call's stage
//! during the run, both agents `idle` and no call or transaction left afterwards, and the CDR.
//!
//! Media ports in the SDP bodies identify the parties: A answers with m=audio 7070, B offers
//! 7078, the customer uses its own SIPp media port (`-mp`, handed to the other scenarios as
//! `-key cust_media`). Scenarios: `sipp-scenarios/transfer/conv_*.xml` (each file's header
//! gives its role and flow) and `customer_transferred.xml`.
//!
//! Skipped (with a message) when `sipp` is not installed and `HANDOVER_REQUIRE_SIPP` is unset;
//! `HANDOVER_SIPP_TRACE=1` keeps every SIPp message trace in its run directory.

mod support;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use handover::api::{CallInfo, Control};
use handover::app::RunningServer;
use handover::control::ControlPlane;
use handover::transport::Protocol;
use support::checks::{check_state, reach, the_cdr, STATE_WAIT};
use support::sipp::TRACE_ENV;
use support::{
    assert_drained, free_media_port, free_port, sip_addr, skip_without_sipp, start_server,
    wait_until, within, Sipp, SippOutcome, TestConfig,
};

const AGENT_A: &str = "2001";
const TARGET_B: &str = "2002";
/// A configured external number with `user_number_forwarding = true`: rule 2 allows success
/// and conversation transfers to it, so only rule 4 can refuse them.
const EXTERNAL: &str = "0049301234567";
/// Per-SIPp timeout: generous for a loaded 2-core machine, well under the test limit.
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);
/// Hard limit of one test (the SIPp flows take a few seconds, draining the rest).
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// Agent A's pause between the ACK and the REFER.
const A_PAUSE_MS: u64 = 300;
/// The customer's pause before its BYE once it is bridged: the window in which the states
/// after the transfer are observed.
const CUSTOMER_PAUSE_MS: u64 = 2000;

/// What happens when the agent hangs up before the consulted target answers (rule 6).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnAgentHangup {
    Continue,
    Cancel,
}

/// The test server and the ports of the two agent phones.
struct Setup {
    server: RunningServer,
    addr: SocketAddr,
    a: u16,
    b: u16,
    cdr: PathBuf,
}

/// A server with agents 2001 (A) and 2002 (B) at static UDP contacts, the external number
/// `partner`, the spec's transfer prefixes (`*3` = conversation), the release default for
/// untyped REFERs, a 10 s transfer ring timeout and the given rule-6 policy.
async fn conversation_server(on_agent_hangup: OnAgentHangup) -> Setup {
    let (a, b) = (free_port(), free_port());
    let mut toml = TestConfig::new()
        .agent_at(AGENT_A, "pass2001", &format!("sip:{AGENT_A}@127.0.0.1:{a}"))
        .agent_at(
            TARGET_B,
            "pass2002",
            &format!("sip:{TARGET_B}@127.0.0.1:{b}"),
        )
        .to_toml();
    let policy = match on_agent_hangup {
        OnAgentHangup::Continue => "continue",
        OnAgentHangup::Cancel => "cancel",
    };
    let _ = write!(
        toml,
        r#"
[[external_numbers]]
name = "partner"
number = "{EXTERNAL}"
user_number_forwarding = true

[transfer]
default_blind = "release"
prefixes = {{ success = "*1", release = "*2", conversation = "*3", hangup = "*4" }}
ring_timeout_s = 10
agent_hangup_during_conversation = "{policy}"
"#
    );
    let cdr = cdr_path(&toml);
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    Setup {
        server,
        addr,
        a,
        b,
        cdr,
    }
}

/// The `[cdr] path` of a generated test config.
fn cdr_path(toml: &str) -> PathBuf {
    let section = toml
        .split("[cdr]")
        .nth(1)
        .expect("the test config has a [cdr] section");
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("path"))
        .expect("[cdr] has a path");
    let value = line.split_once('=').expect("path = \"...\"").1.trim();
    PathBuf::from(value.trim_matches('"'))
}

/// The customer: a SIPp UAC calling agent A at the server, with its media on `media_port`.
fn customer(scenario: &str, setup: &Setup, media_port: u16) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/transfer/{scenario}.xml"))
        .remote(setup.addr)
        .local_port(free_port())
        .service(AGENT_A)
        .pause_ms(CUSTOMER_PAUSE_MS)
        .arg("-mp")
        .arg(media_port.to_string())
        .timeout(SIPP_TIMEOUT)
}

/// Agent A's phone: a SIPp UAS on its static contact port; it REFERs to `refer_to`.
fn agent_a(scenario: &str, setup: &Setup, refer_to: &str) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/transfer/{scenario}.xml"))
        .remote(setup.addr)
        .local_port(setup.a)
        .key("refer_to", refer_to)
        .pause_ms(A_PAUSE_MS)
        .timeout(SIPP_TIMEOUT)
}

/// Target B's phone: a SIPp UAS on its static contact port; `-d` is how long it rings.
fn target_b(scenario: &str, setup: &Setup, ring_ms: u64) -> Sipp {
    Sipp::new(&format!("sipp-scenarios/transfer/{scenario}.xml"))
        .local_port(setup.b)
        .pause_ms(ring_ms)
        .timeout(SIPP_TIMEOUT)
}

/// `sip:<user>@<handover>` with optional URI parameters, for a Refer-To.
fn uri(user: &str, setup: &Setup, params: &str) -> String {
    format!("sip:{user}@{}{params}", setup.addr)
}

/// Outcome of one three-party run.
struct Run {
    outcomes: Vec<SippOutcome>,
    /// Failures of the checks made while the SIPp flows ran.
    during: Vec<String>,
}

/// Starts A and B, waits until they have bound their ports, runs the customer to completion
/// while `during` observes the server, then waits for A and B (at most 10 s more when the
/// customer failed, so one failure does not wait for every other timeout).
async fn run_three<F>(a: Sipp, b: Sipp, cust: Sipp, during: F) -> Run
where
    F: Future<Output = Vec<String>>,
{
    let started = Instant::now();
    let mut a = a.spawn();
    a.ready().await;
    let mut b = b.spawn();
    b.ready().await;
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
    let a = finish(a).await;
    let b = finish(b).await;
    Run {
        outcomes: vec![cust, a, b],
        during,
    }
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
            panic!("conversation transfer run failed:\n{report}");
        }
        if std::env::var_os(TRACE_ENV).is_none() {
            for o in &self.outcomes {
                let _ = std::fs::remove_dir_all(&o.dir);
            }
        }
    }
}

/// The one call in progress, as the control API shows it.
async fn the_call(control: &ControlPlane) -> Option<CallInfo> {
    let mut calls = control.list_calls().await;
    (calls.len() == 1).then(|| calls.remove(0))
}

/// Polls the control API until the call satisfies `cond`; on timeout notes the failure with
/// the last view.
async fn call_reaches(
    control: &ControlPlane,
    what: &str,
    cond: impl Fn(&CallInfo) -> bool,
    f: &mut Vec<String>,
) {
    let deadline = tokio::time::Instant::now() + STATE_WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = the_call(control).await;
        if last.as_ref().is_some_and(&cond) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.push(format!(
        "call: expected {what} within {STATE_WAIT:?}, last seen {last:?}"
    ));
}

fn leg_state<'a>(call: &'a CallInfo, role: &str) -> Option<&'a str> {
    call.legs
        .iter()
        .find(|l| l.role == role)
        .map(|l| l.state.as_str())
}

/// The consultation is up: the call's transfer is in stage `consulting`, A and B talk.
async fn consultation_up(server: &RunningServer, control: &ControlPlane, f: &mut Vec<String>) {
    call_reaches(
        control,
        "a conversation transfer in stage consulting",
        |c| {
            c.transfer
                .as_ref()
                .is_some_and(|t| t.transfer_type == "conversation" && t.stage == "consulting")
        },
        f,
    )
    .await;
    check_state(server, AGENT_A, "talking", "while consulting", f);
    check_state(server, TARGET_B, "talking", "while consulting", f);
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

/// The roles of the CDR's legs, in order.
fn leg_roles(cdr: &serde_json::Value) -> Vec<String> {
    cdr["legs"]
        .as_array()
        .map(|legs| {
            legs.iter()
                .map(|l| l["role"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The agent leg's `end_ms` in the CDR (agent 2001's leg).
fn agent_leg_end(cdr: &serde_json::Value) -> Option<u64> {
    cdr["legs"]
        .as_array()?
        .iter()
        .find(|l| l["agent"] == AGENT_A)
        .and_then(|l| l["end_ms"].as_u64())
}

/// Runs one flow under the test limit: the three SIPp runs and the checks during them, both
/// agents idle and the server drained afterwards. Returns the call's CDR.
async fn run_flow<F, Fut>(what: &str, on_agent_hangup: OnAgentHangup, flow: F) -> serde_json::Value
where
    F: FnOnce(Setup) -> Fut,
    Fut: Future<Output = (Setup, Run)>,
{
    within(TEST_LIMIT, what, async {
        let setup = conversation_server(on_agent_hangup).await;
        let (setup, run) = flow(setup).await;
        run.assert_ok();
        assert_end_state(&setup.server).await;
        let cdr = the_cdr(&setup.cdr).await;
        setup.server.shutdown().await;
        cdr
    })
    .await
}

/// The transfer completed by the agent's BYE after the target answered: the customer is held,
/// B is called (late offer), A is joined to B (A's re-INVITE carries B's offer, B's ACK A's
/// answer) while A gets NOTIFY 100 and 180 and no final NOTIFY (rule 8: a phone hangs up on a
/// 2xx NOTIFY, so none may come while A should still talk to B). A hangs up: handover asks B
/// for a fresh offer (re-INVITE without SDP) and gives it to the customer, whose answer goes
/// in B's ACK. A ends `idle` (rule 5), B talks to the customer until the customer's BYE.
/// Typed by the `*3` dial prefix.
async fn agent_completes_flow() -> serde_json::Value {
    run_flow(
        "conversation transfer completed by A",
        OnAgentHangup::Continue,
        |setup| async move {
            let control = ControlPlane::new(setup.server.endpoint().clone(), None);
            let cust_media = free_media_port();
            let server = &setup.server;
            let run = run_three(
                agent_a(
                    "conv_agent_completes",
                    &setup,
                    &uri(&format!("*3{TARGET_B}"), &setup, ""),
                ),
                target_b("conv_target_joined", &setup, 500)
                    .key("cust_media", &cust_media.to_string()),
                customer("customer_transferred", &setup, cust_media),
                async {
                    let mut f = Vec::new();
                    consultation_up(server, &control, &mut f).await;
                    // A hangs up after 1.5 s of consultation: released to idle, B keeps
                    // talking, now to the customer.
                    reach(server, AGENT_A, "idle", &mut f).await;
                    check_state(server, TARGET_B, "talking", "after A completed", &mut f);
                    call_reaches(
                        &control,
                        "connected (customer with B), no transfer",
                        |c| c.state == "connected" && c.transfer.is_none(),
                        &mut f,
                    )
                    .await;
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_transfer_completes_when_the_agent_hangs_up() {
    if skip_without_sipp() {
        return;
    }
    let cdr = agent_completes_flow().await;
    let t = &cdr["transfers"][0];
    assert_eq!(cdr["transfers"].as_array().map(Vec::len), Some(1), "{cdr}");
    assert_eq!(t["transfer_type"], "conversation", "{cdr}");
    assert_eq!(t["target"], "agent:2002", "{cdr}");
    assert_eq!(t["outcome"], "succeeded", "{cdr}");
    // Released by its own BYE, at the end of its leg (DESIGN.md §3 "Accounting").
    assert_eq!(t["released_by"], "agent", "{cdr}");
    assert_eq!(
        t["agent_released_ms"].as_u64(),
        agent_leg_end(&cdr),
        "{cdr}"
    );
    assert_eq!(leg_roles(&cdr), ["customer", "agent", "agent"], "{cdr}");
}

/// The consulted target hangs up: A gets NOTIFY 487 (terminated), the customer is asked for a
/// fresh offer (re-INVITE without SDP) which goes to A, A's answer goes in the customer's ACK;
/// A keeps talking to the customer until the customer hangs up. Typed by
/// `;transfer=conversation` on the Refer-To.
async fn target_hangs_up_flow() -> serde_json::Value {
    run_flow(
        "conversation target hangs up",
        OnAgentHangup::Continue,
        |setup| async move {
            let control = ControlPlane::new(setup.server.endpoint().clone(), None);
            let cust_media = free_media_port();
            let server = &setup.server;
            let run = run_three(
                agent_a(
                    "conv_agent_back_to_customer",
                    &setup,
                    &uri(TARGET_B, &setup, ";transfer=conversation"),
                )
                .key("cust_media", &cust_media.to_string()),
                target_b("conv_target_hangs_up", &setup, 500),
                customer("conv_customer_back_to_agent", &setup, cust_media),
                async {
                    let mut f = Vec::new();
                    consultation_up(server, &control, &mut f).await;
                    // B hangs up after 1.5 s: idle; A talks to the customer again.
                    reach(server, TARGET_B, "idle", &mut f).await;
                    call_reaches(
                        &control,
                        "connected (customer with A), no transfer",
                        |c| c.state == "connected" && c.transfer.is_none(),
                        &mut f,
                    )
                    .await;
                    check_state(server, AGENT_A, "talking", "back with the customer", &mut f);
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_target_hanging_up_returns_the_agent_to_the_customer() {
    if skip_without_sipp() {
        return;
    }
    let cdr = target_hangs_up_flow().await;
    let t = &cdr["transfers"][0];
    assert_eq!(cdr["transfers"].as_array().map(Vec::len), Some(1), "{cdr}");
    assert_eq!(t["transfer_type"], "conversation", "{cdr}");
    assert_eq!(t["target"], "agent:2002", "{cdr}");
    // Failed with the status the agent was told (NOTIFY 487).
    assert_eq!(t["outcome"], "failed:487", "{cdr}");
    assert_eq!(leg_roles(&cdr), ["customer", "agent", "agent"], "{cdr}");
}

/// The customer hangs up during the consultation: A gets NOTIFY 487 (terminated) and stays
/// with B (customer 2). Rule 4: A's REFER of that call to an external number is refused with
/// 403 and a Warning naming rule 4, and the call is left as it was (nothing reaches A or B; A's
/// BYE then reaches B).
async fn customer_leaves_flow() -> serde_json::Value {
    run_flow(
        "customer leaves during the consultation",
        OnAgentHangup::Continue,
        |setup| async move {
            let control = ControlPlane::new(setup.server.endpoint().clone(), None);
            let server = &setup.server;
            let run = run_three(
                agent_a(
                    "conv_agent_keeps_target",
                    &setup,
                    &uri(&format!("*3{TARGET_B}"), &setup, ""),
                )
                .key(
                    "external_refer_to",
                    &uri(EXTERNAL, &setup, ";transfer=success"),
                ),
                target_b("conv_target_answers", &setup, 300).key("answer_media", "7070"),
                // The customer hangs up 2.5 s after being held: B has long answered by then.
                customer("conv_customer_leaves", &setup, free_media_port()).pause_ms(2500),
                async {
                    let mut f = Vec::new();
                    consultation_up(server, &control, &mut f).await;
                    call_reaches(
                        &control,
                        "the customer gone, A connected to B, no transfer",
                        |c| {
                            c.state == "connected"
                                && c.transfer.is_none()
                                && leg_state(c, "customer") == Some("ended")
                        },
                        &mut f,
                    )
                    .await;
                    check_state(server, AGENT_A, "talking", "with customer 2", &mut f);
                    check_state(server, TARGET_B, "talking", "with agent A", &mut f);
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_leaving_during_consultation_leaves_the_agent_with_the_target_and_rule_4_applies()
{
    if skip_without_sipp() {
        return;
    }
    let cdr = customer_leaves_flow().await;
    let transfers = cdr["transfers"].as_array().cloned().unwrap_or_default();
    assert_eq!(transfers.len(), 2, "{cdr}");
    assert_eq!(transfers[0]["transfer_type"], "conversation", "{cdr}");
    assert_eq!(transfers[0]["outcome"], "failed:487", "{cdr}");
    assert_eq!(transfers[1]["transfer_type"], "success", "{cdr}");
    assert_eq!(transfers[1]["target"], "external:partner", "{cdr}");
    assert_eq!(transfers[1]["outcome"], "refused:4", "{cdr}");
}

/// Rule 6, default "continue": A hangs up while B still rings. The attempt goes on as a release
/// transfer to B: A is `idle` at once (rule 5) while B rings, B answers later and the customer
/// gets B's offer; B's ACK carries the customer's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hanging_up_before_the_target_answers_continues_as_a_release_transfer() {
    if skip_without_sipp() {
        return;
    }
    let cdr = run_flow(
        "rule 6, continue",
        OnAgentHangup::Continue,
        |setup| async move {
            let cust_media = free_media_port();
            let server = &setup.server;
            let run = run_three(
                agent_a(
                    "conv_agent_hangs_up_ringing",
                    &setup,
                    &uri(TARGET_B, &setup, ";transfer=conversation"),
                ),
                // B rings 2.5 s: A's BYE (300 ms after NOTIFY 180) comes well before B answers.
                target_b("conv_target_answers", &setup, 2500)
                    .key("answer_media", &cust_media.to_string()),
                customer("customer_transferred", &setup, cust_media),
                async {
                    let mut f = Vec::new();
                    reach(server, AGENT_A, "talking", &mut f).await;
                    reach(server, TARGET_B, "ringing", &mut f).await;
                    reach(server, AGENT_A, "idle", &mut f).await;
                    check_state(server, TARGET_B, "ringing", "when A hung up", &mut f);
                    reach(server, TARGET_B, "talking", &mut f).await;
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await;
    let t = &cdr["transfers"][0];
    assert_eq!(t["transfer_type"], "conversation", "{cdr}");
    assert_eq!(t["target"], "agent:2002", "{cdr}");
    assert_eq!(t["outcome"], "succeeded", "{cdr}");
    assert_eq!(t["released_by"], "agent", "{cdr}");
    assert_eq!(
        t["agent_released_ms"].as_u64(),
        agent_leg_end(&cdr),
        "{cdr}"
    );
}

/// Rule 6 with `agent_hangup_during_conversation = "cancel"`: A hangs up while B still rings.
/// B's INVITE is CANCELled (200 for the CANCEL, 487 for the INVITE); the customer, held and
/// left without an agent, is released with a BYE carrying `Reason: SIP;cause=487`.
async fn cancel_flow() -> serde_json::Value {
    run_flow(
        "rule 6, cancel",
        OnAgentHangup::Cancel,
        |setup| async move {
            let server = &setup.server;
            let run = run_three(
                agent_a(
                    "conv_agent_hangs_up_ringing",
                    &setup,
                    &uri(&format!("*3{TARGET_B}"), &setup, ""),
                ),
                target_b("conv_target_cancelled", &setup, 0),
                customer(
                    "conv_customer_released_on_cancel",
                    &setup,
                    free_media_port(),
                ),
                async {
                    let mut f = Vec::new();
                    reach(server, AGENT_A, "talking", &mut f).await;
                    reach(server, TARGET_B, "ringing", &mut f).await;
                    reach(server, AGENT_A, "idle", &mut f).await;
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hanging_up_before_the_target_answers_cancels_it_when_configured() {
    if skip_without_sipp() {
        return;
    }
    let cdr = cancel_flow().await;
    let t = &cdr["transfers"][0];
    assert_eq!(t["transfer_type"], "conversation", "{cdr}");
    assert_eq!(t["target"], "agent:2002", "{cdr}");
    // Failed with the target's 487; the agent released by its own BYE.
    assert_eq!(t["outcome"], "failed:487", "{cdr}");
    assert_eq!(t["released_by"], "agent", "{cdr}");
    assert_eq!(
        t["agent_released_ms"].as_u64(),
        agent_leg_end(&cdr),
        "{cdr}"
    );
    assert_eq!(
        cdr["release_cause"], "agent hung up during a conversation transfer",
        "{cdr}"
    );
    assert_eq!(leg_roles(&cdr), ["customer", "agent", "agent"], "{cdr}");
    assert!(
        cdr["legs"][2]["answer_ms"].is_null(),
        "B never answered: {cdr}"
    );
}
