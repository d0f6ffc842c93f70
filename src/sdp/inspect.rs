//! Validate an SDP body and summarise what the B2BUA needs to know about it.
//!
//! Two checks run on every body, and both must pass:
//!
//! 1. handover's own line check (this file), which also builds the [`SdpSummary`]. It is the
//!    source of the summary because webrtc-sdp 0.3 drops every `m=` line whose protocol it
//!    does not model (`udptl` T.38, `TCP/MSRP`) and files that section's attributes under the
//!    previous section, so its media list does not match the body we relay.
//! 2. webrtc-sdp (`parse_sdp(text, false)`: unknown attributes are warnings, not errors) on
//!    the parts it models; see `validate.rs` for what it is shown.
//!
//! # What handover accepts (RFC 8866 §5 grammar, with these decisions)
//! - UTF-8 only, at most [`MAX_SDP_BYTES`], at most [`MAX_MEDIA`] media sections and
//!   [`MAX_FORMATS`] formats per `m=` line. CRLF or bare LF line ends; blank lines skipped.
//! - `v=0`, `o=` and `s=` first, in that order (RFC 8866 §5); type letters are the ones
//!   RFC 8866 defines; an unknown letter is refused (§5: "ignore or reject" — we relay what we
//!   accept, so we reject).
//! - **`t=` missing is accepted.** Real phones omit it; it carries nothing a call needs.
//!   webrtc-sdp is shown the body with `t=0 0` added, and the relayed body is left as it came.
//! - **Bodies under 51 bytes** (webrtc-sdp's minimum) are accepted on the line check alone.
//! - **`u= e= p= r= z=`** (legal, rare) are accepted and hidden from webrtc-sdp, which
//!   refuses them.
//! - **`k=` is refused**: RFC 8866 §5.12 obsoletes it, it carries a key in the clear, and
//!   relaying it into logs and other legs would spread that key.
//! - Every media section needs a connection address, its own `c=` or a session one
//!   (RFC 8866 §5.7).
//! - `c=IN IP4 0.0.0.0` (RFC 2543 hold, still sent by old phones; also `::`) is accepted and
//!   reported as [`Connection::is_null`] / [`MediaSummary::null_connection`].

use super::direction::Direction;
use super::error::{LineFault, SdpError};
use super::lines::lines;
use super::validate;

/// Largest SDP body handover inspects.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Most media sections in one body.
pub const MAX_MEDIA: usize = 32;
/// Most formats on one `m=` line (RTP payload types are 0–127).
pub const MAX_FORMATS: usize = 128;

/// What a body says, in owned form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpSummary {
    /// One entry per `m=` line, in order.
    pub media: Vec<MediaSummary>,
    /// A direction attribute at session level, if any.
    pub session_direction: Option<Direction>,
    /// The session-level `c=`, if any.
    pub session_connection: Option<Connection>,
    /// Whether the body has a `t=` line (handover relays bodies without one).
    pub has_timing: bool,
    /// Whether webrtc-sdp checked the body, or on this thread a body of the same shape
    /// (`shape.rs`); false for bodies under its 51-byte minimum.
    pub parser_checked: bool,
}

impl SdpSummary {
    /// Number of media sections.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// True when every active (port ≠ 0) section is held: it does not receive, or its
    /// connection address is the RFC 2543 null address. False when there is no active section.
    pub fn is_hold(&self) -> bool {
        let mut active = self.media.iter().filter(|m| !m.is_rejected()).peekable();
        active.peek().is_some() && active.all(|m| !m.direction.receives() || m.null_connection)
    }
}

/// One media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSummary {
    pub kind: MediaKind,
    /// Port 0 means the stream is rejected or disabled (RFC 3264 §6).
    pub port: u16,
    /// The transport protocol as written (`RTP/AVP`, `RTP/SAVP`, `udptl`, ...).
    pub protocol: String,
    /// The `<fmt>` tokens of the `m=` line, in order.
    pub formats: Vec<String>,
    /// For RTP sections: one entry per payload type on the `m=` line that has an `a=rtpmap`
    /// or a static RFC 3551 assignment, in `m=` order (the sender's preference).
    pub codecs: Vec<Codec>,
    /// Effective direction: the media attribute, else the session one, else sendrecv
    /// (RFC 3264 §5.1).
    pub direction: Direction,
    /// Effective connection: the media `c=`, else the session `c=`.
    pub connection: Option<Connection>,
    /// The effective connection address is 0.0.0.0 or `::` (RFC 2543 hold).
    pub null_connection: bool,
}

