//! Validation tests: each check fails a config that breaks it, at the right line and field.

use super::validate::check_sip_uri;
use super::*;

const MIN: &str = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"d.local\"\n";

fn errors(src: &str) -> Vec<(usize, String, String)> {
    Config::from_toml_str(src)
        .expect_err("config should be rejected")
        .errors
        .into_iter()
        .map(|e| (e.line, e.field, e.message))
        .collect()
}

/// The (line, field) pairs of the errors of `src`.
fn at(src: &str) -> Vec<(usize, String)> {
    errors(src).into_iter().map(|(l, f, _)| (l, f)).collect()
}

fn with(extra: &str) -> String {
    format!("{MIN}{extra}")
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml_str(MIN).unwrap();
    assert_eq!(
        c.sip.timers(),
        (
            Duration::from_millis(500),
            Duration::from_millis(4000),
            Duration::from_millis(5000)
        )
    );
    assert_eq!(
        c.sip.user_agent,
        format!("handover/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c.registrar, RegistrarConfig::default());
    assert_eq!(c.http, HttpConfig::default());
    assert_eq!(c.transfer, TransferConfig::default());
    assert_eq!(c.cdr.path, None);
    assert!(c.trunks.is_empty() && c.agents.is_empty() && c.queues.is_empty());
}

#[test]
fn toml_syntax_error_has_its_line() {
    let errs = errors(&with("[registrar]\nmin_expires_s = = 3\n"));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, 5);
    assert!(!errs[0].2.contains('\n'));
}

#[test]
fn type_error_names_field() {
    assert_eq!(
        at(&with("[registrar]\nmin_expires_s = \"60\"\n")),
        vec![(5, "registrar.min_expires_s".to_string())]
    );
    assert_eq!(
        at(&with("[transfer]\ndefault_blind = \"blind\"\n")),
        vec![(5, "transfer.default_blind".to_string())]
    );
}

#[test]
fn missing_required_field_is_named() {
    let src = with("[[agents]]\nid = \"1\"\n");
    assert_eq!(at(&src), vec![(4, "agents[0].password".to_string())]);
    assert_eq!(
        at("[sip]\nlisten = []\n"),
        vec![(1, "sip.domain".to_string())]
    );
}

#[test]
fn unknown_fields_rejected_in_every_table() {
    for (table, line) in [
        ("[registrar]\n", 5),
        ("[http]\n", 5),
        ("[[trunks]]\nname = \"t\"\n", 6),
        ("[[agents]]\nid = \"1\"\npassword = \"p\"\n", 7),
        (
            "[[queues]]\nname = \"q\"\nnumber = \"1\"\nskill = \"s\"\n",
            8,
        ),
        (
            "[[ivr]]\nname = \"i\"\nnumber = \"1\"\nuri = \"sip:i@h\"\n",
            8,
        ),
        ("[[external_numbers]]\nname = \"e\"\nnumber = \"1\"\n", 7),
        ("[external]\n", 5),
        ("[transfer]\n", 5),
        ("[transfer.prefixes]\n", 5),
        ("[cdr]\n", 5),
    ] {
        let src = with(&format!("{table}bogus = 1\n"));
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{table}");
        assert_eq!(errs[0].0, line, "{table}");
        assert!(errs[0].1.ends_with("bogus"), "{table}: {}", errs[0].1);
    }
    assert_eq!(at(&with("[extra]\n")), vec![(4, "extra".to_string())]);
    assert_eq!(
        at(&with("extra = { a = 1 }\n")),
        vec![(4, "sip.extra".to_string())]
    );
    assert_eq!(
        at(&format!("extra = {{ a = 1 }}\n{MIN}")),
        vec![(1, "extra".to_string())]
    );
    assert_eq!(
        at(&with("[http]\nhttp = 1\n")),
        vec![(5, "http.http".to_string())]
    );
    assert_eq!(
        at("[sip]\nlisten = []\ndomain = \"d\"\nfoo = 1\n"),
        vec![(4, "sip.foo".to_string())]
    );
}

#[test]
fn sip_section_checks() {
    let src =
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"sctp:1.2.3.4:5\", \"udp:127.0.0.1:5060\"]\n\
               domain = \"bad domain\"\nt1_ms = 0\nt2_ms = 100\nt4_ms = 0\n\
               max_message_bytes = 10\nmax_headers = 5\nmax_calls = 0\n";
    let fields: Vec<String> = at(src).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        fields,
        [
            "sip.listen[1]",
            "sip.listen[2]",
            "sip.domain",
            "sip.t1_ms",
            "sip.t4_ms",
            "sip.max_message_bytes",
            "sip.max_headers",
            "sip.max_calls"
        ]
    );
    assert_eq!(
        at("[sip]\nlisten = []\ndomain = \"\"\n"),
        vec![(2, "sip.listen".to_string()), (3, "sip.domain".to_string())]
    );
    let t = at("[sip]\nlisten = [\"tcp:[::1]:5060\"]\ndomain = \"d\"\nt1_ms = 5000\n");
    assert_eq!(t, vec![(1, "sip.t2_ms".to_string())]);
}

