//! The transaction layer: the four RFC 3261 §17 state machines with the RFC 6026
//! corrections, the UAS core's 2xx retransmission (RFC 3261 §13.3.1.4), and a table that
//! keys them and merges their timers into one deadline.
//!
//! # Contract
//!
//! Sans-IO and codec-free. A machine never reads a clock, a socket or a SIP message: the
//! caller passes `now: Instant`, response status codes, a [`Reliability`] flag and the wire
//! bytes it built ([`bytes::Bytes`], kept for retransmission without copying). Each call
//! returns [`Actions`] (no heap allocation) for the caller to execute in order:
//! [`Action::Transmit`] to the peer, [`Action::PassToTu`] (deliver the message just handed
//! in), [`Action::BuildAck`], [`Action::Timeout`] (Timer B/F/H: treat as 408),
//! [`Action::TransportError`], [`Action::NoAck`] and, exactly once, [`Action::Terminated`].
//! Timers: `next_deadline()` gives the earliest one; `handle_timeout(now)` fires every timer
//! due at or before `now` (a late poll coalesces missed retransmissions into one).
//! All timer values derive from [`TimerConfig`] (T1, T2, T4).
//!
//! Matching (RFC 3261 §17.1.3, §17.2.3) is the caller's: it builds the key (top Via branch,
//! sent-by, method; see [`key_method_for_request`] and [`key_method_for_cancel`]) and
//! feeds the machine it finds in a [`TransactionTable`].
//!
//! # The machines
//!
//! ```text
//! ClientInvite (§17.1.1, RFC 6026 §7.2)      ClientNonInvite (§17.1.2)
//!   Calling ─1xx─► Proceeding                  Trying ─1xx─► Proceeding
//!    │ A: resend  │  │ 2xx ─► Accepted (M)      │ E: resend   │ E: resend every T2
//!    │ B: Timeout │  │ 3xx-6xx ─► Completed (D) │ F: Timeout  │ F: Timeout
//!    └─2xx/3xx-6xx┘     BuildAck; ACK resent   └─200-699─────┴─► Completed (K)
//!   all ─► Terminated                            all ─► Terminated
//!
//! ServerInvite (§17.2.1, RFC 6026 §7.1)      ServerNonInvite (§17.2.2)
//!   Proceeding (100 sent; INVITE: resend 1xx)  Trying (request: absorb)
//!    │ 2xx ─► Accepted (L; INVITE absorbed,     │ 1xx ─► Proceeding (request: resend 1xx)
//!    │        ACK to TU)                        └ 200-699 ─► Completed (J; resend final)
//!    └ 3xx-6xx ─► Completed (G: resend, H: Timeout)          ─► Terminated
//!                  └ ACK ─► Confirmed (I) ─► Terminated
//!
//! Uas2xx (§13.3.1.4): Waiting (resend 2xx T1, 2T1… ≤ T2) ─ACK─► Done; 64*T1 ─► NoAck
//! ```
//!
//! Each machine's file has its full diagram. Over a reliable transport nothing is
//! retransmitted and Timers D, I, J, K are zero (the machine terminates in the same call).

mod action;
mod client_invite;
mod client_non_invite;
mod lingering;
mod server_invite;
mod server_non_invite;
mod table;
mod timers;
mod uas_2xx;

pub use action::{Action, Actions, TransactionError};
pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use lingering::{Lingering, MAX_LINGERING};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use table::{
    key_method_for_cancel, key_method_for_request, Entry, TableError, Transaction, TransactionTable,
};
pub use timers::{Reliability, TimerConfig, TimerConfigError};
pub use uas_2xx::Uas2xx;

#[cfg(test)]
mod test_util {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::{
        Action, Actions, ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, Uas2xx,
    };

    pub(super) trait Timed {
        fn next_deadline(&self) -> Option<Instant>;
        fn handle_timeout(&mut self, now: Instant) -> Actions;
    }

    macro_rules! timed {
        ($($ty:ty),*) => {$(
            impl Timed for $ty {
                fn next_deadline(&self) -> Option<Instant> {
                    <$ty>::next_deadline(self)
                }
                fn handle_timeout(&mut self, now: Instant) -> Actions {
                    <$ty>::handle_timeout(self, now)
                }
            }
        )*};
    }
    timed!(
        ClientInvite,
        ClientNonInvite,
        ServerInvite,
        ServerNonInvite,
        Uas2xx
    );

    pub(super) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(super) fn transmit(bytes: &'static [u8]) -> Action {
        Action::Transmit(Bytes::from_static(bytes))
    }

    /// Runs a fake clock: polls exactly at each deadline up to `until`, and records every
    /// action with its time in milliseconds since `origin`.
    pub(super) fn drive<M: Timed>(
        m: &mut M,
        origin: Instant,
        until: Instant,
    ) -> Vec<(u64, Action)> {
        let mut events = Vec::new();
        let mut polls = 0;
        while let Some(at) = m.next_deadline().filter(|at| *at <= until) {
            polls += 1;
            assert!(polls < 10_000, "machine never settles");
            let since = u64::try_from(at.duration_since(origin).as_millis()).unwrap();
            for action in m.handle_timeout(at) {
                events.push((since, action));
            }
        }
        events
    }
}
