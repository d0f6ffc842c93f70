//! A parsed SIP message (RFC 3261 §7): start line, an index of header byte ranges over one
//! `Bytes`, and the body.
//!
//! Parsing is a single pass (`memchr` per line) that records where every header name and
//! value lies; nothing is copied. It validates what every layer relies on (§8.1.1, §8.2.2,
//! §18.3): a well-formed start line (any method token, any reason phrase kept exactly),
//! header lines (folds §7.3.1, whitespace before `:`, compact names §7.3.3), the presence
//! and syntax of Via, From, To, Call-ID and CSeq, the CSeq method, and Content-Length
//! (a shorter body is an error; a longer datagram is truncated, §18.3). From, To and every
//! Contact are also checked for a URI with `?headers` outside `<>` (§20.10, RFC 4475
//! §3.1.2.13), a scan that only runs on values holding a `?`, so such a request is refused
//! with its reason before any layer reads it. The Call-ID, CSeq,
//! From/To tags and the top Via branch are located during that pass, so their accessors
//! are free. Every other typed value is parsed on demand from the header's `&str`.
//!
//! ```text
//!  raw: INVITE sip:x SIP/2.0\r\nVia: ...\r\nCall-ID: abc\r\n...\r\n\r\nv=0...
//!       ^start-line^          ^name^ ^value^                      ^body.....^
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;

use super::error::ParseError;
use super::header::{HeaderEntry, HeaderName};
use super::method::{is_token_char, Method};
use super::name_addr::NameAddr;
use super::scan;
use super::typed::{option_tags, CSeq, Contacts, Replaces, SessionExpires};
use super::uri::Uri;
use super::via::{SentBy, Via};

/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 256;

#[derive(Clone, Debug)]
enum StartLine {
    Request { method: Method, uri: (usize, usize) },
    Response { status: u16, reason: (usize, usize) },
}

/// A parsed SIP request or response over its raw bytes.
#[derive(Clone, Debug)]
pub struct SipMessage {
    raw: Bytes,
    /// The start line and header section of `raw` (the same bytes, validated as UTF-8 once,
    /// so every header access borrows a `&str` without checking again).
    head: ByteString,
    start: StartLine,
    headers: Vec<HeaderEntry>,
    body: (usize, usize),
    call_id: (usize, usize),
    cseq: CSeq,
    from_tag: Option<(usize, usize)>,
    to_tag: Option<(usize, usize)>,
    branch: Option<(usize, usize)>,
}

/// A `(start, end)` pair as a range.
fn range((start, end): (usize, usize)) -> std::ops::Range<usize> {
    start..end
}

/// Why no line could be taken from the head.
enum LineFault {
    /// No line terminator follows.
    Unterminated,
    /// A CR not followed by LF: a line break to some peers, so relaying it would let a
    /// sender smuggle headers past us (RFC 3261 §7.3.1 allows CR only in CRLF).
    BareCr,
}

impl LineFault {
    /// The parse error: `bare_cr` names the line the CR was found in.
    fn error(self, bare_cr: ParseError) -> ParseError {
        match self {
            LineFault::Unterminated => ParseError::Unterminated,
            LineFault::BareCr => bare_cr,
        }
    }
}

/// End of the line starting at `pos` (excluding CR LF or LF) and the start of the next, in
/// one scan for CR or LF.
fn next_line(buf: &[u8], pos: usize) -> Result<(usize, usize), LineFault> {
    let rest = buf.get(pos..).ok_or(LineFault::Unterminated)?;
    let at = pos + memchr::memchr2(b'\r', b'\n', rest).ok_or(LineFault::Unterminated)?;
    match (buf.get(at), buf.get(at + 1)) {
        (Some(b'\n'), _) => Ok((at, at + 1)),
        (_, Some(b'\n')) => Ok((at, at + 2)),
        // A bare CR; but a head that never ends is reported as such.
        _ => match buf
            .get(at + 1..)
            .and_then(|after| memchr::memchr(b'\n', after))
        {
            Some(_) => Err(LineFault::BareCr),
            None => Err(LineFault::Unterminated),
        },
    }
}

/// Moves `end` back over spaces and tabs, not before `start`.
fn trim_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(buf.get(end - 1), Some(b' ' | b'\t')) {
        end -= 1;
    }
    end
}

fn trim_start(buf: &[u8], mut start: usize, end: usize) -> usize {
    while start < end && matches!(buf.get(start), Some(b' ' | b'\t')) {
        start += 1;
    }
    start
}

