//! A node's bytes: a run of up to `run_chunks` chunks along one prompt path,
//! and per backend which of them it received and when.
//!
//! ```text
//! tag   u64   chain key of the run's first chunk (the slot's key)
//! len   u8    chunks in the run
//! flags u8    CLOSED: a stored path goes on past the run's end
//! keys  u64 × (len − 1)   chain keys of the run's other chunks
//! then per backend: id u32, time u64, depth u8, seq u64 × depth
//! ```
//!
//! An entry of depth *d* says the backend received the run's first *d*
//! chunks, chunk *c* with sequence number `seq[c]`. A match reads the
//! entries in place ([`NodeView`]); an insert decodes, edits and encodes the
//! node ([`Node`]).

use crate::wire::{u32_at, u64_at};

/// Some stored path goes on past the run's end (the run was split there, or
/// it was full when a longer prompt went on), so the run may not grow.
pub const CLOSED: u8 = 1;
/// Bytes before the run's keys: tag, length, flags.
const HEAD_BYTES: usize = 10;
/// Bytes of an entry before its sequence numbers: id, time, depth.
const ENTRY_HEAD_BYTES: usize = 13;

/// Largest node for `run_chunks` chunks and `backends` entries.
pub fn max_bytes(run_chunks: usize, backends: usize) -> usize {
    HEAD_BYTES + run_chunks.saturating_sub(1) * 8 + backends * (ENTRY_HEAD_BYTES + run_chunks * 8)
}

/// The key held by a node.
pub fn tag(bytes: &[u8]) -> Option<u64> {
    u64_at(bytes, 0)
}

/// A node read in place.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> NodeView<'a> {
    /// The node in `bytes`, or `None` when they are too short to be one.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let len = usize::from(*bytes.get(8)?);
        (len >= 1 && bytes.len() >= HEAD_BYTES + (len - 1) * 8).then_some(Self { bytes, len })
    }

    /// Chunks in the run.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The node's flags.
    pub fn flags(&self) -> u8 {
        self.bytes[9]
    }

    /// Chain key of the run's chunk `i`.
    pub fn key(&self, i: usize) -> Option<u64> {
        match i {
            0 => tag(self.bytes),
            _ if i < self.len => u64_at(self.bytes, HEAD_BYTES + (i - 1) * 8),
            _ => None,
        }
    }

    /// Chunks of the run that `keys` (the prompt's keys from the run's
    /// first chunk on) follow.
    pub fn common(&self, keys: &[u64]) -> usize {
        (0..self.len.min(keys.len())).take_while(|&i| self.key(i) == Some(keys[i])).count()
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = EntryView<'a>> + 'a {
        let mut at = HEAD_BYTES + (self.len - 1) * 8;
        let bytes = self.bytes;
        std::iter::from_fn(move || {
            let backend = u32_at(bytes, at)?;
            let time_ms = u64_at(bytes, at + 4)?;
            let depth = usize::from(*bytes.get(at + 12)?);
            let seqs = bytes.get(at + ENTRY_HEAD_BYTES..at + ENTRY_HEAD_BYTES + depth * 8)?;
            at += ENTRY_HEAD_BYTES + depth * 8;
            Some(EntryView { backend, time_ms, seqs })
        })
    }

    /// `backend`'s entry, if the node has one.
    pub fn entry(&self, backend: u32) -> Option<EntryView<'a>> {
        self.entries().find(|e| e.backend == backend)
    }

    /// When the node was last written (its newest entry's time).
    pub fn newest(&self) -> u64 {
        self.entries().map(|e| e.time_ms).max().unwrap_or(0)
    }
}

/// One backend's entry, read in place.
#[derive(Clone, Copy)]
pub struct EntryView<'a> {
    /// The backend's id.
    pub backend: u32,
    /// When the entry was written.
    pub time_ms: u64,
    seqs: &'a [u8],
}

impl EntryView<'_> {
    /// Chunks of the run the backend received.
    pub fn depth(&self) -> usize {
        self.seqs.len() / 8
    }

    /// Sequence number of chunk `c` of the run.
    pub fn seq(&self, c: usize) -> Option<u64> {
        u64_at(self.seqs, c * 8)
    }
}

/// One backend's entry, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The backend's id.
    pub backend: u32,
    /// When the entry was written.
    pub time_ms: u64,
    /// Sequence number of each chunk the backend received, from the run's first.
    pub seqs: Vec<u64>,
}

/// A node, decoded for editing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Chain keys of the run's chunks; the first is the node's tag.
    pub keys: Vec<u64>,
    /// [`CLOSED`] or 0.
    pub flags: u8,
    /// One per backend.
    pub entries: Vec<Entry>,
}

