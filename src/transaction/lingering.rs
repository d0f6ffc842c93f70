//! Server transactions kept after their owner is done, only to absorb retransmissions
//! (RFC 3261 §17.2.1 Timer G/H/I, §17.2.2 Timer J): the final response to a request answered
//! by the dispatcher, or by a call that has ended since, is sent again when the request is.
//!
//! At a steady call rate this table holds one entry per call of the last 64·T1 (32 s): about
//! 64,000 at 2,000 calls/s. Its timers are therefore kept in a min-heap, so that firing the
//! due ones and finding the next deadline cost O(log n) per entry, not a scan of the whole
//! table each time the earliest entry expires (which, with entries expiring continuously,
//! is every few hundred microseconds).
//!
//! Heap entries are not removed when a machine's deadline moves: each table entry records
//! the deadline it is scheduled at, and a heap entry that does not match it is stale and
//! skipped when it comes up. A deadline only ever moves earlier through [`Lingering::absorb`]
//! (an ACK: Completed → Confirmed), at most once per transaction, so the heap stays within
//! twice the table.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Action, Transaction};

/// Default bound on lingering transactions: past it new ones are not kept (their
/// retransmitted requests then find nothing to absorb them and are answered afresh).
pub const MAX_LINGERING: usize = 262_144;

/// The table: machines by key `K` (branch, peer and INVITE-ness, built by the caller), with
/// the destination their retransmissions go to and a guard the caller keeps alive with them.
/// A key is shared by the table and the timer heap, not copied. Entries are boxed: the
/// table then holds 16 bytes per slot, not a whole machine (its slots are allocated to twice
/// the entry count, and ~64,000 entries are normal).
pub struct Lingering<K: ?Sized, D, G> {
    txns: HashMap<Arc<K>, Box<LingeringTxn<D, G>>>,
    schedule: BinaryHeap<Reverse<Due<K>>>,
    limit: usize,
}

struct LingeringTxn<D, G> {
    machine: Transaction,
    dest: D,
    /// The deadline of this entry's live heap entry, if it has one.
    scheduled: Option<Instant>,
    _guard: G,
}

/// One heap entry, ordered by deadline only.
struct Due<K: ?Sized> {
    at: Instant,
    key: Arc<K>,
}

impl<K: ?Sized> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<K: ?Sized> Eq for Due<K> {}
impl<K: ?Sized> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: ?Sized> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

impl<K: Hash + Eq + ?Sized, D: Copy, G> Default for Lingering<K, D, G> {
    fn default() -> Self {
        Self::with_limit(MAX_LINGERING)
    }
}

