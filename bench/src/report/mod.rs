//! `prefixgate-bench report`: a sweep's (or the lab's) results as one
//! self-contained HTML page (`report/index.html`): what was run, a summary
//! table with the spread of repeated runs and the change against a
//! baseline strategy, and inline SVG charts in a grid. No scripts, no
//! external assets: readable offline and attachable to an issue.

pub mod charts;
pub mod data;
pub mod decisions;
pub mod describe;
pub mod error;
pub mod replicas;
pub mod sections;
pub mod spread;
pub mod summary;
pub mod svg;
pub mod table;
pub mod timeline;

use data::Results;
pub use error::ReportError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use svg::escape;

/// Writes the report of the results in `input_dir` to `output` (default
/// `input_dir/report/index.html`), with deltas against `baseline` (default
/// `round_robin` when present, else the first strategy); returns its path.
pub fn write_report(
    input_dir: &Path,
    output: Option<&Path>,
    baseline: Option<&str>,
) -> Result<PathBuf, ReportError> {
    let results = data::load(input_dir)?;
    let html = render(&results, baseline)?;
    let path = output.map(Path::to_owned).unwrap_or_else(|| input_dir.join("report").join("index.html"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_owned(), source })?;
    }
    std::fs::write(&path, html).map_err(|source| ReportError::Io { path: path.clone(), source })?;
    Ok(path)
}

const STYLE: &str = "\
body{font-family:sans-serif;margin:1.5em 2em;color:#222}\
h1{margin:0 0 .3em}h2{margin:1.6em 0 .4em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}\
th:first-child,td:first-child{text-align:left}\
table.about th{text-align:left;background:#f6f6f6}table.about td{text-align:left}\
table.strategies td{text-align:left}pre{margin:0;font-size:11px}\
small{color:#666}.good{color:#17803d;font-weight:bold}.bad{color:#b42318;font-weight:bold}.same{color:#666}\
.base{font-size:11px;color:#fff;background:#555;border-radius:3px;padding:0 4px}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}\
.grid3{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px}\
.grid svg,.grid3 svg{width:100%;height:auto;border:1px solid #eee}\
.note{color:#8a5a00;background:#fff8e6;border-left:3px solid #e0a800;padding:4px 10px;margin:.5em 0}\
p.hint{color:#555;margin:.2em 0 .6em}";

/// The whole page.
pub fn render(results: &Results, baseline: Option<&str>) -> Result<String, ReportError> {
    let strategies = &results.strategies;
    let base = summary::choose_baseline(strategies, baseline)?;
    let label = strategies
        .first()
        .and_then(|s| s.first())
        .and_then(|r| r.serve_text("benchmark_label"))
        .map(|l| format!("prefixgate sweep: {l}"))
        .unwrap_or_else(|| "prefixgate sweep".into());
    let title = escape(&label);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    page.push_str(&describe::description_html(results));
    let base_label = strategies.get(base).map(|s| s.label.as_str()).unwrap_or_default();
    let _ = write!(
        page,
        "<h2>Summary</h2>\n<p class=\"hint\">Changes are against <b>{}</b>; green is better, red worse. \
         ↓ lower is better, ↑ higher is better.</p>\n",
        escape(base_label)
    );
    page.push_str(&summary::summary_html(strategies, base));
    for section in sections::all(results) {
        let _ = writeln!(page, "<h2>{}</h2>", escape(&section.heading));
        if !section.hint.is_empty() {
            let _ = writeln!(page, "<p class=\"hint\">{}</p>", escape(&section.hint));
        }
        for note in &section.notes {
            let _ = writeln!(page, "<p class=\"note\">{}</p>", escape(note));
        }
        if !section.charts.is_empty() {
            let _ =
                writeln!(page, "<div class=\"{}\">", if section.three_columns { "grid3" } else { "grid" });
            for chart in &section.charts {
                page.push_str(chart);
                page.push('\n');
            }
            page.push_str("</div>\n");
        }
        page.push_str(&section.html);
    }
    page.push_str("</body></html>\n");
    Ok(page)
}