impl Node {
    /// A run of `keys` with no entries.
    pub fn new(keys: Vec<u64>) -> Self {
        Self { keys, flags: 0, entries: Vec::new() }
    }

    /// Decodes a node read in place.
    pub fn decode(view: NodeView<'_>) -> Self {
        let keys = (0..view.len()).filter_map(|i| view.key(i)).collect();
        let entries = view
            .entries()
            .map(|e| Entry {
                backend: e.backend,
                time_ms: e.time_ms,
                seqs: (0..e.depth()).filter_map(|c| e.seq(c)).collect(),
            })
            .collect();
        Self { keys, flags: view.flags(), entries }
    }

    /// The node's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size = HEAD_BYTES
            + (self.keys.len().saturating_sub(1)) * 8
            + self.entries.iter().map(|e| ENTRY_HEAD_BYTES + e.seqs.len() * 8).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&self.keys.first().copied().unwrap_or(0).to_le_bytes());
        out.push(self.keys.len().min(usize::from(u8::MAX)) as u8);
        out.push(self.flags);
        for key in self.keys.iter().skip(1).take(usize::from(u8::MAX) - 1) {
            out.extend_from_slice(&key.to_le_bytes());
        }
        for e in &self.entries {
            out.extend_from_slice(&e.backend.to_le_bytes());
            out.extend_from_slice(&e.time_ms.to_le_bytes());
            let depth = e.seqs.len().min(self.keys.len()).min(usize::from(u8::MAX));
            out.push(depth as u8);
            for seq in &e.seqs[..depth] {
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
        out
    }

    /// Cuts the run after its first `at` chunks: returns the rest, with the
    /// entries' share of it, as a node of its own, and marks this one closed.
    pub fn split(&mut self, at: usize) -> Node {
        let rest = Node {
            keys: self.keys.split_off(at),
            flags: self.flags,
            entries: self
                .entries
                .iter_mut()
                .filter(|e| e.seqs.len() > at)
                .map(|e| Entry { backend: e.backend, time_ms: e.time_ms, seqs: e.seqs.split_off(at) })
                .collect(),
        };
        self.flags |= CLOSED;
        rest
    }

    /// Drops the oldest entries other than `keep`'s beyond `max` entries.
    pub fn trim(&mut self, keep: u32, max: usize) {
        while self.entries.len() > max.max(1) {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.backend != keep)
                .min_by_key(|(_, e)| e.time_ms)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            keys: vec![10, 11, 12],
            flags: 0,
            entries: vec![
                Entry { backend: 1, time_ms: 5, seqs: vec![30, 20, 10] },
                Entry { backend: 2, time_ms: 7, seqs: vec![40] },
            ],
        }
    }

    #[test]
    fn a_node_round_trips_and_reads_in_place() {
        let n = node();
        let bytes = n.encode();
        assert_eq!(bytes.len(), max_bytes(3, 2) - 16);
        let view = NodeView::new(&bytes).unwrap();
        assert_eq!((view.len(), tag(&bytes), view.key(2), view.key(3)), (3, Some(10), Some(12), None));
        assert_eq!(view.common(&[10, 11, 99]), 2);
        assert_eq!(view.common(&[10]), 1);
        let e = view.entry(1).unwrap();
        assert_eq!((e.depth(), e.seq(1), e.time_ms), (3, Some(20), 5));
        assert_eq!(view.newest(), 7);
        assert_eq!(Node::decode(view), n);
    }

    #[test]
    fn a_split_hands_the_rest_of_each_entry_to_the_new_node() {
        let mut n = node();
        let rest = n.split(1);
        assert_eq!((n.keys.clone(), n.flags), (vec![10], CLOSED));
        assert_eq!(n.entries[0].seqs, vec![30]);
        assert_eq!(n.entries[1].seqs, vec![40]);
        assert_eq!((rest.keys.clone(), rest.flags), (vec![11, 12], 0));
        assert_eq!(rest.entries, vec![Entry { backend: 1, time_ms: 5, seqs: vec![20, 10] }]);
    }

    #[test]
    fn trim_keeps_the_writer_and_the_newest() {
        let mut n = node();
        n.entries.push(Entry { backend: 3, time_ms: 1, seqs: vec![1] });
        n.trim(3, 2);
        let ids: Vec<u32> = n.entries.iter().map(|e| e.backend).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn truncated_bytes_are_no_node() {
        assert!(NodeView::new(&[0; 9]).is_none());
        let bytes = node().encode();
        assert!(NodeView::new(&bytes[..12]).is_none());
        // A cut entry ends the entries rather than reading past the end.
        let view = NodeView::new(&bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(view.entries().count(), 1);
    }
}
