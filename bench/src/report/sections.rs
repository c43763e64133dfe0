//! The page's chart sections, in order, each with its charts and a note for
//! whatever the results do not have (an older results directory lacks
//! decisions, cached tokens or the replica-side CSV: that chart is left out
//! and the section says why).

use super::charts::{bar_chart, cdf_points, headroom, line_chart, stacked_shares, Bar, Series};
use super::data::{Results, StrategyResult};
use super::decisions::Mix;
use super::replicas::{replica_name, Replicas};
use super::svg::{escape, Axis};
use super::timeline::{has_cache_detail, timeline_charts};
use std::fmt::Write as _;
use vllm_sim::calibrate::percentile;

/// Points per distribution line.
const CDF_POINTS: usize = 400;

/// One section of the page.
#[derive(Clone, Debug, Default)]
pub struct Section {
    /// Its heading.
    pub heading: String,
    /// One sentence on how to read it.
    pub hint: String,
    /// What is missing and why.
    pub notes: Vec<String>,
    /// SVG charts, laid out in a grid.
    pub charts: Vec<String>,
    /// Lay the charts out three to a row (one row per strategy).
    pub three_columns: bool,
    /// HTML after the charts (tables).
    pub html: String,
}

fn labels(strategies: &[StrategyResult]) -> Vec<String> {
    strategies.iter().map(|s| s.label.clone()).collect()
}

fn bar_of(s: &StrategyResult, column: &str, scale: f64) -> Bar {
    let sp = s.serve_spread(column);
    Bar { value: sp.mean * scale, lo: sp.min * scale, hi: sp.max * scale }
}

/// Bars of `stat_metric_ms` columns (mean, median, p99) per strategy.
fn stat_bars(id: &str, title: &str, metric: &str, strategies: &[StrategyResult]) -> String {
    let series: Vec<Series<Vec<Bar>>> = ["mean", "median", "p99"]
        .iter()
        .map(|stat| {
            let column = format!("{stat}_{metric}_ms");
            Series::new(*stat, strategies.iter().map(|s| bar_of(s, &column, 1.0)).collect())
        })
        .collect();
    let max = headroom(series.iter().flat_map(|s| s.points.iter().flat_map(|b| [b.value, b.hi])));
    bar_chart(id, title, Axis::to(max, "ms"), &labels(strategies), &series)
}

fn single_bars(id: &str, title: &str, unit: &str, column: &str, strategies: &[StrategyResult]) -> String {
    let bars: Vec<Bar> = strategies.iter().map(|s| bar_of(s, column, 1.0)).collect();
    let max = headroom(bars.iter().flat_map(|b| [b.value, b.hi]));
    bar_chart(id, title, Axis::to(max, unit), &labels(strategies), &[Series::new(unit, bars)])
}

fn latency(results: &Results) -> Section {
    let s = &results.strategies;
    Section {
        heading: "Latency".into(),
        hint: "Mean, median and p99 per strategy; with repeated runs, bars are the mean of the runs and whiskers their range."
            .into(),
        charts: vec![
            stat_bars("ttft", "Time to first token (ms)", "ttft", s),
            stat_bars("tpot", "Time per output token (ms)", "tpot", s),
            stat_bars("itl", "Inter-token latency (ms)", "itl", s),
            stat_bars("e2e", "End-to-end latency (ms)", "e2e_latency", s),
        ],
        ..Section::default()
    }
}

fn throughput(results: &Results) -> Section {
    let s = &results.strategies;
    let mut charts = vec![
        single_bars("req", "Request throughput", "req/s", "request_throughput", s),
        single_bars("tok", "Output token throughput", "tok/s", "output_throughput", s),
    ];
    if results.has_column("reuse_bound") {
        let series: Vec<Series<Vec<Bar>>> =
            [("reuse bound", "reuse_bound"), ("captured", "captured"), ("delivered", "delivered")]
                .iter()
                .map(|(name, column)| Series::new(*name, s.iter().map(|r| bar_of(r, column, 1.0)).collect()))
                .collect();
        charts.push(bar_chart(
            "card",
            "Scorecard: share of prompt tokens",
            Axis::to(1.0, "share of prompt tokens").percent(),
            &labels(s),
            &series,
        ));
    }
    Section { heading: "Throughput".into(), charts, ..Section::default() }
}

