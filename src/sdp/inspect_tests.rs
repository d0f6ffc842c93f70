use proptest::prelude::*;

use super::*;
use crate::sdp::error::LineFault;

pub(crate) const PJSUA: &str = include_str!("../../tests/fixtures/sdp/pjsua-offer.sdp");
pub(crate) const LINPHONE: &str = include_str!("../../tests/fixtures/sdp/linphone-offer.sdp");
pub(crate) const SRTP: &str = include_str!("../../tests/fixtures/sdp/srtp-offer.sdp");
pub(crate) const T38: &str = include_str!("../../tests/fixtures/sdp/t38-reinvite.sdp");

/// Session-level `a=sendonly` with the RFC 2543 null address, and a second section that
/// overrides the direction.
pub(crate) const SESSION_SENDONLY: &str = "v=0\r\n\
o=- 42 43 IN IP4 10.0.0.9\r\n\
s=-\r\n\
c=IN IP4 0.0.0.0\r\n\
t=0 0\r\n\
a=sendonly\r\n\
m=audio 6000 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
m=video 6002 RTP/AVP 99\r\n\
c=IN IP4 10.0.0.9\r\n\
a=rtpmap:99 H264/90000\r\n\
a=sendrecv\r\n";

/// Old-style hold: only the connection address says so.
pub(crate) const NULL_C_HOLD: &str = "v=0\r\n\
o=user 2890844526 2890844527 IN IP4 host.example.com\r\n\
s=-\r\n\
c=IN IP4 0.0.0.0\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8\r\n";

fn only(sdp: &str) -> MediaSummary {
    let s = inspect(sdp.as_bytes()).unwrap();
    assert_eq!(s.media_count(), 1);
    s.media.into_iter().next().unwrap()
}

fn line_fault(body: &str) -> (usize, LineFault) {
    match inspect(body.as_bytes()) {
        Err(SdpError::Line { line, fault }) => (line, fault),
        other => panic!("expected a line fault, got {other:?}"),
    }
}

#[test]
fn pjsua_offer() {
    let s = inspect(PJSUA.as_bytes()).unwrap();
    assert!(s.has_timing && s.parser_checked);
    assert_eq!(s.session_direction, None);
    let m = only(PJSUA);
    assert_eq!(m.kind, MediaKind::Audio);
    assert_eq!((m.port, m.protocol.as_str()), (4000, "RTP/AVP"));
    assert_eq!(
        m.formats,
        ["96", "97", "98", "99", "3", "0", "8", "9", "120", "121", "122"]
    );
    let names: Vec<_> = m.codec_names().collect();
    assert_eq!(
        names,
        [
            "speex",
            "speex",
            "speex",
            "iLBC",
            "GSM",
            "PCMU",
            "PCMA",
            "G722",
            "telephone-event",
            "telephone-event",
            "telephone-event"
        ]
    );
    let dtmf: Vec<_> = m
        .codecs
        .iter()
        .filter(|c| c.name == "telephone-event")
        .map(|c| (c.payload_type, c.clock_rate))
        .collect();
    assert_eq!(dtmf, [(120, 16000), (121, 8000), (122, 32000)]);
    assert_eq!(m.direction, Direction::SendRecv);
    let c = m.connection.unwrap();
    assert_eq!(
        (c.address.as_str(), c.ipv6, c.is_null),
        ("192.168.1.20", false, false)
    );
    assert!(!m.null_connection && !s.is_hold());
}

#[test]
fn linphone_offer_with_opus_and_video() {
    let s = inspect(LINPHONE.as_bytes()).unwrap();
    assert_eq!(s.media_count(), 2);
    let (audio, video) = (&s.media[0], &s.media[1]);
    assert_eq!(
        (audio.kind.clone(), video.kind.clone()),
        (MediaKind::Audio, MediaKind::Video)
    );
    assert_eq!(
        audio.codecs[0],
        Codec {
            payload_type: 96,
            name: "opus".into(),
            clock_rate: 48000,
            channels: Some(2)
        }
    );
    // PT 18 has only an fmtp line: named from the RFC 3551 static table.
    assert!(audio
        .codecs
        .iter()
        .any(|c| c.payload_type == 18 && c.name == "G729"));
    assert_eq!(audio.codecs.len(), 9);
    assert_eq!(video.codec_names().collect::<Vec<_>>(), ["VP8", "H264"]);
    // No direction anywhere: sendrecv; the connection comes from session level.
    assert!(s.media.iter().all(|m| m.direction == Direction::SendRecv));
    assert_eq!(video.connection.as_ref().unwrap().address, "192.168.1.30");
    assert_eq!(s.session_connection, audio.connection);
}

