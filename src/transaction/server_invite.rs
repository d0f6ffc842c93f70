//! INVITE server transaction: RFC 3261 §17.2.1 (Figure 7) as corrected by RFC 6026 §7.1
//! and §8 (the Accepted state, Timer L).
//!
//! ```text
//!   new: send 100 ──► Proceeding ── INVITE: resend last 1xx; 1xx from TU: send
//!                       │   │   └── transport error ──► Terminated
//!      300-699 from TU: │   │ 2xx from TU: send
//!      send             ▼   └─────────────────────────┐
//!                   Completed ── INVITE: resend final │
//!                    │  │  └─ Timer G: resend final   ▼
//!                    │  │     (T1, 2T1… ≤T2; UDP)   Accepted ── INVITE: absorb
//!                ACK │  └ Timer H (64*T1): Timeout    │  ACK: to TU; 2xx from TU: send
//!                    ▼                  │             │ Timer L (64*T1)
//!                 Confirmed ── ACK: absorb            │
//!                    │ Timer I (T4 UDP, 0 TCP)        │
//!                    ▼                  ▼             ▼
//!                 Terminated ◄──────────┴─────────────┘
//! ```
//!
//! The caller passes the 100 Trying it built when it creates the transaction (§17.2.1: we
//! always send it, a B2BUA rarely answers within 200 ms). Retransmitting the 2xx until the
//! ACK arrives is the UAS core's job ([`super::Uas2xx`]), not this machine's: it only sends
//! the 2xx the TU hands it, first and re-sent alike (RFC 6026 §8.5).

use std::time::Instant;

use bytes::Bytes;

use super::timers::{deadline, Backoff};
use super::{Action, Actions, Reliability, TimerConfig, TransactionError};

/// Public view of the state, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// No final response sent yet.
    Proceeding,
    /// A 300-699 was sent; waiting for the ACK.
    Completed,
    /// The ACK arrived; absorbing its retransmissions.
    Confirmed,
    /// A 2xx was sent (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug)]
enum State {
    Proceeding {
        last_provisional: Bytes,
    },
    Completed {
        response: Bytes,
        /// `None` over a reliable transport.
        timer_g: Option<Backoff>,
        timer_h: Instant,
    },
    Confirmed {
        timer_i: Instant,
    },
    Accepted {
        timer_l: Instant,
    },
    Terminated,
}

/// The INVITE server transaction. See the module docs.
#[derive(Debug)]
pub struct ServerInvite {
    state: State,
    reliability: Reliability,
    config: TimerConfig,
}

impl ServerInvite {
    /// Creates the transaction for a new INVITE (which the caller passes to the TU itself);
    /// the returned actions transmit `trying` (the 100 Trying the caller built).
    pub fn new(trying: Bytes, reliability: Reliability, config: TimerConfig) -> (Self, Actions) {
        let machine = ServerInvite {
            state: State::Proceeding {
                last_provisional: trying.clone(),
            },
            reliability,
            config,
        };
        (machine, Actions::one(Action::Transmit(trying)))
    }

