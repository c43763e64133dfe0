//! A bounded, hashed prefix index kept in shared data: which backend last
//! received which prompt prefix, modelled as an LRU cache per backend.
//!
//! A prompt is cut into chunks: `chunk_chars` characters each at its start,
//! then each chunk `chunk_growth` of the text before it, so a prompt of *n*
//! characters costs O(log *n*) chunks and a match is exact to within that
//! fraction. Chunk *i*'s key is a hash chained over chunks `0..=i`, so one
//! key names a whole prefix path (the idea of vLLM's block hashes).
//!
//! The chunks live in a radix tree of runs: a node holds up to `run_chunks`
//! consecutive chunks of one path under the key of its first chunk, and per
//! backend the sequence number of each of those chunks it received. A match
//! or an insert touches one node per run instead of one slot per chunk, so a
//! decision costs a few store round trips whatever the prompt's length. Where
//! a new path leaves a run, the run is split there (its tail becomes a node
//! of its own, written first). A run that a stored path goes on past (split,
//! or full when a longer prompt went on) is closed and never grows again; an
//! open run at the end of a path grows with the next turn of a conversation.
//! A key may live in either of two slots (two-way set associative).
//! Sequence numbers count characters: a backend's chunk is
//! live while fewer than its capacity of characters were inserted for it
//! since (LRU: re-inserting a prefix refreshes it) and while younger than
//! the TTL.
//!
//! A new node takes the empty or the less recently written of its two slots,
//! so collisions evict old prefixes rather than arbitrary ones: a match stops
//! at the first node it cannot find. The tag prevents false matches, so a
//! collision or a lost race can only lose a match, never invent one.

use crate::store::{update, Cas, SharedStore, StoreError, Value, MAX_CAS_RETRIES};
use crate::wire::{u32_at, u64_at};
use node::{Node, NodeView};
use xxhash_rust::xxh3::xxh3_64_with_seed;

mod node;

/// Seed of the first chunk's hash (chunk *i* is seeded with chunk *i − 1*'s key).
const ROOT_SEED: u64 = 0x7072_6566_6978_6761; // "prefixga"
/// The key of every backend's record, read once per decision.
const RECORDS_KEY: &str = "pg/ixb";
/// Bytes of a backend record: id, next sequence, reset sequence, new characters.
const RECORD_BYTES: usize = 28;
/// Chunks per node: a run of eight covers a prompt of 8,000 characters in
/// four nodes with the default chunking (64 characters to 512, then each an
/// eighth of the text before it), and a node with 8 backends stays under 700
/// bytes.
pub const RUN_CHUNKS: usize = 8;
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
    /// Most chunks one node holds (1 to 255): a match or an insert costs one
    /// store round trip per run of this many chunks.
    pub run_chunks: usize,
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
}

