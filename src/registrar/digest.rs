//! HTTP Digest authentication for SIP, server side: challenges, self-validating nonces,
//! nonce-count replay protection and response verification (RFC 8760, RFC 7616 §3,
//! RFC 2617 §3, RFC 3261 §22).
//!
//! Sans-IO: no clock reads (`now` is passed in) and no I/O. The only randomness is the
//! server secret, drawn once from the OS (`getrandom`) in [`DigestAuthenticator::new`] or
//! injected with [`DigestAuthenticator::with_secret`] for reproducible tests.
//!
//! ## Nonces
//! A nonce is 64 lowercase hex digits: `ts(16) ‖ rand(16) ‖ mac(32)` where `ts` is the
//! issue time in ms since the authenticator was created, `rand` 64 bits from a generator
//! seeded by the secret, and `mac` the first 128 bits of HMAC-SHA-256(secret, ts ‖ rand).
//! Validity and age need no stored state: a nonce whose MAC fails is forged or from an
//! earlier process (→ `Rejected(BadNonce)`); an authentic one older than `nonce_ttl` is
//! stale (→ `Stale`, answer with `stale=true`, RFC 7616 §3.3) — but only when the response
//! itself was right, so `stale=true` never tells a guesser anything.
//!
//! ## Nonce counts
//! Per nonce used successfully we remember the highest `nc` (a bounded map; when full,
//! expired entries go first, then the oldest nonce, and every nonce issued no later than an
//! evicted one is from then on answered `Stale`, so eviction can never re-open a replay).
//! With `qop=auth`, `nc` must strictly increase, else `Rejected(NonceCountReplay)`.
//! Without `qop` (RFC 2069 style; pjsua retries like that when a challenge offers no qop)
//! the request carries no counter, so a second use is indistinguishable from a replay: such
//! a request counts as `nc=1` and a nonce is good for one of them; a reuse is answered
//! `Stale`, which makes an honest client retry at once with a fresh nonce.
//!
//! ## What the caller checks
//! [`AuthResult::Ok`] names the authenticated user; the caller must still check that it is
//! allowed to act for the request's AOR (REGISTER `To` user) and may compare `creds.uri`
//! with the Request-URI (RFC 7616 §3.4.6).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::credentials::{Algorithm, DigestCredentials, Qop};

/// Settings for [`DigestAuthenticator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestConfig {
    /// The realm in challenges; credentials for another realm are rejected.
    pub realm: String,
    /// Age after which a nonce is stale (`[registrar] nonce_ttl_s`).
    pub nonce_ttl: Duration,
    /// Bound of the nonce-count table.
    pub max_tracked_nonces: usize,
    /// Algorithms offered in challenges, most preferred first (RFC 8760 §2.4). Credentials
    /// with any supported algorithm are still verified.
    pub algorithms: Vec<Algorithm>,
}

impl DigestConfig {
    /// A config with the given realm, a 300 s nonce lifetime and 4096 tracked nonces.
    pub fn new(realm: impl Into<String>) -> DigestConfig {
        DigestConfig {
            realm: realm.into(),
            nonce_ttl: Duration::from_secs(300),
            max_tracked_nonces: 4096,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }
}

/// Whether a challenge goes in a 401 (`WWW-Authenticate`, registrar/UAS) or a 407
/// (`Proxy-Authenticate`, e.g. an agent's INVITE), RFC 3261 §22.2–22.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    Www,
    Proxy,
}

impl ChallengeKind {
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    /// Header that carries the challenge in the response.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// Header that carries the credentials in the retried request.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// Outcome of [`DigestAuthenticator::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// The credentials are valid for this user name.
    Ok { user: String },
    /// Correct credentials over an expired (or no longer trackable) nonce: challenge again
    /// with `stale=true`.
    Stale,
    /// Challenge again without `stale`.
    Rejected(RejectReason),
}

/// Why credentials were rejected (for logs; all map to a fresh 401/407).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    RealmMismatch,
    OpaqueMismatch,
    /// Not a nonce of this server process (forged, tampered, or from before a restart).
    BadNonce,
    /// Wrong password and unknown user alike: one reason, same work (no user probing).
    BadResponse,
    /// `nc` not higher than one already accepted for this nonce.
    NonceCountReplay,
}

#[derive(Clone, Copy, Debug)]
struct NonceUse {
    issued_ms: u64,
    /// Highest `nc` accepted; a request without qop counts as 1.
    last_nc: u32,
}

/// Used for unknown users so they cost the same hashing as known ones.
const DUMMY_PASSWORD: &str = "handover-dummy-password-for-unknown-users";
const NONCE_LEN: usize = 64;

