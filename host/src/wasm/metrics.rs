//! The filter's own metrics (`proxy_define_metric` and friends), host-owned so
//! that they aggregate across VMs and survive module swaps.
//!
//! proxy-wasm metrics have a name and an integer value only. The host reads
//! labels, units and descriptions out of them by a small convention (the
//! filter's `metrics` module documents the producing side):
//!
//! - a name is a Prometheus sample name followed by `;label=value` pairs:
//!   `prefixgate_decisions_total;policy=pow2;reason=pow2` is the sample
//!   `prefixgate_decisions_total{policy="pow2",reason="pow2"}`;
//! - a sample name ending in `_micro` holds millionths: the suffix is dropped
//!   and the value divided by 10^6;
//! - the module may carry a custom section `prometheus.help` of lines
//!   `<family> <counter|gauge|histogram> <help>`. A family declared
//!   `histogram` gathers the counters `<family>_bucket` (label `le`),
//!   `<family>_sum` and `<family>_count` into one histogram family.
//!
//! A name that does not follow the convention is shown as one unlabelled
//! sample (invalid characters become `_`). Families the section does not
//! describe get a HELP line naming them as undescribed, and the type of
//! their proxy-wasm metric; a proxy-wasm histogram (`record`) is a real
//! histogram with Envoy's default buckets.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram (cumulative buckets, `_sum`, `_count`).
    Histogram,
}

impl MetricKind {
    /// From the ABI value.
    pub fn from_abi(v: i32) -> Option<Self> {
        match v {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "counter" => Some(Self::Counter),
            "gauge" => Some(Self::Gauge),
            "histogram" => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// Why a metric operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricError {
    /// Unknown id.
    NotFound,
    /// Not allowed for this kind (e.g. a negative counter increment).
    BadArgument,
}

/// Bucket bounds of proxy-wasm histograms: Envoy's defaults, so that a
/// module's histogram has the same buckets in both hosts.
pub const HISTOGRAM_BOUNDS: &[f64] = &[
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_800_000.0,
    3_600_000.0,
];

/// Suffix of a sample holding millionths.
const MICRO_SUFFIX: &str = "_micro";

struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
    sum: i64,
    count: u64,
    /// Per [`HISTOGRAM_BOUNDS`] entry (not cumulative), histograms only.
    bins: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, u32>,
    metrics: Vec<Metric>,
}

/// Registry of filter metrics.
#[derive(Default)]
pub struct FilterMetrics {
    inner: Mutex<Inner>,
}

/// A metric name split by the convention: sample name, labels, and whether
/// the value is in millionths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// The Prometheus sample name (`_micro` removed).
    pub sample: String,
    /// Labels in the order the name lists them.
    pub labels: Vec<(String, String)>,
    /// The value is in millionths.
    pub micro: bool,
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Splits a proxy-wasm metric name by the convention of the module doc.
pub fn parse_name(name: &str) -> ParsedName {
    let mut parts = name.split(';');
    let first = parts.next().unwrap_or_default();
    let mut labels = Vec::new();
    for part in parts {
        match part.split_once('=') {
            Some((k, v)) if is_label_name(k) && !v.contains('=') && !labels.iter().any(|(l, _)| l == k) => {
                labels.push((k.to_owned(), v.to_owned()));
            }
            // Not the convention: the whole name is one plain sample.
            _ => return ParsedName { sample: sanitize(name), labels: Vec::new(), micro: false },
        }
    }
    let sample = sanitize(first);
    match sample.strip_suffix(MICRO_SUFFIX) {
        Some(base) if !base.is_empty() => ParsedName { sample: base.to_owned(), labels, micro: true },
        _ => ParsedName { sample, labels, micro: false },
    }
}

/// A family the module describes in its `prometheus.help` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Prometheus type.
    pub kind: MetricKind,
    /// HELP text.
    pub help: String,
}

/// Reads a `prometheus.help` section: `<family> <type> <help>` lines;
/// malformed lines are skipped.
pub fn parse_descriptions(text: &str) -> HashMap<String, Description> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let name = parts.next()?;
            let kind = MetricKind::parse(parts.next()?)?;
            let help = parts.next().unwrap_or_default().trim().to_owned();
            (!name.is_empty() && sanitize(name) == name)
                .then(|| (name.to_owned(), Description { kind, help }))
        })
        .collect()
}

