//! The configuration and CLI contract of DESIGN §4, through the public API.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser as _;
use handover::cli::{check_config, Cli, Command};
use handover::config::{
    AgentHangupPolicy, Config, ConfigLoadError, ListenSpec, Protocol, Target, TransferType,
    WhenNoAgents,
};

/// DESIGN.md §4, verbatim.
const DESIGN_EXAMPLE: &str = r#"[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]   # also "udp:[::1]:5060"
domain = "handover.local"        # registrar domain and digest realm
t1_ms = 500
max_message_bytes = 65535

[registrar]
min_expires_s = 60
max_expires_s = 3600
nonce_ttl_s = 300

[http]
listen = "127.0.0.1:8080"
token = "change-me"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]           # who may send customer calls
outbound = "sip:127.0.0.1:5080"      # where external numbers are dialled
access_number = "+3215550000"        # presented when the customer's number is not forwarded

[[agents]]
id = "1001"                          # extension and digest user name
password = "pass1001"
skills = ["sales"]
# contact = "sip:1001@127.0.0.1:5091"   # optional static contact, for phones that don't register

[[queues]]
name = "sales"
number = "8000"
skill = "sales"
max_waiting = 20
max_wait_s = 120
ring_timeout_s = 15
overflow = "ivr:survey"              # optional target when max_wait_s passes

[[ivr]]
name = "survey"
number = "7000"
uri = "sip:survey@127.0.0.1:5090"

[[external_numbers]]
name = "partner"
number = "0049301234567"
user_number_forwarding = true

[external]
adhoc_patterns = ["^00[1-9][0-9]{6,14}$"]

[transfer]
default_blind = "release"            # type of a REFER without Replaces when nothing else says
prefixes = { success = "*1", release = "*2", conversation = "*3", hangup = "*4" }
agent_hangup_during_conversation = "continue"   # or "cancel"
wrap_up_s = 0

[cdr]
path = "cdr.jsonl"
"#;

/// What the benchmark script (bench/sut/handover.sh) writes, with its ports filled in.
const BENCH: &str = r#"[sip]
listen = ["udp:127.0.0.1:5070"]
domain = "bench.local"

[http]
listen = "127.0.0.1:5071"
token = "bench"

[[trunks]]
name = "sipp"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:5080"
access_number = "100"

[[agents]]
id = "2001"
password = "bench2001"
skills = ["bench"]
contact = "sip:2001@127.0.0.1:5080"

[cdr]
path = "/tmp/handover-bench-x-cdr.jsonl"
"#;

fn udp(addr: &str) -> ListenSpec {
    ListenSpec {
        protocol: Protocol::Udp,
        addr: addr.parse().unwrap(),
    }
}

fn tcp(addr: &str) -> ListenSpec {
    ListenSpec {
        protocol: Protocol::Tcp,
        addr: addr.parse().unwrap(),
    }
}

#[test]
fn design_example_is_accepted_as_written() {
    let c = Config::from_toml_str(DESIGN_EXAMPLE).unwrap();
    assert_eq!(
        c.sip.listen,
        vec![udp("127.0.0.1:5060"), tcp("127.0.0.1:5060")]
    );
    assert_eq!(c.sip.domain, "handover.local");
    assert_eq!(c.sip.timers().0, Duration::from_millis(500));
    assert_eq!(c.sip.max_message_bytes, 65535);
    assert_eq!(c.registrar.nonce_ttl(), Duration::from_secs(300));
    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.http.token.as_deref(), Some("change-me"));

    let carrier = c.trunk_for_source("127.0.0.1".parse().unwrap()).unwrap();
    assert_eq!(carrier.name, "carrier");
    assert_eq!(carrier.outbound.as_deref(), Some("sip:127.0.0.1:5080"));
    assert_eq!(carrier.access_number.as_deref(), Some("+3215550000"));
    assert!(c.trunk_for_source("192.0.2.1".parse().unwrap()).is_none());

    let agent = c.agent("1001").unwrap();
    assert_eq!(agent.password, "pass1001");
    assert!(agent.has_skill("sales"));
    assert_eq!(agent.contact, None);

    let sales = c.queue("sales").unwrap();
    assert_eq!(sales.number, "8000");
    assert_eq!(sales.max_waiting, 20);
    assert_eq!(sales.max_wait(), Duration::from_secs(120));
    assert_eq!(sales.ring_timeout(), Duration::from_secs(15));
    assert_eq!(sales.overflow, Some(Target::Ivr("survey".into())));
    assert_eq!(sales.when_no_agents, WhenNoAgents::Refuse);

    assert_eq!(c.ivr("survey").unwrap().uri, "sip:survey@127.0.0.1:5090");
    assert!(c.external_number("partner").unwrap().user_number_forwarding);
    assert!(c.external.matches_adhoc("00441234567"));
    assert!(!c.external.matches_adhoc("0123"));

    assert_eq!(c.transfer.default_blind, TransferType::Release);
    assert_eq!(c.transfer.prefixes.get(TransferType::Hangup), "*4");
    assert_eq!(
        c.transfer.agent_hangup_during_conversation,
        AgentHangupPolicy::Continue
    );
    assert_eq!(c.transfer.wrap_up(), Duration::ZERO);
    assert_eq!(
        c.cdr.path.as_deref(),
        Some(std::path::Path::new("cdr.jsonl"))
    );

    // Dial plan order over the example.
    assert_eq!(
        c.target_for_number("1001"),
        Some(Target::Agent("1001".into()))
    );
    assert_eq!(
        c.target_for_number("8000"),
        Some(Target::Queue("sales".into()))
    );
    assert_eq!(
        c.target_for_number("7000"),
        Some(Target::Ivr("survey".into()))
    );
    assert_eq!(
        c.target_for_number("0049301234567"),
        Some(Target::External("partner".into()))
    );
    assert_eq!(
        c.target_for_number("0033123456789"),
        Some(Target::Number("0033123456789".into()))
    );
    assert_eq!(c.target_for_number("5555"), None);
}