impl MediaSummary {
    /// True for a port-0 section.
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Codec names in preference order.
    pub fn codec_names(&self) -> impl Iterator<Item = &str> {
        self.codecs.iter().map(|c| c.name.as_str())
    }
}

/// The media type of an `m=` line (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// `image`, used by T.38 fax.
    Image,
    Application,
    /// Any other token (`text`, `message`, ...), as written.
    Other(String),
}

impl MediaKind {
    fn parse(token: &str) -> MediaKind {
        const KNOWN: [(&str, MediaKind); 4] = [
            ("audio", MediaKind::Audio),
            ("video", MediaKind::Video),
            ("image", MediaKind::Image),
            ("application", MediaKind::Application),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| token.eq_ignore_ascii_case(name))
            .map_or_else(|| MediaKind::Other(token.to_owned()), |(_, kind)| kind)
    }
}

/// One RTP payload format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`).
    pub name: String,
    pub clock_rate: u32,
    /// Encoding parameters (channels, for audio), if given.
    pub channels: Option<u16>,
}

/// A connection address (`c=`, RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// True for `IP6`.
    pub ipv6: bool,
    /// The address as written, without a `/ttl` or `/count` suffix; may be a domain name.
    pub address: String,
    /// The unspecified address (0.0.0.0 or `::`): RFC 2543 hold.
    pub is_null: bool,
}

/// Validates `body` and summarises it. See the module doc for what is accepted.
pub fn inspect(body: &[u8]) -> Result<SdpSummary, SdpError> {
    let (scan, parser_checked) = validated(body)?;
    Ok(summarize(scan, parser_checked))
}

/// Validates `body` as [`inspect()`] does, without building the summary: what the call path
/// needs to accept or refuse an offer.
pub fn check(body: &[u8]) -> Result<(), SdpError> {
    validated(body).map(|_| ())
}

/// Both checks; the scan and whether webrtc-sdp checked the body.
fn validated(body: &[u8]) -> Result<(Scan<'_>, bool), SdpError> {
    if body.is_empty() {
        return Err(SdpError::Empty);
    }
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_SDP_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let scan = scan(text)?;
    let parser_checked = validate::with_webrtc(text, &scan.layout)?;
    Ok((scan, parser_checked))
}

/// What `validate.rs` needs to know to show webrtc-sdp the parts it models.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) has_timing: bool,
    /// Body has `u= e= p= r= z=` lines.
    pub(crate) has_unmodelled_lines: bool,
    /// Per media section: the offset of its `m=` line and whether webrtc-sdp models its
    /// protocol.
    pub(crate) sections: Vec<(usize, bool)>,
}

/// A body that passed the line check, as borrowed parts of its text.
struct Scan<'a> {
    sections: Vec<Section<'a>>,
    session_direction: Option<Direction>,
    session_connection: Option<ConnectionText<'a>>,
    layout: Layout,
}

/// A media section, borrowed from the body.
struct Section<'a> {
    line: usize,
    kind: &'a str,
    port: u16,
    protocol: &'a str,
    formats: Vec<&'a str>,
    rtpmaps: Vec<RtpMap<'a>>,
    direction: Option<Direction>,
    /// The effective connection: its own `c=`, else the session one.
    connection: Option<ConnectionText<'a>>,
}

/// An `a=rtpmap` value, borrowed from the body.
#[derive(Clone, Copy)]
struct RtpMap<'a> {
    payload_type: u8,
    name: &'a str,
    clock_rate: u32,
    channels: Option<u16>,
}

impl RtpMap<'_> {
    fn to_codec(self) -> Codec {
        Codec {
            payload_type: self.payload_type,
            name: self.name.to_owned(),
            clock_rate: self.clock_rate,
            channels: self.channels,
        }
    }
}

/// A `c=` value, borrowed from the body.
#[derive(Clone, Copy)]
struct ConnectionText<'a> {
    ipv6: bool,
    address: &'a str,
    is_null: bool,
}

