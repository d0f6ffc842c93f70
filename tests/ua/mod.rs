//! A tiny scriptable SIP user agent for integration tests, over real loopback sockets.
//!
//! Tests write requests as literal wire text (lines joined with CRLF, see [`wire`]) with
//! placeholders the UA fills in: `{ip}` and `{port}` (its own address), `{server}` (the
//! server's `ip:port`). Everything received is parsed with handover's own codec; what a test
//! does not ask for yet is kept in a stash, so `expect_request` can find a request that
//! arrived while the test was waiting for a response. Retransmissions (same request branch
//! and CSeq, or same response status/CSeq/To tag) are recognised so a retransmitted initial
//! INVITE is never mistaken for a re-INVITE; `recv_any` sees them all.
#![allow(dead_code)] // each test uses a subset

pub mod call;
pub mod harness;
pub mod tcp;
pub mod udp;

use bytes::Bytes;
use handover::sip::{HeaderName, SipMessage};

#[allow(unused_imports)]
pub use tcp::TcpUa;
pub use udp::UdpUa;

/// Literal wire text: `lines` joined with CRLF, an empty line, then `body`. `{len}` in any
/// line becomes the body's length in bytes (tests write `Content-Length: {len}` themselves,
/// so a test can also leave it out or lie about it).
pub fn wire(lines: &[&str], body: &str) -> String {
    let head = lines.join("\r\n").replace("{len}", &body.len().to_string());
    format!("{head}\r\n\r\n{body}")
}

/// Replaces each `(placeholder, value)` in `text`.
pub fn fill(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(k, v);
    }
    out
}

/// A fresh RFC 3261 branch / tag / Call-ID.
pub fn branch() -> String {
    format!("z9hG4bK-ua{:016x}", fastrand::u64(..))
}
pub fn tag() -> String {
    format!("ua{:08x}", fastrand::u32(..))
}
pub fn call_id() -> String {
    format!("ua-{:016x}@127.0.0.1", fastrand::u64(..))
}

/// An SDP body with CRLF lines, as a softphone sends it.
pub fn sdp(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

/// The `o=` line of an SDP body.
pub fn sdp_line<'a>(body: &'a str, prefix: &str) -> Option<&'a str> {
    body.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with(prefix))
}

/// The session version (third field) of an `o=` line.
pub fn o_version(body: &str) -> u64 {
    let o = sdp_line(body, "o=").unwrap_or_else(|| panic!("no o= line in:\n{body}"));
    o.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad o= line {o}"))
}

/// The session id (second field) of an `o=` line.
pub fn o_session(body: &str) -> String {
    let o = sdp_line(body, "o=").unwrap_or_else(|| panic!("no o= line in:\n{body}"));
    o.split_whitespace().nth(1).unwrap_or_default().to_owned()
}

/// A message's body as text.
pub fn body_text(msg: &SipMessage) -> String {
    String::from_utf8_lossy(&msg.body()).into_owned()
}

/// A header value, panicking with the whole message when absent.
pub fn must_header(msg: &SipMessage, name: HeaderName) -> String {
    msg.header(name)
        .map(|v| v.into_owned())
        .unwrap_or_else(|| panic!("no {name:?} header in:\n{}", text(msg)))
}

/// The message as text, for failure output.
pub fn text(msg: &SipMessage) -> String {
    String::from_utf8_lossy(msg.raw()).into_owned()
}

/// The status code on the first line of raw text, for responses our codec would refuse
/// (e.g. a 400 that copies a broken CSeq).
pub fn raw_status(raw: &str) -> Option<(u16, String)> {
    let first = raw.lines().next()?;
    let rest = first.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((code.parse().ok()?, reason.trim_end().to_owned()))
}

/// Identifies a message so retransmissions can be recognised.
fn identity(msg: &SipMessage) -> String {
    let cseq = msg.cseq();
    match msg.status() {
        Some(status) => format!(
            "R|{status}|{}|{} {}|{}|{}",
            msg.call_id(),
            cseq.seq,
            cseq.method.as_str(),
            msg.branch().unwrap_or_default(),
            msg.to_tag().unwrap_or_default()
        ),
        None => format!(
            "Q|{}|{}|{} {}|{}",
            msg.method()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            msg.call_id(),
            cseq.seq,
            cseq.method.as_str(),
            msg.branch().unwrap_or_default()
        ),
    }
}

/// Parses bytes received from the server.
fn parse(bytes: &[u8]) -> Result<SipMessage, handover::sip::ParseError> {
    SipMessage::parse(Bytes::copy_from_slice(bytes))
}