#[test]
fn registrar_and_http_checks() {
    let src = with(
        "[registrar]\nmin_expires_s = 100\nmax_expires_s = 3600\ndefault_expires_s = 50\n\
         [http]\nlisten = \"0.0.0.0:8080\"\n",
    );
    assert_eq!(
        at(&src),
        vec![
            (7, "registrar.default_expires_s".to_string()),
            (8, "http.token".to_string())
        ]
    );
    assert_eq!(
        at(&with(
            "[registrar]\nmin_expires_s = 100\nmax_expires_s = 10\n"
        )),
        vec![(6, "registrar.max_expires_s".to_string())]
    );
    assert_eq!(
        at(&with("[http]\nlisten = \"localhost:80\"\ntoken = \"\"\n")),
        vec![
            (5, "http.listen".to_string()),
            (6, "http.token".to_string())
        ]
    );
    let c = Config::from_toml_str(&with("[http]\nlisten = \"[::1]:0\"\n")).unwrap();
    assert_eq!(c.http.listen, "[::1]:0".parse().unwrap());
}

#[test]
fn trunk_checks_and_lookup() {
    let src = with(
        "[[trunks]]\nname = \"a\"\nsources = [\"10.0.0.0/8\", \"::1\"]\n\
         [[trunks]]\nname = \"b\"\nsources = [\"127.0.0.1/32\", \"nonsense\"]\noutbound = \"http://x\"\n\
         [[trunks]]\nname = \"a\"\n",
    );
    assert_eq!(
        at(&src),
        vec![
            (9, "trunks[1].sources[1]".to_string()),
            (10, "trunks[1].outbound".to_string()),
            (11, "trunks[2].sources".to_string()),
            (12, "trunks[2].name".to_string()),
        ]
    );
    let c = Config::from_toml_str(&with(
        "[[trunks]]\nname = \"a\"\nsources = [\"10.0.0.0/8\", \"::1\"]\n\
         [[trunks]]\nname = \"b\"\nsources = [\"127.0.0.1\"]\noutbound = \"sip:gw.example:5080;transport=tcp\"\n",
    ))
    .unwrap();
    let name = |ip: &str| {
        c.trunk_for_source(ip.parse().unwrap())
            .map(|t| t.name.as_str())
    };
    assert_eq!(name("10.9.8.7"), Some("a"));
    assert_eq!(name("::1"), Some("a"));
    assert_eq!(name("127.0.0.1"), Some("b"));
    assert_eq!(name("192.0.2.1"), None);
    assert_eq!(c.outbound_trunk().map(|t| t.name.as_str()), Some("b"));
}

#[test]
fn agent_checks() {
    let src = with(
        "[[agents]]\nid = \"10 01\"\npassword = \"\"\nskills = [\"\"]\ncontact = \"1001@host\"\ndisplay_name = \"A \\\"B\\\"\"\n",
    );
    let fields: Vec<String> = at(&src).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        fields,
        [
            "agents[0].id",
            "agents[0].password",
            "agents[0].skills[0]",
            "agents[0].contact",
            "agents[0].display_name"
        ]
    );
}

