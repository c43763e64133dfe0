//! The drawing surface of the report's charts: a plot area with its axes,
//! ticks and grid, and the legend in its own column to the right of it, so
//! that a legend never covers data. Charts are plain SVG strings with a
//! `viewBox`, so the page's grid can scale them to its columns.
//!
//! Drawn here rather than with a charting crate: plotters, which the report
//! used before, puts its legend inside the plot area and cannot attach the
//! SVG `<title>` tooltips that carry each replica's address and each bar's
//! spread; the report needs only axes, lines, bars and whiskers.

use std::fmt::Write as _;

/// Width of every chart, in SVG units.
pub const WIDTH: f64 = 640.0;
/// Height of every chart.
pub const HEIGHT: f64 = 340.0;
/// Width of the legend column right of the plot area.
const LEGEND_WIDTH: f64 = 140.0;
const LEFT: f64 = 62.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 48.0;

/// Series colours, distinguishable and print-friendly; series `i` of every
/// chart takes colour `i`, so replica `i` has one colour on the whole page.
pub fn colour(i: usize) -> &'static str {
    const C: [&str; 10] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
        "#17becf",
    ];
    C[i % C.len()]
}

/// `s` with the characters XML gives a meaning to replaced by entities.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One legend entry: a name, its colour, and a tooltip (`<title>`).
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    /// Shown beside the swatch.
    pub name: String,
    /// Shown on hover, e.g. a replica's address; empty for none.
    pub tooltip: String,
    /// Fill or stroke colour.
    pub colour: &'static str,
}

/// A linear axis from `min` to `max`.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Lowest value shown.
    pub min: f64,
    /// Highest value shown.
    pub max: f64,
    /// Axis title.
    pub label: String,
    /// Tick labels as percentages of 1 (0.5 → `50%`).
    pub percent: bool,
}

impl Axis {
    /// An axis from 0 to `max` (1 when `max` is not a positive number).
    pub fn to(max: f64, label: &str) -> Self {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        Self { min: 0.0, max, label: label.to_owned(), percent: false }
    }

    /// The same axis with percentage ticks.
    pub fn percent(mut self) -> Self {
        self.percent = true;
        self
    }

    /// Round tick values covering the axis, about five of them.
    pub fn ticks(&self) -> Vec<f64> {
        let range = self.max - self.min;
        if range <= 0.0 || !range.is_finite() {
            return vec![self.min];
        }
        let raw = range / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * magnitude);
        let first = (self.min / step).ceil() as i64;
        let last = (self.max / step + 1e-9).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }

    fn tick_label(&self, v: f64) -> String {
        if self.percent {
            return format!("{}%", trim(v * 100.0));
        }
        trim(v)
    }
}