#[test]
fn srtp_offer() {
    let m = only(SRTP);
    assert_eq!(m.protocol, "RTP/SAVP");
    assert_eq!(
        m.codec_names().collect::<Vec<_>>(),
        ["PCMU", "PCMA", "telephone-event"]
    );
    assert_eq!(m.direction, Direction::SendRecv);
}

#[test]
fn t38_reinvite_keeps_both_sections() {
    let s = inspect(T38.as_bytes()).unwrap();
    assert!(s.parser_checked);
    assert_eq!(s.media_count(), 2);
    assert!(s.media[0].is_rejected());
    let fax = &s.media[1];
    assert_eq!(fax.kind, MediaKind::Image);
    assert_eq!((fax.port, fax.protocol.as_str()), (40002, "udptl"));
    assert_eq!(fax.formats, ["t38"]);
    assert!(fax.codecs.is_empty());
}

#[test]
fn session_level_direction_and_null_connection() {
    let s = inspect(SESSION_SENDONLY.as_bytes()).unwrap();
    assert_eq!(s.session_direction, Some(Direction::SendOnly));
    assert_eq!(s.media[0].direction, Direction::SendOnly);
    assert!(s.media[0].null_connection);
    assert_eq!(
        s.media[1].direction,
        Direction::SendRecv,
        "media level wins"
    );
    assert!(!s.media[1].null_connection, "media c= overrides 0.0.0.0");
    // The video section still receives from a real address: not a full hold.
    assert!(!s.is_hold());
}

#[test]
fn rfc2543_hold_is_flagged() {
    let s = inspect(NULL_C_HOLD.as_bytes()).unwrap();
    assert_eq!(s.media[0].direction, Direction::SendRecv);
    assert!(s.media[0].null_connection);
    assert!(s.is_hold());
    let v6 = NULL_C_HOLD.replace("IN IP4 0.0.0.0", "IN IP6 ::");
    let m = only(&v6);
    assert!(m.null_connection && m.connection.unwrap().ipv6);
}

#[test]
fn missing_timing_is_relayed() {
    let body = PJSUA.replace("t=0 0\r\n", "");
    let s = inspect(body.as_bytes()).unwrap();
    assert!(!s.has_timing);
    assert!(s.parser_checked);
    assert_eq!(s.media[0].codecs.len(), 11);
    // webrtc-sdp alone refuses it.
    assert!(webrtc_sdp::parse_sdp(&body, false).is_err());
}

#[test]
fn short_body_is_checked_by_line_rules_only() {
    let body = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\n";
    assert!(body.len() < 51);
    let s = inspect(body.as_bytes()).unwrap();
    assert!(!s.parser_checked);
    assert_eq!(s.media_count(), 0);
}

#[test]
fn informational_lines_and_lf_endings_are_accepted() {
    let body = SRTP
        .replace(
            "s=-\r\n",
            "s=-\r\nu=http://example.com/\r\ne=a@example.com\r\np=+1 555\r\n",
        )
        .replace("t=0 0\r\n", "t=0 0\r\nr=7d 1h 0 25h\r\n")
        .replace("\r\n", "\n");
    let m = only(&body);
    assert_eq!(m.codecs.len(), 3);
}

