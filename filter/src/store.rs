//! The key-value store behind all cross-worker state: proxy-wasm shared data in
//! the module, an in-memory map in native tests and benches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Version stamp of a stored value, as proxy-wasm shared data hands it out.
pub type Cas = u32;

/// A value read from the store, shared rather than copied: a decision reads a
/// key through [`ReadCache`] and may read it again, and each read hands out
/// the same bytes.
pub type Value = Rc<Vec<u8>>;

/// A map from store keys, hashed with foldhash (fixed seed) rather than std's SipHash:
/// the keys are the filter's own, a routing decision reads and writes dozens of them, and
/// SipHash showed among the hottest functions of a decision in the policy lab. Nothing
/// iterates these maps in an order that matters (only sizes and a test's key listing), so
/// no result changes.
type Map<V> = HashMap<String, V, foldhash::fast::FixedState>;

/// Why a write was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read; read it again and retry.
    #[error("value changed since it was read (CAS mismatch)")]
    CasMismatch,
    /// The host refused the write for another reason.
    #[error("shared data write refused by the host (proxy-wasm status {status})")]
    Host {
        /// The proxy-wasm status code the host returned.
        status: u32,
    },
}

/// Compare-and-swap key-value store with the semantics of proxy-wasm shared data.
pub trait SharedStore {
    /// The value under `key` and its CAS stamp, or `None` when absent or empty.
    fn get(&self, key: &str) -> Option<(Value, Cas)>;

    /// Writes `value` under `key`. With `cas = Some(c)` the write applies only
    /// if the stored stamp is still `c`; `None` writes unconditionally.
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError>;
}

/// How many times a read-modify-write is retried on CAS conflicts before it is
/// dropped; conflicts are rare (two workers touching one key at once) and a
/// dropped update only makes the index or a counter slightly stale.
pub const MAX_CAS_RETRIES: usize = 16;

/// Applies `update` to the value under `key` with CAS retries.
///
/// `update` receives the current bytes (`None` when absent) and returns the
/// new bytes, or `None` to leave the value unchanged. Returns whether a write
/// was applied.
pub fn update<S, F>(store: &S, key: &str, update: F) -> bool
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
{
    update_from(store, key, store.get(key), update)
}

/// [`update`] starting from `current`, a read of `key` the caller already
/// made (bytes and CAS stamp), so the common case costs no second read; a
/// stale read fails its CAS and is read again.
pub fn update_from<S, F>(store: &S, key: &str, mut current: Option<(Value, Cas)>, mut update: F) -> bool
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
{
    for _ in 0..MAX_CAS_RETRIES {
        let (bytes, cas) = match &current {
            Some((bytes, cas)) => (Some(bytes.as_slice()), Some(*cas)),
            None => (None, None),
        };
        let Some(next) = update(bytes) else {
            return false;
        };
        // An absent key has no stamp: write with cas 0, which proxy-wasm hosts
        // treat as unconditional; a racing first write is then last-one-wins.
        match store.set(key, &next, cas) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => current = store.get(key),
            Err(StoreError::Host { .. }) => return false,
        }
    }
    false
}

/// A [`SharedStore`] that remembers its reads for the length of one routing
/// decision, so a key read twice (a slot by the match, then by the insert; a
/// counter by the snapshot, then by its update) costs one host call.
///
/// Writes go through and forget the key; so does a CAS conflict, so that the
/// retry reads the store again rather than the stale copy.
pub struct ReadCache<'a> {
    inner: &'a dyn SharedStore,
    /// Key → what reading it returned (absent keys too).
    reads: RefCell<Map<Read>>,
}

/// One read of a key: its bytes and CAS stamp, or `None` when absent.
type Read = Option<(Value, Cas)>;

impl<'a> ReadCache<'a> {
    /// An empty cache in front of `inner`.
    pub fn new(inner: &'a dyn SharedStore) -> Self {
        // A routing decision reads a few dozen keys: start with room for them rather
        // than growing the map from empty on every decision.
        Self { inner, reads: RefCell::new(Map::with_capacity_and_hasher(64, Default::default())) }
    }
}

impl SharedStore for ReadCache<'_> {
    fn get(&self, key: &str) -> Option<(Value, Cas)> {
        if let Some(read) = self.reads.borrow().get(key) {
            return read.clone();
        }
        let read = self.inner.get(key);
        self.reads.borrow_mut().insert(key.to_owned(), read.clone());
        read
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        self.reads.borrow_mut().remove(key);
        self.inner.set(key, value, cas)
    }
}

