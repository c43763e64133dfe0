//! The report's charts, each an SVG string drawn on a [`Frame`]: lines
//! (distributions, time series), grouped bars with the spread of repeated
//! runs, and stacked shares (the decision mix); and the series they plot.

use super::svg::{colour, escape, Axis, Frame, LegendEntry};
use std::fmt::Write as _;

/// One named series of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<P> {
    /// Legend name.
    pub name: String,
    /// Legend tooltip (e.g. a replica's address); empty for none.
    pub tooltip: String,
    /// The data.
    pub points: P,
}

impl<P> Series<P> {
    /// A series without tooltip.
    pub fn new(name: impl Into<String>, points: P) -> Self {
        Self { name: name.into(), tooltip: String::new(), points }
    }
}

/// A bar's height and the range of the repeated runs behind it (`lo == hi`
/// for one run); NaN for no bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    /// Height (the mean of the runs).
    pub value: f64,
    /// Lowest run.
    pub lo: f64,
    /// Highest run.
    pub hi: f64,
}

impl Bar {
    /// A bar of one run.
    pub fn one(value: f64) -> Self {
        Self { value, lo: value, hi: value }
    }
}

fn legend<P>(series: &[Series<P>]) -> Vec<LegendEntry> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendEntry { name: s.name.clone(), tooltip: s.tooltip.clone(), colour: colour(i) })
        .collect()
}

/// The largest finite value, with 10 % headroom.
pub fn headroom(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if m > 0.0 {
        m * 1.1
    } else {
        1.0
    }
}

/// One line per series over the given axes; points outside are clipped.
pub fn line_chart(id: &str, title: &str, x: Axis, y: Axis, series: &[Series<Vec<(f64, f64)>>]) -> String {
    let mut f = Frame::new(id, title, x, y, &legend(series), true);
    let mut body = String::new();
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| format!("{:.1},{:.1}", f.x(*a), f.y(*b)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = write!(
            body,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>",
            colour(i),
            points.join(" "),
            escape(&s.name)
        );
    }
    f.clipped(&body);
    f.finish()
}

/// Labels under each category of a categorical chart, slanted when they do
/// not fit their slot.
fn category_labels(f: &mut Frame, groups: &[String]) {
    let slot = (Frame::RIGHT - Frame::LEFT) / groups.len().max(1) as f64;
    let slant = groups.iter().any(|g| g.chars().count() as f64 * 6.2 > slot);
    let mut s = String::new();
    for (g, name) in groups.iter().enumerate() {
        let x = Frame::LEFT + (g as f64 + 0.5) * slot;
        let y = Frame::BOTTOM + 14.0;
        let shown: String = name.chars().take(28).collect();
        if slant {
            let _ = write!(
                s,
                "<text transform=\"translate({x:.1} {y:.1}) rotate(-18)\" text-anchor=\"end\">{}<title>{}</title></text>",
                escape(&shown),
                escape(name)
            );
        } else {
            let _ =
                write!(s, "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{}</text>", escape(&shown));
        }
    }
    f.raw(&s);
}

/// Bars per group (`groups` along the bottom) and per series (one colour
/// each): `series[s].points[g]` is series `s` in group `g`. A bar whose
/// runs differ carries a whisker from the lowest to the highest run.
pub fn bar_chart(id: &str, title: &str, y: Axis, groups: &[String], series: &[Series<Vec<Bar>>]) -> String {
    let mut f = Frame::new(id, title, Axis::to(1.0, ""), y, &legend(series), false);
    let slot = (Frame::RIGHT - Frame::LEFT) / groups.len().max(1) as f64;
    let width = slot * 0.8 / series.len().max(1) as f64;
    let mut body = String::new();
    for (s, ser) in series.iter().enumerate() {
        for (g, bar) in ser.points.iter().enumerate().take(groups.len()) {
            if !bar.value.is_finite() {
                continue;
            }
            let x0 = Frame::LEFT + g as f64 * slot + slot * 0.1 + s as f64 * width;
            let top = f.y(bar.value);
            let _ = write!(
                body,
                "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}, {}: {}</title></rect>",
                width * 0.9,
                (Frame::BOTTOM - top).max(0.0),
                colour(s),
                escape(&groups[g]),
                escape(&ser.name),
                spread_text(bar, f.y_axis.percent)
            );
            if bar.lo.is_finite() && bar.hi.is_finite() && bar.hi > bar.lo {
                let xm = x0 + width * 0.45;
                let _ = write!(
                    body,
                    "<path d=\"M{xm:.1} {:.1}V{:.1}M{:.1} {:.1}h{:.1}M{:.1} {:.1}h{:.1}\" stroke=\"#222\" stroke-width=\"1.2\"/>",
                    f.y(bar.lo),
                    f.y(bar.hi),
                    xm - 3.0,
                    f.y(bar.lo),
                    6.0,
                    xm - 3.0,
                    f.y(bar.hi),
                    6.0
                );
            }
        }
    }
    f.clipped(&body);
    category_labels(&mut f, groups);
    f.finish()
}

fn spread_text(bar: &Bar, percent: bool) -> String {
    let show = |v: f64| if percent { format!("{:.1}%", v * 100.0) } else { format!("{v:.2}") };
    if bar.hi > bar.lo {
        format!("{} ({}–{})", show(bar.value), show(bar.lo), show(bar.hi))
    } else {
        show(bar.value)
    }
}

