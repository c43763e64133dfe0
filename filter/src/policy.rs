//! Routing policies: one trait, one file each, chosen by name in the config.

mod least_ttft;
mod pow2;
mod prefix_aware;
mod round_robin;

pub use least_ttft::{kv_trust, load_bound, rendezvous, LeastTtft};
pub use pow2::{least_loaded, pow2_pick, Pow2};
pub use prefix_aware::PrefixAware;
pub use round_robin::RoundRobin;

use crate::fleet::BackendView;
use crate::prefix_index::{PrefixIndex, PromptKeys};
use crate::store::SharedStore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The policies, by their configuration names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Cycle through healthy backends (baseline).
    RoundRobin,
    /// The less loaded of two random healthy backends.
    Pow2,
    /// Ray's PrefixAwareReplicaScheduler: follow the cached prefix unless load is imbalanced.
    #[default]
    PrefixAware,
    /// The least predicted time to first token (uncached prefill plus queue),
    /// under a load bound; unseen prompts by rendezvous hashing.
    LeastTtft,
}

impl PolicyKind {
    /// Every policy, in documentation order.
    pub const ALL: [PolicyKind; 4] = [Self::RoundRobin, Self::Pow2, Self::PrefixAware, Self::LeastTtft];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Pow2 => "pow2",
            Self::PrefixAware => "prefix_aware",
            Self::LeastTtft => "least_ttft",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of [`PolicyKind::ALL`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown policy `{0}` (expected round_robin, pow2, prefix_aware or least_ttft)")]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// Why a backend was chosen; one counter per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The longest cached prefix covered enough of the prompt.
    PrefixMatch,
    /// No good match: among the backends caching the least text.
    SmallestTenant,
    /// No good match: the least-loaded backend (`miss_policy = least_loaded`).
    LeastLoaded,
    /// Load spread above `imbalanced_threshold`: pow2 instead of the prefix.
    Imbalanced,
    /// No prompt to match (not JSON, unknown path, too large, empty): pow2.
    NoPrompt,
    /// The round_robin policy.
    RoundRobin,
    /// The pow2 policy.
    Pow2,
    /// least_ttft: no backend under the load bound holds more of the prompt
    /// than another, so its head's rendezvous hash chose.
    Rendezvous,
    /// least_ttft: a backend holding less of the prompt than the best match,
    /// whose shorter queue makes up for it.
    LeastCost,
}

impl Reason {
    /// Every reason, in the order metrics are defined.
    pub const ALL: [Reason; 9] = [
        Self::PrefixMatch,
        Self::SmallestTenant,
        Self::LeastLoaded,
        Self::Imbalanced,
        Self::NoPrompt,
        Self::RoundRobin,
        Self::Pow2,
        Self::Rendezvous,
        Self::LeastCost,
    ];

    /// Name used in headers, logs and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrefixMatch => "prefix_match",
            Self::SmallestTenant => "smallest_tenant",
            Self::LeastLoaded => "least_loaded",
            Self::Imbalanced => "imbalanced",
            Self::NoPrompt => "no_prompt",
            Self::RoundRobin => "round_robin",
            Self::Pow2 => "pow2",
            Self::Rendezvous => "rendezvous",
            Self::LeastCost => "least_cost",
        }
    }
}

/// A policy's choice: an index into the candidate backends, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pick {
    /// Index into [`Candidates::backends`].
    pub backend: usize,
    /// Why this one.
    pub reason: Reason,
    /// Longest matched prefix over prompt length (0 when not matched).
    pub match_ratio: f64,
    /// Prompt tokens the chosen backend is predicted to prefill (those it
    /// does not hold); 0 for policies that do not predict it.
    pub prefill_tokens: f64,
}

/// What a policy chooses from: the healthy backends and the request's prompt.
pub struct Candidates<'a> {
    /// Healthy backends; never empty.
    pub backends: &'a [BackendView],
    /// The prompt's chunk keys, if the request has a prompt.
    pub prompt: Option<&'a PromptKeys>,
    /// Shared state: the prefix index and counters.
    pub store: &'a dyn SharedStore,
    /// The prefix index over `store`.
    pub index: &'a PrefixIndex,
    /// Host time in milliseconds.
    pub now_ms: u64,
}

/// A routing policy: picks one of the healthy candidates for a request.
pub trait Policy {
    /// Which policy this is.
    fn kind(&self) -> PolicyKind;

    /// Chooses a backend among `candidates.backends` (never empty).
    fn pick(&self, candidates: &Candidates<'_>, rng: &mut fastrand::Rng) -> Pick;
}
