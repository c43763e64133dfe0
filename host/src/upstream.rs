//! Backends: the allowed upstream addresses, their passive health and
//! in-flight counts, the fail-open round robin, callout cluster resolution,
//! and the pooled upstream client.

use crate::metrics::Metrics;
use crate::wasm::abi::header_map::get;
use crate::wasm::host_state::CalloutResolver;
use crate::wasm::HeaderList;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Boxed error of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of proxied requests and responses.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// Pooled client to the backends.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// Name of the cluster holding every backend.
pub const DEFAULT_CLUSTER: &str = "prefixgate_backends";

/// How long a backend that refused a connection is skipped by the fallback.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// One backend.
#[derive(Debug)]
pub struct Backend {
    /// `ip:port` as configured.
    pub name: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Requests in flight through this proxy.
    pub in_flight: AtomicI64,
    /// Consecutive connection failures.
    pub failures: AtomicU32,
    down_until: Mutex<Option<Instant>>,
}

impl Backend {
    /// Whether the fallback may use this backend now.
    pub fn healthy(&self) -> bool {
        self.down_until.lock().map(|d| d.is_none_or(|t| Instant::now() >= t)).unwrap_or(true)
    }

    /// Records a connection failure.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(Instant::now() + DOWN_FOR);
        }
    }

    /// Records a response.
    pub fn succeeded(&self) {
        if self.failures.swap(0, Ordering::Relaxed) != 0 {
            if let Ok(mut d) = self.down_until.lock() {
                *d = None;
            }
        }
    }
}

/// An invalid backend or cluster.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not `host:port`.
    #[error("{input:?} is not host:port")]
    NotHostPort {
        /// The value as given.
        input: String,
        /// Why it does not parse or resolve.
        #[source]
        source: std::io::Error,
    },
    /// It resolves to no address.
    #[error("{0:?} does not resolve")]
    NoAddress(String),
    /// A cluster names an address that is not a backend.
    #[error("cluster {cluster}: {member} is not one of the backends")]
    NotABackend {
        /// The cluster.
        cluster: String,
        /// The member as given.
        member: String,
    },
    /// A backend is this proxy's own listen or admin address.
    #[error("{0} is this proxy's own listen or admin address; requests to it would loop")]
    OwnAddress(String),
}

/// Normalizes `http://host:port/` to `host:port` and resolves it.
pub fn parse_backend(s: &str) -> Result<(String, SocketAddr), BackendError> {
    let name = s.trim().trim_start_matches("http://").trim_end_matches('/').to_string();
    let addr = name
        .to_socket_addrs()
        .map_err(|source| BackendError::NotHostPort { input: s.to_string(), source })?
        .next()
        .ok_or_else(|| BackendError::NoAddress(s.to_string()))?;
    Ok((name, addr))
}

/// The configured backends and clusters.
#[derive(Debug)]
pub struct Backends {
    list: Vec<Arc<Backend>>,
    clusters: HashMap<String, Vec<usize>>,
    rr: AtomicUsize,
    /// The upstream header (lowercase) a callout may name its backend with.
    upstream_header: Vec<u8>,
}

/// The upstream header's default name.
pub const DEFAULT_UPSTREAM_HEADER: &str = "x-envoy-original-dst-host";

impl Backends {
    /// Builds the table; clusters name backends from `list` (the cluster
    /// `prefixgate_backends` holds all of them unless configured).
    pub fn new(list: &[String], clusters: &BTreeMap<String, Vec<String>>) -> Result<Self, BackendError> {
        let mut backends: Vec<Arc<Backend>> = Vec::new();
        for s in list {
            let (name, addr) = parse_backend(s)?;
            if backends.iter().any(|b| b.addr == addr) {
                continue;
            }
            backends.push(Arc::new(Backend {
                name,
                addr,
                in_flight: AtomicI64::new(0),
                failures: AtomicU32::new(0),
                down_until: Mutex::new(None),
            }));
        }
        let mut table = HashMap::new();
        table.insert(DEFAULT_CLUSTER.to_string(), (0..backends.len()).collect());
        for (cluster, members) in clusters {
            let mut idx = Vec::new();
            for m in members {
                let (_, addr) = parse_backend(m)?;
                let i = backends.iter().position(|b| b.addr == addr).ok_or_else(|| {
                    BackendError::NotABackend { cluster: cluster.clone(), member: m.clone() }
                })?;
                idx.push(i);
            }
            table.insert(cluster.clone(), idx);
        }
        Ok(Self {
            list: backends,
            clusters: table,
            rr: AtomicUsize::new(0),
            upstream_header: DEFAULT_UPSTREAM_HEADER.as_bytes().to_vec(),
        })
    }

    /// Callouts name their backend with `header` (the configured
    /// `upstream_header`) rather than the default.
    pub fn with_upstream_header(mut self, header: &str) -> Self {
        self.upstream_header = header.to_ascii_lowercase().into_bytes();
        self
    }

    /// All backends.
    pub fn all(&self) -> &[Arc<Backend>] {
        &self.list
    }

    /// The backend named by an upstream header value (`ip:port`).
    pub fn find(&self, value: &[u8]) -> Option<Arc<Backend>> {
        let v = std::str::from_utf8(value).ok()?.trim();
        let addr: Option<SocketAddr> = v.parse().ok();
        self.list.iter().find(|b| b.name == v || Some(b.addr) == addr).cloned()
    }

    /// Where a request that failed on `failed` is retried: the first healthy
    /// one of `named` (the fallbacks the filter listed after its choice),
    /// else another backend by [`Backends::fallback`]; never `failed` itself.
    pub fn retry_target(&self, failed: SocketAddr, named: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        named
            .iter()
            .find(|b| b.addr != failed && b.healthy())
            .cloned()
            .or_else(|| self.fallback(Some(failed)).filter(|b| b.addr != failed))
    }

