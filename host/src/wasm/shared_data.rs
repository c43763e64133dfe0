//! Host-owned shared data: `vm_id → key → (value, cas)`, seen by every VM and
//! kept across module swaps.
//!
//! A VM resolves its namespace once, when it is created; each read or write
//! then locks only that namespace and copies no key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Result of a conditional set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored.
    Stored,
    /// The given cas did not match the current one.
    CasMismatch,
}

/// Keys are chosen by the filter; a seeded hasher keeps lookups fast without
/// making the table's layout predictable from outside.
type Entries = HashMap<Box<[u8]>, (Vec<u8>, u32), foldhash::fast::RandomState>;

#[derive(Default)]
struct NamespaceInner {
    entries: Entries,
    last_cas: u32,
}

/// One `vm_id`'s keys, with its own lock and cas counter (which skips 0).
#[derive(Default)]
pub struct Namespace {
    inner: Mutex<NamespaceInner>,
}

impl Namespace {
    fn lock(&self) -> std::sync::MutexGuard<'_, NamespaceInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies the value of `key` into `out` (replacing its contents) and
    /// returns its cas, or `None` if the key is not set.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Option<u32> {
        let inner = self.lock();
        let (value, cas) = inner.entries.get(key)?;
        out.clear();
        out.extend_from_slice(value);
        Some(*cas)
    }

    /// The value and cas of `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let mut out = Vec::new();
        self.get_into(key, &mut out).map(|cas| (out, cas))
    }

    /// Sets `key`; `cas` 0 is unconditional, otherwise it must match.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        let mut inner = self.lock();
        let NamespaceInner { entries, last_cas } = &mut *inner;
        let mut next_cas = || {
            *last_cas = last_cas.wrapping_add(1).max(1);
            *last_cas
        };
        match entries.get_mut(key) {
            Some((_, current)) if cas != 0 && *current != cas => return SetOutcome::CasMismatch,
            None if cas != 0 => return SetOutcome::CasMismatch,
            Some((stored, current)) => {
                stored.clear();
                stored.extend_from_slice(value);
                *current = next_cas();
            }
            None => {
                entries.insert(key.into(), (value.to_vec(), next_cas()));
            }
        }
        SetOutcome::Stored
    }

    fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        inner.entries.iter().fold((0, 0), |(n, b), (k, (v, _))| (n + 1, b + k.len() + v.len()))
    }
}

/// The shared-data store: one [`Namespace`] per `vm_id`.
#[derive(Default)]
pub struct SharedData {
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

impl SharedData {
    /// The namespace of `vm_id`, created on first use.
    pub fn namespace(&self, vm_id: &str) -> Arc<Namespace> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(namespaces.entry(vm_id.to_owned()).or_default())
    }

    /// Number of keys and total bytes held (for status and limits).
    pub fn usage(&self) -> (usize, usize) {
        let namespaces: Vec<Arc<Namespace>> =
            self.namespaces.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        namespaces.iter().map(|ns| ns.usage()).fold((0, 0), |(n, b), (kn, kb)| (n + kn, b + kb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules() {
        let d = SharedData::default();
        let vm = d.namespace("vm");
        assert!(vm.get(b"k").is_none());
        assert_eq!(vm.set(b"k", b"1", 0), SetOutcome::Stored);
        let (v, cas) = vm.get(b"k").unwrap_or_default();
        assert_eq!(v, b"1");
        assert_ne!(cas, 0);
        assert_eq!(vm.set(b"k", b"2", cas), SetOutcome::Stored);
        assert_eq!(vm.set(b"k", b"3", cas), SetOutcome::CasMismatch);
        assert_eq!(vm.get(b"k").unwrap_or_default().0, b"2");
        assert_eq!(vm.set(b"new", b"x", 77), SetOutcome::CasMismatch);
        assert!(vm.get(b"new").is_none());
        assert!(d.namespace("other").get(b"k").is_none());
    }

    #[test]
    fn namespaces_are_shared_by_name() {
        let d = SharedData::default();
        assert_eq!(d.namespace("vm").set(b"k", b"abc", 0), SetOutcome::Stored);
        assert_eq!(d.namespace("vm").get(b"k").map(|(v, _)| v), Some(b"abc".to_vec()));
        assert_eq!(d.namespace("other").set(b"k2", b"z", 0), SetOutcome::Stored);
        // Two keys: "k" → "abc" and "k2" → "z".
        assert_eq!(d.usage(), (2, 1 + 3 + 2 + 1));
    }

    #[test]
    fn get_into_replaces_the_buffer() {
        let d = SharedData::default();
        let vm = d.namespace("vm");
        vm.set(b"k", b"xy", 0);
        let mut out = b"leftover".to_vec();
        assert!(vm.get_into(b"k", &mut out).is_some());
        assert_eq!(out, b"xy");
    }
}
