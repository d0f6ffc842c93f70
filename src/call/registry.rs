//! The call router (DESIGN.md §1): maps a message to the actor that owns its call.
//!
//! Every tag, branch and Call-ID that handover generates for a call embeds the call's key
//! (`<key in hex>x<random>`), so responses (by top-Via branch) and in-dialog requests (by our
//! tag in To) find their actor without a per-transaction map. Only initial INVITEs from a peer
//! need a lookup by the peer's identifiers — (Call-ID, From tag) — for retransmissions and
//! CANCEL. Both maps are sharded; a shard's mutex is held for one `HashMap` operation, never
//! across an await, and never on behalf of more than one call.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::CallEvent;

/// Identifies one call actor for its lifetime; never reused within a process.
pub type CallKey = u64;

const SHARDS: usize = 16;
const MAGIC_COOKIE: &str = "z9hG4bK";

/// Hashes a key that is already well distributed (a [`CallKey`], or a keyed hash computed by
/// the registry) with one multiply-fold instead of SipHash.
///
/// Safe against hash flooding: only handover chooses the keys inserted (call keys are a
/// counter; initial-INVITE keys are SipHash with a per-process random key); a peer chooses
/// only keys that are looked up.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        let product = u128::from(self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        (product as u64) ^ ((product >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type FoldMap<V> = HashMap<u64, V, BuildHasherDefault<FoldHasher>>;

/// One peer's initial INVITE, (Call-ID, From tag), and the call it started.
struct InitialEntry {
    /// Call-ID followed by the From tag; `split` is where the tag starts.
    ids: Box<str>,
    split: usize,
    key: CallKey,
}

impl InitialEntry {
    fn is(&self, call_id: &str, from_tag: &str) -> bool {
        self.ids.get(..self.split) == Some(call_id) && self.ids.get(self.split..) == Some(from_tag)
    }
}

/// Keyed hash of (Call-ID, From tag) → the initial INVITEs with that hash (almost always one),
/// so a lookup borrows the peer's strings instead of allocating a key.
type InitialMap = FoldMap<Vec<InitialEntry>>;

/// A cloneable handle to a call actor: the actor's bounded inbox.
#[derive(Clone, Debug)]
pub struct CallHandle {
    pub key: CallKey,
    inbox: mpsc::Sender<CallEvent>,
}

/// Why an event could not be handed to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverError {
    /// The actor's inbox is full: answer 503 or drop a retransmission (backpressure).
    Busy,
    /// The actor has ended.
    Gone,
}

impl CallHandle {
    pub fn new(key: CallKey, inbox: mpsc::Sender<CallEvent>) -> Self {
        CallHandle { key, inbox }
    }

    /// Hands `event` to the actor without waiting.
    pub fn deliver(&self, event: CallEvent) -> Result<(), DeliverError> {
        self.deliver_or_return(event).map_err(|(error, _)| error)
    }

    /// [`Self::deliver`] that hands the event back when it cannot be delivered, so the caller
    /// can still answer a request without having kept a copy of it.
    pub fn deliver_or_return(&self, event: CallEvent) -> Result<(), (DeliverError, CallEvent)> {
        self.inbox.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(event) => (DeliverError::Busy, event),
            mpsc::error::TrySendError::Closed(event) => (DeliverError::Gone, event),
        })
    }
}

/// An event [`CallRegistry::deliver`] hands back.
#[derive(Debug)]
pub enum Undelivered {
    /// No call has that key (never had, or it ended and was removed).
    NoCall(CallEvent),
    /// The call exists but its inbox is full or closing.
    Refused(DeliverError, CallEvent),
}

/// Sharded maps from keys and peer dialog identifiers to call handles.
pub struct CallRegistry {
    next_key: AtomicU64,
    hasher: RandomState,
    calls: Vec<Mutex<FoldMap<CallHandle>>>,
    initial: Vec<Mutex<InitialMap>>,
}

