//! A bounded, hashed prefix index kept in shared data: which backend last
//! received which prompt prefix, modelled as an LRU cache per backend.
//!
//! A prompt is cut into chunks: `chunk_chars` characters each at its start,
//! then each chunk `chunk_growth` of the text before it, so a prompt of *n*
//! characters costs O(log *n*) index operations and a match is exact to
//! within that fraction. Chunk *i*'s key is a hash chained over chunks
//! `0..=i`, so one key names a whole prefix path (the idea of vLLM's block
//! hashes). Key `k` may live in either of two slots (two-way set
//! associative); a slot stores the key as a tag and, per backend, the
//! backend's insertion sequence number and time when it last received that
//! prefix. Sequence numbers count characters: a backend's entry is live while
//! fewer than its capacity of characters were inserted for it since (LRU:
//! re-inserting a prefix refreshes it) and while younger than the TTL.
//!
//! A new key takes the empty or the less recently written of its two slots,
//! so collisions evict old prefixes rather than arbitrary ones: a match stops
//! at the first chunk it cannot find, and one overwritten chunk at the head of
//! a long prompt would lose the whole prompt. The tag prevents false matches,
//! so a collision can only lose a match, never invent one.

use crate::store::{update, update_from, Cas, SharedStore};
use crate::wire::u64_at;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of the first chunk's hash (chunk *i* is seeded with chunk *i − 1*'s key).
const ROOT_SEED: u64 = 0x7072_6566_6978_6761; // "prefixga"
/// Bytes of a slot's tag.
const TAG_BYTES: usize = 8;
/// Bytes of one backend entry in a slot: id (u32), sequence (u64), time (u64).
const ENTRY_BYTES: usize = 20;
/// Bytes of a backend record: next sequence, reset sequence, new characters.
const RECORD_BYTES: usize = 24;
/// A live entry written longer ago than this is rewritten when its prefix is
/// inserted again, however recent its sequence number.
const REFRESH_AFTER_MS: u64 = 1_000;

/// Shape of the index; fixed for the lifetime of a plugin configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexShape {
    /// Characters per chunk at the start of a prompt; only whole chunks are
    /// indexed.
    pub chunk_chars: usize,
    /// Beyond `chunk_chars / chunk_growth` characters, each chunk is this
    /// fraction of the text before it; 0 keeps every chunk `chunk_chars` wide.
    pub chunk_growth: f64,
    /// Number of slots: the memory bound, whatever the traffic.
    pub slots: u32,
    /// Entries older than this many milliseconds stop matching; 0 disables.
    pub ttl_ms: u64,
    /// Most backends one slot remembers; beyond it the oldest entry goes.
    pub max_backends_per_slot: usize,
}

/// A backend as the index sees it: a stable name and its cache capacity.
#[derive(Clone, Copy, Debug)]
pub struct IndexedBackend<'a> {
    /// Stable identity (the backend's address).
    pub name: &'a str,
    /// Characters of prompt the backend's KV cache holds; older entries stop
    /// matching.
    pub capacity_chars: u64,
}

/// The chained chunk keys of one prompt, computed once per request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromptKeys {
    keys: Vec<u64>,
    /// Where each chunk ends, in characters from the start of the prompt.
    ends: Vec<usize>,
    chars: usize,
}

impl PromptKeys {
    /// Number of whole chunks.
    pub fn chunks(&self) -> usize {
        self.keys.len()
    }

    /// Length of the prompt in characters.
    pub fn chars(&self) -> usize {
        self.chars
    }

    /// The key naming the prompt's first `chars` characters: that of the
    /// last chunk ending within them (the first chunk's if even it is
    /// longer), `None` for a prompt shorter than one chunk. Prompts sharing
    /// that head share the key.
    pub fn head_key(&self, chars: usize) -> Option<u64> {
        let within = self.ends.partition_point(|&end| end <= chars).max(1);
        self.keys.get(within - 1).copied()
    }