fn decision_mix(results: &Results) -> Section {
    let mix = Mix::of(&results.strategies);
    let mut section = Section {
        heading: "Routing decisions".into(),
        hint: "Why the router chose each request's replica (the reason of its x-prefixgate-decision), as a share of the strategy's requests over all its runs."
            .into(),
        ..Section::default()
    };
    if !mix.any() {
        section.notes.push(
            "No request of these results records a routing decision (results written before decisions were recorded, or a router without decision headers): the decision mix is left out."
                .into(),
        );
        return section;
    }
    let groups: Vec<String> = mix.rows.iter().map(|r| r.label.clone()).collect();
    let mut segments: Vec<Series<Vec<f64>>> = mix
        .reasons
        .iter()
        .map(|reason| Series::new(reason.clone(), mix.rows.iter().map(|r| r.share(reason)).collect()))
        .collect();
    if mix.rows.iter().any(|r| r.without > 0) {
        segments.push(Series::new(
            "not recorded",
            mix.rows
                .iter()
                .map(|r| if r.requests == 0 { 0.0 } else { r.without as f64 / r.requests as f64 })
                .collect(),
        ));
    }
    section.charts.push(stacked_shares("mix", "Decision reasons per strategy", &groups, &segments));
    let mut t = String::from("<table class=\"mix\"><tr><th>strategy</th><th>runs</th><th>requests</th>");
    for r in &mix.reasons {
        let _ = write!(t, "<th>{}</th>", escape(r));
    }
    t.push_str("<th>not recorded</th></tr>\n");
    for row in &mix.rows {
        let _ =
            write!(t, "<tr><td>{}</td><td>{}</td><td>{}</td>", escape(&row.label), row.runs, row.requests);
        for r in &mix.reasons {
            let n = row.counts.get(r).copied().unwrap_or(0);
            let _ = write!(t, "<td>{n} <small>({:.1}%)</small></td>", row.share(r) * 100.0);
        }
        let _ = writeln!(t, "<td>{}</td></tr>", row.without);
    }
    t.push_str("</table>\n");
    section.html = t;
    section
}

fn distributions(results: &Results) -> Section {
    let s = &results.strategies;
    let mut section = Section {
        heading: "Distributions".into(),
        hint: "Cumulative share of requests (of token gaps for ITL) at or below each value, over all runs of a strategy; the axis ends a little beyond the largest p99, so the last 1 % of the slowest strategy may run off the right edge."
            .into(),
        ..Section::default()
    };
    let ms = 1000.0;
    let series_of = |f: &dyn Fn(&StrategyResult) -> Vec<f64>| -> Vec<(String, Vec<f64>)> {
        s.iter().map(|r| (r.label.clone(), f(r))).collect()
    };
    let ttft = series_of(&|r| r.outcomes().filter(|o| o.success).map(|o| o.ttft_s * ms).collect());
    let tpot = series_of(&|r| {
        r.outcomes()
            .filter(|o| o.success && o.output_len > 1)
            .map(|o| (o.latency_s - o.ttft_s) / (o.output_len - 1) as f64 * ms)
            .collect()
    });
    let itl = series_of(&|r| {
        r.outcomes().filter(|o| o.success).flat_map(|o| o.itl_s.iter().map(|x| x * ms)).collect()
    });
    if ttft.iter().all(|(_, v)| v.is_empty()) {
        section.notes.push("No per-request detail in these results: the distributions are left out.".into());
        return section;
    }
    for (id, title, data) in [("cdf-ttft", "TTFT", ttft), ("cdf-tpot", "TPOT", tpot), ("cdf-itl", "ITL", itl)]
    {
        let finite = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite()).collect::<Vec<f64>>();
        let x_max = headroom(data.iter().map(|(_, v)| percentile(&finite(v), 99.0))) * 1.05;
        let series: Vec<Series<Vec<(f64, f64)>>> =
            data.iter().map(|(name, v)| Series::new(name.clone(), cdf_points(v, CDF_POINTS))).collect();
        section.charts.push(line_chart(
            id,
            &format!("{title} distribution"),
            Axis::to(x_max, &format!("{title} (ms)")),
            Axis::to(1.0, "share at or below").percent(),
            &series,
        ));
    }
    section
}

