//! The line-preserving SDP editor: everything handover changes in a relayed body.
//!
//! Bodies are never re-serialised through a parser (webrtc-sdp drops `a=crypto`, T.38 and
//! MSRP sections and unknown attributes, and rewrites Opus fmtp separators). Each operation
//! is one pass over the lines, copying every line it does not own byte for byte, with its
//! own line terminator (CRLF, or LF if that is what came in), into one `BytesMut` sized to
//! the input plus a little slack. Input is expected to have passed
//! [`inspect`](super::inspect()); on anything else the editor still never panics.
//!
//! # o= per leg (RFC 3264 §8, RFC 3725 §3)
//! A B2BUA is the SDP originator on each leg it terminates: over the life of a call the
//! body relayed to the customer may come from an IVR, then agent 1, then agent 2, each with
//! its own `o=` line. RFC 3264 §8 requires every later SDP in a session to keep the `o=` line
//! of the first except for a version that grows by one when anything changes — so each leg
//! gets its own [`LegSdpOrigin`], which writes `o=<username> <leg session id> <leg version>
//! <nettype> <addrtype> <address>`. The network and address part is taken from the first
//! body sent on the leg and then kept (pinned), so the line stays stable when the far party
//! changes; it only names the originating host and is not used for media (RFC 8866 §5.2).
//!
//! # Direction (RFC 3264 §8.4, RFC 6337 §5)
//! [`set_direction`] makes the effective direction of every active (port ≠ 0) section the
//! requested one: existing direction attributes — media or session level — are rewritten in
//! place, and a section that would otherwise inherit nothing gets `a=<direction>` appended at
//! its end. Port-0 sections are left untouched. `c=` lines are not changed.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::direction::Direction;
use super::lines::{lines, terminator, Line};
use crate::sip::put_decimal;

/// The version written on the first SDP sent on a leg.
pub const INITIAL_VERSION: u64 = 1;

/// The `o=` username written when none is configured (RFC 8866 §5.2: "-" for none).
pub const DEFAULT_USERNAME: &str = "-";

/// Extra room for what an edit can add (a few `a=` lines, longer numbers).
const SLACK: usize = 64;

/// The `o=` address part used if the body has a malformed `o=` line and none is pinned yet.
const FALLBACK_ADDRESS: &[u8] = b"IN IP4 0.0.0.0";

/// A username unfit for an `o=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("o= username must be 1 to 64 visible ASCII characters")]
pub struct InvalidUsername;

/// The last body sent on a leg and where its `o=` line content sits in it.
#[derive(Debug, Clone)]
struct Sent {
    body: Bytes,
    origin_start: usize,
    origin_end: usize,
}

impl Sent {
    fn before(&self) -> &[u8] {
        self.body.get(..self.origin_start).unwrap_or_default()
    }

    fn after(&self) -> &[u8] {
        self.body.get(self.origin_end..).unwrap_or_default()
    }
}

/// Per-leg `o=` state: the leg's session id, its current version and the last body sent.
#[derive(Debug, Clone)]
pub struct LegSdpOrigin {
    /// `Cow`: the usual `-` costs no allocation per leg.
    username: std::borrow::Cow<'static, str>,
    session_id: u64,
    version: u64,
    address: Option<Bytes>,
    last: Option<Sent>,
}

impl LegSdpOrigin {
    /// A leg with this session id. Pick it at random per leg, below 2^62 so that peers
    /// which read it as a signed 64-bit number still can (RFC 8866 §5.2 leaves the size open).
    pub fn new(session_id: u64) -> LegSdpOrigin {
        LegSdpOrigin {
            username: std::borrow::Cow::Borrowed(DEFAULT_USERNAME),
            session_id,
            version: INITIAL_VERSION,
            address: None,
            last: None,
        }
    }

    /// Writes `username` instead of `-`.
    pub fn with_username(mut self, username: &str) -> Result<LegSdpOrigin, InvalidUsername> {
        let visible = username.bytes().all(|b| b.is_ascii_graphic());
        if username.is_empty() || username.len() > 64 || !visible {
            return Err(InvalidUsername);
        }
        self.username = std::borrow::Cow::Owned(username.to_owned());
        Ok(self)
    }

    /// The leg's session id, constant for the leg's life.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The version of the last body sent, `None` before the first.
    pub fn version(&self) -> Option<u64> {
        self.last.as_ref().map(|_| self.version)
    }

    /// The last body [`apply`](Self::apply) returned (a cheap clone), e.g. to build a hold
    /// offer from with [`set_direction`].
    pub fn last_sent(&self) -> Option<Bytes> {
        self.last.as_ref().map(|s| s.body.clone())
    }

