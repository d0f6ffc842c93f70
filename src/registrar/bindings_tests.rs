use super::*;

const UDP_CONTACT: &str = "sip:1001@10.0.0.5:5070;ob";
const SRC: &str = "10.0.0.5:5070";

fn limits() -> Limits {
    Limits {
        min_expires: 60,
        max_expires: 3600,
        default_expires: 1800,
        max_contacts: 3,
    }
}

fn req(
    contacts: Contacts,
    header_expires: Option<u32>,
    call_id: &str,
    cseq: u32,
) -> RegisterRequest {
    RegisterRequest {
        contacts,
        header_expires,
        call_id: call_id.into(),
        cseq,
        source: Some(SRC.parse().unwrap()),
        transport: Transport::Udp,
        connection_id: None,
    }
}

fn one(uri: &str) -> Contacts {
    Contacts::List(vec![ContactSpec::new(uri)])
}

fn with_expires(uri: &str, e: u32) -> ContactSpec {
    ContactSpec {
        expires: Some(e),
        ..ContactSpec::new(uri)
    }
}

fn uris(b: &Bindings, aor: &str, now: Instant) -> Vec<String> {
    b.lookup(aor, now).iter().map(|b| b.uri.clone()).collect()
}

#[test]
fn first_register_logs_in_and_lists_contact_with_expires() {
    let now = Instant::now();
    let mut b = Bindings::new();
    // Contact: <sip:1001@10.0.0.5:5070;ob>  Expires: 3600
    let out = b
        .apply_register(
            "1001",
            req(one(&format!("<{UDP_CONTACT}>")), Some(3600), "c1", 1),
            limits(),
            now,
        )
        .unwrap();
    assert_eq!(out.transition, Transition::Login);
    assert_eq!(out.contacts.len(), 1);
    assert_eq!(
        out.contacts[0].header_value(),
        "<sip:1001@10.0.0.5:5070;ob>;expires=3600"
    );
    assert!(b.is_registered("1001", now));
    assert_eq!(b.count(), 1);
    let found = b.lookup("1001", now);
    assert_eq!(found[0].source, Some(SRC.parse().unwrap()));
    assert_eq!(found[0].transport, Transport::Udp);
    assert_eq!(found[0].call_id, "c1");
    assert_eq!(found[0].cseq, 1);
}

#[test]
fn refresh_same_call_id_higher_cseq_updates() {
    let t0 = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(300), "c1", 1),
        limits(),
        t0,
    )
    .unwrap();
    let t1 = t0 + Duration::from_secs(200);
    let out = b
        .apply_register(
            "1001",
            req(one(UDP_CONTACT), Some(300), "c1", 2),
            limits(),
            t1,
        )
        .unwrap();
    assert_eq!(out.transition, Transition::Unchanged);
    assert_eq!(out.contacts[0].expires, 300);
    assert_eq!(b.count(), 1);
    assert_eq!(b.lookup("1001", t1)[0].cseq, 2);
    assert_eq!(b.next_expiry(), Some(t1 + Duration::from_secs(300)));
}

#[test]
fn same_call_id_cseq_not_higher_is_out_of_order_and_changes_nothing() {
    let now = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(300), "c1", 5),
        limits(),
        now,
    )
    .unwrap();
    for cseq in [5, 4] {
        let err = b
            .apply_register(
                "1001",
                req(one(UDP_CONTACT), Some(0), "c1", cseq),
                limits(),
                now,
            )
            .unwrap_err();
        assert_eq!(err, RegisterError::OutOfOrder);
        assert_eq!(err.status_code(), 500);
    }
    assert!(b.is_registered("1001", now));
}

#[test]
fn other_call_id_replaces_even_with_lower_cseq() {
    let now = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(300), "c1", 9),
        limits(),
        now,
    )
    .unwrap();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(600), "c2", 1),
        limits(),
        now,
    )
    .unwrap();
    let found = b.lookup("1001", now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].call_id, "c2");
    assert_eq!(found[0].expires_in(now), 600);
}