#[test]
fn agents_are_found_by_their_static_contact_address() {
    let agent = |id: &str, contact: &str| {
        format!("[[agents]]\nid = \"{id}\"\npassword = \"pw\"\ncontact = \"{contact}\"\n")
    };
    let src = with(
        &[
            agent("1001", "sip:1001@127.0.0.1:5091"),
            agent("1002", "sip:1002@127.0.0.1:5091;transport=tcp"),
            agent("1003", "sip:1003@[::1]"),
            agent("1004", "sip:1004@phone.example.com:5094"),
        ]
        .concat(),
    );
    let c = Config::from_toml_str(&src).unwrap();
    let found = |addr: &str| {
        c.agent_at_static_contact(addr.parse().unwrap())
            .map(|a| a.id.as_str())
    };
    // Two agents at one address: the first configured wins.
    assert_eq!(found("127.0.0.1:5091"), Some("1001"));
    assert_eq!(found("[::1]:5060"), Some("1003"));
    assert_eq!(found("127.0.0.1:5092"), None);
    // A host name is not an address a request can come from.
    assert_eq!(c.static_contacts.len(), 2);
    // Where calls to each agent go, derived once from the contact.
    let dest = |id: &str| {
        c.agent(id)
            .unwrap()
            .contact_destination
            .map(|d| (d.protocol, d.addr.to_string()))
    };
    use crate::transport::Protocol;
    assert_eq!(dest("1001"), Some((Protocol::Udp, "127.0.0.1:5091".into())));
    assert_eq!(dest("1002"), Some((Protocol::Tcp, "127.0.0.1:5091".into())));
    assert_eq!(dest("1003"), Some((Protocol::Udp, "[::1]:5060".into())));
    assert_eq!(dest("1004"), None);
    // It is not a config key.
    assert!(Config::from_toml_str(&with(
        "[[agents]]\nid = \"9\"\npassword = \"p\"\ncontact_destination = \"x\"\n"
    ))
    .is_err());
}

#[test]
fn agents_are_found_by_id_among_many() {
    let roster: String = (0..300)
        .map(|i| format!("[[agents]]\nid = \"{}\"\npassword = \"pw\"\n", 3000 + i))
        .collect();
    let c = Config::from_toml_str(&with(&roster)).unwrap();
    for id in ["3000", "3123", "3299"] {
        assert_eq!(c.agent(id).map(|a| a.id.as_str()), Some(id));
    }
    for unknown in ["2999", "3300", "", "3000 "] {
        assert!(c.agent(unknown).is_none(), "{unknown:?}");
    }
    assert_eq!(
        c.target_for_number("3123"),
        Some(Target::Agent("3123".into()))
    );
}

#[test]
fn numbers_are_one_namespace() {
    let src = with(
        "[[agents]]\nid = \"100\"\npassword = \"p\"\n\
         [[queues]]\nname = \"q\"\nnumber = \"100\"\nskill = \"s\"\n\
         [[ivr]]\nname = \"q\"\nnumber = \"200\"\nuri = \"sip:ivr@127.0.0.1\"\n\
         [[ivr]]\nname = \"q\"\nnumber = \"200\"\nuri = \"sip:ivr@127.0.0.1\"\n",
    );
    let errs = errors(&src);
    let fields: Vec<&str> = errs.iter().map(|(_, f, _)| f.as_str()).collect();
    assert_eq!(fields, ["queues[0].number", "ivr[1].name", "ivr[1].number"]);
    assert!(errs[0].2.contains("agents[0].id"), "{}", errs[0].2);
}

