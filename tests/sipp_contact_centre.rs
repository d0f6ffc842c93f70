//! The contact-centre layer (DESIGN.md §2) driven by several SIPp instances at once: a skill
//! queue served by SIPp agents (registered or at static contacts), customers calling in over
//! the trunk, an IVR flow and the carrier behind the trunk's outbound route played by SIPp.
//!
//! Covered: distribution to the longest-idle agent over a run of calls, ring timeout → the next
//! agent (the missed agent goes `not_ready`), a full queue (486 + Warning), no logged-in agent
//! (480 + Warning), max wait → the overflow IVR or 480, a customer abandoning while queued, and
//! agents dialling external numbers (configured with and without user number forwarding,
//! ad-hoc) with the identities the carrier receives, and the toll-fraud guard (403).
//!
//! Every test ends with each agent back in its expected state, every queue empty and no call
//! or transaction left. Skipped (with a message) when `sipp` is not installed and
//! `HANDOVER_REQUIRE_SIPP` is unset.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use handover::app::RunningServer;
use handover::transport::Protocol;
use support::{
    assert_drained, free_port, sip_addr, skip_without_sipp, start_server, wait_agent_state,
    wait_until, Sipp, SippOutcome, DOMAIN, SIPP_DIGEST_COMPAT, TEST_T1_MS,
};

/// The queue's number and name; every agent has its skill.
const QUEUE: &str = "8000";
const QUEUE_NAME: &str = "sales";
/// The trunk's access number, presented when the customer's number is not forwarded.
const ACCESS_NUMBER: &str = "+3215550000";
/// The customer's number in every customer scenario's From.
const CUSTOMER_NUMBER: &str = "+3225550100";
/// Configured external numbers: with and without user number forwarding.
const PARTNER: &str = "0049301234567";
const SUPPLIER: &str = "0033123456789";
/// A number no external entry names but `^00[1-9][0-9]{6,14}$` matches.
const ADHOC: &str = "0031201234567";
const SETTLE: Duration = Duration::from_secs(15);
const SIPP_TIMEOUT: Duration = Duration::from_secs(60);

/// One `[[agents]]` entry: id and, for a phone that does not register, its static contact port.
type AgentSpec<'a> = (&'a str, Option<u16>);

/// A loopback config: SIP on UDP+TCP port 0, an MD5 digest registrar (SIPp can only answer
/// MD5), the trunk `carrier` (customers from 127.0.0.1, outbound to `trunk_port`), `agents`
/// with skill `sales`, the queue `sales` (number 8000) with `queue_lines`, then `extra`.
fn config(agents: &[AgentSpec], queue_lines: &str, extra: &str, trunk_port: u16) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let cdr = std::env::temp_dir().join(format!(
        "handover-cc-cdr-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut t = format!(
        r#"[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"
t1_ms = {TEST_T1_MS}

[registrar]
min_expires_s = 60
max_expires_s = 3600
nonce_ttl_s = 300
{SIPP_DIGEST_COMPAT}

[http]
listen = "127.0.0.1:0"
token = "test-token"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:{trunk_port}"
access_number = "{ACCESS_NUMBER}"

[cdr]
path = "{}"
"#,
        cdr.display().to_string().replace('\\', "/")
    );
    for (id, port) in agents {
        let _ = writeln!(
            t,
            "\n[[agents]]\nid = \"{id}\"\npassword = \"pass{id}\"\nskills = [\"{QUEUE_NAME}\"]"
        );
        if let Some(p) = port {
            let _ = writeln!(t, "contact = \"sip:{id}@127.0.0.1:{p}\"");
        }
    }
    let _ = writeln!(
        t,
        "\n[[queues]]\nname = \"{QUEUE_NAME}\"\nnumber = \"{QUEUE}\"\nskill = \"{QUEUE_NAME}\"\n{queue_lines}\n\n{extra}"
    );
    t
}

