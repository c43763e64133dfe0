//! The replay benchmarks' command line, as `cargo bench` hands it over:
//! `--bench`, optional name filters, and `--flag N` counts.

/// A replay benchmark's arguments.
pub struct BenchArgs {
    args: Vec<String>,
}

impl BenchArgs {
    /// This process's arguments, or `None` when a name filter is given that
    /// `bench` does not contain (`cargo bench other` skips it). `count_flags`
    /// are the flags that take a count, whose values are no filters.
    pub fn selected(bench: &str, count_flags: &[&str]) -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let is_filter = |i: usize, a: &String| {
            !a.starts_with("--")
                && !i
                    .checked_sub(1)
                    .and_then(|p| args.get(p))
                    .is_some_and(|f| count_flags.contains(&f.as_str()))
        };
        let skipped = args.iter().enumerate().any(|(i, a)| is_filter(i, a) && !bench.contains(a.as_str()));
        (!skipped).then_some(Self { args })
    }

    /// The count after `flag`, or `default` when the flag is absent.
    ///
    /// # Panics
    /// When the value is not a count: a benchmark run by hand stops there.
    pub fn count(&self, flag: &str, default: usize) -> usize {
        self.args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.args.get(i + 1))
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{flag} takes a count, not {v:?}")))
            .unwrap_or(default)
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }
}
