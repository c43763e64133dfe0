//! Host-owned shared data: `vm_id → key → (value, cas)`, seen by every VM and
//! kept across module swaps.

use std::collections::HashMap;
use std::sync::Mutex;

/// Result of a conditional set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored.
    Stored,
    /// The given cas did not match the current one.
    CasMismatch,
}

/// One namespace: key → (value, cas).
type Namespace = HashMap<Vec<u8>, (Vec<u8>, u32)>;

#[derive(Default)]
struct Inner {
    map: HashMap<String, Namespace>,
    last_cas: u32,
}

/// The shared-data store (one mutex, one global cas counter that skips 0).
#[derive(Default)]
pub struct SharedData {
    inner: Mutex<Inner>,
}

impl SharedData {
    /// The value and cas of `key`, if set.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(vm_id).and_then(|m| m.get(key)).cloned()
    }

    /// Sets `key`; `cas` 0 is unconditional, otherwise it must match.
    pub fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> SetOutcome {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let current = inner.map.get(vm_id).and_then(|m| m.get(key)).map(|(_, c)| *c);
        if cas != 0 && current != Some(cas) {
            return SetOutcome::CasMismatch;
        }
        inner.last_cas = inner.last_cas.wrapping_add(1).max(1);
        let next = inner.last_cas;
        inner.map.entry(vm_id.to_string()).or_default().insert(key.to_vec(), (value.to_vec(), next));
        SetOutcome::Stored
    }

    /// Number of keys and total bytes held (for status and limits).
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .map
            .values()
            .flat_map(|m| m.iter())
            .fold((0, 0), |(n, b), (k, (v, _))| (n + 1, b + k.len() + v.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules() {
        let d = SharedData::default();
        assert!(d.get("vm", b"k").is_none());
        assert_eq!(d.set("vm", b"k", b"1", 0), SetOutcome::Stored);
        let (v, cas) = d.get("vm", b"k").unwrap_or_default();
        assert_eq!(v, b"1");
        assert_ne!(cas, 0);
        assert_eq!(d.set("vm", b"k", b"2", cas), SetOutcome::Stored);
        assert_eq!(d.set("vm", b"k", b"3", cas), SetOutcome::CasMismatch);
        assert_eq!(d.set("vm", b"new", b"x", 77), SetOutcome::CasMismatch);
        assert!(d.get("other", b"k").is_none());
    }
}
