//! Checks on a Prometheus text exposition (prefixgate's `/metrics`, Envoy's
//! `/stats/prometheus`): parsed with `openmetrics-parser`, HELP and TYPE on
//! every family, histograms cumulative, the series of a family with their
//! labels, and `promtool check metrics` when promtool is installed.

use crate::error::HarnessError;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// A parsed exposition.
pub type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// One series: its labels and value (a histogram's count).
pub type Series = (BTreeMap<String, String>, f64);

/// Parses `text` as the Prometheus text format.
pub fn parse(text: &str) -> Result<Exposition, HarnessError> {
    parse_prometheus(text).map_err(HarnessError::Exposition)
}

/// Families that lack a `# HELP` or `# TYPE` line, or whose HELP is empty,
/// read off the raw text (the parser accepts families without them).
pub fn missing_help_or_type(text: &str) -> Vec<String> {
    let mut help: BTreeMap<&str, &str> = BTreeMap::new();
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut samples: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name, text);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            types.insert(name, kind);
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.push(&line[..end]);
        }
    }
    let mut problems = Vec::new();
    for sample in samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| sample.strip_suffix(s))
            .find(|f| matches!(types.get(f), Some(&"histogram") | Some(&"summary")))
            .unwrap_or(sample);
        let problem = match (help.get(family), types.get(family)) {
            (Some(h), Some(_)) if !h.trim().is_empty() => continue,
            (Some(_), Some(_)) => format!("{family}: empty HELP"),
            (None, _) => format!("{family}: no HELP"),
            (_, None) => format!("{family}: no TYPE"),
        };
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

/// Histogram series whose buckets are not cumulative: bounds rising, counts
/// never falling, a last `+Inf` bucket equal to the count.
pub fn non_cumulative_histograms(exposition: &Exposition) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let PrometheusValue::Histogram(h) = &sample.value else { continue };
            let bounds: Vec<f64> = h.buckets.iter().map(|b| b.upper_bound).collect();
            let counts: Vec<f64> = h.buckets.iter().map(|b| b.count.as_f64()).collect();
            let rising = bounds.windows(2).all(|w| w[0] < w[1]);
            let cumulative = counts.windows(2).all(|w| w[0] <= w[1]);
            let inf_is_count = bounds.last().is_some_and(|b| b.is_infinite())
                && counts.last().copied() == h.count.map(|c| c as f64);
            if !(rising && cumulative && inf_is_count && h.sum.is_some()) {
                problems.push(format!("{name}: bounds {bounds:?}, counts {counts:?}, count {:?}", h.count));
            }
        }
    }
    problems
}

/// The series of `family`: labels and value (a histogram's count).
pub fn series(exposition: &Exposition, family: &str) -> Vec<Series> {
    let Some(family) = exposition.families.get(family) else { return Vec::new() };
    family
        .iter_samples()
        .filter_map(|sample| {
            let labels = sample
                .get_labelset()
                .ok()?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>();
            let value = match &sample.value {
                PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => n.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                PrometheusValue::Summary(s) => s.count.unwrap_or(0) as f64,
            };
            Some((labels, value))
        })
        .collect()
}

/// The type of `family`, if present.
pub fn family_type(exposition: &Exposition, family: &str) -> Option<PrometheusType> {
    exposition.families.get(family).map(|f| f.family_type.clone())
}

/// `promtool check metrics` on `text`: `None` when promtool is not
/// installed (`cargo xtask setup` installs it where the platform packages
/// it), else its verdict with what it printed.
pub fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(text.as_bytes()));
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(e) => return Some(Err(format!("promtool did not finish: {e}"))),
    };
    if let Some(Err(e)) = written {
        return Some(Err(format!("writing to promtool: {e}")));
    }
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some(if output.status.success() { Ok(()) } else { Err(format!("{}: {said}", output.status)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_without_help_or_type_is_named() {
        let text = "# TYPE a_total counter\na_total 1\n# HELP b x\n# TYPE b gauge\nb 2\nc 3\n";
        assert_eq!(missing_help_or_type(text), ["a_total: no HELP", "c: no HELP"]);
        let hist = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        assert!(missing_help_or_type(hist).is_empty());
    }

    #[test]
    fn per_bin_counts_are_not_cumulative() {
        let good = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 3\n\
                    h_bucket{le=\"+Inf\"} 3\nh_sum 2\nh_count 3\n";
        let parsed = parse(good).ok();
        assert!(parsed.as_ref().is_some_and(|p| non_cumulative_histograms(p).is_empty()), "{parsed:?}");
        // The old filter's shape: le_0_75 = 105 > le_1 = 76.
        let bad = good.replace("le=\"0.5\"} 1", "le=\"0.5\"} 5");
        // The parser refuses it already; were it to accept it, the check must not.
        match parse(&bad) {
            Ok(parsed) => assert_eq!(non_cumulative_histograms(&parsed).len(), 1),
            Err(e) => assert!(e.to_string().contains("does not parse"), "{e}"),
        }
    }
}
