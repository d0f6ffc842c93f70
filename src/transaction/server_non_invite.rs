//! Non-INVITE server transaction: RFC 3261 §17.2.2 (Figure 8).
//!
//! ```text
//!   new (request already given to the TU) ──► Trying ── request: absorb
//!                         1xx from TU: send │  │ 200-699 from TU: send
//!                                           ▼  │
//!        request: resend last 1xx ── Proceeding│── transport error ──► Terminated
//!                                           │  │
//!                  200-699 from TU: send    ▼  ▼
//!        request: resend final ──────── Completed
//!                                           │ Timer J (64*T1 UDP, 0 TCP)
//!                                           ▼
//!                                       Terminated
//! ```
//!
//! A non-INVITE server transaction sends no 100 of its own (RFC 4320 discourages it); the
//! retransmissions that arrive before the TU answers are absorbed so the TU sees the
//! request once.

use std::time::Instant;

use bytes::Bytes;

use super::timers::deadline;
use super::{Action, Actions, Reliability, TimerConfig, TransactionError};

/// Public view of the state, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// No response sent yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// The final response was sent.
    Completed,
    /// Done.
    Terminated,
}

#[derive(Debug)]
enum State {
    Trying,
    Proceeding { last_provisional: Bytes },
    Completed { response: Bytes, timer_j: Instant },
    Terminated,
}

/// The non-INVITE server transaction. See the module docs.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: State,
    reliability: Reliability,
    config: TimerConfig,
}

impl ServerNonInvite {
    /// Creates the transaction for a new request (which the caller passes to the TU itself).
    pub fn new(reliability: Reliability, config: TimerConfig) -> Self {
        ServerNonInvite {
            state: State::Trying,
            reliability,
            config,
        }
    }

    /// See [`Transaction::shrink_to_fit`](super::Transaction::shrink_to_fit).
    pub fn shrink_to_fit(&mut self) {
        match &mut self.state {
            State::Proceeding {
                last_provisional: kept,
            }
            | State::Completed { response: kept, .. } => *kept = Bytes::copy_from_slice(kept),
            State::Trying | State::Terminated => {}
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        match self.state {
            State::Trying => ServerNonInviteState::Trying,
            State::Proceeding { .. } => ServerNonInviteState::Proceeding,
            State::Completed { .. } => ServerNonInviteState::Completed,
            State::Terminated => ServerNonInviteState::Terminated,
        }
    }

    /// A retransmission of the request arrived. Never passed to the TU.
    pub fn on_request(&mut self) -> Actions {
        match &self.state {
            State::Proceeding { last_provisional } => {
                Actions::one(Action::Transmit(last_provisional.clone()))
            }
            State::Completed { response, .. } => Actions::one(Action::Transmit(response.clone())),
            State::Trying | State::Terminated => Actions::new(),
        }
    }

    /// The TU responds with `status`; `response` is the wire form the caller built.
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
        match (&self.state, status) {
            (State::Terminated, _) => return Err(TransactionError::Terminated),
            (State::Completed { .. }, _) => return Err(TransactionError::FinalResponseSent),
            (State::Trying | State::Proceeding { .. }, 100..=199) => {
                self.state = State::Proceeding {
                    last_provisional: response.clone(),
                };
                actions.push(Action::Transmit(response));
            }
            (State::Trying | State::Proceeding { .. }, _) => {
                let timer_j = self.config.timer_j(self.reliability);
                actions.push(Action::Transmit(response.clone()));
                if timer_j.is_zero() {
                    self.terminate(&mut actions);
                } else {
                    self.state = State::Completed {
                        response,
                        timer_j: deadline(now, timer_j),
                    };
                }
            }
        }
        Ok(actions)
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4).
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
        if let State::Completed { timer_j, .. } = &self.state {
            if now >= *timer_j {
                self.terminate(&mut actions);
            }
        }
        actions
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Completed { timer_j, .. } => Some(*timer_j),
            State::Trying | State::Proceeding { .. } | State::Terminated => None,
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

    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKopt1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKopt1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn absorbs_before_final_then_answers_with_it_until_timer_j() {
        let t0 = Instant::now();
        let mut m = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
        assert_eq!(m.state(), ServerNonInviteState::Trying);
        assert!(m.on_request().is_empty());
        let a = m
            .respond(200, Bytes::from_static(OK), t0 + ms(100))
            .unwrap();
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [transmit(OK)]);
        assert_eq!(m.state(), ServerNonInviteState::Completed);
        for _ in 0..3 {
            assert_eq!(
                m.on_request().into_iter().collect::<Vec<_>>(),
                [transmit(OK)]
            );
        }
        assert_eq!(
            m.respond(500, Bytes::new(), t0 + ms(200)),
            Err(TransactionError::FinalResponseSent)
        );
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(32_100, Action::Terminated)]
        );
        assert!(m.on_request().is_empty());
    }

    #[test]
    fn proceeding_resends_last_provisional() {
        let t0 = Instant::now();
        let mut m = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
        assert_eq!(
            m.respond(100, Bytes::from_static(TRYING), t0)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(m.state(), ServerNonInviteState::Proceeding);
        assert_eq!(
            m.on_request().into_iter().collect::<Vec<_>>(),
            [transmit(TRYING)]
        );
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn tcp_terminates_with_the_final_response() {
        let t0 = Instant::now();
        let mut m = ServerNonInvite::new(Reliability::Reliable, TimerConfig::default());
        let a = m.respond(200, Bytes::from_static(OK), t0).unwrap();
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [transmit(OK), Action::Terminated]
        );
        assert_eq!(
            m.respond(200, Bytes::from_static(OK), t0),
            Err(TransactionError::Terminated)
        );
    }

    #[test]
    fn transport_error_and_custom_t1() {
        let t0 = Instant::now();
        let mut m = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
        assert_eq!(
            m.on_transport_error().into_iter().collect::<Vec<_>>(),
            [Action::TransportError, Action::Terminated]
        );
        let config = TimerConfig {
            t1: Duration::from_millis(50),
            ..TimerConfig::default()
        };
        let mut m = ServerNonInvite::new(Reliability::Unreliable, config);
        assert_eq!(m.respond(404, Bytes::from_static(OK), t0).unwrap().len(), 1);
        assert_eq!(
            drive(&mut m, t0, t0 + ms(60_000)),
            [(3200, Action::Terminated)]
        );
    }
}
