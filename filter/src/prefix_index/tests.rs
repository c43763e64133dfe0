use super::*;
use crate::store::{CountingStore, MemoryStore};
use proptest::prelude::*;
use std::collections::HashMap;

const W: usize = 4;

fn index(slots: u32, ttl_ms: u64) -> PrefixIndex {
    PrefixIndex::new(IndexShape {
        chunk_chars: W,
        chunk_growth: 0.0,
        slots,
        ttl_ms,
        max_backends_per_slot: 4,
        run_chunks: RUN_CHUNKS,
    })
}

/// `name` with a cache of `capacity_chunks` chunks of `W` characters.
fn backend(name: &str, capacity_chunks: u64) -> IndexedBackend<'_> {
    IndexedBackend { name, capacity_chars: capacity_chunks * W as u64 }
}

fn matches(
    ix: &PrefixIndex,
    store: &MemoryStore,
    prompt: &str,
    names: &[&str],
    cap: u64,
    now: u64,
) -> Vec<usize> {
    let backends: Vec<_> = names.iter().map(|n| backend(n, cap)).collect();
    ix.longest_match(store, &ix.prompt_keys(prompt), &backends, now)
}

fn insert(ix: &PrefixIndex, store: &MemoryStore, prompt: &str, name: &str, cap: u64, now: u64) {
    ix.insert(store, &ix.prompt_keys(prompt), backend(name, cap), now);
}

#[test]
fn longest_match_per_backend() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    insert(&ix, &store, "aaaabbbbccccdddd", "a", 100, 0);
    insert(&ix, &store, "aaaabbbbxxxx", "b", 100, 0);
    let got = matches(&ix, &store, "aaaabbbbccccdddde", &["a", "b", "c"], 100, 0);
    assert_eq!(got, vec![16, 8, 0]);
    // A partial trailing chunk is never matched, a short prompt matches nothing.
    assert_eq!(matches(&ix, &store, "aaaabb", &["a"], 100, 0), vec![4]);
    assert_eq!(matches(&ix, &store, "aaa", &["a"], 100, 0), vec![0]);
}

#[test]
fn capacity_evicts_the_oldest_prefixes_first() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    let cap = 4;
    insert(&ix, &store, "AAAAaaaa", "r", cap, 0); // 2 chunks
    insert(&ix, &store, "BBBBbbbb", "r", cap, 0); // 2 chunks: cache full
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], cap, 0), vec![8]);
    insert(&ix, &store, "CCCC", "r", cap, 0); // pushes out A's tail first
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], cap, 0), vec![4]);
    assert_eq!(matches(&ix, &store, "BBBBbbbb", &["r"], cap, 0), vec![8]);
    insert(&ix, &store, "DDDD", "r", cap, 0);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], cap, 0), vec![0]);
}

#[test]
fn reinsert_refreshes_like_an_lru() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    let cap = 4;
    insert(&ix, &store, "AAAAaaaa", "r", cap, 0);
    insert(&ix, &store, "BBBBbbbb", "r", cap, 0);
    insert(&ix, &store, "AAAAaaaa", "r", cap, 0); // touch A: B is now the oldest
    insert(&ix, &store, "CCCCcccc", "r", cap, 0);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], cap, 0), vec![8]);
    assert_eq!(matches(&ix, &store, "BBBBbbbb", &["r"], cap, 0), vec![0]);
}

#[test]
fn ttl_expires_entries() {
    let (ix, store) = (index(1 << 20, 1_000), MemoryStore::new());
    insert(&ix, &store, "AAAAaaaa", "r", 100, 10_000);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], 100, 10_999), vec![8]);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], 100, 11_000), vec![0]);
    // Without a TTL, time does not matter.
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    insert(&ix, &store, "AAAAaaaa", "r", 100, 0);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], 100, u64::MAX / 2), vec![8]);
}

#[test]
fn removed_backend_stops_matching_and_restarts_empty() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    insert(&ix, &store, "AAAAaaaa", "r", 100, 0);
    insert(&ix, &store, "AAAAaaaa", "s", 100, 0);
    ix.remove_backend(&store, "r");
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r", "s"], 100, 0), vec![0, 8]);
    assert_eq!(ix.cached_chars(&store, backend("r", 100)), 0);
    insert(&ix, &store, "BBBB", "r", 100, 0);
    assert_eq!(matches(&ix, &store, "AAAAaaaa", &["r"], 100, 0), vec![0]);
    assert_eq!(matches(&ix, &store, "BBBB", &["r"], 100, 0), vec![4]);
}

