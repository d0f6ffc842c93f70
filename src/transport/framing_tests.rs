use super::*;

const INVITE: &str = "INVITE sip:1001@handover.local SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:50612;branch=z9hG4bK776asdhds;alias\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@handover.local>\r\n\
From: <sip:caller@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 29\r\n\
\r\n\
v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n";

const OPTIONS: &str = "OPTIONS sip:handover.local SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:50612;branch=z9hG4bKopt\r\n\
Call-ID: opt1\r\n\
CSeq: 1 OPTIONS\r\n\
l: 0\r\n\
\r\n";

const MAX: usize = 65535;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Msg(Vec<u8>),
    Ping,
    Err(FramingError),
}

/// Drives a Framer like the TCP reader does: append each chunk, frame until Incomplete.
fn run(chunks: &[&[u8]], max: usize) -> Vec<Event> {
    let mut framer = Framer::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.next(&buf) {
                Ok(FrameStatus::Complete { skip, len }) => {
                    events.push(Event::Msg(buf[skip..skip + len].to_vec()));
                    buf.drain(..skip + len);
                }
                Ok(FrameStatus::KeepAlive { len }) => {
                    events.push(Event::Ping);
                    buf.drain(..len);
                }
                Ok(FrameStatus::Incomplete) => break,
                Err(e) => {
                    events.push(Event::Err(e));
                    return events;
                }
            }
        }
    }
    events
}

fn msg(s: &str) -> Event {
    Event::Msg(s.as_bytes().to_vec())
}

#[test]
fn whole_message_is_complete_with_exact_length() {
    assert_eq!(
        frame(INVITE.as_bytes(), MAX),
        Ok(FrameStatus::Complete {
            skip: 0,
            len: INVITE.len()
        })
    );
}

#[test]
fn every_split_point_of_one_message_frames_the_same() {
    let bytes = INVITE.as_bytes();
    for cut in 0..=bytes.len() {
        // Stateless: every strict prefix is incomplete.
        if cut < bytes.len() {
            assert_eq!(
                frame(&bytes[..cut], MAX),
                Ok(FrameStatus::Incomplete),
                "cut {cut}"
            );
        }
        // Stateful: two chunks give exactly the message.
        assert_eq!(
            run(&[&bytes[..cut], &bytes[cut..]], MAX),
            vec![msg(INVITE)],
            "cut {cut}"
        );
    }
}

#[test]
fn byte_by_byte_stream_of_messages_and_pings() {
    let stream = format!("{INVITE}\r\n\r\n{OPTIONS}\r\n{INVITE}");
    let chunks: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
    assert_eq!(
        run(&chunks, MAX),
        vec![msg(INVITE), Event::Ping, msg(OPTIONS), msg(INVITE)]
    );
}

#[test]
fn several_messages_in_one_buffer() {
    let stream = format!("{OPTIONS}{INVITE}{OPTIONS}");
    assert_eq!(
        run(&[stream.as_bytes()], MAX),
        vec![msg(OPTIONS), msg(INVITE), msg(OPTIONS)]
    );
    // The first frame only covers the first message.
    assert_eq!(
        frame(stream.as_bytes(), MAX),
        Ok(FrameStatus::Complete {
            skip: 0,
            len: OPTIONS.len()
        })
    );
}

#[test]
fn keepalives() {
    assert_eq!(
        frame(b"\r\n\r\n", MAX),
        Ok(FrameStatus::KeepAlive { len: 4 })
    );
    assert_eq!(
        frame(b"\r\n\r\nINVITE", MAX),
        Ok(FrameStatus::KeepAlive { len: 4 })
    );
    for partial in [&b""[..], b"\r", b"\r\n", b"\r\n\r"] {
        assert_eq!(frame(partial, MAX), Ok(FrameStatus::Incomplete));
    }
    assert_eq!(
        run(&[b"\r\n\r\n\r\n\r\n"], MAX),
        vec![Event::Ping, Event::Ping]
    );
    // A lone CRLF (a pong) before a message is skipped, not answered.
    let stream = format!("\r\n{OPTIONS}");
    assert_eq!(
        frame(stream.as_bytes(), MAX),
        Ok(FrameStatus::Complete {
            skip: 2,
            len: OPTIONS.len()
        })
    );
    assert_eq!(FrameStatus::Complete { skip: 2, len: 5 }.consumed(), 7);
}

