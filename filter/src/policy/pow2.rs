//! `pow2`: the less loaded of two distinct random healthy backends.

use super::{Candidates, Pick, Policy, PolicyKind, Reason};
use crate::fleet::BackendView;

/// Power of two choices.
#[derive(Debug, Default)]
pub struct Pow2;

impl Policy for Pow2 {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Pow2
    }

    fn pick(&self, c: &Candidates<'_>, rng: &mut fastrand::Rng) -> Pick {
        Pick {
            backend: pow2_pick(c.backends, rng),
            reason: Reason::Pow2,
            match_ratio: 0.0,
            prefill_tokens: 0.0,
        }
    }
}

/// Samples two distinct backends uniformly and returns the less loaded one
/// (ties broken at random). `backends` must not be empty.
pub fn pow2_pick(backends: &[BackendView], rng: &mut fastrand::Rng) -> usize {
    let n = backends.len();
    if n <= 1 {
        return 0;
    }
    // Two distinct indices without retrying: the second is drawn from n − 1
    // values and shifted past the first.
    let a = rng.usize(..n);
    let mut b = rng.usize(..n - 1);
    if b >= a {
        b += 1;
    }
    let (la, lb) = (backends[a].weighted_load(), backends[b].weighted_load());
    if la < lb || (la == lb && rng.bool()) {
        a
    } else {
        b
    }
}

/// The least loaded of `among` (indices into `backends`), ties at random.
/// Returns `None` when `among` is empty.
pub fn least_loaded(backends: &[BackendView], among: &[usize], rng: &mut fastrand::Rng) -> Option<usize> {
    let min = among.iter().map(|&i| backends[i].weighted_load()).fold(f64::INFINITY, f64::min);
    let tied: Vec<usize> = among.iter().copied().filter(|&i| backends[i].weighted_load() == min).collect();
    match tied.len() {
        0 => None,
        n => Some(tied[rng.usize(..n)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::view;

    #[test]
    fn pair_is_distinct_and_lower_load_wins() {
        let backends = vec![view("a", 5), view("b", 1)];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            assert_eq!(pow2_pick(&backends, &mut rng), 1);
        }
    }

    #[test]
    fn most_loaded_of_three_is_never_chosen() {
        let backends = vec![view("a", 1), view("b", 9), view("c", 2)];
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[pow2_pick(&backends, &mut rng)] += 1;
        }
        assert_eq!(counts[1], 0, "{counts:?}");
        // a wins both of its pairs, c wins only against b: a ≈ 2/3, c ≈ 1/3.
        assert!(counts[0] > counts[2], "{counts:?}");
    }

    #[test]
    fn equal_loads_spread_evenly() {
        let backends: Vec<_> = (0..4).map(|i| view(&format!("b{i}"), 0)).collect();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[pow2_pick(&backends, &mut rng)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn least_loaded_breaks_ties_among_the_given() {
        let backends = vec![view("a", 0), view("b", 2), view("c", 2), view("d", 3)];
        let mut rng = fastrand::Rng::with_seed(9);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let i = least_loaded(&backends, &[1, 2, 3], &mut rng).unwrap_or(99);
            seen[i] = true;
        }
        assert_eq!(seen, [false, true, true, false]);
        assert_eq!(least_loaded(&backends, &[], &mut rng), None);
    }
}