#[test]
fn overflow_targets_must_exist_and_not_loop() {
    let q = |name: &str, number: &str, overflow: &str| {
        format!("[[queues]]\nname = \"{name}\"\nnumber = \"{number}\"\nskill = \"s\"\noverflow = \"{overflow}\"\n")
    };
    let src = with(&format!(
        "{}{}{}{}{}",
        q("a", "1", "queue:b"),
        q("b", "2", "queue:a"),
        q("c", "3", "ivr:nope"),
        q("d", "4", "bogus"),
        q("e", "5", "number:12345"),
    ));
    let errs = errors(&src);
    let got: Vec<(&str, &str)> = errs
        .iter()
        .map(|(_, f, m)| (f.as_str(), m.as_str()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, "queues[0].overflow");
    assert!(got[0].1.contains("a → b → a"), "{}", got[0].1);
    assert_eq!(got[1].0, "queues[2].overflow");
    assert_eq!(got[2].0, "queues[3].overflow");
    assert_eq!(got[3].0, "queues[4].overflow");
    assert!(got[3].1.contains("adhoc_patterns"));
    assert_eq!(
        at(&with(&q("a", "1", "queue:a"))),
        vec![(8, "queues[0].overflow".to_string())]
    );
}

#[test]
fn external_numbers_need_an_outbound_trunk_and_access_number() {
    let ext = "[[external_numbers]]\nname = \"p\"\nnumber = \"0049\"\n";
    assert_eq!(at(&with(ext)), vec![(4, "external_numbers[0]".to_string())]);
    let trunk =
        "[[trunks]]\nname = \"t\"\nsources = [\"127.0.0.1\"]\noutbound = \"sip:127.0.0.1:5080\"\n";
    assert_eq!(
        at(&with(&format!("{trunk}{ext}"))),
        vec![(4, "trunks[0].access_number".to_string())]
    );
    let fwd =
        "[[external_numbers]]\nname = \"p\"\nnumber = \"0049\"\nuser_number_forwarding = true\n";
    let c = Config::from_toml_str(&with(&format!("{trunk}{fwd}"))).unwrap();
    assert_eq!(
        c.target_for_number("0049"),
        Some(Target::External("p".into()))
    );
}

#[test]
fn default_transfer_rules() {
    let trunk = "[[trunks]]\nname = \"t\"\nsources = [\"127.0.0.1\"]\noutbound = \"sip:h\"\naccess_number = \"1\"\n";
    let src = with(&format!(
        "{trunk}[[external_numbers]]\nname = \"f\"\nnumber = \"01\"\nuser_number_forwarding = true\ndefault_transfer = \"release\"\n\
         [[external_numbers]]\nname = \"n\"\nnumber = \"02\"\ndefault_transfer = \"hangup\"\n\
         [[external_numbers]]\nname = \"s\"\nnumber = \"04\"\ndefault_transfer = \"success\"\n\
         [[queues]]\nname = \"q\"\nnumber = \"03\"\nskill = \"s\"\ndefault_transfer = \"hangup\"\n"
    ));
    let fields: Vec<String> = at(&src).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        fields,
        [
            "external_numbers[0].default_transfer",
            "external_numbers[1].default_transfer",
            "queues[0].default_transfer"
        ]
    );
}

#[test]
fn adhoc_patterns_compile() {
    let src = with("[external]\nadhoc_patterns = [\"^0[0-9]+$\", \"(unclosed\"]\n");
    let errs = errors(&src);
    assert!(errs.iter().any(|(l, f, m)| *l == 5
        && f == "external.adhoc_patterns[1]"
        && m.starts_with("invalid regex")));
}

#[test]
fn prefixes_distinct_unambiguous_and_not_numbers() {
    let src = with(
        "[transfer]\nprefixes = { success = \"*1\", release = \"*1\", conversation = \"*\", hangup = \"\" }\n",
    );
    let fields: Vec<String> = at(&src).into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        fields,
        [
            "transfer.prefixes.release",
            "transfer.prefixes.conversation",
            "transfer.prefixes.hangup"
        ]
    );
    let src = with(
        "[[agents]]\nid = \"91001\"\npassword = \"p\"\n[transfer.prefixes]\nsuccess = \"9\"\n",
    );
    assert_eq!(at(&src), vec![(8, "transfer.prefixes.success".to_string())]);
    let c = Config::from_toml_str(MIN).unwrap();
    assert_eq!(
        c.transfer.split_prefix("*31001"),
        Some((TransferType::Conversation, "1001"))
    );
    assert_eq!(c.transfer.split_prefix("1001"), None);
}

