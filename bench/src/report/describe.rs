//! What was run, at the top of the report: date, fleet, workload, router,
//! repetitions, and each strategy's plugin configuration (the settings that
//! tell the strategies apart, and the whole JSON on demand).

use super::data::{Results, Run};
use super::svg::escape;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// `unix_s` as a UTC date and time, `2025-06-01 12:34 UTC`.
pub fn utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

fn yes_no(v: Option<&str>, yes: &str, no: &str) -> String {
    match v {
        Some("true") => yes.to_owned(),
        Some("false") => no.to_owned(),
        _ => format!("{yes}: not recorded"),
    }
}

fn or_unknown(v: Option<&str>) -> String {
    v.map(str::to_owned).unwrap_or_else(|| "not recorded".to_owned())
}

fn date(results: &Results) -> String {
    let stamps: Vec<u64> = results
        .strategies
        .iter()
        .flat_map(|s| s.runs.iter())
        .filter_map(|r| r.serve_text("timestamp")?.trim().parse().ok())
        .filter(|t| *t > 0)
        .collect();
    match (stamps.iter().min(), stamps.iter().max()) {
        (Some(a), Some(b)) if a == b => utc(*a),
        (Some(a), Some(b)) => format!("{} to {}", utc(*a), utc(*b)),
        _ => match results.modified_unix_s {
            Some(t) => {
                format!("not recorded per run (lab runs carry no date); results file last written {}", utc(t))
            }
            None => "not recorded".to_owned(),
        },
    }
}

fn fleet(r: &Run) -> String {
    let n = or_unknown(r.serve_text("num_servers"));
    let profile = r
        .serve_text("profile")
        .map(|p| format!(" × {p}"))
        .unwrap_or_else(|| " (profile not recorded)".into());
    let gpu = or_unknown(r.serve_text("gpu_type"));
    let model = or_unknown(r.serve_text("model_name"));
    let time = match (r.serve_text("router"), r.serve_text("time_scale")) {
        (Some("lab"), _) => "virtual time (lab)".to_owned(),
        (_, Some(t)) => format!("time scale ×{t} (times in simulated seconds)"),
        _ => "time scale not recorded".to_owned(),
    };
    format!(
        "{n} replicas{profile} ({gpu}, {model}); {}, {}; {time}",
        yes_no(r.serve_text("enable_prefix_caching"), "prefix caching", "no prefix caching"),
        yes_no(r.serve_text("enable_chunked_prefill"), "chunked prefill", "no chunked prefill"),
    )
}

fn workload(r: &Run) -> String {
    let dataset = r.serve_text("dataset_name").unwrap_or("dataset not recorded");
    let rate = match r.serve_text("request_rate") {
        Some("inf") => "all at once (rate inf)".to_owned(),
        Some(x) => format!("{x} req/s"),
        None => "rate not recorded".to_owned(),
    };
    let concurrency = r
        .serve_text("max_concurrency")
        .map(|c| format!("at most {c} in flight"))
        .unwrap_or("no concurrency limit".into());
    let sent = r.serve_f64("completed") + r.serve_f64("failed");
    let sent = if sent.is_finite() { format!(" ({sent} sent)") } else { String::new() };
    format!(
        "{dataset}, {} prompts{sent} (of {} conversations), {rate}, {concurrency}, output {}–{} tokens; {}, {}, {}",
        or_unknown(r.serve_text("num_prompts")),
        or_unknown(r.serve_text("max_conversations")),
        or_unknown(r.serve_text("min_output_len")),
        or_unknown(r.serve_text("max_output_len")),
        yes_no(r.serve_text("with_warmup"), "warm-up", "no warm-up"),
        match r.serve_text("disable_stream") {
            Some("true") => "not streamed",
            _ => "streamed",
        },
        match r.serve_text("disable_ignore_eos") {
            Some("true") => "outputs may stop early",
            _ => "ignore_eos (exact output lengths)",
        },
    )
}

fn router(r: &Run) -> String {
    match (r.serve_text("router"), r.serve_text("routers")) {
        (Some("lab"), Some(k)) if k != "1" => {
            format!("lab: the filter's code in process, {k} independent routers")
        }
        (Some("lab"), _) => "lab: the filter's code in process, in virtual time".to_owned(),
        (Some(name), _) => format!("{name} with the prefixgate filter"),
        (None, _) => "not recorded".to_owned(),
    }
}

/// A strategy's plugin configuration without its backends (listed with the replicas).
fn plugin_config(r: &Run) -> Option<serde_json::Map<String, serde_json::Value>> {
    let value: serde_json::Value = serde_json::from_str(r.serve_text("plugin_config")?).ok()?;
    let mut map = value.as_object()?.clone();
    map.remove("backends");
    Some(map)
}

fn strategies_table(results: &Results) -> String {
    let configs: Vec<Option<serde_json::Map<String, serde_json::Value>>> =
        results.strategies.iter().map(|s| s.first().and_then(plugin_config)).collect();
    // Settings whose value differs between strategies tell them apart.
    let keys: BTreeSet<&String> = configs.iter().flatten().flat_map(|c| c.keys()).collect();
    let differing: Vec<&String> = keys
        .into_iter()
        .filter(|k| k.as_str() != "policy")
        .filter(|k| {
            let values: Vec<Option<&serde_json::Value>> =
                configs.iter().map(|c| c.as_ref().and_then(|c| c.get(*k))).collect();
            values.windows(2).any(|w| w[0] != w[1])
        })
        .collect();
    let mut s = String::from("<table class=\"strategies\"><tr><th>strategy</th><th>runs</th><th>policy</th><th>settings that differ</th><th>plugin configuration</th></tr>\n");
    for (strategy, config) in results.strategies.iter().zip(&configs) {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td>", escape(&strategy.label), strategy.runs.len());
        match config {
            Some(c) => {
                let policy = c.get("policy").and_then(|p| p.as_str()).unwrap_or("?");
                let settings: Vec<String> =
                    differing.iter().filter_map(|k| c.get(*k).map(|v| format!("{k}={v}"))).collect();
                let json = serde_json::to_string_pretty(c).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "<td>{}</td><td>{}</td><td><details><summary>JSON</summary><pre>{}</pre></details></td></tr>",
                    escape(policy),
                    escape(&settings.join(", ")),
                    escape(&json)
                );
            }
            None => s.push_str("<td colspan=\"3\">not recorded</td></tr>\n"),
        }
    }
    s.push_str("</table>\n");
    s
}

/// The description block of the page.
pub fn description_html(results: &Results) -> String {
    let Some(first) = results.strategies.first().and_then(|s| s.first()) else {
        return String::new();
    };
    let runs: BTreeSet<usize> = results.strategies.iter().map(|s| s.runs.len()).collect();
    let runs = match runs.len() {
        1 => match results.max_runs() {
            1 => "1 run per strategy".to_owned(),
            n => format!("{n} runs per strategy, each on a fresh fleet; figures are the mean ± sample sd, min–max below"),
        },
        _ => "a different number of runs per strategy (see the table); figures are the mean ± sample sd".to_owned(),
    };
    let rows = [
        ("date", date(results)),
        ("fleet", fleet(first)),
        ("workload", workload(first)),
        ("router", router(first)),
        ("repetitions", runs),
        ("results", results.dir.display().to_string()),
    ];
    let mut s = String::from("<table class=\"about\">");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    s.push_str("</table>\n");
    s.push_str(&strategies_table(results));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_735_689_600 + 3_660), "2025-01-01 01:01 UTC");
    }
}
