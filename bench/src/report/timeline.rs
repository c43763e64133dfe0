//! Each strategy's run over time, on one time axis for all of them:
//! requests in flight per replica, completed requests per second (sliding
//! window), and the
//! replicas' prefix-cache hit rate of the requests started in each window.

use super::charts::{headroom, in_flight_points, line_chart, window_sums, Series};
use super::data::{Run, StrategyResult};
use super::replicas::{replica_name, Replicas};
use super::svg::Axis;

/// Samples per in-flight series.
const SAMPLES: usize = 300;
/// Windows over the run for the cache hit rate.
const WINDOWS: f64 = 40.0;
/// Sliding windows a run's length holds, for the throughput.
const SLIDING: f64 = 20.0;
/// Instants the throughput is sampled at.
const RATE_SAMPLES: usize = 80;

/// In flight per replica over `[0, end]`, one series per replica.
pub fn in_flight(run: &Run, end: f64) -> Vec<Series<Vec<(f64, f64)>>> {
    let replicas = Replicas::of(run);
    let mut intervals: Vec<Vec<(f64, f64)>> = vec![Vec::new(); replicas.addresses.len()];
    for o in run.outcomes.iter().filter(|o| o.success) {
        if let Some(i) = o.backend.as_deref().and_then(|b| replicas.index(b)) {
            intervals[i].push((o.start_s, o.start_s + o.latency_s));
        }
    }
    intervals
        .iter()
        .enumerate()
        .map(|(i, iv)| Series {
            name: replica_name(i),
            tooltip: replicas.addresses[i].clone(),
            points: in_flight_points(iv, end, SAMPLES),
        })
        .collect()
}

/// Completed requests per second: at each of 80 instants, the completions
/// within a sliding window of `end / 20` around it, over the part of the
/// window inside `[0, end]`.
pub fn throughput(run: &Run, end: f64) -> Vec<(f64, f64)> {
    let half = end / SLIDING / 2.0;
    let mut done: Vec<f64> = run
        .outcomes
        .iter()
        .filter(|o| o.success)
        .map(|o| o.start_s + o.latency_s)
        .filter(|t| t.is_finite())
        .collect();
    done.sort_by(f64::total_cmp);
    (0..=RATE_SAMPLES)
        .map(|i| {
            let t = end * i as f64 / RATE_SAMPLES as f64;
            let (a, b) = ((t - half).max(0.0), (t + half).min(end));
            let n = done.partition_point(|x| *x < b) - done.partition_point(|x| *x < a);
            (t, if b > a { n as f64 / (b - a) } else { 0.0 })
        })
        .collect()
}

/// Cached over prompt tokens of the requests started in each window, for
/// the requests whose cached tokens are known; windows without one are
/// left out.
pub fn cache_hit(run: &Run, end: f64) -> Vec<(f64, f64)> {
    let width = end / WINDOWS;
    let known: Vec<_> = run.outcomes.iter().filter(|o| o.success && o.cached_tokens.is_some()).collect();
    let cached: Vec<(f64, f64)> =
        known.iter().map(|o| (o.start_s, o.cached_tokens.unwrap_or(0) as f64)).collect();
    let prompt: Vec<(f64, f64)> = known.iter().map(|o| (o.start_s, o.prompt_len as f64)).collect();
    window_sums(&cached, end, width)
        .into_iter()
        .zip(window_sums(&prompt, end, width))
        .filter(|(_, (_, p))| *p > 0.0)
        .map(|((t, c), (_, p))| (t, (c / p).min(1.0)))
        .collect()
}

/// Whether any run knows its requests' cached tokens.
pub fn has_cache_detail(strategies: &[StrategyResult]) -> bool {
    strategies.iter().flat_map(|s| s.outcomes()).any(|o| o.cached_tokens.is_some())
}

/// Three charts per strategy (its first run), sharing their axes across
/// strategies: in flight per replica, throughput, cache hit rate.
pub fn timeline_charts(strategies: &[StrategyResult]) -> Vec<String> {
    let runs: Vec<(&str, &Run)> =
        strategies.iter().filter_map(|s| s.first().map(|r| (s.label.as_str(), r))).collect();
    let end = runs
        .iter()
        .flat_map(|(_, r)| r.outcomes.iter().map(|o| o.start_s + o.latency_s))
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    if end <= 0.0 {
        return Vec::new();
    }
    let with_cache = has_cache_detail(strategies);
    let flights: Vec<_> = runs.iter().map(|(_, r)| in_flight(r, end)).collect();
    let rates: Vec<_> = runs.iter().map(|(_, r)| throughput(r, end)).collect();
    let flight_max = headroom(flights.iter().flatten().flat_map(|s| s.points.iter().map(|p| p.1)));
    let rate_max = headroom(rates.iter().flatten().map(|p| p.1));
    let time = |label: &str| Axis::to(end, label);
    let mut charts = Vec::new();
    for (i, ((label, run), (flight, rate))) in runs.iter().zip(flights.into_iter().zip(rates)).enumerate() {
        charts.push(line_chart(
            &format!("flight-{i}"),
            &format!("{label}: requests in flight per replica"),
            time("time (s)"),
            Axis::to(flight_max, "requests in flight"),
            &flight,
        ));
        charts.push(line_chart(
            &format!("rate-{i}"),
            &format!("{label}: throughput"),
            time("time (s), by completion"),
            Axis::to(rate_max, "completed req/s"),
            &[Series::new("req/s", rate)],
        ));
        if with_cache {
            charts.push(line_chart(
                &format!("hit-{i}"),
                &format!("{label}: prefix-cache hit rate"),
                time("time (s), by request start"),
                Axis::to(1.0, "cached / prompt tokens").percent(),
                &[Series::new("cache hit", cache_hit(run, end))],
            ));
        }
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::RequestOutcome;

    fn outcome(start: f64, latency: f64, prompt: u64, cached: Option<u64>) -> RequestOutcome {
        RequestOutcome {
            success: true,
            start_s: start,
            latency_s: latency,
            prompt_len: prompt,
            cached_tokens: cached,
            backend: Some("127.0.0.1:1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn throughput_and_cache_hit_per_window() {
        let run = Run {
            outcomes: vec![
                outcome(0.0, 1.0, 100, Some(50)),
                outcome(0.5, 0.5, 100, Some(100)),
                outcome(3.0, 1.0, 100, None),
            ],
            ..Run::default()
        };
        let end = 40.0;
        let rate = throughput(&run, end);
        assert_eq!(rate.len(), 81);
        // At t = 1 the window is [0, 2): the completions at 1, 1 (and none at 4).
        assert_eq!(rate[2], (1.0, 1.0), "two requests done within 2 s");
        assert_eq!(rate[8], (4.0, 0.5), "one request done in [3, 5)");
        assert_eq!(cache_hit(&run, end), vec![(0.5, 0.75)]);
        let flight = in_flight(&run, end);
        assert_eq!(flight.len(), 1);
        assert_eq!((flight[0].name.as_str(), flight[0].tooltip.as_str()), ("replica 0", "127.0.0.1:1"));
    }
}
