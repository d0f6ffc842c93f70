//! Header names and the header index (RFC 3261 §7.3, §20; compact forms §7.3.3 and the
//! IANA registry: RFC 3515 `r` Refer-To, RFC 3892 `b` Referred-By, RFC 4028 `x`
//! Session-Expires, RFC 6665 `o` Event / `u` Allow-Events).
//!
//! Header field names are case-insensitive (§7.3.1). A parsed message keeps one
//! [`HeaderEntry`] of byte ranges per header line into its raw buffer; nothing is copied.

/// A header field name the B2BUA understands; everything else is `Other` (look it up by
/// name with `SipMessage::header_named`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentType,
    ContentLength,
    Route,
    RecordRoute,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Expires,
    MinExpires,
    ReferTo,
    ReferredBy,
    Replaces,
    Event,
    SubscriptionState,
    Require,
    Supported,
    Unsupported,
    ProxyRequire,
    Allow,
    SessionExpires,
    MinSe,
    Reason,
    Warning,
    UserAgent,
    Server,
    Accept,
    ReferSub,
    PAssertedIdentity,
    CallInfo,
    RetryAfter,
    Other,
}

/// Longest known header name ("p-asserted-identity", "proxy-authorization").
const MAX_KNOWN_LEN: usize = 19;

impl HeaderName {
    /// Maps a header name as written to a `HeaderName`: case-insensitive, compact forms
    /// mapped (`v` Via, `f` From, `t` To, `i` Call-ID, `m` Contact, `c` Content-Type,
    /// `l` Content-Length, `k` Supported, `o` Event, `r` Refer-To, `b` Referred-By,
    /// `x` Session-Expires; `s`, `e`, `u` and anything unknown are `Other`).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return match name.first().map(u8::to_ascii_lowercase) {
                Some(b'v') => HeaderName::Via,
                Some(b'f') => HeaderName::From,
                Some(b't') => HeaderName::To,
                Some(b'i') => HeaderName::CallId,
                Some(b'm') => HeaderName::Contact,
                Some(b'c') => HeaderName::ContentType,
                Some(b'l') => HeaderName::ContentLength,
                Some(b'k') => HeaderName::Supported,
                Some(b'o') => HeaderName::Event,
                Some(b'r') => HeaderName::ReferTo,
                Some(b'b') => HeaderName::ReferredBy,
                Some(b'x') => HeaderName::SessionExpires,
                _ => HeaderName::Other,
            };
        }
        if name.len() > MAX_KNOWN_LEN {
            return HeaderName::Other;
        }
        let mut buf = [0u8; MAX_KNOWN_LEN];
        let lower = match buf.get_mut(..name.len()) {
            Some(dst) => {
                for (d, s) in dst.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                &*dst
            }
            None => return HeaderName::Other,
        };
        match lower {
            b"via" => HeaderName::Via,
            b"from" => HeaderName::From,
            b"to" => HeaderName::To,
            b"call-id" => HeaderName::CallId,
            b"cseq" => HeaderName::CSeq,
            b"contact" => HeaderName::Contact,
            b"max-forwards" => HeaderName::MaxForwards,
            b"content-type" => HeaderName::ContentType,
            b"content-length" => HeaderName::ContentLength,
            b"route" => HeaderName::Route,
            b"record-route" => HeaderName::RecordRoute,
            b"authorization" => HeaderName::Authorization,
            b"proxy-authorization" => HeaderName::ProxyAuthorization,
            b"www-authenticate" => HeaderName::WwwAuthenticate,
            b"proxy-authenticate" => HeaderName::ProxyAuthenticate,
            b"expires" => HeaderName::Expires,
            b"min-expires" => HeaderName::MinExpires,
            b"refer-to" => HeaderName::ReferTo,
            b"referred-by" => HeaderName::ReferredBy,
            b"replaces" => HeaderName::Replaces,
            b"event" => HeaderName::Event,
            b"subscription-state" => HeaderName::SubscriptionState,
            b"require" => HeaderName::Require,
            b"supported" => HeaderName::Supported,
            b"unsupported" => HeaderName::Unsupported,
            b"proxy-require" => HeaderName::ProxyRequire,
            b"allow" => HeaderName::Allow,
            b"session-expires" => HeaderName::SessionExpires,
            b"min-se" => HeaderName::MinSe,
            b"reason" => HeaderName::Reason,
            b"warning" => HeaderName::Warning,
            b"user-agent" => HeaderName::UserAgent,
            b"server" => HeaderName::Server,
            b"accept" => HeaderName::Accept,
            b"refer-sub" => HeaderName::ReferSub,
            b"p-asserted-identity" => HeaderName::PAssertedIdentity,
            b"call-info" => HeaderName::CallInfo,
            b"retry-after" => HeaderName::RetryAfter,
            _ => HeaderName::Other,
        }
    }

    /// The canonical (long-form) spelling, for building messages. `None` for `Other`.
    pub fn canonical(&self) -> Option<&'static str> {
        Some(match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Replaces => "Replaces",
            HeaderName::Event => "Event",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::Require => "Require",
            HeaderName::Supported => "Supported",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Allow => "Allow",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::Reason => "Reason",
            HeaderName::Warning => "Warning",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Accept => "Accept",
            HeaderName::ReferSub => "Refer-Sub",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::CallInfo => "Call-Info",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Other => return None,
        })
    }
}

