//! Parser for the value of an `Authorization` / `Proxy-Authorization` header carrying
//! HTTP Digest credentials (RFC 7616 §3.4, RFC 2617 §3.2.2, as used by SIP: RFC 3261 §22.4,
//! RFC 8760).
//!
//! Accepted: the scheme `Digest` in any case, parameters in any order separated by commas
//! with optional whitespace, names in any case, values as tokens or quoted strings with
//! `\`-escapes, unknown parameters (ignored, but counted against the parameter bound).
//! Refused with a typed error: other schemes, duplicates of a known parameter, missing
//! mandatory parameters, algorithms and qop values we never offer, a malformed `nc`,
//! input over [`MAX_CREDENTIALS_LEN`] bytes or over [`MAX_PARAMS`] parameters.

use std::fmt;

/// Longest header value we parse; longer values are refused before any work is done.
pub const MAX_CREDENTIALS_LEN: usize = 4096;
/// Most parameters (known and unknown) we accept in one credentials value.
pub const MAX_PARAMS: usize = 32;

/// Digest hash algorithm (RFC 7616 §3.4.2, RFC 8760 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` token, case-insensitively.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The canonical token, as written in a challenge.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether HA1 is re-hashed with the nonce and cnonce (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection. Only `auth` exists here: we never offer `auth-int`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qop {
    Auth,
}

/// Parsed Digest credentials. Values are unquoted and unescaped; `uri` is kept exactly as
/// the client sent it, because the response is computed over that text (RFC 7616 §3.4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `MD5` when the parameter is absent (RFC 2617 §3.2.1).
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub qop: Option<Qop>,
    /// The nonce count, present exactly when `qop` is.
    pub nc: Option<u32>,
    pub opaque: Option<String>,
}

/// Why a credentials value was refused. The lead answers all of them with a fresh
/// challenge (401/407); they differ for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("credentials longer than {max} bytes")]
    TooLong { max: usize },
    #[error("authentication scheme is not Digest")]
    NotDigest,
    #[error("more than {max} parameters")]
    TooManyParams { max: usize },
    #[error("malformed parameter list at byte {at}")]
    Syntax { at: usize },
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("parameter `{0}` appears more than once")]
    Duplicate(&'static str),
    #[error("mandatory parameter `{0}` is missing")]
    Missing(&'static str),
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    #[error("unsupported qop (only `auth` is offered)")]
    UnsupportedQop,
    #[error("nc is not 1 to 8 hex digits")]
    InvalidNonceCount,
}

/// The known parameters, in the order of the `slots` array in [`DigestCredentials::parse`].
const KNOWN: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "qop",
    "nc",
    "opaque",
];