#[test]
fn expires_param_beats_header_then_default() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let contacts = Contacts::List(vec![
        with_expires("sip:a@h1", 120),
        ContactSpec::new("sip:a@h2"),
    ]);
    let out = b
        .apply_register("a", req(contacts, Some(900), "c", 1), limits(), now)
        .unwrap();
    let e: Vec<(String, u32)> = out
        .contacts
        .iter()
        .map(|c| (c.uri.clone(), c.expires))
        .collect();
    assert_eq!(e, [("sip:a@h1".into(), 120), ("sip:a@h2".into(), 900)]);
    let out = b
        .apply_register("b", req(one("sip:b@h"), None, "c", 1), limits(), now)
        .unwrap();
    assert_eq!(out.contacts[0].expires, 1800);
}

#[test]
fn zero_removes_and_last_removal_logs_out() {
    let now = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(300), "c1", 1),
        limits(),
        now,
    )
    .unwrap();
    // Unregistering a contact that is not bound is a no-op.
    let out = b
        .apply_register(
            "1001",
            req(one("sip:1001@10.9.9.9"), Some(0), "c1", 2),
            limits(),
            now,
        )
        .unwrap();
    assert_eq!(out.transition, Transition::Unchanged);
    assert_eq!(out.contacts.len(), 1);
    // Per-contact expires=0 beats a non-zero header.
    let contacts = Contacts::List(vec![with_expires(UDP_CONTACT, 0)]);
    let out = b
        .apply_register("1001", req(contacts, Some(300), "c1", 3), limits(), now)
        .unwrap();
    assert_eq!(out.transition, Transition::Logout);
    assert!(out.contacts.is_empty());
    assert_eq!(b.count(), 0);
    assert_eq!(b.aor_count(), 0);
    assert_eq!(b.next_expiry(), None);
}

#[test]
fn too_brief_interval_is_423_and_atomic() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let contacts = Contacts::List(vec![
        with_expires("sip:a@good", 600),
        with_expires("sip:a@brief", 30),
    ]);
    let err = b
        .apply_register("a", req(contacts, None, "c", 1), limits(), now)
        .unwrap_err();
    assert_eq!(err, RegisterError::IntervalTooBrief { min_expires: 60 });
    assert_eq!(err.status_code(), 423);
    assert_eq!(b.count(), 0, "nothing of a failed request is committed");
    // Exactly the minimum is fine.
    b.apply_register("a", req(one("sip:a@h"), Some(60), "c", 2), limits(), now)
        .unwrap();
}

#[test]
fn min_expires_is_capped_at_one_hour() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let l = Limits {
        min_expires: 7200,
        max_expires: 10_000,
        ..limits()
    };
    let err = b
        .apply_register("a", req(one("sip:a@h"), Some(1800), "c", 1), l, now)
        .unwrap_err();
    assert_eq!(err, RegisterError::IntervalTooBrief { min_expires: 3600 });
    let out = b
        .apply_register("a", req(one("sip:a@h"), Some(3600), "c", 2), l, now)
        .unwrap();
    assert_eq!(out.contacts[0].expires, 3600);
}

#[test]
fn above_max_is_clamped() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let out = b
        .apply_register(
            "a",
            req(one("sip:a@h"), Some(u32::MAX), "c", 1),
            limits(),
            now,
        )
        .unwrap();
    assert_eq!(out.contacts[0].expires, 3600);
}

#[test]
fn wildcard_rules() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let two = Contacts::List(vec![
        ContactSpec::new("sip:a@h1"),
        ContactSpec::new("sip:a@h2"),
    ]);
    b.apply_register("a", req(two, Some(300), "c", 1), limits(), now)
        .unwrap();
    // Contact: * needs Expires: 0.
    for e in [None, Some(300)] {
        let err = b
            .apply_register("a", req(Contacts::Wildcard, e, "c", 2), limits(), now)
            .unwrap_err();
        assert_eq!(err, RegisterError::InvalidWildcard);
        assert_eq!(err.status_code(), 400);
    }
    // `*` mixed with other contacts.
    let mixed = Contacts::List(vec![ContactSpec::new("*"), ContactSpec::new("sip:a@h3")]);
    assert_eq!(
        b.apply_register("a", req(mixed, Some(0), "c", 2), limits(), now),
        Err(RegisterError::InvalidWildcard)
    );
    // Same Call-ID, CSeq not higher.
    assert_eq!(
        b.apply_register("a", req(Contacts::Wildcard, Some(0), "c", 1), limits(), now),
        Err(RegisterError::OutOfOrder)
    );
    assert_eq!(b.count(), 2);
    let out = b
        .apply_register(
            "a",
            req(Contacts::Wildcard, Some(0), "other", 1),
            limits(),
            now,
        )
        .unwrap();
    assert_eq!(out.transition, Transition::Logout);
    assert_eq!(b.count(), 0);
}

