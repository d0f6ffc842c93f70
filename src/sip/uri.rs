//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1 `SIP-URI`; RFC 3966 `tel:`).
//!
//! `sip:user:password@host:port;uri-parameters?headers` — the host may be an IPv6
//! reference `[::1]` (§25.1 `IPv6reference`); the user part may contain `;` and `?`
//! (`user-unreserved`), so userinfo ends at the first `@` before any `?`. Embedded headers
//! (`?Replaces=...`, RFC 3891 §7.2, RFC 3515 §2.1) are kept escaped in `headers` and decoded
//! on demand by [`Uri::header`]. The user part is kept as written (still %-escaped) so that
//! `Display` re-serialises exactly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::ParseError;
use super::typed::Replaces;

/// Longest URI accepted.
const MAX_URI_LEN: usize = 4096;
/// Most `?h=v` headers accepted in one URI.
const MAX_URI_HEADERS: usize = 32;

/// A URI scheme the codec understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// The host part of a URI or Via. `tel:` URIs have `Domain("")`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    /// Parses a host as written: `[v6]`, dotted IPv4, or a hostname.
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        Ok(Host::from_checked(s, Host::parse_ip(s)?))
    }

    /// The host `s` that [`Host::parse_ip`] accepted, with the address it found.
    pub(crate) fn from_checked(s: &str, ip: Option<IpAddr>) -> Host {
        match ip {
            Some(IpAddr::V4(v4)) => Host::V4(v4),
            Some(IpAddr::V6(v6)) => Host::V6(v6),
            None => Host::Domain(s.to_string()),
        }
    }

    /// Checks a host as [`Host::parse`] does, without building it: its address when it is an
    /// IP literal, `None` when it is a (valid) host name.
    pub fn parse_ip(s: &str) -> Result<Option<IpAddr>, ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(ParseError::BadUri)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|v6| Some(IpAddr::V6(v6)))
                .map_err(|_| ParseError::BadUri);
        }
        if s.is_empty()
            || !s
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        {
            return Err(ParseError::BadUri);
        }
        Ok(s.parse::<Ipv4Addr>().ok().map(IpAddr::V4))
    }

    /// The IP address when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write_ipv4(f, *a),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Writes dotted-quad `ip` in one `write_str` (std's `Display` goes through the formatting
/// machinery once per octet; handover writes its own address into every Via and Contact).
fn write_ipv4(f: &mut impl fmt::Write, ip: Ipv4Addr) -> fmt::Result {
    let mut buf = [0u8; 15];
    let mut len = 0;
    let mut push = |c: u8| {
        if let Some(slot) = buf.get_mut(len) {
            *slot = c;
            len += 1;
        }
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    f.write_str(std::str::from_utf8(buf.get(..len).unwrap_or_default()).unwrap_or_default())
}

/// A socket address written as SIP writes a sent-by or hostport: `1.2.3.4:5060`,
/// `[::1]:5060`.
pub struct HostPort(pub SocketAddr);

impl HostPort {
    /// Appends the address as [`Display`](fmt::Display) writes it; an IPv4 one without the
    /// formatting machinery (it goes into every Via and Contact handover sends).
    pub fn put(&self, out: &mut bytes::BytesMut) {
        use bytes::BufMut;
        match self.0 {
            SocketAddr::V4(a) => {
                let _ = write_ipv4(out, *a.ip());
                out.put_u8(b':');
                super::put_decimal(out, u64::from(a.port()));
            }
            SocketAddr::V6(_) => {
                let _ = fmt::Write::write_fmt(out, format_args!("{self}"));
            }
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => {
                write_ipv4(f, *a.ip())?;
                write!(f, ":{}", a.port())
            }
            SocketAddr::V6(a) => write!(f, "[{}]:{}", a.ip(), a.port()),
        }
    }
}

/// A `name[=value]` parameter; `value` has quotes removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl Param {
    pub fn new(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }
}

/// Case-insensitive parameter lookup shared by Uri, NameAddr and Via.
pub(crate) fn find_in<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

/// Writes header parameters (`;name=value`), quoting values that are not `token` / `host`.
pub(crate) fn fmt_header_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        write!(f, ";{}", p.name)?;
        if let Some(v) = &p.value {
            let plain = !v.is_empty()
                && v.bytes()
                    .all(|c| super::method::is_token_char(c) || matches!(c, b':' | b'[' | b']'));
            if plain {
                write!(f, "={v}")?;
            } else {
                f.write_str("=\"")?;
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
    }
    Ok(())
}