/// A backend's bookkeeping record, one of the records under [`RECORDS_KEY`]
/// (id, then the three fields, little-endian).
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
    /// `id`'s record in the table `bytes` and where it starts; a default
    /// record for a backend not in it.
    fn find(bytes: Option<&[u8]>, id: u32) -> (Option<usize>, Self) {
        let table = bytes.unwrap_or_default();
        for (i, r) in table.chunks_exact(RECORD_BYTES).enumerate() {
            if u32_at(r, 0) == Some(id) {
                let field = |f: usize| u64_at(r, 4 + f * 8).unwrap_or(0);
                let record = Self { next_seq: field(0), reset_seq: field(1), new_chars: field(2) };
                return (Some(i * RECORD_BYTES), record);
            }
        }
        (None, Self::default())
    }

    /// The table `bytes` with `id`'s record set to `self`.
    fn write(&self, bytes: Option<&[u8]>, at: Option<usize>, id: u32) -> Vec<u8> {
        let mut table = bytes.unwrap_or_default().to_vec();
        table.truncate(table.len() / RECORD_BYTES * RECORD_BYTES);
        let mut record = [0u8; RECORD_BYTES];
        record[..4].copy_from_slice(&id.to_le_bytes());
        for (f, v) in [self.next_seq, self.reset_seq, self.new_chars].into_iter().enumerate() {
            record[4 + f * 8..12 + f * 8].copy_from_slice(&v.to_le_bytes());
        }
        match at {
            Some(at) if at + RECORD_BYTES <= table.len() => {
                table[at..at + RECORD_BYTES].copy_from_slice(&record)
            }
            _ => table.extend_from_slice(&record),
        }
        table
    }

    /// Applies `change` to `id`'s record with CAS retries; `change` returns
    /// `None` to leave it. Returns the record as it was before the applied
    /// change, or `None` when nothing was written.
    fn update<S: SharedStore + ?Sized>(
        store: &S,
        id: u32,
        mut change: impl FnMut(Self) -> Option<Self>,
    ) -> Option<Self> {
        let mut before = None;
        let written = update(store, RECORDS_KEY, |bytes| {
            let (at, record) = Self::find(bytes, id);
            before = Some(record);
            change(record).map(|next| next.write(bytes, at, id))
        });
        before.filter(|_| written)
    }

    /// Whether an entry stamped `seq` at `time_ms` still counts as cached.
    fn is_live(&self, seq: u64, time_ms: u64, capacity: u64, now_ms: u64, ttl_ms: u64) -> bool {
        seq >= self.reset_seq
            && seq < self.next_seq
            && self.next_seq - seq <= capacity
            && (ttl_ms == 0 || now_ms.saturating_sub(time_ms) < ttl_ms)
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
        let node = node::max_bytes(self.run_chunks(), self.shape.max_backends_per_slot.max(1));
        self.shape.slots as usize * (slot_key + node)
    }

    fn run_chunks(&self) -> usize {
        self.shape.run_chunks.clamp(1, usize::from(u8::MAX))
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
    /// One pass down the tree with one store read per node: each backend's
    /// match ends at the first chunk it holds no live entry for.
    pub fn longest_match<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        keys: &PromptKeys,
        backends: &[IndexedBackend<'_>],
        now_ms: u64,
    ) -> Vec<usize> {
        let ids: Vec<u32> = backends.iter().map(|b| backend_id(b.name)).collect();
        let table = store.get(RECORDS_KEY);
        let table = table.as_ref().map(|(bytes, _)| bytes.as_slice());
        let records: Vec<BackendRecord> = ids.iter().map(|id| BackendRecord::find(table, *id).1).collect();
        let mut matched = vec![0usize; backends.len()];
        let mut pos = 0;
        let mut key_buf = String::new();
        while pos < keys.chunks() {
            // Only backends holding every chunk so far can match further.
            if !records.iter().zip(&matched).any(|(r, m)| *m == pos && r.next_seq > r.reset_seq) {
                break;
            }
            let Some(bytes) = self.find_slot(store, &mut key_buf, keys.keys[pos]) else {
                break;
            };
            let Some(view) = NodeView::new(&bytes) else {
                break;
            };
            let run = view.common(&keys.keys[pos..]);
            for j in 0..backends.len() {
                if matched[j] != pos {
                    continue;
                }
                let Some(entry) = view.entry(ids[j]) else {
                    continue;
                };
                let live = (0..run.min(entry.depth()))
                    .take_while(|&c| {
                        entry.seq(c).is_some_and(|seq| {
                            let (cap, ttl) = (backends[j].capacity_chars, self.shape.ttl_ms);
                            records[j].is_live(seq, entry.time_ms, cap, now_ms, ttl)
                        })
                    })
                    .count();
                matched[j] = pos + live;
            }
            // A prompt that leaves the run has no stored continuation: the
            // run would have been split where a stored path left it.
            if run < view.len() {
                break;
            }
            pos += run;
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
        let id = backend_id(backend.name);
        if covered == 0 {
            if tail > 0 {
                BackendRecord::update(store, id, |mut record| {
                    record.new_chars = record.new_chars.saturating_add(tail);
                    Some(record)
                });
            }
            return;
        }
        // What the backend holds already is its match: the rest is new. One
        // write then reserves the sequence numbers and counts the new
        // characters (the match's reads are the nodes the insert reads).
        let held = self.longest_match(store, keys, &[backend], now_ms).first().copied().unwrap_or(0) as u64;
        let new_chars = covered.saturating_sub(held) + tail;
        let reserved = BackendRecord::update(store, id, |record| {
            let mut next = record;
            next.next_seq = record.next_seq.max(record.reset_seq) + covered;
            next.new_chars = record.new_chars.saturating_add(new_chars);
            Some(next)
        });
        let Some(before) = reserved else {
            return;
        };
        let writer = Writer {
            index: self,
            keys,
            backend,
            id,
            before,
            base: before.next_seq.max(before.reset_seq),
            covered,
            now_ms,
        };
        let mut pos = 0;
        let mut key_buf = String::new();
        // Each node is one write, retried on a conflict; a split is two.
        let mut attempts = keys.chunks() * MAX_CAS_RETRIES;
        while pos < keys.chunks() && attempts > 0 {
            attempts -= 1;
            let current = self.choose_slot(store, &mut key_buf, keys.keys[pos]);
            let (bytes, cas) = match &current {
                Some((bytes, cas)) => (Some(bytes.as_slice()), Some(*cas)),
                None => (None, None),
            };
            let step = writer.step(pos, bytes);
            if let Some(rest) = &step.split_off {
                // The tail of the run first: until the run is cut, nothing
                // reaches it, and once it is, the tail is there.
                let mut rest_buf = String::new();
                let there = self.choose_slot(store, &mut rest_buf, rest.keys[0]);
                let _ = store.set(&rest_buf, &rest.encode(), there.map(|(_, cas)| cas));
            }
            if let Some(write) = &step.write {
                match store.set(&key_buf, write, cas) {
                    Ok(()) => {}
                    Err(StoreError::CasMismatch) => continue,
                    Err(StoreError::Host { .. }) => break,
                }
            }
            pos += step.advance.max(1);
        }
    }

    /// Whether a live entry is recent enough to leave as it is: rewriting it
    /// would move it by under an eighth of the backend's capacity and of the
    /// TTL, and it was written less than [`REFRESH_AFTER_MS`] ago (slot
    /// eviction goes by write time). A hot prefix then costs one write a
    /// second per chunk rather than one per request.
    fn is_recent(
        &self,
        record: &BackendRecord,
        seq: u64,
        time_ms: u64,
        backend: IndexedBackend<'_>,
        now_ms: u64,
    ) -> bool {
        let age_ms = now_ms.saturating_sub(time_ms);
        let ttl = self.shape.ttl_ms;
        record.next_seq.saturating_sub(seq) <= backend.capacity_chars / 8
            && age_ms < REFRESH_AFTER_MS
            && (ttl == 0 || age_ms <= ttl / 8)
    }

    /// Characters of prompt text `backend` is estimated to hold in cache: the
    /// distinct chunks inserted since its last reset, capped by its capacity.
    pub fn cached_chars<S: SharedStore + ?Sized>(&self, store: &S, backend: IndexedBackend<'_>) -> u64 {
        let table = store.get(RECORDS_KEY);
        let table = table.as_ref().map(|(bytes, _)| bytes.as_slice());
        BackendRecord::find(table, backend_id(backend.name)).1.new_chars.min(backend.capacity_chars)
    }

    /// Forgets everything `backend` holds: all its entries stop matching at once.
    pub fn remove_backend<S: SharedStore + ?Sized>(&self, store: &S, name: &str) {
        BackendRecord::update(store, backend_id(name), |mut record| {
            if record.reset_seq == record.next_seq && record.new_chars == 0 {
                return None;
            }
            record.reset_seq = record.next_seq;
            record.new_chars = 0;
            Some(record)
        });
    }

    /// The two slots key `key` may live in (equal when there is one slot).
    fn slots_of(&self, key: u64) -> [u64; 2] {
        let n = u64::from(self.shape.slots.max(1));
        [key % n, key.rotate_left(32) % n]
    }

    /// The bytes of the slot holding `key`, if either of its slots does.
    fn find_slot<S: SharedStore + ?Sized>(&self, store: &S, buf: &mut String, key: u64) -> Option<Value> {
        for slot in self.slots_of(key) {
            slot_key(buf, slot);
            if let Some((bytes, _)) = store.get(buf) {
                if node::tag(&bytes) == Some(key) {
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
    ) -> Option<(Value, Cas)> {
        let [a, b] = self.slots_of(key);
        let mut reads: [Option<(Value, Cas)>; 2] = [None, None];
        let mut freshness = [0u64; 2];
        for (i, s) in [a, b].into_iter().enumerate() {
            slot_key(buf, s);
            let read = store.get(buf);
            match &read {
                Some((bytes, _)) if node::tag(bytes) == Some(key) => return read,
                Some((bytes, _)) => {
                    freshness[i] = NodeView::new(bytes).map_or(0, |n| n.newest()).saturating_add(1);
                }
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

/// One insert's view of the prompt and the backend, shared by its steps.
struct Writer<'a, 'k> {
    index: &'a PrefixIndex,
    keys: &'k PromptKeys,
    backend: IndexedBackend<'a>,
    id: u32,
    /// The backend's record before this insert reserved its sequence numbers.
    before: BackendRecord,
    /// The first sequence number reserved.
    base: u64,
    /// Characters in the prompt's whole chunks.
    covered: u64,
    now_ms: u64,
}

/// What one step of an insert writes.
struct Step {
    /// The node's new bytes, or `None` when it stays as it is.
    write: Option<Vec<u8>>,
    /// The run's tail to store as a node of its own before `write`.
    split_off: Option<Node>,
    /// Chunks of the prompt the node covers from this step's position.
    advance: usize,
}

impl Writer<'_, '_> {
    /// Sequence number of the prompt's chunk `i`: the head is the most
    /// recent, chunk `i` being preceded by `covered - end` older characters.
    fn seq(&self, i: usize) -> u64 {
        self.base + (self.covered - self.keys.covered(i + 1) as u64)
    }

    /// The node for the prompt's chunks from `pos`, given the slot's bytes.
    fn step(&self, pos: usize, bytes: Option<&[u8]>) -> Step {
        let keys = &self.keys.keys[pos..];
        let max_run = self.index.run_chunks();
        let found = bytes.filter(|b| node::tag(b) == Some(keys[0])).and_then(NodeView::new);
        let mut node = match found {
            Some(view) => Node::decode(view),
            None => Node::new(keys[..keys.len().min(max_run)].to_vec()),
        };
        let existing = found.is_some();
        let run = node.keys.iter().zip(keys).take_while(|(a, b)| a == b).count();
        let flags = node.flags;
        let mut split_off = None;
        if run < node.keys.len() && run < keys.len() {
            // The prompt leaves the run: cut it there.
            split_off = Some(node.split(run));
        } else if run == node.keys.len() && keys.len() > run {
            if node.flags & node::CLOSED == 0 && run < max_run {
                // The prompt goes on past an open run: the run grows.
                let grown = keys.len().min(max_run);
                node.keys.extend_from_slice(&keys[run..grown]);
            }
            if node.keys.len() < keys.len() {
                // It goes on past the run's end: the run may not grow again,
                // or what is stored beyond its end would be cut off.
                node.flags |= node::CLOSED;
            }
        }
        let advance = run.max(node.keys.len().min(keys.len())).min(node.keys.len());
        let changed = !existing || split_off.is_some() || node.keys.len() > run || node.flags != flags;
        let touched = self.refresh(&mut node, pos, advance);
        node.trim(self.id, self.index.shape.max_backends_per_slot);
        let write = (changed || touched).then(|| node.encode());
        Step { write, split_off, advance }
    }

    /// Stamps the backend's entry for the node's first `advance` chunks
    /// (prompt chunks `pos..pos + advance`), keeping recent ones as they are.
    /// Returns whether the entry changed.
    fn refresh(&self, node: &mut Node, pos: usize, advance: usize) -> bool {
        let at = match node.entries.iter().position(|e| e.backend == self.id) {
            Some(at) => at,
            None => {
                node.entries.push(node::Entry { backend: self.id, time_ms: self.now_ms, seqs: Vec::new() });
                node.entries.len() - 1
            }
        };
        let entry = &mut node.entries[at];
        let (cap, ttl) = (self.backend.capacity_chars, self.index.shape.ttl_ms);
        let old_time = entry.time_ms;
        // Chunks beyond a stale one are not held: a match would stop there.
        let mut held = true;
        let mut touched = false;
        for c in 0..advance {
            let old = entry.seqs.get(c).copied();
            held &= old.is_some_and(|seq| self.before.is_live(seq, old_time, cap, self.now_ms, ttl));
            let keep = held
                && old.is_some_and(|seq| {
                    self.index.is_recent(&self.before, seq, old_time, self.backend, self.now_ms)
                });
            if keep {
                continue;
            }
            let seq = self.seq(pos + c);
            match entry.seqs.get_mut(c) {
                Some(slot) => *slot = seq,
                None => entry.seqs.push(seq),
            }
            touched = true;
        }
        if touched {
            entry.time_ms = self.now_ms;
        }
        touched
    }
}

#[cfg(test)]
mod tests;
