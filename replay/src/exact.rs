//! The exact reference: the longest common prefix of a prompt with the
//! prompts each backend received, with no memory bound and no chunks.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::rc::Rc;

/// Every prompt each backend received, sorted, so that the longest common
/// prefix of a query with any of them is that with one of its two
/// neighbours in the order.
#[derive(Debug, Default)]
pub struct ExactIndex {
    per_backend: Vec<BTreeSet<Rc<str>>>,
    /// The last prompt of each conversation each backend received: a later
    /// turn extends it, so it is dropped from the set once one arrives.
    last: HashMap<(usize, u64), Rc<str>>,
}

impl ExactIndex {
    /// An empty reference over `backends` backends.
    pub fn new(backends: usize) -> Self {
        Self { per_backend: vec![BTreeSet::new(); backends], last: HashMap::new() }
    }

    /// Records that `backend` received `prompt`, a turn of `conversation`.
    pub fn insert(&mut self, backend: usize, conversation: u64, prompt: &str) {
        let Some(set) = self.per_backend.get_mut(backend) else {
            return;
        };
        let prompt: Rc<str> = Rc::from(prompt);
        if let Some(before) = self.last.insert((backend, conversation), prompt.clone()) {
            if prompt.starts_with(&*before) {
                set.remove(&before);
            }
        }
        set.insert(prompt);
    }

    /// Characters of `prompt` that `backend` received as a prefix of one
    /// prompt.
    pub fn longest_match(&self, backend: usize, prompt: &str) -> usize {
        let Some(set) = self.per_backend.get(backend) else {
            return 0;
        };
        let below = set.range::<str, _>((Bound::Unbounded, Bound::Included(prompt))).next_back();
        let above = set.range::<str, _>((Bound::Excluded(prompt), Bound::Unbounded)).next();
        [below, above].into_iter().flatten().map(|p| common_prefix(p, prompt)).max().unwrap_or(0)
    }
}

/// Characters two strings share at their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_shared_prefix_per_backend() {
        let mut ix = ExactIndex::new(2);
        ix.insert(0, 1, "system A user one");
        ix.insert(0, 2, "system B user two");
        ix.insert(1, 3, "system A user three");
        assert_eq!(ix.longest_match(0, "system A user one more"), 17);
        assert_eq!(ix.longest_match(0, "system A user t"), 14);
        assert_eq!(ix.longest_match(1, "system A user t"), 15);
        assert_eq!(ix.longest_match(1, "other"), 0);
        assert_eq!(ix.longest_match(5, "system"), 0);
    }

    #[test]
    fn a_later_turn_replaces_the_earlier_one_without_losing_matches() {
        let mut ix = ExactIndex::new(1);
        ix.insert(0, 1, "sys hello");
        ix.insert(0, 1, "sys hello reply again");
        assert_eq!(ix.per_backend[0].len(), 1);
        assert_eq!(ix.longest_match(0, "sys hello reply"), 15);
        assert_eq!(ix.longest_match(0, "sys hello there"), 10);
    }
}