/// A customer: a SIPp UAC on a free port dialling the queue, holding `pause_ms` (for the
/// scenario's `<pause/>`). Its `<log>` lines go to `log.txt` in the run directory.
fn customer(scenario: &str, server: SocketAddr, pause_ms: u64) -> Sipp {
    Sipp::new(scenario)
        .remote(server)
        .local_port(free_port())
        .service(QUEUE)
        .pause_ms(pause_ms)
        .timeout(SIPP_TIMEOUT)
        .arg("-trace_logs")
        .arg("-log_file")
        .arg("log.txt")
}

/// A SIPp UAS on `port` handling `calls` calls (an agent's phone, the IVR or the carrier).
fn uas(scenario: &str, port: u16, calls: u64) -> Sipp {
    Sipp::new(scenario)
        .local_port(port)
        .calls(calls)
        .timeout(SIPP_TIMEOUT)
        .arg("-trace_logs")
        .arg("-log_file")
        .arg("log.txt")
}

/// An agent's own call out: a SIPp UAC on the agent's port (registered or static contact).
fn agent_dials(scenario: &str, server: SocketAddr, port: u16, agent: &str, number: &str) -> Sipp {
    Sipp::new(scenario)
        .remote(server)
        .local_port(port)
        .service(number)
        .key("agent", agent)
        .pause_ms(300)
        .timeout(SIPP_TIMEOUT)
        .arg("-trace_logs")
        .arg("-log_file")
        .arg("log.txt")
}

/// Registers `id` from 127.0.0.1:`port` (its later SIPp runs on that port are its binding).
async fn register(server: SocketAddr, port: u16, id: &str) {
    Sipp::new("sipp-scenarios/register/agent_register.xml")
        .remote(server)
        .local_port(port)
        .service(id)
        .auth(id, &format!("pass{id}"))
        .key("domain", DOMAIN)
        .timeout(Duration::from_secs(30))
        .run()
        .await
        .assert_success(1);
}

/// The `<log>` lines a SIPp run wrote (read before `assert_success` removes the directory).
fn sipp_log(outcome: &SippOutcome) -> String {
    std::fs::read_to_string(outcome.dir.join("log.txt")).unwrap_or_default()
}

/// The value of the first `<log>` line starting with `prefix: `.
fn logged(log: &str, prefix: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(": "))
        .map(|v| v.trim().to_owned())
}

fn queue_scenario(name: &str) -> String {
    format!("sipp-scenarios/queue/{name}.xml")
}

fn basic_scenario(name: &str) -> String {
    format!("sipp-scenarios/basic/{name}.xml")
}

/// Number of calls in the queue (ringing ones included) and offers pending.
fn queue_counts(server: &RunningServer) -> (usize, usize) {
    let status = server.endpoint().queue_status();
    let q = status
        .iter()
        .find(|q| q.name == QUEUE_NAME)
        .expect("queue `sales` in queue_status()");
    (q.waiting, q.offers_pending)
}

/// After a test: each agent in its expected state, every queue empty, nothing left running.
async fn assert_settled(server: &RunningServer, agents: &[(&str, &str)]) {
    for (id, state) in agents {
        wait_agent_state(server, id, state, SETTLE).await;
    }
    let empty = wait_until(
        || {
            server
                .endpoint()
                .queue_status()
                .iter()
                .all(|q| q.waiting == 0 && q.offers_pending == 0)
        },
        SETTLE,
    )
    .await;
    assert!(
        empty,
        "queues not empty: {:?}",
        server
            .endpoint()
            .queue_status()
            .iter()
            .map(|q| (q.name.clone(), q.waiting, q.offers_pending))
            .collect::<Vec<_>>()
    );
    assert_drained(server).await;
    // Draining must not have moved any agent.
    for (id, state) in agents {
        assert_eq!(
            server.agent_state(id).as_deref(),
            Some(*state),
            "agent {id}"
        );
    }
}

