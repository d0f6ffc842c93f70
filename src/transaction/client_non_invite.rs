//! Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6).
//!
//! ```text
//!   new: send request ──► Trying ── Timer E: resend (T1, 2T1, … capped at T2; UDP only)
//!                          │  │ └── Timer F (64*T1) / transport error ──► Terminated
//!                      1xx │  │ 200-699: to TU
//!                          ▼  │
//!                     Proceeding ── 1xx: to TU; Timer E: resend every T2; Timer F
//!                          │  │
//!                  200-699 │  ▼
//!                          ▼ Completed ── responses absorbed
//!                             │ Timer K (T4 UDP, 0 TCP)
//!                             ▼
//!                          Terminated
//! ```
//!
//! Timer E doubles from T1 as §17.1.2.2 says (0.5, 1, 2, 4, 4, … s), unlike stacks that
//! wait a fixed T2; once a provisional response arrived it is reset to T2 each time.

use std::time::Instant;

use bytes::Bytes;

use super::timers::{deadline, Backoff};
use super::{Action, Actions, Reliability, TimerConfig};

/// Public view of the state, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; retransmissions are absorbed.
    Completed,
    /// Done.
    Terminated,
}

#[derive(Debug)]
enum State {
    Trying {
        request: Bytes,
        /// `None` over a reliable transport.
        timer_e: Option<Backoff>,
        timer_f: Instant,
    },
    Proceeding {
        request: Bytes,
        timer_e: Option<Backoff>,
        timer_f: Instant,
    },
    Completed {
        timer_k: Instant,
    },
    Terminated,
}

/// The non-INVITE client transaction. See the module docs.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: State,
    reliability: Reliability,
    config: TimerConfig,
}

impl ClientNonInvite {
    /// Starts the transaction; the returned actions transmit `request`.
    pub fn new(
        request: Bytes,
        reliability: Reliability,
        config: TimerConfig,
        now: Instant,
    ) -> (Self, Actions) {
        let timer_e = match reliability {
            Reliability::Unreliable => Some(Backoff::start(now, config.timer_e(), Some(config.t2))),
            Reliability::Reliable => None,
        };
        let state = State::Trying {
            request: request.clone(),
            timer_e,
            timer_f: deadline(now, config.timer_f()),
        };
        let machine = ClientNonInvite {
            state,
            reliability,
            config,
        };
        (machine, Actions::one(Action::Transmit(request)))
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        match self.state {
            State::Trying { .. } => ClientNonInviteState::Trying,
            State::Proceeding { .. } => ClientNonInviteState::Proceeding,
            State::Completed { .. } => ClientNonInviteState::Completed,
            State::Terminated => ClientNonInviteState::Terminated,
        }
    }

    /// A response matching this transaction arrived with `status`. Statuses outside
    /// 100..=699 are ignored.
    pub fn on_response(&mut self, status: u16, now: Instant) -> Actions {
        let mut actions = Actions::new();
        match (&mut self.state, status) {
            (State::Trying { .. } | State::Proceeding { .. }, 100..=199) => {
                let old = std::mem::replace(&mut self.state, State::Terminated);
                self.state = match old {
                    State::Trying {
                        request,
                        timer_e,
                        timer_f,
                    } => State::Proceeding {
                        request,
                        timer_e,
                        timer_f,
                    },
                    other => other,
                };
                actions.push(Action::PassToTu);
            }
            (State::Trying { .. } | State::Proceeding { .. }, 200..=699) => {
                actions.push(Action::PassToTu);
                let timer_k = self.config.timer_k(self.reliability);
                if timer_k.is_zero() {
                    self.terminate(&mut actions);
                } else {
                    self.state = State::Completed {
                        timer_k: deadline(now, timer_k),
                    };
                }
            }
            _ => {}
        }
        actions
    }