impl ConnectionText<'_> {
    fn to_connection(self) -> Connection {
        Connection {
            ipv6: self.ipv6,
            address: self.address.to_owned(),
            is_null: self.is_null,
        }
    }
}

fn scan(text: &str) -> Result<Scan<'_>, SdpError> {
    let mut header = 0usize; // how many of v=, o=, s= have been seen
    let mut layout = Layout::default();
    let mut session_direction = None;
    let mut session_connection = None;
    let mut sections: Vec<Section<'_>> = Vec::new();

    for (index, line) in lines(text.as_bytes()).enumerate() {
        let number = index + 1;
        let fail = |fault| SdpError::Line {
            line: number,
            fault,
        };
        if line.content.trim_ascii().is_empty() {
            continue;
        }
        let (kind, _) = line.kind().ok_or(fail(LineFault::NotTypeValue))?;
        // Both ends are ASCII positions in a str, so this slice cannot fail; stay total anyway.
        let value = text
            .get(line.start + 2..line.start + line.content.len())
            .ok_or(fail(LineFault::NotTypeValue))?;
        let expected = match header {
            0 => Some((b'v', LineFault::BadVersion)),
            1 => Some((b'o', LineFault::BadOrigin)),
            2 => Some((b's', LineFault::MissingSessionName)),
            _ => None,
        };
        if let Some((want, fault)) = expected {
            if kind != want {
                return Err(fail(fault));
            }
            header += 1;
        }
        match kind {
            b'v' | b'o' | b's' if expected.is_none() => return Err(fail(LineFault::Repeated)),
            b'v' if value != "0" => return Err(fail(LineFault::BadVersion)),
            b'o' if !valid_origin(value) => return Err(fail(LineFault::BadOrigin)),
            b'v' | b'o' | b's' | b'i' | b'b' => {}
            b't' => layout.has_timing = true,
            b'u' | b'e' | b'p' | b'r' | b'z' => layout.has_unmodelled_lines = true,
            b'k' => return Err(fail(LineFault::KeyLine)),
            b'c' => {
                let c = parse_connection(value).ok_or(fail(LineFault::BadConnection))?;
                match sections.last_mut() {
                    Some(s) => s.connection = Some(c),
                    None => session_connection = Some(c),
                }
            }
            b'm' => {
                if sections.len() == MAX_MEDIA {
                    return Err(SdpError::TooManyMedia { max: MAX_MEDIA });
                }
                let section = parse_media(value, number).map_err(fail)?;
                layout
                    .sections
                    .push((line.start, validate::models(section.protocol)));
                sections.push(section);
            }
            b'a' => {
                let dir = Direction::from_attribute(value.as_bytes());
                match sections.last_mut() {
                    None => session_direction = dir.or(session_direction),
                    Some(s) => {
                        s.direction = dir.or(s.direction);
                        if let Some(map) = value.strip_prefix("rtpmap:") {
                            if s.rtpmaps.len() == MAX_FORMATS {
                                return Err(fail(LineFault::TooManyFormats));
                            }
                            s.rtpmaps
                                .push(parse_rtpmap(map).ok_or(fail(LineFault::BadRtpmap))?);
                        }
                    }
                }
            }
            other if other.is_ascii_lowercase() => return Err(fail(LineFault::UnknownType(other))),
            _ => return Err(fail(LineFault::NotTypeValue)),
        }
    }

    match header {
        0 => {
            return Err(SdpError::Line {
                line: 1,
                fault: LineFault::BadVersion,
            })
        }
        1 => return Err(SdpError::MissingOrigin),
        2 => {
            return Err(SdpError::Line {
                line: 3,
                fault: LineFault::MissingSessionName,
            })
        }
        _ => {}
    }

    for s in &mut sections {
        s.connection = s.connection.or(session_connection);
        if s.connection.is_none() {
            return Err(SdpError::Line {
                line: s.line,
                fault: LineFault::MissingConnection,
            });
        }
    }
    Ok(Scan {
        sections,
        session_direction,
        session_connection,
        layout,
    })
}