#[test]
fn cdr_checks() {
    assert_eq!(
        at(&with("[cdr]\npath = \"\"\nflush_ms = 0\n")),
        vec![(5, "cdr.path".to_string()), (6, "cdr.flush_ms".to_string())]
    );
    let c = Config::from_toml_str(&with("[cdr]\npath = \"x.jsonl\"\n")).unwrap();
    assert_eq!(c.cdr.path.as_deref(), Some(std::path::Path::new("x.jsonl")));
    assert_eq!(c.cdr.flush_interval(), Duration::from_millis(100));
}

#[test]
fn sip_uri_check() {
    for ok in [
        "sip:127.0.0.1:5080",
        "sip:survey@127.0.0.1:5090",
        "SIPS:gw.example.com",
        "sip:u@[::1]:5060;transport=tcp",
        "sip:h?Subject=x",
    ] {
        assert_eq!(check_sip_uri(ok), Ok(()), "{ok}");
    }
    for bad in [
        "tel:+123",
        "sip:",
        "sip:user@",
        "sip:h:99999",
        "sip:h:0",
        "sip:[::1",
        "sip:[zz]:5",
        "sip:a b",
        "127.0.0.1:5080",
    ] {
        assert!(check_sip_uri(bad).is_err(), "{bad}");
    }
}

#[test]
fn dial_plan_order_and_warnings() {
    let src = with(
        "[[agents]]\nid = \"1001\"\npassword = \"p\"\nskills = [\"a\"]\n\
         [[queues]]\nname = \"q\"\nnumber = \"8000\"\nskill = \"b\"\n\
         [[ivr]]\nname = \"i\"\nnumber = \"7000\"\nuri = \"sip:i@127.0.0.1\"\n",
    );
    let c = Config::from_toml_str(&src).unwrap();
    assert_eq!(
        c.target_for_number("1001"),
        Some(Target::Agent("1001".into()))
    );
    assert_eq!(c.target_for_number("8000"), Some(Target::Queue("q".into())));
    assert_eq!(c.target_for_number("7000"), Some(Target::Ivr("i".into())));
    assert_eq!(c.target_for_number("9"), None);
    let w = c.warnings();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].field, "queues[0].skill");
}

#[test]
fn errors_display_one_per_line() {
    let e = Config::from_toml_str("[sip]\nlisten = []\ndomain = \"\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: sip.listen: at least one listen entry is required\nline 3: sip.domain: must not be empty"
    );
    assert_eq!(
        e.render_with_prefix("f.toml"),
        "f.toml:2: sip.listen: at least one listen entry is required\nf.toml:3: sip.domain: must not be empty\n"
    );
}

#[test]
fn session_timer_and_fallback_checks() {
    let c = Config::from_toml_str(MIN).unwrap();
    assert_eq!((c.sip.session_expires_s, c.sip.min_se_s), (1800, 90));
    assert_eq!(c.transfer.fallback_target(), None);
    let src = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"d\"\n\
               session_expires_s = 60\nmin_se_s = 90\n";
    assert_eq!(at(src), vec![(4, "sip.session_expires_s".to_string())]);
    let off = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"d\"\nsession_expires_s = 0\n";
    assert_eq!(Config::from_toml_str(off).unwrap().sip.session_expires_s, 0);
    let fields: Vec<String> = errors(&with("[transfer]\nfallback = \"queue:nope\"\n"))
        .into_iter()
        .map(|(_, f, m)| format!("{f}: {m}"))
        .collect();
    assert_eq!(
        fields,
        ["transfer.fallback: `queue:nope` is not configured"]
    );
    assert_eq!(
        errors(&with("[transfer]\nfallback = \"nowhere\"\n"))[0].1,
        "transfer.fallback"
    );
    let ok = with(
        "[[queues]]\nname = \"sales\"\nnumber = \"8000\"\nskill = \"s\"\n\
         [transfer]\nfallback = \"queue:sales\"\n",
    );
    assert_eq!(
        Config::from_toml_str(&ok)
            .unwrap()
            .transfer
            .fallback_target(),
        Some(Target::Queue("sales".into()))
    );
}