/// One header line in a parsed message: byte ranges into the message's raw buffer.
///
/// The value range excludes the line terminator and trailing whitespace; when the value was
/// folded over several lines (`folded`), the range spans the CRLF+WSP folds.
///
/// Offsets are `u32`: an entry is 20 bytes instead of 40, and every parsed message carries
/// a few dozen (the messages a call keeps live as long as it does). `SipMessage::parse`
/// refuses anything longer than `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderEntry {
    pub(crate) name: HeaderName,
    pub(crate) folded: bool,
    name_start: u32,
    name_end: u32,
    value_start: u32,
    value_end: u32,
}

impl HeaderEntry {
    /// An entry for offsets the caller has checked to be below `u32::MAX`.
    pub(crate) fn new(name: HeaderName, name_at: (usize, usize), value_at: (usize, usize)) -> Self {
        HeaderEntry {
            name,
            folded: false,
            name_start: name_at.0 as u32,
            name_end: name_at.1 as u32,
            value_start: value_at.0 as u32,
            value_end: value_at.1 as u32,
        }
    }

    pub(crate) fn name_range(&self) -> (usize, usize) {
        (self.name_start as usize, self.name_end as usize)
    }

    pub(crate) fn value_range(&self) -> (usize, usize) {
        (self.value_start as usize, self.value_end as usize)
    }

    pub(crate) fn value_start(&self) -> usize {
        self.value_start as usize
    }