    /// Characters covered by the first `chunks` chunks.
    fn covered(&self, chunks: usize) -> usize {
        chunks.checked_sub(1).and_then(|last| self.ends.get(last)).copied().unwrap_or(0)
    }

    /// Width in characters of chunk `i`.
    fn width(&self, i: usize) -> usize {
        self.covered(i + 1) - self.covered(i)
    }
}

/// The per-backend bookkeeping record, `pg/ixb/<name>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BackendRecord {
    /// Sequence number the next inserted chunk receives.
    next_seq: u64,
    /// Entries with a lower sequence belong to before the last reset.
    reset_seq: u64,
    /// Characters inserted since the reset that were not already live.
    new_chars: u64,
}

impl BackendRecord {
    fn decode(bytes: Option<&[u8]>) -> Self {
        let field = |i: usize| bytes.and_then(|b| u64_at(b, i * 8)).unwrap_or(0);
        Self { next_seq: field(0), reset_seq: field(1), new_chars: field(2) }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_BYTES);
        for v in [self.next_seq, self.reset_seq, self.new_chars] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Whether an entry stamped `seq` at `time_ms` still counts as cached.
    fn is_live(&self, seq: u64, time_ms: u64, capacity: u64, now_ms: u64, ttl_ms: u64) -> bool {
        seq >= self.reset_seq
            && seq < self.next_seq
            && self.next_seq - seq <= capacity
            && (ttl_ms == 0 || now_ms.saturating_sub(time_ms) < ttl_ms)
    }
}

/// One backend's entry in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotEntry {
    backend: u32,
    seq: u64,
    time_ms: u64,
}

/// A slot's bytes: the key it holds as a tag (8 bytes), then one
/// [`ENTRY_BYTES`] record per backend that received the key. Read and written
/// in place, without decoding the whole slot.
mod slot {
    use super::{SlotEntry, ENTRY_BYTES, TAG_BYTES};
    use crate::wire::{u32_at, u64_at};

    /// The key held by a slot.
    pub fn tag(bytes: &[u8]) -> Option<u64> {
        u64_at(bytes, 0)
    }

    fn entries(bytes: &[u8]) -> impl Iterator<Item = (usize, SlotEntry)> + '_ {
        bytes.get(TAG_BYTES..).unwrap_or_default().chunks_exact(ENTRY_BYTES).enumerate().filter_map(
            |(i, e)| {
                let entry = SlotEntry { backend: u32_at(e, 0)?, seq: u64_at(e, 4)?, time_ms: u64_at(e, 12)? };
                Some((TAG_BYTES + i * ENTRY_BYTES, entry))
            },
        )
    }

    /// `backend`'s entry, if the slot has one.
    pub fn entry(bytes: &[u8], backend: u32) -> Option<SlotEntry> {
        entries(bytes).find(|(_, e)| e.backend == backend).map(|(_, e)| e)
    }

    /// When the slot was last written (its newest entry's time).
    pub fn newest(bytes: &[u8]) -> u64 {
        entries(bytes).map(|(_, e)| e.time_ms).max().unwrap_or(0)
    }

    /// A slot holding only `tag`.
    pub fn empty(tag: u64) -> Vec<u8> {
        tag.to_le_bytes().to_vec()
    }

    /// Writes `entry` over the same backend's entry, or appends it; then
    /// drops the oldest other entries beyond `max_entries`.
    pub fn put(bytes: &mut Vec<u8>, entry: SlotEntry, max_entries: usize) {
        let mut record = [0u8; ENTRY_BYTES];
        record[..4].copy_from_slice(&entry.backend.to_le_bytes());
        record[4..12].copy_from_slice(&entry.seq.to_le_bytes());
        record[12..].copy_from_slice(&entry.time_ms.to_le_bytes());
        bytes.truncate(TAG_BYTES + (bytes.len().saturating_sub(TAG_BYTES) / ENTRY_BYTES) * ENTRY_BYTES);
        let existing = entries(bytes).find(|(_, e)| e.backend == entry.backend).map(|(at, _)| at);
        match existing {
            Some(at) => bytes[at..at + ENTRY_BYTES].copy_from_slice(&record),
            None => bytes.extend_from_slice(&record),
        }
        while (bytes.len() - TAG_BYTES) / ENTRY_BYTES > max_entries.max(1) {
            let oldest = entries(bytes)
                .filter(|(_, e)| e.backend != entry.backend)
                .min_by_key(|(_, e)| e.time_ms)
                .map(|(at, _)| at);
            match oldest {
                Some(at) => {
                    bytes.drain(at..at + ENTRY_BYTES);
                }
                None => break,
            }
        }
    }
}

