//! A table of live transactions keyed by the caller's transaction key, with one deadline
//! for all of them (RFC 3261 §17.1.3 and §17.2.3 matching is done by the caller when it
//! builds the key).
//!
//! The next deadline is recomputed by a scan: a table holds tens of entries (one call's
//! transactions, or one shard's), and a scan cannot go stale the way a separate index can
//! when a machine is driven through [`TransactionTable::get_mut`].

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use super::{
    Action, Actions, ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, Uas2xx,
};

/// Any of the machines of this module.
#[derive(Debug)]
pub enum Transaction {
    /// RFC 3261 §17.1.1.
    ClientInvite(ClientInvite),
    /// RFC 3261 §17.1.2.
    ClientNonInvite(ClientNonInvite),
    /// RFC 3261 §17.2.1.
    ServerInvite(ServerInvite),
    /// RFC 3261 §17.2.2.
    ServerNonInvite(ServerNonInvite),
    /// RFC 3261 §13.3.1.4 (not a transaction, but timed the same way).
    Uas2xx(Uas2xx),
}

macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Transaction::ClientInvite($m) => $body,
            Transaction::ClientNonInvite($m) => $body,
            Transaction::ServerInvite($m) => $body,
            Transaction::ServerNonInvite($m) => $body,
            Transaction::Uas2xx($m) => $body,
        }
    };
}

macro_rules! accessors {
    ($($variant:ident, $ty:ty, $get:ident;)*) => {
        $(
            impl From<$ty> for Transaction {
                fn from(m: $ty) -> Self {
                    Transaction::$variant(m)
                }
            }
        )*
        impl Transaction {
            $(
                #[doc = concat!("The [`", stringify!($ty), "`] inside, if that is what this is.")]
                pub fn $get(&mut self) -> Option<&mut $ty> {
                    match self {
                        Transaction::$variant(m) => Some(m),
                        _ => None,
                    }
                }
            )*
        }
    };
}

accessors! {
    ClientInvite, ClientInvite, as_client_invite_mut;
    ClientNonInvite, ClientNonInvite, as_client_non_invite_mut;
    ServerInvite, ServerInvite, as_server_invite_mut;
    ServerNonInvite, ServerNonInvite, as_server_non_invite_mut;
    Uas2xx, Uas2xx, as_uas_2xx_mut;
}

impl Transaction {
    /// Moves the response a server machine keeps for retransmission into an allocation of
    /// its own size (nothing for the other machines). A built message sits in a buffer of
    /// the builder's capacity (1 KiB) while the transaction lives, and a lingering one lives
    /// 32 s (Timer J): ~64,000 of them at 2,000 calls/s.
    pub fn shrink_to_fit(&mut self) {
        match self {
            Transaction::ServerInvite(m) => m.shrink_to_fit(),
            Transaction::ServerNonInvite(m) => m.shrink_to_fit(),
            Transaction::ClientInvite(_)
            | Transaction::ClientNonInvite(_)
            | Transaction::Uas2xx(_) => {}
        }
    }

    /// The machine's earliest pending timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        each!(self, m => m.next_deadline())
    }

    /// Fires the machine's timers due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        each!(self, m => m.handle_timeout(now))
    }

    /// `true` once the machine is done.
    pub fn is_terminated(&self) -> bool {
        each!(self, m => m.is_terminated())
    }
}

/// One table entry: the machine and the caller's data for it (the leg it belongs to, …).
#[derive(Debug)]
pub struct Entry<T> {
    /// The state machine.
    pub transaction: Transaction,
    /// Caller data.
    pub data: T,
}

/// Why [`TransactionTable::insert`] refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table holds its maximum number of entries (answer 503 / drop the request).
    #[error("transaction table full ({limit} entries)")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// A live transaction already has this key (a retransmission the caller should have
    /// matched with [`TransactionTable::get_mut`]).
    #[error("a transaction with this key already exists")]
    DuplicateKey,
}

/// Live transactions keyed by `K`, each with caller data `T`. Terminated machines are
/// removed by [`TransactionTable::handle_timeouts`] and [`TransactionTable::update`].
#[derive(Debug)]
pub struct TransactionTable<K, T> {
    entries: HashMap<K, Entry<T>>,
    limit: usize,
}

