//! Building outgoing messages (RFC 3261 §7, §8.2.6 responses, §20.14 Content-Length).
//!
//! A `MessageBuilder` appends wire text to one `BytesMut`. Headers relayed from a received
//! message are copied byte for byte from its raw buffer (name as written, folds kept), so
//! unknown headers and odd spellings survive a B2BUA untouched. Content-Length is always
//! computed here, never copied.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::header::HeaderName;
use super::message::SipMessage;
use super::method::Method;

/// Builds a SIP message: start line, headers, then `body` or `finish`.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: BytesMut,
}

/// Appends `n` in decimal (itoa: two digits per step, no `core::fmt`).
pub(crate) fn put_decimal(out: &mut impl BufMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

impl MessageBuilder {
    /// `METHOD uri SIP/2.0`.
    pub fn request(method: &Method, uri: &str) -> MessageBuilder {
        let mut buf = BytesMut::with_capacity(1024);
        buf.put_slice(method.as_str().as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(uri.as_bytes());
        buf.put_slice(b" SIP/2.0\r\n");
        MessageBuilder { buf }
    }

    /// `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> MessageBuilder {
        let mut buf = BytesMut::with_capacity(1024);
        buf.put_slice(b"SIP/2.0 ");
        put_decimal(&mut buf, u64::from(code));
        buf.put_u8(b' ');
        buf.put_slice(reason.as_bytes());
        buf.put_slice(b"\r\n");
        MessageBuilder { buf }
    }

    /// Appends `name: value`.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        self.buf.put_slice(value.as_bytes());
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Appends `name: ` + what `value` writes + CRLF: for a value assembled from parts
    /// without the formatting machinery of [`Self::header_fmt`] (the headers every request
    /// of a dialog carries).
    pub fn header_with(&mut self, name: &str, value: impl FnOnce(&mut BytesMut)) -> &mut Self {
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        value(&mut self.buf);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Appends `name: <formatted value>` without a temporary String.
    pub fn header_fmt(&mut self, name: &str, value: std::fmt::Arguments) -> &mut Self {
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        let _ = self.buf.write_fmt(value);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Copies every occurrence of `name` from `msg`, byte for byte. `HeaderName::Other`
    /// copies every unknown header.
    pub fn copy_headers(&mut self, msg: &SipMessage, name: HeaderName) -> &mut Self {
        for e in msg.entries().iter().filter(|e| e.name == name) {
            self.raw_line(msg.raw_line(e));
        }
        self
    }

    /// Copies every header of `msg` whose name is `name` (case-insensitive, as written, for
    /// unknown headers such as `X-Queue`), byte for byte.
    pub fn copy_headers_named(&mut self, msg: &SipMessage, name: &str) -> &mut Self {
        for (e, _) in msg
            .entries()
            .iter()
            .zip(msg.headers())
            .filter(|(_, (_, written, _))| written.eq_ignore_ascii_case(name))
        {
            self.raw_line(msg.raw_line(e));
        }
        self
    }

    /// Relays every header of `msg` except those named in `except` (and Content-Length,
    /// which is always recomputed), byte for byte, unknown headers included, in order.
    pub fn copy_headers_except(&mut self, msg: &SipMessage, except: &[HeaderName]) -> &mut Self {
        for e in msg.entries() {
            if e.name == HeaderName::ContentLength || except.contains(&e.name) {
                continue;
            }
            self.raw_line(msg.raw_line(e));
        }
        self
    }

    /// Appends Content-Type (unless empty), the computed Content-Length, the empty line and
    /// the body.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Bytes {
        if !content_type.is_empty() {
            self.header("Content-Type", content_type);
        }
        self.header_with("Content-Length", |out| put_decimal(out, body.len() as u64));
        self.buf.put_slice(b"\r\n");
        self.buf.put_slice(body);
        self.buf.freeze()
    }

    /// Appends `Content-Length: 0` and the empty line.
    pub fn finish(mut self) -> Bytes {
        self.buf.put_slice(b"Content-Length: 0\r\n\r\n");
        self.buf.freeze()
    }

    fn raw_line(&mut self, line: &[u8]) {
        self.buf.put_slice(line);
        self.buf.put_slice(b"\r\n");
    }
}

/// A response to `req` (RFC 3261 §8.2.6.2): status line, every Via (byte for byte, in
/// order), From, To (with `;tag=to_tag` appended when given and the To has no tag yet),
/// Call-ID and CSeq, all copied byte for byte. The caller adds more headers, then calls
/// `finish` or `body`.
pub fn response_to(
    req: &SipMessage,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> MessageBuilder {
    let mut b = MessageBuilder::response(code, reason);
    b.copy_headers(req, HeaderName::Via);
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if let Some(e) = req.entries().iter().find(|e| e.name == name) {
            b.buf.put_slice(req.raw_line(e));
            if name == HeaderName::To && req.to_tag().is_none() {
                if let Some(tag) = to_tag {
                    b.buf.put_slice(b";tag=");
                    b.buf.put_slice(tag.as_bytes());
                }
            }
            b.buf.put_slice(b"\r\n");
        }
    }
    b
}

/// The standard reason phrase for a status code (RFC 3261 §21, RFC 3515 202, RFC 4028 422,
/// RFC 3891 / RFC 5079 codes). `""` for unknown codes.
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1002@h SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa\r\n\
Via: SIP/2.0/UDP  proxy.example ;branch=z9hG4bKb, SIP/2.0/TCP [::1];branch=z9hG4bKc\r\n\
From: sip:1001@h;tag=ft\r\n\
To:   <sip:1002@h>\r\n\
Call-ID: b-1\r\n\
CSeq: 4 INVITE\r\n\
X-Custom:  odd   spacing ; kept\r\n\
Subject: folded,\r\n   over lines\r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\r\nhello";

    fn req() -> SipMessage {
        SipMessage::parse(Bytes::from_static(INVITE.as_bytes())).unwrap()
    }

    #[test]
    fn response_to_copies_via_byte_for_byte_and_adds_to_tag() {
        let out = response_to(&req(), 180, "Ringing", Some("tt")).finish();
        let want = "SIP/2.0 180 Ringing\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa\r\n\
Via: SIP/2.0/UDP  proxy.example ;branch=z9hG4bKb, SIP/2.0/TCP [::1];branch=z9hG4bKc\r\n\
From: sip:1001@h;tag=ft\r\n\
To:   <sip:1002@h>;tag=tt\r\n\
Call-ID: b-1\r\n\
CSeq: 4 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        let resp = SipMessage::parse(out).unwrap();
        assert_eq!(resp.to_tag(), Some("tt"));
        assert_eq!(resp.vias().unwrap().len(), 3);
    }

    #[test]
    fn response_to_keeps_existing_to_tag() {
        let raw = INVITE.replace("To:   <sip:1002@h>", "To: <sip:1002@h>;tag=old");
        let m = SipMessage::parse(Bytes::from(raw)).unwrap();
        let out = response_to(&m, 200, "OK", Some("new")).finish();
        let resp = SipMessage::parse(out).unwrap();
        assert_eq!(resp.to_tag(), Some("old"));
        assert_eq!(
            resp.header(HeaderName::To).as_deref(),
            Some("<sip:1002@h>;tag=old")
        );
        // No tag given and none present: To stays untagged (e.g. 100 Trying).
        let out = response_to(&req(), 100, "Trying", None).finish();
        assert_eq!(SipMessage::parse(out).unwrap().to_tag(), None);
    }

    #[test]
    fn copy_headers_except_relays_unknown_headers_and_recomputes_length() {
        let m = req();
        let mut b = MessageBuilder::request(&Method::Invite, "sip:agent@10.0.0.9");
        b.copy_headers_except(&m, &[HeaderName::ContentType]);
        let out = b.body("application/sdp", b"v=0\r\ns=-\r\n");
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("INVITE sip:agent@10.0.0.9 SIP/2.0\r\n"));
        assert!(text.contains("\r\nX-Custom:  odd   spacing ; kept\r\n"));
        assert!(text.contains("\r\nSubject: folded,\r\n   over lines\r\n"));
        assert!(text.contains("\r\nv: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKa\r\n"));
        assert!(!text.contains("Content-Length: 5"));
        assert!(!text.contains("text/plain"));
        assert!(text.ends_with(
            "Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n"
        ));
        let again = SipMessage::parse(out).unwrap();
        assert_eq!(&again.body()[..], b"v=0\r\ns=-\r\n");
        assert_eq!(
            again.header_named("subject").as_deref(),
            Some("folded, over lines")
        );
    }

    #[test]
    fn copy_headers_by_name_and_other() {
        let m = req();
        let mut b = MessageBuilder::response(200, "OK");
        b.copy_headers(&m, HeaderName::Via)
            .copy_headers_named(&m, "x-custom")
            .header("Server", "handover")
            .header_fmt("Expires", format_args!("{}", 60));
        let text = String::from_utf8(b.finish().to_vec()).unwrap();
        assert_eq!(text.matches("branch=").count(), 3);
        assert!(text.contains("X-Custom:  odd   spacing ; kept\r\n"));
        assert!(text.contains("Server: handover\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"));
        let mut b = MessageBuilder::response(200, "OK");
        b.copy_headers(&m, HeaderName::Other);
        let text = String::from_utf8(b.finish().to_vec()).unwrap();
        assert!(text.contains("X-Custom") && text.contains("Subject"));
        assert!(!text.contains("Call-ID"));
    }

    #[test]
    fn body_without_content_type() {
        let out =
            MessageBuilder::request(&Method::Other("FOO".into()), "sip:x").body("", b"\x00\xff");
        assert_eq!(
            &out[..],
            b"FOO sip:x SIP/2.0\r\nContent-Length: 2\r\n\r\n\x00\xff"
        );
    }

    #[test]
    fn default_reasons() {
        assert_eq!(default_reason(183), "Session Progress");
        assert_eq!(default_reason(202), "Accepted");
        assert_eq!(default_reason(481), "Call/Transaction Does Not Exist");
        assert_eq!(default_reason(491), "Request Pending");
        assert_eq!(default_reason(299), "");
    }
}