fn parse_start_line(buf: &[u8], s: usize, e: usize) -> Result<StartLine, ParseError> {
    let line = buf.get(s..e).ok_or(ParseError::BadStartLine)?;
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        if !line
            .get(..sp)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"SIP/2.0"))
        {
            return Err(ParseError::BadVersion);
        }
        let code = line.get(sp + 1..sp + 4).ok_or(ParseError::BadStatus)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatus);
        }
        let status = code
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatus);
        }
        let reason_start = match line.get(sp + 4) {
            None => e,
            Some(b' ') => s + sp + 5,
            Some(_) => return Err(ParseError::BadStatus),
        };
        return Ok(StartLine::Response {
            status,
            reason: (reason_start.min(e), e),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    let sp2 = memchr::memrchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    if sp1 == 0 || sp2 <= sp1 {
        return Err(ParseError::BadStartLine);
    }
    let method = Method::from_token(line.get(..sp1).ok_or(ParseError::BadMethod)?)
        .ok_or(ParseError::BadMethod)?;
    let version = line.get(sp2 + 1..).ok_or(ParseError::BadStartLine)?;
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(
            if version.len() >= 4
                && version
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
            {
                ParseError::BadVersion
            } else {
                ParseError::BadStartLine
            },
        );
    }
    let uri = line.get(sp1 + 1..sp2).ok_or(ParseError::BadRequestUri)?;
    // A scheme, a colon, something after it, and no whitespace (§25.1 Request-URI).
    let colon = memchr::memchr(b':', uri).ok_or(ParseError::BadRequestUri)?;
    if colon == 0
        || colon + 1 >= uri.len()
        || uri.iter().any(|&c| c <= b' ' || c == 0x7f)
        || !uri.get(..colon).is_some_and(|sch| {
            sch.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        })
    {
        return Err(ParseError::BadRequestUri);
    }
    Ok(StartLine::Request {
        method,
        uri: (s + sp1 + 1, s + sp2),
    })
}