    /// Round robin over healthy backends (any backend if none is healthy),
    /// skipping `exclude` when there is a choice.
    pub fn fallback(&self, exclude: Option<SocketAddr>) -> Option<Arc<Backend>> {
        let n = self.list.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let pick = |ok: &dyn Fn(&Backend) -> bool| {
            (0..n).map(|i| &self.list[(start + i) % n]).find(|b| ok(b)).cloned()
        };
        pick(&|b| b.healthy() && Some(b.addr) != exclude)
            .or_else(|| pick(&|b| Some(b.addr) != exclude))
            .or_else(|| pick(&|_| true))
    }
}

impl CalloutResolver for Backends {
    /// The upstream header (`upstream_header`) or `:authority` when it
    /// names a member of the cluster (or any backend, for a cluster named
    /// after a backend); otherwise the cluster's members in turn. Never an
    /// address outside the backends.
    fn resolve(&self, cluster: &str, headers: &HeaderList) -> Option<SocketAddr> {
        let named: Vec<Arc<Backend>> = [self.upstream_header.as_slice(), b":authority"]
            .iter()
            .filter_map(|k| get(headers, k))
            .filter_map(|v| self.find(v))
            .collect();
        match self.clusters.get(cluster) {
            Some(members) => {
                if let Some(b) = named.iter().find(|b| members.iter().any(|i| self.list[*i].addr == b.addr)) {
                    return Some(b.addr);
                }
                let n = members.len();
                (n > 0).then(|| self.list[members[self.rr.fetch_add(1, Ordering::Relaxed) % n]].addr)
            }
            None => self.find(cluster.as_bytes()).map(|b| b.addr).or_else(|| named.first().map(|b| b.addr)),
        }
    }
}

/// A pooled HTTP/1.1 client for the backends.
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Counts a request in flight on a backend until dropped.
pub struct InFlight {
    metrics: Metrics,
    /// The backend.
    pub backend: Arc<Backend>,
}

impl InFlight {
    /// Counts one more request in flight on `backend`.
    pub fn new(metrics: &Metrics, backend: Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics.in_flight.with_label_values(&[backend.name.as_str()]).inc();
        Self { metrics: metrics.clone(), backend }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.in_flight.with_label_values(&[self.backend.name.as_str()]).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderList {
        pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn resolves_only_configured_backends() {
        let b =
            Backends::new(&["127.0.0.1:1".into(), "http://127.0.0.1:2/".into()], &BTreeMap::new()).unwrap();
        let call = h(&[(":authority", "127.0.0.1:2")]);
        assert_eq!(b.resolve(DEFAULT_CLUSTER, &call), "127.0.0.1:2".parse().ok());
        assert_eq!(b.resolve("127.0.0.1:1", &h(&[])), "127.0.0.1:1".parse().ok());
        assert_eq!(b.resolve("anything", &call), "127.0.0.1:2".parse().ok());
        assert_eq!(b.resolve("anything", &h(&[(":authority", "10.0.0.1:80")])), None);
        assert!(b.find(b"10.0.0.1:80").is_none());
        assert!(b.find(b"127.0.0.1:2").is_some());
    }

    #[test]
    fn a_retry_goes_to_the_filters_fallback_first_and_never_back() {
        let list = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string(), "127.0.0.1:3".to_string()];
        let b = Backends::new(&list, &BTreeMap::new()).unwrap();
        let first: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let named: Vec<_> = [&b"127.0.0.1:3"[..], b"127.0.0.1:1"].iter().filter_map(|v| b.find(v)).collect();
        for _ in 0..4 {
            assert_eq!(b.retry_target(first, &named).unwrap().addr.port(), 3);
        }
        // No (usable) fallback named: another backend, never the failed one.
        for _ in 0..4 {
            assert_ne!(b.retry_target(first, &named[1..]).unwrap().addr, first);
            assert_ne!(b.retry_target(first, &[]).unwrap().addr, first);
        }
    }

    #[test]
    fn callouts_name_their_backend_with_the_configured_upstream_header() {
        let list = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let clusters = BTreeMap::new();
        let custom = Backends::new(&list, &clusters).unwrap().with_upstream_header("X-Route-To");
        let call = h(&[("x-route-to", "127.0.0.1:2")]);
        for _ in 0..3 {
            assert_eq!(custom.resolve(DEFAULT_CLUSTER, &call), "127.0.0.1:2".parse().ok());
        }
        let default = Backends::new(&list, &clusters).unwrap();
        let named = h(&[(DEFAULT_UPSTREAM_HEADER, "127.0.0.1:2")]);
        for _ in 0..3 {
            assert_eq!(default.resolve(DEFAULT_CLUSTER, &named), "127.0.0.1:2".parse().ok());
        }
        // A header the configuration does not name is not a choice.
        let ports: Vec<_> =
            (0..4).filter_map(|_| default.resolve(DEFAULT_CLUSTER, &call)).map(|a| a.port()).collect();
        assert!(ports.contains(&1) && ports.contains(&2), "round robin: {ports:?}");
    }

    #[test]
    fn fallback_skips_down_backends() {
        let b = Backends::new(&["127.0.0.1:1".into(), "127.0.0.1:2".into()], &BTreeMap::new()).unwrap();
        b.all()[0].failed();
        for _ in 0..4 {
            assert_eq!(b.fallback(None).map(|x| x.addr.port()), Some(2));
        }
        assert_eq!(b.fallback(Some("127.0.0.1:2".parse().unwrap())).map(|x| x.addr.port()), Some(1));
    }
}
