//! The router's decisions per strategy: each request's `x-prefixgate-decision`
//! (`policy=…; reason=…; match=…; load=…`, or a bare reason when the host
//! routed it) counted by reason.

use super::data::StrategyResult;
use std::collections::BTreeMap;

/// The `key=` field of a decision value.
pub fn field<'a>(decision: &'a str, key: &str) -> Option<&'a str> {
    decision.split(';').find_map(|p| p.trim().strip_prefix(key)?.strip_prefix('=')).map(str::trim)
}

/// The reason of a decision value: its `reason=` field, or the whole value
/// when it is a bare word (a host-routed request).
pub fn reason(decision: &str) -> &str {
    field(decision, "reason").unwrap_or_else(|| decision.trim())
}

/// One strategy's decisions over all its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MixRow {
    /// Strategy label.
    pub label: String,
    /// Requests per reason.
    pub counts: BTreeMap<String, usize>,
    /// Requests without a recorded decision.
    pub without: usize,
    /// All requests.
    pub requests: usize,
    /// Runs counted.
    pub runs: usize,
}

impl MixRow {
    /// The share of all requests that had `reason`.
    pub fn share(&self, reason: &str) -> f64 {
        match self.requests {
            0 => 0.0,
            n => self.counts.get(reason).copied().unwrap_or(0) as f64 / n as f64,
        }
    }
}

/// The decision mix of every strategy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mix {
    /// Every reason seen, most frequent first.
    pub reasons: Vec<String>,
    /// One row per strategy, in the results' order.
    pub rows: Vec<MixRow>,
}

impl Mix {
    /// Counts the decisions of every strategy's requests.
    pub fn of(strategies: &[StrategyResult]) -> Self {
        let mut totals: BTreeMap<String, usize> = BTreeMap::new();
        let rows: Vec<MixRow> = strategies
            .iter()
            .map(|s| {
                let mut row = MixRow { label: s.label.clone(), runs: s.runs.len(), ..MixRow::default() };
                for o in s.outcomes() {
                    row.requests += 1;
                    match o.decision.as_deref().map(reason).filter(|r| !r.is_empty()) {
                        Some(r) => {
                            *row.counts.entry(r.to_owned()).or_default() += 1;
                            *totals.entry(r.to_owned()).or_default() += 1;
                        }
                        None => row.without += 1,
                    }
                }
                row
            })
            .collect();
        let mut reasons: Vec<(String, usize)> = totals.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Self { reasons: reasons.into_iter().map(|(r, _)| r).collect(), rows }
    }

    /// Whether any request recorded a decision.
    pub fn any(&self) -> bool {
        !self.reasons.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_come_from_the_reason_field_or_the_bare_value() {
        let d = "policy=prefix_aware; reason=prefix_match; match=0.83; load=2";
        assert_eq!(reason(d), "prefix_match");
        assert_eq!(field(d, "match"), Some("0.83"));
        assert_eq!(reason("filter_vm_replaced"), "filter_vm_replaced");
    }
}
