//! Unit tests of `SipMessage::parse` and its accessors: every edge case real phones send
//! (see the module docs of `message`), plus the errors and their reason phrases.

use bytes::Bytes;

use super::*;

/// Literal wire text written with `\n`; converted to CRLF line endings.
fn wire(s: &str) -> Bytes {
    Bytes::from(s.replace('\n', "\r\n"))
}

fn parse(s: &str) -> Result<SipMessage, ParseError> {
    SipMessage::parse(wire(s))
}

const INVITE: &str = "INVITE sip:1002@192.168.1.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPjabc
Max-Forwards: 70
From: \"Alice\" <sip:1001@192.168.1.10>;tag=fromtag1
To: <sip:1002@192.168.1.10>
Contact: <sip:1001@192.168.1.20:5060;ob>
Call-ID: call-1@192.168.1.20
CSeq: 31265 INVITE
Supported: replaces, 100rel, timer, norefersub
Session-Expires: 1800;refresher=uac
Min-SE: 90
X-Queue: sales
Content-Type: application/sdp
Content-Length: 10

v=0
o=x
";

#[test]
fn parses_a_basic_invite() {
    let m = parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.status(), None);
    assert_eq!(m.reason(), None);
    assert_eq!(m.request_uri_str(), Some("sip:1002@192.168.1.10"));
    assert_eq!(m.request_uri().unwrap().user_str(), "1002");
    assert_eq!(m.call_id(), "call-1@192.168.1.20");
    assert_eq!(
        m.cseq(),
        CSeq {
            seq: 31265,
            method: Method::Invite
        }
    );
    assert_eq!(m.from_tag(), Some("fromtag1"));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.branch(), Some("z9hG4bKPjabc"));
    assert_eq!(m.top_via().unwrap().rport(), Some(None));
    assert_eq!(m.from().unwrap().display.as_deref(), Some("Alice"));
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.expires().unwrap(), None);
    assert_eq!(m.min_se().unwrap(), Some(90));
    assert_eq!(
        m.session_expires().unwrap(),
        Some(SessionExpires {
            secs: 1800,
            refresher: Some(Refresher::Uac)
        })
    );
    assert_eq!(
        m.option_tags(HeaderName::Supported),
        vec!["replaces", "100rel", "timer", "norefersub"]
    );
    assert!(m.option_tags(HeaderName::Require).is_empty());
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(&m.body()[..], b"v=0\r\no=x\r\n");
    assert_eq!(m.header_named("x-queue").as_deref(), Some("sales"));
    assert_eq!(
        m.header_named("CALL-ID").as_deref(),
        Some("call-1@192.168.1.20")
    );
    assert_eq!(m.header_named("X-Missing"), None);
    assert_eq!(m.header(HeaderName::Other), None);
    assert_eq!(m.headers().count(), 13);
    assert!(m.refer_to().unwrap().is_none());
    assert!(m.replaces().unwrap().is_none());
}

#[test]
fn ipv6_request_uri_and_via() {
    let m = parse(
        "INVITE sip:bob@[2001:db8::20]:5062;transport=udp SIP/2.0
Via: SIP/2.0/UDP [2001:db8::10]:5060;rport;branch=z9hG4bK6
From: <sip:alice@[2001:db8::10]>;tag=a
To: <sip:bob@[2001:db8::20]>
Call-ID: v6
CSeq: 1 INVITE
Content-Length: 0

",
    )
    .unwrap();
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.host, Host::V6("2001:db8::20".parse().unwrap()));
    assert_eq!(uri.port, Some(5062));
    let via = m.top_via().unwrap();
    assert_eq!(via.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(via.port, Some(5060));
    assert_eq!(m.branch(), Some("z9hG4bK6"));
    assert_eq!(m.from().unwrap().uri.host_port(), "[2001:db8::10]");
}

#[test]
fn tel_request_uri() {
    let m = parse(
        "INVITE tel:+4930123456;phone-context=example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <tel:+4930999>;tag=a
To: <tel:+4930123456>
Call-ID: t1
CSeq: 1 INVITE
Content-Length: 0

",
    )
    .unwrap();
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.scheme, Scheme::Tel);
    assert_eq!(uri.user_str(), "+4930123456");
    assert_eq!(m.to().unwrap().uri.scheme, Scheme::Tel);
}

