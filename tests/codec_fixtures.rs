//! Codec integration tests over literal wire fixtures (`tests/fixtures/sip/*.sip`, CRLF):
//! what real phones send parses with the right values; relaying every header through the
//! builder reproduces the message; no input makes the parser or any accessor panic
//! (proptest over random bytes and mutated fixtures); and rsip 0.4 agrees with us on the
//! key fields of every fixture it accepts.

use bytes::Bytes;
use handover::sip::*;
use proptest::prelude::*;

/// (file name, bytes, relaying reproduces the exact bytes)
const FIXTURES: &[(&str, &[u8], bool)] = &[
    (
        "register_linphone",
        include_bytes!("fixtures/sip/register_linphone.sip"),
        true,
    ),
    (
        "invite_pjsua",
        include_bytes!("fixtures/sip/invite_pjsua.sip"),
        true,
    ),
    (
        "refer_blind",
        include_bytes!("fixtures/sip/refer_blind.sip"),
        true,
    ),
    (
        "refer_attended",
        include_bytes!("fixtures/sip/refer_attended.sip"),
        true,
    ),
    (
        "response_183_sdp",
        include_bytes!("fixtures/sip/response_183_sdp.sip"),
        true,
    ),
    (
        "invite_ipv6",
        include_bytes!("fixtures/sip/invite_ipv6.sip"),
        true,
    ),
    (
        "invite_tel",
        include_bytes!("fixtures/sip/invite_tel.sip"),
        true,
    ),
    // `c:` / `l:` are rewritten to Content-Type / Content-Length by the builder.
    (
        "compact_folded",
        include_bytes!("fixtures/sip/compact_folded.sip"),
        false,
    ),
];

fn fixture(name: &str) -> SipMessage {
    let (_, raw, _) = FIXTURES.iter().find(|(n, _, _)| *n == name).unwrap();
    SipMessage::parse(Bytes::from_static(raw)).unwrap()
}

#[test]
fn fixtures_use_crlf_line_endings() {
    for (name, raw, _) in FIXTURES {
        let lf = raw.iter().filter(|&&c| c == b'\n').count();
        let crlf = raw.windows(2).filter(|w| w == b"\r\n").count();
        assert_eq!(lf, crlf, "{name} has bare LF");
    }
}

#[test]
fn linphone_register() {
    let m = fixture("register_linphone");
    assert_eq!(m.method(), Some(&Method::Register));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "TCP");
    assert_eq!(via.port, Some(49822));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(via.param("alias"), Some(None));
    let Contacts::List(contacts) = m.contacts().unwrap() else {
        panic!("contact list expected");
    };
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(
        c.param("+sip.instance"),
        Some(Some("<urn:uuid:00000000-0000-1000-8000-0026B9E8A1C2>"))
    );
    assert_eq!(c.param("reg-id"), Some(Some("1")));
    assert_eq!(c.uri.param("ob"), Some(None));
    assert_eq!(c.uri.param("transport"), Some(Some("tcp")));
    assert_eq!(
        c.uri.socket_addr(),
        Some("192.168.1.20:49822".parse().unwrap())
    );
    assert_eq!(m.option_tags(HeaderName::Supported), ["outbound", "path"]);
    assert_eq!(m.expires().unwrap(), Some(600));
    assert_eq!(m.to_tag(), None);
    assert!(m.body().is_empty());
}

#[test]
fn pjsua_invite() {
    let m = fixture("invite_pjsua");
    assert_eq!(
        m.cseq(),
        CSeq {
            seq: 31265,
            method: Method::Invite
        }
    );
    assert_eq!(m.call_id(), "5f2c9a7e-1b3d-4c6e-8f0a-2b4c6d8e0f1a");
    assert_eq!(
        m.branch(),
        Some("z9hG4bKPj3f6a1c8e-2b9d-4e7f-8a0b-1c2d3e4f5a6b")
    );
    assert_eq!(m.from_tag(), Some("9b1a6c2e-4d3f-4a8b-9c0d-1e2f3a4b5c6d"));
    assert_eq!(
        m.option_tags(HeaderName::Supported),
        ["replaces", "100rel", "timer", "norefersub"]
    );
    assert_eq!(
        m.session_expires().unwrap(),
        Some(SessionExpires {
            secs: 1800,
            refresher: None
        })
    );
    assert_eq!(m.min_se().unwrap(), Some(90));
    let body = m.body();
    let cl: usize = m
        .header(HeaderName::ContentLength)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), cl);
    assert!(body.starts_with(b"v=0\r\n"));
    assert!(body.ends_with(b"a=ssrc:1306504271 cname:1c2f4a7e3b5d6f80\r\n"));
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
}

