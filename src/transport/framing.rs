//! Sans-IO stream framing for SIP over TCP.
//!
//! A byte stream carries SIP messages back to back; each one ends where its Content-Length
//! says (RFC 3261 §18.3: "the Content-Length header field MUST be used with stream oriented
//! transports"). This module finds those boundaries without parsing the message itself:
//!
//! ```text
//!   [CRLF] start-line CRLF *(header CRLF) CRLF body(Content-Length bytes)
//!   ^skip  ^------------------ len ---------------------------------^
//! ```
//!
//! Decisions, each with its reason:
//! - A leading CRLF before a start line is skipped (RFC 3261 §7.5 says to ignore it).
//! - A buffer that starts with CRLFCRLF is a keep-alive "ping" (RFC 5626 §4.4.1); the caller
//!   answers it with a single CRLF "pong". A lone CRLF (a pong from the peer) is skipped with the
//!   next message; a prefix of CRLFCRLF is `Incomplete` because the ping may still be arriving.
//! - Header lines must end in CRLF (RFC 3261 §7). A bare LF in the header section is rejected
//!   at once with [`FramingError::BareLineFeed`] instead of being tolerated: the codec is
//!   CRLF-only, and without this check a bare-LF peer would wait silently until the idle timeout
//!   because its blank line is never found. The body is never inspected.
//! - Content-Length is found by name, case-insensitively, long form or compact `l`
//!   (RFC 3261 §7.3.3), with optional whitespace before the colon and folded values. Several
//!   Content-Length headers must agree; otherwise the framing is ambiguous (request smuggling)
//!   and the message is rejected with [`FramingError::BadContentLength`].
//! - Sizes are bounded: once the buffered header section exceeds `max` bytes, or a
//!   Content-Length announces a message (headers + body, without the skipped CRLF) over `max`,
//!   the result is [`FramingError::TooLarge`] (answered with 513, RFC 3261 §21.5.11).
//!
//! [`Framer`] remembers how far it has already searched, so feeding a slowly growing buffer
//! costs time linear in the bytes received; [`frame`] is the stateless form.

use std::ops::Range;

use memchr::{memchr, memchr_iter, memmem};

const CRLF: &[u8] = b"\r\n";
const PING: &[u8] = b"\r\n\r\n";

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// One complete message at `buf[skip..skip + len]`; consume `skip + len` bytes.
    Complete { skip: usize, len: usize },
    /// A CRLFCRLF keep-alive ping at `buf[..len]`; consume it and answer with one CRLF.
    KeepAlive { len: usize },
    /// More bytes are needed.
    Incomplete,
}

impl FrameStatus {
    /// Bytes the caller must drop from the front of its buffer.
    pub fn consumed(&self) -> usize {
        match *self {
            FrameStatus::Complete { skip, len } => skip.saturating_add(len),
            FrameStatus::KeepAlive { len } => len,
            FrameStatus::Incomplete => 0,
        }
    }
}

/// Why a stream (or a datagram, for `TooLarge`) cannot be framed. After any of these the
/// stream position is lost, so a TCP connection is answered and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("message on a stream without Content-Length")]
    MissingContentLength,
    #[error("malformed or conflicting Content-Length")]
    BadContentLength,
    #[error("bare LF line ending in the header section")]
    BareLineFeed,
}