/// What a series is within its family.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Plain,
    Bucket(f64),
    Sum,
    Count,
}

struct Series {
    role: Role,
    /// Labels without `le`.
    labels: Vec<(String, String)>,
    value: f64,
}

struct FamilyOut {
    name: String,
    kind: MetricKind,
    help: String,
    series: Vec<Series>,
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_labels(out: &mut String, labels: &[(String, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in
        labels.iter().map(|(k, v)| (k.as_str(), escape_label(v))).chain(le.map(|le| ("le", le.to_owned())))
    {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

impl FilterMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Defines (or finds) a metric; ids start at 1.
    pub fn define(&self, kind: MetricKind, name: &str) -> u32 {
        let mut inner = self.lock();
        if let Some(id) = inner.by_name.get(name) {
            return *id;
        }
        let bins = if kind == MetricKind::Histogram { vec![0; HISTOGRAM_BOUNDS.len()] } else { Vec::new() };
        inner.metrics.push(Metric { name: name.to_string(), kind, value: 0, sum: 0, count: 0, bins });
        let id = inner.metrics.len() as u32;
        inner.by_name.insert(name.to_string(), id);
        id
    }

    fn with<R>(
        &self,
        id: u32,
        f: impl FnOnce(&mut Metric) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let mut inner = self.lock();
        let m = (id as usize)
            .checked_sub(1)
            .and_then(|i| inner.metrics.get_mut(i))
            .ok_or(MetricError::NotFound)?;
        f(m)
    }

    /// Adds `delta` (counters refuse negative deltas; histograms refuse it).
    pub fn increment(&self, id: u32, delta: i64) -> Result<(), MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Counter if delta < 0 => Err(MetricError::BadArgument),
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => {
                m.value = m.value.saturating_add(delta);
                Ok(())
            }
        })
    }

    /// Sets a counter or gauge, or records a histogram sample.
    pub fn record(&self, id: u32, value: i64) -> Result<(), MetricError> {
        self.with(id, |m| {
            if m.kind == MetricKind::Histogram {
                m.sum = m.sum.saturating_add(value);
                m.count += 1;
                if let Some(i) = HISTOGRAM_BOUNDS.iter().position(|b| value as f64 <= *b) {
                    m.bins[i] += 1;
                }
            } else {
                m.value = value;
            }
            Ok(())
        })
    }

    /// The value of a counter or gauge.
    pub fn get(&self, id: u32) -> Result<i64, MetricError> {
        self.with(id, |m| match m.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(m.value),
        })
    }

    /// The value of the counter or gauge whose sample name is `sample` and
    /// whose labels include `label="value"`, if the filter defined one.
    pub fn labelled_value(&self, sample: &str, label: &str, value: &str) -> Option<i64> {
        let inner = self.lock();
        inner.metrics.iter().filter(|m| m.kind != MetricKind::Histogram).find_map(|m| {
            let parsed = parse_name(&m.name);
            let hit = !parsed.micro
                && parsed.sample == sample
                && parsed.labels.iter().any(|(k, v)| k == label && v == value);
            hit.then_some(m.value)
        })
    }