#[test]
fn unsupported_request_uri_scheme_is_416() {
    let m = parse(
        "OPTIONS http://example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=a
To: <sip:b@h>
Call-ID: s1
CSeq: 1 OPTIONS

",
    )
    .unwrap();
    let e = m.request_uri().unwrap_err();
    assert_eq!(e, ParseError::UnsupportedScheme);
    assert_eq!(e.status_code(), 416);
}

#[test]
fn a_message_too_large_to_index_is_513() {
    // Unreachable through the transports (they stop far below 4 GiB); the answer is still
    // RFC 3261 §21.5.14's.
    let e = ParseError::TooLarge;
    assert_eq!((e.status_code(), e.reason()), (513, "Message Too Large"));
}

#[test]
fn compact_header_names() {
    let m = parse(
        "MESSAGE sip:u@h SIP/2.0
v: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKc
f: sip:a@h;tag=ff
t: sip:u@h
i: compact-1
CSeq: 7 MESSAGE
m: <sip:a@10.0.0.1:5070>
k: timer
r: sip:x@h
b: sip:a@h
x: 600
o: refer
c: text/plain
l: 2

hi",
    )
    .unwrap();
    assert_eq!(m.call_id(), "compact-1");
    assert_eq!(m.branch(), Some("z9hG4bKc"));
    assert_eq!(m.from_tag(), Some("ff"));
    assert_eq!(
        m.header(HeaderName::Via).as_deref(),
        Some("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKc")
    );
    assert_eq!(m.option_tags(HeaderName::Supported), vec!["timer"]);
    assert_eq!(m.refer_to().unwrap().unwrap().uri.user_str(), "x");
    assert_eq!(m.referred_by().unwrap().unwrap().uri.user_str(), "a");
    assert_eq!(m.session_expires().unwrap().unwrap().secs, 600);
    assert_eq!(m.header(HeaderName::Event).as_deref(), Some("refer"));
    assert_eq!(m.content_type().as_deref(), Some("text/plain"));
    assert_eq!(&m.body()[..], b"hi");
    // names as written are kept
    let names: Vec<&str> = m.headers().map(|(_, n, _)| n).collect();
    assert_eq!(names.first(), Some(&"v"));
    assert_eq!(m.header_named("Content-Length").as_deref(), Some("2"));
}

#[test]
fn folded_lines_and_space_before_colon() {
    let m = parse(
        "OPTIONS sip:u@h SIP/2.0
Via  : SIP/2.0/UDP 10.0.0.1;
  branch=z9hG4bKfold
From:
 <sip:a@h>
\t;tag=ft
To\t: <sip:u@h>
Call-ID : fold-1
CSeq: 1
 OPTIONS
Subject: one,
   two
Content-Length: 0

",
    )
    .unwrap();
    assert_eq!(m.branch(), Some("z9hG4bKfold"));
    assert_eq!(m.from_tag(), Some("ft"));
    assert_eq!(m.call_id(), "fold-1");
    assert_eq!(m.cseq().method, Method::Options);
    assert_eq!(m.header_named("subject").as_deref(), Some("one, two"));
    assert_eq!(
        m.header(HeaderName::Via).as_deref(),
        Some("SIP/2.0/UDP 10.0.0.1; branch=z9hG4bKfold")
    );
    // From had an empty first line: its value starts on the continuation line.
    assert_eq!(
        m.header(HeaderName::From).as_deref(),
        Some("<sip:a@h> ;tag=ft")
    );
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKfold"));
    assert_eq!(m.from().unwrap().tag(), Some("ft"));
}

#[test]
fn extension_method_with_matching_cseq() {
    let m = parse(
        "FOOBAR sip:u@h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:u@h>
Call-ID: ext
CSeq: 3 FOOBAR

",
    )
    .unwrap();
    assert_eq!(m.method(), Some(&Method::Other("FOOBAR".into())));
    assert_eq!(m.cseq().method, Method::Other("FOOBAR".into()));
    assert!(m.body().is_empty());
}

