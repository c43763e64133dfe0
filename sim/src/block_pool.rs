//! The KV block pool: fixed-size blocks with ref counts, a map from block key to cached
//! block, and a free queue ordered for LRU eviction, as vLLM V1's `BlockPool`.
//!
//! A block whose ref count drops to zero stays cached (its key still maps to it) until it is
//! popped from the head of the free queue to hold new tokens; only then is it evicted.

use super::block_hash::BlockHash;
use super::fast_hash::FastMap;

/// Index of a block in the pool.
pub type BlockId = u32;

/// Marks the end of the intrusive free list.
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Block {
    ref_cnt: u32,
    hash: Option<BlockHash>,
    in_free_queue: bool,
    prev: u32,
    next: u32,
}

/// Fixed set of KV blocks with ref counts, a key → block map and an LRU free queue.
#[derive(Debug, Clone)]
pub struct BlockPool {
    blocks: Vec<Block>,
    head: u32,
    tail: u32,
    num_free: usize,
    cached: FastMap<BlockHash, BlockId>,
    evictions: u64,
}

impl BlockPool {
    /// A pool of `num_blocks` free, uncached blocks, queued in id order.
    pub fn new(num_blocks: usize) -> Self {
        let n = u32::try_from(num_blocks).unwrap_or(NIL - 1);
        let mut pool = Self {
            blocks: Vec::with_capacity(n as usize),
            head: NIL,
            tail: NIL,
            num_free: 0,
            // Each block holds at most one key: the map never grows past the pool.
            cached: FastMap::with_capacity_and_hasher(n as usize, Default::default()),
            evictions: 0,
        };
        for id in 0..n {
            pool.blocks.push(Block { ref_cnt: 0, hash: None, in_free_queue: false, prev: NIL, next: NIL });
            pool.push_back(id);
        }
        pool
    }

