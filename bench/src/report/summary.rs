//! The report's summary table: per strategy, each metric's mean over its
//! runs with the spread (± sample sd, min–max) when it ran several times,
//! and its change against the baseline strategy's mean.

use super::data::{Run, StrategyResult};
use super::error::ReportError;
use super::spread::{change_text, judge, relative_change, Better, Spread};
use super::svg::escape;
use std::fmt::Write as _;

/// One column of the summary.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Column header.
    pub header: &'static str,
    /// Digits after the point.
    pub decimals: usize,
    /// Multiplier of the shown figure (100 for shares).
    pub scale: f64,
    /// Which way it improves; `Neither` shows no change.
    pub better: Better,
    /// The run's figure.
    pub value: fn(&Run) -> f64,
}

fn busiest(run: &Run) -> f64 {
    run.per_replica("replica_request_shares").into_iter().filter(|x| x.is_finite()).fold(f64::NAN, f64::max)
}

/// The summary's metric columns, in order.
pub const METRICS: [Metric; 11] = [
    Metric {
        header: "completed",
        decimals: 0,
        scale: 1.0,
        better: Better::Neither,
        value: |r| r.serve_f64("completed"),
    },
    Metric {
        header: "failed",
        decimals: 0,
        scale: 1.0,
        better: Better::Neither,
        value: |r| r.serve_f64("failed"),
    },
    Metric {
        header: "req/s",
        decimals: 2,
        scale: 1.0,
        better: Better::Higher,
        value: |r| r.serve_f64("request_throughput"),
    },
    Metric {
        header: "out tok/s",
        decimals: 0,
        scale: 1.0,
        better: Better::Higher,
        value: |r| r.serve_f64("output_throughput"),
    },
    Metric {
        header: "TTFT mean ms",
        decimals: 1,
        scale: 1.0,
        better: Better::Lower,
        value: |r| r.serve_f64("mean_ttft_ms"),
    },
    Metric {
        header: "TTFT p99 ms",
        decimals: 1,
        scale: 1.0,
        better: Better::Lower,
        value: |r| r.serve_f64("p99_ttft_ms"),
    },
    Metric {
        header: "TPOT mean ms",
        decimals: 2,
        scale: 1.0,
        better: Better::Lower,
        value: |r| r.serve_f64("mean_tpot_ms"),
    },
    Metric {
        header: "ITL mean ms",
        decimals: 2,
        scale: 1.0,
        better: Better::Lower,
        value: |r| r.serve_f64("mean_itl_ms"),
    },
    Metric {
        header: "E2E mean ms",
        decimals: 0,
        scale: 1.0,
        better: Better::Lower,
        value: |r| r.serve_f64("mean_e2e_latency_ms"),
    },
    Metric {
        header: "cache hit %",
        decimals: 1,
        scale: 100.0,
        better: Better::Higher,
        value: |r| r.vllm_f64("prefix_cache_hit_rate"),
    },
    Metric {
        header: "busiest replica %",
        decimals: 1,
        scale: 100.0,
        better: Better::Neither,
        value: busiest,
    },
];

/// The baseline strategy's index: `requested` if given, else `round_robin`
/// when present, else the first.
pub fn choose_baseline(strategies: &[StrategyResult], requested: Option<&str>) -> Result<usize, ReportError> {
    match requested {
        Some(name) => {
            strategies.iter().position(|s| s.label == name).ok_or_else(|| ReportError::UnknownBaseline {
                name: name.to_owned(),
                known: strategies.iter().map(|s| s.label.clone()).collect(),
            })
        }
        None => Ok(strategies.iter().position(|s| s.label == "round_robin").unwrap_or(0)),
    }
}

/// One cell of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Mean, `± sd` with several runs.
    pub text: String,
    /// `min–max` with several runs.
    pub range: Option<String>,
    /// Change against the baseline (`−18.0 %`), for the other strategies.
    pub change: Option<String>,
    /// Whether the change is an improvement.
    pub good: Option<bool>,
}