#[test]
fn uri_comparison_is_loose_rfc3261() {
    assert!(uri_equivalent(
        "sip:1001@10.0.0.5:5070;ob",
        "SIP:1001@10.0.0.5:5070"
    ));
    assert!(uri_equivalent(
        "<sip:1001@Host.Example>",
        "sip:1001@host.example;line=x"
    ));
    assert!(uri_equivalent(
        "sip:1001@h;transport=TCP",
        "sip:1001@H;ob;transport=tcp"
    ));
    assert!(!uri_equivalent("sip:1001@h;transport=tcp", "sip:1001@h"));
    assert!(!uri_equivalent("sip:Alice@h", "sip:alice@h"));
    assert!(!uri_equivalent("sip:1001@h", "sip:1001@h:5060"));
    assert!(!uri_equivalent("sip:1001@h", "sips:1001@h"));
    assert!(uri_equivalent("sip:h:5060?x=y", "sip:h:5060"));

    let now = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one("sip:1001@HOST:5070;ob"), Some(300), "c1", 1),
        limits(),
        now,
    )
    .unwrap();
    b.apply_register(
        "1001",
        req(one("<sip:1001@host:5070>"), Some(300), "c1", 2),
        limits(),
        now,
    )
    .unwrap();
    assert_eq!(b.count(), 1);
    assert_eq!(uris(&b, "1001", now), ["sip:1001@host:5070"]);
}

#[test]
fn same_instance_replaces_binding_from_new_tcp_port() {
    // Contact: <sip:1001@10.0.0.5:40001;transport=tcp;ob>;reg-id=1;
    //          +sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000abcd>"
    let now = Instant::now();
    let mut b = Bindings::new();
    let inst = "<urn:uuid:00000000-0000-0000-0000-00000000abcd>";
    let spec = |port: u16, reg_id: u32| ContactSpec {
        instance: Some(inst.into()),
        reg_id: Some(reg_id),
        ..ContactSpec::new(format!("sip:1001@10.0.0.5:{port};transport=tcp;ob"))
    };
    let tcp = |c: Contacts, call_id: &str, conn: u64| RegisterRequest {
        transport: Transport::Tcp,
        connection_id: Some(conn),
        source: Some(SocketAddr::from(([10, 0, 0, 5], 40001))),
        ..req(c, Some(300), call_id, 1)
    };
    b.apply_register(
        "1001",
        tcp(Contacts::List(vec![spec(40001, 1)]), "boot1", 7),
        limits(),
        now,
    )
    .unwrap();
    // The phone restarts: new Call-ID, new ephemeral port, new connection, same instance.
    let out = b
        .apply_register(
            "1001",
            tcp(Contacts::List(vec![spec(40002, 1)]), "boot2", 8),
            limits(),
            now,
        )
        .unwrap();
    assert_eq!(out.transition, Transition::Unchanged);
    let found = b.lookup("1001", now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].uri, "sip:1001@10.0.0.5:40002;transport=tcp;ob");
    assert_eq!(found[0].connection_id, Some(8));
    assert_eq!(found[0].transport, Transport::Tcp);
    assert!(found[0].transport.is_connection_oriented());
    // A second flow (reg-id 2) is a separate binding.
    b.apply_register(
        "1001",
        tcp(Contacts::List(vec![spec(40003, 2)]), "boot2b", 9),
        limits(),
        now,
    )
    .unwrap();
    assert_eq!(b.count(), 2);
}

#[test]
fn contact_named_twice_in_one_request_is_not_out_of_order() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let twice = Contacts::List(vec![
        with_expires("sip:a@h", 100),
        with_expires("sip:a@h", 200),
    ]);
    let out = b
        .apply_register("a", req(twice, None, "c", 1), limits(), now)
        .unwrap();
    assert_eq!(out.contacts.len(), 1);
    assert_eq!(out.contacts[0].expires, 200);
}