    /// See [`Transaction::shrink_to_fit`](super::Transaction::shrink_to_fit).
    pub fn shrink_to_fit(&mut self) {
        match &mut self.state {
            State::Proceeding {
                last_provisional: kept,
            }
            | State::Completed { response: kept, .. } => *kept = Bytes::copy_from_slice(kept),
            State::Confirmed { .. } | State::Accepted { .. } | State::Terminated => {}
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        match self.state {
            State::Proceeding { .. } => ServerInviteState::Proceeding,
            State::Completed { .. } => ServerInviteState::Completed,
            State::Confirmed { .. } => ServerInviteState::Confirmed,
            State::Accepted { .. } => ServerInviteState::Accepted,
            State::Terminated => ServerInviteState::Terminated,
        }
    }

    /// A retransmission of the INVITE arrived. Never passed to the TU.
    pub fn on_request(&mut self) -> Actions {
        match &self.state {
            State::Proceeding { last_provisional } => {
                Actions::one(Action::Transmit(last_provisional.clone()))
            }
            State::Completed { response, .. } => Actions::one(Action::Transmit(response.clone())),
            // RFC 6026 §7.1: absorbed in Accepted, so the TU does not see a new INVITE.
            State::Confirmed { .. } | State::Accepted { .. } | State::Terminated => Actions::new(),
        }
    }

    /// An ACK matching this transaction arrived (same branch: the ACK of a non-2xx, or, in
    /// Accepted, an ACK for the 2xx that reused the INVITE's branch as RFC 2543 peers do;
    /// the caller routes a 2xx ACK with a new branch to the dialog directly).
    pub fn on_ack(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::new();
        match &self.state {
            State::Completed { .. } => {
                let timer_i = self.config.timer_i(self.reliability);
                if timer_i.is_zero() {
                    self.terminate(&mut actions);
                } else {
                    self.state = State::Confirmed {
                        timer_i: deadline(now, timer_i),
                    };
                }
            }
            // RFC 6026 §8.6: the ACK for a 2xx goes to the TU.
            State::Accepted { .. } => actions.push(Action::PassToTu),
            State::Proceeding { .. } | State::Confirmed { .. } | State::Terminated => {}
        }
        actions
    }

    /// The TU responds with `status`; `response` is the wire form the caller built.
    /// 1xx are allowed in Proceeding, one final response (or further 2xx after a 2xx).
    pub fn respond(
        &mut self,
        status: u16,
        response: Bytes,
        now: Instant,
    ) -> Result<Actions, TransactionError> {
        if !(100..=699).contains(&status) {
            return Err(TransactionError::InvalidStatus(status));
        }
        let mut actions = Actions::new();
        match (&mut self.state, status) {
            (State::Proceeding { last_provisional }, 100..=199) => {
                *last_provisional = response.clone();
            }
            (State::Proceeding { .. }, 200..=299) => {
                self.state = State::Accepted {
                    timer_l: deadline(now, self.config.timer_l()),
                };
            }
            (State::Proceeding { .. }, _) => {
                let timer_g = match self.reliability {
                    Reliability::Unreliable => Some(Backoff::start(
                        now,
                        self.config.timer_g(),
                        Some(self.config.t2),
                    )),
                    Reliability::Reliable => None,
                };
                self.state = State::Completed {
                    response: response.clone(),
                    timer_g,
                    timer_h: deadline(now, self.config.timer_h()),
                };
            }
            // RFC 6026 §8.5: the TU's 2xx retransmissions pass through in Accepted.
            (State::Accepted { .. }, 200..=299) => {}
            (State::Terminated, _) => return Err(TransactionError::Terminated),
            (State::Completed { .. } | State::Confirmed { .. } | State::Accepted { .. }, _) => {
                return Err(TransactionError::FinalResponseSent)
            }
        }
        actions.push(Action::Transmit(response));
        Ok(actions)
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4). In Accepted the TU is
    /// told but the transaction stays, still absorbing INVITE retransmissions until Timer L.
    pub fn on_transport_error(&mut self) -> Actions {
        let mut actions = Actions::new();
        match self.state {
            State::Terminated => {}
            State::Accepted { .. } => actions.push(Action::TransportError),
            State::Proceeding { .. } | State::Completed { .. } | State::Confirmed { .. } => {
                actions.push(Action::TransportError);
                self.terminate(&mut actions);
            }
        }
        actions
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::new();
        match &mut self.state {
            State::Completed {
                response,
                timer_g,
                timer_h,
            } => {
                if now >= *timer_h {
                    // No ACK: the TU learns the peer is gone (RFC 3261 §17.2.1).
                    actions.push(Action::Timeout);
                    self.terminate(&mut actions);
                } else if let Some(g) = timer_g.as_mut().filter(|g| g.is_due(now)) {
                    g.fire(now);
                    actions.push(Action::Transmit(response.clone()));
                }
            }
            State::Confirmed { timer_i: at } | State::Accepted { timer_l: at } if now >= *at => {
                self.terminate(&mut actions);
            }
            State::Proceeding { .. }
            | State::Confirmed { .. }
            | State::Accepted { .. }
            | State::Terminated => {}
        }
        actions
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Proceeding { .. } | State::Terminated => None,
            State::Completed {
                timer_g, timer_h, ..
            } => Some(timer_g.map_or(*timer_h, |g| g.at().min(*timer_h))),
            State::Confirmed { timer_i } => Some(*timer_i),
            State::Accepted { timer_l } => Some(*timer_l),
        }
    }