/// The cells of every strategy (rows) and metric (columns, [`METRICS`]).
pub fn cells(strategies: &[StrategyResult], baseline: usize) -> Vec<Vec<Cell>> {
    let base: Vec<Spread> = METRICS
        .iter()
        .map(|m| strategies.get(baseline).map(|b| b.spread(m.value)).unwrap_or(Spread::of(&[])))
        .collect();
    strategies
        .iter()
        .enumerate()
        .map(|(i, s)| {
            METRICS
                .iter()
                .zip(&base)
                .map(|(m, b)| {
                    let spread = s.spread(m.value);
                    let change = (i != baseline && m.better != Better::Neither)
                        .then(|| relative_change(spread.mean, b.mean))
                        .flatten();
                    Cell {
                        text: spread.text(m.decimals, m.scale),
                        range: spread.range_text(m.decimals, m.scale),
                        change: change.map(change_text),
                        good: change.and_then(|c| judge(c, m.better)),
                    }
                })
                .collect()
        })
        .collect()
}

/// The summary as an HTML table.
pub fn summary_html(strategies: &[StrategyResult], baseline: usize) -> String {
    let mut s = String::from("<table class=\"summary\"><tr><th>strategy</th><th>runs</th>");
    for m in &METRICS {
        let arrow = match m.better {
            Better::Lower => " ↓",
            Better::Higher => " ↑",
            Better::Neither => "",
        };
        let _ = write!(s, "<th>{}{arrow}</th>", escape(m.header));
    }
    s.push_str("</tr>\n");
    for (i, (strategy, row)) in strategies.iter().zip(cells(strategies, baseline)).enumerate() {
        let tag = if i == baseline { " <span class=\"base\">baseline</span>" } else { "" };
        let _ = write!(s, "<tr><td>{}{tag}</td><td>{}</td>", escape(&strategy.label), strategy.runs.len());
        for c in row {
            s.push_str("<td>");
            s.push_str(&escape(&c.text));
            if let Some(r) = &c.range {
                let _ = write!(s, "<br><small>{}</small>", escape(r));
            }
            if let Some(ch) = &c.change {
                let class = match c.good {
                    Some(true) => "good",
                    Some(false) => "bad",
                    None => "same",
                };
                let _ = write!(s, "<br><span class=\"{class}\">{}</span>", escape(ch));
            }
            s.push_str("</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(label: &str, ttft: &[f64]) -> StrategyResult {
        let runs = ttft
            .iter()
            .enumerate()
            .map(|(i, t)| Run {
                repeat: i + 1,
                serve: [
                    ("mean_ttft_ms".to_owned(), t.to_string()),
                    ("request_throughput".to_owned(), "2".to_owned()),
                ]
                .into(),
                ..Run::default()
            })
            .collect();
        StrategyResult { label: label.to_owned(), runs }
    }

    #[test]
    fn deltas_are_against_the_baseline_mean() {
        let s = [
            strategy("pow2", &[120.0]),
            strategy("round_robin", &[100.0]),
            strategy("prefix_aware", &[80.0, 84.0]),
        ];
        let base = choose_baseline(&s, None).unwrap_or(usize::MAX);
        assert_eq!(base, 1, "round_robin when present");
        let ttft = METRICS.iter().position(|m| m.header == "TTFT mean ms").unwrap_or(usize::MAX);
        let c = cells(&s, base);
        assert_eq!(c[2][ttft].text, "82.0 ± 2.8");
        assert_eq!(c[2][ttft].range.as_deref(), Some("80.0–84.0"));
        assert_eq!(c[2][ttft].change.as_deref(), Some("\u{2212}18.0 %"));
        assert_eq!(c[2][ttft].good, Some(true));
        assert_eq!(c[0][ttft].change.as_deref(), Some("+20.0 %"));
        assert_eq!(c[0][ttft].good, Some(false));
        assert_eq!(c[1][ttft].change, None, "no change against itself");
        assert_eq!(choose_baseline(&s, Some("prefix_aware")).ok(), Some(2));
        assert!(choose_baseline(&s, Some("nope")).is_err());
        assert_eq!(choose_baseline(&s[2..], None).ok(), Some(0), "else the first");
        let html = summary_html(&s, base);
        assert!(html.contains("round_robin <span class=\"base\">baseline</span>"));
        assert!(html.contains("<span class=\"good\">\u{2212}18.0 %</span>"));
    }
}
