//! Allocation-free scanners shared by the message parser and the typed parsers: LWS
//! (RFC 3261 §25.1: folds are CRLF followed by whitespace), comma-separated header lists
//! (§7.3.1: commas inside quoted strings and `<...>` do not separate), generic parameters
//! (`*( SEMI generic-param )`, §25.1) and quoted strings.
//!
//! Everything here works on byte offsets and never indexes out of bounds.

use super::uri::Param;

/// Upper bound on parameters in one URI or header value.
pub(crate) const MAX_PARAMS: usize = 64;
/// Upper bound on elements in one comma-separated header list (all occurrences together).
pub(crate) const MAX_LIST: usize = 256;

/// Whitespace inside a header value, including the CR/LF of a fold.
pub(crate) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Advances `i` over whitespace.
pub(crate) fn skip_ws(v: &[u8], mut i: usize) -> usize {
    while v.get(i).is_some_and(|&c| is_ws(c)) {
        i += 1;
    }
    i
}

/// Offset just past the quoted string that opens at `i` (which holds `"`), honouring
/// `\` escapes (§25.1 `quoted-pair`). `None` when unterminated.
pub(crate) fn skip_quoted(v: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    loop {
        match v.get(j)? {
            b'\\' => j = j.checked_add(2)?,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// Unescapes the inside of a quoted string (`raw` excludes the quotes).
pub(crate) fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Offset where the header parameters of a name-addr or addr-spec value start: just past
/// `>`, or the first `;` of an addr-spec (§20.10: without `<>`, every `;` parameter belongs
/// to the header), or `v.len()`. `None` if a quoted display name or `<` is unterminated.
pub(crate) fn name_addr_params_start(v: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&c) = v.get(i) {
        match c {
            b'"' => {
                i = skip_quoted(v, i)?;
                continue;
            }
            b'<' => {
                let gt = memchr::memchr(b'>', v.get(i..)?)?;
                return i.checked_add(gt)?.checked_add(1);
            }
            b';' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    Some(v.len())
}

/// Whether one `name-addr / addr-spec` element is an addr-spec (no quoted display name, no
/// `<` before its first `;`) whose URI holds a `?`. RFC 3261 §20.10 (RFC 8217 for every such
/// header): "the name-addr form MUST be used if the addr-spec contains a comma, semicolon,
/// or question mark". A `;` cannot be told apart (it starts the header parameters, which is
/// how a bare addr-spec is read), a `,` splits a list; a `?` is the one that can be refused.
pub(crate) fn is_bare_uri_with_headers(v: &[u8]) -> bool {
    let end = memchr::memchr3(b';', b'<', b'"', v).unwrap_or(v.len());
    !matches!(v.get(end), Some(b'<' | b'"'))
        && v.get(..end)
            .is_some_and(|uri| memchr::memchr(b'?', uri).is_some())
}

/// Finds parameter `name` (case-insensitive) in `;a=b;c;d="e"` starting at `from`. Stops at
/// anything that is not a parameter (e.g. the `,` before the next list element).
/// `Some(None)` for a parameter without value; quoted values exclude the quotes.
pub(crate) fn find_param(v: &[u8], from: usize, name: &[u8]) -> Option<Option<(usize, usize)>> {
    let mut i = from;
    loop {
        i = skip_ws(v, i);
        if v.get(i) != Some(&b';') {
            return None;
        }
        i = skip_ws(v, i + 1);
        let ns = i;
        while v
            .get(i)
            .is_some_and(|&c| !is_ws(c) && !matches!(c, b';' | b'=' | b',' | b'"'))
        {
            i += 1;
        }
        let ne = i;
        i = skip_ws(v, i);
        let mut value = None;
        if v.get(i) == Some(&b'=') {
            i = skip_ws(v, i + 1);
            if v.get(i) == Some(&b'"') {
                let end = skip_quoted(v, i)?;
                value = Some((i + 1, end - 1));
                i = end;
            } else {
                let vs = i;
                while v
                    .get(i)
                    .is_some_and(|&c| !is_ws(c) && !matches!(c, b';' | b','))
                {
                    i += 1;
                }
                value = Some((vs, i));
            }
        }
        if ne > ns && v.get(ns..ne).is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            return Some(value);
        }
    }
}

/// A parameter value as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawValue<'a> {
    /// A token or host, as is.
    Plain(&'a str),
    /// The inside of a quoted-string, still escaped (see [`unquote`]).
    Quoted(&'a str),
}

impl RawValue<'_> {
    /// The value as [`parse_params`] keeps it: quoted values unescaped.
    pub(crate) fn to_owned_value(self) -> String {
        match self {
            RawValue::Plain(text) => text.to_string(),
            RawValue::Quoted(text) => unquote(text),
        }
    }
}

/// Parses `*( ";" name [ "=" ( token / host / quoted-string ) ] )` with optional LWS; the
/// whole of `s` must be parameters. Quoted values are unescaped.
pub(crate) fn parse_params(s: &str) -> Option<Vec<Param>> {
    let mut out = Vec::new();
    for_each_param(s, |name, value| {
        out.push(Param {
            name: name.to_string(),
            value: value.map(RawValue::to_owned_value),
        });
    })?;
    Some(out)
}

/// What [`parse_params`] accepts, visited in order without building anything: `None` when
/// `s` is not a parameter list or holds more than [`MAX_PARAMS`].
pub(crate) fn for_each_param<'a>(
    s: &'a str,
    mut each: impl FnMut(&'a str, Option<RawValue<'a>>),
) -> Option<()> {
    let v = s.as_bytes();
    let mut count = 0;
    let mut i = 0;
    loop {
        i = skip_ws(v, i);
        match v.get(i) {
            None => return Some(()),
            Some(b';') => i += 1,
            Some(_) => return None,
        }
        i = skip_ws(v, i);
        let ns = i;
        while v.get(i).is_some_and(|&c| {
            !is_ws(c) && !matches!(c, b';' | b'=' | b',' | b'"' | b'<' | b'>' | b'?')
        }) {
            i += 1;
        }
        if i == ns {
            return None;
        }
        let name = s.get(ns..i)?;
        i = skip_ws(v, i);
        let mut value = None;
        if v.get(i) == Some(&b'=') {
            i = skip_ws(v, i + 1);
            if v.get(i) == Some(&b'"') {
                let end = skip_quoted(v, i)?;
                value = Some(RawValue::Quoted(s.get(i + 1..end - 1)?));
                i = end;
            } else {
                let vs = i;
                while v
                    .get(i)
                    .is_some_and(|&c| !is_ws(c) && !matches!(c, b';' | b',' | b'"' | b'<' | b'>'))
                {
                    i += 1;
                }
                value = Some(RawValue::Plain(s.get(vs..i)?));
            }
        }
        if count >= MAX_PARAMS {
            return None;
        }
        count += 1;
        each(name, value);
    }
}

/// Iterator over the elements of a comma-separated header value; commas inside quoted
/// strings and `<...>` do not separate; empty elements are skipped; elements are trimmed.
pub(crate) struct ListIter<'a> {
    s: &'a str,
    pos: usize,
}

pub(crate) fn split_list(s: &str) -> ListIter<'_> {
    ListIter { s, pos: 0 }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let v = self.s.as_bytes();
        while self.pos < v.len() {
            let start = self.pos;
            let mut i = start;
            let mut in_angle = false;
            // Jump between the bytes that matter (memchr): inside <...> only the `>` that
            // closes it; outside, a quote, a `<` or the `,` that ends the element.
            loop {
                let rest = v.get(i..).unwrap_or_default();
                let next = if in_angle {
                    memchr::memchr(b'>', rest)
                } else {
                    memchr::memchr3(b'"', b'<', b',', rest)
                };
                let Some(offset) = next else {
                    i = v.len();
                    break;
                };
                i += offset;
                match v.get(i) {
                    Some(b'"') => match skip_quoted(v, i) {
                        Some(end) => i = end,
                        // Unterminated quote: the rest is one (malformed) element.
                        None => {
                            i = v.len();
                            break;
                        }
                    },
                    Some(b'<') => {
                        in_angle = true;
                        i += 1;
                    }
                    Some(b'>') => {
                        in_angle = false;
                        i += 1;
                    }
                    _ => break, // the `,`
                }
            }
            let end = i.min(v.len());
            self.pos = end.saturating_add(1);
            let item = self.s.get(start..end).unwrap_or("").trim();
            if !item.is_empty() {
                return Some(item);
            }
        }
        None
    }
}