#[test]
fn blind_refer_without_angle_brackets() {
    let m = fixture("refer_blind");
    let rt = m.refer_to().unwrap().unwrap();
    assert_eq!(rt.uri.user_str(), "agent2");
    assert_eq!(rt.uri.host_port(), "192.168.1.10:5060");
    assert!(rt.uri.replaces().unwrap().is_none());
    assert_eq!(m.from_tag(), Some("9b1a6c2e-4d3f-4a8b-9c0d-1e2f3a4b5c6d"));
    assert_eq!(m.to_tag(), Some("hv-7d3e9a1f0c2b4e68"));
    assert!(m.from().unwrap().uri.params.is_empty());
    assert_eq!(m.referred_by().unwrap().unwrap().uri.user_str(), "1001");
    assert_eq!(m.header(HeaderName::Event).as_deref(), Some("refer"));
    assert_eq!(m.header(HeaderName::ReferSub), None);
}

#[test]
fn attended_refer_with_embedded_replaces() {
    let m = fixture("refer_attended");
    let rt = m.refer_to().unwrap().unwrap();
    assert_eq!(rt.uri.host, Host::V4("192.168.1.10".parse().unwrap()));
    assert_eq!(rt.uri.port, Some(5060));
    assert_eq!(rt.uri.header("require").as_deref(), Some("replaces"));
    assert_eq!(
        rt.uri.replaces().unwrap(),
        Some(Replaces {
            call_id: "consult-3c4d5e6f@192.168.1.21".into(),
            to_tag: "hv-fedcba9876543210".into(),
            from_tag: "a1-beefbeef".into(),
            early_only: false,
        })
    );
}

#[test]
fn session_progress_with_sdp() {
    let m = fixture("response_183_sdp");
    assert_eq!(m.status(), Some(183));
    assert_eq!(m.reason(), Some("Session Progress"));
    assert_eq!(m.top_via().unwrap().received(), Some("192.168.1.20"));
    assert_eq!(m.top_via().unwrap().rport(), Some(Some(5060)));
    assert_eq!(m.record_routes().unwrap()[0].uri.param("lr"), Some(None));
    assert_eq!(m.to_tag(), Some("hv-5e6f7a8b9c0d1e2f"));
    assert!(m.body().starts_with(b"v=0\r\no=handover"));
}

#[test]
fn ipv6_invite() {
    let m = fixture("invite_ipv6");
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(
        uri.socket_addr(),
        Some("[2001:db8::10]:5060".parse().unwrap())
    );
    let via = m.top_via().unwrap();
    assert_eq!(via.host.to_string(), "[2001:db8::20]");
    assert_eq!(m.branch(), Some("z9hG4bKPj6v6v6v6v"));
}

#[test]
fn tel_invite() {
    let m = fixture("invite_tel");
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.scheme, Scheme::Tel);
    assert_eq!(uri.user_str(), "+4930123456");
    assert_eq!(uri.param("phone-context"), Some(Some("example.com")));
    assert_eq!(m.to().unwrap().uri.scheme, Scheme::Tel);
    assert_eq!(m.from().unwrap().display.as_deref(), Some("Gateway"));
    assert_eq!(
        m.header(HeaderName::PAssertedIdentity).as_deref(),
        Some("<tel:+4930999000>")
    );
}