/// The agent currently offered or talking, if exactly one is.
fn busy_agent(server: &RunningServer, ids: &[&str]) -> Option<String> {
    let busy: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| {
            matches!(
                server.agent_state(id).as_deref(),
                Some("ringing") | Some("talking")
            )
        })
        .collect();
    match busy.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_calls_go_to_the_longest_idle_agent_in_turn() {
    if skip_without_sipp() {
        return;
    }
    let ids = ["2001", "2002", "2003"];
    let ports = [free_port(), free_port(), free_port()];
    let toml = config(
        &[("2001", None), ("2002", None), ("2003", None)],
        "ring_timeout_s = 10",
        "",
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);

    // Idle times differ on purpose, and not in id order: 2003 logs in first, then 2001, then
    // 2002. The longest idle is served first; an agent that just finished a call is idle for
    // the shortest time, so six calls in a row go 2003, 2001, 2002, 2003, 2001, 2002.
    let login_order = [2usize, 0, 1];
    for &i in &login_order {
        register(addr, ports[i], ids[i]).await;
        wait_agent_state(&server, ids[i], "idle", SETTLE).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut phones = Vec::new();
    for port in ports {
        let mut p = uas(&basic_scenario("agent_answer_wait_bye"), port, 2).spawn();
        p.ready().await;
        phones.push(p);
    }

    let mut order = Vec::new();
    for n in 0..6 {
        let call = customer(&queue_scenario("customer_queued_call"), addr, 400).spawn();
        let mut got = None;
        let seen = wait_until(
            || {
                got = busy_agent(&server, &ids);
                got.is_some()
            },
            SETTLE,
        )
        .await;
        assert!(seen, "call {n}: no agent was offered the call");
        order.push(got.unwrap_or_default());
        call.wait().await.assert_success(1);
        for id in ids {
            wait_agent_state(&server, id, "idle", SETTLE).await;
        }
    }
    assert_eq!(
        order,
        ["2003", "2001", "2002", "2003", "2001", "2002"],
        "distribution order (login order 2003, 2001, 2002)"
    );
    for p in phones {
        p.wait().await.assert_success(2);
    }
    assert_settled(
        &server,
        &[("2001", "idle"), ("2002", "idle"), ("2003", "idle")],
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_offer_is_cancelled_and_goes_to_the_next_agent() {
    if skip_without_sipp() {
        return;
    }
    let (p1, p2) = (free_port(), free_port());
    let toml = config(
        &[("2001", None), ("2002", None)],
        "ring_timeout_s = 1\nmax_missed_offers = 1",
        "",
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    // 2002 is idle longest, so it is offered the call first; its phone rings and never answers.
    register(addr, p2, "2002").await;
    wait_agent_state(&server, "2002", "idle", SETTLE).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    register(addr, p1, "2001").await;
    wait_agent_state(&server, "2001", "idle", SETTLE).await;

    let mut silent = uas(&basic_scenario("agent_ring_no_answer"), p2, 1).spawn();
    silent.ready().await;
    let mut answering = uas(&basic_scenario("agent_answer_wait_bye"), p1, 1).spawn();
    answering.ready().await;

    let started = Instant::now();
    let call = customer(&queue_scenario("customer_queued_call"), addr, 500).spawn();
    wait_agent_state(&server, "2002", "ringing", SETTLE).await;
    assert_eq!(server.agent_state("2001").as_deref(), Some("idle"));
    // Ring timeout 1 s: CANCEL to 2002 (its scenario needs it), then the offer moves to 2001.
    wait_agent_state(&server, "2001", "talking", SETTLE).await;
    let moved_after = started.elapsed();
    assert!(
        moved_after >= Duration::from_millis(900),
        "the offer moved to the next agent after {moved_after:?}, before the 1 s ring timeout"
    );
    assert_eq!(
        server.agent_state("2002").as_deref(),
        Some("not_ready"),
        "max_missed_offers = 1: the agent who missed the offer is not ready"
    );
    call.wait().await.assert_success(1);
    silent.wait().await.assert_success(1);
    answering.wait().await.assert_success(1);
    assert_settled(&server, &[("2001", "idle"), ("2002", "not_ready")]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_with_486_and_a_warning() {
    if skip_without_sipp() {
        return;
    }
    // Nobody logged in, but callers wait; one place in the queue.
    let toml = config(
        &[("2001", None)],
        "when_no_agents = \"wait\"\nmax_waiting = 1",
        "",
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);

    let first = customer(&queue_scenario("customer_queued_abandon"), addr, 3000).spawn();
    assert!(
        wait_until(|| queue_counts(&server).0 == 1, SETTLE).await,
        "the first caller never joined the queue"
    );
    let refused = customer(&queue_scenario("customer_queue_full_486"), addr, 0)
        .run()
        .await;
    let warning = logged(&sipp_log(&refused), "WARNING").unwrap_or_default();
    refused.assert_success(1);
    assert!(
        warning.contains(QUEUE_NAME) && warning.contains("full"),
        "Warning of the 486: {warning:?}"
    );
    assert_eq!(
        queue_counts(&server).0,
        1,
        "the refused caller never joined"
    );
    first.wait().await.assert_success(1);
    assert_settled(&server, &[("2001", "logged_out")]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_logged_in_agent_refuses_with_480_and_max_wait_without_overflow_ends_with_480() {
    if skip_without_sipp() {
        return;
    }
    // when_no_agents = refuse (the default): 2001 has the skill but never registers.
    let toml = config(&[("2001", None)], "", "", 9);
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    let refused = customer(&queue_scenario("customer_queue_no_agents_480"), addr, 0)
        .run()
        .await;
    let warning = logged(&sipp_log(&refused), "WARNING").unwrap_or_default();
    refused.assert_success(1);
    assert!(
        warning.contains(QUEUE_NAME),
        "Warning of the 480: {warning:?}"
    );
    assert_settled(&server, &[("2001", "logged_out")]).await;
    server.shutdown().await;

    // when_no_agents = wait, max_wait_s = 1, no overflow target: 180, then 480 after ~1 s.
    let toml = config(
        &[("2001", None)],
        "when_no_agents = \"wait\"\nmax_wait_s = 1",
        "",
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    let started = Instant::now();
    let expired = customer(&basic_scenario("customer_expect_480"), addr, 0).spawn();
    assert!(wait_until(|| queue_counts(&server).0 == 1, SETTLE).await);
    expired.wait().await.assert_success(1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "480 before max_wait_s"
    );
    assert_settled(&server, &[("2001", "logged_out")]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_overflows_to_the_ivr() {
    if skip_without_sipp() {
        return;
    }
    let ivr_port = free_port();
    let toml = config(
        &[("2001", None)],
        "when_no_agents = \"wait\"\nmax_wait_s = 1\noverflow = \"ivr:survey\"",
        &format!(
            "[[ivr]]\nname = \"survey\"\nnumber = \"7000\"\nuri = \"sip:survey@127.0.0.1:{ivr_port}\"\n"
        ),
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    let mut ivr = uas(&basic_scenario("agent_answer_wait_bye"), ivr_port, 1).spawn();
    ivr.ready().await;

    let started = Instant::now();
    let call = customer(&queue_scenario("customer_queued_call"), addr, 500).spawn();
    assert!(
        wait_until(|| queue_counts(&server).0 == 1, SETTLE).await,
        "the caller never joined the queue"
    );
    // The IVR answers only once max_wait_s has passed; the call has left the queue then.
    let out = call.wait().await;
    out.assert_success(1);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the call ended after {:?}: overflow before max_wait_s (1 s) + the 500 ms call",
        started.elapsed()
    );
    ivr.wait().await.assert_success(1);
    assert_settled(&server, &[("2001", "logged_out")]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_abandoning_while_queued_leaves_the_queue_at_once() {
    if skip_without_sipp() {
        return;
    }
    // One agent at a static contact, busy with a first customer while a second one waits.
    let port = free_port();
    let toml = config(
        &[("2001", Some(port))],
        "when_no_agents = \"wait\"\nring_timeout_s = 10",
        "",
        9,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    assert_eq!(server.agent_state("2001").as_deref(), Some("idle"));
    // The phone takes exactly one call: an offer of the abandoned call would fail its run.
    let mut phone = uas(&basic_scenario("agent_answer_wait_bye"), port, 1).spawn();
    phone.ready().await;

    let talking = customer(&queue_scenario("customer_queued_call"), addr, 3000).spawn();
    wait_agent_state(&server, "2001", "talking", SETTLE).await;
    assert_eq!(
        queue_counts(&server),
        (0, 0),
        "the answered call left the queue"
    );

    let waiting = customer(&queue_scenario("customer_queued_abandon"), addr, 1000).spawn();
    assert!(
        wait_until(|| queue_counts(&server).0 == 1, SETTLE).await,
        "the second caller never joined the queue"
    );
    let status = server.endpoint().queue_status();
    assert_eq!(status[0].offers_pending, 0, "the only agent is talking");
    waiting.wait().await.assert_success(1);
    // SIPp exits 500 ms after its ACK: the call must be out of the queue by then.
    assert_eq!(
        server.endpoint().queue_status()[0].waiting,
        0,
        "abandoned call still queued"
    );

    talking.wait().await.assert_success(1);
    phone.wait().await.assert_success(1);
    // The agent is free and nothing is offered to it: the abandoned call is gone.
    wait_agent_state(&server, "2001", "idle", SETTLE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_settled(&server, &[("2001", "idle")]).await;
    server.shutdown().await;
}

/// What the carrier saw of one agent call out.
struct Seen {
    ruri: String,
    from: String,
    pai: String,
}

/// Runs agent `agent` (on `port`) dialling `number`, answered by the carrier at `trunk_port`;
/// returns the Request-URI user, From URI and P-Asserted-Identity the carrier received.
async fn call_out(
    server: SocketAddr,
    trunk_port: u16,
    port: u16,
    agent: &str,
    number: &str,
) -> Seen {
    let mut trunk = uas(&queue_scenario("trunk_answer"), trunk_port, 1).spawn();
    trunk.ready().await;
    let out = agent_dials(
        &queue_scenario("agent_call_out"),
        server,
        port,
        agent,
        number,
    )
    .run()
    .await;
    let carrier = trunk.wait_at_most(Duration::from_secs(30)).await;
    let log = sipp_log(&carrier);
    out.assert_success(1);
    carrier.assert_success(1);
    Seen {
        ruri: logged(&log, "RURI")
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default(),
        from: logged(&log, "FROM").unwrap_or_default(),
        pai: logged(&log, "PAI").unwrap_or_default(),
    }
}

/// One agent call out and the identity the carrier must see.
struct CallOut {
    what: &'static str,
    number: &'static str,
    /// Regexp the From URI and the P-Asserted-Identity must match.
    identity: String,
    seen: Seen,
}

/// Agents 2001 (static contact) and 2002 (registered) dial a configured number without
/// forwarding, an ad-hoc number and a configured number with forwarding; the carrier at the
/// trunk's outbound address answers each. Ends with both agents idle and nothing left.
async fn external_calls() -> Vec<CallOut> {
    let trunk_port = free_port();
    let static_port = free_port();
    let registered_port = free_port();
    let extra = format!(
        r#"[[external_numbers]]
name = "partner"
number = "{PARTNER}"
user_number_forwarding = true

[[external_numbers]]
name = "supplier"
number = "{SUPPLIER}"
user_number_forwarding = false

[external]
adhoc_patterns = ["^00[1-9][0-9]{{6,14}}$"]
"#
    );
    let toml = config(
        &[("2001", Some(static_port)), ("2002", None)],
        "",
        &extra,
        trunk_port,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    register(addr, registered_port, "2002").await;
    wait_agent_state(&server, "2002", "idle", SETTLE).await;

    let access = format!(
        r"^<sip:{}@{}>$",
        regex::escape(ACCESS_NUMBER),
        regex::escape(DOMAIN)
    );
    let mut calls = Vec::new();
    // Configured number without forwarding, from the static contact's address.
    calls.push(CallOut {
        what: "configured number, forwarding off, static-contact agent",
        number: SUPPLIER,
        identity: access.clone(),
        seen: call_out(addr, trunk_port, static_port, "2001", SUPPLIER).await,
    });
    wait_agent_state(&server, "2001", "idle", SETTLE).await;
    // Ad-hoc number (matches the pattern), from the registered binding: never forwarded.
    calls.push(CallOut {
        what: "ad-hoc number, registered agent",
        number: ADHOC,
        identity: access.clone(),
        seen: call_out(addr, trunk_port, registered_port, "2002", ADHOC).await,
    });
    wait_agent_state(&server, "2002", "idle", SETTLE).await;
    // Configured number WITH user number forwarding, dialled by the agent itself: there is no
    // customer on this call whose number could be forwarded, so the access number is
    // presented (an agent's internal extension never reaches the carrier).
    calls.push(CallOut {
        what: "configured number, forwarding on, agent's own call",
        number: PARTNER,
        identity: access.clone(),
        seen: call_out(addr, trunk_port, static_port, "2001", PARTNER).await,
    });
    assert_settled(&server, &[("2001", "idle"), ("2002", "idle")]).await;
    server.shutdown().await;
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_dial_external_numbers_through_the_trunk_with_the_right_from() {
    if skip_without_sipp() {
        return;
    }
    for c in external_calls().await {
        assert_eq!(c.seen.ruri, c.number, "{}: Request-URI user", c.what);
        let re = regex::Regex::new(&c.identity).unwrap();
        assert!(
            re.is_match(&c.seen.from),
            "{}: From {:?} does not match {}",
            c.what,
            c.seen.from,
            c.identity
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_dial_external_numbers_with_p_asserted_identity() {
    if skip_without_sipp() {
        return;
    }
    for c in external_calls().await {
        let re = regex::Regex::new(&c.identity).unwrap();
        assert!(
            re.is_match(&c.seen.pai),
            "{}: P-Asserted-Identity {:?} does not match {}",
            c.what,
            c.seen.pai,
            c.identity
        );
    }
    // A transferred customer call: the customer's number with forwarding, else the access number.
    let customer_re = format!(r"^<sip:{}@", regex::escape(CUSTOMER_NUMBER));
    let access_re = format!(
        r"^<sip:{}@{}>$",
        regex::escape(ACCESS_NUMBER),
        regex::escape(DOMAIN)
    );
    for (number, expected) in [(PARTNER, &customer_re), (SUPPLIER, &access_re)] {
        let seen = transfer_to_external(number).await;
        let re = regex::Regex::new(expected).unwrap();
        assert!(
            re.is_match(&seen.pai),
            "transfer to {number}: P-Asserted-Identity {:?} does not match {expected}",
            seen.pai
        );
    }
}

/// A customer calls agent 2001 (static contact), who transfers the call (REFER, success type)
/// to external `number`; returns what the carrier saw. The customer's side checks that it is
/// re-INVITEd with the carrier's media (m=audio 7078).
async fn transfer_to_external(number: &str) -> Seen {
    let trunk_port = free_port();
    let agent_port = free_port();
    let extra = format!(
        r#"[[external_numbers]]
name = "partner"
number = "{PARTNER}"
user_number_forwarding = true

[[external_numbers]]
name = "supplier"
number = "{SUPPLIER}"
user_number_forwarding = false
"#
    );
    let toml = config(&[("2001", Some(agent_port))], "", &extra, trunk_port);
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);

    let mut trunk = uas(&queue_scenario("trunk_answer"), trunk_port, 1).spawn();
    trunk.ready().await;
    let mut agent = Sipp::new("sipp-scenarios/transfer/agent_refer_success.xml")
        .remote(addr)
        .local_port(agent_port)
        .service(number)
        .pause_ms(300)
        .timeout(SIPP_TIMEOUT)
        .spawn();
    agent.ready().await;
    let cust = customer(
        "sipp-scenarios/transfer/customer_transferred.xml",
        addr,
        1000,
    )
    .service("2001")
    .run()
    .await;
    let grace = Duration::from_secs(if cust.is_success(1) { 60 } else { 10 });
    let agent = agent.wait_at_most(grace).await;
    let carrier = trunk.wait_at_most(grace).await;
    let log = sipp_log(&carrier);
    cust.assert_success(1);
    agent.assert_success(1);
    carrier.assert_success(1);
    assert_settled(&server, &[("2001", "idle")]).await;
    server.shutdown().await;
    Seen {
        ruri: logged(&log, "RURI")
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default(),
        from: logged(&log, "FROM").unwrap_or_default(),
        pai: logged(&log, "PAI").unwrap_or_default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_external_number_forwards_the_customer_number_only_when_configured() {
    if skip_without_sipp() {
        return;
    }
    let customer_re = format!(r"^<sip:{}@", regex::escape(CUSTOMER_NUMBER));
    let access_re = format!(
        r"^<sip:{}@{}>$",
        regex::escape(ACCESS_NUMBER),
        regex::escape(DOMAIN)
    );
    for (number, expected) in [(PARTNER, &customer_re), (SUPPLIER, &access_re)] {
        let seen = transfer_to_external(number).await;
        assert_eq!(seen.ruri, number);
        let re = regex::Regex::new(expected).unwrap();
        assert!(
            re.is_match(&seen.from),
            "transfer to {number}: From {:?} does not match {expected}",
            seen.from
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_dialling_numbers_outside_the_dial_plan_get_403() {
    if skip_without_sipp() {
        return;
    }
    let trunk_port = free_port();
    let static_port = free_port();
    let registered_port = free_port();
    let extra = format!(
        r#"[[external_numbers]]
name = "partner"
number = "{PARTNER}"
user_number_forwarding = true

[external]
adhoc_patterns = ["^00[1-9][0-9]{{6,14}}$"]
"#
    );
    let toml = config(
        &[("2001", Some(static_port)), ("2002", None)],
        "",
        &extra,
        trunk_port,
    );
    let server = start_server(&toml).await;
    let addr = sip_addr(&server, Protocol::Udp);
    register(addr, registered_port, "2002").await;
    wait_agent_state(&server, "2002", "idle", SETTLE).await;

    // A carrier that must never be called: any INVITE reaching it makes it "succeed" a call.
    let mut trunk = uas(&queue_scenario("trunk_answer"), trunk_port, 1)
        .timeout(Duration::from_secs(5))
        .spawn();
    trunk.ready().await;

    // Premium-rate style, too short for the pattern, national format, `+` international,
    // the pattern's own edge (00 then 0).
    let refused = [
        ("2001", static_port, "0900123456"),
        ("2001", static_port, "0012345"),
        ("2002", registered_port, "+4930123456"),
        ("2002", registered_port, "0001234567890"),
    ];
    for (agent, port, number) in refused {
        let out = agent_dials(
            &queue_scenario("agent_call_refused_403"),
            addr,
            port,
            agent,
            number,
        )
        .run()
        .await;
        let warning = logged(&sipp_log(&out), "WARNING").unwrap_or_default();
        out.assert_success(1);
        assert!(
            warning.contains(number),
            "{agent} dialling {number}: Warning {warning:?} does not name the number"
        );
    }
    let carrier = trunk.wait().await;
    assert_eq!(
        carrier.successful.unwrap_or(0),
        0,
        "the carrier was called for a refused number"
    );
    assert_settled(&server, &[("2001", "idle"), ("2002", "idle")]).await;
    server.shutdown().await;
}