impl<K: Hash + Eq + ?Sized, D: Copy, G> Lingering<K, D, G> {
    /// An empty table that keeps at most `limit` transactions.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            txns: HashMap::new(),
            schedule: BinaryHeap::new(),
            limit,
        }
    }

    /// Keeps `machine` under `key`, unless it has already terminated or the table is full.
    /// Returns whether it was kept. Its kept response is shrunk to fit first.
    pub fn insert(&mut self, key: Arc<K>, mut machine: Transaction, dest: D, guard: G) -> bool {
        if self.txns.len() >= self.limit || machine.is_terminated() {
            return false;
        }
        machine.shrink_to_fit();
        let mut txn = Box::new(LingeringTxn {
            machine,
            dest,
            scheduled: None,
            _guard: guard,
        });
        schedule(&mut self.schedule, &key, &mut txn);
        self.txns.insert(key, txn);
        true
    }

    /// Hands a retransmitted request (`ack`: an ACK for a non-2xx final response) to the
    /// transaction under `key`. `None` when there is none; else where to send and what.
    pub fn absorb(&mut self, key: &K, ack: bool, now: Instant) -> Option<(D, Vec<Bytes>)> {
        let key = Arc::clone(self.txns.get_key_value(key)?.0);
        let txn = self.txns.get_mut(&key)?;
        let actions = match (&mut txn.machine, ack) {
            (Transaction::ServerInvite(m), true) => m.on_ack(now),
            (Transaction::ServerInvite(m), false) => m.on_request(),
            (Transaction::ServerNonInvite(m), false) => m.on_request(),
            _ => return Some((txn.dest, Vec::new())),
        };
        let sends = transmitted(actions);
        let dest = txn.dest;
        if txn.machine.is_terminated() {
            self.txns.remove(&key);
        } else {
            schedule(&mut self.schedule, &key, txn);
        }
        Some((dest, sends))
    }

    /// Fires the timers due at or before `now`, in deadline order, and drops the
    /// transactions that terminate. Returns what to send, and where.
    pub fn handle_timeouts(&mut self, now: Instant) -> Vec<(D, Bytes)> {
        let mut sends = Vec::new();
        while self
            .schedule
            .peek()
            .is_some_and(|Reverse(due)| due.at <= now)
        {
            let Some(Reverse(due)) = self.schedule.pop() else {
                break;
            };
            let Some(txn) = self.txns.get_mut(&due.key) else {
                continue; // terminated through `absorb`
            };
            if txn.scheduled != Some(due.at) {
                continue; // stale: the entry was scheduled again, earlier
            }
            txn.scheduled = None;
            if txn.machine.next_deadline().is_some_and(|at| at <= now) {
                let dest = txn.dest;
                sends.extend(
                    transmitted(txn.machine.handle_timeout(now))
                        .into_iter()
                        .map(|b| (dest, b)),
                );
            }
            if txn.machine.is_terminated() {
                self.txns.remove(&due.key);
            } else {
                schedule(&mut self.schedule, &due.key, txn);
            }
        }
        sends
    }

    /// When [`Self::handle_timeouts`] next has something to do (possibly a little early).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.peek().map(|Reverse(due)| due.at)
    }

    /// Drops every transaction (shutdown).
    pub fn clear(&mut self) {
        self.txns.clear();
        self.schedule.clear();
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Heap entries, live and stale (for tests of the bound).
    #[cfg(test)]
    fn scheduled_len(&self) -> usize {
        self.schedule.len()
    }
}

/// Gives `txn` a heap entry at its machine's deadline unless it already has one as early.
fn schedule<K: ?Sized, D, G>(
    heap: &mut BinaryHeap<Reverse<Due<K>>>,
    key: &Arc<K>,
    txn: &mut LingeringTxn<D, G>,
) {
    let Some(at) = txn.machine.next_deadline() else {
        return;
    };
    if txn.scheduled.is_some_and(|s| s <= at) {
        return; // the live entry comes up first and reschedules then
    }
    heap.push(Reverse(Due {
        at,
        key: Arc::clone(key),
    }));
    txn.scheduled = Some(at);
}