/// One stacked bar per group: `segments[s].points[g]` is segment `s`'s share
/// of group `g` (shares of a group sum to at most 1).
pub fn stacked_shares(id: &str, title: &str, groups: &[String], segments: &[Series<Vec<f64>>]) -> String {
    let y = Axis::to(1.0, "share of requests").percent();
    let mut f = Frame::new(id, title, Axis::to(1.0, ""), y, &legend(segments), false);
    let slot = (Frame::RIGHT - Frame::LEFT) / groups.len().max(1) as f64;
    let width = (slot * 0.6).min(90.0);
    let mut body = String::new();
    for (g, group) in groups.iter().enumerate() {
        let x0 = Frame::LEFT + (g as f64 + 0.5) * slot - width / 2.0;
        let mut base = 0.0;
        for (s, seg) in segments.iter().enumerate() {
            let share = seg.points.get(g).copied().unwrap_or(0.0);
            if !(share.is_finite() && share > 0.0) {
                continue;
            }
            let (top, bottom) = (f.y(base + share), f.y(base));
            let _ = write!(
                body,
                "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}, {}: {:.1}%</title></rect>",
                bottom - top,
                colour(s),
                escape(group),
                escape(&seg.name),
                share * 100.0
            );
            base += share;
        }
    }
    f.clipped(&body);
    category_labels(&mut f, groups);
    f.finish()
}

/// The empirical CDF of `values` as (value, fraction ≤ value), at most
/// `max_points` points (evenly spaced in rank) besides the origin.
pub fn cdf_points(values: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mut points = vec![(0.0, 0.0)];
    if n == 0 {
        return points;
    }
    let step = n.div_ceil(max_points.max(1));
    let mut i = step - 1;
    while i < n {
        points.push((v[i], (i + 1) as f64 / n as f64));
        i += step;
    }
    if points.last().map(|p| p.1) != Some(1.0) {
        points.push((v[n - 1], 1.0));
    }
    points
}

/// Requests in flight over time, sampled at `samples` evenly spaced instants
/// of `[0, end]`, from (start, end) intervals.
pub fn in_flight_points(intervals: &[(f64, f64)], end: f64, samples: usize) -> Vec<(f64, f64)> {
    let samples = samples.max(2);
    (0..samples)
        .map(|i| {
            let t = end * i as f64 / (samples - 1) as f64;
            let n = intervals.iter().filter(|(s, e)| *s <= t && t < *e).count();
            (t, n as f64)
        })
        .collect()
}

/// Sums of `(time, weight)` events per window of `width` over `[0, end]`,
/// as (window middle, sum); empty windows are 0.
pub fn window_sums(events: &[(f64, f64)], end: f64, width: f64) -> Vec<(f64, f64)> {
    if !(width > 0.0 && end > 0.0) {
        return Vec::new();
    }
    let n = (end / width).ceil().max(1.0) as usize;
    let mut sums = vec![0.0; n];
    for (t, w) in events {
        if t.is_finite() && *t >= 0.0 {
            let i = ((t / width) as usize).min(n - 1);
            sums[i] += w;
        }
    }
    sums.into_iter().enumerate().map(|(i, s)| ((i as f64 + 0.5) * width, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let bars = bar_chart(
            "b",
            "TTFT",
            Axis::to(40.0, "ms"),
            &["pow2".into(), "prefix_aware".into()],
            &[
                Series::new("mean", vec![Bar { value: 10.0, lo: 8.0, hi: 12.0 }, Bar::one(5.0)]),
                Series::new("p99", vec![Bar::one(30.0), Bar::one(f64::NAN)]),
            ],
        );
        assert!(bars.starts_with("<svg"));
        for label in ["TTFT", "pow2", "prefix_aware", "mean", "p99", "10.00 (8.00–12.00)"] {
            assert!(bars.contains(label), "{label} missing");
        }
        assert_eq!(bars.matches("</title></rect>").count(), 3, "three bars: the NaN one is left out");
        let l = line_chart(
            "l",
            "CDF",
            Axis::to(3.0, "ms"),
            Axis::to(1.0, "fraction"),
            &[Series::new("a", cdf_points(&[3.0, 1.0, 2.0], 100))],
        );
        assert!(l.contains("<polyline"));
    }

    #[test]
    fn cdf_in_flight_and_windows_count_what_they_should() {
        assert_eq!(cdf_points(&[2.0, 1.0], 10), vec![(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]);
        let many: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = cdf_points(&many, 100);
        assert_eq!(p.len(), 101);
        assert_eq!(p.last(), Some(&(1000.0, 1.0)));
        let p = in_flight_points(&[(0.0, 2.0), (1.0, 3.0)], 4.0, 5);
        assert_eq!(p.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![1.0, 2.0, 1.0, 0.0, 0.0]);
        let w = window_sums(&[(0.1, 1.0), (0.9, 2.0), (1.5, 4.0), (9.0, 1.0)], 2.0, 1.0);
        assert_eq!(w, vec![(0.5, 3.0), (1.5, 5.0)]);
    }

    #[test]
    fn stacked_shares_draw_each_segment_with_its_share() {
        let svg = stacked_shares(
            "s",
            "mix",
            &["prefix_aware".into()],
            &[Series::new("prefix_match", vec![0.75]), Series::new("imbalanced", vec![0.25])],
        );
        assert!(svg.contains("prefix_aware, prefix_match: 75.0%"), "{svg}");
        assert!(svg.contains("prefix_aware, imbalanced: 25.0%"));
    }
}