#[test]
fn contact_lists_with_quoted_params() {
    let m = parse(
        "REGISTER sip:h SIP/2.0
Via: SIP/2.0/TCP 192.168.1.20:49822;rport;alias;branch=z9hG4bKr
From: <sip:1001@h>;tag=r1
To: <sip:1001@h>
Call-ID: reg
CSeq: 2 REGISTER
Contact: \"Desk, 1\" <sip:1001@192.168.1.20:49822;transport=TCP;ob>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0011AABBCCDD>\", <sip:1001@10.0.0.9>;expires=0
Contact: sip:1001@10.0.0.8;q=0.5
Expires: 300

",
    )
    .unwrap();
    let Contacts::List(list) = m.contacts().unwrap() else {
        panic!("expected a list");
    };
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].display.as_deref(), Some("Desk, 1"));
    assert_eq!(
        list[0].param("+sip.instance"),
        Some(Some("<urn:uuid:00000000-0000-1000-8000-0011AABBCCDD>"))
    );
    assert_eq!(list[0].uri.param("ob"), Some(None));
    assert_eq!(list[1].param("expires"), Some(Some("0")));
    assert_eq!(list[2].param("q"), Some(Some("0.5")));
    assert!(list[2].uri.params.is_empty());
    assert_eq!(m.expires().unwrap(), Some(300));
}

#[test]
fn first_contact_uri_is_the_uri_as_written() {
    let base = "INVITE sip:h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>
Call-ID: fc
CSeq: 1 INVITE
";
    let first = |contact: &str| {
        parse(&format!("{base}{contact}\n\n"))
            .unwrap()
            .first_contact_uri()
    };
    assert_eq!(
        first("Contact: \"Desk; 1\" < sip:1001@192.168.1.20:49822;transport=TCP;ob >;+sip.instance=\"<urn:uuid:1>\", <sip:x@y>").as_deref(),
        Some("sip:1001@192.168.1.20:49822;transport=TCP;ob")
    );
    assert_eq!(
        first("m: sip:1001@[2001:db8::5]:5070;q=0.5").as_deref(),
        Some("sip:1001@[2001:db8::5]:5070")
    );
    let changed = |contact: &str, current: &str| {
        parse(&format!("{base}{contact}\n\n"))
            .unwrap()
            .first_contact_uri_if_changed(current)
    };
    assert_eq!(
        changed(
            "Contact: <sip:a@10.0.0.1:5062>;expires=60",
            "sip:a@10.0.0.1:5062"
        ),
        None
    );
    assert_eq!(
        changed("Contact: <sip:a@10.0.0.2>", "sip:a@10.0.0.1:5062").as_deref(),
        Some("sip:a@10.0.0.2")
    );
    assert_eq!(changed("Contact: <sip:a@>", "sip:a@10.0.0.1"), None);
    assert_eq!(first("Contact: *"), None);
    assert_eq!(first("Contact: <sip:a@h"), None);
    assert_eq!(first("Contact: <http://example.com>"), None);
    assert_eq!(first("Max-Forwards: 70"), None);
}

