//! The report's charts, each rendered to an SVG string with `plotters`:
//! grouped bars, cumulative distributions and time series.

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

/// Chart size in pixels.
const SIZE: (u32, u32) = (720, 360);

/// A failed drawing, with plotters' message.
#[derive(Debug, thiserror::Error)]
#[error("drawing `{chart}`: {message}")]
pub struct ChartError {
    chart: String,
    message: String,
}

fn err(chart: &str) -> impl Fn(&dyn std::fmt::Display) -> ChartError + '_ {
    move |e| ChartError { chart: chart.to_owned(), message: e.to_string() }
}

/// Series colours, distinguishable and print-friendly.
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn finite_max(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if m > 0.0 {
        m * 1.1
    } else {
        1.0
    }
}

/// Draws one chart into an SVG string: a white canvas, then `draw` with a
/// chart builder that already carries the title, margin and label areas
/// (`x_label_area` pixels below the plot).
fn svg(
    title: &str,
    x_label_area: u32,
    draw: impl FnOnce(
        ChartBuilder<'_, '_, SVGBackend<'_>>,
        &dyn Fn(&dyn std::fmt::Display) -> ChartError,
    ) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let e = err(title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(x_label_area)
            .y_label_area_size(64);
        draw(builder, &e)?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// The legend of every labelled series, boxed, at `position`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
    e: &dyn Fn(&dyn std::fmt::Display) -> ChartError,
) -> Result<(), ChartError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(position)
        .draw()
        .map_err(|x| e(&x))
}

/// Bars per group (`groups` on the x axis) and per series (one colour each,
/// in the legend); `values[s][g]` is series `s` in group `g`, NaN for none.
pub fn grouped_bars(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String, ChartError> {
    svg(title, 36, |builder, e| {
        let mut builder = builder;
        let y_max = finite_max(series.iter().flat_map(|(_, v)| v.iter().copied()));
        let n = groups.len().max(1) as f64;
        let mut chart = builder.build_cartesian_2d(0.0..n, 0.0..y_max).map_err(|x| e(&x))?;
        chart.configure_mesh().disable_x_mesh().disable_x_axis().y_desc(y_label).draw().map_err(|x| e(&x))?;
        let width = 0.8 / series.len().max(1) as f64;
        for (s, (name, values)) in series.iter().enumerate() {
            let c = colour(s);
            let bars = values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(move |(g, v)| {
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.92, *v)], c.filled())
            });
            chart
                .draw_series(bars)
                .map_err(|x| e(&x))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        let labels = groups.iter().enumerate().map(|(g, name)| {
            EmptyElement::at((g as f64 + 0.5, 0.0))
                + Text::new(
                    name.clone(),
                    (-(name.len() as i32) * 7 / 2, 8),
                    ("sans-serif", 14).into_font().color(&BLACK),
                )
        });
        chart.draw_series(labels).map_err(|x| e(&x))?;
        legend(&mut chart, SeriesLabelPosition::UpperRight, e)
    })
}

/// One line per series, each a list of (x, y) points.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y_max: Option<f64>,
) -> Result<String, ChartError> {
    svg(title, 40, |builder, e| {
        let mut builder = builder;
        let x_max = finite_max(series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x))) / 1.1;
        let y_max =
            y_max.unwrap_or_else(|| finite_max(series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y))));
        let mut chart =
            builder.build_cartesian_2d(0.0..x_max.max(f64::MIN_POSITIVE), 0.0..y_max).map_err(|x| e(&x))?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|x| e(&x))?;
        for (s, (name, points)) in series.iter().enumerate() {
            let c = colour(s);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight, e)
    })
}

/// The empirical CDF of `values` as line points (value, fraction ≤ value).
pub fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mut points = Vec::with_capacity(v.len() + 1);
    points.push((0.0, 0.0));
    points.extend(v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let bars = grouped_bars(
            "TTFT",
            "ms",
            &["pow2".into(), "prefix_aware".into()],
            &[("mean".into(), vec![10.0, 5.0]), ("p99".into(), vec![30.0, f64::NAN])],
        )
        .unwrap();
        assert!(bars.starts_with("<svg"));
        for label in ["TTFT", "pow2", "prefix_aware", "mean", "p99"] {
            assert!(bars.contains(label), "{label} missing");
        }
        let l =
            lines("CDF", "ms", "fraction", &[("a".into(), cdf_points(&[3.0, 1.0, 2.0]))], Some(1.0)).unwrap();
        assert!(l.contains("<polyline") || l.contains("<path"));
    }

    #[test]
    fn cdf_and_in_flight_count_what_they_should() {
        assert_eq!(cdf_points(&[2.0, 1.0]), vec![(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]);
        let p = in_flight_points(&[(0.0, 2.0), (1.0, 3.0)], 4.0, 5);
        assert_eq!(p.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![1.0, 2.0, 1.0, 0.0, 0.0]);
    }
}
