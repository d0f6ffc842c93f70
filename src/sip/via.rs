//! Via header values (RFC 3261 §20.42, §18.2.1 `received`, RFC 3581 `rport`).
//!
//! `SIP/2.0/UDP host[:port];branch=z9hG4bK...;rport;received=...` with LWS allowed around
//! the `/` separators; the sent-by host may be an IPv6 reference. A Via header may carry a
//! comma-separated list: split it with `SipMessage::vias`.

use std::fmt;
use std::net::IpAddr;

use super::error::ParseError;
use super::header::HeaderName;
use super::method::is_token_char;
use super::scan;
use super::uri::{find_in, fmt_header_params, parse_port, Host, Param};

const BAD: ParseError = ParseError::BadHeader(HeaderName::Via);

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, ...).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// Parses a single Via value (one list element).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let parts = Parts::parse(s)?;
        Ok(Via {
            transport: parts.transport.to_ascii_uppercase(),
            host: Host::from_checked(parts.host, parts.ip),
            port: parts.port,
            params: scan::parse_params(parts.params).ok_or(BAD)?,
        })
    }

    /// The `branch` parameter (RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// `rport` (RFC 3581): `Some(None)` when present without a value (a request asking for
    /// it), `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(parse_port))
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// A parameter by name (case-insensitive); `Some(None)` when it has no value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_in(&self.params, name)
    }

    /// `host[:port]` of sent-by, IPv6 in brackets.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

/// What answering a request needs of its top Via (RFC 3261 §18.2.2, RFC 3581), read without
/// building a [`Via`]: a request's Via is checked as strictly as [`Via::parse`] checks it, but
/// most requests are answered from these three facts and their Via copied as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentBy {
    /// The sent-by host when it is an IP literal.
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// `rport` is present, with or without a value (RFC 3581 §4: answer to the source port).
    pub rport: bool,
}

impl SentBy {
    /// Reads a single Via value (one list element); refuses what [`Via::parse`] refuses.
    pub fn parse(s: &str) -> Result<SentBy, ParseError> {
        let parts = Parts::parse(s)?;
        let mut rport = false;
        scan::for_each_param(parts.params, |name, _| {
            rport |= name.eq_ignore_ascii_case("rport");
        })
        .ok_or(BAD)?;
        Ok(SentBy {
            ip: parts.ip,
            port: parts.port,
            rport,
        })
    }
}

/// A Via value cut into its parts, each checked but the parameters.
struct Parts<'a> {
    transport: &'a str,
    host: &'a str,
    ip: Option<IpAddr>,
    port: Option<u16>,
    /// `;name[=value]...` as written.
    params: &'a str,
}

