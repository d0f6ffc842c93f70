//! Transfer failure paths that end without the transferring agent (DESIGN.md §3, "if the target
//! fails" column of the release and hang-up rows), with real SIP peers: SIPp instances for the
//! customer (UAC over the trunk), agent A = 2001 (UAS at a static contact, sends REFER), the
//! target B = 2002, the IVR flow `survey` and agent C = 2003, who takes the customer over.
//!
//! - A release transfer to a busy B with `[transfer] fallback = "agent:2003"`: the customer, still
//!   held (no second hold), goes to C as a new release transfer.
//! - A hang-up transfer to the IVR whose agent declines the return call (480): the customer goes
//!   to the fallback C, with the flow's data.
//! - The same for a call that came through the queue `sales`, the agent letting the return call
//!   ring out: the customer goes back to that queue (which beats the fallback) and is offered to
//!   its other idle agent, C.
//! - `[[ivr]] max_waiting_s` passing while the IVR runs: A is freed (`idle`) at once, never called
//!   back, and the IVR's return goes to the fallback C.
//!
//! Every test asserts each SIPp's exit code and call counts (the scenarios check each message
//! they receive: whose media each re-INVITE carries, the late offer, the call data), the agents'
//! states during the run and afterwards, that the server drains, and the call's CDR.
//!
//! Media ports in the SDP bodies identify the parties: A answers with m=audio 7070, the IVR
//! offers 7090, C offers 7080. Scenarios: `sipp-scenarios/transfer/fb_*.xml` (each file's header
//! gives its role and flow) plus `agent_refer_release.xml`, `target_busy.xml` and
//! `ivr_flow_returns.xml`.
//!
//! Skipped (with a message) when `sipp` is not installed and `HANDOVER_REQUIRE_SIPP` is unset;
//! `HANDOVER_SIPP_TRACE=1` keeps every SIPp message trace in its run directory.

mod support;

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use handover::api::Control;
use handover::app::RunningServer;
use handover::control::ControlPlane;
use handover::transport::Protocol;
use support::checks::{check_state, reach, the_cdr, STATE_WAIT};
use support::sipp::TRACE_ENV;
use support::{
    assert_drained, free_port, sip_addr, skip_without_sipp, start_server, wait_until, within, Sipp,
    SippOutcome, SippProcess, TestConfig,
};

const AGENT_A: &str = "2001";
const TARGET_B: &str = "2002";
const AGENT_C: &str = "2003";
/// The queue `sales` (skill `sales`: agents A and C; B has another skill).
const QUEUE: &str = "8000";
const QUEUE_NAME: &str = "sales";
/// Per-SIPp timeout: generous for a loaded 2-core machine, well under the test limit.
const SIPP_TIMEOUT: Duration = Duration::from_secs(40);
/// Hard limit of one test.
const TEST_LIMIT: Duration = Duration::from_secs(150);
/// Agent A's pause between the ACK and the REFER.
const A_PAUSE_MS: u64 = 300;
/// The customer's pause before its BYE once it is bridged to C.
const CUSTOMER_PAUSE_MS: u64 = 1500;
/// How long C rings before it answers: the window in which "A idle while C rings" is observed.
const C_RING_MS: u64 = 1000;
/// `[transfer] ring_timeout_s`: how long A's return call rings before handover gives up.
const RING_TIMEOUT_S: u64 = 3;

/// How the test server is set up.
struct Options {
    /// `[transfer] fallback`.
    fallback: &'static str,
    /// The queue `sales` (number 8000) is configured.
    queue: bool,
    /// `[[ivr]] max_waiting_s` of the flow `survey`.
    ivr_max_waiting_s: u64,
}

/// The test server and the ports of the phones.
struct Setup {
    server: RunningServer,
    addr: SocketAddr,
    a: u16,
    b: u16,
    c: u16,
    ivr: u16,
    cdr: PathBuf,
}