#[test]
fn cached_chars_counts_distinct_chunks_up_to_capacity() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    insert(&ix, &store, "AAAAaaaa", "r", 100, 0);
    insert(&ix, &store, "AAAAaaaa", "r", 100, 0); // same chunks: nothing new
    insert(&ix, &store, "AAAAbbbb", "r", 100, 0); // one new chunk
    assert_eq!(ix.cached_chars(&store, backend("r", 100)), 12);
    assert_eq!(ix.cached_chars(&store, backend("r", 2)), 8);
    assert_eq!(ix.cached_chars(&store, backend("nobody", 100)), 0);
}

/// An index with vLLM-block-sized chunks that grow by an eighth.
fn grown_index() -> PrefixIndex {
    PrefixIndex::new(IndexShape {
        chunk_chars: 64,
        chunk_growth: 0.125,
        slots: 1 << 20,
        ttl_ms: 0,
        max_backends_per_slot: 4,
        run_chunks: RUN_CHUNKS,
    })
}

/// `chars` characters of text unique to `seed`.
fn text(seed: &str, chars: usize) -> String {
    let mut out = String::new();
    for i in 0.. {
        if out.len() >= chars {
            break;
        }
        out.push_str(&format!("{seed} {i}. "));
    }
    out.truncate(chars);
    out
}

#[test]
fn grown_chunks_cut_a_long_prompt_into_few_keys() {
    let ix = grown_index();
    let keys = ix.prompt_keys(&text("p", 8_000));
    assert_eq!(keys.chars(), 8_000);
    // Eight 64-character chunks up to 512, then each an eighth of the text
    // before it: 31 chunks where fixed chunks would make 125.
    assert_eq!(&keys.ends[..9], &[64, 128, 192, 256, 320, 384, 448, 512, 576]);
    for i in 8..keys.chunks() {
        assert_eq!(keys.ends[i] - keys.ends[i - 1], keys.ends[i - 1] / 8, "chunk {i}");
    }
    let last = *keys.ends.last().unwrap();
    assert!(last <= 8_000 && 8_000 - last < last / 8, "last chunk ends at {last}");
    assert_eq!(keys.chunks(), 31);
    // Chunk boundaries count characters, not bytes.
    let wide = ix.prompt_keys(&"é".repeat(2_000));
    assert_eq!(wide.ends, ix.prompt_keys(&"e".repeat(2_000)).ends);
    assert_eq!(wide.chars(), 2_000);
}

#[test]
fn a_grown_match_is_exact_to_within_the_growth_share() {
    let (ix, store) = (grown_index(), MemoryStore::new());
    let whole = text("shared", 8_000);
    ix.insert(&store, &ix.prompt_keys(&whole), backend_chars("r", u64::MAX), 0);
    for shared in [100, 700, 3_000, 5_000, 8_000] {
        let probe = format!("{}{}", &whole[..shared], text("other", 2_000));
        let got = ix.longest_match(&store, &ix.prompt_keys(&probe), &[backend_chars("r", u64::MAX)], 0)[0];
        assert!(got <= shared && got + (shared / 8).max(64) >= shared, "shared {shared}, matched {got}");
    }
}

#[test]
fn capacity_counts_characters_with_grown_chunks() {
    let (ix, store) = (grown_index(), MemoryStore::new());
    let whole = text("shared", 8_000);
    let keys = ix.prompt_keys(&whole);
    // The cache holds 4,000 characters: the head of the prompt is the most
    // recent, so it is what stays.
    let small = backend_chars("r", 4_000);
    ix.insert(&store, &keys, small, 0);
    let got = ix.longest_match(&store, &keys, &[small], 0)[0];
    assert!(got <= 4_000 && got + 4_000 / 8 >= 4_000, "matched {got}");
    assert_eq!(ix.cached_chars(&store, small), 4_000);
    // Unbounded, it holds the whole prompt: the indexed chunks and the tail
    // after the last whole chunk.
    assert!((*keys.ends.last().unwrap() as u64) < 8_000);
    assert_eq!(ix.cached_chars(&store, backend_chars("r", u64::MAX)), 8_000);
}

/// `name` with a cache of `capacity_chars` characters.
fn backend_chars(name: &str, capacity_chars: u64) -> IndexedBackend<'_> {
    IndexedBackend { name, capacity_chars }
}