impl FramingError {
    /// The SIP status code the receiver should answer with, when it can build a response.
    pub fn status(&self) -> u16 {
        match self {
            FramingError::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem.
    pub fn reason(&self) -> &'static str {
        match self {
            FramingError::TooLarge { .. } => "Message Too Large",
            FramingError::MissingContentLength => "Missing Content-Length",
            FramingError::BadContentLength => "Bad Content-Length",
            FramingError::BareLineFeed => "Bad Line Ending",
        }
    }
}

/// Frames one message at the front of `buf` (stateless form of [`Framer::next`]).
pub fn frame(buf: &[u8], max: usize) -> Result<FrameStatus, FramingError> {
    Framer::new(max).next(buf)
}

/// True for a datagram that is only a keep-alive (CRLF or CRLFCRLF, RFC 5626 §4.4.2 uses
/// STUN on UDP, but CRLF keep-alives are common) or empty: such datagrams are ignored.
pub fn is_keepalive_datagram(datagram: &[u8]) -> bool {
    datagram.len() <= PING.len() && datagram.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

/// The range of `buf` worth handing to the receiver with a framing error: the header section
/// (leading CR/LF skipped, cut after the blank line when present), at most `max` bytes.
pub fn head_range(buf: &[u8], max: usize) -> Range<usize> {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    let end = memmem::find(rest, PING)
        .map_or(rest.len(), |p| p.saturating_add(PING.len()))
        .min(max)
        .min(rest.len());
    start..start.saturating_add(end)
}

/// Incremental framer: call [`Framer::next`] with the whole unconsumed buffer each time it
/// grows, and drop `status.consumed()` bytes from its front after `Complete`/`KeepAlive`.
/// The buffer passed must only grow between `Incomplete` results (or call [`Framer::reset`]).
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the blank line; `scanned` bytes after the skip were searched already.
    Head { scanned: usize },
    /// Header section parsed; waiting for `skip + len` bytes.
    Body { skip: usize, len: usize },
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            max,
            state: State::Head { scanned: 0 },
        }
    }

    /// Forgets progress (the caller changed the buffer other than by appending).
    pub fn reset(&mut self) {
        self.state = State::Head { scanned: 0 };
    }

    /// Frames the message at the front of `buf`; see [`FrameStatus`].
    pub fn next(&mut self, buf: &[u8]) -> Result<FrameStatus, FramingError> {
        let status = self.step(buf);
        if !matches!(status, Ok(FrameStatus::Incomplete)) {
            self.reset();
        }
        status
    }

    fn step(&mut self, buf: &[u8]) -> Result<FrameStatus, FramingError> {
        let scanned = match self.state {
            State::Body { skip, len } => {
                let complete = buf.len() >= skip.saturating_add(len);
                return Ok(if complete {
                    FrameStatus::Complete { skip, len }
                } else {
                    FrameStatus::Incomplete
                });
            }
            State::Head { scanned } => scanned,
        };
        if buf.starts_with(PING) {
            return Ok(FrameStatus::KeepAlive { len: PING.len() });
        }
        if PING.starts_with(buf) {
            // Empty, or a ping still arriving.
            return Ok(FrameStatus::Incomplete);
        }
        let skip = if buf.starts_with(CRLF) { CRLF.len() } else { 0 };
        let rest = buf.get(skip..).unwrap_or_default();

        // Resume the blank-line search a few bytes back: CRLFCRLF may straddle the old end.
        let from = scanned.saturating_sub(PING.len() - 1).min(rest.len());
        let head_len = rest
            .get(from..)
            .and_then(|tail| memmem::find(tail, PING))
            .map(|p| from.saturating_add(p).saturating_add(PING.len()));
        let checked_to = head_len.unwrap_or(rest.len());
        check_line_endings(rest, scanned.min(checked_to), checked_to)?;

        let Some(head_len) = head_len else {
            if rest.len() > self.max {
                return Err(FramingError::TooLarge { limit: self.max });
            }
            self.state = State::Head {
                scanned: rest.len(),
            };
            return Ok(FrameStatus::Incomplete);
        };
        if head_len > self.max {
            return Err(FramingError::TooLarge { limit: self.max });
        }
        let head = rest.get(..head_len).unwrap_or_default();
        let body_len = match content_length(head) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(FramingError::MissingContentLength),
            Err(ClError::Malformed) => return Err(FramingError::BadContentLength),
            Err(ClError::Overflow) => return Err(FramingError::TooLarge { limit: self.max }),
        };
        let len = usize::try_from(body_len)
            .ok()
            .and_then(|b| head_len.checked_add(b))
            .filter(|&len| len <= self.max)
            .ok_or(FramingError::TooLarge { limit: self.max })?;
        self.state = State::Body { skip, len };
        Ok(if rest.len() >= len {
            FrameStatus::Complete { skip, len }
        } else {
            FrameStatus::Incomplete
        })
    }
}

/// Every LF in `rest[from..to]` must follow a CR.
fn check_line_endings(rest: &[u8], from: usize, to: usize) -> Result<(), FramingError> {
    let Some(window) = rest.get(from..to) else {
        return Ok(());
    };
    for offset in memchr_iter(b'\n', window) {
        let at = from.saturating_add(offset);
        let after_cr = at
            .checked_sub(1)
            .and_then(|i| rest.get(i))
            .is_some_and(|&b| b == b'\r');
        if !after_cr {
            return Err(FramingError::BareLineFeed);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClError {
    Malformed,
    Overflow,
}

/// The Content-Length of a header section (start line, headers, blank line), if present.
fn content_length(head: &[u8]) -> Result<Option<u64>, ClError> {
    let mut found: Option<u64> = None;
    let mut current: Option<ClValue> = None;
    // Every LF follows a CR here (checked by the caller), so lines split on LF.
    for (index, raw) in head.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if index == 0 {
            continue; // start line
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            if let Some(value) = current.as_mut() {
                value.feed(b" ");
                value.feed(line);
            }
            continue;
        }
        if let Some(value) = current.take() {
            found = merge(found, value.finish()?)?;
        }
        if line.is_empty() {
            break; // blank line: end of headers
        }
        let Some(colon) = memchr(b':', line) else {
            continue; // not a header line; the codec will reject the message
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii_end();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let mut value = ClValue::default();
            value.feed(line.get(colon.saturating_add(1)..).unwrap_or_default());
            current = Some(value);
        }
    }
    if let Some(value) = current.take() {
        found = merge(found, value.finish()?)?;
    }
    Ok(found)
}

fn merge(found: Option<u64>, value: u64) -> Result<Option<u64>, ClError> {
    match found {
        Some(previous) if previous != value => Err(ClError::Malformed),
        _ => Ok(Some(value)),
    }
}

/// Accumulates `LWS 1*DIGIT LWS` (RFC 3261 §20.14) across folded lines.
#[derive(Debug, Default)]
struct ClValue {
    value: u64,
    digits: usize,
    trailing_space: bool,
    malformed: bool,
    overflow: bool,
}

impl ClValue {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b' ' | b'\t' | b'\r' => self.trailing_space = self.digits > 0,
                b'0'..=b'9' if !self.trailing_space => {
                    self.digits = self.digits.saturating_add(1);
                    match self
                        .value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    {
                        Some(v) => self.value = v,
                        None => self.overflow = true,
                    }
                }
                _ => self.malformed = true,
            }
        }
    }

    fn finish(self) -> Result<u64, ClError> {
        if self.malformed || self.digits == 0 {
            Err(ClError::Malformed)
        } else if self.overflow {
            Err(ClError::Overflow)
        } else {
            Ok(self.value)
        }
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