#[test]
fn max_contacts_evicts_soonest_expiring_or_refuses() {
    let now = Instant::now();
    let mut b = Bindings::new();
    for (i, e) in [(1, 900), (2, 300), (3, 600)] {
        b.apply_register(
            "a",
            req(one(&format!("sip:a@h{i}")), Some(e), &format!("c{i}"), 1),
            limits(),
            now,
        )
        .unwrap();
    }
    let out = b
        .apply_register("a", req(one("sip:a@h4"), Some(900), "c4", 1), limits(), now)
        .unwrap();
    assert_eq!(out.evicted, ["sip:a@h2"]);
    assert_eq!(b.count(), 3);
    assert!(!uris(&b, "a", now).contains(&"sip:a@h2".to_string()));
    // One request asking for more than max_contacts on its own is refused, atomically.
    let many = Contacts::List(
        (5..9)
            .map(|i| ContactSpec::new(format!("sip:a@h{i}")))
            .collect(),
    );
    let err = b
        .apply_register("a", req(many, Some(300), "c5", 1), limits(), now)
        .unwrap_err();
    assert_eq!(err, RegisterError::TooManyContacts { max: 3 });
    assert_eq!(err.status_code(), 403);
    assert_eq!(b.count(), 3);
    let huge = Contacts::List(
        (0..=MAX_CONTACTS_PER_REQUEST)
            .map(|i| with_expires(&format!("sip:a@x{i}"), 0))
            .collect(),
    );
    assert!(matches!(
        b.apply_register("a", req(huge, None, "c6", 1), limits(), now),
        Err(RegisterError::TooManyContacts { .. })
    ));
}

#[test]
fn query_lists_without_changing() {
    let now = Instant::now();
    let mut b = Bindings::new();
    let out = b
        .apply_register("a", req(Contacts::Query, None, "c", 1), limits(), now)
        .unwrap();
    assert_eq!(out.transition, Transition::Unchanged);
    assert!(out.contacts.is_empty());
    assert_eq!(b.aor_count(), 0);
    b.apply_register("a", req(one("sip:a@h"), Some(300), "c", 2), limits(), now)
        .unwrap();
    let later = now + Duration::from_secs(100);
    // A query with a stale CSeq is still fine: it changes nothing.
    for contacts in [Contacts::Query, Contacts::List(Vec::new())] {
        let out = b
            .apply_register("a", req(contacts, None, "c", 1), limits(), later)
            .unwrap();
        assert_eq!(out.transition, Transition::Unchanged);
        assert_eq!(out.contacts[0].header_value(), "<sip:a@h>;expires=200");
    }
}

#[test]
fn expire_reports_emptied_aors_and_next_expiry() {
    let t0 = Instant::now();
    let mut b = Bindings::new();
    b.apply_register("a", req(one("sip:a@h"), Some(100), "c", 1), limits(), t0)
        .unwrap();
    let two = Contacts::List(vec![
        with_expires("sip:b@h1", 100),
        with_expires("sip:b@h2", 500),
    ]);
    b.apply_register("b", req(two, None, "c", 1), limits(), t0)
        .unwrap();
    assert_eq!(b.count(), 3);
    assert_eq!(b.next_expiry(), Some(t0 + Duration::from_secs(100)));
    assert!(b.expire(t0 + Duration::from_secs(99)).is_empty());
    let t1 = t0 + Duration::from_secs(100);
    // At expiry time the binding is no longer live even before expire() runs.
    assert!(b.lookup("a", t1).is_empty());
    assert_eq!(b.expire(t1), ["a"]);
    assert_eq!(b.count(), 1);
    assert_eq!(b.next_expiry(), Some(t0 + Duration::from_secs(500)));
    assert!(b.is_registered("b", t1));
    // A new REGISTER after an unpurged expiry counts as a login.
    let t2 = t0 + Duration::from_secs(600);
    let out = b
        .apply_register("b", req(one("sip:b@h3"), Some(100), "c", 2), limits(), t2)
        .unwrap();
    assert_eq!(out.transition, Transition::Login);
    assert_eq!(out.contacts.len(), 1);
}