    /// Prometheus text exposition of every filter metric, with HELP and
    /// TYPE from `help` (the serving module's `prometheus.help` section).
    pub fn render(&self, help: Option<&str>) -> String {
        let described = help.map(parse_descriptions).unwrap_or_default();
        let mut families: Vec<FamilyOut> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let inner = self.lock();
        for m in &inner.metrics {
            let parsed = parse_name(&m.name);
            let scale = if parsed.micro { 1e6 } else { 1.0 };
            let mut labels = parsed.labels;
            let (family, role) = if m.kind == MetricKind::Histogram {
                (parsed.sample, Role::Plain)
            } else {
                histogram_part(&parsed.sample, &mut labels, &described)
                    .unwrap_or((parsed.sample, Role::Plain))
            };
            let at = *index.entry(family.clone()).or_insert_with(|| {
                let (kind, help) = match described.get(&family) {
                    Some(d) => (d.kind, d.help.clone()),
                    None => (m.kind, format!("{family}: a filter metric its module does not describe")),
                };
                families.push(FamilyOut { name: family.clone(), kind, help, series: Vec::new() });
                families.len() - 1
            });
            let out = &mut families[at];
            if m.kind == MetricKind::Histogram {
                out.kind = MetricKind::Histogram;
                let mut cumulative = 0;
                for (bound, n) in HISTOGRAM_BOUNDS.iter().zip(&m.bins) {
                    cumulative += n;
                    out.series.push(Series {
                        role: Role::Bucket(*bound),
                        labels: labels.clone(),
                        value: cumulative as f64,
                    });
                }
                out.series.push(Series {
                    role: Role::Bucket(f64::INFINITY),
                    labels: labels.clone(),
                    value: m.count as f64,
                });
                out.series.push(Series {
                    role: Role::Sum,
                    labels: labels.clone(),
                    value: m.sum as f64 / scale,
                });
                out.series.push(Series { role: Role::Count, labels, value: m.count as f64 });
            } else {
                out.series.push(Series { role, labels, value: m.value as f64 / scale });
            }
        }
        drop(inner);
        let mut text = String::new();
        for family in &mut families {
            render_family(&mut text, family);
        }
        text
    }
}

/// Whether `sample` is part of a histogram family `described` declares:
/// its family and role (the `le` label is taken out of `labels`).
fn histogram_part(
    sample: &str,
    labels: &mut Vec<(String, String)>,
    described: &HashMap<String, Description>,
) -> Option<(String, Role)> {
    let is_histogram = |family: &str| described.get(family).is_some_and(|d| d.kind == MetricKind::Histogram);
    if let Some(family) = sample.strip_suffix("_bucket").filter(|f| is_histogram(f)) {
        let at = labels.iter().position(|(k, _)| k == "le")?;
        let (_, le) = labels.remove(at);
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().ok()? };
        return Some((family.to_owned(), Role::Bucket(bound)));
    }
    if let Some(family) = sample.strip_suffix("_sum").filter(|f| is_histogram(f)) {
        return Some((family.to_owned(), Role::Sum));
    }
    if let Some(family) = sample.strip_suffix("_count").filter(|f| is_histogram(f)) {
        return Some((family.to_owned(), Role::Count));
    }
    None
}

