//! `round_robin`: cycle through healthy backends, one shared counter for all workers.

use super::{Candidates, Pick, Policy, PolicyKind, Reason};
use crate::store::update;
use crate::wire::{decode_u64, encode_u64};

/// Shared-data key of the round-robin counter.
const COUNTER_KEY: &str = "pg/rr";

/// Cycles through the healthy backends; the baseline.
#[derive(Debug, Default)]
pub struct RoundRobin;

impl Policy for RoundRobin {
    fn kind(&self) -> PolicyKind {
        PolicyKind::RoundRobin
    }

    fn pick(&self, c: &Candidates<'_>, rng: &mut fastrand::Rng) -> Pick {
        let mut turn = None;
        update(c.store, COUNTER_KEY, |bytes| {
            let n = decode_u64(bytes);
            turn = Some(n);
            Some(encode_u64(n.wrapping_add(1)))
        });
        // If the counter cannot be updated (persistent conflicts), a random
        // pick keeps the spread even.
        let turn = turn.unwrap_or_else(|| rng.u64(..));
        let backend = (turn % c.backends.len() as u64) as usize;
        Pick { backend, reason: Reason::RoundRobin, match_ratio: 0.0, prefill_tokens: 0.0 }
    }
}
