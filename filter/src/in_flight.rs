//! Requests in flight per backend, counted per VM so that the count heals
//! itself when a VM goes away.
//!
//! A request is counted when it is routed and uncounted in `on_log`. A VM
//! that traps (or is replaced by a swap) never runs `on_log` for the requests
//! it had in flight, so a single shared counter would leak them for good.
//! Instead each VM keeps its own count in the backend's record and proves it
//! is alive with a heartbeat in a shared list of VMs, refreshed on every tick
//! (and lazily by routing). Readers sum the counts of live VMs only: the
//! counts of a VM that stopped beating vanish once its heartbeat is older
//! than the expiry, and the next request routed to that backend drops them
//! from the record.
//!
//! Layout, fixed-width little-endian (read on every decision, so no JSON):
//! - `pg/vms`: `(vm u64, heartbeat_ms u64)` per live VM;
//! - `pg/inflight/<address>`: `(vm u64, count u32)` per VM with requests there.

use crate::store::{update, SharedStore};
use crate::wire::{u32_at, u64_at};

/// Shared-data key of the VM heartbeat list.
const VMS_KEY: &str = "pg/vms";
/// Bytes of one heartbeat entry.
const VM_ENTRY: usize = 16;
/// Bytes of one per-VM count.
const COUNT_ENTRY: usize = 12;
/// Most VMs the heartbeat list keeps (the oldest beyond it are dropped);
/// Envoy runs one VM per worker thread, prefixgate one per VM slot.
const MAX_VMS: usize = 256;

/// The VMs alive at one instant: those whose heartbeat is younger than the expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveVms {
    vms: Vec<u64>,
    /// Whether `self_vm` needs its heartbeat refreshed (absent or half expired).
    stale_self: bool,
}

impl LiveVms {
    /// Reads the heartbeat list as `vm` sees it at `now_ms`.
    pub fn read<S: SharedStore + ?Sized>(store: &S, vm: u64, now_ms: u64, expiry_ms: u64) -> Self {
        let entries = store.get(VMS_KEY).map(|(bytes, _)| decode_vms(&bytes)).unwrap_or_default();
        let own = entries.iter().find(|(id, _)| *id == vm).map(|(_, beat)| *beat);
        let mut vms: Vec<u64> = entries
            .iter()
            .filter(|(id, beat)| *id != vm && now_ms.saturating_sub(*beat) < expiry_ms)
            .map(|(id, _)| *id)
            .collect();
        vms.push(vm);
        let stale_self = own.is_none_or(|beat| now_ms.saturating_sub(beat) >= expiry_ms / 2);
        Self { vms, stale_self }
    }

    /// Whether `vm`'s counts are to be believed.
    pub fn contains(&self, vm: u64) -> bool {
        self.vms.contains(&vm)
    }
}

/// Records that `vm` is alive at `now_ms`, and drops VMs whose heartbeat is
/// older than `expiry_ms` from the list.
pub fn heartbeat<S: SharedStore + ?Sized>(store: &S, vm: u64, now_ms: u64, expiry_ms: u64) {
    update(store, VMS_KEY, |bytes| {
        let mut entries: Vec<(u64, u64)> = bytes
            .map(decode_vms)
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, beat)| *id != vm && now_ms.saturating_sub(*beat) < expiry_ms)
            .collect();
        entries.push((vm, now_ms));
        if entries.len() > MAX_VMS {
            entries.sort_by_key(|(_, beat)| std::cmp::Reverse(*beat));
            entries.truncate(MAX_VMS);
        }
        Some(
            entries
                .iter()
                .flat_map(|(id, beat)| id.to_le_bytes().into_iter().chain(beat.to_le_bytes()))
                .collect(),
        )
    });
}

/// Refreshes `vm`'s heartbeat if `live` (read this decision) says it is due,
/// so a host that never ticks still keeps its VM alive while it routes.
pub fn heartbeat_if_due<S: SharedStore + ?Sized>(
    store: &S,
    live: &LiveVms,
    vm: u64,
    now_ms: u64,
    expiry_ms: u64,
) {
    if live.stale_self {
        heartbeat(store, vm, now_ms, expiry_ms);
    }
}