/// The prefix index: stateless itself, all state lives in the [`SharedStore`].
#[derive(Clone, Debug)]
pub struct PrefixIndex {
    shape: IndexShape,
}

impl PrefixIndex {
    /// An index of the given shape.
    pub fn new(shape: IndexShape) -> Self {
        Self { shape }
    }

    /// The shape this index was built with.
    pub fn shape(&self) -> &IndexShape {
        &self.shape
    }

    /// Largest number of bytes (keys included) the index can hold in a store.
    pub fn max_bytes(&self) -> usize {
        let slot_key = "pg/ix/".len() + self.shape.slots.to_string().len();
        let slot_value = TAG_BYTES + self.shape.max_backends_per_slot * ENTRY_BYTES;
        self.shape.slots as usize * (slot_key + slot_value)
    }

    /// Width of the chunk that starts `offset` characters into a prompt.
    fn chunk_width(&self, offset: usize) -> usize {
        let grown = (offset as f64 * self.shape.chunk_growth) as usize;
        self.shape.chunk_chars.max(grown).max(1)
    }

    /// Cuts `prompt` into whole chunks and chains their hashes.
    pub fn prompt_keys(&self, prompt: &str) -> PromptKeys {
        let mut out = PromptKeys::default();
        let mut parent = ROOT_SEED;
        // The chunk being read: its first byte, first character and width.
        let (mut start_byte, mut start_char, mut width) = (0, 0, self.chunk_width(0));
        let mut cut = |out: &mut PromptKeys, bytes: &[u8], end_char: usize| {
            parent = xxh3_64_with_seed(bytes, parent);
            out.keys.push(parent);
            out.ends.push(end_char);
        };
        if prompt.is_ascii() {
            let bytes = prompt.as_bytes();
            out.chars = bytes.len();
            while let Some(chunk) = bytes.get(start_byte..start_byte + width) {
                start_byte += width;
                cut(&mut out, chunk, start_byte);
                width = self.chunk_width(start_byte);
            }
        } else {
            let boundaries = prompt.char_indices().map(|(offset, _)| offset).skip(1);
            for (chars, offset) in (1..).zip(boundaries.chain([prompt.len()])) {
                if chars - start_char == width {
                    cut(&mut out, &prompt.as_bytes()[start_byte..offset], chars);
                    (start_byte, start_char, width) = (offset, chars, self.chunk_width(chars));
                }
                out.chars = chars;
            }
        }
        out
    }

    /// Matched prefix length in characters for each of `backends`, in order.
    ///
    /// One pass over the chunks with one store read per chunk: each backend's
    /// match ends at the first chunk it holds no live entry for.
    pub fn longest_match<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        keys: &PromptKeys,
        backends: &[IndexedBackend<'_>],
        now_ms: u64,
    ) -> Vec<usize> {
        let ids: Vec<u32> = backends.iter().map(|b| backend_id(b.name)).collect();
        let records: Vec<BackendRecord> = backends.iter().map(|b| self.record(store, b.name)).collect();
        let mut matched = vec![0usize; backends.len()];
        let mut alive: Vec<bool> = records.iter().map(|r| r.next_seq > r.reset_seq).collect();
        let mut key_buf = String::new();
        for (i, key) in keys.keys.iter().enumerate() {
            if !alive.iter().any(|a| *a) {
                break;
            }
            let Some(bytes) = self.find_slot(store, &mut key_buf, *key) else {
                break;
            };
            for j in 0..backends.len() {
                if !alive[j] {
                    continue;
                }
                let live = slot::entry(&bytes, ids[j]).is_some_and(|e| {
                    records[j].is_live(
                        e.seq,
                        e.time_ms,
                        backends[j].capacity_chars,
                        now_ms,
                        self.shape.ttl_ms,
                    )
                });
                if live {
                    matched[j] = i + 1;
                } else {
                    alive[j] = false;
                }
            }
        }
        matched.into_iter().map(|m| keys.covered(m)).collect()
    }