#[test]
fn parties_are_cut_from_the_text_without_their_tag() {
    let with = |from: &str, to: &str| {
        let m = parse(&format!(
            "INVITE sip:h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: {from}
To: {to}
Call-ID: pt
CSeq: 1 INVITE

"
        ))
        .unwrap();
        (
            m.party_without_tag(HeaderName::From),
            m.party_without_tag(HeaderName::To),
        )
    };
    let (from, to) = with("\"Alice\" <sip:1001@h>;tag=f1", "<sip:1002@h>");
    assert_eq!(from.as_deref(), Some("\"Alice\" <sip:1001@h>"));
    assert_eq!(to.as_deref(), Some("<sip:1002@h>"));
    // Other parameters stay, in place, as written; spaces around the tag go with it.
    let (from, to) = with("<sip:a@h>;x=1 ; tag = f2;y=\"q;r\"", "b <sip:b@h>;TAG=t2");
    assert_eq!(from.as_deref(), Some("<sip:a@h>;x=1;y=\"q;r\""));
    assert_eq!(to.as_deref(), Some("b <sip:b@h>"));
    // The same result as printing the parsed value without its tag.
    let (from, _) = with("sip:a@h;tag=f3", "<sip:b@h>");
    assert_eq!(from.as_deref(), Some("sip:a@h"));
    // Where a cut is not safe: the caller prints the parsed value instead.
    assert_eq!(with("<sip:a@h>;tag=\"f4\"", "<sip:b@h>").0, None);
    assert_eq!(with("<sip:a@h>;tag=f5", "<sip:b@h>;x=1").1, None);
    let folded = parse(
        "INVITE sip:h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>
 ;tag=f6
To: <sip:b@h>
Call-ID: pt
CSeq: 1 INVITE

",
    )
    .unwrap();
    assert_eq!(folded.party_without_tag(HeaderName::From), None);
    assert_eq!(folded.party_without_tag(HeaderName::Via), None);
}

#[test]
fn contact_star_and_absent() {
    let base = "REGISTER sip:h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:a@h>
Call-ID: star
CSeq: 1 REGISTER
";
    let m = parse(&format!("{base}Contact: *\nExpires: 0\n\n")).unwrap();
    assert_eq!(m.contacts().unwrap(), Contacts::Star);
    let m = parse(&format!("{base}\n")).unwrap();
    assert_eq!(m.contacts().unwrap(), Contacts::List(vec![]));
    let m = parse(&format!("{base}Contact: *, <sip:a@h>\n\n")).unwrap();
    assert_eq!(m.contacts().unwrap_err().reason(), "Bad Contact");
}

#[test]
fn via_lists_split_on_commas() {
    let m = parse(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp;received=10.1.1.1, SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKu
Via: SIP/2.0/TCP [::1]:5070;branch=z9hG4bK3
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: vl
CSeq: 1 INVITE

",
    )
    .unwrap();
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].branch(), Some("z9hG4bKu"));
    assert_eq!(vias[2].host, Host::V6(std::net::Ipv6Addr::LOCALHOST));
    assert_eq!(m.branch(), Some("z9hG4bKp"));
    assert_eq!(m.to_tag(), Some("2"));
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.method(), None);
    assert_eq!(m.request_uri_str(), None);
}

#[test]
fn top_via_without_branch_before_comma() {
    let m = parse(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP a.example, SIP/2.0/UDP b.example;branch=z9hG4bKb
From: <sip:a@h>;tag=1
To: <sip:b@h>
Call-ID: nb
CSeq: 1 BYE

",
    )
    .unwrap();
    assert_eq!(m.branch(), None);
    assert_eq!(m.top_via().unwrap().branch(), None);
}

#[test]
fn refer_to_attended_and_blind() {
    let base = "REFER sip:b@h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: sip:1001@h;tag=x
To: sip:1002@h;tag=y
Call-ID: refer
CSeq: 5 REFER
";
    let m = parse(&format!(
        "{base}Refer-To: <sip:agent2@10.0.0.7:5062?Require=replaces&Replaces=CALLID%3Bto-tag%3DT%3Bfrom-tag%3DF>\n\n"
    ))
    .unwrap();
    let rt = m.refer_to().unwrap().unwrap();
    assert_eq!(rt.uri.host_port(), "10.0.0.7:5062");
    assert_eq!(rt.uri.header("Require").as_deref(), Some("replaces"));
    let r = rt.uri.replaces().unwrap().unwrap();
    assert_eq!(
        r,
        Replaces {
            call_id: "CALLID".into(),
            to_tag: "T".into(),
            from_tag: "F".into(),
            early_only: false
        }
    );
    // From/To without <>: tag is a header parameter.
    assert_eq!(m.from_tag(), Some("x"));
    assert_eq!(m.to_tag(), Some("y"));
    assert_eq!(m.from().unwrap().tag(), Some("x"));
    assert!(m.to().unwrap().uri.params.is_empty());

    let m = parse(&format!("{base}Refer-To: sip:agent2@10.0.0.7:5062\n\n")).unwrap();
    let rt = m.refer_to().unwrap().unwrap();
    assert_eq!(rt.uri.user_str(), "agent2");
    assert_eq!(rt.uri.port, Some(5062));
    assert!(rt.uri.replaces().unwrap().is_none());
}

