//! The hasher of the engine's maps, whose keys are integers the engine makes: request ids
//! and block keys (already mixed, see [`super::block_hash`]). std's SipHash resists hash
//! flooding from untrusted keys, which these are not, and showed among the policy lab's
//! hottest functions; foldhash (what the host's shared data uses) is cheaper. The fixed seed keeps runs alike, and no map of the engine is iterated, so
//! the hasher changes no result, only the time taken.

use std::collections::HashMap;

/// A map keyed by engine integers, hashed with foldhash's fast hasher, fixed seed.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