/// Requests in flight to `address`, summed over the live VMs.
pub fn count<S: SharedStore + ?Sized>(store: &S, address: &str, live: &LiveVms) -> u64 {
    let Some((bytes, _)) = store.get(&key(address)) else {
        return 0;
    };
    decode_counts(&bytes).into_iter().filter(|(vm, _)| live.contains(*vm)).map(|(_, n)| u64::from(n)).sum()
}

/// Counts a request `vm` routed to `address`, unless the live VMs already
/// have `cap` requests there (`max_ongoing_requests`): the check and the
/// count are one compare-and-swap, so two VMs routing at once cannot both
/// take a backend's last place. Drops the counts of VMs that are no longer
/// alive from the record on the way. Returns whether the request was counted.
pub fn begin<S: SharedStore + ?Sized>(
    store: &S,
    address: &str,
    vm: u64,
    live: &LiveVms,
    cap: Option<u64>,
) -> bool {
    let mut full = false;
    let counted = update(store, &key(address), |bytes| {
        let mut counts: Vec<(u64, u32)> = bytes
            .map(decode_counts)
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, n)| *n > 0 && (*id == vm || live.contains(*id)))
            .collect();
        let total: u64 = counts.iter().map(|(_, n)| u64::from(*n)).sum();
        full = cap.is_some_and(|cap| total >= cap);
        if full {
            return None;
        }
        match counts.iter_mut().find(|(id, _)| *id == vm) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => counts.push((vm, 1)),
        }
        Some(encode_counts(&counts))
    });
    // A write the store refused (CAS retries exhausted, host error) leaves
    // the count low but must not refuse the request.
    counted || !full
}

/// Writes an idle record for `address` if it has none, so that the first
/// requests routed there are counted by compare-and-swap like every later
/// one (an absent key has no stamp to check). Called when a configuration
/// is applied, before the backend takes traffic.
pub fn ensure_record<S: SharedStore + ?Sized>(store: &S, address: &str) {
    let key = key(address);
    if store.get(&key).is_none() {
        // Ignored on failure: the first write of `begin` is then unconditional.
        let _ = store.set(&key, &encode_counts(&[]), None);
    }
}

/// Counts a request `vm` routed to `address` as finished.
pub fn end<S: SharedStore + ?Sized>(store: &S, address: &str, vm: u64) {
    update(store, &key(address), |bytes| {
        let mut counts = bytes.map(decode_counts).unwrap_or_default();
        let at = counts.iter().position(|(id, _)| *id == vm)?;
        counts[at].1 = counts[at].1.saturating_sub(1);
        if counts[at].1 == 0 {
            counts.swap_remove(at);
        }
        Some(encode_counts(&counts))
    });
}

/// `pg/inflight/<address>`, by concatenation: a decision builds one per
/// backend, and `format!`'s machinery showed in its profile.
fn key(address: &str) -> String {
    const PREFIX: &str = "pg/inflight/";
    let mut key = String::with_capacity(PREFIX.len() + address.len());
    key.push_str(PREFIX);
    key.push_str(address);
    key
}

fn decode_vms(bytes: &[u8]) -> Vec<(u64, u64)> {
    (0..bytes.len() / VM_ENTRY)
        .filter_map(|i| Some((u64_at(bytes, i * VM_ENTRY)?, u64_at(bytes, i * VM_ENTRY + 8)?)))
        .collect()
}

fn decode_counts(bytes: &[u8]) -> Vec<(u64, u32)> {
    (0..bytes.len() / COUNT_ENTRY)
        .filter_map(|i| Some((u64_at(bytes, i * COUNT_ENTRY)?, u32_at(bytes, i * COUNT_ENTRY + 8)?)))
        .collect()
}