/// Replaces each fold (optional WSP, CRLF or LF, WSP) with one space (§7.3.1).
pub(crate) fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            while out.ends_with([' ', '\t']) {
                out.pop();
            }
            while chars
                .peek()
                .is_some_and(|&n| matches!(n, ' ' | '\t' | '\r' | '\n'))
            {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a decimal number of at most `max_digits` digits (surrounding whitespace allowed).
pub(crate) fn parse_u32(s: &str, max_digits: usize) -> Option<u32> {
    parse_u32_bytes(s.as_bytes(), max_digits)
}

/// [`parse_u32`] on bytes: one pass, no UTF-8 decoding (every message has two such numbers,
/// CSeq and Content-Length).
pub(crate) fn parse_u32_bytes(s: &[u8], max_digits: usize) -> Option<u32> {
    let t = s.trim_ascii();
    if t.is_empty() || t.len() > max_digits {
        return None;
    }
    t.iter().try_fold(0u32, |n, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element boundaries as a byte-at-a-time reading of §7.3.1 finds them: the
    /// reference `split_list` is checked against.
    fn split_list_bytewise(s: &str) -> Vec<&str> {
        let v = s.as_bytes();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < v.len() {
            let start = pos;
            let mut i = start;
            let mut in_angle = false;
            while let Some(&c) = v.get(i) {
                match c {
                    b'"' if !in_angle => match skip_quoted(v, i) {
                        Some(end) => {
                            i = end;
                            continue;
                        }
                        None => i = v.len(),
                    },
                    b'<' => in_angle = true,
                    b'>' => in_angle = false,
                    b',' if !in_angle => break,
                    _ => {}
                }
                if i < v.len() {
                    i += 1;
                }
            }
            let end = i.min(v.len());
            pos = end.saturating_add(1);
            let item = s.get(start..end).unwrap_or("").trim();
            if !item.is_empty() {
                out.push(item);
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn list_split_finds_the_bytewise_boundaries(
            s in "[a-z ,;<>\"\\\\=@:]{0,40}",
        ) {
            proptest::prop_assert_eq!(split_list(&s).collect::<Vec<_>>(), split_list_bytewise(&s));
        }
    }

    #[test]
    fn list_split_ignores_commas_in_quotes_and_angles() {
        let v = r#""Doe, John" <sip:a@h;x=1,2>;q=0.5 , <sip:b@h>,,sip:c@h"#;
        let items: Vec<&str> = split_list(v).collect();
        assert_eq!(
            items,
            vec![
                r#""Doe, John" <sip:a@h;x=1,2>;q=0.5"#,
                "<sip:b@h>",
                "sip:c@h"
            ]
        );
    }

    #[test]
    fn list_split_keeps_escaped_quote_inside() {
        let v = r#""a \" , b" <sip:x@y>, <sip:z@w>"#;
        assert_eq!(split_list(v).count(), 2);
    }

    #[test]
    fn find_param_handles_quotes_and_stops_at_comma() {
        let v = br#"<sip:a@h;tag=no>;x="a;tag=q" ; TAG = abc,<sip:b>;tag=zz"#;
        let start = name_addr_params_start(v).unwrap();
        let (s, e) = find_param(v, start, b"tag").unwrap().unwrap();
        assert_eq!(&v[s..e], b"abc");
        assert_eq!(find_param(v, start, b"lr"), None);
    }

    #[test]
    fn params_start_for_addr_spec_and_unterminated() {
        assert_eq!(name_addr_params_start(b"sip:a@h;tag=1"), Some(7));
        assert_eq!(name_addr_params_start(b"\"x;y\" <sip:a@h>;tag=1"), Some(15));
        assert_eq!(name_addr_params_start(b"\"x <sip:a@h>"), None);
        assert_eq!(name_addr_params_start(b"<sip:a@h"), None);
    }

    #[test]
    fn bare_uri_with_headers_is_told_from_name_addr() {
        for bare in [
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "sip:u@h?Subject=x;expires=60",
            "sip:us?er@h",
        ] {
            assert!(is_bare_uri_with_headers(bare.as_bytes()), "{bare}");
        }
        for fine in [
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            "Bob <sip:a@h?X=1>;tag=1",
            "\"a?b\" <sip:a@h>",
            "sip:a@h;tag=x?y",
            "sip:a@h;+sip.instance=\"<urn:uuid:1?2>\"",
            "sip:a@h",
            "*",
            "",
        ] {
            assert!(!is_bare_uri_with_headers(fine.as_bytes()), "{fine}");
        }
    }

    #[test]
    fn unfold_replaces_each_fold_with_one_space() {
        assert_eq!(unfold("a, \r\n  b,\r\n\tc"), "a, b, c");
        assert_eq!(unfold("x\n y"), "x y");
    }

    #[test]
    fn parse_params_unquotes_and_rejects_junk() {
        let p = parse_params(r#";a=1; b ; c="x\"y";d="#).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[2].value.as_deref(), Some("x\"y"));
        assert_eq!(p[3].value.as_deref(), Some(""));
        assert_eq!(p[1].value, None);
        assert!(parse_params("junk").is_none());
        assert!(parse_params(";").is_none());
        assert!(parse_params(r#";a="open"#).is_none());
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(parse_u32(" 42 ", 10), Some(42));
        assert_eq!(parse_u32("99999999999", 10), None);
        assert_eq!(parse_u32("4294967296", 10), None);
        assert_eq!(parse_u32("-1", 10), None);
        assert_eq!(parse_u32("", 10), None);
        assert_eq!(
            parse_u32("\t\x0c7\r\n", 10),
            Some(7),
            "ASCII whitespace is trimmed"
        );
        assert_eq!(parse_u32("+1", 10), None);
        assert_eq!(parse_u32("1 2", 10), None);
        assert_eq!(parse_u32("4294967295", 10), Some(u32::MAX));
        assert_eq!(parse_u32("0004294967295", 13), Some(u32::MAX));
        assert_eq!(parse_u32("123", 2), None);
        assert_eq!(parse_u32("١٢", 10), None, "non-ASCII digits");
    }
}