#[test]
fn lookup_orders_by_q_then_recency() {
    let t0 = Instant::now();
    let mut b = Bindings::new();
    let q = |uri: &str, q: Option<f32>| {
        Contacts::List(vec![ContactSpec {
            q,
            ..ContactSpec::new(uri)
        }])
    };
    b.apply_register(
        "a",
        req(q("sip:a@low", Some(0.1)), Some(300), "c1", 1),
        limits(),
        t0,
    )
    .unwrap();
    b.apply_register(
        "a",
        req(q("sip:a@old", None), Some(300), "c2", 1),
        limits(),
        t0 + Duration::from_secs(1),
    )
    .unwrap();
    b.apply_register(
        "a",
        req(q("sip:a@new", Some(1.0)), Some(300), "c3", 1),
        limits(),
        t0 + Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(
        uris(&b, "a", t0 + Duration::from_secs(3)),
        ["sip:a@new", "sip:a@old", "sip:a@low"]
    );
    let out = b
        .apply_register("a", req(Contacts::Query, None, "c", 1), limits(), t0)
        .unwrap();
    let low = out.contacts.iter().find(|c| c.uri == "sip:a@low").unwrap();
    assert_eq!(low.header_value(), "<sip:a@low>;expires=300;q=0.1");
    assert!(matches!(
        b.apply_register(
            "a",
            req(q("sip:a@bad", Some(1.5)), Some(300), "c9", 1),
            limits(),
            t0
        ),
        Err(RegisterError::InvalidQ)
    ));
    assert!(matches!(
        b.apply_register(
            "a",
            req(q("sip:a@nan", Some(f32::NAN)), Some(300), "c9", 1),
            limits(),
            t0
        ),
        Err(RegisterError::InvalidQ)
    ));
    assert_eq!(
        b.apply_register("a", req(one("  "), Some(300), "c9", 1), limits(), t0),
        Err(RegisterError::EmptyUri)
    );
}

#[test]
fn find_by_source_identifies_registered_agent() {
    let now = Instant::now();
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(300), "c1", 1),
        limits(),
        now,
    )
    .unwrap();
    let (aor, binding) = b.find_by_source(SRC.parse().unwrap(), now).unwrap();
    assert_eq!(aor, "1001");
    assert_eq!(binding.uri, UDP_CONTACT);
    assert!(b
        .find_by_source("10.0.0.5:5071".parse().unwrap(), now)
        .is_none());
    assert!(b
        .find_by_source(SRC.parse().unwrap(), now + Duration::from_secs(300))
        .is_none());
}

#[test]
fn q_formatting() {
    assert_eq!(format_q(1.0), "1");
    assert_eq!(format_q(0.5), "0.5");
    assert_eq!(format_q(0.125), "0.125");
    assert_eq!(format_q(0.0), "0");
}

#[test]
fn probes_fall_due_once_per_interval_and_a_register_resets_them() {
    let t0 = Instant::now();
    let every = Duration::from_secs(60);
    let mut b = Bindings::new();
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(3600), "c1", 1),
        limits(),
        t0,
    )
    .unwrap();
    assert_eq!(b.next_probe(every), Some(t0 + every));
    assert!(b
        .take_due_probes(every, t0 + Duration::from_secs(59))
        .is_empty());
    let due = b.take_due_probes(every, t0 + every);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, "1001");
    assert_eq!(due[0].1.uri, UDP_CONTACT);
    // Taken: not due again until a further interval has passed.
    assert!(b.take_due_probes(every, t0 + every).is_empty());
    assert_eq!(b.next_probe(every), Some(t0 + every + every));
    // A re-REGISTER proves the phone alive: the clock starts again from it.
    let t1 = t0 + Duration::from_secs(100);
    b.apply_register(
        "1001",
        req(one(UDP_CONTACT), Some(3600), "c1", 2),
        limits(),
        t1,
    )
    .unwrap();
    assert_eq!(b.next_probe(every), Some(t1 + every));
}

#[test]
fn removing_the_last_contact_of_a_dead_phone_logs_the_agent_out() {
    let t0 = Instant::now();
    let mut b = Bindings::new();
    let two = Contacts::List(vec![
        ContactSpec::new("sip:1001@10.0.0.5:5070"),
        ContactSpec::new("sip:1001@10.0.0.6:5070"),
    ]);
    b.apply_register("1001", req(two, Some(3600), "c1", 1), limits(), t0)
        .unwrap();
    assert_eq!(
        b.remove_contact("1001", "sip:1001@10.0.0.5:5070", t0),
        Transition::Unchanged
    );
    assert!(b.is_registered("1001", t0));
    assert_eq!(
        b.remove_contact("1001", "sip:1001@10.0.0.6:5070", t0),
        Transition::Logout
    );
    assert!(!b.is_registered("1001", t0));
    assert_eq!(
        b.remove_contact("1001", "sip:x@y", t0),
        Transition::Unchanged
    );
    assert_eq!(b.count(), 0);
}