    /// Total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks in the free queue (cached-but-unreferenced blocks count as free).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    /// Fraction of blocks in use (ref count > 0), vLLM's `kv_cache_usage_perc`.
    pub fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            return 0.0;
        }
        1.0 - self.num_free as f64 / self.blocks.len() as f64
    }

    /// Number of cached blocks evicted so far (popped while still holding a key).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Number of keys currently in the cache map.
    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// The block cached under `hash`, if any.
    pub fn cached_block(&self, hash: BlockHash) -> Option<BlockId> {
        self.cached.get(&hash).copied()
    }

    /// Ref count of a block (0 for an unknown id).
    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.blocks.get(id as usize).map_or(0, |b| b.ref_cnt)
    }

    /// The key a block is cached under, if it is cached.
    pub fn block_hash(&self, id: BlockId) -> Option<BlockHash> {
        self.blocks.get(id as usize).and_then(|b| b.hash)
    }

    /// Block ids in free-queue order, head (next to be reused) first. For tests and debugging.
    pub fn free_queue(&self) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(self.num_free);
        let mut cur = self.head;
        while cur != NIL {
            out.push(cur);
            cur = self.blocks[cur as usize].next;
        }
        out
    }

    /// How many of `blocks` sit in the free queue (a cache hit on them takes them out of it).
    pub fn count_free(&self, blocks: &[BlockId]) -> usize {
        blocks.iter().filter(|&&b| self.blocks.get(b as usize).is_some_and(|x| x.in_free_queue)).count()
    }

    /// Takes a reference on each block (a prefix-cache hit), removing free ones from the queue.
    pub fn touch(&mut self, blocks: &[BlockId]) {
        for &id in blocks {
            let Some(block) = self.blocks.get(id as usize) else {
                continue;
            };
            if block.in_free_queue {
                self.unlink(id);
            }
            self.blocks[id as usize].ref_cnt += 1;
        }
    }

    /// Pops `n` blocks from the head of the free queue with ref count 1, evicting any cached
    /// key they carry. Returns `None`, changing nothing, when fewer than `n` are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.num_free {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.head;
            self.unlink(id);
            let block = &mut self.blocks[id as usize];
            if let Some(hash) = block.hash.take() {
                if self.cached.get(&hash) == Some(&id) {
                    self.cached.remove(&hash);
                }
                self.evictions += 1;
            }
            block.ref_cnt = 1;
            out.push(id);
        }
        Some(out)
    }

    /// Registers a full block under its key so later requests can hit it. A block already
    /// cached keeps its key; a second copy of a key already mapped stays uncached (vLLM's
    /// append-only block tables can hold duplicates; only one copy is found by lookups).
    pub fn cache_block(&mut self, id: BlockId, hash: BlockHash) {
        let Some(block) = self.blocks.get_mut(id as usize) else {
            return;
        };
        if block.hash.is_some() || self.cached.contains_key(&hash) {
            return;
        }
        block.hash = Some(hash);
        self.cached.insert(hash, id);
    }

    /// Drops one reference on each block, in the order given. Blocks reaching zero join the
    /// free queue: cached ones at the tail (evicted last), uncached ones at the head (reused
    /// first, since they hold nothing worth keeping).
    pub fn free(&mut self, blocks: &[BlockId]) {
        for &id in blocks {
            let Some(block) = self.blocks.get_mut(id as usize) else {
                continue;
            };
            if block.ref_cnt == 0 {
                continue;
            }
            block.ref_cnt -= 1;
            if block.ref_cnt == 0 {
                if block.hash.is_some() {
                    self.push_back(id);
                } else {
                    self.push_front(id);
                }
            }
        }
    }

    fn push_back(&mut self, id: BlockId) {
        let old_tail = self.tail;
        {
            let b = &mut self.blocks[id as usize];
            b.prev = old_tail;
            b.next = NIL;
            b.in_free_queue = true;
        }
        if old_tail == NIL {
            self.head = id;
        } else {
            self.blocks[old_tail as usize].next = id;
        }
        self.tail = id;
        self.num_free += 1;
    }

    fn push_front(&mut self, id: BlockId) {
        let old_head = self.head;
        {
            let b = &mut self.blocks[id as usize];
            b.prev = NIL;
            b.next = old_head;
            b.in_free_queue = true;
        }
        if old_head == NIL {
            self.tail = id;
        } else {
            self.blocks[old_head as usize].prev = id;
        }
        self.head = id;
        self.num_free += 1;
    }

    fn unlink(&mut self, id: BlockId) {
        let (prev, next) = {
            let b = &mut self.blocks[id as usize];
            b.in_free_queue = false;
            (std::mem::replace(&mut b.prev, NIL), std::mem::replace(&mut b.next, NIL))
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.blocks[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.blocks[next as usize].prev = prev;
        }
        self.num_free -= 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(x: u64) -> BlockHash {
        BlockHash(x)
    }

    #[test]
    fn allocate_pops_from_head_and_counts_usage() {
        let mut pool = BlockPool::new(4);
        assert_eq!(pool.allocate(2).unwrap(), vec![0, 1]);
        assert_eq!(pool.num_free(), 2);
        assert!((pool.usage() - 0.5).abs() < 1e-9);
        assert!(pool.allocate(3).is_none());
        assert_eq!(pool.num_free(), 2, "a failed allocation changes nothing");
    }

    #[test]
    fn freed_cached_blocks_stay_reusable_until_popped() {
        let mut pool = BlockPool::new(3);
        let blocks = pool.allocate(2).unwrap();
        pool.cache_block(blocks[0], h(10));
        pool.cache_block(blocks[1], h(11));
        pool.free(&[blocks[1], blocks[0]]);
        assert_eq!(pool.usage(), 0.0, "cached free blocks count as free");
        assert_eq!(pool.cached_block(h(10)), Some(blocks[0]));
        // A hit takes the block back out of the free queue.
        pool.touch(&[blocks[0]]);
        assert_eq!(pool.ref_count(blocks[0]), 1);
        assert_eq!(pool.num_free(), 2);
    }

    #[test]
    fn eviction_takes_the_least_recently_freed_block() {
        let mut pool = BlockPool::new(4);
        let a = pool.allocate(2).unwrap(); // request A: blocks 0,1
        let b = pool.allocate(2).unwrap(); // request B: blocks 2,3
        for (i, &id) in a.iter().chain(&b).enumerate() {
            pool.cache_block(id, h(i as u64));
        }
        // A finishes first, then B; each frees its blocks last block first.
        pool.free(&[a[1], a[0]]);
        pool.free(&[b[1], b[0]]);
        assert_eq!(pool.free_queue(), vec![a[1], a[0], b[1], b[0]]);
        let got = pool.allocate(1).unwrap();
        assert_eq!(got, vec![a[1]], "A's tail block is evicted first");
        assert_eq!(pool.cached_block(h(1)), None);
        assert_eq!(pool.cached_block(h(0)), Some(a[0]), "A's head block is still cached");
        assert_eq!(pool.evictions(), 1);
    }

    #[test]
    fn uncached_blocks_are_reused_before_cached_ones() {
        let mut pool = BlockPool::new(3);
        let blocks = pool.allocate(3).unwrap();
        pool.cache_block(blocks[0], h(1));
        pool.free(&[blocks[2], blocks[1], blocks[0]]);
        let next = pool.allocate(2).unwrap();
        assert!(!next.contains(&blocks[0]));
        assert_eq!(pool.cached_block(h(1)), Some(blocks[0]));
    }

    #[test]
    fn shared_blocks_are_freed_only_when_the_last_reference_goes() {
        let mut pool = BlockPool::new(2);
        let blocks = pool.allocate(1).unwrap();
        pool.cache_block(blocks[0], h(5));
        pool.touch(&blocks); // a second request hits it
        assert_eq!(pool.ref_count(blocks[0]), 2);
        pool.free(&blocks);
        assert_eq!(pool.num_free(), 1);
        pool.free(&blocks);
        assert_eq!(pool.num_free(), 2);
        pool.free(&blocks); // extra frees are ignored
        assert_eq!(pool.num_free(), 2);
    }

    #[test]
    fn a_duplicate_key_does_not_replace_the_cached_copy() {
        let mut pool = BlockPool::new(2);
        let blocks = pool.allocate(2).unwrap();
        pool.cache_block(blocks[0], h(9));
        pool.cache_block(blocks[1], h(9));
        assert_eq!(pool.cached_block(h(9)), Some(blocks[0]));
        assert_eq!(pool.block_hash(blocks[1]), None);
    }
}
