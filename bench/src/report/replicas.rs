//! One name per replica on the whole page: `replica i` is the i-th replica
//! of a run's per-replica columns (its `replica_urls`), whatever its address;
//! charts show the address as a tooltip and the page lists it in a table.

use super::data::Run;

/// The name of the replica at `index`.
pub fn replica_name(index: usize) -> String {
    format!("replica {index}")
}

/// The replicas of one run, in the order of its per-replica columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replicas {
    /// `host:port` of replica 0, 1, ...
    pub addresses: Vec<String>,
}

impl Replicas {
    /// The run's replicas: those of its `replica_urls` first, then any
    /// other backend its requests name (an older results directory without
    /// the replica-side CSV), in address order.
    pub fn of(run: &Run) -> Self {
        let mut addresses: Vec<String> =
            run.per_replica_text("replica_urls").iter().map(|u| address_of(u)).collect();
        let mut others: Vec<String> = run
            .outcomes
            .iter()
            .filter_map(|o| o.backend.as_deref())
            .map(address_of)
            .filter(|a| !addresses.contains(a))
            .collect();
        others.sort();
        others.dedup();
        addresses.extend(others);
        Self { addresses }
    }

    /// The index of the replica at `address` (`host:port`, with or without scheme).
    pub fn index(&self, address: &str) -> Option<usize> {
        let a = address_of(address);
        self.addresses.iter().position(|x| *x == a)
    }
}

/// `host:port` of a URL or address.
fn address_of(url: &str) -> String {
    let s = url.trim();
    let s = s.split_once("://").map(|(_, rest)| rest).unwrap_or(s);
    s.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::RequestOutcome;

    #[test]
    fn replicas_follow_the_url_column_then_the_requests() {
        let run = Run {
            vllm: Some(
                [("replica_urls".to_owned(), "http://127.0.0.1:9002;http://127.0.0.1:9001".to_owned())]
                    .into(),
            ),
            outcomes: ["127.0.0.1:9001", "127.0.0.1:9999", "127.0.0.1:9002"]
                .iter()
                .map(|b| RequestOutcome { backend: Some((*b).to_owned()), ..Default::default() })
                .collect(),
            ..Run::default()
        };
        let r = Replicas::of(&run);
        assert_eq!(r.addresses, ["127.0.0.1:9002", "127.0.0.1:9001", "127.0.0.1:9999"]);
        assert_eq!(r.index("http://127.0.0.1:9001/"), Some(1));
        assert_eq!(replica_name(2), "replica 2");
    }
}