impl Default for CallRegistry {
    fn default() -> Self {
        CallRegistry {
            next_key: AtomicU64::new(1),
            hasher: RandomState::new(),
            calls: (0..SHARDS)
                .map(|_| Mutex::new(FoldMap::default()))
                .collect(),
            initial: (0..SHARDS)
                .map(|_| Mutex::new(FoldMap::default()))
                .collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a map half-updated (each critical section
    // is one HashMap call), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CallRegistry {
    pub fn next_key(&self) -> CallKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    fn shard_of(key: CallKey) -> usize {
        (key as usize) % SHARDS
    }

    /// The keyed hash of an initial INVITE's identifiers and the shard it lives in.
    fn initial_slot(&self, call_id: &str, from_tag: &str) -> (u64, usize) {
        let mut h = self.hasher.build_hasher();
        call_id.hash(&mut h);
        from_tag.hash(&mut h);
        let hash = h.finish();
        (hash, (hash as usize) % SHARDS)
    }

    pub fn insert(&self, handle: CallHandle) {
        if let Some(shard) = self.calls.get(Self::shard_of(handle.key)) {
            lock(shard).insert(handle.key, handle);
        }
    }

    /// Removes call `key` (not an alias of it pointing at another call).
    pub fn remove(&self, key: CallKey) {
        self.remove_alias(key, key);
    }

    /// Routes `key` (a call that has ended) to `handle` (the call that took its leg).
    pub fn alias(&self, key: CallKey, handle: CallHandle) {
        if let Some(shard) = self.calls.get(Self::shard_of(key)) {
            lock(shard).insert(key, handle);
        }
    }

    /// Drops the alias `key` if it still points at call `owner`.
    pub fn remove_alias(&self, key: CallKey, owner: CallKey) {
        if let Some(shard) = self.calls.get(Self::shard_of(key)) {
            let mut map = lock(shard);
            if map.get(&key).is_some_and(|h| h.key == owner) {
                map.remove(&key);
            }
        }
    }

    pub fn get(&self, key: CallKey) -> Option<CallHandle> {
        self.calls
            .get(Self::shard_of(key))
            .and_then(|s| lock(s).get(&key).cloned())
    }

    /// Hands `event` to call `key` without cloning its handle (the shard is locked only for
    /// the non-blocking `try_send`). The event comes back if there is no such call or the
    /// call refused it.
    pub fn deliver(&self, key: CallKey, event: CallEvent) -> Result<(), Undelivered> {
        let Some(shard) = self.calls.get(Self::shard_of(key)) else {
            return Err(Undelivered::NoCall(event));
        };
        match lock(shard).get(&key) {
            Some(handle) => handle
                .deliver_or_return(event)
                .map_err(|(error, event)| Undelivered::Refused(error, event)),
            None => Err(Undelivered::NoCall(event)),
        }
    }

    /// Remembers that the peer's INVITE (Call-ID, From tag) belongs to call `key`.
    /// Returns the existing owner instead if the pair is already taken.
    pub fn claim_initial(
        &self,
        call_id: &str,
        from_tag: &str,
        key: CallKey,
    ) -> Result<(), CallKey> {
        let (hash, shard) = self.initial_slot(call_id, from_tag);
        let Some(shard) = self.initial.get(shard) else {
            return Ok(());
        };
        let mut map = lock(shard);
        let mut ids = String::with_capacity(call_id.len() + from_tag.len());
        ids.push_str(call_id);
        ids.push_str(from_tag);
        let entry = InitialEntry {
            ids: ids.into_boxed_str(),
            split: call_id.len(),
            key,
        };
        match map.entry(hash) {
            Entry::Occupied(mut entries) => {
                if let Some(existing) = entries.get().iter().find(|e| e.is(call_id, from_tag)) {
                    return Err(existing.key);
                }
                entries.get_mut().push(entry);
            }
            // One entry, allocated for one (a pushed-to empty Vec would reserve four).
            Entry::Vacant(slot) => {
                slot.insert(vec![entry]);
            }
        }
        Ok(())
    }

    pub fn find_initial(&self, call_id: &str, from_tag: &str) -> Option<CallHandle> {
        let (hash, shard) = self.initial_slot(call_id, from_tag);
        let key = {
            let map = lock(self.initial.get(shard)?);
            map.get(&hash)?
                .iter()
                .find(|e| e.is(call_id, from_tag))?
                .key
        };
        self.get(key)
    }

    pub fn release_initial(&self, call_id: &str, from_tag: &str) {
        let (hash, shard) = self.initial_slot(call_id, from_tag);
        if let Some(shard) = self.initial.get(shard) {
            let mut map = lock(shard);
            if let Some(entries) = map.get_mut(&hash) {
                entries.retain(|e| !e.is(call_id, from_tag));
                if entries.is_empty() {
                    map.remove(&hash);
                }
            }
        }
    }

    /// Number of initial INVITEs remembered (0 once every call has ended).
    pub fn initial_len(&self) -> usize {
        self.initial
            .iter()
            .map(|s| lock(s).values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Number of live calls.
    pub fn len(&self) -> usize {
        self.calls.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn handles(&self) -> Vec<CallHandle> {
        self.calls
            .iter()
            .flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

/// Digits of `key` in hex. Identifiers are allocated at their exact length: a call keeps
/// several for its lifetime, and spare capacity would be paid per held call.
fn hex_len(key: CallKey) -> usize {
    (u64::BITS - key.leading_zeros()).div_ceil(4).max(1) as usize
}

/// Appends `value` in lower-case hex, zero-padded to `width` digits: what `{:0width$x}`
/// writes, without the formatting machinery (every call makes several identifiers).
fn push_hex(out: &mut String, value: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = hex_len(value);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits)));
    for shift in (0..digits).rev() {
        let nibble = (value >> (shift * 4)) & 0xf;
        out.push(char::from(DIGITS[nibble as usize]));
    }
}

/// `<key hex>x<random hex of width digits>`: the part of every identifier that names the call.
fn push_call_part(out: &mut String, key: CallKey, random: u64, width: usize) {
    push_hex(out, key, 0);
    out.push('x');
    push_hex(out, random, width);
}

/// A tag that names its call: `<key hex>x<random hex>`.
pub fn tag_for(key: CallKey) -> String {
    let mut tag = String::with_capacity(hex_len(key) + 1 + 8);
    push_call_part(&mut tag, key, u64::from(fastrand::u32(..)), 8);
    tag
}

/// A branch that names its call: `z9hG4bK<key hex>x<random hex>`.
pub fn branch_for(key: CallKey) -> String {
    let mut branch = String::with_capacity(MAGIC_COOKIE.len() + hex_len(key) + 1 + 16);
    branch.push_str(MAGIC_COOKIE);
    push_call_part(&mut branch, key, fastrand::u64(..), 16);
    branch
}

/// A Call-ID for a dialog handover starts (agent and target legs).
pub fn call_id_for(key: CallKey, host: &str) -> String {
    let mut call_id = String::with_capacity(hex_len(key) + 1 + 16 + 1 + host.len());
    push_call_part(&mut call_id, key, fastrand::u64(..), 16);
    call_id.push('@');
    call_id.push_str(host);
    call_id
}

/// The call key embedded in one of our tags, if `tag` is ours.
pub fn key_from_tag(tag: &str) -> Option<CallKey> {
    let (hex, _) = tag.split_once('x')?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The call key embedded in one of our branches, if `branch` is ours.
pub fn key_from_branch(branch: &str) -> Option<CallKey> {
    key_from_tag(branch.strip_prefix(MAGIC_COOKIE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_tags_branches_and_call_ids() {
        for key in [1u64, 0xabc, u64::MAX] {
            assert_eq!(key_from_tag(&tag_for(key)), Some(key));
            assert_eq!(key_from_branch(&branch_for(key)), Some(key));
            assert_eq!(key_from_tag(&call_id_for(key, "h")), Some(key));
        }
    }

    #[test]
    fn hex_is_written_as_the_formatter_writes_it() {
        for value in [0u64, 1, 0xf, 0x10, 0xabc, 0x1234_5678, u64::MAX] {
            for width in [0, 8, 16] {
                let mut out = String::new();
                push_hex(&mut out, value, width);
                assert_eq!(out, format!("{value:0width$x}"));
            }
        }
    }

    #[test]
    fn identifiers_are_allocated_at_their_length() {
        for key in [0u64, 1, 0xf, 0x10, 0xabc, u64::MAX] {
            let tag = tag_for(key);
            assert_eq!(tag.len(), tag.capacity());
            assert_eq!(tag.len(), format!("{key:x}").len() + 9);
            let branch = branch_for(key);
            assert_eq!(branch.len(), branch.capacity());
            let call_id = call_id_for(key, "10.0.0.1");
            assert_eq!(call_id.len(), call_id.capacity());
        }
    }

    #[test]
    fn foreign_identifiers_are_not_ours() {
        assert_eq!(key_from_tag("as6151ad25"), None);
        assert_eq!(key_from_tag("x12"), None);
        assert_eq!(key_from_branch("z9hG4bKPj4a3b"), None);
        assert_eq!(key_from_branch("1234x5"), None);
        assert_eq!(key_from_tag("11111111111111111x1"), None);
    }

    #[tokio::test]
    async fn initial_invite_claims_are_exclusive() {
        let reg = CallRegistry::default();
        let (tx, _rx) = mpsc::channel(4);
        let key = reg.next_key();
        reg.insert(CallHandle::new(key, tx));
        assert_eq!(reg.claim_initial("c1", "f1", key), Ok(()));
        assert_eq!(reg.claim_initial("c1", "f1", 99), Err(key));
        assert_eq!(reg.find_initial("c1", "f1").map(|h| h.key), Some(key));
        reg.release_initial("c1", "f1");
        assert!(reg.find_initial("c1", "f1").is_none());
        assert_eq!(reg.initial_len(), 0);
        reg.remove(key);
        assert!(reg.is_empty());
    }

    #[tokio::test]
    async fn initial_invites_are_told_apart_by_both_identifiers() {
        let reg = CallRegistry::default();
        let mut inboxes = Vec::new();
        // Same concatenation, different split: two different dialogs.
        for (call_id, from_tag) in [("ab", "c"), ("a", "bc"), ("abc", "")] {
            let (tx, rx) = mpsc::channel(4);
            inboxes.push(rx);
            let key = reg.next_key();
            reg.insert(CallHandle::new(key, tx));
            assert_eq!(reg.claim_initial(call_id, from_tag, key), Ok(()));
        }
        assert_eq!(reg.initial_len(), 3);
        assert_eq!(reg.find_initial("ab", "c").map(|h| h.key), Some(1));
        assert_eq!(reg.find_initial("a", "bc").map(|h| h.key), Some(2));
        assert_eq!(reg.find_initial("abc", "").map(|h| h.key), Some(3));
        assert!(reg.find_initial("a", "b").is_none());
        reg.release_initial("a", "bc");
        assert!(reg.find_initial("a", "bc").is_none());
        assert_eq!(reg.find_initial("ab", "c").map(|h| h.key), Some(1));
        reg.release_initial("ab", "c");
        reg.release_initial("abc", "");
        assert_eq!(reg.initial_len(), 0);
    }

    #[tokio::test]
    async fn deliver_tells_a_missing_call_from_a_refusing_one() {
        let reg = CallRegistry::default();
        let (tx, rx) = mpsc::channel(1);
        let key = reg.next_key();
        reg.insert(CallHandle::new(key, tx));
        assert!(reg.deliver(key, CallEvent::QueueExpired).is_ok());
        // The inbox holds one event: the next is refused as busy, and handed back.
        assert!(matches!(
            reg.deliver(key, CallEvent::QueueExpired),
            Err(Undelivered::Refused(
                DeliverError::Busy,
                CallEvent::QueueExpired
            ))
        ));
        drop(rx);
        assert!(matches!(
            reg.deliver(key, CallEvent::QueueExpired),
            Err(Undelivered::Refused(
                DeliverError::Gone,
                CallEvent::QueueExpired
            ))
        ));
        reg.remove(key);
        assert!(matches!(
            reg.deliver(key, CallEvent::QueueExpired),
            Err(Undelivered::NoCall(CallEvent::QueueExpired))
        ));
        // Many sequential keys spread over the shards and stay retrievable.
        let (tx, _rx) = mpsc::channel(1);
        for _ in 0..10_000 {
            let key = reg.next_key();
            reg.insert(CallHandle::new(key, tx.clone()));
        }
        assert_eq!(reg.len(), 10_000);
        assert!(reg.handles().iter().all(|h| reg.get(h.key).is_some()));
    }
}
