//! Why an SDP body was refused, and how to say it in a SIP `Warning` header.
//!
//! A refused offer is answered `488 Not Acceptable Here` with
//! `Warning: <code> handover "<text>"` (RFC 3261 §20.43, §21.4.26). The code is 399
//! (miscellaneous) unless the media format itself is the problem (305).

use thiserror::Error;

/// RFC 3261 §20.43 warn-code 399: miscellaneous warning.
pub const WARN_MISC: u16 = 399;
/// RFC 3261 §20.43 warn-code 304: media type not available. Inspection never returns it
/// (handover relays every media type); a routing policy that refuses a type can use it.
pub const WARN_MEDIA_TYPE: u16 = 304;
/// RFC 3261 §20.43 warn-code 305: incompatible media format.
pub const WARN_MEDIA_FORMAT: u16 = 305;

/// The warn-agent handover puts in its `Warning` headers (a pseudonym, RFC 3261 §20.43).
pub const WARN_AGENT: &str = "handover";

/// Upper bound of the text inside the quotes of a `Warning` header.
const MAX_WARNING_TEXT: usize = 120;
/// Upper bound of a parser message kept in an error (it quotes peer bytes).
pub(crate) const MAX_DETAIL: usize = 160;

/// What is wrong with one line, found by handover's own line check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LineFault {
    #[error("not a <type>=<value> line")]
    NotTypeValue,
    #[error("unknown line type '{}'", char::from(*.0))]
    UnknownType(u8),
    #[error("k= (encryption key) lines are not accepted")]
    KeyLine,
    #[error("first line must be v=0")]
    BadVersion,
    #[error("second line must be o=<user> <sess-id> <version> IN <IP4|IP6> <address>")]
    BadOrigin,
    #[error("third line must be s=")]
    MissingSessionName,
    #[error("v=, o= or s= repeated")]
    Repeated,
    #[error("media line must be m=<media> <port> <proto> <fmt> ...")]
    BadMedia,
    #[error("media port is not a number from 0 to 65535")]
    BadPort,
    #[error("media line lists no formats")]
    NoFormats,
    #[error("media line lists too many formats")]
    TooManyFormats,
    #[error("connection line must be c=IN <IP4|IP6> <address>")]
    BadConnection,
    #[error("malformed a=rtpmap")]
    BadRtpmap,
    #[error("media section without a connection address (no c= here or at session level)")]
    MissingConnection,
}

/// An SDP body handover will not relay.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("SDP body has no o= line")]
    MissingOrigin,
    #[error("SDP has more than {max} media sections")]
    TooManyMedia { max: usize },
    /// Found by handover's own line check; `line` counts from 1.
    #[error("SDP line {line}: {fault}")]
    Line { line: usize, fault: LineFault },
    /// Refused by webrtc-sdp; `detail` is its message, bounded in length.
    #[error("SDP rejected: {detail}")]
    Rejected { detail: String },
}

impl SdpError {
    /// The RFC 3261 §20.43 warn-code for this error.
    pub fn warn_code(&self) -> u16 {
        match self {
            SdpError::Line {
                fault: LineFault::NoFormats | LineFault::TooManyFormats,
                ..
            } => WARN_MEDIA_FORMAT,
            _ => WARN_MISC,
        }
    }

    /// The text to put between the quotes of a `Warning` header: printable ASCII only,
    /// without `"` or `\`, at most 120 characters (peer bytes can appear in the message).
    pub fn warning_text(&self) -> String {
        let mut text = String::with_capacity(MAX_WARNING_TEXT);
        for c in self.to_string().chars().take(MAX_WARNING_TEXT) {
            text.push(match c {
                ' '..='~' if c != '"' && c != '\\' => c,
                _ => '?',
            });
        }
        text
    }

    /// A whole `Warning` header value: `399 handover "SDP line 3: ..."`.
    pub fn warning_value(&self) -> String {
        format!(
            "{} {} \"{}\"",
            self.warn_code(),
            WARN_AGENT,
            self.warning_text()
        )
    }
}

/// Cuts a message to at most [`MAX_DETAIL`] bytes on a char boundary.
pub(crate) fn bounded(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_text_is_a_safe_quoted_string() {
        let e = SdpError::Rejected {
            detail: "bad \"line\" \\ é\r\nx".repeat(20),
        };
        let text = e.warning_text();
        assert!(text.len() <= MAX_WARNING_TEXT);
        assert!(text.starts_with("SDP rejected: bad ?line? ? ??"));
        assert!(text
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\'));
        assert_eq!(e.warning_value(), format!("399 handover \"{text}\""));
    }

    #[test]
    fn format_problems_use_305() {
        let e = SdpError::Line {
            line: 6,
            fault: LineFault::NoFormats,
        };
        assert_eq!(e.warn_code(), 305);
        assert_eq!(
            e.warning_value(),
            "305 handover \"SDP line 6: media line lists no formats\""
        );
        assert_eq!(SdpError::NotUtf8.warn_code(), 399);
    }

    #[test]
    fn bounded_cuts_on_char_boundary() {
        let s = bounded("é".repeat(200));
        assert!(s.len() <= MAX_DETAIL && s.len() >= MAX_DETAIL - 1);
        assert_eq!(bounded("short".into()), "short");
    }
}
