//! Per-request block tables over the [`BlockPool`]: prefix-cache lookup and slot allocation,
//! as vLLM V1's `KVCacheManager` (`get_computed_blocks`, `allocate_slots`, `free`).

use super::block_hash::BlockHash;
use super::block_pool::{BlockId, BlockPool};
use super::fast_hash::FastMap;
use super::request::RequestId;

#[derive(Debug, Default, Clone)]
struct BlockTable {
    blocks: Vec<BlockId>,
    /// Leading blocks of `blocks` already registered in the cache map.
    num_cached: usize,
}

/// Block tables of all running requests, and the pool they draw from.
#[derive(Debug, Clone)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    tables: FastMap<RequestId, BlockTable>,
    enable_caching: bool,
}

impl KvCacheManager {
    /// A manager over a pool of `num_blocks` blocks of `block_size` tokens, with prefix
    /// caching on.
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        Self {
            pool: BlockPool::new(num_blocks),
            block_size: block_size.max(1),
            tables: FastMap::default(),
            enable_caching: true,
        }
    }

    /// Turns prefix caching on or off (vLLM's `enable_caching`). Off, lookups find nothing
    /// and no block is registered in the cache map, so no block is ever reused.
    pub fn with_prefix_caching(mut self, enabled: bool) -> Self {
        self.enable_caching = enabled;
        self
    }

    /// Whether prefix caching is on.
    pub fn prefix_caching(&self) -> bool {
        self.enable_caching
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The underlying pool (usage, free queue, cache map).
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Blocks held by a request, in order.
    pub fn blocks_of(&self, id: RequestId) -> &[BlockId] {
        self.tables.get(&id).map_or(&[], |t| t.blocks.as_slice())
    }

    /// Longest run of cached leading blocks for a sequence of `num_tokens` tokens with these
    /// block keys. At most `num_tokens − 1` tokens may hit: the last token must be computed
    /// to produce logits, so a repeated 32-token prompt hits 16 tokens, not 32. Always
    /// empty with prefix caching off.
    pub fn find_cached_prefix(&self, hashes: &[BlockHash], num_tokens: usize) -> Vec<BlockId> {
        if !self.enable_caching {
            return Vec::new();
        }
        let max_blocks = num_tokens.saturating_sub(1) / self.block_size;
        hashes.iter().take(max_blocks).map_while(|&h| self.pool.cached_block(h)).collect()
    }

    /// Grows a request's table so it holds KV for `num_computed + num_new` tokens, first
    /// taking `new_computed` (cache hits found at admission, already counted in
    /// `num_computed`), then fresh blocks. Full blocks are registered in the cache as soon as
    /// their tokens are scheduled (not at all with prefix caching off). Returns `false`,
    /// changing nothing, when blocks are short.
    pub fn allocate_slots(
        &mut self,
        id: RequestId,
        hashes: &[BlockHash],
        num_computed: usize,
        num_new: usize,
        new_computed: &[BlockId],
    ) -> bool {
        let total = num_computed + num_new;
        let required = total.div_ceil(self.block_size);
        let held = self.tables.get(&id).map_or(0, |t| t.blocks.len()) + new_computed.len();
        let needed = required.saturating_sub(held);
        // Hit blocks sitting in the free queue stop being free once touched.
        let available = self.pool.num_free().saturating_sub(self.pool.count_free(new_computed));
        if needed > available {
            return false;
        }
        self.pool.touch(new_computed);
        let Some(fresh) = self.pool.allocate(needed) else {
            // Unreachable given the check above; undo the touch to keep ref counts exact.
            self.pool.free(new_computed);
            return false;
        };
        let table = self.tables.entry(id).or_default();
        table.blocks.extend_from_slice(new_computed);
        table.blocks.extend(fresh);
        if !self.enable_caching {
            return true;
        }
        let full = (total / self.block_size).min(table.blocks.len());
        for i in table.num_cached..full {
            if let Some(&hash) = hashes.get(i) {
                self.pool.cache_block(table.blocks[i], hash);
            }
        }
        table.num_cached = table.num_cached.max(full);
        true
    }

    /// Releases all blocks of a request, last block first, so that the tail of a prefix is
    /// evicted before its shared head.
    pub fn free(&mut self, id: RequestId) {
        if let Some(table) = self.tables.remove(&id) {
            let reversed: Vec<BlockId> = table.blocks.iter().rev().copied().collect();
            self.pool.free(&reversed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::block_hash::extend_block_hashes;
    use super::*;

    fn hashes_of(tokens: &[u32]) -> Vec<BlockHash> {
        let mut h = Vec::new();
        extend_block_hashes(&mut h, tokens, 16, 0);
        h
    }

    /// Admits a request the way the scheduler does: lookup, then allocate the rest.
    fn admit(kv: &mut KvCacheManager, id: u64, tokens: &[u32]) -> Option<usize> {
        let hashes = hashes_of(tokens);
        let hit = kv.find_cached_prefix(&hashes, tokens.len());
        let cached = hit.len() * 16;
        kv.allocate_slots(RequestId(id), &hashes, cached, tokens.len() - cached, &hit).then_some(cached)
    }

    #[test]
    fn a_repeated_prompt_hits_its_full_blocks_but_never_the_last_token() {
        let mut kv = KvCacheManager::new(100, 16);
        let prompt: Vec<u32> = (0..50).collect();
        assert_eq!(admit(&mut kv, 1, &prompt), Some(0));
        kv.free(RequestId(1));
        assert_eq!(admit(&mut kv, 2, &prompt), Some(48));
        kv.free(RequestId(2));
        let exactly_32: Vec<u32> = (0..32).collect();
        assert_eq!(admit(&mut kv, 3, &exactly_32), Some(16));
    }

    #[test]
    fn a_prompt_sharing_half_its_blocks_hits_only_that_half() {
        let mut kv = KvCacheManager::new(100, 16);
        let a: Vec<u32> = (0..64).collect();
        let mut b = a.clone();
        for t in &mut b[32..] {
            *t += 1000;
        }
        admit(&mut kv, 1, &a).unwrap();
        assert_eq!(admit(&mut kv, 2, &b), Some(32));
    }

    #[test]
    fn concurrent_requests_share_blocks_by_reference() {
        let mut kv = KvCacheManager::new(10, 16);
        let p: Vec<u32> = (0..33).collect();
        admit(&mut kv, 1, &p).unwrap(); // 3 blocks
        assert_eq!(admit(&mut kv, 2, &p), Some(32)); // shares 2, adds 1
        assert_eq!(kv.pool().num_free(), 10 - 4);
        let shared = kv.blocks_of(RequestId(1))[0];
        assert_eq!(kv.pool().ref_count(shared), 2);
        kv.free(RequestId(1));
        assert_eq!(kv.pool().ref_count(shared), 1);
    }

    #[test]
    fn allocation_fails_cleanly_when_blocks_run_out() {
        let mut kv = KvCacheManager::new(3, 16);
        let p: Vec<u32> = (0..40).collect();
        admit(&mut kv, 1, &p).unwrap(); // 3 blocks
        let q: Vec<u32> = (1000..1020).collect();
        assert_eq!(admit(&mut kv, 2, &q), None);
        assert!(kv.blocks_of(RequestId(2)).is_empty());
        assert_eq!(kv.pool().num_free(), 0);
    }

    #[test]
    fn generated_tokens_fill_and_cache_blocks() {
        let mut kv = KvCacheManager::new(10, 16);
        let mut tokens: Vec<u32> = (0..10).collect();
        admit(&mut kv, 1, &tokens).unwrap();
        let mut computed = tokens.len();
        // Decode one token at a time until two blocks are full.
        while tokens.len() < 33 {
            tokens.push(500 + tokens.len() as u32);
            let hashes = hashes_of(&tokens);
            assert!(kv.allocate_slots(RequestId(1), &hashes, computed, tokens.len() - computed, &[]));
            computed = tokens.len();
        }
        kv.free(RequestId(1));
        // A follow-up that starts with the prompt and the answer hits both full blocks.
        let mut follow_up = tokens.clone();
        follow_up.extend(900..920);
        assert_eq!(admit(&mut kv, 2, &follow_up), Some(32));
    }

    #[test]
    fn without_prefix_caching_a_repeated_prompt_hits_nothing_and_no_block_is_cached() {
        let mut kv = KvCacheManager::new(100, 16).with_prefix_caching(false);
        let prompt: Vec<u32> = (0..50).collect();
        assert_eq!(admit(&mut kv, 1, &prompt), Some(0));
        assert_eq!(kv.pool().num_cached(), 0, "full blocks are not registered");
        kv.free(RequestId(1));
        assert_eq!(admit(&mut kv, 2, &prompt), Some(0));
        // Concurrent copies of one prompt share nothing: 4 blocks each.
        assert_eq!(admit(&mut kv, 3, &prompt), Some(0));
        assert_eq!(kv.pool().num_free(), 100 - 8);
    }

    #[test]
    fn a_hit_on_free_blocks_is_checked_against_what_remains_free() {
        let mut kv = KvCacheManager::new(4, 16);
        let p: Vec<u32> = (0..48).collect(); // 3 blocks
        admit(&mut kv, 1, &p).unwrap();
        kv.free(RequestId(1));
        // 49 tokens: hits 3 blocks (all free), needs 1 more: 4 blocks in total, fits.
        let mut longer = p.clone();
        longer.push(7);
        assert_eq!(admit(&mut kv, 2, &longer), Some(48));
        assert_eq!(kv.pool().num_free(), 0);
    }
}