#[test]
fn datagram_keepalives() {
    for d in [&b""[..], b"\r\n", b"\r\n\r\n", b"\n"] {
        assert!(is_keepalive_datagram(d));
    }
    assert!(!is_keepalive_datagram(b"\r\n\r\n\r\n"));
    assert!(!is_keepalive_datagram(OPTIONS.as_bytes()));
}

#[test]
fn missing_content_length_is_an_error() {
    let m = "OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nCall-ID: x\r\n\r\n";
    assert_eq!(
        frame(m.as_bytes(), MAX),
        Err(FramingError::MissingContentLength)
    );
    // Names that merely start with "l" or contain the name are not Content-Length.
    let m = "OPTIONS sip:a SIP/2.0\r\nLine: 5\r\nX-Content-Length: 5\r\n\r\n";
    assert_eq!(
        frame(m.as_bytes(), MAX),
        Err(FramingError::MissingContentLength)
    );
    // The start line is not a header even if it looks like one.
    let m = "l: 0\r\nVia: x\r\n\r\n";
    assert_eq!(
        frame(m.as_bytes(), MAX),
        Err(FramingError::MissingContentLength)
    );
}

#[test]
fn content_length_forms() {
    let cases = [
        ("l: 3", 3),
        ("L:3", 3),
        ("content-LENGTH:   3  ", 3),
        ("Content-Length :\t3", 3),
        ("Content-Length:\r\n  3", 3), // folded
        ("Content-Length: 003", 3),
        ("Content-Length: 3\r\nl: 3", 3), // duplicates that agree
    ];
    for (header, body) in cases {
        let m = format!("MESSAGE sip:a SIP/2.0\r\nVia: x\r\n{header}\r\nTo: y\r\n\r\nabcXYZ");
        let head = m.len() - 6;
        assert_eq!(
            frame(m.as_bytes(), MAX),
            Ok(FrameStatus::Complete {
                skip: 0,
                len: head + body
            }),
            "{header:?}"
        );
    }
}

#[test]
fn malformed_content_length() {
    for header in [
        "Content-Length: abc",
        "Content-Length: -1",
        "Content-Length: 12abc",
        "Content-Length: 1 2",
        "Content-Length:",
        "l:  ",
        "Content-Length: 0x10",
        "Content-Length: 3\r\nContent-Length: 4",
    ] {
        let m = format!("MESSAGE sip:a SIP/2.0\r\n{header}\r\n\r\nabcd");
        assert_eq!(
            frame(m.as_bytes(), MAX),
            Err(FramingError::BadContentLength),
            "{header:?}"
        );
    }
}

#[test]
fn huge_content_length_is_too_large() {
    for value in [
        "70000",
        "18446744073709551615",
        "99999999999999999999999999",
    ] {
        let m = format!("MESSAGE sip:a SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            frame(m.as_bytes(), MAX),
            Err(FramingError::TooLarge { limit: MAX }),
            "{value}"
        );
    }
}

#[test]
fn header_plus_body_limit_is_inclusive() {
    let m = OPTIONS.replace("l: 0", "l: 10") + "0123456789";
    assert_eq!(
        frame(m.as_bytes(), m.len()),
        Ok(FrameStatus::Complete {
            skip: 0,
            len: m.len()
        })
    );
    assert_eq!(
        frame(m.as_bytes(), m.len() - 1),
        Err(FramingError::TooLarge { limit: m.len() - 1 })
    );
    // Known too large as soon as the headers are in, before the body arrives.
    let head_only = &m.as_bytes()[..m.len() - 10];
    assert_eq!(
        frame(head_only, m.len() - 1),
        Err(FramingError::TooLarge { limit: m.len() - 1 })
    );
}