#[test]
fn a_recent_prefix_is_not_rewritten_until_it_ages() {
    let ix = index(1 << 20, 0);
    let store = CountingStore::default();
    let keys = ix.prompt_keys("AAAAaaaaBBBBbbbb");
    let r = backend("r", 1_000);
    ix.insert(&store, &keys, r, 0);
    // One node (the four chunks) and the backend's record.
    assert_eq!(store.sets.replace(0), 2);
    ix.insert(&store, &keys, r, 10);
    assert_eq!(store.sets.replace(0), 1, "only the sequence reservation");
    assert_eq!(ix.longest_match(&store, &keys, &[r], 10), vec![16]);
    // A second later the prefix is written again (slot eviction goes by
    // write time), and with a small cache an eighth of it is soon exceeded.
    ix.insert(&store, &keys, r, REFRESH_AFTER_MS + 10);
    assert_eq!(store.sets.replace(0), 2);
    let tiny = backend("r", 4);
    ix.insert(&store, &keys, tiny, REFRESH_AFTER_MS + 20);
    assert_eq!(store.sets.replace(0), 2);
}

#[test]
fn colliding_keys_lose_matches_but_never_invent_them() {
    let (ix, store) = (index(1, 0), MemoryStore::new());
    insert(&ix, &store, "AAAA", "r", 100, 0);
    insert(&ix, &store, "BBBB", "s", 100, 0); // same single slot: A's tag is gone
    assert_eq!(matches(&ix, &store, "AAAA", &["r", "s"], 100, 0), vec![0, 0]);
    assert_eq!(matches(&ix, &store, "BBBB", &["r", "s"], 100, 0), vec![0, 4]);
    assert_eq!(matches(&ix, &store, "CCCC", &["r", "s"], 100, 0), vec![0, 0]);
}

#[test]
fn collisions_evict_old_prefixes_before_recent_ones() {
    // 48 prompts of 8 chunks in 1024 slots (37% full). With one slot per key,
    // 5 of the 16 most recent prompts lose a chunk to a later prompt.
    let ix = PrefixIndex::new(IndexShape {
        chunk_chars: 8,
        chunk_growth: 0.0,
        slots: 1024,
        ttl_ms: 0,
        max_backends_per_slot: 4,
        run_chunks: RUN_CHUNKS,
    });
    let store = MemoryStore::new();
    let prompts: Vec<String> = (0..48u32).map(|i| format!("{i:08}").repeat(8)).collect();
    for (t, p) in prompts.iter().enumerate() {
        ix.insert(&store, &ix.prompt_keys(p), backend("r", 1 << 30), t as u64);
    }
    let whole =
        |p: &String| ix.longest_match(&store, &ix.prompt_keys(p), &[backend("r", 1 << 30)], 99)[0] == 64;
    let recent = prompts.iter().rev().take(16).filter(|p| whole(p)).count();
    assert!(recent >= 15, "{recent} of the 16 most recent prompts match whole");
}

#[test]
fn memory_stays_under_the_slot_bound() {
    let slots = 512;
    let ix = PrefixIndex::new(IndexShape {
        chunk_chars: 8,
        chunk_growth: 0.0,
        slots,
        ttl_ms: 0,
        max_backends_per_slot: 8,
        run_chunks: RUN_CHUNKS,
    });
    let store = MemoryStore::new();
    let names: Vec<String> = (0..8).map(|b| format!("10.0.0.{b}:8000")).collect();
    for i in 0..20_000u32 {
        let prompt = format!("{i:08}{:08}{:08}", i.wrapping_mul(7919), i % 97);
        let name = &names[i as usize % names.len()];
        ix.insert(&store, &ix.prompt_keys(&prompt), backend(name, 1 << 30), u64::from(i));
    }
    let slot_keys = store.keys_with_prefix("pg/ix/").len();
    assert!(slot_keys <= slots as usize, "{slot_keys} slots used");
    let record_bytes = RECORDS_KEY.len() + names.len() * RECORD_BYTES;
    assert_eq!(store.keys_with_prefix(RECORDS_KEY).len(), 1, "one key holds every backend's record");
    assert!(
        store.byte_size() <= ix.max_bytes() + record_bytes,
        "{} bytes > bound {}",
        store.byte_size(),
        ix.max_bytes() + record_bytes
    );
}

#[test]
fn unicode_prompts_chunk_by_characters() {
    let (ix, store) = (index(1 << 20, 0), MemoryStore::new());
    let prompt = "ééééüüüü✓✓✓✓x";
    assert_eq!(ix.prompt_keys(prompt).chunks(), 3);
    assert_eq!(ix.prompt_keys(prompt).chars(), 13);
    insert(&ix, &store, prompt, "r", 100, 0);
    assert_eq!(matches(&ix, &store, "ééééüüüüzzzz", &["r"], 100, 0), vec![8]);
    // ASCII and the general path agree on ASCII text.
    let ascii = ix.prompt_keys("abcdefgh");
    let mixed = ix.prompt_keys("abcdefghé");
    assert_eq!(ascii.keys[..], mixed.keys[..2]);
}

