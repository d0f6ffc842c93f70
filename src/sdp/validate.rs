//! The webrtc-sdp half of validation: show it what it models, map its refusal to
//! [`SdpError::Rejected`].
//!
//! webrtc-sdp 0.3 refuses legal SIP SDP in three ways that handover works around, each by
//! editing only the copy it is shown (the relayed body is never touched):
//! - no `t=` line → `t=0 0` is added before the first `m=` line;
//! - `u= e= p= r= z=` lines → left out;
//! - media sections whose protocol it does not model (`udptl`, `TCP/MSRP`, ...) → left out:
//!   it would drop their `m=` line and misfile their `c=`/`a=` lines under the previous
//!   section (a T.38 section's own `c=` then reads as a duplicate and fails the whole body).
//!
//! Bodies whose copy is shorter than its 51-byte minimum are not shown to it at all. A copy
//! of a shape it has accepted before is not shown to it again (`shape.rs`).

use std::borrow::Cow;

use super::error::{bounded, SdpError};
use super::inspect::Layout;
use super::lines::{lines, terminator};
use super::shape;

/// webrtc-sdp refuses anything shorter.
pub(super) const WEBRTC_MIN_LEN: usize = 51;

/// Protocols webrtc-sdp 0.3.17 parses (`parse_protocol_token`, case-insensitive).
const MODELLED: [&str; 11] = [
    "RTP/AVP",
    "RTP/AVPF",
    "RTP/SAVP",
    "RTP/SAVPF",
    "TCP/DTLS/RTP/SAVP",
    "TCP/DTLS/RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
    "DTLS/SCTP",
    "UDP/DTLS/SCTP",
    "TCP/DTLS/SCTP",
];

/// Whether webrtc-sdp models this `m=` protocol.
pub(crate) fn models(protocol: &str) -> bool {
    MODELLED.iter().any(|p| p.eq_ignore_ascii_case(protocol))
}

/// Runs webrtc-sdp over the parts of `text` it models, unless it has accepted a body of the
/// same shape on this thread before (`shape.rs`). Returns whether the body was checked.
pub(crate) fn with_webrtc(text: &str, layout: &Layout) -> Result<bool, SdpError> {
    let shown = shown_copy(text, layout);
    if shown.len() < WEBRTC_MIN_LEN {
        return Ok(false);
    }
    shape::check_unless_accepted(&shown, |shown| match webrtc_sdp::parse_sdp(shown, false) {
        Ok(_) => Ok(()),
        Err(e) => Err(SdpError::Rejected {
            detail: bounded(describe(&e)),
        }),
    })?;
    Ok(true)
}

/// webrtc-sdp's message without its line number (which counts lines of the copy).
fn describe(e: &webrtc_sdp::error::SdpParserError) -> String {
    use webrtc_sdp::error::SdpParserError as E;
    match e {
        E::Line { error, line, .. } | E::Unsupported { error, line, .. } => {
            format!("{error}: {line}")
        }
        E::Sequence { message, .. } => message.clone(),
    }
}

/// The copy of `text` webrtc-sdp is shown; borrowed when no edit is needed.
fn shown_copy<'a>(text: &'a str, layout: &Layout) -> Cow<'a, str> {
    let skips_sections = layout.sections.iter().any(|(_, modelled)| !modelled);
    if layout.has_timing && !layout.has_unmodelled_lines && !skips_sections {
        return Cow::Borrowed(text);
    }
    let term = if terminator(text.as_bytes()) == b"\n" {
        "\n"
    } else {
        "\r\n"
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut timing_added = layout.has_timing;
    let mut section: Option<bool> = None; // Some(modelled) inside a media section
    let mut next_section = layout.sections.iter().peekable();
    for line in lines(text.as_bytes()) {
        if next_section.peek().is_some_and(|(at, _)| *at == line.start) {
            section = next_section.next().map(|(_, modelled)| *modelled);
            if !timing_added {
                out.push_str("t=0 0");
                out.push_str(term);
                timing_added = true;
            }
        }
        let unmodelled_line = matches!(line.kind(), Some((b'u' | b'e' | b'p' | b'r' | b'z', _)));
        if section == Some(false) || unmodelled_line {
            continue;
        }
        if let Some(s) = text.get(line.start..line.end()) {
            out.push_str(s);
        }
    }
    if !timing_added {
        if !out.ends_with('\n') {
            out.push_str(term);
        }
        out.push_str("t=0 0");
        out.push_str(term);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> Layout {
        let mut l = Layout::default();
        for line in lines(text.as_bytes()) {
            match line.kind() {
                Some((b't', _)) => l.has_timing = true,
                Some((b'u' | b'e' | b'p' | b'r' | b'z', _)) => l.has_unmodelled_lines = true,
                Some((b'm', v)) => {
                    let proto = std::str::from_utf8(v).unwrap().split(' ').nth(2).unwrap();
                    l.sections.push((line.start, models(proto)));
                }
                _ => {}
            }
        }
        l
    }

    #[test]
    fn copy_adds_timing_and_hides_what_webrtc_refuses() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nu=http://example.com/x\r\n\
                    c=IN IP4 192.0.2.1\r\nm=audio 0 RTP/AVP 0\r\nm=image 4002 udptl t38\r\n\
                    c=IN IP4 192.0.2.1\r\na=T38FaxVersion:0\r\nm=audio 4000 rtp/avp 8\r\n";
        let shown = shown_copy(text, &layout(text));
        assert_eq!(
            shown,
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 0 RTP/AVP 0\r\nm=audio 4000 rtp/avp 8\r\n"
        );
        assert_eq!(with_webrtc(text, &layout(text)), Ok(true));
        // Shown as is, webrtc-sdp refuses the same body.
        assert!(webrtc_sdp::parse_sdp(text, false).is_err());
    }

    #[test]
    fn copy_is_borrowed_when_nothing_needs_hiding() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 0\r\n";
        assert!(matches!(shown_copy(text, &layout(text)), Cow::Borrowed(_)));
    }

    #[test]
    fn timing_appended_when_there_is_no_media() {
        let text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=a session without media\nc=IN IP4 192.0.2.1";
        let shown = shown_copy(text, &layout(text));
        assert!(shown.ends_with("192.0.2.1\nt=0 0\n"), "{shown:?}");
        assert_eq!(with_webrtc(text, &layout(text)), Ok(true));
    }

    #[test]
    fn refusal_is_mapped_without_line_number() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 0 x\r\n";
        let err = with_webrtc(text, &layout(text)).unwrap_err();
        let SdpError::Rejected { detail } = err else {
            panic!("{err:?}")
        };
        assert!(detail.contains("m=audio 4000 RTP/AVP 0 x"), "{detail}");
        assert!(!detail.contains("line("), "{detail}");
    }
}