#[test]
fn compact_names_and_folded_lines() {
    let m = fixture("compact_folded");
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(m.branch(), Some("z9hG4bKcompact1"));
    let from = m.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Caller, Jr."));
    assert_eq!(m.from_tag(), Some("cf-1"));
    assert_eq!(from.tag(), Some("cf-1"));
    assert_eq!(m.to().unwrap().uri.user_str(), "queue");
    assert_eq!(m.call_id(), "compact-folded-1@10.1.2.3");
    assert_eq!(
        m.cseq(),
        CSeq {
            seq: 5,
            method: Method::Invite
        }
    );
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.option_tags(HeaderName::Supported), ["timer", "replaces"]);
    assert_eq!(
        m.session_expires().unwrap().unwrap().refresher,
        Some(Refresher::Uac)
    );
    assert_eq!(
        m.header_named("subject").as_deref(),
        Some("a folded subject line")
    );
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert!(m.body().ends_with(b"a=sendrecv\r\n"));
    assert_eq!(m.header_named("x-custom-thing").as_deref(), Some("keep me"));
}

/// Relays `m` through the builder: same start line, every header but Content-Type and
/// Content-Length copied, then the body with a recomputed Content-Length.
fn relay(m: &SipMessage) -> Bytes {
    let mut b = match m.method() {
        Some(method) => MessageBuilder::request(method, m.request_uri_str().unwrap()),
        None => MessageBuilder::response(m.status().unwrap(), m.reason().unwrap()),
    };
    b.copy_headers_except(m, &[HeaderName::ContentType]);
    match m.content_type() {
        Some(ct) => b.body(&ct, &m.body()),
        None if !m.body().is_empty() => b.body("", &m.body()),
        None => b.finish(),
    }
}

fn non_length_headers(m: &SipMessage) -> Vec<(String, String)> {
    m.headers()
        .filter(|(n, _, _)| !matches!(n, HeaderName::ContentLength | HeaderName::ContentType))
        .map(|(_, w, v)| (w.to_string(), v.into_owned()))
        .collect()
}

#[test]
fn relaying_every_header_round_trips() {
    for (name, raw, identical) in FIXTURES {
        let m = SipMessage::parse(Bytes::from_static(raw)).unwrap();
        let out = relay(&m);
        if *identical {
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                std::str::from_utf8(raw).unwrap(),
                "{name}"
            );
        }
        let again = SipMessage::parse(out).unwrap();
        assert_eq!(non_length_headers(&again), non_length_headers(&m), "{name}");
        assert_eq!(again.body(), m.body(), "{name}");
        assert_eq!(again.content_type(), m.content_type(), "{name}");
    }
}

