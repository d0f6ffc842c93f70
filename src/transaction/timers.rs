//! Timer values of RFC 3261 §17 (Table 4 of Appendix A) and the retransmission back-off
//! shared by the state machines.
//!
//! Every timer is derived from three base values, T1 (RTT estimate), T2 (maximum
//! retransmit interval for non-INVITE requests and INVITE responses) and T4 (maximum time a
//! message stays in the network). Over a reliable transport the "absorb retransmissions"
//! timers (D, I, J, K) are zero, per RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1 and §17.2.2.

use std::time::{Duration, Instant};

/// Whether the transport under a transaction retransmits by itself (RFC 3261 §17: TCP, TLS,
/// SCTP are reliable; UDP is not). Decides whether the machines retransmit at all and whether
/// the linger timers are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// UDP: the transaction retransmits and lingers to absorb retransmissions.
    Unreliable,
    /// TCP (or TLS): no retransmission; linger timers are zero.
    Reliable,
}

impl Reliability {
    /// `true` for [`Reliability::Reliable`].
    pub fn is_reliable(self) -> bool {
        matches!(self, Reliability::Reliable)
    }
}

/// A rejected [`TimerConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerConfigError {
    /// T1, T2 or T4 is zero.
    #[error("timer {name} must be greater than zero")]
    Zero {
        /// `"t1"`, `"t2"` or `"t4"`.
        name: &'static str,
    },
    /// T2 is smaller than T1, so the back-off cap would shrink the first interval.
    #[error("timer t2 must not be smaller than t1")]
    T2BelowT1,
    /// A value so large that 64*T1 (or T2, T4) exceeds [`TimerConfig::MAX`].
    #[error("timer {name} is too large (64*T1, T2 and T4 must stay within one hour)")]
    TooLarge {
        /// `"t1"`, `"t2"` or `"t4"`.
        name: &'static str,
    },
}

/// The base timer values. `Default` is RFC 3261's: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate: first retransmit interval of every back-off.
    pub t1: Duration,
    /// Cap of the non-INVITE request and INVITE response back-off.
    pub t2: Duration,
    /// Maximum lifetime of a message in the network (Timers I and K).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// Upper bound for 64*T1, T2 and T4 accepted by [`TimerConfig::new`]; keeps every
    /// `Instant + Duration` far from overflow.
    pub const MAX: Duration = Duration::from_secs(3600);

    /// Validated constructor: all values non-zero, T1 <= T2, 64*T1, T2 and T4 within
    /// [`TimerConfig::MAX`].
    pub fn new(t1: Duration, t2: Duration, t4: Duration) -> Result<Self, TimerConfigError> {
        let config = TimerConfig { t1, t2, t4 };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants of [`TimerConfig::new`] on a struct built from its public fields.
    pub fn validate(&self) -> Result<(), TimerConfigError> {
        for (name, value) in [("t1", self.t1), ("t2", self.t2), ("t4", self.t4)] {
            if value.is_zero() {
                return Err(TimerConfigError::Zero { name });
            }
        }
        if self.t2 < self.t1 {
            return Err(TimerConfigError::T2BelowT1);
        }
        for (name, value) in [("t1", self.t64()), ("t2", self.t2), ("t4", self.t4)] {
            if value > Self::MAX {
                return Err(TimerConfigError::TooLarge { name });
            }
        }
        Ok(())
    }

    /// 64*T1: the transaction timeout (Timers B, F, H, L, M; J over UDP).
    pub fn t64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer A's first interval (INVITE request retransmit, doubles without cap).
    pub fn timer_a(&self) -> Duration {
        self.t1
    }

    /// Timer B: INVITE client transaction timeout in Calling.
    pub fn timer_b(&self) -> Duration {
        self.t64()
    }

    /// Timer D: wait for response retransmissions in Completed (client INVITE). RFC 3261
    /// §17.1.1.2 asks for "at least 32 s" over UDP, which is 64*T1 for the default T1 of
    /// 500 ms: the time a server retransmits its final response (Timer H = 64*T1). We use
    /// 64*T1, so the default is exactly 32 s and a deployment (or test) that configures a
    /// different T1 for its network gets the matching window. Zero over reliable transports.
    pub fn timer_d(&self, reliability: Reliability) -> Duration {
        match reliability {
            Reliability::Unreliable => self.t64(),
            Reliability::Reliable => Duration::ZERO,
        }
    }

    /// Timer E's first interval (non-INVITE request retransmit, doubles up to T2).
    pub fn timer_e(&self) -> Duration {
        self.t1
    }

    /// Timer F: non-INVITE client transaction timeout.
    pub fn timer_f(&self) -> Duration {
        self.t64()
    }

    /// Timer G's first interval (INVITE final response retransmit, doubles up to T2).
    pub fn timer_g(&self) -> Duration {
        self.t1
    }

    /// Timer H: wait for the ACK of a non-2xx final response.
    pub fn timer_h(&self) -> Duration {
        self.t64()
    }

    /// Timer I: absorb ACK retransmissions in Confirmed. T4 over UDP, zero over reliable.
    pub fn timer_i(&self, reliability: Reliability) -> Duration {
        match reliability {
            Reliability::Unreliable => self.t4,
            Reliability::Reliable => Duration::ZERO,
        }
    }

    /// Timer J: absorb non-INVITE request retransmissions. 64*T1 over UDP, zero over reliable.
    pub fn timer_j(&self, reliability: Reliability) -> Duration {
        match reliability {
            Reliability::Unreliable => self.t64(),
            Reliability::Reliable => Duration::ZERO,
        }
    }

    /// Timer K: absorb non-INVITE response retransmissions. T4 over UDP, zero over reliable.
    pub fn timer_k(&self, reliability: Reliability) -> Duration {
        match reliability {
            Reliability::Unreliable => self.t4,
            Reliability::Reliable => Duration::ZERO,
        }
    }

    /// Timer L (RFC 6026): server INVITE lingers in Accepted to absorb INVITE retransmissions.
    pub fn timer_l(&self) -> Duration {
        self.t64()
    }

    /// Timer M (RFC 6026): client INVITE lingers in Accepted to pass 2xx retransmissions on.
    pub fn timer_m(&self) -> Duration {
        self.t64()
    }
}

