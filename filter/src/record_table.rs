//! Small per-backend records kept together under one shared-data key, so a
//! decision reads one key for every backend instead of one per backend.
//!
//! Layout: repeated `name length u16, name, record length u16, record`. A
//! record is changed by a read-modify-write of the whole table with CAS
//! retries, like any key; the tables kept this way (scrape results, passive
//! health) are written by the poller and on failures, not on every request.
//! An empty record removes the name from the table.

use crate::store::{update as update_key, SharedStore};

/// `name`'s record in `table`.
pub fn find<'a>(table: &'a [u8], name: &str) -> Option<&'a [u8]> {
    entries(table).find(|(n, _)| *n == name.as_bytes()).map(|(_, record)| record)
}

/// `name`'s record in the table under `key`.
pub fn read<S: SharedStore + ?Sized>(store: &S, key: &str, name: &str) -> Option<Vec<u8>> {
    let (table, _) = store.get(key)?;
    find(&table, name).map(<[u8]>::to_vec)
}

/// Applies `change` to `name`'s record (`None` when it has none) with CAS
/// retries; `change` returns the new record (empty removes it), or `None` to
/// leave the table as it is. Returns whether a write was applied.
pub fn update<S, F>(store: &S, key: &str, name: &str, mut change: F) -> bool
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
{
    update_key(store, key, |bytes| {
        let table = bytes.unwrap_or_default();
        let record = change(find(table, name))?;
        Some(with_record(table, name, &record))
    })
}

/// Keeps only the records whose name `keep` accepts.
pub fn retain<S: SharedStore + ?Sized>(store: &S, key: &str, keep: impl Fn(&str) -> bool) {
    let kept = |n: &[u8]| std::str::from_utf8(n).is_ok_and(&keep);
    update_key(store, key, |bytes| {
        let table = bytes.unwrap_or_default();
        entries(table).any(|(n, _)| !kept(n)).then(|| rebuilt(table, 0, kept))
    });
}

/// `table` with `name`'s record replaced by `record` (appended when absent,
/// removed when empty).
fn with_record(table: &[u8], name: &str, record: &[u8]) -> Vec<u8> {
    let mut out = rebuilt(table, name.len() + record.len() + 4, |n| n != name.as_bytes());
    if !record.is_empty() {
        push(&mut out, name.as_bytes(), record);
    }
    out
}

/// The records of `table` whose name `keep` accepts, in order, with room for
/// `extra` more bytes.
fn rebuilt(table: &[u8], extra: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + extra);
    for (n, record) in entries(table).filter(|(n, _)| keep(n)) {
        push(&mut out, n, record);
    }
    out
}

fn push(out: &mut Vec<u8>, name: &[u8], record: &[u8]) {
    // Names are backend addresses and records a few dozen bytes: both fit a
    // u16 length; anything longer is not stored.
    let (Ok(n), Ok(r)) = (u16::try_from(name.len()), u16::try_from(record.len())) else {
        return;
    };
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&r.to_le_bytes());
    out.extend_from_slice(record);
}

/// The table's `(name, record)` pairs; a cut entry ends the table.
fn entries(table: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let length = |at: usize| table.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
        let n = length(at)?;
        let name = table.get(at + 2..at + 2 + n)?;
        let r = length(at + 2 + n)?;
        let record = table.get(at + 4 + n..at + 4 + n + r)?;
        at += 4 + n + r;
        Some((name, record))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn records_are_set_replaced_and_removed_by_name() {
        let store = MemoryStore::new();
        assert!(update(&store, "t", "a:1", |old| {
            assert!(old.is_none());
            Some(b"one".to_vec())
        }));
        update(&store, "t", "b:2", |_| Some(b"two".to_vec()));
        update(&store, "t", "a:1", |old| {
            assert_eq!(old, Some(&b"one"[..]));
            Some(b"uno".to_vec())
        });
        assert_eq!(read(&store, "t", "a:1").as_deref(), Some(&b"uno"[..]));
        assert_eq!(read(&store, "t", "b:2").as_deref(), Some(&b"two"[..]));
        assert!(read(&store, "t", "c:3").is_none());
        // Leaving it writes nothing; an empty record removes the name.
        assert!(!update(&store, "t", "b:2", |_| None));
        update(&store, "t", "a:1", |_| Some(Vec::new()));
        assert!(read(&store, "t", "a:1").is_none());
        assert_eq!(read(&store, "t", "b:2").as_deref(), Some(&b"two"[..]));
        assert_eq!(store.len(), 1, "one key holds the table");
    }

    #[test]
    fn retain_drops_the_other_names_and_a_cut_table_reads_what_it_holds() {
        let store = MemoryStore::new();
        for name in ["a", "b", "c"] {
            update(&store, "t", name, |_| Some(name.as_bytes().to_vec()));
        }
        retain(&store, "t", |n| n != "b");
        assert!(read(&store, "t", "b").is_none());
        assert!(read(&store, "t", "c").is_some());
        let (table, _) = store.get("t").unwrap();
        assert_eq!(find(&table[..table.len() - 1], "a"), Some(&b"a"[..]));
        assert_eq!(find(&table[..table.len() - 1], "c"), None);
    }
}