impl<K: Hash + Eq + Clone, T> TransactionTable<K, T> {
    /// Default bound on the number of entries.
    pub const DEFAULT_LIMIT: usize = 4096;

    /// An empty table holding at most [`Self::DEFAULT_LIMIT`] entries.
    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// An empty table holding at most `limit` entries.
    pub fn with_limit(limit: usize) -> Self {
        TransactionTable {
            entries: HashMap::new(),
            limit,
        }
    }

    /// Adds a machine. A terminated entry under the same key is replaced.
    pub fn insert(
        &mut self,
        key: K,
        transaction: impl Into<Transaction>,
        data: T,
    ) -> Result<(), TableError> {
        match self.entries.get(&key) {
            Some(old) if !old.transaction.is_terminated() => return Err(TableError::DuplicateKey),
            Some(_) => {}
            None if self.entries.len() >= self.limit => {
                return Err(TableError::Full { limit: self.limit })
            }
            None => {}
        }
        let transaction = transaction.into();
        self.entries.insert(key, Entry { transaction, data });
        Ok(())
    }

    /// The entry under `key`.
    pub fn get(&self, key: &K) -> Option<&Entry<T>> {
        self.entries.get(key)
    }

    /// The entry under `key`, to drive its machine. A machine terminated this way stays
    /// until the next [`Self::handle_timeouts`] (or [`Self::remove`]); prefer
    /// [`Self::update`], which removes it at once.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Entry<T>> {
        self.entries.get_mut(key)
    }

    /// Runs `f` on the entry under `key` and removes the entry if its machine terminated.
    /// Returns `None` when there is no such entry.
    pub fn update<R>(&mut self, key: &K, f: impl FnOnce(&mut Entry<T>) -> R) -> Option<R> {
        let entry = self.entries.get_mut(key)?;
        let result = f(entry);
        if entry.transaction.is_terminated() {
            self.entries.remove(key);
        }
        Some(result)
    }

    /// Removes and returns the entry under `key`.
    pub fn remove(&mut self, key: &K) -> Option<Entry<T>> {
        self.entries.remove(key)
    }

    /// Number of entries (terminated ones not yet swept included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest deadline over all entries.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.transaction.next_deadline())
            .min()
    }

    /// Fires the timers of every entry due at or before `now`, in deadline order, and
    /// removes every terminated entry. Returns each action with its entry's key.
    pub fn handle_timeouts(&mut self, now: Instant) -> Vec<(K, Action)> {
        let mut due: Vec<(Instant, K)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| {
                let at = e.transaction.next_deadline()?;
                (at <= now).then(|| (at, k.clone()))
            })
            .collect();
        due.sort_by_key(|(at, _)| *at);
        let mut fired = Vec::new();
        for (_, key) in due {
            if let Some(entry) = self.entries.get_mut(&key) {
                for action in entry.transaction.handle_timeout(now) {
                    fired.push((key.clone(), action));
                }
            }
        }
        self.entries.retain(|_, e| !e.transaction.is_terminated());
        fired
    }
}

impl<K: Hash + Eq + Clone, T> Default for TransactionTable<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The method under which an incoming request is matched against server transactions
/// (RFC 3261 §17.2.3): an ACK matches the INVITE transaction it acknowledges (same branch
/// and sent-by), every other method its own. Methods are case-sensitive (§7.1).
///
/// The server key is then (top Via branch, top Via sent-by, this method). An ACK for a 2xx
/// carries a new branch, finds no transaction, and goes to the dialog (§13.2.2.4).
pub fn key_method_for_request(method: &str) -> &str {
    if method == "ACK" {
        "INVITE"
    } else {
        method
    }
}