/// The owned summary of a body that passed both checks.
fn summarize(scan: Scan<'_>, parser_checked: bool) -> SdpSummary {
    let session_direction = scan.session_direction;
    let media = scan
        .sections
        .iter()
        .map(|s| {
            let connection = s.connection.map(ConnectionText::to_connection);
            MediaSummary {
                codecs: codecs(s.protocol, &s.formats, &s.rtpmaps),
                kind: MediaKind::parse(s.kind),
                port: s.port,
                protocol: s.protocol.to_owned(),
                formats: s.formats.iter().map(|f| (*f).to_owned()).collect(),
                direction: s.direction.or(session_direction).unwrap_or_default(),
                null_connection: connection.as_ref().is_some_and(|c| c.is_null),
                connection,
            }
        })
        .collect();
    SdpSummary {
        media,
        session_direction,
        session_connection: scan.session_connection.map(ConnectionText::to_connection),
        has_timing: scan.layout.has_timing,
        parser_checked,
    }
}

/// `o=<username> <sess-id> <sess-version> IN <IP4|IP6> <address>` (RFC 8866 §5.2).
fn valid_origin(value: &str) -> bool {
    let f: Vec<&str> = value.split_ascii_whitespace().take(7).collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(f.as_slice(), [_, id, ver, "IN", "IP4" | "IP6", _] if numeric(id) && numeric(ver))
}

/// `IN <IP4|IP6> <address>[/ttl][/count]` (RFC 8866 §5.7).
fn parse_connection(value: &str) -> Option<ConnectionText<'_>> {
    let mut f = value.split_ascii_whitespace();
    let (net, addr_type, addr) = (f.next()?, f.next()?, f.next()?);
    if net != "IN" || f.next().is_some() {
        return None;
    }
    let ipv6 = match addr_type {
        "IP4" => false,
        "IP6" => true,
        _ => return None,
    };
    let address = addr.split('/').next().filter(|a| !a.is_empty())?;
    let is_null = address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    Some(ConnectionText {
        ipv6,
        address,
        is_null,
    })
}

/// `<media> <port>[/<count>] <proto> <fmt> ...` (RFC 8866 §5.14).
fn parse_media(value: &str, line: usize) -> Result<Section<'_>, LineFault> {
    let mut f = value.split_ascii_whitespace();
    let (media, port, protocol) = match (f.next(), f.next(), f.next()) {
        (Some(m), Some(p), Some(proto)) => (m, p, proto),
        _ => return Err(LineFault::BadMedia),
    };
    let port = port.split('/').next().unwrap_or_default();
    let port = match port.parse::<u16>() {
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(LineFault::BadPort),
    };
    let mut formats = Vec::new();
    for fmt in f {
        if formats.len() == MAX_FORMATS {
            return Err(LineFault::TooManyFormats);
        }
        formats.push(fmt);
    }
    if formats.is_empty() {
        return Err(LineFault::NoFormats);
    }
    Ok(Section {
        line,
        kind: media,
        port,
        protocol,
        formats,
        rtpmaps: Vec::new(),
        direction: None,
        connection: None,
    })
}

/// `<payload type> <encoding name>/<clock rate>[/<encoding parameters>]` (RFC 8866 §6.6).
fn parse_rtpmap(value: &str) -> Option<RtpMap<'_>> {
    let (pt, rest) = value.trim().split_once(' ')?;
    let payload_type = pt.parse::<u8>().ok().filter(|pt| *pt < 128)?;
    let mut parts = rest.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type,
        name,
        clock_rate,
        channels,
    })
}

/// RFC 3551 §6 static payload types, for RTP sections that omit `a=rtpmap`.
fn static_codec(pt: u8) -> Option<(&'static str, u32, Option<u16>)> {
    Some(match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    })
}

fn codecs(protocol: &str, formats: &[&str], rtpmaps: &[RtpMap<'_>]) -> Vec<Codec> {
    let is_rtp = protocol
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("RTP"));
    if !is_rtp {
        return Vec::new();
    }
    formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| {
            rtpmaps
                .iter()
                .find(|c| c.payload_type == pt)
                .map(|c| c.to_codec())
                .or_else(|| {
                    static_codec(pt).map(|(name, clock_rate, channels)| Codec {
                        payload_type: pt,
                        name: name.to_owned(),
                        clock_rate,
                        channels,
                    })
                })
        })
        .collect()
}

#[cfg(test)]
#[path = "inspect_tests.rs"]
pub(crate) mod tests;