/// The reference: per backend, a map from each inserted prefix (in whole
/// chunks) to the sequence number it last received, as an LRU of capacity.
#[derive(Default)]
struct Model {
    backends: HashMap<String, ModelBackend>,
}

#[derive(Default)]
struct ModelBackend {
    next_seq: u64,
    prefixes: HashMap<String, u64>,
}

impl Model {
    /// Inserts `prompt` for a backend caching `cap` chunks; a prefix still
    /// within the most recent eighth of the cache keeps its place.
    fn insert(&mut self, prompt: &str, name: &str, cap: u64) {
        let chunks: Vec<&str> = chunks_of(prompt);
        let b = self.backends.entry(name.to_owned()).or_default();
        let n = chunks.len() as u64;
        for i in 0..chunks.len() {
            let prefix = chunks[..=i].concat();
            let recent = b
                .prefixes
                .get(&prefix)
                .is_some_and(|seq| (b.next_seq - seq) * W as u64 <= cap * W as u64 / 8);
            if !recent {
                b.prefixes.insert(prefix, b.next_seq + n - 1 - i as u64);
            }
        }
        b.next_seq += n;
    }

    fn longest_match(&self, prompt: &str, name: &str, cap: u64) -> usize {
        let Some(b) = self.backends.get(name) else { return 0 };
        let chunks = chunks_of(prompt);
        let mut m = 0;
        for i in 0..chunks.len() {
            match b.prefixes.get(&chunks[..=i].concat()) {
                Some(seq) if b.next_seq - seq <= cap => m = i + 1,
                _ => break,
            }
        }
        m * W
    }

    fn remove(&mut self, name: &str) {
        if let Some(b) = self.backends.get_mut(name) {
            b.prefixes.clear();
        }
    }
}

fn chunks_of(prompt: &str) -> Vec<&str> {
    (0..prompt.len() / W).map(|i| &prompt[i * W..(i + 1) * W]).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Insert(String, usize),
    Remove(usize),
}

/// Prompts built from a tiny chunk alphabet, so that prefixes are shared.
fn prompt_strategy() -> impl Strategy<Value = String> {
    (prop::collection::vec(0..3u8, 0..7), 0..W).prop_map(|(chunks, tail)| {
        let mut s: String = chunks.iter().map(|c| ["aaaa", "bbbb", "cccc"][*c as usize]).collect();
        s.push_str(&"z".repeat(tail));
        s
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prompt_strategy(), 0..3usize).prop_map(|(p, b)| Op::Insert(p, b)),
        1 => (0..3usize).prop_map(Op::Remove),
    ]
}

proptest! {
    #[test]
    fn matches_agree_with_the_reference_model(
        ops in prop::collection::vec(op_strategy(), 1..40),
        queries in prop::collection::vec(prompt_strategy(), 1..8),
        cap in 1u64..12,
        run_chunks in prop::sample::select(vec![1usize, 2, 3, RUN_CHUNKS]),
    ) {
        let names = ["r0", "r1", "r2"];
        let ix = PrefixIndex::new(IndexShape { run_chunks, ..index(u32::MAX, 0).shape().clone() });
        let store = MemoryStore::new();
        let mut model = Model::default();
        for op in &ops {
            match op {
                Op::Insert(p, b) => {
                    insert(&ix, &store, p, names[*b], cap, 0);
                    model.insert(p, names[*b], cap);
                }
                Op::Remove(b) => {
                    ix.remove_backend(&store, names[*b]);
                    model.remove(names[*b]);
                }
            }
            for q in &queries {
                let got = matches(&ix, &store, q, &names, cap, 0);
                let want: Vec<usize> = names.iter().map(|n| model.longest_match(q, n, cap)).collect();
                prop_assert_eq!(got, want, "query {:?} after {:?}", q, op);
            }
        }
    }
}

#[test]
fn slot_keys_are_the_decimal_slot_number() {
    let mut buf = String::from("stale");
    for slot in [0, 7, 10, 999, 65_536, u64::from(u32::MAX), u64::MAX] {
        slot_key(&mut buf, slot);
        assert_eq!(buf, format!("pg/ix/{slot}"));
    }
}