impl SipMessage {
    /// Parses one complete message (a UDP datagram, or one framed TCP message). See the
    /// module docs for what is validated.
    pub fn parse(raw: Bytes) -> Result<SipMessage, ParseError> {
        let buf: &[u8] = &raw;
        // The header index keeps u32 offsets (`HeaderEntry`).
        if u32::try_from(buf.len()).is_err() {
            return Err(ParseError::TooLarge);
        }
        // §7.5: CRLFs before the start line are ignored.
        let mut pos = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .ok_or(ParseError::Empty)?;
        let (line_end, next) =
            next_line(buf, pos).map_err(|fault| fault.error(ParseError::BadStartLine))?;
        let start = parse_start_line(buf, pos, line_end)?;
        pos = next;

        let mut headers: Vec<HeaderEntry> = Vec::with_capacity(24);
        let body_start = loop {
            let (le, nx) =
                next_line(buf, pos).map_err(|fault| fault.error(ParseError::BadHeaderLine))?;
            if le == pos {
                break nx;
            }
            if matches!(buf.get(pos), Some(b' ' | b'\t')) {
                // Continuation of the previous header's value (§7.3.1).
                let last = headers.last_mut().ok_or(ParseError::BadHeaderLine)?;
                let content = trim_start(buf, pos, le);
                let end = trim_end(buf, content, le);
                if end > content {
                    let (start, value_end) = last.value_range();
                    if start == value_end {
                        last.set_value_range(content, end);
                    } else {
                        last.folded = true;
                        last.set_value_range(start, end);
                    }
                }
            } else {
                // header-name = token, then optional SP/HTAB, then ':' (§7.3.1, §25.1):
                // one pass over the name, no search for the colon.
                let mut name_end = pos;
                while name_end < le && buf.get(name_end).is_some_and(|&c| is_token_char(c)) {
                    name_end += 1;
                }
                let colon = trim_start(buf, name_end, le);
                if name_end == pos || buf.get(colon) != Some(&b':') {
                    return Err(ParseError::BadHeaderLine);
                }
                let name = buf.get(pos..name_end).ok_or(ParseError::BadHeaderLine)?;
                if headers.len() >= MAX_HEADERS {
                    return Err(ParseError::TooManyHeaders);
                }
                let value_start = trim_start(buf, colon + 1, le);
                headers.push(HeaderEntry::new(
                    HeaderName::from_bytes(name),
                    (pos, name_end),
                    (value_start, trim_end(buf, value_start, le)),
                ));
            }
            pos = nx;
        };
        if body_start > buf.len() {
            return Err(ParseError::Unterminated);
        }
        let head =
            ByteString::try_from(raw.slice(..body_start)).map_err(|_| ParseError::NotUtf8)?;

        let mut via = None;
        let mut from = None;
        let mut to = None;
        let mut call_id = None;
        let mut cseq = None;
        let mut content_length: Option<usize> = None;
        for e in &headers {
            let slot = match e.name {
                HeaderName::Via => &mut via,
                HeaderName::From => &mut from,
                HeaderName::To => &mut to,
                HeaderName::CallId => &mut call_id,
                HeaderName::CSeq => &mut cseq,
                HeaderName::ContentLength => {
                    let text = buf.get(range(e.value_range())).unwrap_or_default();
                    let n = scan::parse_u32_bytes(text, 9)
                        .ok_or(ParseError::BadHeader(HeaderName::ContentLength))?
                        as usize;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(ParseError::ContentLengthMismatch);
                    }
                    content_length = Some(n);
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(*e);
            } else if e.name != HeaderName::Via {
                // RFC 3261 §7.3.1 / RFC 4475 §3.1.2.19: From, To, Call-ID and CSeq are
                // single-valued; two of them make the request ambiguous.
                return Err(ParseError::BadHeader(e.name));
            }
        }
        let via = via.ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        let from = from.ok_or(ParseError::MissingHeader(HeaderName::From))?;
        let to = to.ok_or(ParseError::MissingHeader(HeaderName::To))?;
        let call_id = call_id.ok_or(ParseError::MissingHeader(HeaderName::CallId))?;
        let cseq_e = cseq.ok_or(ParseError::MissingHeader(HeaderName::CSeq))?;

        let cid = buf
            .get(range(call_id.value_range()))
            .ok_or(ParseError::BadHeader(HeaderName::CallId))?;
        if cid.is_empty() || cid.iter().any(|&c| scan::is_ws(c)) {
            return Err(ParseError::BadHeader(HeaderName::CallId));
        }
        let cseq_text =
            std::str::from_utf8(buf.get(range(cseq_e.value_range())).unwrap_or(b"")).unwrap_or("");
        let cseq = CSeq::parse(cseq_text)?;
        if let StartLine::Request { method, .. } = &start {
            if !matches!(method, Method::Ack | Method::Cancel) && *method != cseq.method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        let from_tag = tag_range(buf, &from).ok_or(ParseError::BadHeader(HeaderName::From))?;
        let to_tag = tag_range(buf, &to).ok_or(ParseError::BadHeader(HeaderName::To))?;
        for e in &headers {
            if matches!(
                e.name,
                HeaderName::From | HeaderName::To | HeaderName::Contact
            ) {
                check_bracketed_uri_headers(head.as_bytes(), e)?;
            }
        }
        let branch = branch_range(buf, &via).ok_or(ParseError::BadHeader(HeaderName::Via))?;

        let available = buf.len().saturating_sub(body_start);
        let body_len = match content_length {
            Some(n) if n > available => return Err(ParseError::ContentLengthMismatch),
            Some(n) => n,
            None => available,
        };
        Ok(SipMessage {
            start,
            headers,
            body: (body_start, body_start + body_len),
            call_id: call_id.value_range(),
            cseq,
            from_tag,
            to_tag,
            branch,
            raw,
            head,
        })
    }

    /// The bytes the message was parsed from (for retransmission and logs).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response, exactly as received.
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI as written.
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI; `UnsupportedScheme` for schemes other than sip/sips/tel.
    pub fn request_uri(&self) -> Result<Uri, ParseError> {
        let s = self.request_uri_str().ok_or(ParseError::BadRequestUri)?;
        Uri::parse(s).map_err(|e| match e {
            ParseError::UnsupportedScheme => e,
            _ => ParseError::BadRequestUri,
        })
    }

    /// The first occurrence of a header, trimmed, folds replaced by one space. `None` for
    /// `HeaderName::Other` (use [`SipMessage::header_named`]).
    pub fn header(&self, name: HeaderName) -> Option<Cow<'_, str>> {
        if name == HeaderName::Other {
            return None;
        }
        self.headers
            .iter()
            .find(|e| e.name == name)
            .map(|e| self.value(e))
    }