fn render_family(text: &mut String, family: &mut FamilyOut) {
    let name = &family.name;
    let _ = writeln!(text, "# HELP {name} {}", escape_help(&family.help));
    let _ = writeln!(text, "# TYPE {name} {}", family.kind.as_str());
    if family.kind != MetricKind::Histogram {
        for s in &family.series {
            text.push_str(name);
            write_labels(text, &s.labels, None);
            let _ = writeln!(text, " {}", format_value(s.value));
        }
        return;
    }
    // Each label set: its buckets by bound, then _sum and _count.
    let mut sets: Vec<Vec<(String, String)>> = Vec::new();
    for s in &family.series {
        if !sets.contains(&s.labels) {
            sets.push(s.labels.clone());
        }
    }
    for set in sets {
        let mut buckets: Vec<(f64, f64)> = family
            .series
            .iter()
            .filter(|s| s.labels == set)
            .filter_map(|s| match s.role {
                Role::Bucket(b) => Some((b, s.value)),
                _ => None,
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let pick = |role: Role| family.series.iter().find(|s| s.labels == set && s.role == role);
        let count = pick(Role::Count).map(|s| s.value);
        for (bound, value) in &buckets {
            let _ = write!(text, "{name}_bucket");
            write_labels(text, &set, Some(&format_value(*bound)));
            let _ = writeln!(text, " {}", format_value(*value));
        }
        if buckets.last().is_none_or(|(b, _)| b.is_finite()) {
            // No +Inf bucket from the module: it is the count.
            let _ = write!(text, "{name}_bucket");
            write_labels(text, &set, Some("+Inf"));
            let _ = writeln!(text, " {}", format_value(count.unwrap_or(0.0)));
        }
        let _ = write!(text, "{name}_sum");
        write_labels(text, &set, None);
        let _ = writeln!(text, " {}", format_value(pick(Role::Sum).map_or(0.0, |s| s.value)));
        let _ = write!(text, "{name}_count");
        write_labels(text, &set, None);
        let _ = writeln!(text, " {}", format_value(count.unwrap_or(0.0)));
    }
}

/// A Prometheus-safe metric name.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' })
        .collect();
    if s.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_gauge_histogram() {
        let m = FilterMetrics::default();
        let c = m.define(MetricKind::Counter, "my.counter");
        assert_eq!(m.define(MetricKind::Counter, "my.counter"), c);
        assert_eq!(m.increment(c, 2), Ok(()));
        assert_eq!(m.increment(c, -1), Err(MetricError::BadArgument));
        assert_eq!(m.get(c), Ok(2));
        let h = m.define(MetricKind::Histogram, "h");
        assert_eq!(m.record(h, 5), Ok(()));
        assert_eq!(m.record(h, 700), Ok(()));
        assert_eq!(m.get(h), Err(MetricError::BadArgument));
        assert_eq!(m.get(99), Err(MetricError::NotFound));
        let text = m.render(None);
        assert!(text.contains("# TYPE my_counter counter\nmy_counter 2\n"), "{text}");
        assert!(text.contains("# HELP my_counter "), "{text}");
        assert!(text.contains("# TYPE h histogram\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"1\"} 0\nh_bucket{le=\"5\"} 1\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"500\"} 1\nh_bucket{le=\"1000\"} 2\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 2\nh_sum 705\nh_count 2\n"), "{text}");
    }

    #[test]
    fn names_carry_labels_and_fixed_point() {
        let p = parse_name("x_total;policy=pow2;reason=no_prompt");
        assert_eq!(p.sample, "x_total");
        assert_eq!(p.labels, vec![("policy".into(), "pow2".into()), ("reason".into(), "no_prompt".into())]);
        let p = parse_name("kv_ratio_micro;backend=10.0.0.1:80");
        assert_eq!((p.sample.as_str(), p.micro), ("kv_ratio", true));
        // Not the convention: one plain sample.
        assert_eq!(parse_name("a;b").sample, "a_b");
        assert_eq!(parse_name("a;b=c=d").labels, vec![]);
        assert_eq!(parse_name("a;__x=1").sample, "a___x_1");
    }

    #[test]
    fn described_counters_become_labelled_families_and_histograms() {
        let m = FilterMetrics::default();
        let help = "d_total counter Decisions\nr histogram A ratio\ng gauge A \"gauge\"\\ here\n";
        for (name, n) in [("d_total;policy=p;reason=a", 3), ("d_total;policy=p;reason=b", 1)] {
            let id = m.define(MetricKind::Counter, name);
            let _ = m.increment(id, n);
        }
        // Buckets defined out of order, as a module might.
        for (name, n) in [
            ("r_bucket;le=1", 4),
            ("r_bucket;le=0.5", 3),
            ("r_bucket;le=+Inf", 4),
            ("r_sum_micro", 1_500_000),
            ("r_count", 4),
        ] {
            let id = m.define(MetricKind::Counter, name);
            let _ = m.increment(id, n);
        }
        let g = m.define(MetricKind::Gauge, "g_micro;backend=b:1");
        let _ = m.record(g, 421_000);
        let text = m.render(Some(help));
        let expected = "# HELP d_total Decisions\n# TYPE d_total counter\n\
                        d_total{policy=\"p\",reason=\"a\"} 3\nd_total{policy=\"p\",reason=\"b\"} 1\n\
                        # HELP r A ratio\n# TYPE r histogram\n\
                        r_bucket{le=\"0.5\"} 3\nr_bucket{le=\"1\"} 4\nr_bucket{le=\"+Inf\"} 4\n\
                        r_sum 1.5\nr_count 4\n\
                        # HELP g A \"gauge\"\\\\ here\n# TYPE g gauge\ng{backend=\"b:1\"} 0.421\n";
        assert_eq!(text, expected);
        assert_eq!(m.labelled_value("d_total", "reason", "b"), Some(1));
        assert_eq!(m.labelled_value("d_total", "reason", "c"), None);
    }
}
