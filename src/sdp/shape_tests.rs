use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::sdp::{inspect, SdpError};

/// What SIPp's default UAC sends, and most softphones: the five per-call fields filled in.
fn offer(id: &str, version: &str, origin: &str, connection: &str, port: &str) -> String {
    format!(
        "v=0\r\no=user1 {id} {version} IN IP4 {origin}\r\ns=-\r\nc=IN IP4 {connection}\r\n\
         t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn shape(text: &str) -> Vec<u8> {
    let mut key = Vec::new();
    shape_into(text, &mut key);
    key
}

/// The base offer with a session id one above u64::MAX, which webrtc-sdp refuses.
fn above_u64_id() -> String {
    offer(
        "18446744073709551616",
        "1",
        "127.0.0.1",
        "127.0.0.1",
        "6000",
    )
}

fn base() -> String {
    offer("53655765", "2353687637", "127.0.0.1", "127.0.0.1", "6000")
}

#[test]
fn the_fields_that_change_per_call_are_masked() {
    let other = offer(
        "1",
        "9999999999999999999",
        "10.1.2.3",
        "192.0.2.77",
        "65535",
    );
    assert_eq!(shape(&base()), shape(&other));
    let masks = shape(&base()).iter().filter(|b| **b == MASK).count();
    assert_eq!(masks, 5);
    // Everything else is kept byte for byte.
    let kept: Vec<u8> = shape(&base()).into_iter().filter(|b| *b != MASK).collect();
    let unmasked = base()
        .replace("53655765", "")
        .replace("2353687637", "")
        .replace("127.0.0.1", "")
        .replace("6000", "");
    assert_eq!(kept, unmasked.as_bytes());

    let v6 = "v=0\no=- 1 2 IN IP6 2001:db8::1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n\
              c=IN IP6 ::1\n";
    let v6_other = "v=0\no=- 7 8 IN IP6 ::ffff:1.2.3.4\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\n\
                    c=IN IP6 fe80::2\n";
    assert_eq!(shape(v6), shape(v6_other));
}

#[test]
fn fields_whose_value_webrtc_sdp_judges_are_kept() {
    let base_shape = shape(&base());
    let kept = [
        // Above u64::MAX, or not a number: webrtc-sdp refuses these.
        above_u64_id(),
        offer("53655765", "12a", "127.0.0.1", "127.0.0.1", "6000"),
        offer("+5", "1", "127.0.0.1", "127.0.0.1", "6000"),
        // An address of the other version than the line says, a name, leading zeros.
        offer("53655765", "1", "::1", "127.0.0.1", "6000"),
        offer("53655765", "1", "127.0.0.1", "::1", "6000"),
        offer("53655765", "1", "127.0.0.1", "media.example.com", "6000"),
        offer("53655765", "1", "010.0.0.1", "127.0.0.1", "6000"),
        offer("53655765", "1", "127.0.0.1", "224.2.1.1/127", "6000"),
        // Above 65535, a port count.
        offer("53655765", "1", "127.0.0.1", "127.0.0.1", "65536"),
        offer("53655765", "1", "127.0.0.1", "127.0.0.1", "6000/2"),
    ];
    for body in &kept {
        assert_ne!(shape(body), base_shape, "{body}");
    }
    // Not an `m=` line as written, so its port is kept.
    let upper = base().replace("m=audio 6000", "M=audio 6000");
    assert_eq!(shape(&upper).iter().filter(|b| **b == MASK).count(), 4);
    // A body that is not all ASCII is kept whole.
    let accented = base().replace("s=-", "s=Réunion");
    assert_eq!(shape(&accented), accented.as_bytes());
}

#[test]
fn an_accepted_shape_is_not_checked_again_and_others_are() {
    let checks = Cell::new(0);
    let check = |_: &str| -> Result<(), ()> {
        checks.set(checks.get() + 1);
        Ok(())
    };
    assert_eq!(check_unless_accepted(&base(), check), Ok(()));
    let next_call = offer("777", "778", "10.0.0.5", "10.0.0.5", "40000");
    assert_eq!(check_unless_accepted(&next_call, check), Ok(()));
    assert_eq!(
        checks.get(),
        1,
        "the second call's offer has the first one's shape"
    );

    let overflow = above_u64_id();
    assert_eq!(check_unless_accepted(&overflow, check), Ok(()));
    assert_eq!(checks.get(), 2);

    // A refusal is not remembered.
    let refused = base().replace("a=ptime:20", "a=ptime:30");
    let refuse = |_: &str| -> Result<(), ()> {
        checks.set(checks.get() + 1);
        Err(())
    };
    assert_eq!(check_unless_accepted(&refused, refuse), Err(()));
    assert_eq!(check_unless_accepted(&refused, refuse), Err(()));
    assert_eq!(checks.get(), 4);

    // Under webrtc-sdp's 51-byte minimum: no shape, checked every time. These two would
    // have one shape, and webrtc-sdp accepts the first (67 bytes) and refuses the second.
    let long_numbers =
        "v=0\r\no=- 1234567890 1234567890 IN IP4 111.111.111.111\r\ns=-\r\nt=0 0\r\n";
    let short_numbers = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\n";
    assert_eq!(shape(long_numbers), shape(short_numbers));
    assert!(webrtc_accepts(long_numbers) && !webrtc_accepts(short_numbers));
    assert_eq!(check_unless_accepted(long_numbers, check), Ok(()));
    assert_eq!(check_unless_accepted(short_numbers, refuse), Err(()));
    assert_eq!(checks.get(), 6);

    // Too long to remember: checked every time.
    let long = base() + &"a=x-pad:0123456789\r\n".repeat(110);
    assert!(long.len() > MAX_SHAPE_BYTES);
    assert_eq!(check_unless_accepted(&long, check), Ok(()));
    assert_eq!(check_unless_accepted(&long, check), Ok(()));
    assert_eq!(checks.get(), 8);
}

#[test]
fn inspect_still_refuses_what_webrtc_sdp_refuses_after_a_similar_offer_passed() {
    assert!(inspect(base().as_bytes()).is_ok());
    // handover's own line check lets these through; webrtc-sdp does not, and must still see
    // them although an offer that differs only there was accepted just before.
    let refused = [
        above_u64_id(),
        offer("53655765", "1", "127.0.0.1", "::1", "6000"),
        offer("53655765", "1", "::1", "127.0.0.1", "6000"),
    ];
    for body in &refused {
        assert!(
            matches!(inspect(body.as_bytes()), Err(SdpError::Rejected { .. })),
            "{body}"
        );
    }
    let next_call = offer("1", "2", "198.51.100.7", "198.51.100.7", "0");
    assert!(inspect(next_call.as_bytes()).unwrap().parser_checked);
}

/// Values for one field: mostly of the kind that is masked, some of kinds that are not.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,19}",
        1 => "[1-9][0-9]{19}",
        1 => "[0-9]{0,3}[a-f+ -][0-9]{0,3}",
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,5}",
        1 => "[0-9]{6}",
        1 => "[0-9]{1,4}/[0-9]",
        1 => "[0-9]{0,2}[a-z ][0-9]{0,2}",
    ]
}