    /// Every occurrence of a header, in order (each value whole, not comma-split).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        self.headers
            .iter()
            .filter(move |e| e.name == name && name != HeaderName::Other)
            .map(|e| self.value(e))
    }

    /// The first header with this name (case-insensitive; compact and long forms of known
    /// headers are equivalent), e.g. `X-Queue`.
    pub fn header_named(&self, name: &str) -> Option<Cow<'_, str>> {
        let known = HeaderName::from_bytes(name.as_bytes());
        self.headers
            .iter()
            .find(|e| {
                if known == HeaderName::Other {
                    e.name == HeaderName::Other
                        && self.text(e.name_range()).eq_ignore_ascii_case(name)
                } else {
                    e.name == known
                }
            })
            .map(|e| self.value(e))
    }

    /// Every header in order: (name, name as written, value).
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &str, Cow<'_, str>)> + '_ {
        self.headers
            .iter()
            .map(|e| (e.name, self.text(e.name_range()), self.value(e)))
    }

    /// The body (Content-Length bytes), a zero-copy slice of the raw message.
    pub fn body(&self) -> Bytes {
        let (s, e) = self.body;
        if s <= e && e <= self.raw.len() {
            self.raw.slice(s..e)
        } else {
            Bytes::new()
        }
    }

    /// The Call-ID (validated by `parse`).
    pub fn call_id(&self) -> &str {
        self.text(self.call_id)
    }

    /// The CSeq (validated by `parse`).
    pub fn cseq(&self) -> CSeq {
        self.cseq.clone()
    }

    /// The CSeq without cloning its method.
    pub fn cseq_ref(&self) -> &CSeq {
        &self.cseq
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.name_addr(HeaderName::From)
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.name_addr(HeaderName::To)
    }

    /// Checks From and To as [`SipMessage::from`] and [`SipMessage::to`] would (the same
    /// error, From's first), without building either.
    pub fn check_from_to(&self) -> Result<(), ParseError> {
        for name in [HeaderName::From, HeaderName::To] {
            let v = self.header(name).ok_or(ParseError::MissingHeader(name))?;
            NameAddr::check(&v).map_err(|e| e.in_header(name))?;
        }
        Ok(())
    }

    /// The From tag, located by `parse` (no allocation).
    pub fn from_tag(&self) -> Option<&str> {
        self.from_tag.map(|r| self.text(r))
    }

    /// The To tag, located by `parse` (no allocation).
    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.map(|r| self.text(r))
    }

    /// The From or To value as written, without its `tag` parameter: the party a dialog
    /// keeps (RFC 3261 §12.1.1), cut from the text with the tag `parse` located instead of
    /// parsed and printed again. `None` where a cut is not safe (a folded value, a quoted
    /// or empty tag, parameters but no tag found) or for another header; callers then
    /// print the parsed [`NameAddr`] without its tag.
    pub fn party_without_tag(&self, name: HeaderName) -> Option<String> {
        let tag = match name {
            HeaderName::From => self.from_tag,
            HeaderName::To => self.to_tag,
            _ => return None,
        };
        let e = self.headers.iter().find(|e| e.name == name)?;
        if e.folded {
            return None;
        }
        let (start, end) = e.value_range();
        let value = self.head.get(start..end)?;
        let Some((tag_start, tag_end)) = tag else {
            return (!value.contains(';')).then(|| value.to_owned());
        };
        let before = value.get(..tag_start.checked_sub(start)?)?;
        let after = value.get(tag_end.checked_sub(start)?..)?;
        if before.ends_with('"') || after.starts_with('"') {
            return None;
        }
        let kept = before.get(..before.rfind(';')?)?.trim_end();
        let mut party = String::with_capacity(kept.len() + after.len());
        party.push_str(kept);
        party.push_str(after);
        Some(party)
    }

    /// Every Via value, comma lists split, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.read_vias(Via::parse)
    }

    /// Every Via value as written (comma lists split, top first), unchecked: what a response
    /// copies back (RFC 3261 §8.2.6.2), whether or not handover could parse each one.
    pub fn via_texts(&self) -> Result<Vec<String>, ParseError> {
        self.read_vias(|item| Ok(item.to_owned()))
    }

    /// `read` applied to every Via value, top first; at most [`scan::MAX_LIST`] of them.
    fn read_vias<T>(
        &self,
        mut read: impl FnMut(&str) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        for v in self.header_values(HeaderName::Via) {
            for item in scan::split_list(&v) {
                if out.len() >= scan::MAX_LIST {
                    return Err(ParseError::BadHeader(HeaderName::Via));
                }
                out.push(read(item)?);
            }
        }
        Ok(out)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        self.read_top_via(Via::parse)
    }

    /// What answering needs of the topmost Via value, checked as [`SipMessage::top_via`]
    /// checks it but without building a [`Via`].
    pub fn top_sent_by(&self) -> Result<SentBy, ParseError> {
        self.read_top_via(SentBy::parse)
    }

    /// `read` applied to the first value of the first Via header.
    fn read_top_via<T>(
        &self,
        read: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        let v = self
            .header(HeaderName::Via)
            .ok_or(ParseError::MissingHeader(HeaderName::Via))?;
        let first = scan::split_list(&v)
            .next()
            .ok_or(ParseError::BadHeader(HeaderName::Via))?;
        read(first)
    }

    /// The top Via branch, located by `parse` (no allocation).
    pub fn branch(&self) -> Option<&str> {
        self.branch.map(|r| self.text(r))
    }

    /// Every Contact (comma lists split), or `Star`; an empty list when absent.
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        use HeaderName::Contact;
        const BAD: ParseError = ParseError::BadHeader(Contact);
        let mut list = Vec::new();
        let mut star = false;
        for v in self.header_values(HeaderName::Contact) {
            for item in scan::split_list(&v) {
                if item == "*" {
                    star = true;
                } else {
                    if list.len() >= scan::MAX_LIST {
                        return Err(BAD);
                    }
                    list.push(NameAddr::parse(item).map_err(|e| e.in_header(Contact))?);
                }
            }
        }
        match (star, list.is_empty()) {
            (true, true) => Ok(Contacts::Star),
            (true, false) => Err(BAD),
            (false, _) => Ok(Contacts::List(list)),
        }
    }

    /// The URI of the first Contact as written, if it parses (a dialog's remote target,
    /// RFC 3261 §12.1); `None` for none or `*`.
    pub fn first_contact_uri(&self) -> Option<String> {
        self.first_contact_uri_unless(None)
    }

    /// As [`Self::first_contact_uri`], but `None` also when it is written exactly as
    /// `current`. A dialog's target refresh: the 180 and the 200 of one INVITE, and most
    /// re-INVITEs, repeat the Contact the dialog already has, which need not be checked
    /// again. (Whether `current` was checked is the caller's business: it is not parsed.)
    pub fn first_contact_uri_if_changed(&self, current: &str) -> Option<String> {
        self.first_contact_uri_unless(Some(current))
    }

    fn first_contact_uri_unless(&self, current: Option<&str>) -> Option<String> {
        let value = self.header_values(HeaderName::Contact).next()?;
        let first = scan::split_list(&value).next()?;
        if first == "*" || current.is_some_and(|uri| NameAddr::uri_text_is(first, uri)) {
            return None;
        }
        NameAddr::uri_text(first).ok().map(str::to_owned)
    }

    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list(HeaderName::Route)
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list(HeaderName::RecordRoute)
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::MaxForwards)
    }

    /// The Expires header; values beyond 32 bits are not accepted.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::Expires)
    }

    /// Min-SE (RFC 4028 §5).
    pub fn min_se(&self) -> Result<Option<u32>, ParseError> {
        match self.header(HeaderName::MinSe) {
            None => Ok(None),
            Some(v) => {
                // Min-SE may carry generic params; the number comes first.
                let n = v.split(';').next().unwrap_or("");
                scan::parse_u32(n, 10)
                    .map(Some)
                    .ok_or(ParseError::BadHeader(HeaderName::MinSe))
            }
        }
    }

    pub fn content_type(&self) -> Option<Cow<'_, str>> {
        self.header(HeaderName::ContentType)
    }

    /// Option tags of Require / Supported / Proxy-Require / Unsupported, lower-cased.
    pub fn option_tags(&self, name: HeaderName) -> Vec<String> {
        let values: Vec<Cow<'_, str>> = self.header_values(name).collect();
        option_tags(values.iter().map(|v| v.as_ref()))
    }

    /// Refer-To (RFC 3515 §2.1), with or without `<>`, read liberally
    /// ([`NameAddr::parse_refer_to`]: a bare URI may carry `?headers`).
    pub fn refer_to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.optional_name_addr(HeaderName::ReferTo, NameAddr::parse_refer_to)
    }

    /// Referred-By (RFC 3892).
    pub fn referred_by(&self) -> Result<Option<NameAddr>, ParseError> {
        self.optional_name_addr(HeaderName::ReferredBy, NameAddr::parse)
    }

    /// The Replaces header (RFC 3891 §6.1).
    pub fn replaces(&self) -> Result<Option<Replaces>, ParseError> {
        self.header(HeaderName::Replaces)
            .map(|v| Replaces::parse(&v))
            .transpose()
    }

    /// Session-Expires (RFC 4028 §4).
    pub fn session_expires(&self) -> Result<Option<SessionExpires>, ParseError> {
        self.header(HeaderName::SessionExpires)
            .map(|v| SessionExpires::parse(&v))
            .transpose()
    }

    // ---- crate-internal access for the builder ----

    pub(crate) fn entries(&self) -> &[HeaderEntry] {
        &self.headers
    }

    /// The whole header line as written (name through value, folds included).
    pub(crate) fn raw_line(&self, e: &HeaderEntry) -> &[u8] {
        self.raw
            .get(e.name_range().0..e.value_range().1)
            .unwrap_or(b"")
    }

    // ---- helpers ----

    fn text(&self, (s, e): (usize, usize)) -> &str {
        // Ranges lie in the header section and sit on ASCII delimiters.
        self.head.get(s..e).unwrap_or("")
    }

    fn value(&self, e: &HeaderEntry) -> Cow<'_, str> {
        let s = self.text(e.value_range());
        if e.folded {
            Cow::Owned(scan::unfold(s))
        } else {
            Cow::Borrowed(s)
        }
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr, ParseError> {
        let v = self.header(name).ok_or(ParseError::MissingHeader(name))?;
        NameAddr::parse(&v).map_err(|e| e.in_header(name))
    }

    fn optional_name_addr(
        &self,
        name: HeaderName,
        parse: fn(&str) -> Result<NameAddr, ParseError>,
    ) -> Result<Option<NameAddr>, ParseError> {
        self.header(name)
            .map(|v| parse(&v).map_err(|e| e.in_header(name)))
            .transpose()
    }

    fn name_addr_list(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        let mut out = Vec::new();
        for v in self.header_values(name) {
            for item in scan::split_list(&v) {
                if out.len() >= scan::MAX_LIST {
                    return Err(ParseError::BadHeader(name));
                }
                out.push(NameAddr::parse(item).map_err(|e| e.in_header(name))?);
            }
        }
        Ok(out)
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        self.header(name)
            .map(|v| scan::parse_u32(&v, 10).ok_or(ParseError::BadHeader(name)))
            .transpose()
    }
}