    /// `true` once in Terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    fn terminate(&mut self, actions: &mut Actions) {
        self.state = State::Terminated;
        actions.push(Action::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::test_util::{drive, ms, transmit};
    use std::time::Duration;

    const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsi1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    const RINGING: &[u8] = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsi1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    const BUSY: &[u8] = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsi1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsi1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn start(reliability: Reliability) -> ServerInvite {
        let (m, actions) = ServerInvite::new(
            Bytes::from_static(TRYING),
            reliability,
            TimerConfig::default(),
        );
        assert_eq!(actions.into_iter().collect::<Vec<_>>(), [transmit(TRYING)]);
        m
    }

    fn respond(
        m: &mut ServerInvite,
        status: u16,
        bytes: &'static [u8],
        now: Instant,
    ) -> Vec<Action> {
        m.respond(status, Bytes::from_static(bytes), now)
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn request_retransmission_resends_last_provisional() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable);
        assert_eq!(
            m.on_request().into_iter().collect::<Vec<_>>(),
            [transmit(TRYING)]
        );
        assert_eq!(respond(&mut m, 180, RINGING, t0), [transmit(RINGING)]);
        assert_eq!(
            m.on_request().into_iter().collect::<Vec<_>>(),
            [transmit(RINGING)]
        );
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn non_2xx_final_retransmitted_with_timer_g_until_ack() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable);
        assert_eq!(respond(&mut m, 486, BUSY, t0), [transmit(BUSY)]);
        assert_eq!(m.state(), ServerInviteState::Completed);
        let events = drive(&mut m, t0, t0 + ms(12_000));
        let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
        assert_eq!(times, [500, 1500, 3500, 7500, 11500]);
        assert!(events.iter().all(|(_, a)| *a == transmit(BUSY)));
        // A retransmitted INVITE gets the final response again.
        assert_eq!(
            m.on_request().into_iter().collect::<Vec<_>>(),
            [transmit(BUSY)]
        );
        // The ACK stops Timer G and is absorbed (nothing for the TU).
        assert!(m.on_ack(t0 + ms(12_000)).is_empty());
        assert_eq!(m.state(), ServerInviteState::Confirmed);
        assert!(m.on_ack(t0 + ms(12_100)).is_empty());
        assert!(m.on_request().is_empty());
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(17_000, Action::Terminated)]
        );
    }

    #[test]
    fn timer_h_times_out_without_ack() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable);
        respond(&mut m, 486, BUSY, t0);
        let events = drive(&mut m, t0, t0 + ms(60_000));
        let mut expected: Vec<(u64, Action)> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|at| (at, transmit(BUSY)))
        .collect();
        expected.push((32_000, Action::Timeout));
        expected.push((32_000, Action::Terminated));
        assert_eq!(events, expected);
    }

    #[test]
    fn tcp_sends_no_retransmissions_and_terminates_on_ack() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable);
        respond(&mut m, 486, BUSY, t0);
        assert_eq!(m.next_deadline(), Some(t0 + ms(32_000)));
        assert!(drive(&mut m, t0, t0 + ms(10_000)).is_empty());
        assert_eq!(
            m.on_ack(t0 + ms(10_000)).into_iter().collect::<Vec<_>>(),
            [Action::Terminated]
        );

        let mut m = start(Reliability::Reliable);
        respond(&mut m, 486, BUSY, t0);
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(32_000, Action::Timeout), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn two_xx_enters_accepted() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable);
        respond(&mut m, 180, RINGING, t0);
        assert_eq!(respond(&mut m, 200, OK, t0 + ms(1000)), [transmit(OK)]);
        assert_eq!(m.state(), ServerInviteState::Accepted);
        // The transaction does not retransmit the 2xx by itself.
        assert_eq!(m.next_deadline(), Some(t0 + ms(33_000)));
        // Retransmitted INVITE absorbed; TU not told.
        assert!(m.on_request().is_empty());
        // The UAS core's retransmission passes through.
        assert_eq!(respond(&mut m, 200, OK, t0 + ms(1500)), [transmit(OK)]);
        assert_eq!(
            m.respond(486, Bytes::from_static(BUSY), t0 + ms(1600)),
            Err(TransactionError::FinalResponseSent)
        );
        assert_eq!(
            m.on_ack(t0 + ms(2000)).into_iter().collect::<Vec<_>>(),
            [Action::PassToTu]
        );
        // Transport error in Accepted: TU told, transaction stays until Timer L.
        assert_eq!(
            m.on_transport_error().into_iter().collect::<Vec<_>>(),
            [Action::TransportError]
        );
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(33_000, Action::Terminated)]
        );
        assert_eq!(
            m.respond(200, Bytes::from_static(OK), t0 + ms(60_000)),
            Err(TransactionError::Terminated)
        );
    }

    #[test]
    fn rejects_bad_tu_calls() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable);
        assert_eq!(
            m.respond(99, Bytes::new(), t0),
            Err(TransactionError::InvalidStatus(99))
        );
        respond(&mut m, 486, BUSY, t0);
        assert_eq!(
            m.respond(180, Bytes::from_static(RINGING), t0),
            Err(TransactionError::FinalResponseSent)
        );
        assert_eq!(
            m.on_transport_error().into_iter().collect::<Vec<_>>(),
            [Action::TransportError, Action::Terminated]
        );
    }

    #[test]
    fn custom_timers_are_respected() {
        let t0 = Instant::now();
        let config = TimerConfig::new(
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(700),
        )
        .unwrap();
        let (mut m, _) =
            ServerInvite::new(Bytes::from_static(TRYING), Reliability::Unreliable, config);
        assert_eq!(
            m.respond(486, Bytes::from_static(BUSY), t0).unwrap().len(),
            1
        );
        let events = drive(&mut m, t0, t0 + ms(1000));
        let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
        assert_eq!(times, [100, 300, 500, 700, 900]);
        assert!(m.on_ack(t0 + ms(1000)).is_empty());
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(1700, Action::Terminated)]
        );
    }
}