#[test]
fn embedded_default_serves_the_demo() {
    let c = Config::embedded_default();
    assert_eq!(
        c.sip.listen,
        vec![udp("127.0.0.1:5060"), tcp("127.0.0.1:5060")]
    );
    for id in ["1001", "1002", "1003"] {
        let a = c.agent(id).unwrap_or_else(|| panic!("agent {id}"));
        assert!(!a.password.is_empty());
        assert!(!a.skills.is_empty());
    }
    assert!(c.agents.iter().filter(|a| a.has_skill("sales")).count() >= 2);
    assert_eq!(c.queue("sales").unwrap().skill, "sales");
    assert_eq!(c.ivr("survey").unwrap().number, "7000");
    assert_eq!(
        c.external_number("partner").unwrap().number,
        "0049301234567"
    );
    assert!(c.outbound_trunk().is_some());
    // The embedded file documents the defaults it spells out: they must be the real ones.
    let minimal = Config::from_toml_str(
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"handover.local\"\n",
    )
    .unwrap();
    assert_eq!(c.sip.timers(), minimal.sip.timers());
    assert_eq!(c.sip.max_headers, minimal.sip.max_headers);
    assert_eq!(c.sip.tcp_idle_timeout(), minimal.sip.tcp_idle_timeout());
    assert_eq!(c.sip.max_calls, minimal.sip.max_calls);
    assert_eq!(c.sip.ring_timeout(), minimal.sip.ring_timeout());
    assert_eq!(c.registrar, minimal.registrar);
    assert_eq!(c.transfer, minimal.transfer);
    assert_eq!(c.cdr.flush_ms, minimal.cdr.flush_ms);
}

#[test]
fn unknown_field_is_rejected_with_line_and_field() {
    let src = DESIGN_EXAMPLE.replace("password = \"pass1001\"", "pasword = \"pass1001\"");
    let errs = Config::from_toml_str(&src).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.errors[0];
    assert_eq!(e.line, 24);
    assert_eq!(e.field, "agents[0].pasword");
    assert!(e.message.contains("unknown field"), "{}", e.message);
    assert!(errs
        .to_string()
        .starts_with("line 24: agents[0].pasword: unknown field"));
}

#[test]
fn several_semantic_errors_are_all_reported_with_lines() {
    let src = DESIGN_EXAMPLE
        .replace("\"tcp:127.0.0.1:5060\"", "\"tcp:localhost:5060\"") // line 2
        .replace("t1_ms = 500", "t1_ms = 0") // line 4
        .replace(
            "sources = [\"127.0.0.1/32\"]",
            "sources = [\"127.0.0.1/40\"]",
        ) // line 18
        .replace("overflow = \"ivr:survey\"", "overflow = \"ivr:nps\"") // line 35
        .replace("number = \"7000\"", "number = \"8000\"") // line 39
        .replace("\"^00[1-9][0-9]{6,14}$\"", "\"^00[1-9\""); // line 48
    let errs = Config::from_toml_str(&src).unwrap_err();
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (2, "sip.listen[1]"),
            (4, "sip.t1_ms"),
            (18, "trunks[0].sources[0]"),
            (35, "queues[0].overflow"),
            (39, "ivr[0].number"),
            (48, "external.adhoc_patterns[0]"),
        ]
    );
    for e in &errs {
        assert!(!e.message.is_empty());
    }
}

#[test]
fn benchmark_config_is_accepted() {
    let c = Config::from_toml_str(BENCH).unwrap();
    assert_eq!(c.sip.listen, vec![udp("127.0.0.1:5070")]);
    assert_eq!(c.http.listen.port(), 5071);
    let agent = c.agent("2001").unwrap();
    assert_eq!(agent.contact.as_deref(), Some("sip:2001@127.0.0.1:5080"));
    assert_eq!(
        c.trunk_for_source(IpAddr::from([127, 0, 0, 1]))
            .unwrap()
            .name,
        "sipp"
    );
    assert!(c.cdr.path.is_some());
    assert!(c.queues.is_empty() && c.ivr.is_empty() && c.external_numbers.is_empty());
}