/// `now + d`, saturating to `now + TimerConfig::MAX`-ish far future instead of panicking on
/// overflow (durations come from validated config, so the fallback is only defensive).
pub(super) fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(TimerConfig::MAX))
        .unwrap_or(now)
}

/// A retransmission timer with exponential back-off: first fires `initial` after start, then
/// each interval doubles, capped at `cap` when given (Timers A, E, G and the UAS 2xx
/// retransmission of RFC 3261 §13.3.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff {
    at: Instant,
    interval: Duration,
    cap: Option<Duration>,
}

impl Backoff {
    pub(super) fn start(now: Instant, initial: Duration, cap: Option<Duration>) -> Self {
        Backoff {
            at: deadline(now, initial),
            interval: initial,
            cap,
        }
    }

    pub(super) fn at(&self) -> Instant {
        self.at
    }

    pub(super) fn is_due(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// Re-arms after firing with the doubled (capped) interval.
    pub(super) fn fire(&mut self, now: Instant) {
        let doubled = self.interval.saturating_mul(2);
        let next = match self.cap {
            Some(cap) => doubled.min(cap),
            None => doubled,
        };
        self.fire_with(now, next);
    }

    /// Re-arms after firing with a fixed interval (Timer E in Proceeding: T2).
    pub(super) fn fire_with(&mut self, now: Instant, interval: Duration) {
        self.interval = interval;
        // Schedule from the nominal fire time so the wire schedule stays exact; if the caller
        // polled late, coalesce the missed firings into the one retransmission just made.
        let next = deadline(self.at, interval);
        self.at = if next > now {
            next
        } else {
            deadline(now, interval)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_derived_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(Reliability::Unreliable), Duration::from_secs(32));
        assert_eq!(c.timer_d(Reliability::Reliable), Duration::ZERO);
        assert_eq!(c.timer_i(Reliability::Unreliable), Duration::from_secs(5));
        assert_eq!(c.timer_j(Reliability::Reliable), Duration::ZERO);
        assert_eq!(c.timer_k(Reliability::Unreliable), Duration::from_secs(5));
        let slow = TimerConfig::new(
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            slow.timer_d(Reliability::Unreliable),
            Duration::from_secs(64)
        );
    }

    #[test]
    fn validation_rejects_bad_values() {
        let ms = Duration::from_millis;
        assert_eq!(
            TimerConfig::new(ms(0), ms(4000), ms(5000)),
            Err(TimerConfigError::Zero { name: "t1" })
        );
        assert_eq!(
            TimerConfig::new(ms(500), ms(400), ms(5000)),
            Err(TimerConfigError::T2BelowT1)
        );
        assert_eq!(
            TimerConfig::new(Duration::from_secs(100), Duration::from_secs(100), ms(5000)),
            Err(TimerConfigError::TooLarge { name: "t1" })
        );
        assert!(TimerConfig::default().validate().is_ok());
    }

    #[test]
    fn backoff_doubles_caps_and_coalesces_late_polls() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Backoff::start(t0, ms(500), Some(ms(4000)));
        let mut fired = Vec::new();
        while fired.len() < 6 {
            let at = b.at();
            fired.push(at - t0);
            b.fire(at);
        }
        assert_eq!(
            fired,
            [ms(500), ms(1500), ms(3500), ms(7500), ms(11500), ms(15500)]
        );
        // Polled 10 s late: next firing is one interval after the poll, not in the past.
        let late = b.at() + ms(10_000);
        b.fire(late);
        assert_eq!(b.at(), late + ms(4000));
    }
}
