//! `name-addr / addr-spec` values: From, To, Contact, Route, Record-Route, Refer-To,
//! Referred-By (RFC 3261 §20.10, §20.20, §20.39, §25.1; RFC 3515 §2.1; RFC 3892).
//!
//! `"Display" <uri;uri-params>;header-params` or a bare `uri;header-params`. Without
//! `<>`, every `;` parameter belongs to the header, not to the URI (§20.10), so
//! `From: sip:1001@host;tag=x` has tag `x`. Quoted header parameters such as
//! `+sip.instance="<urn:uuid:...>"` (RFC 5626 §4.1) are returned unquoted.
//!
//! A bare URI with `?headers` is refused ([`ParseError::UnbracketedUriHeaders`]): §20.10 and
//! RFC 8217 require `<>` around a URI holding `?` (RFC 4475 §3.1.2.13 `regbadct`). Refer-To
//! alone is read liberally ([`NameAddr::parse_refer_to`]): its URI headers (`?Replaces=`)
//! are what an attended transfer is made of, and refusing the REFER would cost the call.

use std::fmt;

use super::error::ParseError;
use super::header::HeaderName;
use super::scan;
use super::uri::{find_in, fmt_header_params, Param, Uri};

/// Longest name-addr value accepted.
const MAX_LEN: usize = 4096;

/// An address with optional display name and header parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, `+sip.instance`, ...), values unquoted.
    pub params: Vec<Param>,
}

/// The display name of an element, as written.
enum DisplayName<'a> {
    None,
    /// Between the quotes, still escaped.
    Quoted(&'a str),
    Token(&'a str),
}

/// One element cut into its pieces, nothing parsed yet.
struct Parts<'a> {
    display: DisplayName<'a>,
    uri: &'a str,
    /// The header parameters, from the first `;` on.
    params: &'a str,
}

impl<'a> Parts<'a> {
    fn split(s: &'a str, bare_headers_ok: bool) -> Result<Parts<'a>, ParseError> {
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(ParseError::BadUri);
        }
        let b = s.as_bytes();
        let (display, rest) = if b.first() == Some(&b'"') {
            let end = scan::skip_quoted(b, 0).ok_or(ParseError::BadUri)?;
            let inner = s.get(1..end - 1).ok_or(ParseError::BadUri)?;
            let rest = s.get(end..).ok_or(ParseError::BadUri)?.trim_start();
            if !rest.starts_with('<') {
                return Err(ParseError::BadUri);
            }
            (DisplayName::Quoted(inner), rest)
        } else if let Some(lt) =
            // A `<` after the first `;` is inside a header parameter of an addr-spec.
            memchr::memchr2(b';', b'<', b).filter(|&i| b.get(i) == Some(&b'<'))
        {
            let name = s.get(..lt).ok_or(ParseError::BadUri)?.trim();
            if memchr::memchr3(b'"', b',', b'>', name.as_bytes()).is_some() {
                return Err(ParseError::BadUri);
            }
            let display = if name.is_empty() {
                DisplayName::None
            } else {
                DisplayName::Token(name)
            };
            (display, s.get(lt..).ok_or(ParseError::BadUri)?)
        } else {
            // addr-spec: the URI ends at the first ';'.
            if !bare_headers_ok && scan::is_bare_uri_with_headers(b) {
                return Err(ParseError::UnbracketedUriHeaders(HeaderName::Other));
            }
            let end = memchr::memchr(b';', b).unwrap_or(s.len());
            return Ok(Parts {
                display: DisplayName::None,
                uri: s.get(..end).ok_or(ParseError::BadUri)?,
                params: s.get(end..).ok_or(ParseError::BadUri)?,
            });
        };
        // rest starts with '<'
        let gt = memchr::memchr(b'>', rest.as_bytes()).ok_or(ParseError::BadUri)?;
        Ok(Parts {
            display,
            uri: rest.get(1..gt).ok_or(ParseError::BadUri)?,
            params: rest.get(gt + 1..).ok_or(ParseError::BadUri)?,
        })
    }

    /// What [`NameAddr::parse`] checks after the split: the URI, then the parameters.
    fn check(&self) -> Result<(), ParseError> {
        Uri::check(self.uri)?;
        scan::for_each_param(self.params, |_, _| {}).ok_or(ParseError::BadUri)
    }
}

