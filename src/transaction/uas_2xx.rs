//! The UAS core's 2xx retransmission: RFC 3261 §13.3.1.4 (with RFC 6026 §8.5: the INVITE
//! server transaction no longer does it).
//!
//! ```text
//!   new(2xx) ──► Waiting ── Timer (T1, 2T1, 4T1… capped at T2; UDP only): resend 2xx
//!                  │   └─── ACK (ack_received) ──► Done
//!                  │ 64*T1 without ACK: NoAck (TU confirms the dialog, then sends BYE)
//!                  ▼
//!                 Done
//! ```
//!
//! Started right after the first 2xx was sent (through the server transaction); the first
//! retransmission is T1 later. Over a reliable transport nothing is retransmitted, but the
//! 64*T1 wait for the ACK still applies.

use std::time::Instant;

use bytes::Bytes;

use super::timers::{deadline, Backoff};
use super::{Action, Actions, Reliability, TimerConfig};

#[derive(Debug)]
enum State {
    Waiting {
        response: Bytes,
        /// `None` over a reliable transport.
        retransmit: Option<Backoff>,
        give_up: Instant,
    },
    Done,
}

/// Retransmits one 2xx to an INVITE until its ACK arrives. See the module docs.
#[derive(Debug)]
pub struct Uas2xx {
    state: State,
}

impl Uas2xx {
    /// Starts retransmitting `response` (the 2xx already sent once) at `now`.
    pub fn new(
        response: Bytes,
        reliability: Reliability,
        config: TimerConfig,
        now: Instant,
    ) -> Self {
        let retransmit = match reliability {
            Reliability::Unreliable => Some(Backoff::start(now, config.t1, Some(config.t2))),
            Reliability::Reliable => None,
        };
        Uas2xx {
            state: State::Waiting {
                response,
                retransmit,
                give_up: deadline(now, config.t64()),
            },
        }
    }

    /// The ACK for the 2xx arrived: stop. Returns [`Action::Terminated`] the first time.
    pub fn ack_received(&mut self) -> Actions {
        match self.state {
            State::Waiting { .. } => {
                self.state = State::Done;
                Actions::one(Action::Terminated)
            }
            State::Done => Actions::new(),
        }
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::new();
        if let State::Waiting {
            response,
            retransmit,
            give_up,
        } = &mut self.state
        {
            if now >= *give_up {
                self.state = State::Done;
                actions.push(Action::NoAck);
                actions.push(Action::Terminated);
            } else if let Some(r) = retransmit.as_mut().filter(|r| r.is_due(now)) {
                r.fire(now);
                actions.push(Action::Transmit(response.clone()));
            }
        }
        actions
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting {
                retransmit,
                give_up,
                ..
            } => Some(retransmit.map_or(*give_up, |r| r.at().min(*give_up))),
            State::Done => None,
        }
    }

    /// `true` once the ACK arrived or the wait gave up.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::test_util::{drive, ms, transmit};
    use std::time::Duration;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKu1\r\nCSeq: 1 INVITE\r\nContact: <sip:b2bua@10.0.0.1>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn retransmits_doubling_to_t2_then_no_ack() {
        let t0 = Instant::now();
        let mut m = Uas2xx::new(
            Bytes::from_static(OK),
            Reliability::Unreliable,
            TimerConfig::default(),
            t0,
        );
        let events = drive(&mut m, t0, t0 + ms(60_000));
        let mut expected: Vec<(u64, Action)> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|at| (at, transmit(OK)))
        .collect();
        expected.push((32_000, Action::NoAck));
        expected.push((32_000, Action::Terminated));
        assert_eq!(events, expected);
        assert!(m.is_terminated());
    }

    #[test]
    fn ack_stops_retransmission() {
        let t0 = Instant::now();
        let mut m = Uas2xx::new(
            Bytes::from_static(OK),
            Reliability::Unreliable,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(
            drive(&mut m, t0, t0 + ms(2000)),
            [(500, transmit(OK)), (1500, transmit(OK))]
        );
        assert_eq!(
            m.ack_received().into_iter().collect::<Vec<_>>(),
            [Action::Terminated]
        );
        assert!(m.ack_received().is_empty());
        assert_eq!(m.next_deadline(), None);
        assert!(drive(&mut m, t0, t0 + ms(60_000)).is_empty());
    }

    #[test]
    fn tcp_only_waits_for_the_ack() {
        let t0 = Instant::now();
        let mut m = Uas2xx::new(
            Bytes::from_static(OK),
            Reliability::Reliable,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(32_000, Action::NoAck), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn custom_timers_are_respected() {
        let t0 = Instant::now();
        let config = TimerConfig::new(
            Duration::from_millis(10),
            Duration::from_millis(30),
            Duration::from_millis(50),
        )
        .unwrap();
        let mut m = Uas2xx::new(Bytes::from_static(OK), Reliability::Unreliable, config, t0);
        let times: Vec<u64> = drive(&mut m, t0, t0 + ms(1000))
            .iter()
            .map(|(at, _)| *at)
            .collect();
        // 10, +20, +30 (capped), … until 64*T1 = 640 ms.
        let mut expected = vec![10, 30];
        expected.extend((1..=20).map(|i| 30 + 30 * i).take_while(|&t| t < 640));
        expected.extend([640, 640]);
        assert_eq!(times, expected);
    }
}