/// A server with agents A (2001) and C (2003) with skill `sales` and B (2002) with skill
/// `support`, each at a static UDP contact, the IVR flow `survey` (number 7000), the spec's
/// transfer prefixes (`*4` = hang-up), the release default for untyped REFERs, a
/// [`RING_TIMEOUT_S`] transfer ring timeout, and `options`.
async fn fallback_server(options: Options) -> Setup {
    let (a, b, c, ivr) = (free_port(), free_port(), free_port(), free_port());
    let mut toml = TestConfig::new()
        .agent_at(AGENT_A, "pass2001", &format!("sip:{AGENT_A}@127.0.0.1:{a}"))
        .agent_at(AGENT_C, "pass2003", &format!("sip:{AGENT_C}@127.0.0.1:{c}"))
        .to_toml();
    let _ = write!(
        toml,
        r#"
[[agents]]
id = "{TARGET_B}"
password = "pass2002"
skills = ["support"]
contact = "sip:{TARGET_B}@127.0.0.1:{b}"

[[ivr]]
name = "survey"
number = "7000"
uri = "sip:survey@127.0.0.1:{ivr}"
max_waiting_s = {max_waiting}
"#,
        max_waiting = options.ivr_max_waiting_s
    );
    if options.queue {
        let _ = write!(
            toml,
            r#"
[[queues]]
name = "{QUEUE_NAME}"
number = "{QUEUE}"
skill = "{QUEUE_NAME}"
ring_timeout_s = 10
"#
        );
    }
    let _ = write!(
        toml,
        r#"
[transfer]
default_blind = "release"
prefixes = {{ success = "*1", release = "*2", conversation = "*3", hangup = "*4" }}
ring_timeout_s = {RING_TIMEOUT_S}
fallback = "{}"
"#,
        options.fallback
    );
    let cdr = cdr_path(&toml);
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    Setup {
        server,
        addr,
        a,
        b,
        c,
        ivr,
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

fn scenario(name: &str) -> String {
    format!("sipp-scenarios/transfer/{name}.xml")
}

/// The customer: a SIPp UAC on a free port dialling `number` at the server.
fn customer(name: &str, setup: &Setup, number: &str) -> Sipp {
    Sipp::new(&scenario(name))
        .remote(setup.addr)
        .local_port(free_port())
        .service(number)
        .pause_ms(CUSTOMER_PAUSE_MS)
        .timeout(SIPP_TIMEOUT)
}

/// Agent A's phone: a SIPp UAS on its static contact port, handling `calls` calls. The server
/// is its remote host so that `[remote_ip]:[remote_port]` in the Refer-To names handover; `-s`
/// is the transfer target.
fn agent_a(name: &str, setup: &Setup, target: &str, calls: u64) -> Party {
    let sipp = Sipp::new(&scenario(name))
        .remote(setup.addr)
        .local_port(setup.a)
        .service(target)
        .calls(calls)
        .pause_ms(A_PAUSE_MS)
        .timeout(SIPP_TIMEOUT);
    Party { sipp, calls }
}

/// A phone or flow reached by handover: a SIPp UAS on `port` for one call, `-d` = `pause_ms`.
fn uas(name: &str, port: u16, pause_ms: u64) -> Sipp {
    Sipp::new(&scenario(name))
        .local_port(port)
        .pause_ms(pause_ms)
        .timeout(SIPP_TIMEOUT)
}

/// Agent C's phone: answers after [`C_RING_MS`]; the INVITE must carry `X-Flow-Result:
/// <flow_result>` (`none`: no such header).
fn agent_c(setup: &Setup, flow_result: &str) -> Party {
    Party {
        sipp: uas("fb_fallback_answers", setup.c, C_RING_MS).key("flow_result", flow_result),
        calls: 1,
    }
}

/// The IVR flow: answers, runs `run_ms`, returns the call by BYE with `X-Flow-Result: paid`.
fn ivr(setup: &Setup, run_ms: u64) -> Party {
    Party {
        sipp: uas("ivr_flow_returns", setup.ivr, run_ms),
        calls: 1,
    }
}

/// One SIPp UAS and the number of calls it must complete.
struct Party {
    sipp: Sipp,
    calls: u64,
}

/// Outcome of one run: each SIPp with the calls it had to complete.
struct Run {
    outcomes: Vec<(SippOutcome, u64)>,
    /// Failures of the checks made while the SIPp flows ran.
    during: Vec<String>,
}

/// Starts every UAS, waits until each has bound its port, runs the customer to completion
/// while `during` observes the server, then waits for the UASs (at most 10 s more when the
/// customer failed, so one failure does not wait for every other timeout).
async fn run_parties<F>(parties: Vec<Party>, cust: Sipp, during: F) -> Run
where
    F: Future<Output = Vec<String>>,
{
    let started = Instant::now();
    let mut running: Vec<(SippProcess, u64)> = Vec::new();
    for p in parties {
        let mut proc = p.sipp.spawn();
        proc.ready().await;
        running.push((proc, p.calls));
    }
    let cust = cust.spawn();
    let (cust, during) = tokio::join!(cust.wait(), during);
    let cust_ok = cust.is_success(1);
    let mut outcomes = vec![(cust, 1)];
    for (proc, calls) in running {
        let outcome = if cust_ok {
            proc.wait().await
        } else {
            proc.wait_at_most(started.elapsed() + Duration::from_secs(10))
                .await
        };
        outcomes.push((outcome, calls));
    }
    Run { outcomes, during }
}

impl Run {
    /// Every SIPp exited 0 with exactly its number of successful calls and no failed call, and
    /// every check made during the run held; otherwise panics with every diagnostic (a failure
    /// on one leg is usually explained by what another leg received).
    fn assert_ok(&self) {
        let mut report = String::new();
        for (o, calls) in &self.outcomes {
            if !o.is_success(*calls) {
                let _ = writeln!(
                    report,
                    "{}: expected exit 0 with {calls} successful / 0 failed calls, got exit {:?}, successful {:?}, failed {:?}",
                    o.label, o.exit_code, o.successful, o.failed
                );
            }
        }
        for d in &self.during {
            let _ = writeln!(report, "during the run: {d}");
        }
        if !report.is_empty() {
            for (o, _) in &self.outcomes {
                let _ = writeln!(report, "{}", o.diagnostics);
            }
            panic!("fallback run failed:\n{report}");
        }
        if std::env::var_os(TRACE_ENV).is_none() {
            for (o, _) in &self.outcomes {
                let _ = std::fs::remove_dir_all(&o.dir);
            }
        }
    }
}

/// Calls in the queue `sales` (ringing ones included) and offers pending.
fn queue_counts(server: &RunningServer) -> (usize, usize) {
    server
        .endpoint()
        .queue_status()
        .iter()
        .find(|q| q.name == QUEUE_NAME)
        .map(|q| (q.waiting, q.offers_pending))
        .unwrap_or_default()
}

/// Waits until the one call in progress has a second leg to agent A (handover's return call
/// after the IVR flow) and that leg rings (`early`: A sent 180).
async fn return_call_rings(control: &ControlPlane, f: &mut Vec<String>) {
    let deadline = tokio::time::Instant::now() + STATE_WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let calls = control.list_calls().await;
        let ringing = calls.len() == 1 && {
            let a_legs: Vec<_> = calls[0]
                .legs
                .iter()
                .filter(|l| l.agent.as_deref() == Some(AGENT_A))
                .collect();
            a_legs.len() == 2 && a_legs[1].state == "early"
        };
        if ringing {
            return;
        }
        last = Some(calls);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.push(format!(
        "expected A's return call ringing within {STATE_WAIT:?}, last seen {last:?}"
    ));
}

/// Every agent idle again, every queue empty, then no call and no transaction left.
async fn assert_end_state(server: &RunningServer) {
    for id in [AGENT_A, TARGET_B, AGENT_C] {
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
    let empty = server
        .endpoint()
        .queue_status()
        .iter()
        .all(|q| q.waiting == 0 && q.offers_pending == 0);
    assert!(
        empty,
        "queues not empty: {:?}",
        server.endpoint().queue_status()
    );
    assert_drained(server).await;
}

/// (transfer type, target, outcome) of each transfer attempt in the CDR, in order.
fn transfers(cdr: &serde_json::Value) -> Vec<(String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    cdr["transfers"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| (s(&t["transfer_type"]), s(&t["target"]), s(&t["outcome"])))
                .collect()
        })
        .unwrap_or_default()
}

/// (role, agent) of each leg in the CDR, in order; answered legs only when `answered`.
fn legs(cdr: &serde_json::Value, answered: bool) -> Vec<(String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    cdr["legs"]
        .as_array()
        .map(|legs| {
            legs.iter()
                .filter(|l| !answered || !l["answer_ms"].is_null())
                .map(|l| (s(&l["role"]), s(&l["agent"])))
                .collect()
        })
        .unwrap_or_default()
}

fn owned(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// Runs one flow under the test limit: the SIPp runs and the checks during them, every agent
/// idle and the server drained afterwards. Returns the call's CDR.
async fn run_flow<F, Fut>(what: &str, options: Options, flow: F) -> serde_json::Value
where
    F: FnOnce(Setup) -> Fut,
    Fut: Future<Output = (Setup, Run)>,
{
    within(TEST_LIMIT, what, async {
        let setup = fallback_server(options).await;
        let (setup, run) = flow(setup).await;
        run.assert_ok();
        assert_end_state(&setup.server).await;
        let cdr = the_cdr(&setup.cdr).await;
        setup.server.shutdown().await;
        cdr
    })
    .await
}

/// A release transfer to a busy target with `[transfer] fallback = "agent:2003"`: A gets 202,
/// NOTIFY 200 and a BYE at once (idle), the customer is held, B answers the late-offer INVITE
/// with 486; the customer, still held (no second hold re-INVITE), goes to C: a late-offer
/// INVITE from the customer with the call's data, C's offer re-INVITEd to the customer, the
/// answer in C's ACK. The customer's BYE reaches C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_transfer_to_a_busy_target_sends_the_customer_to_the_fallback() {
    if skip_without_sipp() {
        return;
    }
    let cdr = run_flow(
        "release transfer, busy target, fallback",
        Options {
            fallback: "agent:2003",
            queue: false,
            ivr_max_waiting_s: 60,
        },
        |setup| async move {
            let server = &setup.server;
            let run = run_parties(
                vec![
                    agent_a("agent_refer_release", &setup, TARGET_B, 1),
                    Party {
                        sipp: uas("target_busy", setup.b, 0),
                        calls: 1,
                    },
                    agent_c(&setup, "none"),
                ],
                customer("fb_customer_to_fallback", &setup, AGENT_A),
                async {
                    let mut f = Vec::new();
                    reach(server, AGENT_A, "talking", &mut f).await;
                    // B's 486 failed the transfer: C rings (1 s) for the customer, A was
                    // released at the 202 and B is free again.
                    reach(server, AGENT_C, "ringing", &mut f).await;
                    check_state(server, AGENT_A, "idle", "while C rings", &mut f);
                    check_state(server, TARGET_B, "idle", "while C rings", &mut f);
                    reach(server, AGENT_C, "talking", &mut f).await;
                    check_state(server, AGENT_A, "idle", "while C talks", &mut f);
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await;
    assert_eq!(
        transfers(&cdr),
        owned(&[
            ("release", "agent:2002", "failed:486"),
            ("release", "agent:2003", "succeeded"),
        ]),
        "{cdr}"
    );
    // A released by the policy at the 202 of its own transfer; the fallback releases nobody.
    assert_eq!(cdr["transfers"][0]["released_by"], "policy", "{cdr}");
    assert!(cdr["transfers"][0]["agent_released_ms"].is_u64(), "{cdr}");
    assert_eq!(cdr["transfers"][1]["released_by"], "none", "{cdr}");
    let answered = legs(&cdr, true);
    assert_eq!(
        answered,
        [
            ("customer".to_string(), String::new()),
            ("agent".to_string(), AGENT_A.to_string()),
            ("agent".to_string(), AGENT_C.to_string()),
        ],
        "the customer talked to A, then C; B never answered: {cdr}"
    );
    assert!(
        legs(&cdr, false).contains(&("agent".to_string(), TARGET_B.to_string())),
        "B's attempt is a leg of the call: {cdr}"
    );
}

/// A hang-up transfer (`*47000`) whose agent declines the return call: the customer is held,
/// gets the IVR's media, A hangs up on the final NOTIFY and waits; the IVR's BYE (with
/// `X-Flow-Result: paid`) makes handover call A back, A answers 480, so A is freed (`idle`)
/// and the customer, held again, goes to the fallback C with the flow's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_whose_agent_declines_the_return_call_goes_to_the_fallback() {
    if skip_without_sipp() {
        return;
    }
    let cdr = run_flow(
        "hang-up transfer, return declined, fallback",
        Options {
            fallback: "agent:2003",
            queue: false,
            ivr_max_waiting_s: 60,
        },
        |setup| async move {
            let server = &setup.server;
            let run = run_parties(
                vec![
                    agent_a("fb_agent_declines_return", &setup, "*47000", 2),
                    ivr(&setup, 1500),
                    agent_c(&setup, "paid"),
                ],
                customer("fb_customer_hangup_to_fallback", &setup, AGENT_A),
                async {
                    let mut f = Vec::new();
                    reach(server, AGENT_A, "talking", &mut f).await;
                    // The IVR runs 1.5 s: A is reserved while its phone is hung up.
                    reach(server, AGENT_A, "waiting", &mut f).await;
                    check_state(server, AGENT_C, "idle", "while the IVR runs", &mut f);
                    reach(server, AGENT_C, "ringing", &mut f).await;
                    check_state(server, AGENT_A, "idle", "after declining", &mut f);
                    reach(server, AGENT_C, "talking", &mut f).await;
                    check_state(server, AGENT_A, "idle", "while C talks", &mut f);
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await;
    assert_eq!(
        transfers(&cdr),
        owned(&[
            // The hang-up transfer reached its release moment (IVR answered); the failed
            // return shows as the fallback that follows.
            ("hangup", "ivr:survey", "succeeded"),
            ("release", "agent:2003", "succeeded"),
        ]),
        "{cdr}"
    );
    assert_eq!(
        legs(&cdr, true)
            .into_iter()
            .filter(|(_, agent)| !agent.is_empty())
            .collect::<Vec<_>>(),
        [
            ("agent".to_string(), AGENT_A.to_string()),
            ("agent".to_string(), AGENT_C.to_string()),
        ],
        "answered agent legs: A's first call and C, not A's return call: {cdr}"
    );
}

/// The call came through the queue `sales` (A is its agent), A makes a hang-up transfer and
/// lets the return call ring out: after [`RING_TIMEOUT_S`] handover CANCELs it, A is freed,
/// and the customer goes back to the queue it came through (DESIGN.md §3: "the agent's queue")
/// — not to the `[transfer] fallback` (agent 2002, whose phone is not even running) — which
/// offers it to its other idle agent, C, as the transfer target (late offer, the flow's data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_of_a_queue_call_whose_agent_misses_the_return_goes_back_to_the_queue() {
    if skip_without_sipp() {
        return;
    }
    let cdr = run_flow(
        "hang-up transfer from a queue, return not answered",
        Options {
            fallback: "agent:2002",
            queue: true,
            ivr_max_waiting_s: 60,
        },
        |setup| async move {
            let server = &setup.server;
            let control = ControlPlane::new(setup.server.endpoint().clone(), None);
            let run = run_parties(
                vec![
                    agent_a("fb_agent_misses_return", &setup, "*47000", 2),
                    ivr(&setup, 1500),
                    agent_c(&setup, "paid"),
                ],
                customer("fb_customer_hangup_to_fallback", &setup, QUEUE),
                async {
                    let mut f = Vec::new();
                    // The queue offers the call to A (longest idle, first by id) — not to C.
                    reach(server, AGENT_A, "talking", &mut f).await;
                    check_state(server, AGENT_C, "idle", "while A talks", &mut f);
                    reach(server, AGENT_A, "waiting", &mut f).await;
                    // The IVR returns the call: A's return call rings for RING_TIMEOUT_S; A
                    // is still reserved for it, C is offered nothing yet.
                    return_call_rings(&control, &mut f).await;
                    let a = server.agent_state(AGENT_A);
                    if !matches!(a.as_deref(), Some("waiting" | "ringing")) {
                        f.push(format!(
                            "agent {AGENT_A} while its return call rings: expected waiting or ringing, got {a:?}"
                        ));
                    }
                    check_state(server, AGENT_C, "idle", "while A's return call rings", &mut f);
                    // Back in the queue, offered to C; A is free again (once its phone has
                    // answered the CANCEL with 487, A may show `ringing` for a moment).
                    reach(server, AGENT_C, "ringing", &mut f).await;
                    let (waiting, offers) = queue_counts(server);
                    if (waiting, offers) != (1, 1) {
                        f.push(format!(
                            "queue while C rings: expected 1 call being offered, got waiting {waiting}, offers {offers}"
                        ));
                    }
                    reach(server, AGENT_A, "idle", &mut f).await;
                    reach(server, AGENT_C, "talking", &mut f).await;
                    check_state(server, TARGET_B, "idle", "(the fallback, never tried)", &mut f);
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await;
    assert_eq!(
        transfers(&cdr),
        owned(&[
            // The return call rang out: handover's ring timeout (408).
            ("hangup", "ivr:survey", "succeeded"),
            ("release", "queue:sales", "succeeded"),
        ]),
        "{cdr}"
    );
    assert!(
        !legs(&cdr, false).iter().any(|(_, agent)| agent == TARGET_B),
        "the fallback was never called: {cdr}"
    );
}

/// `[[ivr]] max_waiting_s = 1` while the IVR runs 3 s: A, `waiting` after the hang-up transfer,
/// is freed to `idle` after 1 s, while the customer is still in the IVR; the IVR's return then
/// does not call A back (A's phone gets nothing more, A stays idle) but goes to the fallback C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_past_max_waiting_frees_the_agent_and_the_return_goes_to_the_fallback() {
    if skip_without_sipp() {
        return;
    }
    let cdr = run_flow(
        "hang-up transfer past max_waiting_s",
        Options {
            fallback: "agent:2003",
            queue: false,
            ivr_max_waiting_s: 1,
        },
        |setup| async move {
            let server = &setup.server;
            let run = run_parties(
                // Only the customer's call: a return call would fail to find A's phone.
                vec![
                    agent_a("fb_agent_declines_return", &setup, "*47000", 1),
                    ivr(&setup, 3000),
                    agent_c(&setup, "paid"),
                ],
                customer("fb_customer_hangup_to_fallback", &setup, AGENT_A),
                async {
                    let mut f = Vec::new();
                    reach(server, AGENT_A, "talking", &mut f).await;
                    reach(server, AGENT_A, "waiting", &mut f).await;
                    reach(server, AGENT_A, "idle", &mut f).await;
                    check_state(server, AGENT_C, "idle", "when A was freed", &mut f);
                    // From now until C talks, A must stay idle: never called back.
                    let mut a_seen = Vec::new();
                    let c_talks = wait_until(
                        || {
                            let a = server.agent_state(AGENT_A);
                            if a.as_deref() != Some("idle") {
                                a_seen.push(a);
                            }
                            server.agent_state(AGENT_C).as_deref() == Some("talking")
                        },
                        STATE_WAIT,
                    )
                    .await;
                    if !c_talks {
                        f.push(format!(
                            "agent {AGENT_C}: expected \"talking\" within {STATE_WAIT:?}, still {:?}",
                            server.agent_state(AGENT_C)
                        ));
                    }
                    if !a_seen.is_empty() {
                        f.push(format!(
                            "agent {AGENT_A} left idle after max_waiting_s: {a_seen:?}"
                        ));
                    }
                    f
                },
            )
            .await;
            (setup, run)
        },
    )
    .await;
    assert_eq!(
        transfers(&cdr),
        owned(&[
            ("hangup", "ivr:survey", "succeeded"),
            ("release", "agent:2003", "succeeded"),
        ]),
        "{cdr}"
    );
    let a_legs = legs(&cdr, false)
        .into_iter()
        .filter(|(_, agent)| agent == AGENT_A)
        .count();
    assert_eq!(a_legs, 1, "A was never called back: {cdr}");
}