fn transmitted(actions: super::Actions) -> Vec<Bytes> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Transmit(bytes) => Some(bytes),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transaction::{Reliability, ServerInvite, ServerNonInvite, TimerConfig};

    const T1: Duration = Duration::from_millis(500);

    fn config() -> TimerConfig {
        TimerConfig::default()
    }

    /// A non-INVITE server transaction that has sent its final response at `now`.
    fn completed_non_invite(now: Instant) -> Transaction {
        let mut m = ServerNonInvite::new(Reliability::Unreliable, config());
        let _sent = m
            .respond(200, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), now)
            .expect("final response");
        m.into()
    }

    /// An INVITE server transaction that has sent a 486 at `now`.
    fn rejected_invite(now: Instant) -> Transaction {
        let (mut m, _) = ServerInvite::new(
            Bytes::from_static(b"SIP/2.0 100 Trying\r\n\r\n"),
            Reliability::Unreliable,
            config(),
        );
        let _sent = m
            .respond(
                486,
                Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n"),
                now,
            )
            .expect("final response");
        m.into()
    }

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_retransmitted_request_gets_the_final_response_again_until_timer_j() {
        let t0 = Instant::now();
        let mut table: Lingering<str, u8, ()> = Lingering::default();
        assert!(table.insert(key("b1"), completed_non_invite(t0), 7, ()));
        let (dest, sends) = table.absorb("b1", false, t0 + T1).expect("absorbed");
        assert_eq!(dest, 7);
        assert_eq!(sends, vec![Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n")]);
        assert!(table.absorb("other", false, t0).is_none());

        // Timer J = 64·T1: nothing before, gone at it.
        assert_eq!(table.next_deadline(), Some(t0 + 64 * T1));
        assert!(table
            .handle_timeouts(t0 + 64 * T1 - Duration::from_millis(1))
            .is_empty());
        assert_eq!(table.len(), 1);
        assert!(table.handle_timeouts(t0 + 64 * T1).is_empty());
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
        assert!(table.absorb("b1", false, t0 + 65 * T1).is_none());
    }

    #[test]
    fn timers_fire_in_deadline_order_whatever_the_insertion_order() {
        let t0 = Instant::now();
        let mut table: Lingering<str, u8, ()> = Lingering::default();
        for (i, offset_ms) in [(1u8, 300u64), (2, 100), (3, 200)] {
            let at = t0 + Duration::from_millis(offset_ms);
            table.insert(key(&format!("b{i}")), completed_non_invite(at), i, ());
        }
        assert_eq!(
            table.next_deadline(),
            Some(t0 + Duration::from_millis(100) + 64 * T1)
        );
        table.handle_timeouts(t0 + Duration::from_millis(150) + 64 * T1);
        assert!(table.absorb("b2", false, t0).is_none(), "earliest expired");
        assert!(table.absorb("b3", false, t0).is_some());
        table.handle_timeouts(t0 + Duration::from_millis(250) + 64 * T1);
        assert_eq!(table.len(), 1);
        assert!(table.absorb("b1", false, t0).is_some());
        table.handle_timeouts(t0 + Duration::from_secs(60));
        assert!(table.is_empty());
    }

    #[test]
    fn a_rejected_invite_retransmits_its_final_response_then_an_ack_moves_it_to_timer_i() {
        let t0 = Instant::now();
        let mut table: Lingering<str, u8, ()> = Lingering::default();
        table.insert(key("inv"), rejected_invite(t0), 1, ());
        // Timer G: the 486 goes again after T1.
        assert_eq!(table.next_deadline(), Some(t0 + T1));
        let sends = table.handle_timeouts(t0 + T1);
        assert_eq!(
            sends,
            vec![(1, Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n"))]
        );
        // The ACK: Confirmed, Timer I (T4 = 5 s) replaces the pending Timer G/H.
        let ack_at = t0 + T1 + Duration::from_millis(10);
        let (_, sends) = table.absorb("inv", true, ack_at).expect("absorbed");
        assert!(sends.is_empty());
        let timer_i = ack_at + Duration::from_secs(5);
        // Timer G's old heap entry (at t0 + 3·T1) comes up first and sends nothing.
        assert!(table.handle_timeouts(t0 + 3 * T1).is_empty());
        assert_eq!(table.len(), 1);
        assert!(table.handle_timeouts(timer_i).is_empty());
        assert!(table.is_empty());
        assert_eq!(table.scheduled_len(), 0, "no heap entry outlives the table");
    }

    #[test]
    fn the_limit_is_kept_and_terminated_machines_are_not() {
        let t0 = Instant::now();
        let mut table: Lingering<str, u8, ()> = Lingering::with_limit(2);
        assert!(table.insert(key("a"), completed_non_invite(t0), 1, ()));
        assert!(table.insert(key("b"), completed_non_invite(t0), 1, ()));
        assert!(!table.insert(key("c"), completed_non_invite(t0), 1, ()));
        let mut reliable = ServerNonInvite::new(Reliability::Reliable, config());
        let _sent = reliable
            .respond(200, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), t0)
            .expect("final response");
        let mut fresh: Lingering<str, u8, ()> = Lingering::default();
        assert!(!fresh.insert(key("tcp"), reliable.into(), 1, ()));
        assert!(fresh.is_empty());
        table.clear();
        assert!(table.is_empty() && table.next_deadline().is_none());
    }

    #[test]
    fn many_entries_expire_with_the_heap_and_table_both_emptied() {
        let t0 = Instant::now();
        let mut table: Lingering<str, u8, ()> = Lingering::default();
        for i in 0..10_000u64 {
            let at = t0 + Duration::from_micros(i * 500);
            table.insert(key(&i.to_string()), completed_non_invite(at), 0, ());
        }
        let mut now = t0;
        while let Some(at) = table.next_deadline() {
            assert!(at >= now, "deadlines come in order");
            now = at;
            table.handle_timeouts(now);
        }
        assert!(table.is_empty());
        assert_eq!(table.scheduled_len(), 0);
    }
}