/// An in-memory [`SharedStore`] with the CAS rules of proxy-wasm hosts, for
/// native tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RefCell<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    values: Map<(Value, Cas)>,
    next_cas: Cas,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held: every key plus every value, the footprint a host pays.
    pub fn byte_size(&self) -> usize {
        let inner = self.inner.borrow();
        inner.values.iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }

    /// Number of keys holding a value.
    pub fn len(&self) -> usize {
        self.inner.borrow().values.len()
    }

    /// Whether no key holds a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys that start with `prefix`, for tests that inspect the layout.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let inner = self.inner.borrow();
        inner.values.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Value, Cas)> {
        let inner = self.inner.borrow();
        inner.values.get(key).filter(|(v, _)| !v.is_empty()).map(|(v, c)| (Rc::clone(v), *c))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        let mut inner = self.inner.borrow_mut();
        if let Some(expected) = cas.filter(|c| *c != 0) {
            let current = inner.values.get(key).map(|(_, c)| *c);
            if current != Some(expected) {
                return Err(StoreError::CasMismatch);
            }
        }
        inner.next_cas = inner.next_cas.wrapping_add(1).max(1);
        let stamp = inner.next_cas;
        if value.is_empty() {
            inner.values.remove(key);
        } else if let Some((stored, stored_cas)) = inner.values.get_mut(key) {
            // Readers may still hold the old bytes: they keep them.
            *stored = Rc::new(value.to_vec());
            *stored_cas = stamp;
        } else {
            inner.values.insert(key.to_owned(), (Rc::new(value.to_vec()), stamp));
        }
        Ok(())
    }
}

/// A [`MemoryStore`] that counts the reads and writes reaching it, for
/// tests and benchmarks of how many host calls an operation costs.
#[derive(Debug, Default)]
pub struct CountingStore {
    inner: MemoryStore,
    /// Reads so far.
    pub gets: std::cell::Cell<usize>,
    /// Writes so far.
    pub sets: std::cell::Cell<usize>,
}

impl CountingStore {
    /// The store behind the counts (reading it counts nothing).
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }
}

impl SharedStore for CountingStore {
    fn get(&self, key: &str) -> Option<(Value, Cas)> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        self.sets.set(self.sets.get() + 1);
        self.inner.set(key, value, cas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_mismatch_is_reported() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let (_, cas) = store.get("k").unwrap();
        store.set("k", b"b", Some(cas)).unwrap();
        assert_eq!(store.set("k", b"c", Some(cas)), Err(StoreError::CasMismatch));
        assert_eq!(store.get("k").unwrap().0.as_slice(), b"b");
    }

    #[test]
    fn update_retries_until_applied() {
        let store = MemoryStore::new();
        store.set("n", b"", None).unwrap();
        store.set("n", b"1", None).unwrap();
        let mut calls = 0;
        let applied = update(&store, "n", |old| {
            calls += 1;
            if calls == 1 {
                // Another worker writes between our read and our write.
                store.set("n", b"x", None).unwrap();
            }
            let n = old.map_or(0, |b| b.len());
            Some(vec![b'1'; n + 1])
        });
        assert!(applied);
        assert_eq!(calls, 2);
        // The second attempt saw the concurrent write ("x") and built on it.
        assert_eq!(store.get("n").unwrap().0.as_slice(), b"11");
    }

    #[test]
    fn read_cache_reads_each_key_once_until_it_is_written() {
        let store = CountingStore::default();
        store.set("k", b"a", None).unwrap();
        let cache = ReadCache::new(&store);
        assert_eq!(cache.get("k").unwrap().0.as_slice(), b"a");
        assert_eq!(cache.get("k").unwrap().0.as_slice(), b"a");
        assert!(cache.get("absent").is_none());
        assert!(cache.get("absent").is_none());
        assert_eq!(store.gets.get(), 2);
        // A write forgets the key: the next read sees the new value.
        cache.set("k", b"b", None).unwrap();
        assert_eq!(cache.get("k").unwrap().0.as_slice(), b"b");
        assert_eq!(store.gets.get(), 3);
    }

    #[test]
    fn read_cache_retries_a_cas_conflict_on_a_fresh_read() {
        let store = MemoryStore::new();
        store.set("n", b"1", None).unwrap();
        let cache = ReadCache::new(&store);
        assert_eq!(cache.get("n").unwrap().0.as_slice(), b"1");
        // Another worker writes behind the cache's back.
        store.set("n", b"11", None).unwrap();
        let applied = update(&cache, "n", |old| {
            let mut next = old.unwrap_or_default().to_vec();
            next.push(b'1');
            Some(next)
        });
        assert!(applied);
        // The stale "1" failed its CAS; the retry built on the real "11".
        assert_eq!(store.get("n").unwrap().0.as_slice(), b"111");
    }

    #[test]
    fn empty_value_removes_the_key() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        store.set("k", b"", None).unwrap();
        assert!(store.get("k").is_none());
        assert!(store.is_empty());
    }
}
