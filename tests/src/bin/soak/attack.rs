//! Adversarial bodies from other clients: the corpus of
//! `prefixgate-adversarial` (escapes, `\u` runs, tens of thousands of
//! messages, many parts, deep nesting, huge skipped values), every shape at
//! 1, 2, 3 and 4 MiB, sent through the proxy while the steady load runs.

use prefixgate_adversarial::{corpus, SIZES};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Fewest bodies a second the attack sends.
const MIN_RATE_PER_S: f64 = 2.0;
/// How long one adversarial request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// What the adversarial bodies got.
#[derive(Debug, Default)]
pub struct AttackReport {
    /// Bodies sent.
    pub sent: usize,
    /// Bodies the proxy dropped: a transport error, a 413, or a 5xx (the
    /// replicas answer every one of them with 200, 400 or 404).
    pub dropped: usize,
    /// Answers by status (`error` for a transport error).
    pub statuses: BTreeMap<String, usize>,
}

impl AttackReport {
    /// `200: 12, 400: 20, ...`
    pub fn statuses(&self) -> String {
        let parts: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        parts.join(", ")
    }
}

/// Sends the whole corpus (size by size) to `base_url` over `window`, at
/// least [`MIN_RATE_PER_S`] bodies a second, each on its own task; returns
/// once every answer is in.
pub async fn attack(http: &reqwest::Client, base_url: &str, window: Duration) -> AttackReport {
    let shapes_per_size = corpus(64 << 10).len();
    let total = shapes_per_size * SIZES.len();
    let spacing = (window / total.max(1) as u32).min(Duration::from_secs_f64(1.0 / MIN_RATE_PER_S));
    let start = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    // Bounded: at most one pass over the corpus.
    'sizes: for size in SIZES {
        for shape in corpus(size) {
            if sent > 0 && start.elapsed() >= window {
                break 'sizes;
            }
            tokio::time::sleep_until((start + spacing * sent as u32).into()).await;
            let request = http
                .post(format!("{base_url}{}", shape.path))
                .header("content-type", "application/json")
                .body(shape.body)
                .timeout(REQUEST_LIMIT);
            sends.spawn(async move {
                match request.send().await {
                    Ok(reply) => {
                        let status = reply.status().as_u16();
                        // Read the answer to the end, as a client would.
                        let _ = reply.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                }
            });
            sent += 1;
        }
    }
    let mut report = AttackReport { sent, ..AttackReport::default() };
    while let Some(joined) = sends.join_next().await {
        let status = joined.ok().flatten();
        let key = status.map_or("error".to_owned(), |s| s.to_string());
        *report.statuses.entry(key).or_default() += 1;
        if status.is_none_or(|s| s == 413 || s >= 500) {
            report.dropped += 1;
        }
    }
    report
}