/// Encodes per-VM counts; no counts at all is one zero entry rather than an
/// empty value, which reads as absent and whose next write would then be
/// unconditional (no CAS stamp to check).
fn encode_counts(counts: &[(u64, u32)]) -> Vec<u8> {
    if counts.is_empty() {
        return vec![0; COUNT_ENTRY];
    }
    counts.iter().flat_map(|(vm, n)| vm.to_le_bytes().into_iter().chain(n.to_le_bytes())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use proptest::prelude::*;

    const EXPIRY: u64 = 500;

    fn live(store: &MemoryStore, vm: u64, now: u64) -> LiveVms {
        LiveVms::read(store, vm, now, EXPIRY)
    }

    #[test]
    fn counts_of_a_vm_that_stops_beating_vanish_after_the_expiry() {
        let store = MemoryStore::new();
        heartbeat(&store, 1, 0, EXPIRY);
        heartbeat(&store, 2, 0, EXPIRY);
        for _ in 0..3 {
            begin(&store, "a", 1, &live(&store, 1, 0), None);
        }
        begin(&store, "a", 2, &live(&store, 2, 0), None);
        assert_eq!(count(&store, "a", &live(&store, 2, 100)), 4);
        // VM 1 traps: it never beats again and never ends its requests.
        heartbeat(&store, 2, 400, EXPIRY);
        assert_eq!(count(&store, "a", &live(&store, 2, 499)), 4);
        assert_eq!(count(&store, "a", &live(&store, 2, 500)), 1);
        // The next request routed there drops VM 1's counts from the record.
        begin(&store, "a", 2, &live(&store, 2, 600), None);
        let (bytes, _) = store.get("pg/inflight/a").unwrap();
        assert_eq!(decode_counts(&bytes), vec![(2, 2)]);
        end(&store, "a", 2);
        end(&store, "a", 2);
        assert_eq!(count(&store, "a", &live(&store, 2, 600)), 0);
    }

    #[test]
    fn a_vm_always_believes_its_own_counts() {
        let store = MemoryStore::new();
        // Never beat: its own requests still count for it, and it is due a beat.
        let view = live(&store, 7, 1_000);
        assert!(view.stale_self);
        begin(&store, "a", 7, &view, None);
        assert_eq!(count(&store, "a", &live(&store, 7, 1_000)), 1);
        // Others do not believe it until it beats.
        assert_eq!(count(&store, "a", &live(&store, 8, 1_000)), 0);
        heartbeat_if_due(&store, &view, 7, 1_000, EXPIRY);
        assert_eq!(count(&store, "a", &live(&store, 8, 1_000)), 1);
        assert!(!live(&store, 7, 1_100).stale_self);
        assert!(live(&store, 7, 1_250).stale_self);
    }

    #[test]
    fn a_cap_admits_no_more_than_its_count_across_vms() {
        let store = MemoryStore::new();
        ensure_record(&store, "a");
        heartbeat(&store, 1, 0, EXPIRY);
        heartbeat(&store, 2, 0, EXPIRY);
        // Both VMs read their view before either counts, as two workers
        // routing at once do: only one takes the last place.
        let (one, two) = (live(&store, 1, 0), live(&store, 2, 0));
        assert!(begin(&store, "a", 1, &one, Some(1)));
        assert!(!begin(&store, "a", 2, &two, Some(1)));
        assert_eq!(count(&store, "a", &live(&store, 2, 0)), 1);
        // Once the request ends there is room again.
        end(&store, "a", 1);
        assert!(begin(&store, "a", 2, &two, Some(1)));
        // The counts of a dead VM do not take places.
        assert!(!begin(&store, "a", 1, &live(&store, 1, 0), Some(1)));
        heartbeat(&store, 1, 600, EXPIRY);
        assert!(begin(&store, "a", 1, &live(&store, 1, 600), Some(1)));
    }

    #[test]
    fn ensure_record_keeps_existing_counts() {
        let store = MemoryStore::new();
        begin(&store, "a", 1, &live(&store, 1, 0), None);
        ensure_record(&store, "a");
        assert_eq!(count(&store, "a", &live(&store, 1, 0)), 1);
        ensure_record(&store, "b");
        assert!(store.get("pg/inflight/b").is_some());
        assert_eq!(count(&store, "b", &live(&store, 1, 0)), 0);
    }

    #[test]
    fn end_never_goes_negative_and_ignores_unknown_vms() {
        let store = MemoryStore::new();
        heartbeat(&store, 1, 0, EXPIRY);
        end(&store, "a", 1);
        begin(&store, "a", 1, &live(&store, 1, 0), None);
        end(&store, "a", 9);
        end(&store, "a", 1);
        end(&store, "a", 1);
        assert_eq!(count(&store, "a", &live(&store, 1, 0)), 0);
    }

    #[test]
    fn the_heartbeat_list_forgets_dead_vms_and_stays_bounded() {
        let store = MemoryStore::new();
        for vm in 0..(MAX_VMS as u64 + 50) {
            heartbeat(&store, vm, vm, 1_000_000);
        }
        let (bytes, _) = store.get(VMS_KEY).unwrap();
        assert_eq!(decode_vms(&bytes).len(), MAX_VMS);
        heartbeat(&store, 1_000, 2_000_000, 1_000);
        let (bytes, _) = store.get(VMS_KEY).unwrap();
        assert_eq!(decode_vms(&bytes), vec![(1_000, 2_000_000)]);
    }

    /// One step of a fleet of VMs: route, finish, beat, or trap.
    #[derive(Clone, Debug)]
    enum Step {
        Begin { vm: u64, backend: u8 },
        End { vm: u64, backend: u8 },
        Beat { vm: u64 },
        Trap { vm: u64 },
        Wait { ms: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..4u64, 0..3u8).prop_map(|(vm, backend)| Step::Begin { vm, backend }),
            (0..4u64, 0..3u8).prop_map(|(vm, backend)| Step::End { vm, backend }),
            (0..4u64).prop_map(|vm| Step::Beat { vm }),
            (0..4u64).prop_map(|vm| Step::Trap { vm }),
            (1..400u64).prop_map(|ms| Step::Wait { ms }),
        ]
    }

    proptest! {
        /// Against a model that knows which requests are really in flight:
        /// every VM that beat within the expiry has its requests counted
        /// exactly, and once every VM has trapped or finished its requests
        /// and one expiry has passed with the survivors beating, the count
        /// is exactly what the survivors still have in flight.
        #[test]
        fn counts_match_live_requests_and_heal_after_traps(steps in proptest::collection::vec(step(), 1..120)) {
            let store = MemoryStore::new();
            // vm -> generation; a trapped VM comes back as a new VM id.
            let mut generation = [0u64; 4];
            let id = |vm: u64, generation: &[u64; 4]| vm * 1_000 + generation[vm as usize];
            // Model: requests in flight per (vm id, backend).
            let mut model: std::collections::HashMap<(u64, u8), u64> = Default::default();
            let mut now = 0u64;
            for vm in 0..4 {
                heartbeat(&store, id(vm, &generation), now, EXPIRY);
            }
            for s in steps {
                match s {
                    Step::Begin { vm, backend } => {
                        let me = id(vm, &generation);
                        let view = LiveVms::read(&store, me, now, EXPIRY);
                        heartbeat_if_due(&store, &view, me, now, EXPIRY);
                        begin(&store, &backend.to_string(), me, &view, None);
                        *model.entry((me, backend)).or_default() += 1;
                    }
                    Step::End { vm, backend } => {
                        let me = id(vm, &generation);
                        if let Some(n) = model.get_mut(&(me, backend)).filter(|n| **n > 0) {
                            *n -= 1;
                            end(&store, &backend.to_string(), me);
                        }
                    }
                    Step::Beat { vm } => heartbeat(&store, id(vm, &generation), now, EXPIRY),
                    Step::Trap { vm } => {
                        let dead = id(vm, &generation);
                        model.retain(|(v, _), _| *v != dead);
                        generation[vm as usize] += 1;
                        heartbeat(&store, id(vm, &generation), now, EXPIRY);
                    }
                    Step::Wait { ms } => {
                        // Live VMs tick faster than the expiry.
                        now += ms;
                        for vm in 0..4 {
                            heartbeat(&store, id(vm, &generation), now, EXPIRY);
                        }
                    }
                }
            }
            // One expiry later, with every surviving VM beating.
            now += EXPIRY;
            for vm in 0..4 {
                heartbeat(&store, id(vm, &generation), now, EXPIRY);
            }
            for backend in 0..3u8 {
                let expected: u64 = model.iter().filter(|((_, b), _)| *b == backend).map(|(_, n)| *n).sum();
                let view = LiveVms::read(&store, u64::MAX, now, EXPIRY);
                prop_assert_eq!(count(&store, &backend.to_string(), &view), expected, "backend {}", backend);
            }
        }
    }
}
