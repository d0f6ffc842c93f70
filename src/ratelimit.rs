//! Flood and brute-force protection, sans-IO (`now` passed in):
//!
//! - [`SourceLimiter`]: a token bucket per source IP for new requests (INVITE, REGISTER,
//!   OPTIONS, ...). Legitimate phones send a few per minute; a flood from one address is
//!   answered 503 or dropped before it costs a digest computation or a call actor.
//! - [`AuthBackoff`]: failed digest attempts per source and per user; after a threshold the
//!   key is blocked for 1 s, then 2 s, 4 s, … up to a maximum, so password guessing slows to
//!   a crawl. The block answers existing and unknown users alike.
//!
//! Both maps are bounded: idle entries are dropped when a map grows past its limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most tracked keys per map; beyond, idle entries are swept (and, if still full, new keys
/// share the fate of an unlimited table: allowed).
const MAX_KEYS: usize = 65_536;

/// A full map is swept at most this often. Full of live keys (a flood from many addresses),
/// it would otherwise be scanned whole for every new key: 65,536 entries per datagram.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// When a full map may next be swept.
#[derive(Debug, Default)]
struct Sweeps {
    next: Option<Instant>,
    done: u64,
}

impl Sweeps {
    /// Whether a sweep may run at `now`; if so, it is counted and the next one put off.
    fn due(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        self.next = Some(now + SWEEP_INTERVAL);
        self.done += 1;
        true
    }

    /// Whether `map` can take `key`: it is there already, or there is room, made if need be
    /// by dropping the entries `keep` rejects (when a sweep is due).
    fn room_for<K: Hash + Eq, V>(
        &mut self,
        map: &mut HashMap<K, V>,
        key: &K,
        now: Instant,
        keep: impl Fn(&V) -> bool,
    ) -> bool {
        if map.len() < MAX_KEYS || map.contains_key(key) {
            return true;
        }
        if self.due(now) {
            map.retain(|_, v| keep(v));
        }
        map.len() < MAX_KEYS
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Requests per second per source IP, with a burst of one second's worth.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, Bucket>,
    sweeps: Sweeps,
}

impl SourceLimiter {
    /// `per_second` = 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        SourceLimiter {
            rate: f64::from(per_second),
            buckets: HashMap::new(),
            sweeps: Sweeps::default(),
        }
    }

    /// Takes one token for `ip`; `false` when the source is over its rate.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let rate = self.rate;
        // A bucket idle for a second has refilled, as a new one would be: it can go.
        let busy = |b: &Bucket| now.saturating_duration_since(b.last).as_secs_f64() * rate < rate;
        if !self.sweeps.room_for(&mut self.buckets, &ip, now, busy) {
            return true;
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Option<Instant>,
    last: Instant,
}

/// Escalating back-off after failed authentication, per key (source IP, user name).
#[derive(Debug)]
pub struct AuthBackoff<K: Hash + Eq> {
    threshold: u32,
    max: Duration,
    keys: HashMap<K, Failures>,
    sweeps: Sweeps,
}

impl<K: Hash + Eq + Clone> AuthBackoff<K> {
    /// Blocking starts after `threshold` failures (0 disables); the block doubles from 1 s
    /// per further failure, up to `max`.
    pub fn new(threshold: u32, max: Duration) -> Self {
        AuthBackoff {
            threshold,
            max,
            keys: HashMap::new(),
            sweeps: Sweeps::default(),
        }
    }

    /// `true` while `key` is blocked.
    pub fn blocked(&self, key: &K, now: Instant) -> bool {
        self.keys
            .get(key)
            .and_then(|f| f.blocked_until)
            .is_some_and(|t| now < t)
    }

    /// A failed attempt for `key`.
    pub fn failed(&mut self, key: K, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let max = self.max;
        let recent = |f: &Failures| now.saturating_duration_since(f.last) < max;
        if !self.sweeps.room_for(&mut self.keys, &key, now, recent) {
            return;
        }
        let f = self.keys.entry(key).or_insert(Failures {
            count: 0,
            blocked_until: None,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= self.threshold {
            let exp = (f.count - self.threshold).min(20);
            let block = Duration::from_secs(1u64 << exp).min(self.max);
            f.blocked_until = Some(now + block);
        }
    }

    /// A successful attempt clears `key`.
    pub fn succeeded(&mut self, key: &K) {
        self.keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_full_source_map_is_swept_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut limiter = SourceLimiter::new(10);
        for n in 0..MAX_KEYS as u32 {
            assert!(limiter.allow(ip(n), t0));
        }
        assert_eq!(limiter.tracked(), MAX_KEYS);
        // New sources while every tracked one is live: allowed untracked, one sweep only.
        for n in 0..1_000u32 {
            assert!(limiter.allow(ip(MAX_KEYS as u32 + n), t0 + Duration::from_millis(500)));
        }
        assert_eq!(limiter.sweeps.done, 1);
        assert_eq!(limiter.tracked(), MAX_KEYS);
        // A second on, the idle entries go at the next new source, which is then tracked.
        let later = t0 + Duration::from_millis(1_600);
        assert!(limiter.allow(IpAddr::from([192, 0, 2, 1]), later));
        assert_eq!(limiter.sweeps.done, 2);
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn a_full_backoff_map_is_swept_at_most_once_a_second() {
        let t0 = Instant::now();
        let max = Duration::from_secs(60);
        let mut backoff: AuthBackoff<u32> = AuthBackoff::new(3, max);
        for n in 0..MAX_KEYS as u32 {
            backoff.failed(n, t0);
        }
        for n in 0..1_000u32 {
            backoff.failed(MAX_KEYS as u32 + n, t0 + Duration::from_secs(2));
        }
        assert_eq!(backoff.sweeps.done, 1);
        assert_eq!(backoff.keys.len(), MAX_KEYS);
        backoff.failed(u32::MAX, t0 + max + Duration::from_secs(1));
        assert_eq!(backoff.sweeps.done, 2);
        assert_eq!(backoff.keys.len(), 1);
    }

    #[test]
    fn bucket_allows_the_rate_then_refuses_then_refills() {
        let mut l = SourceLimiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(allowed, 10, "one second's burst");
        assert!(l.allow(other, t0), "another source is not affected");
        assert!(!l.allow(ip, t0 + Duration::from_millis(50)));
        assert!(
            l.allow(ip, t0 + Duration::from_millis(150)),
            "refilled at 10/s"
        );
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let mut l = SourceLimiter::new(0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| l.allow(ip, t0)));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn backoff_starts_at_the_threshold_and_doubles() {
        let mut b = AuthBackoff::new(3, Duration::from_secs(8));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.failed("ip", t0);
        }
        assert!(!b.blocked(&"ip", t0));
        b.failed("ip", t0);
        assert!(b.blocked(&"ip", t0));
        assert!(!b.blocked(&"ip", t0 + Duration::from_secs(1)), "1 s block");
        b.failed("ip", t0 + Duration::from_secs(1));
        assert!(
            b.blocked(&"ip", t0 + Duration::from_millis(2900)),
            "2 s block"
        );
        for i in 0..10 {
            b.failed("ip", t0 + Duration::from_secs(3 + i));
        }
        assert!(
            !b.blocked(&"ip", t0 + Duration::from_secs(12 + 8)),
            "capped at max"
        );
        b.succeeded(&"ip");
        assert!(!b.blocked(&"ip", t0 + Duration::from_secs(13)));
    }
}