    /// Returns `sdp` with its `o=` line replaced by this leg's, ready to send on the leg.
    ///
    /// The version is [`INITIAL_VERSION`] on the first call, then grows by one whenever
    /// the body differs from the last one sent on this leg, the `o=` line excluded, or
    /// `changed` is true (the caller knows the session changed, e.g. it wants the peer to
    /// negotiate again). An identical re-send keeps the version (RFC 3264 §8). A body without
    /// an `o=` line (which [`inspect`](super::inspect()) refuses) is returned unchanged and
    /// leaves the state alone.
    pub fn apply(&mut self, sdp: &[u8], changed: bool) -> Bytes {
        let Some(origin) = find_origin(sdp) else {
            return Bytes::copy_from_slice(sdp);
        };
        let origin_end = origin.start + origin.content.len();
        let (Some(before), Some(after)) = (sdp.get(..origin.start), sdp.get(origin_end..)) else {
            return Bytes::copy_from_slice(sdp);
        };
        if let Some(last) = &self.last {
            if changed || last.before() != before || last.after() != after {
                self.version = self.version.saturating_add(1);
            }
        }
        let address = self
            .address
            .get_or_insert_with(|| Bytes::copy_from_slice(origin_address(origin.content)));

        let mut out = BytesMut::with_capacity(sdp.len() + SLACK + self.username.len());
        out.put_slice(before);
        out.put_slice(b"o=");
        out.put_slice(self.username.as_bytes());
        out.put_u8(b' ');
        put_decimal(&mut out, self.session_id);
        out.put_u8(b' ');
        put_decimal(&mut out, self.version);
        out.put_u8(b' ');
        out.put_slice(address);
        let new_origin_end = out.len();
        out.put_slice(after);
        let body = out.freeze();
        self.last = Some(Sent {
            body: body.clone(),
            origin_start: before.len(),
            origin_end: new_origin_end,
        });
        body
    }
}

/// The first `o=` line of the session part.
fn find_origin(sdp: &[u8]) -> Option<Line<'_>> {
    lines(sdp)
        .take_while(|l| !l.is_media())
        .find(|l| l.content.starts_with(b"o="))
}

/// `<nettype> <addrtype> <address>` of an `o=` line: everything from its fourth field on.
fn origin_address(content: &[u8]) -> &[u8] {
    let value = content.get(2..).unwrap_or_default();
    let mut fields = 0;
    let mut in_field = false;
    for (i, b) in value.iter().enumerate() {
        let blank = *b == b' ' || *b == b'\t';
        if !blank && !in_field {
            fields += 1;
            if fields == 4 {
                let rest = value.get(i..).unwrap_or_default().trim_ascii_end();
                let parts = rest.split(|b| *b == b' ' || *b == b'\t');
                if parts.filter(|p| !p.is_empty()).count() == 3 {
                    return rest;
                }
                break;
            }
        }
        in_field = !blank;
    }
    FALLBACK_ADDRESS
}

/// The port of an `m=` line, `None` if unreadable.
fn media_port(content: &[u8]) -> Option<u16> {
    let value = content.get(2..)?;
    let token = value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
        .nth(1)?;
    let port = token.split(|b| *b == b'/').next()?;
    std::str::from_utf8(port).ok()?.parse().ok()
}

/// Returns `sdp` with every active media section's effective direction set to `direction`
/// (hold: `SendOnly`; resume: `SendRecv`). Every other line is copied byte for byte.
pub fn set_direction(sdp: &[u8], direction: Direction) -> Bytes {
    let term = terminator(sdp);
    let attr = direction.attribute().as_bytes();
    let mut out = BytesMut::with_capacity(sdp.len() + SLACK);
    let mut in_media = false;
    let mut active = false; // current section has port ≠ 0
    let mut has_direction = false; // current section has its own attribute
    let mut session_direction = false;
    let mut blanks_from: Option<usize> = None; // a run of blank lines not yet copied

    // Appends `a=<direction>` at the end of a section that has nothing to inherit.
    let close = |out: &mut BytesMut, missing: bool| {
        if missing {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.put_slice(term);
            }
            out.put_slice(b"a=");
            out.put_slice(attr);
            out.put_slice(term);
        }
    };
    let flush = |out: &mut BytesMut, blanks_from: &mut Option<usize>, upto: usize| {
        if let Some(from) = blanks_from.take() {
            out.put_slice(sdp.get(from..upto).unwrap_or_default());
        }
    };

    for line in lines(sdp) {
        if line.content.trim_ascii().is_empty() {
            blanks_from.get_or_insert(line.start);
            continue;
        }
        let whole = sdp.get(line.start..line.end()).unwrap_or_default();
        if line.is_media() {
            close(
                &mut out,
                in_media && active && !has_direction && !session_direction,
            );
            flush(&mut out, &mut blanks_from, line.start);
            in_media = true;
            active = media_port(line.content) != Some(0);
            has_direction = false;
            out.put_slice(whole);
            continue;
        }
        flush(&mut out, &mut blanks_from, line.start);
        let is_direction = matches!(
            line.kind(),
            Some((b'a', value)) if Direction::from_attribute(value).is_some()
        );
        if is_direction && (!in_media || active) {
            if in_media {
                has_direction = true;
            } else {
                session_direction = true;
            }
            out.put_slice(b"a=");
            out.put_slice(attr);
            out.put_slice(line.term);
        } else {
            out.put_slice(whole);
        }
    }
    close(
        &mut out,
        in_media && active && !has_direction && !session_direction,
    );
    flush(&mut out, &mut blanks_from, sdp.len());
    out.freeze()
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