/// An address type and an address: mostly a literal of that type, sometimes not.
fn typed_address() -> impl Strategy<Value = (&'static str, String)> {
    let v4 = || any::<Ipv4Addr>().prop_map(|a| a.to_string());
    let v6 = || any::<Ipv6Addr>().prop_map(|a| a.to_string());
    let other = || {
        prop_oneof![
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,3})?",
            "[a-z]{1,8}(\\.[a-z]{1,5}){0,2}",
            "[0-9a-f:]{0,12}",
        ]
    };
    prop_oneof![
        6 => (prop_oneof![Just("IP4"), Just("ip4")], v4()),
        4 => (Just("IP6"), v6()),
        1 => (Just("IP4"), v6()),
        1 => (Just("IP6"), v4()),
        1 => (Just("IPX"), v4()),
        2 => (prop_oneof![Just("IP4"), Just("IP6")], other()),
    ]
}

/// The per-call fields of one offer.
#[derive(Debug, Clone)]
struct Fields {
    id: String,
    version: String,
    origin_type: &'static str,
    origin: String,
    connection_type: &'static str,
    connection: String,
    port: String,
    second_port: String,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (number(), number(), typed_address()),
        (typed_address(), port(), port()),
    )
        .prop_map(
            |((id, version, origin), (connection, port, second_port))| Fields {
                id,
                version,
                origin_type: origin.0,
                origin: origin.1,
                connection_type: connection.0,
                connection: connection.1,
                port,
                second_port,
            },
        )
}