#[test]
fn optional_sections_absent_give_defaults() {
    let c = Config::from_toml_str("[sip]\nlisten = [\"udp:[::1]:0\"]\ndomain = \"example.org\"\n")
        .unwrap();
    assert_eq!(c.sip.listen, vec![udp("[::1]:0")]);
    let (t1, t2, t4) = c.sip.timers();
    assert_eq!(
        (t1, t2, t4),
        (
            Duration::from_millis(500),
            Duration::from_secs(4),
            Duration::from_secs(5)
        )
    );
    assert_eq!(c.sip.max_message_bytes, 65535);
    assert_eq!(c.sip.max_headers, 256);
    assert_eq!(c.sip.max_tcp_connections, 4096);
    assert_eq!(c.sip.max_calls, 10_000);
    assert_eq!(c.sip.ring_timeout(), Duration::from_secs(30));
    assert!(c.sip.user_agent.starts_with("handover/"));
    assert_eq!(c.registrar.min_expires_s, 60);
    assert_eq!(c.registrar.max_expires_s, 3600);
    assert_eq!(c.registrar.default_expires_s, 3600);
    assert_eq!(c.registrar.max_contacts_per_aor, 5);
    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.http.token, None);
    assert!(c.trunks.is_empty());
    assert!(c.agents.is_empty());
    assert!(c.queues.is_empty());
    assert!(c.ivr.is_empty());
    assert!(c.external_numbers.is_empty());
    assert!(c.external.adhoc_patterns.is_empty());
    assert_eq!(c.transfer.default_blind, TransferType::Release);
    assert_eq!(
        c.transfer.split_prefix("*21001"),
        Some((TransferType::Release, "1001"))
    );
    assert_eq!(c.transfer.ring_timeout(), Duration::from_secs(30));
    assert_eq!(c.cdr.path, None);
    assert_eq!(c.cdr.flush_interval(), Duration::from_millis(100));
    assert!(c.trunk_for_source("127.0.0.1".parse().unwrap()).is_none());
}

#[test]
fn queue_defaults() {
    let c = Config::from_toml_str(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"d\"\n\
         [[queues]]\nname = \"support\"\nnumber = \"8001\"\nskill = \"support\"\n\
         [[ivr]]\nname = \"i\"\nnumber = \"7\"\nuri = \"sip:i@127.0.0.1\"\n",
    )
    .unwrap();
    let q = c.queue("support").unwrap();
    assert_eq!(q.max_waiting, 20);
    assert_eq!(q.max_wait_s, 120);
    assert_eq!(q.ring_timeout_s, 15);
    assert_eq!(q.overflow, None);
    assert_eq!(q.when_no_agents, WhenNoAgents::Refuse);
    assert_eq!(q.max_missed_offers, 1);
    assert_eq!(q.music_uri, None);
    assert_eq!(c.ivr("i").unwrap().max_waiting(), Duration::from_secs(600));
}

/// Writes `contents` to a file in a directory of its own (tests run in parallel).
fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "handover-config-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_config_ok_and_errors() {
    let good = temp_file("good.toml", DESIGN_EXAMPLE);
    let (code, out) = check_config(&good);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().last().unwrap().starts_with("ok: "), "{out}");
    assert!(out.contains("handover.local"));

    let src = DESIGN_EXAMPLE
        .replace("t1_ms = 500", "t1_ms = 0")
        .replace("skill = \"sales\"", "skill = \"\"");
    let bad = temp_file("bad.toml", &src);
    let (code, out) = check_config(&bad);
    assert_eq!(code, 1);
    let prefix = bad.display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{prefix}:4: sip.t1_ms: must be greater than 0"),
            format!("{prefix}:31: queues[0].skill: must not be empty"),
        ]
    );

    let (code, out) = check_config(&bad.with_file_name("missing.toml"));
    assert_eq!(code, 1);
    assert!(out.contains("cannot read"), "{out}");
    std::fs::remove_dir_all(good.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(bad.parent().unwrap()).unwrap();
}

#[test]
fn load_reports_file_and_lines() {
    let path = temp_file(
        "load.toml",
        "[sip]\nlisten = [\"udp:1.2.3.4\"]\ndomain = \"d\"\n",
    );
    match Config::load(&path) {
        Err(e @ ConfigLoadError::Invalid { .. }) => {
            assert!(e
                .to_string()
                .starts_with(&format!("{}:2: sip.listen[0]: ", path.display())));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn run_command_overrides_listen() {
    let path = temp_file("run.toml", BENCH);
    let cli = Cli::try_parse_from([
        "handover",
        "run",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "tcp:127.0.0.1:0",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    let c = args.load_config().unwrap();
    assert_eq!(c.sip.listen, vec![tcp("127.0.0.1:0")]);
    assert_eq!(c.sip.domain, "bench.local");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