#[test]
fn replaces_header() {
    let m = parse(
        "INVITE sip:b@h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>
Call-ID: rep
CSeq: 1 INVITE
Replaces: abc@h;to-tag=T;from-tag=F;early-only

",
    )
    .unwrap();
    let r = m.replaces().unwrap().unwrap();
    assert_eq!(r.call_id, "abc@h");
    assert!(r.early_only);
}

#[test]
fn reason_phrase_kept_exactly() {
    let resp = |line: &str| {
        parse(&format!(
            "{line}
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: rp
CSeq: 1 INVITE

"
        ))
    };
    assert_eq!(
        resp("SIP/2.0 183 Session Progress").unwrap().reason(),
        Some("Session Progress")
    );
    assert_eq!(
        resp("SIP/2.0 486 Busy  Here ").unwrap().reason(),
        Some("Busy  Here ")
    );
    assert_eq!(resp("SIP/2.0 200 ").unwrap().reason(), Some(""));
    assert_eq!(resp("SIP/2.0 200").unwrap().reason(), Some(""));
    assert_eq!(resp("SIP/2.0 99 Low").unwrap_err(), ParseError::BadStatus);
    assert_eq!(resp("SIP/2.0 700 High").unwrap_err(), ParseError::BadStatus);
    assert_eq!(resp("SIP/2.0 20x OK").unwrap_err(), ParseError::BadStatus);
    assert_eq!(resp("SIP/2.0 2000 OK").unwrap_err(), ParseError::BadStatus);
    assert_eq!(resp("SIP/3.0 200 OK").unwrap_err(), ParseError::BadVersion);
}

const HEAD: &str = "MESSAGE sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: bin\r\nCSeq: 1 MESSAGE\r\nContent-Type: application/octet-stream\r\n";

#[test]
fn binary_body_untouched_and_content_length_honoured() {
    let body: Vec<u8> = (0u8..=255).collect();
    let mut raw = format!("{HEAD}Content-Length: 256\r\n\r\n").into_bytes();
    raw.extend_from_slice(&body);
    let m = SipMessage::parse(Bytes::from(raw.clone())).unwrap();
    assert_eq!(&m.body()[..], &body[..]);

    // A longer datagram is truncated to Content-Length (§18.3).
    raw.extend_from_slice(b"trailing junk");
    let m = SipMessage::parse(Bytes::from(raw)).unwrap();
    assert_eq!(m.body().len(), 256);

    // Compact `l:`.
    let raw = format!("{HEAD}l: 3\r\n\r\nabcdef");
    let m = SipMessage::parse(Bytes::from(raw)).unwrap();
    assert_eq!(&m.body()[..], b"abc");

    // Without Content-Length the datagram's rest is the body.
    let raw = format!("{HEAD}\r\nrest");
    assert_eq!(
        &SipMessage::parse(Bytes::from(raw)).unwrap().body()[..],
        b"rest"
    );
}

#[test]
fn content_length_errors() {
    let short = format!("{HEAD}Content-Length: 10\r\n\r\nabc");
    let e = SipMessage::parse(Bytes::from(short)).unwrap_err();
    assert_eq!(e, ParseError::ContentLengthMismatch);
    assert_eq!(e.reason(), "Content-Length mismatch");
    let two = format!("{HEAD}Content-Length: 1\r\nl: 2\r\n\r\nab");
    assert_eq!(
        SipMessage::parse(Bytes::from(two)).unwrap_err(),
        ParseError::ContentLengthMismatch
    );
    let bad = format!("{HEAD}Content-Length: -1\r\n\r\n");
    assert_eq!(
        SipMessage::parse(Bytes::from(bad)).unwrap_err().reason(),
        "Bad Content-Length"
    );
    let huge = format!("{HEAD}Content-Length: 99999999999\r\n\r\n");
    assert_eq!(
        SipMessage::parse(Bytes::from(huge)).unwrap_err().reason(),
        "Bad Content-Length"
    );
}

