use proptest::prelude::*;

use super::*;
use crate::sdp::inspect::tests::{LINPHONE, NULL_C_HOLD, PJSUA, SESSION_SENDONLY, SRTP, T38};
use crate::sdp::{inspect, SdpSummary};

const ALL: [Direction; 4] = [
    Direction::SendRecv,
    Direction::SendOnly,
    Direction::RecvOnly,
    Direction::Inactive,
];

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn summary(b: &[u8]) -> SdpSummary {
    inspect(b).unwrap()
}

fn is_direction_line(l: &str) -> bool {
    l.strip_prefix("a=")
        .and_then(|v| Direction::from_attribute(v.as_bytes()))
        .is_some()
}

/// Lines other than direction attributes, with their terminators.
fn other_lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n')
        .filter(|l| !is_direction_line(l.trim_end()))
        .collect()
}

/// (index, before, after) of the lines that differ; both must have as many lines.
fn changed_lines<'a>(a: &'a str, b: &'a str) -> Vec<(usize, &'a str, &'a str)> {
    let (la, lb): (Vec<_>, Vec<_>) = (
        a.split_inclusive('\n').collect(),
        b.split_inclusive('\n').collect(),
    );
    assert_eq!(la.len(), lb.len(), "line count changed:\n{a}\n---\n{b}");
    la.into_iter()
        .zip(lb)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| (i, x, y))
        .collect()
}

#[test]
fn pjsua_hold_then_resume_changes_one_line() {
    let held = set_direction(PJSUA.as_bytes(), Direction::SendOnly);
    assert_eq!(
        changed_lines(PJSUA, text(&held)),
        [(10, "a=sendrecv\r\n", "a=sendonly\r\n")]
    );
    assert_eq!(summary(&held).media[0].direction, Direction::SendOnly);
    let resumed = set_direction(&held, Direction::SendRecv);
    assert_eq!(
        text(&resumed),
        PJSUA,
        "resume restores the original byte for byte"
    );
}

#[test]
fn linphone_hold_appends_to_each_section_and_keeps_opus_fmtp() {
    let held = set_direction(LINPHONE.as_bytes(), Direction::SendOnly);
    let held = text(&held);
    assert!(held.contains("a=fmtp:96 useinbandfec=1; stereo=0\r\n"));
    assert!(held.contains("a=rtcp-fb:* ccm tmmbr\r\na=sendonly\r\nm=video 9078"));
    assert!(held.ends_with("a=rtcp-fb:97 ccm fir\r\na=sendonly\r\n"));
    assert_eq!(held.len(), LINPHONE.len() + 2 * "a=sendonly\r\n".len());
    assert_eq!(other_lines(held), other_lines(LINPHONE));
    let s = summary(held.as_bytes());
    assert!(s.media.iter().all(|m| m.direction == Direction::SendOnly));
    // Resume rewrites the inserted lines in place; nothing else moves.
    let resumed = set_direction(held.as_bytes(), Direction::SendRecv);
    let changed = changed_lines(held, text(&resumed));
    assert_eq!(changed.len(), 2);
    assert!(changed
        .iter()
        .all(|(_, a, b)| *a == "a=sendonly\r\n" && *b == "a=sendrecv\r\n"));
}

#[test]
fn srtp_crypto_lines_survive_hold() {
    let held = set_direction(SRTP.as_bytes(), Direction::SendOnly);
    assert_eq!(
        changed_lines(SRTP, text(&held)),
        [(13, "a=sendrecv\r\n", "a=sendonly\r\n")]
    );
    assert!(text(&held).contains(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n"
    ));
}

#[test]
fn t38_port_zero_section_is_left_alone() {
    let held = set_direction(T38.as_bytes(), Direction::SendOnly);
    let expected = T38.to_owned() + "a=sendonly\r\n";
    assert_eq!(text(&held), expected);
    let s = summary(&held);
    assert_eq!(
        s.media[0].direction,
        Direction::SendRecv,
        "port 0: untouched"
    );
    assert_eq!(s.media[1].direction, Direction::SendOnly);
}

#[test]
fn session_level_direction_is_rewritten_in_place() {
    let resumed = set_direction(SESSION_SENDONLY.as_bytes(), Direction::SendRecv);
    assert_eq!(
        changed_lines(SESSION_SENDONLY, text(&resumed)),
        [(5, "a=sendonly\r\n", "a=sendrecv\r\n")]
    );
    let held = set_direction(SESSION_SENDONLY.as_bytes(), Direction::Inactive);
    let changed = changed_lines(SESSION_SENDONLY, text(&held));
    assert_eq!(changed.len(), 2, "session and video attributes");
    let s = summary(&held);
    assert_eq!(s.session_direction, Some(Direction::Inactive));
    assert!(s.media.iter().all(|m| m.direction == Direction::Inactive));
}

