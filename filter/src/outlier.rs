//! Passive health: the outcome of every response counts, and a backend that
//! keeps failing is ejected, then re-admitted through a half-open probe.
//!
//! A replica whose engine is dead behind a live HTTP server answers 500 at
//! once while its `/metrics` looks healthy: it looks least loaded, and
//! prefix affinity keeps whole conversations on it. So every response status
//! the filter sees is recorded in shared data (all workers and both hosts
//! see the same state):
//!
//! - **closed**: consecutive failures (5xx, or a request the host could not
//!   deliver) are counted; a success resets them. At `eject_after_failures`
//!   in a row the backend is ejected for `ejection_ms`.
//! - **ejected**: skipped by every policy until the ejection ends.
//! - **half-open**: the ejection is over; the backend takes one probe
//!   request at a time (it is skipped while a probe is outstanding). A
//!   success closes it; a failure ejects it again for twice as long as the
//!   last time, up to `max_ejection_ms`.
//!
//! One record per address in the table under `pg/health`, fixed width:
//! consecutive failures u32, ejections in a row u32, ejected until u64 (0 =
//! never ejected since the last success), probe outstanding until u64. A
//! backend with no record is closed with no failures, so healthy traffic
//! costs no writes.

use crate::record_table;
use crate::store::SharedStore;
use crate::wire::{u32_at, u64_at};

/// Settings of passive health (from the plugin configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Consecutive failures that eject a backend; 0 disables ejection.
    pub eject_after_failures: u32,
    /// First ejection's length; each further one in a row doubles it.
    pub ejection_ms: u64,
    /// Longest ejection.
    pub max_ejection_ms: u64,
}

/// What became of a backend after an outcome was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed state (a failure counted, or a success on a closed backend).
    None,
    /// The backend was ejected until the given host time.
    Ejected {
        /// Host time (ms) the ejection ends.
        until_ms: u64,
    },
    /// A success closed an ejected or half-open backend.
    Readmitted,
}

/// A backend's passive health at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    record: Record,
    now_ms: u64,
}

impl Health {
    /// Reads `address`'s record as seen at `now_ms`.
    pub fn read<S: SharedStore + ?Sized>(store: &S, address: &str, now_ms: u64) -> Self {
        let record =
            record_table::read(store, HEALTH_KEY, address).map(|b| Record::decode(&b)).unwrap_or_default();
        Self { record, now_ms }
    }

    /// Whether policies may pick the backend now: closed, or half-open with
    /// no probe outstanding.
    pub fn admits_requests(&self) -> bool {
        let r = &self.record;
        r.ejected_until_ms == 0 || (self.now_ms >= r.ejected_until_ms && self.now_ms >= r.probe_until_ms)
    }

    /// Whether the backend is ejected right now (not yet half-open).
    pub fn is_ejected(&self) -> bool {
        self.now_ms < self.record.ejected_until_ms
    }

    /// Whether a request sent now is a half-open probe.
    pub fn is_half_open(&self) -> bool {
        self.record.ejected_until_ms != 0 && self.now_ms >= self.record.ejected_until_ms
    }
}

/// Marks a half-open backend as probed until `now_ms + window_ms`, so that
/// other requests skip it until the probe's outcome is known (or the window
/// passes, if the outcome never arrives).
pub fn claim_probe<S: SharedStore + ?Sized>(store: &S, address: &str, now_ms: u64, window_ms: u64) {
    record_table::update(store, HEALTH_KEY, address, |bytes| {
        let mut record = bytes.map(Record::decode).unwrap_or_default();
        let half_open = record.ejected_until_ms != 0 && now_ms >= record.ejected_until_ms;
        if !half_open {
            return None;
        }
        record.probe_until_ms = now_ms.saturating_add(window_ms);
        Some(record.encode())
    });
}