impl<'a> Parts<'a> {
    fn parse(s: &'a str) -> Result<Parts<'a>, ParseError> {
        let v = s.as_bytes();
        let mut i = scan::skip_ws(v, 0);
        let mut parts = [(0usize, 0usize); 3];
        for (n, part) in parts.iter_mut().enumerate() {
            if n > 0 {
                if v.get(i) != Some(&b'/') {
                    return Err(BAD);
                }
                i = scan::skip_ws(v, i + 1);
            }
            let start = i;
            while v.get(i).is_some_and(|&c| is_token_char(c)) {
                i += 1;
            }
            if i == start {
                return Err(BAD);
            }
            *part = (start, i);
            i = scan::skip_ws(v, i);
        }
        let [proto, version, transport_range] = parts;
        let text = |r: (usize, usize)| s.get(r.0..r.1).ok_or(BAD);
        if !text(proto)?.eq_ignore_ascii_case("SIP") || text(version)? != "2.0" {
            return Err(BAD);
        }
        let transport = text(transport_range)?;
        if i == transport_range.1 {
            // sent-protocol and sent-by must be separated by LWS.
            return Err(BAD);
        }
        let rest = s.get(i..).ok_or(BAD)?;
        let (host, after) = if rest.starts_with('[') {
            let close = rest.find(']').ok_or(BAD)?;
            (
                rest.get(..=close).ok_or(BAD)?,
                rest.get(close + 1..).ok_or(BAD)?,
            )
        } else {
            let end = rest
                .find(|c: char| c == ':' || c == ';' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            (rest.get(..end).ok_or(BAD)?, rest.get(end..).ok_or(BAD)?)
        };
        let ip = Host::parse_ip(host).map_err(|_| BAD)?;
        let after = after.trim_start();
        let (port, params) = match after.strip_prefix(':') {
            Some(p) => {
                let p = p.trim_start();
                let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
                let port = parse_port(p.get(..end).ok_or(BAD)?).ok_or(BAD)?;
                (Some(port), p.get(end..).ok_or(BAD)?)
            }
            None => (None, after),
        };
        Ok(Parts {
            transport,
            host,
            ip,
            port,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        fmt_header_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn typical_udp_via() {
        let v = Via::parse("SIP/2.0/udp 192.168.1.20:5060;rport;branch=z9hG4bKPj1").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 168, 1, 20)));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bKPj1"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v =
            Via::parse("SIP/2.0/TCP [::1]:49822;rport=49822;received=::1;alias;branch=z9hG4bKx")
                .unwrap();
        assert_eq!(v.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(v.port, Some(49822));
        assert_eq!(v.rport(), Some(Some(49822)));
        assert_eq!(v.received(), Some("::1"));
        assert_eq!(v.param("alias"), Some(None));
        assert_eq!(v.sent_by(), "[::1]:49822");
    }

    #[test]
    fn lws_around_slashes_and_port() {
        let v = Via::parse("SIP / 2.0 / UDP  host.example : 5070 ; branch = z9hG4bK1").unwrap();
        assert_eq!(v.host, Host::Domain("host.example".into()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport",
            "SIP/2.0/TCP [2001:db8::9];branch=z9hG4bKa;received=[2001:db8::9];rport=5070",
            "SIP/2.0/WSS edge.example;branch=z9hG4bKq",
        ] {
            let v = Via::parse(s).unwrap();
            assert_eq!(v.to_string(), s);
        }
    }

    /// What `Via::parse` makes of `s`, in `SentBy`'s terms.
    fn sent_by_of_via(s: &str) -> Result<SentBy, ParseError> {
        Via::parse(s).map(|v| SentBy {
            ip: v.host.ip(),
            port: v.port,
            rport: v.rport().is_some(),
        })
    }

    #[test]
    fn sent_by_reads_what_via_reads() {
        for s in [
            "SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj1",
            "SIP/2.0/TCP [::1]:49822;rport=49822;received=::1;alias;branch=z9hG4bKx",
            "SIP / 2.0 / UDP  host.example : 5070 ; branch = z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;RPORT;branch=z9hG4bK2",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3;x=\"a;rport\"",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK4;rportx",
            "SIP/2.0/WSS edge.example;branch=z9hG4bKq",
        ] {
            let via = sent_by_of_via(s).unwrap();
            assert_eq!(SentBy::parse(s), Ok(via), "{s:?}");
        }
        let quoted = SentBy::parse("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3;x=\"a;rport\"");
        assert!(
            !quoted.unwrap().rport,
            "rport inside a quoted value is not rport"
        );
        assert!(SentBy::parse("SIP/2.0/UDP 10.0.0.1;RPORT").unwrap().rport);
        // As many parameters as a Via may have, and one more.
        let many = |n: usize| format!("SIP/2.0/UDP h{}", ";p".repeat(n));
        assert!(SentBy::parse(&many(scan::MAX_PARAMS)).is_ok());
        assert_eq!(SentBy::parse(&many(scan::MAX_PARAMS + 1)), Err(BAD));
        assert_eq!(Via::parse(&many(scan::MAX_PARAMS + 1)), Err(BAD));
    }

    proptest::proptest! {
        /// Random and mutated Via values: `SentBy` accepts exactly what `Via` accepts, and
        /// reads the same host address, port and rport from it.
        #[test]
        fn sent_by_agrees_with_via_on_any_value(
            s in "(SIP ?/ ?2\\.0 ?/ ?(UDP|tcp|x) )?(\\[::1\\]|10\\.0\\.0\\.[0-9]{1,3}|[a-z.]{1,6})(:[0-9]{1,6})?( ?; ?(rport|RPORT|branch|received|x)(=(\"[a-z;]*\"|[0-9a-z.]{0,4}))?){0,4}[ ;=\"]?",
        ) {
            proptest::prop_assert_eq!(SentBy::parse(&s), sent_by_of_via(&s));
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/3.0/UDP h",
            "HTTP/2.0/UDP h",
            "SIP/2.0 h",
            "SIP/2.0/UDPh",
            "SIP/2.0/UDP h:port",
            "SIP/2.0/UDP h:70000",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP h;branch=\"x",
            "SIP/2.0/UDP h junk",
        ] {
            assert_eq!(Via::parse(bad), Err(BAD), "{bad:?}");
        }
    }
}