#[test]
fn lf_only_and_unterminated_bodies() {
    let lf = NULL_C_HOLD.replace("\r\n", "\n");
    let held = set_direction(lf.as_bytes(), Direction::SendOnly);
    assert_eq!(text(&held), lf.clone() + "a=sendonly\n");

    let open = NULL_C_HOLD.trim_end();
    let held = set_direction(open.as_bytes(), Direction::SendOnly);
    assert_eq!(text(&held), NULL_C_HOLD.to_owned() + "a=sendonly\r\n");

    // A direction line without a line end keeps having none.
    let tail = PJSUA.to_owned() + "a=inactive";
    let held = set_direction(tail.as_bytes(), Direction::SendOnly);
    assert!(text(&held).ends_with("0c4b5e7d23cd4ed2\r\na=sendonly"));
}

#[test]
fn insertion_goes_before_trailing_blank_lines() {
    let body = NULL_C_HOLD.to_owned() + "\r\n";
    let held = set_direction(body.as_bytes(), Direction::RecvOnly);
    assert_eq!(text(&held), NULL_C_HOLD.to_owned() + "a=recvonly\r\n\r\n");
}

#[test]
fn every_direction_on_every_fixture() {
    for base in [PJSUA, LINPHONE, SRTP, T38, SESSION_SENDONLY, NULL_C_HOLD] {
        for d in ALL {
            let out = set_direction(base.as_bytes(), d);
            let s = summary(&out);
            for m in s.media.iter().filter(|m| !m.is_rejected()) {
                assert_eq!(m.direction, d, "{base}");
            }
            assert_eq!(other_lines(text(&out)), other_lines(base));
            // Idempotent.
            assert_eq!(set_direction(&out, d), out);
        }
    }
}

fn origin_line(b: &[u8]) -> String {
    text(&Bytes::copy_from_slice(b))
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap()
        .to_owned()
}

#[test]
fn origin_version_moves_only_when_the_body_changes() {
    let mut leg = LegSdpOrigin::new(7_000_000_001);
    assert_eq!(leg.version(), None);
    let first = leg.apply(PJSUA.as_bytes(), false);
    assert_eq!(origin_line(&first), "o=- 7000000001 1 IN IP4 192.168.1.20");
    assert_eq!(
        changed_lines(PJSUA, text(&first)).len(),
        1,
        "only o= differs"
    );
    assert_eq!(leg.version(), Some(INITIAL_VERSION));

    // Identical re-send (e.g. a session refresh): same version, same bytes.
    assert_eq!(leg.apply(PJSUA.as_bytes(), false), first);
    // The far party bumped its own o= version without changing anything: still the same.
    let bumped = PJSUA.replace("3946285231 3946285231", "3946285231 3946285232");
    assert_eq!(leg.apply(bumped.as_bytes(), false), first);

    let held = leg.apply(&set_direction(&first, Direction::SendOnly), false);
    assert_eq!(origin_line(&held), "o=- 7000000001 2 IN IP4 192.168.1.20");
    assert_eq!(leg.apply(&held, false), held, "re-send of the hold");
    let resumed = leg.apply(&set_direction(&held, Direction::SendRecv), false);
    assert_eq!(
        origin_line(&resumed),
        "o=- 7000000001 3 IN IP4 192.168.1.20"
    );
    // `changed` forces a new version on identical content.
    let forced = leg.apply(&resumed, true);
    assert_eq!(origin_line(&forced), "o=- 7000000001 4 IN IP4 192.168.1.20");
    assert_eq!(leg.session_id(), 7_000_000_001);
    assert_eq!(leg.last_sent(), Some(forced));
}

#[test]
fn origin_stays_stable_when_the_far_party_changes() {
    let mut leg = LegSdpOrigin::new(55).with_username("handover").unwrap();
    let from_agent1 = leg.apply(PJSUA.as_bytes(), false);
    let from_agent2 = leg.apply(LINPHONE.as_bytes(), false);
    assert_eq!(
        origin_line(&from_agent1),
        "o=handover 55 1 IN IP4 192.168.1.20"
    );
    // Agent 2's body is new content, but the o= address stays the leg's first one.
    assert_eq!(
        origin_line(&from_agent2),
        "o=handover 55 2 IN IP4 192.168.1.20"
    );
    let rest: Vec<_> = changed_lines(LINPHONE, text(&from_agent2));
    assert_eq!(
        rest,
        [(
            1,
            "o=alice 1613 3524 IN IP4 192.168.1.30\r\n",
            "o=handover 55 2 IN IP4 192.168.1.20\r\n"
        )]
    );
    assert!(summary(&from_agent2).parser_checked);
}

