//! The transactions of one call: a handful at a time (an INVITE, its CANCEL, a BYE, a
//! re-INVITE, a NOTIFY), so a small vector searched linearly beats a hash map on both time
//! and memory. It gives memory back as transactions end: a call that is only being held
//! has none or one, and a held call's footprint is what the bytes-per-call figure measures.

use super::core::TxnKey;

/// Entries by transaction key (generic so it is testable without a server).
#[derive(Debug)]
pub struct TxnTable<E>(Vec<(TxnKey, E)>);

impl<E> Default for TxnTable<E> {
    fn default() -> Self {
        TxnTable(Vec::new())
    }
}

impl<E> TxnTable<E> {
    pub fn get(&self, key: &TxnKey) -> Option<&E> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    pub fn get_mut(&mut self, key: &TxnKey) -> Option<&mut E> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    /// Inserts or replaces the entry of `key`; returns the replaced one.
    pub fn insert(&mut self, key: TxnKey, entry: E) -> Option<E> {
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, entry)),
            None => {
                self.0.push((key, entry));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &TxnKey) -> Option<E> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        let (_, entry) = self.0.swap_remove(i);
        if self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
        Some(entry)
    }

    pub fn contains_key(&self, key: &TxnKey) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TxnKey, &E)> {
        self.0.iter().map(|(k, e)| (k, e))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&TxnKey, &mut E)> {
        self.0.iter_mut().map(|(k, e)| (&*k, e))
    }

    pub fn values(&self) -> impl Iterator<Item = &E> {
        self.0.iter().map(|(_, e)| e)
    }
}

impl<E> IntoIterator for TxnTable<E> {
    type Item = (TxnKey, E);
    type IntoIter = std::vec::IntoIter<(TxnKey, E)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> TxnKey {
        TxnKey::Client(format!("z9hG4bK{i}").into())
    }

    #[test]
    fn finds_replaces_and_removes_by_key() {
        let mut t = TxnTable::default();
        assert_eq!(t.insert(key(1), "a"), None);
        assert_eq!(t.insert(TxnKey::Retransmit2xx(0), "b"), None);
        assert_eq!(t.insert(key(1), "c"), Some("a"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&key(1)), Some(&"c"));
        assert!(t.contains_key(&TxnKey::Retransmit2xx(0)));
        assert_eq!(t.remove(&key(2)), None);
        assert_eq!(t.remove(&key(1)), Some("c"));
        assert_eq!(t.values().copied().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn gives_memory_back_as_entries_go() {
        let mut t = TxnTable::default();
        for i in 0..8 {
            t.insert(key(i), i);
        }
        for i in 0..7 {
            t.remove(&key(i));
        }
        assert_eq!(t.len(), 1);
        assert!(t.0.capacity() <= 2, "{}", t.0.capacity());
        t.remove(&key(7));
        assert_eq!(t.0.capacity(), 0, "an empty table holds no memory");
    }
}