#[test]
fn typed_values_display_round_trip() {
    for (name, raw, _) in FIXTURES {
        let m = SipMessage::parse(Bytes::from_static(raw)).unwrap();
        for via in m.vias().unwrap() {
            assert_eq!(Via::parse(&via.to_string()).unwrap(), via, "{name}");
        }
        let mut addrs = vec![m.from().unwrap(), m.to().unwrap()];
        if let Contacts::List(list) = m.contacts().unwrap() {
            addrs.extend(list);
        }
        addrs.extend(m.refer_to().unwrap());
        addrs.extend(m.record_routes().unwrap());
        for a in addrs {
            assert_eq!(NameAddr::parse(&a.to_string()).unwrap(), a, "{name}");
            assert_eq!(Uri::parse(&a.uri.to_string()).unwrap(), a.uri, "{name}");
        }
        if let Ok(uri) = m.request_uri() {
            assert_eq!(uri.to_string(), m.request_uri_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn response_to_each_request_fixture() {
    for (name, raw, _) in FIXTURES {
        let m = SipMessage::parse(Bytes::from_static(raw)).unwrap();
        if !m.is_request() {
            continue;
        }
        let resp = SipMessage::parse(response_to(&m, 200, "OK", Some("hv-t")).finish()).unwrap();
        assert_eq!(resp.call_id(), m.call_id(), "{name}");
        assert_eq!(resp.cseq(), m.cseq(), "{name}");
        assert_eq!(resp.branch(), m.branch(), "{name}");
        assert_eq!(resp.from_tag(), m.from_tag(), "{name}");
        assert_eq!(resp.to_tag(), Some(m.to_tag().unwrap_or("hv-t")), "{name}");
        assert_eq!(resp.vias().unwrap(), m.vias().unwrap(), "{name}");
    }
}

// ---- robustness ----

const ALL_HEADERS: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::MaxForwards,
    HeaderName::ContentType,
    HeaderName::ContentLength,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Authorization,
    HeaderName::Expires,
    HeaderName::ReferTo,
    HeaderName::ReferredBy,
    HeaderName::Replaces,
    HeaderName::Require,
    HeaderName::Supported,
    HeaderName::Unsupported,
    HeaderName::ProxyRequire,
    HeaderName::SessionExpires,
    HeaderName::MinSe,
    HeaderName::Other,
];

/// Calls every accessor; checks the invariants that must hold for any message that parses.
fn exercise(m: &SipMessage) {
    let _ = (m.raw(), m.is_request(), m.method(), m.status(), m.reason());
    let _ = (m.request_uri_str(), m.request_uri());
    for &n in ALL_HEADERS {
        let _ = m.header(n);
        let _ = m.header_values(n).count();
        let _ = m.option_tags(n);
    }
    for (_, written, _) in m.headers() {
        let _ = m.header_named(written);
    }
    let _ = (m.body(), m.call_id(), m.cseq(), m.cseq_ref());
    let _ = (m.from_tag(), m.to_tag(), m.branch());
    for a in [m.from(), m.to()].into_iter().flatten() {
        let _ = (
            a.tag(),
            a.uri.replaces(),
            a.uri.host_port(),
            a.uri.socket_addr(),
        );
        let _ = NameAddr::parse(&a.to_string());
    }
    if let Ok(vias) = m.vias() {
        for v in vias {
            let _ = (
                v.branch(),
                v.rport(),
                v.received(),
                Via::parse(&v.to_string()),
            );
        }
    }
    let _ = m.top_via();
    if let Ok(Contacts::List(list)) = m.contacts() {
        for c in list {
            let _ = (c.param("+sip.instance"), NameAddr::parse(&c.to_string()));
        }
    }
    let _ = (
        m.routes(),
        m.record_routes(),
        m.max_forwards(),
        m.expires(),
        m.min_se(),
    );
    let _ = m.content_type();
    if let Ok(Some(rt)) = m.refer_to() {
        let _ = (rt.uri.replaces(), rt.uri.header("Require"), rt.to_string());
    }
    let _ = (m.referred_by(), m.replaces(), m.session_expires());

    // A response built from a request that parsed must itself parse and match.
    if m.is_request() {
        let resp = SipMessage::parse(response_to(m, 200, "OK", Some("t")).finish())
            .expect("response_to output parses");
        assert_eq!(resp.call_id(), m.call_id());
        assert_eq!(resp.cseq_ref(), m.cseq_ref());
        assert_eq!(resp.branch(), m.branch());
        assert_eq!(resp.from_tag(), m.from_tag());
        if m.to_tag().is_some() {
            assert_eq!(resp.to_tag(), m.to_tag());
        }
    }
    // Relaying every header must produce a message that parses.
    let relayed = SipMessage::parse(relay(m)).expect("relayed message parses");
    assert_eq!(relayed.call_id(), m.call_id());
    assert_eq!(relayed.body(), m.body());
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, &'static [u8]),
    Delete(usize, usize),
}

const INSERTS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b" ",
    b"\t",
    b"\r\n ",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b":",
    b"[",
    b"]",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%3",
    b"@",
    b";tag=",
    b";branch=",
    b"\x00",
    b"\xff",
    "é".as_bytes(),
    b"Content-Length: 99999\r\n",
    b"l: 3\r\n",
    b"Via: \r\n",
    b"Contact: *\r\n",
    b"99999999999",
    b"sip:[::1",
    b"tel:",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::sample::select(INSERTS))
            .prop_map(|(p, s)| Mutation::Insert(p, s)),
        (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
    ]
}

fn apply(raw: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = raw.to_vec();
    for m in muts {
        let len = v.len();
        match *m {
            Mutation::Flip(p, b) if len > 0 => v[p % len] = b,
            Mutation::Truncate(p) => v.truncate(p % (len + 1)),
            Mutation::Insert(p, s) => {
                let at = p % (len + 1);
                v.splice(at..at, s.iter().copied());
            }
            Mutation::Delete(p, n) if len > 0 => {
                let at = p % len;
                v.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    v
}

proptest! {
    // No regression files: failures print the minimal input instead.
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES raises the count for a long local run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        if let Ok(m) = SipMessage::parse(Bytes::from(data)) {
            exercise(&m);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        idx in 0..FIXTURES.len(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let data = apply(FIXTURES[idx].1, &muts);
        if let Ok(m) = SipMessage::parse(Bytes::from(data)) {
            exercise(&m);
        }
    }

    #[test]
    fn typed_parsers_never_panic(s in "[ -~\t\r\né]{0,120}") {
        if let Ok(u) = Uri::parse(&s) {
            let _ = (u.header("Replaces"), u.replaces(), u.host_port(), u.socket_addr());
            prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
        }
        if let Ok(n) = NameAddr::parse(&s) {
            let _ = (n.tag(), n.uri.replaces());
            prop_assert_eq!(NameAddr::parse(&n.to_string()), Ok(n));
        }
        if let Ok(v) = Via::parse(&s) {
            let _ = (v.branch(), v.rport(), v.received());
            prop_assert_eq!(Via::parse(&v.to_string()), Ok(v));
        }
        let _ = (CSeq::parse(&s), Replaces::parse(&s), SessionExpires::parse(&s));
        let _ = Method::from_token(s.as_bytes());
        let _ = HeaderName::from_bytes(s.as_bytes());
    }
}

/// Every fixture carries Content-Length, so no strict prefix of it may parse: a message cut
/// short (a truncated datagram, a mis-framed stream) is always rejected, never half-read.
#[test]
fn no_truncated_prefix_parses() {
    for (name, raw, _) in FIXTURES {
        for cut in 0..raw.len() {
            let r = SipMessage::parse(Bytes::copy_from_slice(&raw[..cut]));
            let e = r.expect_err(&format!("{name} cut at {cut} parsed"));
            assert!(!e.reason().is_empty());
        }
    }
}

// ---- differential test against rsip 0.4 ----

#[test]
fn rsip_agrees_on_fixtures_it_accepts() {
    use rsip::prelude::*;
    let mut compared = 0;
    for (name, raw, _) in FIXTURES {
        let ours = SipMessage::parse(Bytes::from_static(raw)).unwrap();
        let text = std::str::from_utf8(raw).unwrap();
        let Ok(theirs) = rsip::SipMessage::try_from(text) else {
            eprintln!("rsip rejects {name}");
            continue;
        };
        compared += 1;
        match &theirs {
            rsip::SipMessage::Request(r) => {
                assert_eq!(
                    ours.method().unwrap().as_str(),
                    r.method().to_string(),
                    "{name}"
                );
                let uri = ours.request_uri().unwrap();
                assert_eq!(uri.user.as_deref(), r.uri().user(), "{name}");
                assert_eq!(
                    uri.host.to_string(),
                    r.uri().host_with_port.host.to_string(),
                    "{name}"
                );
                assert_eq!(
                    uri.port,
                    r.uri().host_with_port.port.map(u16::from),
                    "{name}"
                );
            }
            rsip::SipMessage::Response(r) => {
                assert_eq!(ours.status(), Some(r.status_code().code()), "{name}");
            }
        }
        let call_id = theirs.call_id_header().unwrap().value().to_string();
        assert_eq!(ours.call_id(), call_id, "{name}");
        let cseq = theirs.cseq_header().unwrap().typed().unwrap();
        assert_eq!(ours.cseq().seq, cseq.seq, "{name}");
        assert_eq!(
            ours.cseq().method.as_str(),
            cseq.method.to_string(),
            "{name}"
        );
        let from_tag = theirs
            .from_header()
            .unwrap()
            .tag()
            .unwrap()
            .map(|t| t.to_string());
        assert_eq!(ours.from_tag().map(str::to_string), from_tag, "{name}");
        let to_tag = theirs
            .to_header()
            .unwrap()
            .tag()
            .unwrap()
            .map(|t| t.to_string());
        assert_eq!(ours.to_tag().map(str::to_string), to_tag, "{name}");
        let via = theirs.via_header().unwrap().typed().unwrap();
        assert_eq!(
            ours.branch().map(str::to_string),
            via.branch().map(|b| b.to_string()),
            "{name}"
        );
    }
    // rsip must accept at least the plain fixtures, or this test compares nothing.
    assert!(compared >= 3, "rsip accepted only {compared} fixtures");
}