/// A number without trailing zeros, thousands as `k`.
fn trim(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        return format!("{}k", trim(v / 1000.0));
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A chart being drawn: the frame is written by [`Frame::new`], data by the
/// caller in plot coordinates ([`Frame::x`], [`Frame::y`]), clipped to the
/// plot area, and [`Frame::finish`] closes it.
pub struct Frame {
    out: String,
    /// Horizontal axis (ignored for categorical charts).
    pub x_axis: Axis,
    /// Vertical axis.
    pub y_axis: Axis,
    clip: String,
}

impl Frame {
    /// Left edge of the plot area.
    pub const LEFT: f64 = LEFT;
    /// Right edge of the plot area.
    pub const RIGHT: f64 = WIDTH - LEGEND_WIDTH;
    /// Top edge of the plot area.
    pub const TOP: f64 = TOP;
    /// Bottom edge of the plot area.
    pub const BOTTOM: f64 = HEIGHT - BOTTOM;

    /// A chart with `title`, axes, and `legend` right of the plot area;
    /// `x_ticks` false leaves the horizontal axis unlabelled (categories
    /// are labelled by the caller). `id` must be unique on the page.
    pub fn new(
        id: &str,
        title: &str,
        x_axis: Axis,
        y_axis: Axis,
        legend: &[LegendEntry],
        x_ticks: bool,
    ) -> Self {
        let clip = format!("clip-{}", id.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             font-family=\"sans-serif\" font-size=\"12.5\" role=\"img\" aria-label=\"{t}\">\
             <title>{t}</title><rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\
             <defs><clipPath id=\"{clip}\"><rect x=\"{l}\" y=\"{tp}\" width=\"{w}\" height=\"{h}\"/></clipPath></defs>\
             <text x=\"{cx}\" y=\"20\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">{t}</text>",
            t = escape(title),
            l = Self::LEFT,
            tp = Self::TOP,
            w = Self::RIGHT - Self::LEFT,
            h = Self::BOTTOM - Self::TOP,
            cx = (Self::LEFT + Self::RIGHT) / 2.0,
        );
        let mut frame = Self { out, x_axis, y_axis, clip };
        frame.axes(x_ticks);
        frame.legend(legend);
        frame
    }

    /// The horizontal position of `x`.
    pub fn x(&self, x: f64) -> f64 {
        let a = &self.x_axis;
        Self::LEFT + (x - a.min) / (a.max - a.min) * (Self::RIGHT - Self::LEFT)
    }

    /// The vertical position of `y`.
    pub fn y(&self, y: f64) -> f64 {
        let a = &self.y_axis;
        Self::BOTTOM - (y - a.min) / (a.max - a.min) * (Self::BOTTOM - Self::TOP)
    }

    fn axes(&mut self, x_ticks: bool) {
        let (l, r, t, b) = (Self::LEFT, Self::RIGHT, Self::TOP, Self::BOTTOM);
        for v in self.y_axis.ticks() {
            let y = self.y(v);
            let _ = write!(
                self.out,
                "<line x1=\"{l}\" x2=\"{r}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                l - 5.0,
                y + 4.0,
                self.y_axis.tick_label(v)
            );
        }
        if x_ticks {
            for v in self.x_axis.ticks() {
                let x = self.x(v);
                let _ = write!(
                    self.out,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{t}\" y2=\"{b}\" stroke=\"#f0f0f0\"/>\
                     <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    b + 15.0,
                    self.x_axis.tick_label(v)
                );
            }
        }
        let _ = writeln!(
            self.out,
            "<path d=\"M{l} {t}V{b}H{r}\" fill=\"none\" stroke=\"#444\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            (l + r) / 2.0,
            b + 36.0,
            escape(&self.x_axis.label),
            (t + b) / 2.0,
            escape(&self.y_axis.label),
        );
    }

    fn legend(&mut self, entries: &[LegendEntry]) {
        let x = Self::RIGHT + 14.0;
        for (i, e) in entries.iter().enumerate() {
            let y = Self::TOP + 6.0 + i as f64 * 17.0;
            let tooltip =
                if e.tooltip.is_empty() { e.name.clone() } else { format!("{}: {}", e.name, e.tooltip) };
            let name: String = e.name.chars().take(17).collect();
            let _ = writeln!(
                self.out,
                "<g><title>{}</title><rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
                escape(&tooltip),
                y - 10.0,
                e.colour,
                x + 17.0,
                y,
                escape(&name)
            );
        }
    }

    /// Writes raw SVG inside the plot area's clip.
    pub fn clipped(&mut self, svg: &str) {
        let _ = writeln!(self.out, "<g clip-path=\"url(#{})\">{svg}</g>", self.clip);
    }

    /// Writes raw SVG, unclipped (labels outside the plot area).
    pub fn raw(&mut self, svg: &str) {
        self.out.push_str(svg);
    }

    /// The finished SVG element.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_axis() {
        assert_eq!(Axis::to(10.0, "").ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let a = Axis::to(1.0, "");
        let labels: Vec<String> = a.ticks().iter().map(|v| a.tick_label(*v)).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(Axis::to(900.0, "").ticks().len(), 5);
        assert_eq!(Axis::to(1.0, "").percent().tick_label(0.25), "25%");
        assert_eq!(trim(25_000.0), "25k");
    }

    #[test]
    fn the_legend_is_right_of_the_plot_area_with_its_tooltip() {
        let legend =
            [LegendEntry { name: "replica 0".into(), tooltip: "127.0.0.1:8001".into(), colour: colour(0) }];
        let f = Frame::new("t", "A <chart>", Axis::to(1.0, "x"), Axis::to(1.0, "y"), &legend, true);
        let svg = f.finish();
        assert!(svg.contains("<title>replica 0: 127.0.0.1:8001</title>"), "{svg}");
        assert!(svg.contains("A &lt;chart&gt;"));
        assert!(svg.contains(&format!("<rect x=\"{}\"", Frame::RIGHT + 14.0)));
    }
}
