//! Typed values of the few headers the B2BUA interprets: CSeq (RFC 3261 §20.16), Replaces
//! (RFC 3891 §6.1), Session-Expires (RFC 4028 §4), the Contact list (§20.10, `*` for
//! REGISTER removal) and option tags (§20.32 Require, §20.37 Supported, §19.2).

use std::fmt;

use super::error::ParseError;
use super::header::HeaderName;
use super::method::Method;
use super::name_addr::NameAddr;
use super::scan;
use super::uri::find_in;

/// `CSeq: 314159 INVITE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`; the number must fit in 32 bits (§8.1.1.5).
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        const BAD: ParseError = ParseError::BadHeader(HeaderName::CSeq);
        // Split on bytes: ASCII whitespace is one byte, and no byte of a multi-byte
        // character is ASCII, so this splits exactly where a split on chars would.
        let mut it = s
            .as_bytes()
            .split(u8::is_ascii_whitespace)
            .filter(|p| !p.is_empty());
        let seq = it
            .next()
            .and_then(|n| scan::parse_u32_bytes(n, 10))
            .ok_or(BAD)?;
        let method = it.next().and_then(Method::from_token).ok_or(BAD)?;
        if it.next().is_some() {
            return Err(BAD);
        }
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// The dialog named by a Replaces header or an embedded `?Replaces=` (RFC 3891 §6.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    pub early_only: bool,
}

impl Replaces {
    /// Parses `callid;to-tag=T;from-tag=F[;early-only]`; both tags are mandatory.
    pub fn parse(s: &str) -> Result<Replaces, ParseError> {
        const BAD: ParseError = ParseError::BadHeader(HeaderName::Replaces);
        let s = s.trim();
        let end = s.find(';').unwrap_or(s.len());
        let call_id = s.get(..end).ok_or(BAD)?.trim();
        if call_id.is_empty() || call_id.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(BAD);
        }
        let params = scan::parse_params(s.get(end..).ok_or(BAD)?).ok_or(BAD)?;
        let to_tag = find_in(&params, "to-tag").flatten().ok_or(BAD)?;
        let from_tag = find_in(&params, "from-tag").flatten().ok_or(BAD)?;
        Ok(Replaces {
            call_id: call_id.to_string(),
            to_tag: to_tag.to_string(),
            from_tag: from_tag.to_string(),
            early_only: find_in(&params, "early-only").is_some(),
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

/// Which side refreshes the session (RFC 4028 §4 `refresher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refresher {
    Uac,
    Uas,
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionExpires {
    pub secs: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(s: &str) -> Result<SessionExpires, ParseError> {
        const BAD: ParseError = ParseError::BadHeader(HeaderName::SessionExpires);
        let s = s.trim();
        let end = s.find(';').unwrap_or(s.len());
        let secs = scan::parse_u32(s.get(..end).ok_or(BAD)?, 10).ok_or(BAD)?;
        let params = scan::parse_params(s.get(end..).ok_or(BAD)?).ok_or(BAD)?;
        let refresher = match find_in(&params, "refresher") {
            None => None,
            Some(Some(v)) if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(Some(v)) if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Err(BAD),
        };
        Ok(SessionExpires { secs, refresher })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.secs)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac"),
            Some(Refresher::Uas) => f.write_str(";refresher=uas"),
            None => Ok(()),
        }
    }
}

/// The Contact header set of a message (RFC 3261 §10.2.2: `*` removes all bindings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    Star,
    /// Every contact of every Contact header, in order; empty when there is none.
    List(Vec<NameAddr>),
}

/// Splits option-tag lists (`Supported: replaces, 100rel, timer`), lower-cased.
pub(crate) fn option_tags<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(scan::MAX_LIST)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_parses_and_displays() {
        let c = CSeq::parse(" 314159  INVITE ").unwrap();
        assert_eq!(c.seq, 314159);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "314159 INVITE");
        let c = CSeq::parse("2\r\n FOO").unwrap();
        assert_eq!(c.method, Method::Other("FOO".into()));
    }

    #[test]
    fn cseq_rejects_malformed() {
        for bad in [
            "",
            "INVITE",
            "1",
            "x INVITE",
            "4294967296 INVITE",
            "1 INVITE x",
            "-1 BYE",
        ] {
            assert_eq!(
                CSeq::parse(bad),
                Err(ParseError::BadHeader(HeaderName::CSeq)),
                "{bad:?}"
            );
        }
        assert_eq!(CSeq::parse("1 INVITE x").unwrap_err().reason(), "Bad CSeq");
    }

    #[test]
    fn replaces_parses_in_any_param_order() {
        let r =
            Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only")
                .unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(r.to_tag, "ff87ff");
        assert_eq!(r.from_tag, "r33th4x0r");
        assert!(r.early_only);
        assert_eq!(
            r.to_string(),
            "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r;early-only"
        );
        assert_eq!(Replaces::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn replaces_requires_both_tags() {
        for bad in [
            "abc;to-tag=1",
            "abc;from-tag=2",
            ";to-tag=1;from-tag=2",
            "abc;to-tag;from-tag=2",
        ] {
            let e = Replaces::parse(bad).unwrap_err();
            assert_eq!(e.reason(), "Bad Replaces", "{bad:?}");
        }
    }

    #[test]
    fn session_expires() {
        let s = SessionExpires::parse("1800;refresher=UAC").unwrap();
        assert_eq!(s.secs, 1800);
        assert_eq!(s.refresher, Some(Refresher::Uac));
        assert_eq!(s.to_string(), "1800;refresher=uac");
        assert_eq!(SessionExpires::parse("90").unwrap().refresher, None);
        assert!(SessionExpires::parse("90;refresher=me").is_err());
        assert!(SessionExpires::parse("abc").is_err());
    }

    #[test]
    fn option_tags_lowercase_and_split() {
        let tags = option_tags(["Replaces, 100rel", " timer ,,NoReferSub"].into_iter());
        assert_eq!(tags, vec!["replaces", "100rel", "timer", "norefersub"]);
    }
}