#[test]
fn refusals_name_the_line() {
    assert_eq!(inspect(b""), Err(SdpError::Empty));
    assert_eq!(inspect(b"v=0\r\n\xff\r\n"), Err(SdpError::NotUtf8));
    let big = vec![b'a'; MAX_SDP_BYTES + 1];
    assert!(matches!(inspect(&big), Err(SdpError::TooLarge { .. })));

    let with_k = PJSUA.replace("t=0 0\r\n", "t=0 0\r\nk=clear:secret\r\n");
    assert_eq!(line_fault(&with_k), (6, LineFault::KeyLine));
    let unknown = PJSUA.replace("b=AS:117", "x=1");
    assert_eq!(line_fault(&unknown), (4, LineFault::UnknownType(b'x')));
    assert_eq!(
        line_fault(&PJSUA.replace("b=AS:117", "b AS 117")).1,
        LineFault::NotTypeValue
    );
    assert_eq!(
        line_fault(&PJSUA.replacen("v=0", "v=1", 1)),
        (1, LineFault::BadVersion)
    );
    assert_eq!(
        line_fault(&PJSUA.replacen("v=0\r\n", "", 1)),
        (1, LineFault::BadVersion)
    );
    let no_origin = PJSUA.replace("o=- 3946285231 3946285231 IN IP4 192.168.1.20\r\n", "");
    assert_eq!(line_fault(&no_origin), (2, LineFault::BadOrigin));
    assert_eq!(inspect(b"v=0\r\n"), Err(SdpError::MissingOrigin));
    let bad_origin = PJSUA.replace("IN IP4 192.168.1.20\r\ns=", "IN XX 192.168.1.20\r\ns=");
    assert_eq!(line_fault(&bad_origin), (2, LineFault::BadOrigin));
    let twice = PJSUA.replace("t=0 0\r\n", "t=0 0\r\ns=again\r\n");
    assert_eq!(line_fault(&twice), (6, LineFault::Repeated));
    let port = PJSUA.replace("m=audio 4000", "m=audio 70000");
    assert_eq!(line_fault(&port), (7, LineFault::BadPort));
    let no_c = PJSUA.replace("c=IN IP4 192.168.1.20\r\n", "");
    assert_eq!(line_fault(&no_c), (7, LineFault::MissingConnection));
    let bad_c = PJSUA.replace("c=IN IP4 192.168.1.20", "c=IN IP4");
    assert_eq!(line_fault(&bad_c), (8, LineFault::BadConnection));
    let bad_map = PJSUA.replace("a=rtpmap:96 speex/16000", "a=rtpmap:96 speex");
    assert_eq!(line_fault(&bad_map), (12, LineFault::BadRtpmap));
}

#[test]
fn format_problems_answer_305() {
    let err = inspect(T38.replace("udptl t38", "udptl").as_bytes()).unwrap_err();
    assert_eq!(
        err,
        SdpError::Line {
            line: 7,
            fault: LineFault::NoFormats
        }
    );
    assert_eq!(
        err.warning_value(),
        "305 handover \"SDP line 7: media line lists no formats\""
    );
}

#[test]
fn webrtc_refusal_becomes_399_with_the_line() {
    let body = PJSUA.replace("b=AS:117", "b=AS:lots");
    let err = inspect(body.as_bytes()).unwrap_err();
    assert!(matches!(err, SdpError::Rejected { .. }), "{err:?}");
    assert_eq!(err.warn_code(), 399);
    let value = err.warning_value();
    assert!(
        value.starts_with("399 handover \"SDP rejected: "),
        "{value}"
    );
    assert!(value.contains("b=AS:lots"), "{value}");
}

#[test]
fn media_count_is_bounded() {
    let mut body = String::from(NULL_C_HOLD);
    for _ in 0..MAX_MEDIA {
        body.push_str("m=audio 0 RTP/AVP 0\r\n");
    }
    assert_eq!(
        inspect(body.as_bytes()),
        Err(SdpError::TooManyMedia { max: MAX_MEDIA })
    );
}

fn sdp_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("v=0".to_owned()),
        Just("o=- 1 2 IN IP4 192.0.2.1".to_owned()),
        Just("s=-".to_owned()),
        Just("t=0 0".to_owned()),
        Just("c=IN IP4 0.0.0.0".to_owned()),
        Just("a=sendonly".to_owned()),
        Just("m=image 4000 udptl t38".to_owned()),
        "[a-z]=[ -~]{0,30}",
        "m=[a-z]{0,6} [0-9/]{0,7} [A-Za-z/]{0,12}( [0-9a-z*]{1,3}){0,4}",
        "a=rtpmap:[0-9]{1,4} [a-zA-Z]{0,5}/[0-9]{0,6}(/[0-9]{0,3})?",
        "c=IN IP[46x] [0-9.:/a-z]{0,20}",
        ".{0,20}",
    ]
}

proptest! {
    #[test]
    fn never_panics_on_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = inspect(&body);
    }

    #[test]
    fn never_panics_on_sdp_like_lines(
        lines in proptest::collection::vec(sdp_line(), 0..24),
        crlf in any::<bool>(),
    ) {
        let body = lines.join(if crlf { "\r\n" } else { "\n" });
        if let Err(e) = inspect(body.as_bytes()) {
            let text = e.warning_text();
            prop_assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"'));
        }
    }

    #[test]
    fn never_panics_on_mutated_fixtures(at in 0usize..700, byte in any::<u8>(), pick in 0usize..4) {
        let base = [PJSUA, LINPHONE, SRTP, T38][pick];
        let mut body = base.as_bytes().to_vec();
        if let Some(b) = body.get_mut(at) {
            *b = byte;
        }
        let _ = inspect(&body);
    }
}