    /// Records that `backend` received the prompt behind `keys`, refreshing
    /// every chunk it touches (the head of the prompt ends up the most recent,
    /// as vLLM frees a request's tail blocks before its head).
    pub fn insert<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        keys: &PromptKeys,
        backend: IndexedBackend<'_>,
        now_ms: u64,
    ) {
        let covered = keys.covered(keys.chunks()) as u64;
        // The text after the last whole chunk is not indexed, but it is in
        // the replica's cache all the same: it counts towards the backend's
        // cached size (as in Ray's tree, where every character does), so
        // that prompts shorter than a chunk do not all look like they went
        // nowhere and pile onto one "smallest tenant".
        let tail = (keys.chars() as u64).saturating_sub(covered);
        let record_key = record_key(backend.name);
        if covered == 0 {
            if tail > 0 {
                update(store, &record_key, |bytes| {
                    let mut record = BackendRecord::decode(bytes);
                    record.new_chars = record.new_chars.saturating_add(tail);
                    Some(record.encode())
                });
            }
            return;
        }
        let mut before = BackendRecord::default();
        let reserved = update(store, &record_key, |bytes| {
            before = BackendRecord::decode(bytes);
            let mut next = before;
            next.next_seq = before.next_seq.max(before.reset_seq) + covered;
            Some(next.encode())
        });
        if !reserved {
            return;
        }
        let base = before.next_seq.max(before.reset_seq);
        let id = backend_id(backend.name);
        let mut new_chars = 0u64;
        let mut key_buf = String::new();
        for (i, key) in keys.keys.iter().enumerate() {
            // The head ends up the most recent: chunk i is preceded by
            // `covered - end` characters that are older than it.
            let seq = base + (covered - keys.covered(i + 1) as u64);
            let current = self.choose_slot(store, &mut key_buf, *key);
            let mut was_live = false;
            update_from(store, &key_buf, current, |bytes| {
                let mut slot = match bytes {
                    Some(b) if slot::tag(b) == Some(*key) => b.to_vec(),
                    _ => slot::empty(*key),
                };
                let existing = slot::entry(&slot, id);
                was_live = existing.is_some_and(|e| {
                    before.is_live(e.seq, e.time_ms, backend.capacity_chars, now_ms, self.shape.ttl_ms)
                });
                if was_live && existing.is_some_and(|e| self.is_recent(&before, e, backend, now_ms)) {
                    return None;
                }
                let fresh = SlotEntry { backend: id, seq, time_ms: now_ms };
                slot::put(&mut slot, fresh, self.shape.max_backends_per_slot);
                Some(slot)
            });
            if !was_live {
                new_chars += keys.width(i) as u64;
            }
        }
        new_chars += tail;
        if new_chars == 0 {
            return;
        }
        update(store, &record_key, |bytes| {
            let mut record = BackendRecord::decode(bytes);
            if record.reset_seq > base {
                return None; // reset while inserting: the insert is void.
            }
            record.new_chars = record.new_chars.saturating_add(new_chars);
            Some(record.encode())
        });
    }

    /// Whether a live entry is recent enough to leave as it is: rewriting it
    /// would move it by under an eighth of the backend's capacity and of the
    /// TTL, and it was written less than [`REFRESH_AFTER_MS`] ago (slot
    /// eviction goes by write time). A hot prefix then costs one write a
    /// second per chunk rather than one per request.
    fn is_recent(
        &self,
        record: &BackendRecord,
        e: SlotEntry,
        backend: IndexedBackend<'_>,
        now_ms: u64,
    ) -> bool {
        let age_ms = now_ms.saturating_sub(e.time_ms);
        let ttl = self.shape.ttl_ms;
        record.next_seq.saturating_sub(e.seq) <= backend.capacity_chars / 8
            && age_ms < REFRESH_AFTER_MS
            && (ttl == 0 || age_ms <= ttl / 8)
    }

    /// Characters of prompt text `backend` is estimated to hold in cache: the
    /// distinct chunks inserted since its last reset, capped by its capacity.
    pub fn cached_chars<S: SharedStore + ?Sized>(&self, store: &S, backend: IndexedBackend<'_>) -> u64 {
        self.record(store, backend.name).new_chars.min(backend.capacity_chars)
    }

    /// Forgets everything `backend` holds: all its entries stop matching at once.
    pub fn remove_backend<S: SharedStore + ?Sized>(&self, store: &S, name: &str) {
        update(store, &record_key(name), |bytes| {
            let mut record = BackendRecord::decode(bytes);
            if record.reset_seq == record.next_seq && record.new_chars == 0 {
                return None;
            }
            record.reset_seq = record.next_seq;
            record.new_chars = 0;
            Some(record.encode())
        });
    }

    fn record<S: SharedStore + ?Sized>(&self, store: &S, name: &str) -> BackendRecord {
        let bytes = store.get(&record_key(name));
        BackendRecord::decode(bytes.as_ref().map(|(b, _)| b.as_slice()))
    }

    /// The two slots key `key` may live in (equal when there is one slot).
    fn slots_of(&self, key: u64) -> [u64; 2] {
        let n = u64::from(self.shape.slots.max(1));
        [key % n, key.rotate_left(32) % n]
    }

    /// The bytes of the slot holding `key`, if either of its slots does.
    fn find_slot<S: SharedStore + ?Sized>(&self, store: &S, buf: &mut String, key: u64) -> Option<Vec<u8>> {
        for slot in self.slots_of(key) {
            slot_key(buf, slot);
            if let Some((bytes, _)) = store.get(buf) {
                if slot::tag(&bytes) == Some(key) {
                    return Some(bytes);
                }
            }
        }
        None
    }

    /// Leaves in `buf` the key of the slot `key` should be written to: the
    /// one holding it, else an empty one, else the less recently written;
    /// returns that slot's current contents, read on the way.
    fn choose_slot<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        buf: &mut String,
        key: u64,
    ) -> Option<(Vec<u8>, Cas)> {
        let [a, b] = self.slots_of(key);
        let mut reads: [Option<(Vec<u8>, Cas)>; 2] = [None, None];
        let mut freshness = [0u64; 2];
        for (i, s) in [a, b].into_iter().enumerate() {
            slot_key(buf, s);
            let read = store.get(buf);
            match &read {
                Some((bytes, _)) if slot::tag(bytes) == Some(key) => return read,
                Some((bytes, _)) => freshness[i] = slot::newest(bytes).saturating_add(1),
                None => freshness[i] = 0,
            }
            if a == b {
                return read;
            }
            reads[i] = read;
        }
        let pick = usize::from(freshness[1] < freshness[0]);
        slot_key(buf, [a, b][pick]);
        reads[pick].take()
    }
}

/// The 32-bit identity a backend's entries carry in slots.
fn backend_id(name: &str) -> u32 {
    xxh3_64_with_seed(name.as_bytes(), ROOT_SEED) as u32
}

fn record_key(name: &str) -> String {
    format!("pg/ixb/{name}")
}

/// `pg/ix/{slot}` (decimal) into `buf`, digit by digit rather than through `write!`'s
/// formatting machinery: a decision writes one such key per prompt chunk.
fn slot_key(buf: &mut String, slot: u64) {
    buf.clear();
    buf.push_str("pg/ix/");
    let mut digits = [0u8; 20];
    let mut n = slot;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        buf.push(char::from(d));
    }
}

#[cfg(test)]
mod tests;