/// The `tag` parameter of a From/To value, as an absolute range; `Some(None)` when there
/// is none; `None` when the value is malformed (empty, unterminated quote or `<`).
fn tag_range(buf: &[u8], e: &HeaderEntry) -> Option<Option<(usize, usize)>> {
    let v = buf.get(range(e.value_range()))?;
    if v.is_empty() {
        return None;
    }
    let params = scan::name_addr_params_start(v)?;
    Some(
        scan::find_param(v, params, b"tag")
            .flatten()
            .filter(|(s, e)| e > s)
            .map(|(s, en)| (e.value_start() + s, e.value_start() + en)),
    )
}

/// `UnbracketedUriHeaders` when an element of this From, To or Contact value is a bare URI
/// with `?headers` (see [`scan::is_bare_uri_with_headers`]). Values without `?` cost one
/// `memchr`.
fn check_bracketed_uri_headers(head: &[u8], e: &HeaderEntry) -> Result<(), ParseError> {
    let Some(v) = head.get(range(e.value_range())) else {
        return Ok(());
    };
    if memchr::memchr(b'?', v).is_none() {
        return Ok(());
    }
    // The head was checked to be UTF-8 and the range sits on ASCII delimiters.
    let text = std::str::from_utf8(v).unwrap_or("");
    if scan::split_list(text).any(|item| scan::is_bare_uri_with_headers(item.as_bytes())) {
        return Err(ParseError::UnbracketedUriHeaders(e.name));
    }
    Ok(())
}

/// The branch of the first element of the top Via value (absolute range); `None` when the
/// value is empty.
fn branch_range(buf: &[u8], e: &HeaderEntry) -> Option<Option<(usize, usize)>> {
    let v = buf.get(range(e.value_range()))?;
    if v.is_empty() {
        return None;
    }
    let Some(semi) = memchr::memchr2(b';', b',', v) else {
        return Some(None);
    };
    if v.get(semi) == Some(&b',') {
        return Some(None);
    }
    Some(
        scan::find_param(v, semi, b"branch")
            .flatten()
            .filter(|(s, e)| e > s)
            .map(|(s, en)| (e.value_start() + s, e.value_start() + en)),
    )
}