#[test]
fn two_legs_keep_separate_origins() {
    let mut customer = LegSdpOrigin::new(111);
    let mut agent = LegSdpOrigin::new(222);
    let to_customer = customer.apply(PJSUA.as_bytes(), false);
    let to_agent = agent.apply(SRTP.as_bytes(), false);
    let _ = customer.apply(&set_direction(&to_customer, Direction::SendOnly), false);
    assert_eq!(customer.version(), Some(2));
    assert_eq!(agent.version(), Some(1));
    assert_eq!(origin_line(&to_customer), "o=- 111 1 IN IP4 192.168.1.20");
    assert_eq!(origin_line(&to_agent), "o=- 222 1 IN IP4 203.0.113.5");
    let again = agent.apply(SRTP.as_bytes(), false);
    assert_eq!(again, to_agent);
}

#[test]
fn origin_edge_cases() {
    assert_eq!(
        LegSdpOrigin::new(1).with_username("a b").unwrap_err(),
        InvalidUsername
    );
    assert!(LegSdpOrigin::new(1).with_username("").is_err());
    assert!(LegSdpOrigin::new(1).with_username(&"x".repeat(65)).is_err());

    let mut leg = LegSdpOrigin::new(u64::MAX);
    let no_origin = b"v=0\r\ns=-\r\n";
    assert_eq!(leg.apply(no_origin, false), &no_origin[..]);
    assert_eq!(leg.version(), None);

    let short = "v=0\no=x 1 1\ns=-\n";
    let out = leg.apply(short.as_bytes(), false);
    assert_eq!(
        text(&out),
        format!("v=0\no=- {} 1 IN IP4 0.0.0.0\ns=-\n", u64::MAX)
    );
    // An o= in a media section is not the session origin.
    let late = "v=0\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\no=- 1 1 IN IP4 h\r\n";
    assert_eq!(
        LegSdpOrigin::new(3).apply(late.as_bytes(), false),
        late.as_bytes()
    );
}

#[test]
#[ignore = "measurement, not a check: cargo test -- --ignored --nocapture"]
fn cost_of_a_hold_rewrite() {
    let body = PJSUA.as_bytes();
    let n = 200_000;
    let mut leg = LegSdpOrigin::new(1);
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(set_direction(
            std::hint::black_box(body),
            Direction::SendOnly,
        ));
    }
    let hold = t.elapsed() / n;
    let t = std::time::Instant::now();
    for i in 0..n {
        let d = if i % 2 == 0 {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        std::hint::black_box(leg.apply(&set_direction(body, d), false));
    }
    let hold_and_origin = t.elapsed() / n;
    let t = std::time::Instant::now();
    for _ in 0..n / 10 {
        std::hint::black_box(inspect(std::hint::black_box(body)).ok());
    }
    let inspect_cost = t.elapsed() / (n / 10);
    println!(
        "pjsua SDP {} B: set_direction {hold:?}, set_direction + apply {hold_and_origin:?}, inspect {inspect_cost:?}",
        body.len()
    );
}

proptest! {
    #[test]
    fn editors_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), changed in any::<bool>()) {
        for d in ALL {
            let _ = set_direction(&body, d);
        }
        let mut leg = LegSdpOrigin::new(9);
        let _ = leg.apply(&body, changed);
        let _ = leg.apply(&body, changed);
    }

    #[test]
    fn origin_only_changes_the_o_line(pick in 0usize..4, d in 0usize..4, session_id in any::<u64>()) {
        let base = [PJSUA, LINPHONE, SRTP, T38][pick];
        let edited = set_direction(base.as_bytes(), ALL[d]);
        let mut leg = LegSdpOrigin::new(session_id);
        let out = leg.apply(&edited, false);
        let (a, b) = (text(&edited), text(&out));
        let diff = changed_lines(a, b);
        prop_assert_eq!(diff.len(), 1);
        let expected = format!("o=- {} 1 ", session_id);
        prop_assert!(diff[0].2.starts_with(&expected));
    }
}