#[test]
fn endless_headers_are_too_large_once_buffer_exceeds_max() {
    let max = 100;
    let mut stream = b"INVITE sip:a SIP/2.0\r\n".to_vec();
    while stream.len() <= max {
        stream.extend_from_slice(b"X: y\r\n");
    }
    let mut framer = Framer::new(max);
    for cut in 1..stream.len() {
        let result = framer.next(&stream[..cut]);
        if cut <= max {
            assert_eq!(result, Ok(FrameStatus::Incomplete), "cut {cut}");
        } else {
            assert_eq!(
                result,
                Err(FramingError::TooLarge { limit: max }),
                "cut {cut}"
            );
            return;
        }
    }
    panic!("never reported TooLarge");
}

#[test]
fn bare_lf_in_headers_is_rejected_but_body_is_free() {
    let m = "OPTIONS sip:a SIP/2.0\nContent-Length: 0\n\n";
    assert_eq!(frame(m.as_bytes(), MAX), Err(FramingError::BareLineFeed));
    // Detected before the blank line arrives.
    assert_eq!(
        frame(b"OPTIONS sip:a SIP/2.0\nVia", MAX),
        Err(FramingError::BareLineFeed)
    );
    assert_eq!(
        run(&[b"OPTIONS sip:a SIP/2.0\r", b"\nVia: x\n"], MAX),
        vec![Event::Err(FramingError::BareLineFeed)]
    );
    let m = "MESSAGE sip:a SIP/2.0\r\nl: 4\r\n\r\n\n\n\r\n";
    assert_eq!(
        frame(m.as_bytes(), MAX),
        Ok(FrameStatus::Complete {
            skip: 0,
            len: m.len()
        })
    );
}

#[test]
fn body_may_contain_blank_lines() {
    let body = "a\r\n\r\nb\r\n\r\n";
    let m = format!("MESSAGE sip:a SIP/2.0\r\nl: {}\r\n\r\n{body}", body.len());
    let stream = format!("{m}{OPTIONS}");
    assert_eq!(run(&[stream.as_bytes()], MAX), vec![msg(&m), msg(OPTIONS)]);
}

#[test]
fn head_range_cuts_at_blank_line() {
    let stream = format!("\r\n{INVITE}");
    let r = head_range(stream.as_bytes(), MAX);
    let head = &stream[r];
    assert!(head.starts_with("INVITE"));
    assert!(head.ends_with("Content-Length: 29\r\n\r\n"));
    assert_eq!(head_range(b"INVITE sip:a", 3), 0..3);
    assert_eq!(head_range(b"\r\n", MAX), 2..2);
}

#[test]
fn error_status_mapping() {
    assert_eq!(FramingError::TooLarge { limit: 1 }.status(), 513);
    assert_eq!(FramingError::MissingContentLength.status(), 400);
    assert_eq!(
        FramingError::BadContentLength.reason(),
        "Bad Content-Length"
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn message(body_len: usize, compact: bool) -> String {
        let name = if compact { "l" } else { "Content-Length" };
        let body = "b".repeat(body_len);
        format!("MESSAGE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n{name}: {body_len}\r\n\r\n{body}")
    }

    proptest! {
        /// Any sequence of messages and pings, cut into arbitrary chunks, frames back into the
        /// same sequence.
        #[test]
        fn arbitrary_chunking(
            items in proptest::collection::vec((0usize..40, any::<bool>(), any::<bool>()), 1..6),
            cuts in proptest::collection::vec(1usize..64, 0..20),
        ) {
            let mut stream = String::new();
            let mut expected = Vec::new();
            for (body_len, compact, ping) in items {
                if ping {
                    stream.push_str("\r\n\r\n");
                    expected.push(Event::Ping);
                }
                let m = message(body_len, compact);
                stream.push_str(&m);
                expected.push(msg(&m));
            }
            let bytes = stream.as_bytes();
            let mut chunks = Vec::new();
            let mut at = 0;
            for cut in cuts {
                let end = (at + cut).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            chunks.push(&bytes[at..]);
            prop_assert_eq!(run(&chunks, MAX), expected);
        }

        /// Arbitrary bytes never panic and never report more bytes than the buffer holds.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(status) = frame(&data, 200) {
                prop_assert!(status.consumed() <= data.len());
            }
        }
    }
}
