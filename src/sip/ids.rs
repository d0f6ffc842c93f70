//! Fresh identifiers: tags (RFC 3261 §19.3, at least 32 bits of randomness), branches
//! (§8.1.1.7, the `z9hG4bK` magic cookie) and Call-IDs (§8.1.1.4).
//!
//! These are uniqueness tokens, not secrets, so `fastrand` is enough. The `_with` variants
//! take the generator, so tests and simulations can seed it for reproducible traces.

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A 16-hex-character tag (64 random bits).
pub fn new_tag() -> String {
    new_tag_with(&mut fastrand::Rng::new())
}

/// `new_tag` from a given generator.
pub fn new_tag_with(rng: &mut fastrand::Rng) -> String {
    hex(rng.u64(..), 16)
}

/// `z9hG4bK` followed by 20 alphanumeric characters (~119 random bits).
pub fn new_branch() -> String {
    new_branch_with(&mut fastrand::Rng::new())
}

/// `new_branch` from a given generator.
pub fn new_branch_with(rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(27);
    s.push_str("z9hG4bK");
    for _ in 0..20 {
        let i = rng.usize(..ALNUM.len());
        s.push(char::from(ALNUM.get(i).copied().unwrap_or(b'x')));
    }
    s
}

/// 32 hex characters (128 random bits) `@host`; just the hex part when `host` is empty.
pub fn new_call_id(host: &str) -> String {
    new_call_id_with(&mut fastrand::Rng::new(), host)
}

/// `new_call_id` from a given generator.
pub fn new_call_id_with(rng: &mut fastrand::Rng, host: &str) -> String {
    let mut s = hex(rng.u64(..), 16);
    s.push_str(&hex(rng.u64(..), 16));
    if !host.is_empty() {
        s.push('@');
        s.push_str(host);
    }
    s
}

fn hex(mut v: u64, digits: usize) -> String {
    let mut out = vec![b'0'; digits];
    for slot in out.iter_mut().rev() {
        *slot = HEX.get((v & 0xf) as usize).copied().unwrap_or(b'0');
        v >>= 4;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_16_hex() {
        let t = new_tag();
        assert_eq!(t.len(), 16);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_tag(), new_tag());
    }

    #[test]
    fn branch_has_magic_cookie() {
        let b = new_branch();
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(b.len(), 27);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn call_id_with_and_without_host() {
        let c = new_call_id("pbx.example");
        assert!(c.ends_with("@pbx.example"));
        assert_eq!(c.len(), 32 + 1 + 11);
        assert!(!new_call_id("").contains('@'));
    }

    #[test]
    fn seeded_generators_are_reproducible() {
        let a = new_branch_with(&mut fastrand::Rng::with_seed(7));
        let b = new_branch_with(&mut fastrand::Rng::with_seed(7));
        assert_eq!(a, b);
        assert_eq!(hex(0xab, 4), "00ab");
    }
}