    pub(crate) fn set_value_range(&mut self, start: usize, end: usize) {
        self.value_start = start as u32;
        self.value_end = end as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_entry_stays_small() {
        // Every parsed message carries one per header line; see the struct's doc.
        assert!(std::mem::size_of::<HeaderEntry>() <= 20);
        let e = HeaderEntry::new(HeaderName::Via, (3, 6), (8, 40));
        assert_eq!((e.name_range(), e.value_range()), ((3, 6), (8, 40)));
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(HeaderName::from_bytes(b"CALL-ID"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"cSeQ"), HeaderName::CSeq);
        assert_eq!(
            HeaderName::from_bytes(b"P-Asserted-Identity"),
            HeaderName::PAssertedIdentity
        );
        assert_eq!(HeaderName::from_bytes(b"X-Queue"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"a-very-long-unknown-header-name"),
            HeaderName::Other
        );
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
    }

    #[test]
    fn compact_forms_map_to_long_forms() {
        let cases = [
            ("v", HeaderName::Via),
            ("f", HeaderName::From),
            ("T", HeaderName::To),
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("c", HeaderName::ContentType),
            ("l", HeaderName::ContentLength),
            ("k", HeaderName::Supported),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("s", HeaderName::Other),
            ("e", HeaderName::Other),
            ("u", HeaderName::Other),
        ];
        for (name, want) in cases {
            assert_eq!(HeaderName::from_bytes(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn canonical_names_parse_back() {
        let all = [
            HeaderName::Via,
            HeaderName::CallId,
            HeaderName::WwwAuthenticate,
            HeaderName::MinSe,
            HeaderName::ReferSub,
            HeaderName::RetryAfter,
            HeaderName::SubscriptionState,
        ];
        for h in all {
            let c = h.canonical().unwrap();
            assert_eq!(HeaderName::from_bytes(c.as_bytes()), h);
        }
        assert_eq!(HeaderName::Other.canonical(), None);
    }

    #[test]
    fn every_known_name_is_found_in_any_case_and_nothing_else_is() {
        let known = [
            (&b"via"[..], HeaderName::Via),
            (&b"from"[..], HeaderName::From),
            (&b"to"[..], HeaderName::To),
            (&b"call-id"[..], HeaderName::CallId),
            (&b"cseq"[..], HeaderName::CSeq),
            (&b"contact"[..], HeaderName::Contact),
            (&b"max-forwards"[..], HeaderName::MaxForwards),
            (&b"content-type"[..], HeaderName::ContentType),
            (&b"content-length"[..], HeaderName::ContentLength),
            (&b"route"[..], HeaderName::Route),
            (&b"record-route"[..], HeaderName::RecordRoute),
            (&b"authorization"[..], HeaderName::Authorization),
            (&b"proxy-authorization"[..], HeaderName::ProxyAuthorization),
            (&b"www-authenticate"[..], HeaderName::WwwAuthenticate),
            (&b"proxy-authenticate"[..], HeaderName::ProxyAuthenticate),
            (&b"expires"[..], HeaderName::Expires),
            (&b"min-expires"[..], HeaderName::MinExpires),
            (&b"refer-to"[..], HeaderName::ReferTo),
            (&b"referred-by"[..], HeaderName::ReferredBy),
            (&b"replaces"[..], HeaderName::Replaces),
            (&b"event"[..], HeaderName::Event),
            (&b"subscription-state"[..], HeaderName::SubscriptionState),
            (&b"require"[..], HeaderName::Require),
            (&b"supported"[..], HeaderName::Supported),
            (&b"unsupported"[..], HeaderName::Unsupported),
            (&b"proxy-require"[..], HeaderName::ProxyRequire),
            (&b"allow"[..], HeaderName::Allow),
            (&b"session-expires"[..], HeaderName::SessionExpires),
            (&b"min-se"[..], HeaderName::MinSe),
            (&b"reason"[..], HeaderName::Reason),
            (&b"warning"[..], HeaderName::Warning),
            (&b"user-agent"[..], HeaderName::UserAgent),
            (&b"server"[..], HeaderName::Server),
            (&b"accept"[..], HeaderName::Accept),
            (&b"refer-sub"[..], HeaderName::ReferSub),
            (&b"p-asserted-identity"[..], HeaderName::PAssertedIdentity),
            (&b"call-info"[..], HeaderName::CallInfo),
            (&b"retry-after"[..], HeaderName::RetryAfter),
        ];
        for (name, header) in known {
            let lower = std::str::from_utf8(name).unwrap();
            let canonical = header.canonical().unwrap();
            assert!(
                canonical.eq_ignore_ascii_case(lower),
                "{lower} ~ {canonical}"
            );
            for spelling in [lower.to_owned(), lower.to_uppercase(), canonical.to_owned()] {
                assert_eq!(
                    HeaderName::from_bytes(spelling.as_bytes()),
                    header,
                    "{spelling}"
                );
            }
            if name.len() > 2 {
                let mut near = name.to_vec();
                near[1] = if near[1] == b'x' { b'y' } else { b'x' };
                assert_eq!(HeaderName::from_bytes(&near), HeaderName::Other, "{near:?}");
                // (A two-letter name cut to one letter is a compact form.)
                assert_eq!(
                    HeaderName::from_bytes(&name[..name.len() - 1]),
                    HeaderName::Other
                );
            }
        }
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"\xff\xfe"), HeaderName::Other);
    }
}