/// Errors of NameAddr parsing: URI errors pass through; structure errors are `BadUri`; a
/// bare URI with headers is `UnbracketedUriHeaders(HeaderName::Other)`.
impl NameAddr {
    /// Parses one element (not a comma list), with or without `<>`.
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        Self::parse_with(s, false)
    }

    /// [`NameAddr::parse`] that also accepts a bare URI with `?headers`, for Refer-To.
    pub fn parse_refer_to(s: &str) -> Result<NameAddr, ParseError> {
        Self::parse_with(s, true)
    }

    fn parse_with(s: &str, bare_headers_ok: bool) -> Result<NameAddr, ParseError> {
        let parts = Parts::split(s, bare_headers_ok)?;
        let uri = Uri::parse(parts.uri)?;
        let params = scan::parse_params(parts.params).ok_or(ParseError::BadUri)?;
        let display = match parts.display {
            DisplayName::None => None,
            DisplayName::Quoted(inner) => Some(scan::unquote(inner)),
            DisplayName::Token(name) => Some(name.to_string()),
        };
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The URI of one element as written (without display name, brackets or header
    /// parameters), if the element parses. Cheaper than parsing and writing the URI back
    /// when only its text is kept (a dialog's remote target).
    pub fn uri_text(s: &str) -> Result<&str, ParseError> {
        let parts = Parts::split(s, false)?;
        parts.check()?;
        Ok(parts.uri.trim())
    }

    /// Checks `s` as [`NameAddr::parse`] does (the same errors), without building it: for
    /// a header that is only validated (a request's From and To).
    pub fn check(s: &str) -> Result<(), ParseError> {
        Parts::split(s, false)?.check()
    }

    /// Whether the URI of element `s` is written exactly as `uri`: then [`Self::uri_text`]
    /// would return `uri` again, once the element is known to parse.
    pub(crate) fn uri_text_is(s: &str, uri: &str) -> bool {
        Parts::split(s, false).is_ok_and(|parts| parts.uri.trim() == uri)
    }

    /// An address without display name or parameters.
    pub fn from_uri(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// The `tag` header parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// A header parameter by name (case-insensitive); `Some(None)` when it has no value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_in(&self.params, name)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        fmt_header_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::{Host, Scheme};

    #[test]
    fn without_angle_brackets_params_belong_to_header() {
        let n = NameAddr::parse("sip:1001@pbx.example.com;tag=x1").unwrap();
        assert_eq!(n.tag(), Some("x1"));
        assert!(n.uri.params.is_empty());
        assert_eq!(n.uri.user_str(), "1001");
        assert_eq!(n.to_string(), "<sip:1001@pbx.example.com>;tag=x1");
    }

    #[test]
    fn with_angle_brackets_uri_params_stay_in_uri() {
        let n = NameAddr::parse("Alice <sip:alice@h;transport=tcp>;tag=77").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice"));
        assert_eq!(n.uri.param("transport"), Some(Some("tcp")));
        assert_eq!(n.tag(), Some("77"));
    }

    #[test]
    fn quoted_display_with_specials() {
        let n = NameAddr::parse(r#""Doe, \"JD\" <x>" <sip:jd@h>"#).unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"Doe, "JD" <x>"#));
        assert_eq!(n.uri.host, Host::Domain("h".into()));
        assert_eq!(n.to_string(), r#""Doe, \"JD\" <x>" <sip:jd@h>"#);
    }

    #[test]
    fn quoted_instance_param_is_unquoted() {
        let n = NameAddr::parse(
            r#"<sip:1001@192.168.1.20:49822;transport=TCP;ob>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";expires=600"#,
        )
        .unwrap();
        assert_eq!(
            n.param("+sip.instance"),
            Some(Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"))
        );
        assert_eq!(n.param("reg-id"), Some(Some("1")));
        assert_eq!(n.uri.param("ob"), Some(None));
        assert_eq!(n.uri.port, Some(49822));
        // Display re-quotes the value, and the result parses back equal.
        let shown = n.to_string();
        assert!(shown.contains(r#"+sip.instance="<urn:uuid:"#), "{shown}");
        assert_eq!(NameAddr::parse(&shown).unwrap(), n);
    }

    #[test]
    fn refer_to_forms() {
        let bare = NameAddr::parse("sip:agent2@10.0.0.7:5062").unwrap();
        assert_eq!(bare.uri.port, Some(5062));
        let att = NameAddr::parse(
            "<sip:agent2@10.0.0.7:5062?Require=replaces&Replaces=c1%3Bto-tag%3DT%3Bfrom-tag%3DF>",
        )
        .unwrap();
        assert_eq!(att.uri.host_port(), "10.0.0.7:5062");
        let r = att.uri.replaces().unwrap().unwrap();
        assert_eq!((r.call_id.as_str(), r.to_tag.as_str()), ("c1", "T"));
    }

    #[test]
    fn bare_uri_with_headers_is_refused_and_bracketed_one_accepted() {
        // RFC 4475 §3.1.2.13 regbadct, and §3.3.14 regescrt (the same URI in <>).
        let bare = "sip:user@example.com?Route=%3Csip:sip.example.com%3E";
        let e = NameAddr::parse(bare).unwrap_err();
        assert_eq!(e, ParseError::UnbracketedUriHeaders(HeaderName::Other));
        assert_eq!(e.reason(), "URI with headers must be in angle brackets");
        assert_eq!(
            e.in_header(HeaderName::Contact).reason(),
            "Contact URI with headers must be in angle brackets"
        );
        let ok = NameAddr::parse(&format!("<{bare}>;expires=60")).unwrap();
        assert_eq!(
            ok.uri.header("Route").as_deref(),
            Some("<sip:sip.example.com>")
        );
        assert_eq!(ok.param("expires"), Some(Some("60")));
        let named = NameAddr::parse(&format!("\"User\" <{bare}>")).unwrap();
        assert_eq!(named.uri.headers.len(), 1);
        // A `?` in the user part needs <> too (§20.10 "contains ... question mark").
        assert!(NameAddr::parse("sip:wh?o@h;tag=1").is_err());
        assert!(NameAddr::parse("<sip:wh?o@h>;tag=1").is_ok());
        // A `?` inside a header parameter is not the URI's.
        let p = NameAddr::parse(r#"sip:a@h;+sip.instance="<urn:x?y>""#).unwrap();
        assert_eq!(p.param("+sip.instance"), Some(Some("<urn:x?y>")));
    }

    #[test]
    fn refer_to_is_read_liberally() {
        let bare = "sip:agent2@10.0.0.7?Replaces=c1%3Bto-tag%3DT%3Bfrom-tag%3DF";
        assert!(NameAddr::parse(bare).is_err());
        let r = NameAddr::parse_refer_to(bare).unwrap();
        let rep = r.uri.replaces().unwrap().unwrap();
        assert_eq!((rep.call_id.as_str(), rep.from_tag.as_str()), ("c1", "F"));
        // pjsua's bare blind Refer-To: the parameter belongs to the header.
        let b = NameAddr::parse_refer_to("sip:1002@10.0.0.7:5062;transfer=success").unwrap();
        assert_eq!(b.param("transfer"), Some(Some("success")));
        assert!(b.uri.params.is_empty());
    }

    #[test]
    fn tel_and_ipv6() {
        let n = NameAddr::parse("<tel:+4930123>;tag=a").unwrap();
        assert_eq!(n.uri.scheme, Scheme::Tel);
        let n = NameAddr::parse("<sip:u@[fe80::1]:5060>").unwrap();
        assert_eq!(n.uri.host_port(), "[fe80::1]:5060");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "<sip:a@h>",
            "\"Agent 7\" <sip:agent7@cc.example:5060;transport=udp>;tag=abc;expires=60",
            "<sip:a@[::1]>;+sip.instance=\"<urn:uuid:1-2>\";reg-id=1",
            "<tel:+15550100>",
        ] {
            let n = NameAddr::parse(s).unwrap();
            assert_eq!(n.to_string(), s);
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "<sip:a@h",
            "\"unterminated <sip:a@h>",
            "\"x\" sip:a@h",
            "<sip:a@h> junk",
            "<sip:a@h>;",
            "<>",
            "Bob; <sip:a@h>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// `check` refuses exactly what `parse` refuses, with the same error.
    fn check_agrees(s: &str) -> Result<(), String> {
        let parsed = NameAddr::parse(s).map(drop);
        let checked = NameAddr::check(s);
        let uri_parsed = Uri::parse(s).map(drop);
        let uri_checked = Uri::check(s);
        if parsed == checked && uri_parsed == uri_checked {
            Ok(())
        } else {
            Err(format!(
                "{s:?}: name-addr {parsed:?} / {checked:?}, URI {uri_parsed:?} / {uri_checked:?}"
            ))
        }
    }

    #[test]
    fn check_refuses_what_parse_refuses() {
        for s in [
            "sip:1001@pbx.example.com;tag=x1",
            "Alice <sip:alice@h;transport=tcp>;tag=77",
            "\"Doe, J\" <sip:1001:pw@[2001:db8::1]:5062;lr?Subject=hi&x>;tag=a;q=\"1;2\"",
            "<tel:+15550123;phone-context=x>",
            "<http://example.com>",
            "<sip:a@h;;x>",
            "<sip:a@h?=v>",
            "<sip:a@[::1>",
            "<sip:a@h:99999>",
            "sip:a@h?Replaces=x",
            "<sip:a@h>;tag",
            "<sip:a@h>;=x",
            "",
            "<sip:a@h",
            "<sip:a@h> junk",
            "<sip:a@h>;",
            "Bob; <sip:a@h>",
        ] {
            check_agrees(s).unwrap();
        }
        let many = format!("<sip:a@h{}>", ";p".repeat(crate::sip::scan::MAX_PARAMS + 1));
        assert!(NameAddr::check(&many).is_err());
        check_agrees(&many).unwrap();
    }

    proptest::proptest! {
        /// Random and mutated addresses: the same verdict and error from `check` as from
        /// `parse`, for a name-addr and for a URI.
        #[test]
        fn check_agrees_with_parse_on_any_address(
            s in "(\"[a-z ,;]{0,4}\" ?|[A-Za-z]{1,3} )?<?(sips?|tel|x)?:([a-z0-9:%]{0,4}@)?(\\[::1\\]|[0-9.]{1,8}|[a-z.]{0,5})(:[0-9]{0,6})?(;[a-z]{0,3}(=[a-z0-9\"]{0,3})?){0,3}(\\?[a-z]{0,2}(=[a-z]{0,2})?(&[a-z=]{0,3})?)?>?( ?; ?[a-z]{0,3}(=(\"[a-z;]*\"|[a-z0-9]{0,3}))?){0,3}[ <>;\"]?",
        ) {
            proptest::prop_assert_eq!(check_agrees(&s), Ok(()));
        }
    }
}