    /// The transport failed to send the request (RFC 3261 §17.1.4).
    pub fn on_transport_error(&mut self) -> Actions {
        let mut actions = Actions::new();
        if !self.is_terminated() {
            actions.push(Action::TransportError);
            self.terminate(&mut actions);
        }
        actions
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::new();
        let t2 = self.config.t2;
        match &mut self.state {
            State::Trying {
                request,
                timer_e,
                timer_f,
            } => {
                if now >= *timer_f {
                    actions.push(Action::Timeout);
                    self.terminate(&mut actions);
                } else if let Some(e) = timer_e.as_mut().filter(|e| e.is_due(now)) {
                    e.fire(now);
                    actions.push(Action::Transmit(request.clone()));
                }
            }
            State::Proceeding {
                request,
                timer_e,
                timer_f,
            } => {
                if now >= *timer_f {
                    actions.push(Action::Timeout);
                    self.terminate(&mut actions);
                } else if let Some(e) = timer_e.as_mut().filter(|e| e.is_due(now)) {
                    // §17.1.2.2: in Proceeding, Timer E is reset to T2 after each firing.
                    e.fire_with(now, t2);
                    actions.push(Action::Transmit(request.clone()));
                }
            }
            State::Completed { timer_k } if now >= *timer_k => self.terminate(&mut actions),
            State::Completed { .. } | State::Terminated => {}
        }
        actions
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Trying {
                timer_e, timer_f, ..
            }
            | State::Proceeding {
                timer_e, timer_f, ..
            } => Some(timer_e.map_or(*timer_f, |e| e.at().min(*timer_f))),
            State::Completed { timer_k } => Some(*timer_k),
            State::Terminated => None,
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

    const BYE: &[u8] = b"BYE sip:1001@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";

    fn start(reliability: Reliability, config: TimerConfig, t0: Instant) -> ClientNonInvite {
        let (m, actions) = ClientNonInvite::new(Bytes::from_static(BYE), reliability, config, t0);
        assert_eq!(actions.into_iter().collect::<Vec<_>>(), [transmit(BYE)]);
        m
    }

    #[test]
    fn timer_e_doubles_from_t1_capped_at_t2_then_timer_f() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, TimerConfig::default(), t0);
        let events = drive(&mut m, t0, t0 + ms(60_000));
        // Intervals 0.5, 1, 2, 4, 4, 4, … s.
        let mut expected: Vec<(u64, Action)> = [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(|at| (at, transmit(BYE)))
        .collect();
        expected.push((32_000, Action::Timeout));
        expected.push((32_000, Action::Terminated));
        assert_eq!(events, expected);
    }

    #[test]
    fn tcp_never_retransmits() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable, TimerConfig::default(), t0);
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(32_000, Action::Timeout), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, TimerConfig::default(), t0);
        assert_eq!(drive(&mut m, t0, t0 + ms(600)), [(500, transmit(BYE))]);
        let a = m.on_response(100, t0 + ms(700));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        assert_eq!(m.state(), ClientNonInviteState::Proceeding);
        let events = drive(&mut m, t0, t0 + ms(20_000));
        // The pending E (1.5 s) still fires, then every T2 = 4 s.
        let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
        assert_eq!(times, [1500, 5500, 9500, 13500, 17500]);
    }

    #[test]
    fn final_response_completes_then_timer_k() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, TimerConfig::default(), t0);
        let a = m.on_response(200, t0 + ms(200));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        assert_eq!(m.state(), ClientNonInviteState::Completed);
        // Retransmitted 200 absorbed.
        assert!(m.on_response(200, t0 + ms(300)).is_empty());
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(5200, Action::Terminated)]
        );
    }

    #[test]
    fn final_response_over_tcp_terminates_at_once() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable, TimerConfig::default(), t0);
        let a = m.on_response(481, t0 + ms(200));
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [Action::PassToTu, Action::Terminated]
        );
        assert!(m.is_terminated());
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, TimerConfig::default(), t0);
        assert_eq!(
            m.on_transport_error().into_iter().collect::<Vec<_>>(),
            [Action::TransportError, Action::Terminated]
        );
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn custom_timers_are_respected() {
        let t0 = Instant::now();
        let config = TimerConfig::new(
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(300),
        )
        .unwrap();
        let mut m = start(Reliability::Unreliable, config, t0);
        let events = drive(&mut m, t0, t0 + ms(1000));
        let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
        assert_eq!(times, [100, 300, 500, 700, 900]);
        let a = m.on_response(200, t0 + ms(1000));
        assert_eq!(a.len(), 1);
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(1300, Action::Terminated)]
        );
    }
}
