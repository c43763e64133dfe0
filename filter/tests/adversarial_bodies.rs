//! Prompt extraction on the adversarial corpus (`prefixgate-adversarial`):
//! every shape at 1, 2, 3 and 4 MiB yields the head of its prompt, never
//! more than the budget, and allocates no more than the budget's worth of
//! text (plus one bit per level of nesting in a skipped value).
//!
//! Cost is not timed here (no timed assertions in tests); the allocation
//! bound and the benches (`benches/prompt.rs`) stand for it.

#[path = "support/value_prompt.rs"]
mod value_prompt;

use prefixgate_adversarial as adversarial;
use prefixgate_adversarial::{corpus, SIZES};
use prefixgate_filter::prompt::{extract_prompt, MAX_NESTING, MAX_PROMPT_ELEMENTS};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The default `max_prompt_chars`.
const DEFAULT_BUDGET: usize = 131_072;

thread_local! {
    /// Bytes this thread holds, and the most it held since the last reset.
    static HELD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The system allocator, counting what each thread holds.
struct Counting;

fn held(add: usize, sub: usize) {
    let _ = HELD.try_with(|h| {
        let (now, peak) = h.get();
        let now = (now + add).saturating_sub(sub);
        h.set((now, peak.max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counts are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        held(layout.size(), 0);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(0, layout.size());
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        held(new_size, layout.size());
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most this thread allocated at once while `f` ran, beyond what it held before.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.with(|h| {
        let (now, _) = h.get();
        h.set((now, now));
        now
    });
    let out = f();
    let (_, peak) = HELD.with(Cell::get);
    (out, peak - before)
}

/// Checks every shape at every size with `budget`.
fn check_corpus(budget: usize) {
    for size in SIZES {
        for shape in corpus(size) {
            let what = format!("{} at {} MiB, budget {budget}", shape.name, size >> 20);
            let (prompt, peak) = peak_allocation(|| {
                extract_prompt(shape.path, &shape.body, budget).map(|p| (p.chars().count(), p.into_owned()))
            });
            let head = shape.expected_prompt(budget, MAX_PROMPT_ELEMENTS, MAX_NESTING);
            let chars = prompt.as_ref().map_or(0, |(chars, _)| *chars);
            assert!(chars <= budget, "{what}: {chars} characters");
            assert!(prompt.map(|(_, p)| p) == head, "{what}: not the head of the prompt");
            // The text (at most 4 bytes a character, at most twice that
            // reserved while it grows), the bracket bits of a skipped value
            // (one per level: an eighth of the body, twice that reserved),
            // and the copy this test makes of the prompt.
            let bound = 2 * 4 * budget + shape.body.len() / 4 + 4 * budget + 4096;
            assert!(peak <= bound, "{what}: {peak} bytes allocated, bound {bound}");
        }
    }
}

#[test]
fn every_shape_yields_the_head_of_its_prompt_at_the_default_budget() {
    check_corpus(DEFAULT_BUDGET);
}

#[test]
fn every_shape_yields_the_head_of_its_prompt_at_small_budgets() {
    for budget in [1, 7, 1000] {
        check_corpus(budget);
    }
}

#[test]
fn reading_a_huge_escaped_prompt_allocates_only_its_head() {
    let shape = adversarial::escaped_newlines(4 << 20);
    let (prompt, peak) = peak_allocation(|| extract_prompt(shape.path, &shape.body, 1000).map(|p| p.len()));
    assert_eq!(prompt, Some(1000));
    assert!(peak <= 2 * 1000, "{peak} bytes for 1000 newlines");
}

#[test]
fn skipped_values_allocate_nothing_but_bracket_bits() {
    for shape in [adversarial::huge_skipped_field(4 << 20), adversarial::huge_number(4 << 20)] {
        let (prompt, peak) =
            peak_allocation(|| extract_prompt(shape.path, &shape.body, DEFAULT_BUDGET).map(|p| p.len()));
        assert_eq!(prompt, Some(shape.prompt.len()), "{}", shape.name);
        assert_eq!(peak, 0, "{}: the prompt is borrowed and nothing else allocates", shape.name);
    }
    let deep = adversarial::deep_skipped_field(4 << 20);
    let (_, peak) =
        peak_allocation(|| extract_prompt(deep.path, &deep.body, DEFAULT_BUDGET).map(|p| p.len()));
    assert!(peak <= deep.body.len() / 4, "{peak} bytes of bracket bits for {} bytes", deep.body.len());
}

/// The corpus says what it holds: where a `Value` can read a small version
/// of a shape (nesting under 128 levels, numbers within `f64`), it finds
/// the same prompt.
#[test]
fn the_corpus_prompts_are_what_a_value_reads() {
    for shape in corpus(64 << 10) {
        let Ok(_) = serde_json::from_slice::<serde_json::Value>(&shape.body) else {
            let too_deep_or_big = ["deep_skipped_field", "deep_messages", "huge_number"];
            assert!(too_deep_or_big.contains(&shape.name), "{} is not JSON", shape.name);
            continue;
        };
        assert_eq!(
            value_prompt::extract_prompt(shape.path, &shape.body).as_deref(),
            Some(shape.prompt.as_str()),
            "{}",
            shape.name
        );
    }
}
