//! INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) as corrected by RFC 6026 §7.2
//! (the Accepted state, Timer M).
//!
//! ```text
//!   new: send INVITE ──► Calling ── Timer A: resend INVITE (T1, 2T1, 4T1… UDP only)
//!                          │  │ └── Timer B (64*T1) / transport error ──► Terminated
//!                      1xx │  │ 2xx ─────────────────────────────┐
//!                          ▼  │ 300-699                          │
//!                     Proceeding ── 1xx: to TU                   │
//!                          │  └ 300-699: to TU, BuildAck         ▼
//!                          ▼     (set_ack sends it)          Accepted ── 2xx: to TU
//!                      Completed ── 300-699: resend ACK          │ Timer M (64*T1)
//!                          │ Timer D (≥32 s UDP, 0 TCP)          ▼
//!                          └──────────────────────────────► Terminated
//! ```
//!
//! The machine never parses: the caller classifies each response by status code and builds
//! the ACK for a non-2xx final response when asked ([`Action::BuildAck`]); the machine keeps
//! it and re-sends it for every retransmission of that final response. The ACK for a 2xx is
//! not part of the transaction (it belongs to the UAC core, RFC 3261 §13.2.2.4).
//!
//! RFC 3261 arms no timer in Proceeding: a callee that rings forever is the TU's business.
//! After sending CANCEL the TU calls [`ClientInvite::cancel_sent`], which arms the 64*T1
//! guard of §9.1 so a peer that never answers the CANCEL cannot leave the transaction alive.

use std::time::Instant;

use bytes::Bytes;

use super::timers::{deadline, Backoff};
use super::{Action, Actions, Reliability, TimerConfig};

/// Public view of the state, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300-699 arrived; the ACK is (re)sent for its retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026); further 2xx are passed to the TU.
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug)]
enum State {
    Calling {
        request: Bytes,
        /// `None` over a reliable transport.
        timer_a: Option<Backoff>,
        timer_b: Instant,
    },
    Proceeding {
        /// Armed by [`ClientInvite::cancel_sent`].
        cancel_guard: Option<Instant>,
    },
    Completed {
        ack: Option<Bytes>,
        timer_d: Instant,
    },
    Accepted {
        timer_m: Instant,
    },
    Terminated,
}

/// The INVITE client transaction. See the module docs.
#[derive(Debug)]
pub struct ClientInvite {
    state: State,
    reliability: Reliability,
    config: TimerConfig,
}

impl ClientInvite {
    /// Starts the transaction; the returned actions transmit `request` (the INVITE).
    pub fn new(
        request: Bytes,
        reliability: Reliability,
        config: TimerConfig,
        now: Instant,
    ) -> (Self, Actions) {
        let timer_a = match reliability {
            Reliability::Unreliable => Some(Backoff::start(now, config.timer_a(), None)),
            Reliability::Reliable => None,
        };
        let state = State::Calling {
            request: request.clone(),
            timer_a,
            timer_b: deadline(now, config.timer_b()),
        };
        let machine = ClientInvite {
            state,
            reliability,
            config,
        };
        (machine, Actions::one(Action::Transmit(request)))
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        match self.state {
            State::Calling { .. } => ClientInviteState::Calling,
            State::Proceeding { .. } => ClientInviteState::Proceeding,
            State::Completed { .. } => ClientInviteState::Completed,
            State::Accepted { .. } => ClientInviteState::Accepted,
            State::Terminated => ClientInviteState::Terminated,
        }
    }

    /// A response matching this transaction (RFC 3261 §17.1.3) arrived with `status`.
    /// Statuses outside 100..=699 are ignored.
    pub fn on_response(&mut self, status: u16, now: Instant) -> Actions {
        let mut actions = Actions::new();
        match (&mut self.state, status) {
            (State::Calling { .. }, 100..=199) => {
                self.state = State::Proceeding { cancel_guard: None };
                actions.push(Action::PassToTu);
            }
            (State::Proceeding { .. }, 100..=199) => actions.push(Action::PassToTu),
            (State::Calling { .. } | State::Proceeding { .. }, 200..=299) => {
                self.state = State::Accepted {
                    timer_m: deadline(now, self.config.timer_m()),
                };
                actions.push(Action::PassToTu);
            }
            (State::Calling { .. } | State::Proceeding { .. }, 300..=699) => {
                self.state = State::Completed {
                    ack: None,
                    timer_d: deadline(now, self.config.timer_d(self.reliability)),
                };
                actions.push(Action::PassToTu);
                actions.push(Action::BuildAck);
            }
            // A retransmitted final response: our ACK was lost, send it again. Not passed on.
            (State::Completed { ack: Some(ack), .. }, 300..=699) => {
                actions.push(Action::Transmit(ack.clone()));
            }
            // RFC 6026 §7.2: every 2xx (other forks, retransmissions) goes to the TU, which
            // ACKs each one end to end.
            (State::Accepted { .. }, 200..=299) => actions.push(Action::PassToTu),
            _ => {}
        }
        actions
    }