impl DigestCredentials {
    /// Parses a header value such as
    /// `Digest username="1001", realm="x", nonce="n", uri="sip:x", response="…"`.
    pub fn parse(value: &str) -> Result<DigestCredentials, DigestParseError> {
        if value.len() > MAX_CREDENTIALS_LEN {
            return Err(DigestParseError::TooLong {
                max: MAX_CREDENTIALS_LEN,
            });
        }
        let bytes = value.as_bytes();
        let mut pos = skip_ws(bytes, 0);
        let scheme_end = scan_token(bytes, pos);
        let scheme = value.get(pos..scheme_end).unwrap_or("");
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestParseError::NotDigest);
        }
        pos = scheme_end;
        // The scheme must be followed by whitespace (or nothing, which then fails on
        // missing parameters): `Digestusername=…` is not Digest.
        if pos < bytes.len() && !is_ws(bytes.get(pos).copied().unwrap_or(0)) {
            return Err(DigestParseError::NotDigest);
        }

        let mut slots: [Option<String>; KNOWN.len()] = Default::default();
        let mut count = 0usize;
        loop {
            // Empty list elements (`a=1,,b=2`) are allowed (RFC 7230 §7).
            while let Some(&b) = bytes.get(pos) {
                if is_ws(b) || b == b',' {
                    pos += 1;
                } else {
                    break;
                }
            }
            if pos >= bytes.len() {
                break;
            }
            count += 1;
            if count > MAX_PARAMS {
                return Err(DigestParseError::TooManyParams { max: MAX_PARAMS });
            }
            let name_end = scan_token(bytes, pos);
            if name_end == pos {
                return Err(DigestParseError::Syntax { at: pos });
            }
            let name = value.get(pos..name_end).unwrap_or("");
            pos = skip_ws(bytes, name_end);
            if bytes.get(pos) != Some(&b'=') {
                return Err(DigestParseError::Syntax { at: pos });
            }
            pos = skip_ws(bytes, pos + 1);
            let (val, next) = parse_value(value, pos)?;
            pos = skip_ws(bytes, next);
            match bytes.get(pos) {
                None | Some(b',') => {}
                Some(_) => return Err(DigestParseError::Syntax { at: pos }),
            }
            if let Some(i) = KNOWN.iter().position(|k| k.eq_ignore_ascii_case(name)) {
                let slot = slots
                    .get_mut(i)
                    .ok_or(DigestParseError::Syntax { at: pos })?;
                if slot.is_some() {
                    return Err(DigestParseError::Duplicate(
                        KNOWN.get(i).copied().unwrap_or(""),
                    ));
                }
                *slot = Some(val);
            }
        }

        let [username, realm, nonce, uri, response, algorithm, cnonce, qop, nc, opaque] = slots;
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(&a).ok_or(DigestParseError::UnsupportedAlgorithm)?,
        };
        let qop = match qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(_) => return Err(DigestParseError::UnsupportedQop),
        };
        let nc = match nc {
            None => None,
            Some(n) => Some(parse_nc(&n)?),
        };
        let creds = DigestCredentials {
            username: username.ok_or(DigestParseError::Missing("username"))?,
            realm: realm.ok_or(DigestParseError::Missing("realm"))?,
            nonce: nonce.ok_or(DigestParseError::Missing("nonce"))?,
            uri: uri.ok_or(DigestParseError::Missing("uri"))?,
            response: response.ok_or(DigestParseError::Missing("response"))?,
            algorithm,
            cnonce,
            qop,
            nc,
            opaque,
        };
        // With qop, the response covers cnonce and nc (RFC 7616 §3.4.1); the -sess
        // algorithms need cnonce for HA1 (§3.4.2).
        if (creds.qop.is_some() || algorithm.is_session()) && creds.cnonce.is_none() {
            return Err(DigestParseError::Missing("cnonce"));
        }
        if creds.qop.is_some() && creds.nc.is_none() {
            return Err(DigestParseError::Missing("nc"));
        }
        Ok(creds)
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|&b| is_ws(b)) {
        pos += 1;
    }
    pos
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn scan_token(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|&b| is_token_char(b)) {
        pos += 1;
    }
    pos
}

