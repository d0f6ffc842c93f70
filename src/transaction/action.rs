//! What a transaction asks its caller to do, and the errors a TU can get from it.

use bytes::Bytes;

/// One instruction from a state machine to the code that drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the peer of the transaction (over the transport the transaction
    /// was created for).
    Transmit(Bytes),
    /// Deliver the message just handed to the machine (a response for client transactions,
    /// the ACK for a server INVITE in Accepted) to the TU. Never produced by timers.
    PassToTu,
    /// Client INVITE only: a 300-699 final response arrived; build the ACK for it (RFC 3261
    /// §17.1.1.3 — Request-URI, Call-ID, From, CSeq number, top Via copied from the INVITE,
    /// To from the response) and hand it to [`super::ClientInvite::set_ack`]. Asked once.
    BuildAck,
    /// Timer B, F or H fired (or the CANCEL guard of a client INVITE): the TU should act as
    /// if a 408 (Request Timeout) had been received (client) or the ACK never came (server).
    Timeout,
    /// The transport reported a failure to send; surfaced to the TU (RFC 3261 §17.1.4,
    /// §17.2.4). Usually followed by [`Action::Terminated`].
    TransportError,
    /// UAS 2xx retransmitter only: no ACK arrived within 64*T1 (RFC 3261 §13.3.1.4); the TU
    /// confirms the dialog and sends BYE.
    NoAck,
    /// The machine entered its final state; drop it. Emitted exactly once.
    Terminated,
}

const CAPACITY: usize = 4;

/// The actions of one call into a machine, in order. Fixed capacity, no heap allocation:
/// every transition emits at most three actions.
#[must_use = "the caller must execute every action (transmit, pass to TU, …)"]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    items: [Option<Action>; CAPACITY],
    len: usize,
}

impl Actions {
    /// No actions.
    pub fn new() -> Self {
        Actions::default()
    }

    pub(super) fn one(action: Action) -> Self {
        let mut actions = Actions::new();
        actions.push(action);
        actions
    }

    pub(super) fn push(&mut self, action: Action) {
        // The machines never emit more than CAPACITY actions per call; the debug assertion
        // catches a future transition that would.
        debug_assert!(self.len < CAPACITY, "Actions capacity exceeded");
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(action);
            self.len += 1;
        }
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the call produced nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The actions in order.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.items.iter().flatten()
    }

    /// `true` if `action` is among them.
    pub fn contains(&self, action: &Action) -> bool {
        self.iter().any(|a| a == action)
    }

    /// `true` if an [`Action::Terminated`] is among them.
    pub fn is_terminated(&self) -> bool {
        self.contains(&Action::Terminated)
    }
}

impl IntoIterator for Actions {
    type Item = Action;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Action>, CAPACITY>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().flatten()
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Option<Action>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().flatten()
    }
}

/// A TU call the machine cannot honour in its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A response status outside 100..=699.
    #[error("invalid response status {0}")]
    InvalidStatus(u16),
    /// A final response was already sent (only further 2xx may follow a 2xx, RFC 6026).
    #[error("a final response was already sent on this transaction")]
    FinalResponseSent,
    /// The transaction has terminated.
    #[error("the transaction has terminated")]
    Terminated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_iterates() {
        let mut a = Actions::new();
        assert!(a.is_empty());
        a.push(Action::Transmit(Bytes::from_static(b"x")));
        a.push(Action::Terminated);
        assert_eq!(a.len(), 2);
        assert!(a.is_terminated());
        let v: Vec<Action> = a.into_iter().collect();
        assert_eq!(
            v,
            [
                Action::Transmit(Bytes::from_static(b"x")),
                Action::Terminated
            ]
        );
    }
}