#[test]
fn missing_mandatory_headers() {
    let full = [
        (
            "Via",
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
            "Missing Via",
        ),
        ("From", "From: <sip:a@h>;tag=1", "Missing From"),
        ("To", "To: <sip:b@h>", "Missing To"),
        ("Call-ID", "Call-ID: x", "Missing Call-ID"),
        ("CSeq", "CSeq: 1 OPTIONS", "Missing CSeq"),
    ];
    for (skip, _, reason) in full {
        let mut s = String::from("OPTIONS sip:b@h SIP/2.0\n");
        for (name, line, _) in full {
            if name != skip {
                s.push_str(line);
                s.push('\n');
            }
        }
        s.push('\n');
        let e = parse(&s).unwrap_err();
        assert_eq!(e.reason(), reason, "{skip}");
        assert_eq!(e.status_code(), 400);
    }
}

fn with_line(line: &str) -> Result<SipMessage, ParseError> {
    parse(&format!(
        "OPTIONS sip:b@h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>
{line}

"
    ))
}

#[test]
fn bad_key_headers() {
    let reason = |l: &str| with_line(l).unwrap_err().reason();
    assert_eq!(reason("Call-ID: x\nCSeq: one OPTIONS"), "Bad CSeq");
    assert_eq!(reason("Call-ID: x\nCSeq: 1 INVITE"), "CSeq Method Mismatch");
    assert_eq!(reason("Call-ID: a b\nCSeq: 1 OPTIONS"), "Bad Call-ID");
    assert_eq!(reason("Call-ID:\nCSeq: 1 OPTIONS"), "Bad Call-ID");
    // ACK and CANCEL CSeq are left to the transaction user.
    let m = parse(
        "ACK sip:b@h SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: x
CSeq: 1 INVITE

",
    )
    .unwrap();
    assert_eq!(m.cseq().method, Method::Invite);
}

#[test]
fn bad_from_to_via_values() {
    let msg = |from: &str, via: &str| {
        parse(&format!(
            "OPTIONS sip:b@h SIP/2.0\nVia: {via}\nFrom: {from}\nTo: <sip:b@h>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n"
        ))
    };
    assert_eq!(
        msg("<sip:a@h;tag=1", "SIP/2.0/UDP h").unwrap_err().reason(),
        "Bad From"
    );
    assert_eq!(
        msg("\"open <sip:a@h>", "SIP/2.0/UDP h")
            .unwrap_err()
            .reason(),
        "Bad From"
    );
    assert_eq!(msg("", "SIP/2.0/UDP h").unwrap_err().reason(), "Bad From");
    assert_eq!(msg("<sip:a@h>", "").unwrap_err().reason(), "Bad Via");
    // Syntax beyond the fast-path scan is reported by the typed accessor.
    let m = msg("<sip:a@h>;tag=1", "SIP/9/UDP h;branch=z9hG4bK1").unwrap();
    assert_eq!(m.top_via().unwrap_err().reason(), "Bad Via");
    assert_eq!(m.vias().unwrap_err().reason(), "Bad Via");
    let m = msg("<http://x>;tag=1", "SIP/2.0/UDP h").unwrap();
    assert_eq!(m.from().unwrap_err().reason(), "Bad From");
}