    /// The ACK asked for by [`Action::BuildAck`]: sends it and keeps it for retransmissions
    /// of the final response. Ignored outside Completed or when already set. Over a reliable
    /// transport Timer D is zero, so this also terminates the transaction: call it before the
    /// next [`ClientInvite::handle_timeout`].
    pub fn set_ack(&mut self, ack: Bytes, now: Instant) -> Actions {
        let mut actions = Actions::new();
        if let State::Completed {
            ack: slot @ None,
            timer_d,
        } = &mut self.state
        {
            *slot = Some(ack.clone());
            actions.push(Action::Transmit(ack));
            if now >= *timer_d {
                self.terminate(&mut actions);
            }
        }
        actions
    }

    /// The TU sent a CANCEL for this INVITE (RFC 3261 §9.1): if no final response arrives
    /// within 64*T1 the transaction times out instead of waiting forever in Proceeding.
    /// In Calling the running Timer B already bounds it; elsewhere this does nothing.
    pub fn cancel_sent(&mut self, now: Instant) {
        if let State::Proceeding { cancel_guard } = &mut self.state {
            cancel_guard.get_or_insert(deadline(now, self.config.t64()));
        }
    }

    /// The transport failed to send the INVITE or the ACK (RFC 3261 §17.1.4).
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
        match &mut self.state {
            State::Calling {
                request,
                timer_a,
                timer_b,
            } => {
                if now >= *timer_b {
                    actions.push(Action::Timeout);
                    self.terminate(&mut actions);
                } else if let Some(a) = timer_a.as_mut().filter(|a| a.is_due(now)) {
                    a.fire(now);
                    actions.push(Action::Transmit(request.clone()));
                }
            }
            State::Proceeding {
                cancel_guard: Some(at),
            } if now >= *at => {
                actions.push(Action::Timeout);
                self.terminate(&mut actions);
            }
            State::Completed { timer_d: at, .. } | State::Accepted { timer_m: at }
                if now >= *at =>
            {
                self.terminate(&mut actions);
            }
            State::Proceeding { .. }
            | State::Completed { .. }
            | State::Accepted { .. }
            | State::Terminated => {}
        }
        actions
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Calling {
                timer_a, timer_b, ..
            } => Some(timer_a.map_or(*timer_b, |a| a.at().min(*timer_b))),
            State::Proceeding { cancel_guard } => *cancel_guard,
            State::Completed { timer_d, .. } => Some(*timer_d),
            State::Accepted { timer_m } => Some(*timer_m),
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

    const INVITE: &[u8] = b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKci1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    const ACK: &[u8] = b"ACK sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKci1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";