/// The method of the INVITE server transaction that a CANCEL targets (RFC 3261 §9.2): a
/// CANCEL has the same branch and sent-by as the INVITE it cancels, so the caller looks up
/// (branch, sent-by, `key_method_for_cancel()`) to find the INVITE — while the CANCEL itself
/// runs in its own non-INVITE server transaction keyed (branch, sent-by, "CANCEL").
pub fn key_method_for_cancel() -> &'static str {
    "INVITE"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::test_util::ms;
    use crate::transaction::{Reliability, TimerConfig};
    use bytes::Bytes;

    type Key = (&'static str, &'static str);

    fn client(t0: Instant) -> ClientNonInvite {
        ClientNonInvite::new(
            Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
            Reliability::Unreliable,
            TimerConfig::default(),
            t0,
        )
        .0
    }

    #[test]
    fn deadlines_across_entries_fire_and_terminated_are_removed() {
        let t0 = Instant::now();
        let mut table: TransactionTable<Key, u32> = TransactionTable::new();
        table.insert(("b1", "OPTIONS"), client(t0), 1).unwrap();
        table
            .insert(("b2", "OPTIONS"), client(t0 + ms(200)), 2)
            .unwrap();
        let mut server = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
        let sent = server
            .respond(200, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), t0)
            .unwrap();
        assert_eq!(sent.len(), 1);
        table.insert(("b3", "OPTIONS"), server, 3).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.next_deadline(), Some(t0 + ms(500)));

        // Nothing due yet.
        assert!(table.handle_timeouts(t0 + ms(499)).is_empty());
        let fired = table.handle_timeouts(t0 + ms(500));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].0, ("b1", "OPTIONS"));
        assert!(matches!(fired[0].1, Action::Transmit(_)));
        assert_eq!(table.next_deadline(), Some(t0 + ms(700)));
        let fired = table.handle_timeouts(t0 + ms(700));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].0, ("b2", "OPTIONS"));

        // At 32 s b1 times out (F); at 32.2 s b2 times out; b3 (Timer J) at 32 s.
        let fired = table.handle_timeouts(t0 + ms(32_000));
        let mut keys: Vec<(Key, Action)> = fired
            .into_iter()
            .filter(|(_, a)| !matches!(a, Action::Transmit(_)))
            .collect();
        keys.sort_by_key(|(k, _)| *k);
        assert_eq!(
            keys,
            [
                (("b1", "OPTIONS"), Action::Timeout),
                (("b1", "OPTIONS"), Action::Terminated),
                (("b3", "OPTIONS"), Action::Terminated),
            ]
        );
        assert_eq!(table.len(), 1);
        assert!(table.get(&("b2", "OPTIONS")).is_some());
        table.handle_timeouts(t0 + ms(32_200));
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn update_drives_and_removes_terminated() {
        let t0 = Instant::now();
        let mut table: TransactionTable<Key, &str> = TransactionTable::new();
        table
            .insert(("b1", "OPTIONS"), client(t0), "leg-a")
            .unwrap();
        assert_eq!(
            table.insert(("b1", "OPTIONS"), client(t0), "leg-b"),
            Err(TableError::DuplicateKey)
        );
        let actions = table
            .update(&("b1", "OPTIONS"), |e| {
                assert_eq!(e.data, "leg-a");
                e.transaction
                    .as_client_non_invite_mut()
                    .map(|m| m.on_response(200, t0 + ms(100)))
            })
            .flatten()
            .unwrap();
        assert_eq!(actions.into_iter().collect::<Vec<_>>(), [Action::PassToTu]);
        assert_eq!(table.len(), 1);
        // Timer K (5 s) then removal.
        let fired = table.handle_timeouts(t0 + ms(5100));
        assert_eq!(fired, [(("b1", "OPTIONS"), Action::Terminated)]);
        assert!(table.is_empty());
        assert!(table.update(&("b1", "OPTIONS"), |_| ()).is_none());
    }

    #[test]
    fn limit_and_reuse_of_terminated_key() {
        let t0 = Instant::now();
        let mut table: TransactionTable<u8, ()> = TransactionTable::with_limit(1);
        table.insert(1, client(t0), ()).unwrap();
        assert_eq!(
            table.insert(2, client(t0), ()),
            Err(TableError::Full { limit: 1 })
        );
        if let Some(e) = table.get_mut(&1) {
            if let Some(m) = e.transaction.as_client_non_invite_mut() {
                assert_eq!(m.on_transport_error().len(), 2);
            }
        }
        // Terminated but not yet swept: the key may be reused.
        table.insert(1, client(t0), ()).unwrap();
        assert!(!table.get(&1).unwrap().transaction.is_terminated());
        assert!(table.remove(&1).is_some());
        assert!(table.is_empty());
    }

    #[test]
    fn ack_and_cancel_key_to_the_invite() {
        assert_eq!(key_method_for_request("ACK"), "INVITE");
        assert_eq!(key_method_for_request("BYE"), "BYE");
        assert_eq!(key_method_for_request("ack"), "ack");
        assert_eq!(key_method_for_cancel(), "INVITE");
    }
}