#[test]
fn malformed_lines_and_start_lines() {
    assert_eq!(parse("").unwrap_err(), ParseError::Empty);
    assert_eq!(parse("\n\n").unwrap_err(), ParseError::Empty);
    assert_eq!(
        SipMessage::parse(Bytes::from_static(b"OPTIONS sip:b@h SIP/2.0")).unwrap_err(),
        ParseError::Unterminated
    );
    assert_eq!(
        with_line("Call-ID: x\nCSeq: 1 OPTIONS\nNoColonHere").unwrap_err(),
        ParseError::BadHeaderLine
    );
    assert_eq!(
        with_line("Call-ID: x\nCSeq: 1 OPTIONS\nBad Name: v").unwrap_err(),
        ParseError::BadHeaderLine
    );
    assert_eq!(
        parse(" folded-first: x\n\n").unwrap_err(),
        ParseError::BadStartLine
    );
    assert_eq!(
        parse("OPTIONS sip:b@h SIP/2.0\n folded-first\n\n").unwrap_err(),
        ParseError::BadHeaderLine
    );
    let unterminated = "OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
    assert_eq!(
        SipMessage::parse(Bytes::from(unterminated))
            .unwrap_err()
            .reason(),
        "Unterminated Header Section"
    );
    let start = |l: &str| {
        parse(&format!("{l}\nVia: SIP/2.0/UDP h\nFrom: <sip:a@h>\nTo: <sip:b@h>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n"))
    };
    assert_eq!(
        start("OPTIONS sip:b@h").unwrap_err(),
        ParseError::BadStartLine
    );
    assert_eq!(
        start("OPTIONS sip:b@h SIP/2.1").unwrap_err(),
        ParseError::BadVersion
    );
    assert_eq!(
        start("OPTIONS sip:b@h HTTP/1.1").unwrap_err(),
        ParseError::BadStartLine
    );
    assert_eq!(
        start("OPT:IONS sip:b@h SIP/2.0").unwrap_err(),
        ParseError::BadMethod
    );
    assert_eq!(
        start("OPTIONS nocolon SIP/2.0").unwrap_err().reason(),
        "Bad Request-URI"
    );
    assert_eq!(
        start("OPTIONS sip:a b SIP/2.0").unwrap_err().reason(),
        "Bad Request-URI"
    );
    assert_eq!(
        start("OPTIONS sip: SIP/2.0").unwrap_err().reason(),
        "Bad Request-URI"
    );
    assert!(start("OPTIONS sip:b@h sip/2.0").is_ok());
}

#[test]
fn bad_uri_in_request_line_reported_on_demand() {
    let m = parse("OPTIONS sip:[::1 SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@h>\nTo: <sip:b@h>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n").unwrap();
    assert_eq!(m.request_uri().unwrap_err().reason(), "Bad Request-URI");
}

#[test]
fn leading_crlf_and_bare_lf_tolerated() {
    let m = SipMessage::parse(Bytes::from_static(
        b"\r\n\r\nOPTIONS sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKlf\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: lf\nCSeq: 1 OPTIONS\n\n",
    ))
    .unwrap();
    assert_eq!(m.branch(), Some("z9hG4bKlf"));
    assert_eq!(m.call_id(), "lf");
}

#[test]
fn too_many_headers() {
    let mut s = String::from("OPTIONS sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@h>\nTo: <sip:b@h>\nCall-ID: x\nCSeq: 1 OPTIONS\n");
    for i in 0..MAX_HEADERS {
        s.push_str(&format!("X-H{i}: v\n"));
    }
    s.push('\n');
    let e = parse(&s).unwrap_err();
    assert_eq!(e, ParseError::TooManyHeaders);
    assert_eq!(e.reason(), "Too many headers");
}

#[test]
fn non_utf8_header_rejected_but_binary_body_fine() {
    let mut raw = b"OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nX: ".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        SipMessage::parse(Bytes::from(raw)).unwrap_err().reason(),
        "Bad Header Encoding"
    );
}

#[test]
fn header_values_and_numbers() {
    let m = with_line("Call-ID: x\nCSeq: 1 OPTIONS\nRoute: <sip:p1@h;lr>, <sip:p2@h;lr>\nRoute: <sip:p3@h;lr>\nRecord-Route: <sip:rr@h;lr>\nMax-Forwards: 7x\nExpires: 99999999999").unwrap();
    assert_eq!(m.header_values(HeaderName::Route).count(), 2);
    let routes = m.routes().unwrap();
    assert_eq!(
        routes.iter().map(|r| r.uri.user_str()).collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );
    assert_eq!(m.record_routes().unwrap().len(), 1);
    assert_eq!(m.max_forwards().unwrap_err().reason(), "Bad Max-Forwards");
    assert_eq!(m.expires().unwrap_err().reason(), "Bad Expires");
    assert_eq!(m.header_values(HeaderName::Other).count(), 0);
}

