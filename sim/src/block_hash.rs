//! Chained block hashes: the key of block *i* covers the key of block *i−1* and block *i*'s
//! token ids, so one key names a whole prefix, as in vLLM's automatic prefix caching.

/// Key of one full KV block; equal keys mean equal token prefixes (up to 64-bit collisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

/// Seed of the chain, standing in for vLLM's root hash of the "no parent" case.
const ROOT_SEED: u64 = 0x6a09_e667_f3bc_c908;

/// Finaliser of SplitMix64: a cheap bijective mix with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes one block from its parent's key (`None` for the first block), its token ids and an
/// extra key (the request's cache salt, folded into the first block only, as vLLM V1 does).
pub fn hash_block(parent: Option<BlockHash>, tokens: &[u32], extra: u64) -> BlockHash {
    let mut h = match parent {
        Some(BlockHash(p)) => mix64(p ^ ROOT_SEED.rotate_left(17)),
        None => mix64(ROOT_SEED ^ mix64(extra)),
    };
    for &t in tokens {
        h = mix64(h ^ (u64::from(t) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    BlockHash(mix64(h ^ tokens.len() as u64))
}

/// Appends the keys of the full blocks of `tokens` that `hashes` does not cover yet; a
/// partial last block gets no key (only full blocks are cached).
pub fn extend_block_hashes(hashes: &mut Vec<BlockHash>, tokens: &[u32], block_size: usize, salt: u64) {
    if block_size == 0 {
        return;
    }
    let full_blocks = tokens.len() / block_size;
    while hashes.len() < full_blocks {
        let i = hashes.len();
        let parent = hashes.last().copied();
        let block = &tokens[i * block_size..(i + 1) * block_size];
        hashes.push(hash_block(parent, block, if i == 0 { salt } else { 0 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_blocks_are_hashed() {
        let tokens: Vec<u32> = (0..40).collect();
        let mut hashes = Vec::new();
        extend_block_hashes(&mut hashes, &tokens, 16, 0);
        assert_eq!(hashes.len(), 2);
    }

    #[test]
    fn a_key_depends_on_the_whole_prefix() {
        let a: Vec<u32> = (0..32).collect();
        let mut b = a.clone();
        b[0] = 999; // differs only in block 0
        let (mut ha, mut hb) = (Vec::new(), Vec::new());
        extend_block_hashes(&mut ha, &a, 16, 0);
        extend_block_hashes(&mut hb, &b, 16, 0);
        assert_ne!(ha[0], hb[0]);
        // Block 1 has the same tokens in both, but its key differs through the chain.
        assert_eq!(a[16..], b[16..]);
        assert_ne!(ha[1], hb[1]);
    }

    #[test]
    fn same_tokens_same_keys_and_salt_separates() {
        let a: Vec<u32> = (0..48).collect();
        let (mut h1, mut h2, mut h3) = (Vec::new(), Vec::new(), Vec::new());
        extend_block_hashes(&mut h1, &a, 16, 0);
        extend_block_hashes(&mut h2, &a, 16, 0);
        extend_block_hashes(&mut h3, &a, 16, 7);
        assert_eq!(h1, h2);
        assert_ne!(h1[0], h3[0]);
        assert_ne!(h1[2], h3[2]);
    }

    #[test]
    fn extending_incrementally_matches_hashing_at_once() {
        let tokens: Vec<u32> = (100..180).collect();
        let mut once = Vec::new();
        extend_block_hashes(&mut once, &tokens, 16, 3);
        let mut step = Vec::new();
        for n in 0..=tokens.len() {
            extend_block_hashes(&mut step, &tokens[..n], 16, 3);
        }
        assert_eq!(once, step);
    }
}