/// Parses a token or quoted-string value starting at `pos`; returns it unescaped with the
/// index just past it.
fn parse_value(value: &str, pos: usize) -> Result<(String, usize), DigestParseError> {
    let bytes = value.as_bytes();
    if bytes.get(pos) == Some(&b'"') {
        let mut out = Vec::new();
        let mut i = pos + 1;
        loop {
            match bytes.get(i) {
                None => return Err(DigestParseError::UnterminatedQuote),
                Some(b'"') => break,
                Some(b'\\') => {
                    // quoted-pair: the next byte stands for itself. Splitting only at ASCII
                    // bytes keeps multi-byte UTF-8 sequences intact.
                    let escaped = bytes
                        .get(i + 1)
                        .ok_or(DigestParseError::UnterminatedQuote)?;
                    out.push(*escaped);
                    i += 2;
                }
                Some(&b) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        let s = String::from_utf8(out).map_err(|_| DigestParseError::Syntax { at: pos })?;
        Ok((s, i + 1))
    } else {
        // Unquoted values are tokens, but clients put `/`, `:` or `@` in them too (an
        // unquoted uri); accept anything up to a separator.
        let mut i = pos;
        while bytes
            .get(i)
            .is_some_and(|&b| !is_ws(b) && b != b',' && b != b'"')
        {
            i += 1;
        }
        if i == pos {
            return Err(DigestParseError::Syntax { at: pos });
        }
        let s = value
            .get(pos..i)
            .ok_or(DigestParseError::Syntax { at: pos })?;
        Ok((s.to_owned(), i))
    }
}

/// `nc` is 8 hex digits (RFC 7616 §3.4); we accept 1 to 8 so a sloppy client still works.
fn parse_nc(s: &str) -> Result<u32, DigestParseError> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestParseError::InvalidNonceCount);
    }
    u32::from_str_radix(s, 16).map_err(|_| DigestParseError::InvalidNonceCount)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617: &str = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n \
        nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n \
        qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n \
        response=\"6629fae49393a05397450978507c4ef1\",\r\n \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    #[test]
    fn parses_rfc2617_example() {
        let c = DigestCredentials::parse(RFC2617).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.realm, "testrealm@host.com");
        assert_eq!(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(c.uri, "/dir/index.html");
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(c.algorithm, Algorithm::Md5);
    }

    #[test]
    fn parses_pjsua_style_without_qop() {
        let v = "Digest username=\"1001\", realm=\"handover.local\", \
                 nonce=\"abc\", uri=\"sip:handover.local;transport=tcp\", \
                 response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5";
        let c = DigestCredentials::parse(v).unwrap();
        assert_eq!(c.uri, "sip:handover.local;transport=tcp");
        assert_eq!(c.qop, None);
        assert_eq!(c.nc, None);
        assert_eq!(c.cnonce, None);
    }

    #[test]
    fn any_order_any_case_unknown_ignored_and_escapes() {
        let v = "digest NC=0000000a,QOP=\"auth\", Algorithm=\"sha-256\" ,x-foo=bar, \
                 USERNAME=\"a\\\"b\\\\c\", Realm=r, nonce=n, uri=sip:x@y:5060, \
                 cnonce=\"c\", response=ff, userhash=false";
        let c = DigestCredentials::parse(v).unwrap();
        assert_eq!(c.username, "a\"b\\c");
        assert_eq!(c.realm, "r");
        assert_eq!(c.uri, "sip:x@y:5060");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.qop, Some(Qop::Auth));
    }

    #[test]
    fn non_ascii_in_quoted_value_survives() {
        let v = "Digest username=\"jürgen\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
        assert_eq!(DigestCredentials::parse(v).unwrap().username, "jürgen");
    }

    #[test]
    fn typed_errors() {
        use DigestParseError as E;
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"s\", response=\"x\"";
        assert_eq!(
            DigestCredentials::parse(&format!("Basic {base}")),
            Err(E::NotDigest)
        );
        assert_eq!(
            DigestCredentials::parse("Digestusername=\"u\""),
            Err(E::NotDigest)
        );
        assert_eq!(
            DigestCredentials::parse("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"s\""),
            Err(E::Missing("response"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, realm=\"again\"")),
            Err(E::Duplicate("realm"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, algorithm=SHA-512-256")),
            Err(E::UnsupportedAlgorithm)
        );
        assert_eq!(
            DigestCredentials::parse(&format!(
                "Digest {base}, qop=auth-int, nc=00000001, cnonce=c"
            )),
            Err(E::UnsupportedQop)
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, qop=auth, cnonce=c")),
            Err(E::Missing("nc"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, qop=auth, nc=00000001")),
            Err(E::Missing("cnonce"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, qop=auth, nc=+1, cnonce=c")),
            Err(E::InvalidNonceCount)
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, qop=auth, nc=123456789, cnonce=c")),
            Err(E::InvalidNonceCount)
        );
        assert_eq!(
            DigestCredentials::parse("Digest username=\"u"),
            Err(E::UnterminatedQuote)
        );
        assert_eq!(
            DigestCredentials::parse("Digest username=\"u\\"),
            Err(E::UnterminatedQuote)
        );
        assert!(matches!(
            DigestCredentials::parse("Digest username"),
            Err(E::Syntax { .. })
        ));
        assert!(matches!(
            DigestCredentials::parse("Digest username=\"u\" realm=\"r\""),
            Err(E::Syntax { .. })
        ));
        assert!(matches!(
            DigestCredentials::parse("Digest =x"),
            Err(E::Syntax { .. })
        ));
    }

    #[test]
    fn bounded_length_and_count() {
        let long = format!("Digest username=\"{}\"", "a".repeat(MAX_CREDENTIALS_LEN));
        assert_eq!(
            DigestCredentials::parse(&long),
            Err(DigestParseError::TooLong {
                max: MAX_CREDENTIALS_LEN
            })
        );
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("x{i}=1")).collect();
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {}", many.join(","))),
            Err(DigestParseError::TooManyParams { max: MAX_PARAMS })
        );
    }

    #[test]
    fn never_panics_on_truncations() {
        for end in 0..=RFC2617.len() {
            if let Some(prefix) = RFC2617.get(..end) {
                let _ = DigestCredentials::parse(prefix);
            }
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        let alphabet: Vec<char> = "Digest uname=\"\\,\t\r\n aé=qop".chars().collect();
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let len = rng.usize(0..80);
            let s: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            let _ = DigestCredentials::parse(&s);
            let _ = DigestCredentials::parse(&format!("Digest {s}"));
        }
    }
}