    fn start(reliability: Reliability, t0: Instant) -> ClientInvite {
        let (m, actions) = ClientInvite::new(
            Bytes::from_static(INVITE),
            reliability,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(actions.into_iter().collect::<Vec<_>>(), [transmit(INVITE)]);
        m
    }

    #[test]
    fn udp_retransmits_with_timer_a_then_timer_b_times_out() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, t0);
        let events = drive(&mut m, t0, t0 + ms(60_000));
        let mut expected: Vec<(u64, Action)> = [500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .map(|at| (at, transmit(INVITE)))
            .collect();
        expected.push((32_000, Action::Timeout));
        expected.push((32_000, Action::Terminated));
        assert_eq!(events, expected);
        assert!(m.is_terminated());
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn tcp_never_retransmits_but_times_out() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable, t0);
        let events = drive(&mut m, t0, t0 + ms(60_000));
        assert_eq!(
            events,
            [(32_000, Action::Timeout), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn provisional_stops_retransmission_and_is_passed_on() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, t0);
        assert_eq!(drive(&mut m, t0, t0 + ms(600)), [(500, transmit(INVITE))]);
        let a = m.on_response(180, t0 + ms(700));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        assert_eq!(m.state(), ClientInviteState::Proceeding);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.on_response(183, t0 + ms(800))
                .into_iter()
                .collect::<Vec<_>>(),
            [Action::PassToTu]
        );
        // No Timer B in Proceeding: nothing happens even after a minute.
        assert!(drive(&mut m, t0, t0 + ms(100_000)).is_empty());
        assert_eq!(m.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn non_2xx_final_builds_ack_once_and_resends_it() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, t0);
        assert_eq!(m.on_response(100, t0 + ms(100)).len(), 1);
        let a = m.on_response(486, t0 + ms(2000));
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [Action::PassToTu, Action::BuildAck]
        );
        assert_eq!(m.state(), ClientInviteState::Completed);
        let a = m.set_ack(Bytes::from_static(ACK), t0 + ms(2000));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [transmit(ACK)]);
        // A second set_ack is ignored: the ACK is built once.
        assert!(m
            .set_ack(Bytes::from_static(b"other"), t0 + ms(2001))
            .is_empty());
        // Retransmitted 486: ACK re-sent, TU not told again.
        for at in [2500, 3500] {
            let a = m.on_response(486, t0 + ms(at));
            assert_eq!(a.into_iter().collect::<Vec<_>>(), [transmit(ACK)]);
        }
        // Timer D: 32 s after the 486.
        assert_eq!(m.next_deadline(), Some(t0 + ms(34_000)));
        assert_eq!(
            drive(&mut m, t0, t0 + ms(100_000)),
            [(34_000, Action::Terminated)]
        );
    }

    #[test]
    fn non_2xx_final_over_tcp_terminates_with_the_ack() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable, t0);
        let now = t0 + ms(300);
        let a = m.on_response(603, now);
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [Action::PassToTu, Action::BuildAck]
        );
        let a = m.set_ack(Bytes::from_static(ACK), now);
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [transmit(ACK), Action::Terminated]
        );
        assert!(m.is_terminated());
    }

    #[test]
    fn two_xx_enters_accepted_passes_retransmissions_then_timer_m() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, t0);
        assert_eq!(m.on_response(180, t0 + ms(100)).len(), 1);
        let a = m.on_response(200, t0 + ms(1000));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        assert_eq!(m.state(), ClientInviteState::Accepted);
        let a = m.on_response(200, t0 + ms(1500));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        // A late non-2xx or 1xx is absorbed.
        assert!(m.on_response(486, t0 + ms(1600)).is_empty());
        assert!(m.on_response(180, t0 + ms(1600)).is_empty());
        assert_eq!(
            drive(&mut m, t0, t0 + ms(100_000)),
            [(33_000, Action::Terminated)]
        );
    }

    #[test]
    fn transport_error_and_invalid_status() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Unreliable, t0);
        assert!(m.on_response(99, t0).is_empty());
        assert!(m.on_response(700, t0).is_empty());
        assert_eq!(m.state(), ClientInviteState::Calling);
        assert_eq!(
            m.on_transport_error().into_iter().collect::<Vec<_>>(),
            [Action::TransportError, Action::Terminated]
        );
        assert!(m.on_transport_error().is_empty());
        assert!(m.on_response(200, t0).is_empty());
    }

    #[test]
    fn cancel_guard_bounds_proceeding() {
        let t0 = Instant::now();
        let mut m = start(Reliability::Reliable, t0);
        assert_eq!(m.on_response(180, t0 + ms(100)).len(), 1);
        m.cancel_sent(t0 + ms(5000));
        assert_eq!(
            drive(&mut m, t0, t0 + ms(100_000)),
            [(37_000, Action::Timeout), (37_000, Action::Terminated)]
        );
    }

    #[test]
    fn custom_timers_are_respected() {
        let t0 = Instant::now();
        let config = TimerConfig::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
            Duration::from_millis(1000),
        )
        .unwrap();
        let (mut m, _) = ClientInvite::new(
            Bytes::from_static(INVITE),
            Reliability::Unreliable,
            config,
            t0,
        );
        let events = drive(&mut m, t0, t0 + ms(60_000));
        let times: Vec<u64> = events.iter().map(|(at, _)| *at).collect();
        // Timer A: 100, 300, 700, 1500, 3100 ms; Timer B at 64*T1 = 6.4 s.
        assert_eq!(times, [100, 300, 700, 1500, 3100, 6300, 6400, 6400]);
        assert_eq!(events.last(), Some(&(6400, Action::Terminated)));
    }
}
