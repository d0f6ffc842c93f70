//! SIP request methods (RFC 3261 §7.1, §25.1 `Method = INVITEm / ... / extension-method`).
//!
//! Methods are case-sensitive tokens; any valid token is accepted as an extension method
//! (`Other`), so a request with an unknown method parses and can be answered `405`/`501`.

use std::fmt;

/// Longest method token accepted (bounds the allocation of an extension method).
const MAX_METHOD_LEN: usize = 64;

/// A SIP request method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// An extension method token, exactly as received.
    Other(Box<str>),
}

impl Method {
    /// Parses a method token (case-sensitive, RFC 3261 §7.1). `None` if `b` is not a token.
    pub fn from_token(b: &[u8]) -> Option<Method> {
        let known = match b {
            b"INVITE" => Some(Method::Invite),
            b"ACK" => Some(Method::Ack),
            b"BYE" => Some(Method::Bye),
            b"CANCEL" => Some(Method::Cancel),
            b"REGISTER" => Some(Method::Register),
            b"OPTIONS" => Some(Method::Options),
            b"INFO" => Some(Method::Info),
            b"UPDATE" => Some(Method::Update),
            b"PRACK" => Some(Method::Prack),
            b"SUBSCRIBE" => Some(Method::Subscribe),
            b"NOTIFY" => Some(Method::Notify),
            b"REFER" => Some(Method::Refer),
            b"MESSAGE" => Some(Method::Message),
            b"PUBLISH" => Some(Method::Publish),
            _ => None,
        };
        if known.is_some() {
            return known;
        }
        if b.is_empty() || b.len() > MAX_METHOD_LEN || !b.iter().all(|&c| is_token_char(c)) {
            return None;
        }
        // Token characters are ASCII, so this cannot fail.
        std::str::from_utf8(b).ok().map(|s| Method::Other(s.into()))
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §25.1 `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" /
/// "`" / "'" / "~".
///
/// A table lookup: the parser asks once per byte of every header name.
#[inline]
pub(crate) fn is_token_char(c: u8) -> bool {
    TOKEN_CHARS[usize::from(c)]
}

const TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_round_trip() {
        for m in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "REGISTER",
            "OPTIONS",
            "INFO",
            "UPDATE",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "REFER",
            "MESSAGE",
            "PUBLISH",
        ] {
            let parsed = Method::from_token(m.as_bytes()).unwrap();
            assert!(!matches!(parsed, Method::Other(_)), "{m}");
            assert_eq!(parsed.as_str(), m);
            assert_eq!(parsed.to_string(), m);
        }
    }

    #[test]
    fn extension_methods_are_tokens_kept_verbatim() {
        assert_eq!(
            Method::from_token(b"FOO.bar-1"),
            Some(Method::Other("FOO.bar-1".into()))
        );
        // Methods are case-sensitive: "invite" is an extension method, not INVITE.
        assert_eq!(
            Method::from_token(b"invite"),
            Some(Method::Other("invite".into()))
        );
    }

    #[test]
    fn non_tokens_are_rejected() {
        assert_eq!(Method::from_token(b""), None);
        assert_eq!(Method::from_token(b"IN VITE"), None);
        assert_eq!(Method::from_token(b"INV:"), None);
        assert_eq!(Method::from_token("INVITÉ".as_bytes()), None);
        assert_eq!(Method::from_token(&[b'A'; 65]), None);
    }

    #[test]
    fn token_characters_are_exactly_rfc_3261s() {
        let tokens: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~";
        for c in 0..=255u8 {
            assert_eq!(is_token_char(c), tokens.contains(&c), "byte {c}");
        }
    }
}