/// Records one response outcome of `address` at `now_ms`.
pub fn record_outcome<S: SharedStore + ?Sized>(
    store: &S,
    address: &str,
    success: bool,
    now_ms: u64,
    settings: &OutlierSettings,
) -> Transition {
    let mut transition = Transition::None;
    record_table::update(store, HEALTH_KEY, address, |bytes| {
        let before = bytes.map(Record::decode).unwrap_or_default();
        let (next, t) = before.after(success, now_ms, settings);
        transition = t;
        (next != before).then(|| next.encode())
    });
    transition
}

/// Failure statuses: 5xx. (429 and other 4xx are the request's or the
/// client's problem, not the replica's.)
pub fn is_failure_status(status: u16) -> bool {
    (500..600).contains(&status)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Record {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until_ms: u64,
    probe_until_ms: u64,
}

impl Record {
    const BYTES: usize = 4 + 4 + 8 + 8;

    /// The record after one outcome, and what changed.
    fn after(self, success: bool, now_ms: u64, s: &OutlierSettings) -> (Self, Transition) {
        if success {
            let readmitted = self.ejected_until_ms != 0;
            let t = if readmitted { Transition::Readmitted } else { Transition::None };
            return (Self::default(), t);
        }
        let mut next = self;
        next.consecutive_failures = next.consecutive_failures.saturating_add(1);
        if s.eject_after_failures == 0 {
            return (next, Transition::None);
        }
        let ejected_now = now_ms < self.ejected_until_ms;
        let half_open = self.ejected_until_ms != 0 && !ejected_now;
        if ejected_now || !(half_open || next.consecutive_failures >= s.eject_after_failures) {
            return (next, Transition::None);
        }
        next.ejections = next.ejections.saturating_add(1);
        let doublings = next.ejections.saturating_sub(1).min(32);
        let length =
            s.ejection_ms.saturating_mul(1u64 << doublings).min(s.max_ejection_ms.max(s.ejection_ms));
        next.ejected_until_ms = now_ms.saturating_add(length).max(1);
        next.probe_until_ms = 0;
        next.consecutive_failures = 0;
        (next, Transition::Ejected { until_ms: next.ejected_until_ms })
    }

    /// The default record encodes as nothing, which removes the key.
    fn encode(&self) -> Vec<u8> {
        if *self == Self::default() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(Self::BYTES);
        out.extend_from_slice(&self.consecutive_failures.to_le_bytes());
        out.extend_from_slice(&self.ejections.to_le_bytes());
        out.extend_from_slice(&self.ejected_until_ms.to_le_bytes());
        out.extend_from_slice(&self.probe_until_ms.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Self {
        Self {
            consecutive_failures: u32_at(bytes, 0).unwrap_or(0),
            ejections: u32_at(bytes, 4).unwrap_or(0),
            ejected_until_ms: u64_at(bytes, 8).unwrap_or(0),
            probe_until_ms: u64_at(bytes, 16).unwrap_or(0),
        }
    }
}

/// Shared-data key of every backend's health record.
const HEALTH_KEY: &str = "pg/health";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use proptest::prelude::*;

    const S: OutlierSettings =
        OutlierSettings { eject_after_failures: 3, ejection_ms: 1_000, max_ejection_ms: 3_000 };

    fn fail(store: &MemoryStore, now: u64) -> Transition {
        record_outcome(store, "a", false, now, &S)
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let store = MemoryStore::new();
        assert_eq!(fail(&store, 0), Transition::None);
        assert_eq!(fail(&store, 0), Transition::None);
        assert_eq!(record_outcome(&store, "a", true, 0, &S), Transition::None);
        assert!(store.get(HEALTH_KEY).is_none(), "a success leaves no record behind");
        fail(&store, 0);
        fail(&store, 0);
        assert_eq!(fail(&store, 10), Transition::Ejected { until_ms: 1_010 });
        let h = Health::read(&store, "a", 500);
        assert!(h.is_ejected() && !h.admits_requests());
        // Failures of requests still in flight do not extend the ejection.
        assert_eq!(fail(&store, 600), Transition::None);
        assert!(!Health::read(&store, "a", 1_010).is_ejected());
    }

    #[test]
    fn half_open_takes_one_probe_and_backs_off_on_failure() {
        let store = MemoryStore::new();
        for _ in 0..3 {
            fail(&store, 0);
        }
        let h = Health::read(&store, "a", 1_000);
        assert!(h.is_half_open() && h.admits_requests());
        claim_probe(&store, "a", 1_000, 5_000);
        assert!(!Health::read(&store, "a", 1_001).admits_requests(), "one probe at a time");
        // The probe fails: ejected again, twice as long.
        assert_eq!(fail(&store, 1_100), Transition::Ejected { until_ms: 3_100 });
        for now in [3_100, 7_100] {
            claim_probe(&store, "a", now, 5_000);
            let Transition::Ejected { until_ms } = fail(&store, now) else {
                panic!("probe failure re-ejects")
            };
            // Capped at max_ejection_ms.
            assert_eq!(until_ms, now + 3_000);
        }
        // A probe that never reports frees the slot after its window.
        claim_probe(&store, "a", 10_100, 5_000);
        assert!(!Health::read(&store, "a", 15_099).admits_requests());
        assert!(Health::read(&store, "a", 15_100).admits_requests());
        assert_eq!(record_outcome(&store, "a", true, 15_200, &S), Transition::Readmitted);
        assert!(store.get(HEALTH_KEY).is_none(), "a success leaves no record behind");
        // The next ejection starts from the first length again.
        for _ in 0..3 {
            fail(&store, 20_000);
        }
        assert!(Health::read(&store, "a", 20_999).is_ejected());
        assert!(!Health::read(&store, "a", 21_000).is_ejected());
    }

    #[test]
    fn claiming_a_probe_on_a_closed_backend_writes_nothing() {
        let store = MemoryStore::new();
        claim_probe(&store, "a", 0, 1_000);
        assert!(store.is_empty());
        assert!(Health::read(&store, "a", 0).admits_requests());
    }

    #[test]
    fn zero_disables_ejection() {
        let store = MemoryStore::new();
        let off = OutlierSettings { eject_after_failures: 0, ..S };
        for _ in 0..100 {
            record_outcome(&store, "a", false, 0, &off);
        }
        assert!(Health::read(&store, "a", 0).admits_requests());
    }

    #[test]
    fn only_5xx_is_a_failure() {
        assert!(is_failure_status(500) && is_failure_status(503) && is_failure_status(504));
        assert!(!is_failure_status(200) && !is_failure_status(429) && !is_failure_status(404));
    }

    proptest! {
        /// Against a model of the state machine: a backend is ejected exactly
        /// when the model says so, and never admits requests while ejected.
        #[test]
        fn follows_the_model(outcomes in proptest::collection::vec((any::<bool>(), 0..700u64), 1..200)) {
            let store = MemoryStore::new();
            let (mut now, mut failures, mut until, mut ejections) = (0u64, 0u32, 0u64, 0u32);
            for (success, wait) in outcomes {
                now += wait;
                let h = Health::read(&store, "a", now);
                prop_assert_eq!(h.is_ejected(), now < until);
                prop_assert_eq!(h.is_half_open(), until != 0 && now >= until);
                prop_assert!(!(h.is_ejected() && h.admits_requests()));
                record_outcome(&store, "a", success, now, &S);
                if success {
                    (failures, until, ejections) = (0, 0, 0);
                } else if now >= until {
                    failures += 1;
                    if (until != 0) || failures >= S.eject_after_failures {
                        ejections += 1;
                        let length = (S.ejection_ms << (ejections - 1).min(32)).min(S.max_ejection_ms);
                        until = now + length;
                        failures = 0;
                    }
                }
            }
        }
    }
}
