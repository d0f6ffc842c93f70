//! Timers and transport failures of a call (RFC 3261 §17 transaction timers, §17.1.4
//! transport errors): one entry point that fires everything due at `now` — transfer,
//! keepalive, session and ring timers, then every transaction's own timer — and what a
//! timed-out or unsendable transaction means for its leg.

use std::time::Instant;

use super::core::{Call, LegId, LegState, Phase, Purpose, TxnKey};
use crate::transaction::{Action, Transaction};
use crate::transport::{Destination, Protocol};

impl Call {
    // ------------------------------------------------------------------ timers

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transfer_timeouts(now);
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.send_keepalives(now);
        }
        self.session_timeouts(now);
        if self.ring_deadline.is_some_and(|d| d <= now) {
            self.ring_deadline = None;
            if self.phase == Phase::Routing {
                tracing::info!(call = self.key, "no answer within the ring timeout");
                self.reject_caller(480, "No Answer", None, now);
            }
        }
        let due: Vec<TxnKey> = self
            .txns
            .iter()
            .filter(|(_, e)| e.machine.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(entry) = self.txns.get_mut(&key) else {
                continue;
            };
            let leg = entry.leg;
            let actions = entry.machine.handle_timeout(now);
            let resent = actions
                .iter()
                .filter(|a| matches!(a, Action::Transmit(_)))
                .count() as u64;
            if resent > 0 {
                self.ep
                    .counters
                    .retransmissions
                    .fetch_add(resent, std::sync::atomic::Ordering::Relaxed);
            }
            let dest = self.txn_destination(&key, leg);
            let rest = self.execute(&dest, actions);
            let mut terminated = false;
            for action in rest {
                match action {
                    Action::Timeout | Action::TransportError => self.on_txn_timeout(&key, leg, now),
                    Action::NoAck => self.on_no_ack(leg, now),
                    Action::Terminated => terminated = true,
                    Action::PassToTu | Action::BuildAck | Action::Transmit(_) => {}
                }
            }
            if terminated {
                self.txns.remove(&key);
            }
        }
    }

    /// Where a transaction's retransmissions go: responses to the request's source, requests
    /// to the leg's flow.
    fn txn_destination(&self, key: &TxnKey, leg: LegId) -> Destination {
        let from_request = self.txns.get(key).and_then(|e| match &e.purpose {
            Purpose::CallerInvite(r) => Some(r.response_destination()),
            Purpose::Relayed { request, .. } => Some(request.response_destination()),
            _ => None,
        });
        from_request
            .or_else(|| self.legs.get(leg).map(|l| l.dialog.flow))
            .unwrap_or(Destination {
                protocol: Protocol::Udp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5060)),
                connection: None,
            })
    }

    fn on_txn_timeout(&mut self, key: &TxnKey, leg: LegId, now: Instant) {
        let kind = match self.txns.get(key).map(|e| &e.purpose) {
            Some(Purpose::CalleeInvite) => 0,
            Some(Purpose::RelayOut { .. }) => 1,
            Some(Purpose::Bye) => 2,
            Some(Purpose::CallerInvite(_)) => 3,
            Some(Purpose::TransferTarget) => 5,
            Some(Purpose::Keepalive | Purpose::SessionRefresh) => {
                self.leg_lost(leg, now);
                return;
            }
            Some(Purpose::Notify) => {
                // No answer to a NOTIFY: the subscriber is gone (RFC 6665 §4.2.2); drop the
                // rest and release the agent's leg now.
                self.notify_queue.retain(|n| n.0 != leg);
                self.notify_done(leg, now);
                return;
            }
            Some(Purpose::LocalReinvite(k)) => {
                // A re-INVITE that timed out is treated as refused (RFC 3261 §14.1); the
                // dialog is then presumed gone and the call ends.
                let k = *k;
                if k == super::transfer::Reinvite::Bridge {
                    self.on_transfer_target_response_timeout(now);
                }
                self.set_leg_state(leg, LegState::Ended);
                self.end_call("re-INVITE timed out", leg, now);
                return;
            }
            _ => 4,
        };
        match kind {
            5 => {
                let current = self.transfer.as_ref().and_then(|t| t.target_leg) == Some(leg);
                self.set_leg_state(leg, LegState::Ended);
                if current {
                    self.transfer_failed(408, "Request Timeout", now);
                }
            }
            0 => {
                self.set_leg_state(leg, LegState::Ended);
                self.callee_failed(408, "Request Timeout".into(), now);
            }
            1 => {
                if let Some(Purpose::RelayOut { server, .. }) =
                    self.txns.get(key).map(|e| &e.purpose)
                {
                    let server = server.clone();
                    self.respond_server(&server, 408, "Request Timeout", None, now, |_| {});
                }
            }
            2 => self.set_leg_state(leg, LegState::Ended),
            // Timer H: our final response to the caller was never ACKed.
            3 => self.set_leg_state(leg, LegState::Ended),
            _ => {}
        }
    }

    /// The transport refused to send to `dest`: every client transaction towards it fails
    /// as if timed out (RFC 3261 §17.1.4: the TU sees a 503 equivalent).
    pub fn on_transport_error(&mut self, dest: &Destination, now: Instant) {
        let keys: Vec<(TxnKey, LegId)> = self
            .txns
            .iter()
            .filter(|(k, e)| {
                matches!(k, TxnKey::Client(_))
                    && self.legs.get(e.leg).is_some_and(|l| l.dialog.flow == *dest)
            })
            .map(|(k, e)| (k.clone(), e.leg))
            .collect();
        for (key, leg) in keys {
            let Some(entry) = self.txns.get_mut(&key) else {
                continue;
            };
            let actions = match &mut entry.machine {
                Transaction::ClientInvite(m) => m.on_transport_error(),
                Transaction::ClientNonInvite(m) => m.on_transport_error(),
                _ => continue,
            };
            let terminated = actions.is_terminated();
            if actions.contains(&Action::TransportError) {
                self.on_txn_timeout(&key, leg, now);
            }
            if terminated {
                self.txns.remove(&key);
            }
        }
    }
}