fn over_time(results: &Results) -> Section {
    let s = &results.strategies;
    let mut section = Section {
        heading: "Over time".into(),
        hint: "Each strategy's first run, on one time axis: requests in flight per replica (whether a policy piles onto one replica), completed requests per second, and the prefix-cache hit rate of the requests started in each window."
            .into(),
        three_columns: has_cache_detail(s),
        ..Section::default()
    };
    section.charts = timeline_charts(s);
    if section.charts.is_empty() {
        section.notes.push("No per-request detail in these results: the time series are left out.".into());
    } else if !has_cache_detail(s) {
        section.notes.push(
            "No request records its cached prompt tokens (results written before they were recorded, or replicas that do not report them): the cache hit rate over time is left out."
                .into(),
        );
    }
    section
}

fn per_replica(results: &Results) -> Section {
    let s = &results.strategies;
    let mut section = Section {
        heading: "Per replica".into(),
        hint: "replica i is the i-th replica of each run's fleet; hover a legend entry for its address, or see the table."
            .into(),
        ..Section::default()
    };
    let n = s
        .iter()
        .flat_map(|st| st.runs.iter())
        .map(|r| r.per_replica("replica_urls").len())
        .max()
        .unwrap_or(0);
    if n == 0 {
        section.notes.push("No replica-side CSV (or no per-replica columns) in these results: the per-replica charts are left out.".into());
        return section;
    }
    let first_replicas: Vec<Replicas> =
        s.iter().map(|st| st.first().map(Replicas::of).unwrap_or_default()).collect();
    let chart = |id: &str, title: &str, column: &str| {
        let series: Vec<Series<Vec<Bar>>> = (0..n)
            .map(|i| {
                let bars = s
                    .iter()
                    .map(|st| {
                        let sp = st.spread(|r| r.per_replica(column).get(i).copied().unwrap_or(f64::NAN));
                        Bar { value: sp.mean, lo: sp.min, hi: sp.max }
                    })
                    .collect();
                let tooltip = first_replicas
                    .iter()
                    .zip(s)
                    .filter_map(|(r, st)| Some(format!("{} {}", st.label, r.addresses.get(i)?)))
                    .collect::<Vec<_>>()
                    .join(", ");
                Series { name: replica_name(i), tooltip, points: bars }
            })
            .collect();
        bar_chart(id, title, Axis::to(1.0, "share").percent(), &labels(s), &series)
    };
    section.charts.push(chart(
        "rep-hit",
        "Prefix-cache hit rate per replica",
        "replica_prefix_cache_hit_rates",
    ));
    section.charts.push(chart("rep-share", "Share of requests per replica", "replica_request_shares"));
    let mut t = String::from("<table class=\"replicas\"><tr><th>strategy</th><th>run</th>");
    for i in 0..n {
        let _ = write!(t, "<th>{}</th>", replica_name(i));
    }
    t.push_str("</tr>\n");
    for st in s {
        for run in &st.runs {
            let _ = write!(t, "<tr><td>{}</td><td>{}</td>", escape(&st.label), run.repeat);
            let r = Replicas::of(run);
            for i in 0..n {
                let _ =
                    write!(t, "<td>{}</td>", escape(r.addresses.get(i).map(String::as_str).unwrap_or("")));
            }
            t.push_str("</tr>\n");
        }
    }
    t.push_str("</table>\n");
    section.html = t;
    section
}

/// Every section, in page order.
pub fn all(results: &Results) -> Vec<Section> {
    vec![
        latency(results),
        throughput(results),
        decision_mix(results),
        distributions(results),
        over_time(results),
        per_replica(results),
    ]
}