#[test]
fn bare_cr_inside_a_line_is_rejected() {
    let e = with_line("Call-ID: x\nCSeq: 1 OPTIONS\nSupported: timer,\rContent-Length: 99")
        .unwrap_err();
    assert_eq!(e, ParseError::BadHeaderLine);
    let e =
        SipMessage::parse(Bytes::from_static(b"OPTIONS sip:b@h\rX SIP/2.0\r\n\r\n")).unwrap_err();
    assert_eq!(e, ParseError::BadStartLine);
    // A CR with no line feed anywhere after it: the head never ends.
    let e =
        SipMessage::parse(Bytes::from_static(b"OPTIONS sip:b@h SIP/2.0\r\nVia: x\r")).unwrap_err();
    assert_eq!(e, ParseError::Unterminated);
}

/// RFC 3261 §20.10 / RFC 4475 §3.1.2.13: a From, To or Contact URI with `?headers` must be
/// in `<>`; `parse` refuses the bare form naming the header, accepts the bracketed one.
/// Refer-To is read liberally (a bare URI with `?Replaces=` still works).
#[test]
fn uri_headers_outside_angle_brackets() {
    let msg = |from: &str, to: &str, contact: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1
From: {from};tag=1
To: {to}
Call-ID: uh
CSeq: 1 REGISTER
Contact: {contact}

"
        )
    };
    let bare = "sip:user@example.com?Route=%3Csip:sip.example.com%3E";
    let bracketed = format!("<{bare}>");
    let plain = "sip:user@example.com";
    for (m, header) in [
        (msg(bare, plain, plain), HeaderName::From),
        (msg(plain, bare, plain), HeaderName::To),
        (msg(plain, plain, bare), HeaderName::Contact),
        (
            msg(plain, plain, &format!("<sip:a@h>;q=0.5, {bare};expires=60")),
            HeaderName::Contact,
        ),
    ] {
        let e = parse(&m).unwrap_err();
        assert_eq!(e, ParseError::UnbracketedUriHeaders(header), "{m}");
        assert_eq!(e.status_code(), 400);
    }
    assert_eq!(
        parse(&msg(plain, plain, bare)).unwrap_err().reason(),
        "Contact URI with headers must be in angle brackets"
    );
    assert_eq!(
        parse(&msg(bare, plain, plain)).unwrap_err().reason(),
        "From URI with headers must be in angle brackets"
    );

    let ok = parse(&msg(&bracketed, &bracketed, &bracketed)).unwrap();
    assert_eq!(ok.from_tag(), Some("1"));
    assert_eq!(ok.to().unwrap().uri.headers.len(), 1);
    let Contacts::List(list) = ok.contacts().unwrap() else {
        panic!("star");
    };
    assert_eq!(
        list[0].uri.header("Route").as_deref(),
        Some("<sip:sip.example.com>")
    );
    // A `?` elsewhere (a quoted display name, the Call-ID) is not a URI's.
    let m =
        msg("\"who?\" <sip:a@h>", plain, "\"x?\" <sip:b@h>").replace("Call-ID: uh", "Call-ID: u?h");
    assert!(parse(&m).is_ok(), "{m}");

    let refer = |value: &str| {
        with_line(&format!("Call-ID: rf\nCSeq: 2 OPTIONS\nRefer-To: {value}")).unwrap()
    };
    let bare_attended = "sip:agent2@10.0.0.7?Replaces=c1%3Bto-tag%3DT%3Bfrom-tag%3DF";
    for value in [bare_attended.to_owned(), format!("<{bare_attended}>")] {
        let rt = refer(&value).refer_to().unwrap().unwrap();
        assert_eq!(rt.uri.replaces().unwrap().unwrap().call_id, "c1", "{value}");
    }
}