/// Server-side Digest state: the secret, the realm and the nonce-count table.
pub struct DigestAuthenticator {
    config: DigestConfig,
    secret: [u8; 32],
    opaque: String,
    epoch: Instant,
    rng: fastrand::Rng,
    nonces: HashMap<String, NonceUse>,
    /// Every nonce issued at or before this time that is not in `nonces` may have been
    /// evicted after use: treat it as stale.
    evicted_up_to_ms: Option<u64>,
}

impl std::fmt::Debug for DigestAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("DigestAuthenticator")
            .field("realm", &self.config.realm)
            .field("tracked_nonces", &self.nonces.len())
            .finish_non_exhaustive()
    }
}

impl DigestAuthenticator {
    /// Creates an authenticator with a fresh secret from the OS. Nonces of an earlier
    /// process are thereby invalid (clients simply get a new challenge).
    pub fn new(config: DigestConfig, now: Instant) -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret)?;
        Ok(Self::with_secret(config, secret, now))
    }

    /// Creates an authenticator with a given secret (tests, or several processes sharing
    /// one secret). `now` is the epoch of nonce timestamps.
    pub fn with_secret(config: DigestConfig, secret: [u8; 32], now: Instant) -> Self {
        let opaque_mac = hmac_sha256(&secret, &[b"opaque"]);
        let seed_mac = hmac_sha256(&secret, &[b"nonce-rng-seed"]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&seed_mac[..8]);
        DigestAuthenticator {
            config,
            secret,
            opaque: hex(&opaque_mac[..16]),
            epoch: now,
            rng: fastrand::Rng::with_seed(u64::from_le_bytes(seed)),
            nonces: HashMap::new(),
            evicted_up_to_ms: None,
        }
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Number of nonces in the nonce-count table.
    pub fn tracked_nonces(&self) -> usize {
        self.nonces.len()
    }

    /// Issues a new nonce.
    pub fn new_nonce(&mut self, now: Instant) -> String {
        let ts = self.ms_since_epoch(now);
        let rand = self.rng.u64(..);
        self.format_nonce(ts, rand)
    }

    /// Builds the challenge header values (for [`ChallengeKind::challenge_header`]), in
    /// order of preference: SHA-256 first, then MD5 (RFC 8760 §2.4; send each as its own
    /// header). Both carry the same nonce, `qop="auth"` and our `opaque`; `stale=true` when
    /// `stale` (after [`AuthResult::Stale`]).
    pub fn challenge(&mut self, stale: bool, now: Instant) -> Vec<String> {
        let nonce = self.new_nonce(now);
        self.config
            .algorithms
            .clone()
            .into_iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", opaque=\"{}\", algorithm={alg}, qop=\"auth\"",
                    escape_quoted(&self.config.realm),
                    self.opaque
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Verifies credentials for a request with `method` (RFC 3261 §22.4: the response is
    /// over the request method and the `uri` parameter as sent). `password` maps a user
    /// name to its password, `None` for an unknown user.
    pub fn verify<S: AsRef<str>>(
        &mut self,
        creds: &DigestCredentials,
        method: &str,
        password: impl FnOnce(&str) -> Option<S>,
        now: Instant,
    ) -> AuthResult {
        if creds.realm != self.config.realm {
            return AuthResult::Rejected(RejectReason::RealmMismatch);
        }
        if let Some(opaque) = &creds.opaque {
            // Clients must echo it (RFC 7616 §3.4); tolerate its absence, refuse a wrong one.
            if !bool::from(opaque.as_bytes().ct_eq(self.opaque.as_bytes())) {
                return AuthResult::Rejected(RejectReason::OpaqueMismatch);
            }
        }
        let Some(issued_ms) = self.check_nonce(&creds.nonce, now) else {
            return AuthResult::Rejected(RejectReason::BadNonce);
        };

        // Same work for known and unknown users: always hash, always compare.
        let stored = password(&creds.username);
        let known = stored.is_some();
        let pw: &str = match &stored {
            Some(p) => p.as_ref(),
            None => DUMMY_PASSWORD,
        };
        let expected = compute_response(creds, method, pw);
        let given = creds.response.to_ascii_lowercase();
        let matches = bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        if !(matches & known) {
            return AuthResult::Rejected(RejectReason::BadResponse);
        }

        let age_ms = self.ms_since_epoch(now).saturating_sub(issued_ms);
        if u128::from(age_ms) > self.config.nonce_ttl.as_millis() {
            return AuthResult::Stale;
        }
        let nc = match creds.qop {
            Some(Qop::Auth) => creds.nc.unwrap_or(0),
            None => 1,
        };
        match self.nonces.get_mut(&creds.nonce) {
            Some(entry) => {
                if nc > entry.last_nc {
                    entry.last_nc = nc;
                } else if creds.qop.is_none() {
                    return AuthResult::Stale;
                } else {
                    return AuthResult::Rejected(RejectReason::NonceCountReplay);
                }
            }
            None => {
                if self.evicted_up_to_ms.is_some_and(|e| issued_ms <= e) {
                    return AuthResult::Stale;
                }
                if nc == 0 {
                    return AuthResult::Rejected(RejectReason::NonceCountReplay);
                }
                self.track(creds.nonce.clone(), issued_ms, nc, now);
            }
        }
        AuthResult::Ok {
            user: creds.username.clone(),
        }
    }

    /// Drops nonce-count entries of expired nonces (they would be `Stale` anyway). Also
    /// done on demand when the table is full, so calling this is optional.
    pub fn purge(&mut self, now: Instant) {
        let now_ms = self.ms_since_epoch(now);
        let ttl = self.ttl_ms();
        self.nonces
            .retain(|_, u| now_ms.saturating_sub(u.issued_ms) <= ttl);
    }

    fn track(&mut self, nonce: String, issued_ms: u64, nc: u32, now: Instant) {
        let max = self.config.max_tracked_nonces.max(1);
        if self.nonces.len() >= max {
            self.purge(now);
        }
        while self.nonces.len() >= max {
            let Some((oldest, ts)) = self
                .nonces
                .iter()
                .min_by_key(|(_, u)| u.issued_ms)
                .map(|(k, u)| (k.clone(), u.issued_ms))
            else {
                break;
            };
            self.nonces.remove(&oldest);
            self.evicted_up_to_ms = Some(self.evicted_up_to_ms.map_or(ts, |e| e.max(ts)));
        }
        self.nonces.insert(
            nonce,
            NonceUse {
                issued_ms,
                last_nc: nc,
            },
        );
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.config.nonce_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn ms_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn format_nonce(&self, ts: u64, rand: u64) -> String {
        let mac = hmac_sha256(&self.secret, &[&ts.to_be_bytes(), &rand.to_be_bytes()]);
        format!("{ts:016x}{rand:016x}{}", hex(&mac[..16]))
    }

    /// Returns the issue time of an authentic nonce issued no later than `now`.
    fn check_nonce(&self, nonce: &str, now: Instant) -> Option<u64> {
        if nonce.len() != NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let ts = u64::from_str_radix(nonce.get(0..16)?, 16).ok()?;
        let rand = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let expected = self.format_nonce(ts, rand);
        let authentic = bool::from(expected.as_bytes().ct_eq(nonce.as_bytes()));
        (authentic && ts <= self.ms_since_epoch(now)).then_some(ts)
    }
}

/// The `response` value a client with `password` must send (RFC 7616 §3.4.1, RFC 2617
/// §3.2.2.1; without qop, RFC 2069). Lowercase hex. Pure: no nonce validation.
pub fn compute_response(creds: &DigestCredentials, method: &str, password: &str) -> String {
    let h = |parts: &[&str]| hash_hex(creds.algorithm, parts);
    let mut ha1 = h(&[&creds.username, ":", &creds.realm, ":", password]);
    if creds.algorithm.is_session() {
        let cnonce = creds.cnonce.as_deref().unwrap_or("");
        ha1 = h(&[&ha1, ":", &creds.nonce, ":", cnonce]);
    }
    let ha2 = h(&[method, ":", &creds.uri]);
    match creds.qop {
        Some(Qop::Auth) => {
            let nc = format!("{:08x}", creds.nc.unwrap_or(0));
            let cnonce = creds.cnonce.as_deref().unwrap_or("");
            h(&[
                &ha1,
                ":",
                &creds.nonce,
                ":",
                &nc,
                ":",
                cnonce,
                ":auth:",
                &ha2,
            ])
        }
        None => h(&[&ha1, ":", &creds.nonce, ":", &ha2]),
    }
}

fn hash_hex(alg: Algorithm, parts: &[&str]) -> String {
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => {
            let mut d = Md5::new();
            for p in parts {
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        Algorithm::Sha256 | Algorithm::Sha256Sess => {
            let mut d = Sha256::new();
            for p in parts {
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
    }
}

/// HMAC-SHA-256 (RFC 2104) over the concatenation of `parts`; the key is 32 bytes, shorter
/// than the 64-byte block, so it is zero-padded without hashing.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
        *i ^= k;
        *o ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
