//! A fast hasher for the engine's maps, whose keys are integers: request ids (small and
//! sequential) and block keys (already mixed, see [`super::block_hash`]). std's SipHash
//! resists hash flooding from untrusted keys, which these are not (the engine makes them),
//! and cost a tenth of a step's work in the lab. No map of the engine is iterated, so
//! the hasher changes no result, only the time taken.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by engine integers, hashed with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The Fx hash (rustc's): each word rotated in and multiplied by an odd constant, which
/// spreads sequential integers over the high bits that the table's control bytes use.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_differ_in_their_high_bits() {
        let top = |x: u64| {
            let mut h = FastHasher::default();
            h.write_u64(x);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (0..64).map(top).collect();
        assert!(distinct.len() > 32, "{} distinct top-7-bit values", distinct.len());
    }

    #[test]
    fn a_fast_map_is_a_map() {
        let mut m: FastMap<u64, u64> = FastMap::default();
        for i in 0..1000 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.len(), 1000);
        assert!((0..1000).all(|i| m.get(&i) == Some(&(i * 2))));
    }
}