/// A parsed SIP, SIPS or tel URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    /// As written (still %-escaped); the subscriber number for `tel:`.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// `?h=v&...` headers, raw (still %-escaped).
    pub headers: Vec<(String, String)>,
}

/// Characters never allowed unescaped anywhere in a URI.
fn bad_uri_char(c: u8) -> bool {
    c <= b' ' || c == 0x7f || matches!(c, b'<' | b'>' | b'"') || c >= 0x80
}

impl Uri {
    /// Parses a `sip:`, `sips:` or `tel:` URI. Other schemes fail with
    /// [`ParseError::UnsupportedScheme`].
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let parts = Uri::split(s)?;
        let mut params = Vec::new();
        let mut headers = Vec::new();
        scan_params_and_headers(
            parts.tail,
            |name, value| {
                params.push(Param {
                    name: name.to_string(),
                    value: value.map(str::to_string),
                })
            },
            |name, value| headers.push((name.to_string(), value.to_string())),
        )?;
        Ok(Uri {
            scheme: parts.scheme,
            user: parts.user.map(str::to_string),
            password: parts.password.map(str::to_string),
            // `tel:` has no host: an empty name.
            host: Host::from_checked(parts.host, parts.ip),
            port: parts.port,
            params,
            headers,
        })
    }

    /// Checks `s` as [`Uri::parse`] does (the same errors), without building the URI: for
    /// headers that are only validated, or kept as written.
    pub fn check(s: &str) -> Result<(), ParseError> {
        let parts = Uri::split(s)?;
        scan_params_and_headers(parts.tail, |_, _| {}, |_, _| {})
    }

    /// The URI cut into its parts, each checked but the parameters and headers.
    fn split(s: &str) -> Result<UriParts<'_>, ParseError> {
        let s = s.trim();
        // A fold, not `any`: no early exit, so the compiler checks many bytes at a time.
        if s.is_empty()
            || s.len() > MAX_URI_LEN
            || s.bytes().fold(false, |bad, c| bad | bad_uri_char(c))
        {
            return Err(ParseError::BadUri);
        }
        let colon = memchr::memchr(b':', s.as_bytes()).ok_or(ParseError::BadUri)?;
        let scheme_str = s.get(..colon).ok_or(ParseError::BadUri)?;
        let rest = s.get(colon + 1..).ok_or(ParseError::BadUri)?;
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else if !scheme_str.is_empty()
            && scheme_str
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(ParseError::UnsupportedScheme);
        } else {
            return Err(ParseError::BadUri);
        };
        match scheme {
            Scheme::Tel => tel_parts(rest),
            _ => sip_parts(scheme, rest),
        }
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` when present without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_in(&self.params, name)
    }

    /// An embedded `?name=value` header by name (case-insensitive), percent-decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| percent_decode(v))
    }

    /// The dialog named by an embedded `?Replaces=` header (RFC 3891 §7.2), as used by an
    /// attended-transfer Refer-To.
    pub fn replaces(&self) -> Result<Option<Replaces>, ParseError> {
        match self.header("Replaces") {
            None => Ok(None),
            Some(v) => Replaces::parse(&v).map(Some),
        }
    }

    /// `host[:port]`, with an IPv6 host in brackets.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// The socket address when the host is an IP literal; default port 5060 (5061 for
    /// `sips:`, RFC 3261 §19.1.2).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let default = if self.scheme == Scheme::Sips {
            5061
        } else {
            5060
        };
        self.host
            .ip()
            .map(|ip| SocketAddr::new(ip, self.port.unwrap_or(default)))
    }

    /// The user part as written, `""` if none.
    pub fn user_str(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }
}

/// A URI's parts as written; `tail` is its `;params?headers`, not yet checked.
struct UriParts<'a> {
    scheme: Scheme,
    /// The subscriber number for `tel:`.
    user: Option<&'a str>,
    password: Option<&'a str>,
    /// Empty for `tel:`.
    host: &'a str,
    /// The host's address when it is an IP literal.
    ip: Option<IpAddr>,
    port: Option<u16>,
    tail: &'a str,
}

fn tel_parts(rest: &str) -> Result<UriParts<'_>, ParseError> {
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    let number = rest.get(..end).ok_or(ParseError::BadUri)?;
    if number.is_empty() {
        return Err(ParseError::BadUri);
    }
    Ok(UriParts {
        scheme: Scheme::Tel,
        user: Some(number),
        password: None,
        host: "",
        ip: None,
        port: None,
        tail: rest.get(end..).ok_or(ParseError::BadUri)?,
    })
}

fn sip_parts(scheme: Scheme, rest: &str) -> Result<UriParts<'_>, ParseError> {
    // RFC 3261 §25.1: `?` may appear in a user part (user-unreserved), while `@` may not
    // appear unescaped in URI headers, so the first `@` always ends the userinfo.
    let at = memchr::memchr(b'@', rest.as_bytes());
    let (user, password, hostpart) = match at {
        Some(a) => {
            let userinfo = rest.get(..a).ok_or(ParseError::BadUri)?;
            let hostpart = rest.get(a + 1..).ok_or(ParseError::BadUri)?;
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if u.is_empty() {
                return Err(ParseError::BadUri);
            }
            (Some(u), p, hostpart)
        }
        None => (None, None, rest),
    };
    // hostport ends at the first ';' or '?' (after any IPv6 reference).
    let (host, after_host) = if hostpart.starts_with('[') {
        let close = hostpart.find(']').ok_or(ParseError::BadUri)?;
        (
            hostpart.get(..=close).ok_or(ParseError::BadUri)?,
            hostpart.get(close + 1..).ok_or(ParseError::BadUri)?,
        )
    } else {
        let end = memchr::memchr3(b':', b';', b'?', hostpart.as_bytes()).unwrap_or(hostpart.len());
        (
            hostpart.get(..end).ok_or(ParseError::BadUri)?,
            hostpart.get(end..).ok_or(ParseError::BadUri)?,
        )
    };
    let ip = Host::parse_ip(host)?;
    let (port, tail) = match after_host.strip_prefix(':') {
        Some(p) => {
            let end = memchr::memchr2(b';', b'?', p.as_bytes()).unwrap_or(p.len());
            let digits = p.get(..end).ok_or(ParseError::BadUri)?;
            let port = parse_port(digits).ok_or(ParseError::BadUri)?;
            (Some(port), p.get(end..).ok_or(ParseError::BadUri)?)
        }
        None => (None, after_host),
    };
    Ok(UriParts {
        scheme,
        user,
        password,
        host,
        ip,
        port,
        tail,
    })
}

/// A port: 1 to 5 digits, at most 65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Visits `*(;name[=value]) [?h=v *(&h=v)]` (no quoting inside URIs) in order: each
/// parameter, then each header; refuses an empty name or too many of either.
fn scan_params_and_headers<'a>(
    tail: &'a str,
    mut param: impl FnMut(&'a str, Option<&'a str>),
    mut header: impl FnMut(&'a str, &'a str),
) -> Result<(), ParseError> {
    let (ptext, htext) = match tail.split_once('?') {
        Some((p, h)) => (p, Some(h)),
        None => (tail, None),
    };
    if !ptext.is_empty() {
        let body = ptext.strip_prefix(';').ok_or(ParseError::BadUri)?;
        for (count, part) in body.split(';').enumerate() {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (part, None),
            };
            if name.is_empty() || count >= super::scan::MAX_PARAMS {
                return Err(ParseError::BadUri);
            }
            param(name, value);
        }
    }
    if let Some(h) = htext {
        for (count, part) in h.split('&').enumerate() {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            if name.is_empty() || count >= MAX_URI_HEADERS {
                return Err(ParseError::BadUri);
            }
            header(name, value);
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes; malformed escapes are kept literally; invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if self.scheme == Scheme::Tel {
            f.write_str(self.user_str())?;
        } else {
            if let Some(u) = &self.user {
                f.write_str(u)?;
                if let Some(p) = &self.password {
                    write!(f, ":{p}")?;
                }
                f.write_str("@")?;
            }
            write!(f, "{}", self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        }
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{n}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "127.0.0.1",
            "192.168.1.255",
            "255.255.255.255",
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(Host::V4(ip).to_string(), ip.to_string());
            for port in [0, 9, 5060, 65535] {
                let addr = SocketAddr::from((ip, port));
                assert_eq!(HostPort(addr).to_string(), addr.to_string());
                let mut put = bytes::BytesMut::new();
                HostPort(addr).put(&mut put);
                assert_eq!(&put[..], addr.to_string().as_bytes());
            }
        }
        let v6: SocketAddr = "[2001:db8::1]:5061".parse().unwrap();
        assert_eq!(HostPort(v6).to_string(), "[2001:db8::1]:5061");
        let mut put = bytes::BytesMut::new();
        HostPort(v6).put(&mut put);
        assert_eq!(&put[..], b"[2001:db8::1]:5061");
    }

    #[test]
    fn plain_sip_uri() {
        let u = Uri::parse("sip:1001@pbx.example.com:5070;transport=tcp;lr").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user_str(), "1001");
        assert_eq!(u.host, Host::Domain("pbx.example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.host_port(), "pbx.example.com:5070");
        assert_eq!(u.socket_addr(), None);
    }

    #[test]
    fn ipv6_host_with_and_without_port() {
        let u = Uri::parse("sip:alice@[::1]:5062;transport=udp").unwrap();
        assert_eq!(u.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.host_port(), "[::1]:5062");
        assert_eq!(u.socket_addr(), Some("[::1]:5062".parse().unwrap()));
        let u = Uri::parse("sip:[2001:db8::10]").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(
            u.socket_addr(),
            Some("[2001:db8::10]:5060".parse().unwrap())
        );
        assert!(Uri::parse("sip:[::1").is_err());
        assert!(Uri::parse("sip:[not-v6]").is_err());
    }

    #[test]
    fn ipv4_host_default_port() {
        let u = Uri::parse("sips:bob@192.0.2.4").unwrap();
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(192, 0, 2, 4)));
        assert_eq!(u.socket_addr(), Some("192.0.2.4:5061".parse().unwrap()));
        let u = Uri::parse("sip:bob@192.0.2.4").unwrap();
        assert_eq!(u.socket_addr(), Some("192.0.2.4:5060".parse().unwrap()));
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user_str(), "+1-201-555-0123");
        assert_eq!(u.host, Host::Domain(String::new()));
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        assert!(Uri::parse("tel:").is_err());
    }

    #[test]
    fn embedded_replaces_does_not_land_in_host() {
        let s = "sip:agent2@10.0.0.5:5062?Require=replaces&Replaces=abc%40h%3Bto-tag%3DT1%3Bfrom-tag%3DF1";
        let u = Uri::parse(s).unwrap();
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.header("require").as_deref(), Some("replaces"));
        assert_eq!(
            u.header("Replaces").as_deref(),
            Some("abc@h;to-tag=T1;from-tag=F1")
        );
        let r = u.replaces().unwrap().unwrap();
        assert_eq!(r.call_id, "abc@h");
        assert_eq!(r.to_tag, "T1");
        assert_eq!(r.from_tag, "F1");
        assert!(!r.early_only);
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn user_with_semicolon_and_escapes() {
        let u = Uri::parse("sip:+1234;phone-context=x%20y@gw.example;user=phone").unwrap();
        assert_eq!(u.user_str(), "+1234;phone-context=x%20y");
        assert_eq!(u.host, Host::Domain("gw.example".into()));
        assert_eq!(u.param("user"), Some(Some("phone")));
        let u = Uri::parse("sip:al%40ice:secret@h").unwrap();
        assert_eq!(u.user_str(), "al%40ice");
        assert_eq!(u.password.as_deref(), Some("secret"));
    }

    #[test]
    fn schemes_and_garbage() {
        assert_eq!(
            Uri::parse("http://example.com"),
            Err(ParseError::UnsupportedScheme)
        );
        assert_eq!(Uri::parse("SIP:a@B").unwrap().scheme, Scheme::Sip);
        for bad in [
            "",
            "sip:",
            "sip:@h",
            "nocolon",
            "sip:a@h:99999",
            "sip:a@h:",
            "sip:a b@h",
            "sip:a@h;",
            "sip:a@h?",
            "sip:a@<h>",
            ":x",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "sip:1001@pbx.example.com",
            "sip:1001:pw@[2001:db8::1]:5062;transport=tcp;lr;ob",
            "sips:bob@192.0.2.4:5061;maddr=239.255.255.1",
            "sip:pbx.example.com;lr",
            "sip:a@h?Subject=hi&Priority=urgent",
            "tel:+15550123",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
        }
    }

    #[test]
    fn percent_decode_tolerates_malformed_escapes() {
        assert_eq!(percent_decode("a%3Bb%2"), "a;b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }
}
