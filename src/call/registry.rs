//! The call router (DESIGN.md §1): maps a message to the actor that owns its call.
//!
//! Every tag, branch and Call-ID that handover generates for a call embeds the call's key
//! (`<key in hex>x<random>`), so responses (by top-Via branch) and in-dialog requests (by our
//! tag in To) find their actor without a per-transaction map. Only initial INVITEs from a peer
//! need a lookup by the peer's identifiers — (Call-ID, From tag) — for retransmissions and
//! CANCEL. Both maps are sharded; a shard's mutex is held for one `HashMap` operation, never
//! across an await, and never on behalf of more than one call.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::CallEvent;

/// Identifies one call actor for its lifetime; never reused within a process.
pub type CallKey = u64;

const SHARDS: usize = 16;
const MAGIC_COOKIE: &str = "z9hG4bK";

/// (Call-ID, From tag) of a peer's initial INVITE → the call it started.
type InitialMap = HashMap<(Box<str>, Box<str>), CallKey>;

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

/// Sharded maps from keys and peer dialog identifiers to call handles.
pub struct CallRegistry {
    next_key: AtomicU64,
    hasher: RandomState,
    calls: Vec<Mutex<HashMap<CallKey, CallHandle>>>,
    initial: Vec<Mutex<InitialMap>>,
}

impl Default for CallRegistry {
    fn default() -> Self {
        CallRegistry {
            next_key: AtomicU64::new(1),
            hasher: RandomState::new(),
            calls: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            initial: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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

    fn initial_shard(&self, call_id: &str, from_tag: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        call_id.hash(&mut h);
        from_tag.hash(&mut h);
        (h.finish() as usize) % SHARDS
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

    /// Remembers that the peer's INVITE (Call-ID, From tag) belongs to call `key`.
    /// Returns the existing owner instead if the pair is already taken.
    pub fn claim_initial(
        &self,
        call_id: &str,
        from_tag: &str,
        key: CallKey,
    ) -> Result<(), CallKey> {
        let shard = self.initial_shard(call_id, from_tag);
        let Some(shard) = self.initial.get(shard) else {
            return Ok(());
        };
        let mut map = lock(shard);
        if let Some(existing) = map.get(&(Box::from(call_id), Box::from(from_tag))) {
            return Err(*existing);
        }
        map.insert((call_id.into(), from_tag.into()), key);
        Ok(())
    }

    pub fn find_initial(&self, call_id: &str, from_tag: &str) -> Option<CallHandle> {
        let shard = self.initial_shard(call_id, from_tag);
        let key = {
            let map = lock(self.initial.get(shard)?);
            *map.get(&(Box::from(call_id), Box::from(from_tag)))?
        };
        self.get(key)
    }

    pub fn release_initial(&self, call_id: &str, from_tag: &str) {
        let shard = self.initial_shard(call_id, from_tag);
        if let Some(shard) = self.initial.get(shard) {
            lock(shard).remove(&(Box::from(call_id), Box::from(from_tag)));
        }
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

/// A tag that names its call: `<key hex>x<random hex>`.
pub fn tag_for(key: CallKey) -> String {
    format!("{key:x}x{:08x}", fastrand::u32(..))
}

/// A branch that names its call: `z9hG4bK<key hex>x<random hex>`.
pub fn branch_for(key: CallKey) -> String {
    format!("{MAGIC_COOKIE}{key:x}x{:016x}", fastrand::u64(..))
}

/// A Call-ID for a dialog handover starts (agent and target legs).
pub fn call_id_for(key: CallKey, host: &str) -> String {
    format!("{key:x}x{:016x}@{host}", fastrand::u64(..))
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
        reg.remove(key);
        assert!(reg.is_empty());
    }
}