/// Bodies of several layouts (session or media `c=`, two sections, SRTP, blank and odd
/// spacing, no media and about 51 bytes) with the fields filled in.
fn body(layout: usize, f: &Fields) -> String {
    let o = format!(
        "o=- {} {} IN {} {}",
        f.id, f.version, f.origin_type, f.origin
    );
    let c = format!("c=IN {} {}", f.connection_type, f.connection);
    match layout % 5 {
        0 => format!(
            "v=0\r\n{o}\r\ns=-\r\n{c}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8\r\na=sendrecv\r\n",
            f.port
        ),
        1 => format!(
            "v=0\n{o}\ns=call\nt=0 0\nm=audio {} RTP/SAVP 0\n{c}\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n\
             m=video {} RTP/AVP 99\n{c}\na=rtpmap:99 H264/90000\n",
            f.port, f.second_port
        ),
        2 => format!(
            "v=0\r\n{o}  \r\ns=-\r\n\r\n{c}\r\nt=0 0\r\nm=audio  {} RTP/AVP 0\r\n\
             m=audio {}\tRTP/AVP 8\r\n",
            f.port, f.second_port
        ),
        // Around webrtc-sdp's 51-byte minimum, depending on the fields' lengths.
        4 => format!("v=0\r\n{o}\r\ns=-\r\nt=0 0\r\n"),
        _ => format!(
            "v=0\r\n{o}\r\ns=-\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n{c}\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\nm=audio {} RTP/AVP 0\r\n{c}",
            f.port, f.second_port
        ),
    }
}

/// The shape the cache would remember `text` under, if any.
fn remembered_shape(text: &str) -> Option<Vec<u8>> {
    let mut accepted = AcceptedShapes::new();
    accepted.shape(text).map(|_| accepted.key)
}

fn webrtc_accepts(text: &str) -> bool {
    webrtc_sdp::parse_sdp(text, false).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The claim the cache rests on: two bodies of one shape get one verdict from webrtc-sdp.
    #[test]
    fn bodies_of_one_shape_get_one_verdict(
        layout in 0usize..5,
        a in fields(),
        b in fields(),
        share in proptest::collection::vec(any::<bool>(), 8),
    ) {
        // Let each field of b be a's in some cases, so that many pairs share a shape.
        let pick = |i: usize, theirs: &String, ours: &String| {
            if share.get(i).copied().unwrap_or(false) { theirs.clone() } else { ours.clone() }
        };
        let b = Fields {
            id: pick(0, &a.id, &b.id),
            version: pick(1, &a.version, &b.version),
            origin_type: if share[2] { a.origin_type } else { b.origin_type },
            origin: pick(3, &a.origin, &b.origin),
            connection_type: if share[4] { a.connection_type } else { b.connection_type },
            connection: pick(5, &a.connection, &b.connection),
            port: pick(6, &a.port, &b.port),
            second_port: pick(7, &a.second_port, &b.second_port),
        };
        let (body_a, body_b) = (body(layout, &a), body(layout, &b));
        let shape_a = remembered_shape(&body_a);
        if shape_a.is_some() && shape_a == remembered_shape(&body_b) {
            prop_assert_eq!(webrtc_accepts(&body_a), webrtc_accepts(&body_b), "{} / {}", body_a, body_b);
        }
    }
}
