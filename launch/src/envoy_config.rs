//! Renders Envoy 1.40 configurations for prefixgate: a bootstrap with the
//! routing filter inline or through ECDS, a plain round-robin bootstrap (the
//! benchmark's baseline) and the ECDS resource file that hot swaps the filter.
//!
//! Pure functions from a struct to YAML text: nothing here touches the file
//! system, so the same code serves `cargo xtask envoy`, `cargo xtask
//! envoy-swap` and the end-to-end tests (which include this file as a module).
//! `envoy/envoy.yaml` and `envoy/envoy-ecds.yaml` are the documented
//! templates these functions follow.

use prefixgate_filter::config::{BackendConfig, BackendDetails};
pub use prefixgate_filter::PolicyKind;
use prefixgate_filter::{ConfigError, FilterConfig};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// Name of the filter, of its ECDS resource and (as `root_id`) of the plugin.
pub const FILTER_NAME: &str = "prefixgate";
/// Default `vm_id`: the shared-data namespace. Keep it across rollouts so the
/// prefix index survives a swap.
pub const DEFAULT_VM_ID: &str = "prefixgate";
/// The cluster requests are forwarded through: every replica, picked by the
/// `override_host` load balancer from the filter's header.
pub const BACKENDS_CLUSTER: &str = "prefixgate_backends";
/// Request header in which the filter names the chosen replica and then its
/// fallbacks, and which the cluster's `override_host` load balancer reads:
/// the Gateway API inference extension's name for it.
pub const UPSTREAM_HEADER: &str = "x-gateway-destination-endpoint";
/// Listener and cluster buffer limit: the filter reads bodies up to 4 MiB
/// (`max_body_bytes`), so Envoy must be able to hold more than that before
/// it would answer 413.
pub const BUFFER_LIMIT_BYTES: u64 = 8 * 1024 * 1024;

/// Name of the STATIC cluster holding only backend `index`, used for its
/// `/metrics` scrapes.
pub fn metrics_cluster_name(index: usize) -> String {
    format!("prefixgate_metrics_{index}")
}

/// The default plugin configuration for `backends` under `policy`.
pub fn plugin_config(policy: PolicyKind, backends: &[SocketAddr]) -> FilterConfig {
    let mut config =
        FilterConfig::new(backends.iter().map(|b| BackendConfig::Address(b.to_string())).collect());
    config.policy = policy;
    config
}

/// `config` as the bootstrap [`render_bootstrap`] writes expects it: each
/// backend scraped through its own metrics cluster, the replica named in
/// [`UPSTREAM_HEADER`] followed by at least one fallback, so that a retry goes
/// to another replica.
pub fn for_envoy(mut config: FilterConfig) -> FilterConfig {
    for (i, backend) in config.backends.iter_mut().enumerate() {
        let mut details = match backend {
            BackendConfig::Address(address) => BackendDetails {
                address: address.clone(),
                name: None,
                weight: 1.0,
                cluster: None,
                capacity_chunks: None,
                max_ongoing_requests: None,
            },
            BackendConfig::Detailed(details) => details.clone(),
        };
        details.cluster = Some(metrics_cluster_name(i));
        *backend = BackendConfig::Detailed(details);
    }
    config.upstream_header = UPSTREAM_HEADER.to_owned();
    config.upstream_fallbacks = config.upstream_fallbacks.max(1);
    config
}

/// Where the bootstrap gets the routing filter from.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterMode {
    /// The filter's config is part of the bootstrap (`typed_config`).
    Inline(Box<FilterSpec>),
    /// The filter's config comes through ECDS from this watched file, which
    /// [`render_ecds_resource`] writes and a rename replaces.
    Ecds {
        /// Absolute path of the ECDS resource file.
        path: String,
    },
    /// No filter: the router balances round-robin over a STATIC cluster of
    /// the backends (the benchmark's baseline).
    RoundRobin,
}

/// One rollout of the routing filter: module, plugin config, VM identity.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterSpec {
    /// Absolute path of the `.wasm` module (read when the config is applied).
    pub wasm_path: String,
    /// The plugin configuration, as [`for_envoy`] made it.
    pub config: FilterConfig,
    /// Shared-data namespace; [`DEFAULT_VM_ID`] unless several independent
    /// routers share one Envoy.
    pub vm_id: String,
}

impl FilterSpec {
    /// A rollout of the module at `wasm_path` with `config` (made fit for the
    /// bootstrap by [`for_envoy`]) in the default VM namespace. A
    /// configuration the filter would refuse is refused here, before Envoy
    /// sees it.
    pub fn new(wasm_path: impl Into<String>, config: FilterConfig) -> Result<Self, ConfigError> {
        let config = for_envoy(config);
        config.validate()?;
        Ok(Self { wasm_path: wasm_path.into(), config, vm_id: DEFAULT_VM_ID.to_owned() })
    }

    /// As [`FilterSpec::new`], from plugin configuration JSON.
    pub fn from_json(wasm_path: impl Into<String>, json: &[u8]) -> Result<Self, ConfigError> {
        Self::new(wasm_path, FilterConfig::from_json(json)?)
    }

    /// The plugin configuration JSON the filter receives.
    pub fn plugin_config_json(&self) -> String {
        // A FilterConfig holds only strings, numbers and booleans: it always serialises.
        serde_json::to_string(&self.config).unwrap_or_default()
    }
}

/// Timeouts and retries of the route to the replicas, modelled on
/// prefixgate's own `[timeouts]` defaults so both hosts behave alike.
/// Built by [`UpstreamTimeouts::new`], which refuses a combination under
/// which Envoy could not retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    connect: Duration,
    first_byte: Duration,
    stream_idle: Duration,
}

/// A set of route timeouts Envoy could not honour as documented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeoutsError {
    /// Envoy's stream idle timer also runs while a try waits for its
    /// response headers: unless it is longer than the first-byte timeout,
    /// it ends a request that a hung replica holds before the retry starts.
    #[error(
        "stream idle timeout {stream_idle:?} must be longer than the first-byte timeout {first_byte:?}: \
         Envoy's stream idle timer also runs while waiting for response headers and would end the \
         request before its retry"
    )]
    StreamIdleNotAboveFirstByte {
        /// The stream idle timeout asked for.
        stream_idle: Duration,
        /// The first-byte (per-try) timeout asked for.
        first_byte: Duration,
    },
    /// A zero timeout, which Envoy reads as "none".
    #[error("the {0} timeout must be above zero (Envoy reads 0 as no timeout)")]
    Zero(&'static str),
}

impl UpstreamTimeouts {
    /// `connect`: TCP connect to a replica. `first_byte`: from sending the
    /// request to the response headers, per try (Envoy's `per_try_timeout`,
    /// which stops at the headers); past it the request is retried on the
    /// fallback. `stream_idle`: longest silence on a stream, the wait for
    /// the headers included, so it must exceed `first_byte`.
    pub fn new(
        connect: Duration,
        first_byte: Duration,
        stream_idle: Duration,
    ) -> Result<Self, TimeoutsError> {
        for (name, value) in [("connect", connect), ("first-byte", first_byte), ("stream idle", stream_idle)]
        {
            if value.is_zero() {
                return Err(TimeoutsError::Zero(name));
            }
        }
        if stream_idle <= first_byte {
            return Err(TimeoutsError::StreamIdleNotAboveFirstByte { stream_idle, first_byte });
        }
        Ok(Self { connect, first_byte, stream_idle })
    }

    /// These timeouts with another first-byte timeout, the stream idle
    /// timeout raised to twice it if it would not exceed it otherwise.
    pub fn with_first_byte(self, first_byte: Duration) -> Result<Self, TimeoutsError> {
        let stream_idle =
            if self.stream_idle > first_byte { self.stream_idle } else { first_byte.saturating_mul(2) };
        Self::new(self.connect, first_byte, stream_idle)
    }

    /// TCP connect to a replica.
    pub fn connect(&self) -> Duration {
        self.connect
    }

    /// Per-try wait for the response headers.
    pub fn first_byte(&self) -> Duration {
        self.first_byte
    }

    /// Longest silence on a stream.
    pub fn stream_idle(&self) -> Duration {
        self.stream_idle
    }
}

impl Default for UpstreamTimeouts {
    /// Connect 2 s; first byte 120 s, a long prefill under load; stream idle
    /// 300 s, Envoy's own default.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(120),
            stream_idle: Duration::from_secs(300),
        }
    }
}

/// Everything a bootstrap needs.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvoySpec {
    /// Address of the listener clients connect to (port 0: any free port).
    pub listen: SocketAddr,
    /// Address of the admin interface (port 0: any free port).
    pub admin: SocketAddr,
    /// The vLLM replicas, in the order the plugin config lists them.
    pub backends: Vec<SocketAddr>,
    /// Filter inline, through ECDS, or none.
    pub mode: FilterMode,
    /// Timeouts of the route to the replicas.
    pub timeouts: UpstreamTimeouts,
}

/// Quotes `s` as a JSON string, which is also a valid YAML double-quoted scalar.
pub fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A duration as a protobuf JSON/YAML duration (`1.5s`).
fn proto_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{}.{:03}s", millis / 1000, millis % 1000)
    }
}

/// Renders the `envoy.extensions.filters.http.wasm.v3.Wasm` message (without
/// its `@type`), indented by `indent` spaces.
fn wasm_filter_body(spec: &FilterSpec, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let lines = [
        "config:".to_owned(),
        format!("  name: {FILTER_NAME}"),
        format!("  root_id: {FILTER_NAME}"),
        "  vm_config:".to_owned(),
        format!("    vm_id: {}", yaml_string(&spec.vm_id)),
        "    runtime: envoy.wasm.runtime.v8".to_owned(),
        "    code:".to_owned(),
        "      local:".to_owned(),
        format!("        filename: {}", yaml_string(&spec.wasm_path)),
        "  configuration:".to_owned(),
        "    \"@type\": type.googleapis.com/google.protobuf.StringValue".to_owned(),
        format!("    value: {}", yaml_string(&spec.plugin_config_json())),
        "  # Pause at the headers until the body (the prompt) is in (Envoy >= 1.35).".to_owned(),
        "  allow_on_headers_stop_iteration: true".to_owned(),
        "  # A VM that traps is replaced for the next request; anything else fails".to_owned(),
        "  # closed (503). Never FAIL_OPEN: skipping the filter would let a client's".to_owned(),
        "  # own upstream header pick the replica.".to_owned(),
        "  failure_policy: FAIL_RELOAD".to_owned(),
    ];
    let mut out = String::new();
    for line in lines {
        out.push_str(&pad);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Renders the ECDS resource file (a `DiscoveryResponse` in YAML) holding
/// one rollout of the filter. `version` becomes `version_info`; the plugin
/// config should carry the same label so the config hash changes.
pub fn render_ecds_resource(spec: &FilterSpec, version: &str) -> String {
    let mut out = String::new();
    out.push_str("# prefixgate filter rollout, read by Envoy through ECDS.\n");
    out.push_str("# Replace this file by a rename (never edit it in place).\n");
    let _ = writeln!(out, "version_info: {}", yaml_string(version));
    out.push_str("resources:\n");
    out.push_str("- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n");
    let _ = writeln!(out, "  name: {FILTER_NAME}");
    out.push_str("  typed_config:\n");
    out.push_str("    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n");
    out.push_str(&wasm_filter_body(spec, 4));
    out
}

fn socket_address(addr: SocketAddr, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}socket_address:\n{pad}  address: {}\n{pad}  port_value: {}\n",
        yaml_string(&addr.ip().to_string()),
        addr.port()
    )
}

fn endpoints(backends: &[SocketAddr], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}- lb_endpoints:\n");
    for backend in backends {
        let _ = write!(out, "{pad}  - endpoint:\n{pad}      address:\n");
        out.push_str(&socket_address(*backend, indent + 8));
    }
    out
}

/// Circuit breakers raised far above Envoy's 1024 defaults: one cluster
/// carries the traffic of the whole fleet. Retries too: Envoy's default
/// allows 3 at a time in the whole cluster, so a replica that hangs several
/// requests at once would see all but 3 fail instead of being retried; each
/// request retries at most once (`num_retries: 1`), so retries in flight
/// never exceed requests.
const CIRCUIT_BREAKERS: &str = "    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: 100000
        max_pending_requests: 100000
        max_requests: 100000
        max_retries: 100000
";

/// Envoy's own replies (a refused or reset upstream, a timeout, no route, a
/// body over the buffer limit) and the OpenAI error type each status gets,
/// as the prefixgate host names them. A status listed `true` is rewritten
/// only when Envoy set a response flag, so the filter's own JSON replies
/// (which carry none) pass untouched; 413 carries no flag and the filter
/// never sends one.
const LOCAL_REPLIES: [(u16, &str, bool); 8] = [
    (400, "BadRequestError", true),
    (404, "NotFoundError", true),
    (408, "RequestTimeoutError", true),
    (413, "PayloadTooLargeError", false),
    (500, "InternalServerErrorError", true),
    (502, "BadGatewayError", true),
    (503, "ServiceUnavailableError", true),
    (504, "GatewayTimeoutError", true),
];

/// `local_reply_config` of the connection manager: Envoy's own error
/// replies as OpenAI-shaped JSON (`{"error":{"message","type","param","code"}}`,
/// `content-type: application/json`), the message being Envoy's text.
pub fn local_reply_config() -> String {
    let mut out = String::from(
        "          # Envoy's own error replies as OpenAI-shaped JSON; the filter's replies carry
          # no response flag and pass untouched.
          local_reply_config:
            mappers:
",
    );
    for (status, error_type, flagged) in LOCAL_REPLIES {
        let status_filter =
            format!("status_code_filter: {{comparison: {{op: EQ, value: {{default_value: {status}, runtime_key: prefixgate.local_reply.{status}}}}}}}");
        if flagged {
            out.push_str(
                "            - filter:
                and_filter:
                  filters:
",
            );
            let _ = writeln!(out, "                  - {status_filter}");
            out.push_str(
                "                  - response_flag_filter: {}
",
            );
        } else {
            let _ = writeln!(
                out,
                "            - filter:
                {status_filter}"
            );
        }
        let _ = write!(
            out,
            "              body_format_override:
                json_format:
                  error:
                    message: \"%LOCAL_REPLY_BODY%\"
                    type: {error_type}
                    param: null
                    code: \"%RESPONSE_CODE%\"
                content_type: application/json
"
        );
    }
    out
}

/// The route to the replicas: no overall timeout (it would cut streams), and
/// one retry on the next replica the filter named when the chosen one fails
/// before its first response byte.
fn route_retry(timeouts: &UpstreamTimeouts) -> String {
    format!(
        "                  # Once, on the fallback the filter named after the chosen replica,
                  # when nothing came back: refused, reset, 502/503, or no headers within
                  # per_try_timeout (which ends at the response headers). Envoy never
                  # retries once a response has started reaching the client.
                  retry_policy:
                    retry_on: connect-failure,refused-stream,reset,retriable-status-codes
                    retriable_status_codes: [502, 503]
                    num_retries: 1
                    per_try_timeout: {}
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
",
        proto_duration(timeouts.first_byte())
    )
}

/// The `override_host` load balancer: the replica (and fallbacks) named in
/// [`UPSTREAM_HEADER`], round robin when the header names none of the cluster.
fn override_host_policy() -> String {
    format!(
        "    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.override_host
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost
            override_host_sources:
            - header: {UPSTREAM_HEADER}
            fallback_policy:
              policies:
              - typed_extension_config:
                  name: envoy.load_balancing_policies.round_robin
                  typed_config:
                    \"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin
"
    )
}

/// The admin interface's `/listeners?format=json` answer held no usable
/// listener address.
#[derive(Debug, thiserror::Error)]
#[error("no listener address in Envoy's /listeners answer: {answer}")]
pub struct NoListenerAddress {
    /// The answer, cut to its first 200 characters.
    pub answer: String,
}

/// The address the (first) listener is bound to, from the admin interface's
/// `/listeners?format=json` answer: how a launcher that asked for port 0
/// learns the port the system picked.
pub fn listener_address(listeners_json: &str) -> Result<SocketAddr, NoListenerAddress> {
    let fail = || NoListenerAddress { answer: listeners_json.chars().take(200).collect() };
    let json: serde_json::Value = serde_json::from_str(listeners_json).map_err(|_| fail())?;
    let socket = &json["listener_statuses"][0]["local_address"]["socket_address"];
    let (Some(ip), Some(port)) = (socket["address"].as_str(), socket["port_value"].as_u64()) else {
        return Err(fail());
    };
    let ip: std::net::IpAddr = ip.parse().map_err(|_| fail())?;
    let port = u16::try_from(port).map_err(|_| fail())?;
    Ok(SocketAddr::new(ip, port))
}

/// The `stats_config` block: one `stats_tags` rule per label the filter's
/// metric names carry (`name;label=value`, see `prefixgate_filter::metrics`),
/// cutting `;label=value` out of the stat name into a tag, so that
/// `/stats/prometheus` shows labelled families.
pub fn stats_config() -> String {
    let mut out = String::from(
        "stats_config:
  # The filter's metric names carry their labels (name;label=value): each rule
  # cuts one label out of the name into a tag, so that /stats/prometheus shows
  # prefixgate_decisions_total{policy=\"...\",reason=\"...\"} and the rest.
  stats_tags:
",
    );
    for label in prefixgate_filter::metrics::label_names() {
        let _ = writeln!(out, "  - tag_name: {label}\n    regex: \"(;{label}=([^;]*))\"");
    }
    out
}

/// Renders a complete bootstrap for `spec`.
pub fn render_bootstrap(spec: &EnvoySpec) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated by prefixgate's Envoy renderer; see envoy/envoy.yaml for the annotated template.\n",
    );
    // Subscriptions (ECDS) need a node identity.
    out.push_str("node:\n  id: prefixgate\n  cluster: prefixgate\n");
    if spec.mode != FilterMode::RoundRobin {
        out.push_str(&stats_config());
    }
    out.push_str("admin:\n  address:\n");
    out.push_str(&socket_address(spec.admin, 4));
    out.push_str("static_resources:\n  listeners:\n  - name: prefixgate_listener\n    address:\n");
    out.push_str(&socket_address(spec.listen, 6));
    let _ = writeln!(out, "    per_connection_buffer_limit_bytes: {BUFFER_LIMIT_BYTES}");
    out.push_str(
        "    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: prefixgate
          codec_type: AUTO
          # SSE streams may stay silent through a long prefill.
",
    );
    let _ = writeln!(out, "          stream_idle_timeout: {}", proto_duration(spec.timeouts.stream_idle()));
    out.push_str(&local_reply_config());
    out.push_str(
        "          route_config:
            name: prefixgate_route
            virtual_hosts:
            - name: llm
              domains: [\"*\"]
              routes:
              - match: {prefix: \"/\"}
                route:
",
    );
    let round_robin = spec.mode == FilterMode::RoundRobin;
    let cluster = if round_robin { "prefixgate_round_robin" } else { BACKENDS_CLUSTER };
    let _ = writeln!(out, "                  cluster: {cluster}");
    out.push_str("                  # The route timeout counts until the whole response; 0s for streams.\n");
    out.push_str("                  timeout: 0s\n");
    if !round_robin {
        out.push_str(&route_retry(&spec.timeouts));
    }
    out.push_str("          http_filters:\n");
    match &spec.mode {
        FilterMode::Inline(filter) => {
            let _ = writeln!(out, "          - name: {FILTER_NAME}");
            out.push_str("            typed_config:\n");
            out.push_str(
                "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n",
            );
            out.push_str(&wasm_filter_body(filter, 14));
        }
        FilterMode::Ecds { path } => {
            let _ = writeln!(out, "          - name: {FILTER_NAME}");
            out.push_str("            config_discovery:\n");
            out.push_str("              config_source:\n");
            out.push_str("                resource_api_version: V3\n");
            out.push_str("                path_config_source:\n");
            let _ = writeln!(out, "                  path: {}", yaml_string(path));
            out.push_str("              type_urls:\n");
            out.push_str("              - type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n");
        }
        FilterMode::RoundRobin => {}
    }
    out.push_str(
        "          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
",
    );
    let _ = writeln!(out, "  - name: {cluster}");
    out.push_str("    type: STATIC\n");
    let _ = writeln!(out, "    connect_timeout: {}", proto_duration(spec.timeouts.connect()));
    if round_robin {
        out.push_str("    lb_policy: ROUND_ROBIN\n");
    } else {
        out.push_str("    # The filter names the replica, then its fallbacks, in the header.\n");
        out.push_str(&override_host_policy());
        let _ = writeln!(out, "    per_connection_buffer_limit_bytes: {BUFFER_LIMIT_BYTES}");
    }
    out.push_str(CIRCUIT_BREAKERS);
    let _ = writeln!(out, "    load_assignment:\n      cluster_name: {cluster}\n      endpoints:");
    out.push_str(&endpoints(&spec.backends, 6));
    if round_robin {
        return out;
    }
    for (i, backend) in spec.backends.iter().enumerate() {
        let name = metrics_cluster_name(i);
        let _ = writeln!(out, "  - name: {name}");
        out.push_str("    # Only the filter's /metrics scrapes of this replica use it.\n");
        out.push_str("    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n");
        let _ = writeln!(out, "      cluster_name: {name}");
        out.push_str("      endpoints:\n");
        out.push_str(&endpoints(std::slice::from_ref(backend), 6));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn two_backends() -> Vec<SocketAddr> {
        vec![addr("127.0.0.1:8001"), addr("127.0.0.1:8002")]
    }

    fn inline_spec() -> EnvoySpec {
        let config = plugin_config(PolicyKind::Pow2, &two_backends());
        EnvoySpec {
            listen: addr("127.0.0.1:10000"),
            admin: addr("127.0.0.1:9901"),
            backends: two_backends(),
            mode: FilterMode::Inline(Box::new(FilterSpec::new("/m.wasm", config).unwrap())),
            timeouts: UpstreamTimeouts::default().with_first_byte(Duration::from_millis(2500)).unwrap(),
        }
    }

    #[test]
    fn timeouts_under_which_envoy_could_not_retry_are_refused() {
        let s = Duration::from_secs;
        assert!(UpstreamTimeouts::new(s(2), s(5), s(11)).is_ok());
        assert_eq!(
            UpstreamTimeouts::new(s(2), s(5), s(5)),
            Err(TimeoutsError::StreamIdleNotAboveFirstByte { stream_idle: s(5), first_byte: s(5) })
        );
        assert_eq!(UpstreamTimeouts::new(s(0), s(5), s(11)), Err(TimeoutsError::Zero("connect")));
        assert_eq!(UpstreamTimeouts::new(s(2), s(0), s(11)), Err(TimeoutsError::Zero("first-byte")));
        // A first-byte timeout above the default stream idle raises it.
        let long = UpstreamTimeouts::default().with_first_byte(s(400)).unwrap();
        assert_eq!((long.first_byte(), long.stream_idle()), (s(400), s(800)));
        let short = UpstreamTimeouts::default().with_first_byte(s(1)).unwrap();
        assert_eq!((short.first_byte(), short.stream_idle()), (s(1), s(300)));
        let message = UpstreamTimeouts::new(s(2), s(5), s(5)).unwrap_err().to_string();
        assert!(message.contains("5s") && message.contains("retry"), "{message}");
    }

    #[test]
    fn the_plugin_config_names_a_metrics_cluster_per_backend_and_a_fallback() {
        let spec =
            FilterSpec::from_json("/m.wasm", br#"{"backends":["127.0.0.1:8001","127.0.0.1:8002"]}"#).unwrap();
        let parsed = FilterConfig::from_json(spec.plugin_config_json().as_bytes()).unwrap();
        assert_eq!(parsed.backends[1].cluster(), Some("prefixgate_metrics_1"));
        assert_eq!(parsed.backends[1].address(), "127.0.0.1:8002");
        assert_eq!(parsed.upstream_header, UPSTREAM_HEADER);
        assert_eq!(parsed.upstream_fallbacks, 1);
    }

    #[test]
    fn a_config_the_filter_refuses_is_refused() {
        let err = FilterSpec::from_json("/m.wasm", br#"{"backends":["nowhere"]}"#).unwrap_err();
        assert_eq!(err.field, "backends[0]");
    }

    #[test]
    fn yaml_string_escapes_quotes_and_controls() {
        assert_eq!(yaml_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn inline_bootstrap_has_filter_clusters_retry_and_limits() {
        let yaml = render_bootstrap(&inline_spec());
        for needle in [
            "allow_on_headers_stop_iteration: true",
            "runtime: envoy.wasm.runtime.v8",
            "name: envoy.load_balancing_policies.override_host",
            "- header: x-gateway-destination-endpoint",
            "num_retries: 1",
            "per_try_timeout: 2.500s",
            "connect_timeout: 2s",
            "timeout: 0s",
            "name: prefixgate_metrics_1",
            "port_value: 8002",
            "\\\"upstream_fallbacks\\\":1",
            "per_connection_buffer_limit_bytes: 8388608",
            "  - tag_name: reason\n    regex: \"(;reason=([^;]*))\"",
            "  - tag_name: backend\n    regex: \"(;backend=([^;]*))\"",
        ] {
            assert!(yaml.contains(needle), "missing {needle:?} in\n{yaml}");
        }
        assert!(!yaml.contains('\t'));
        // Both replicas are members of the request cluster (override_host
        // only picks members).
        let request_cluster = &yaml[yaml.find("- name: prefixgate_backends").unwrap()..];
        let request_cluster =
            &request_cluster[..request_cluster.find("- name: prefixgate_metrics_0").unwrap()];
        assert_eq!(request_cluster.matches("port_value: 800").count(), 2, "{request_cluster}");
    }

    #[test]
    fn round_robin_bootstrap_has_no_filter_and_no_retry() {
        let spec = EnvoySpec { mode: FilterMode::RoundRobin, ..inline_spec() };
        let yaml = render_bootstrap(&spec);
        assert!(!yaml.contains("wasm"));
        assert!(!yaml.contains("retry_policy"));
        assert!(yaml.contains("lb_policy: ROUND_ROBIN"));
    }

    #[test]
    fn ecds_resource_carries_the_version() {
        let spec =
            FilterSpec::new("/m.wasm", plugin_config(PolicyKind::RoundRobin, &two_backends())).unwrap();
        let yaml = render_ecds_resource(&spec, "v7");
        assert!(yaml.contains("version_info: \"v7\""));
        assert!(yaml.contains("name: prefixgate\n"));
    }

    #[test]
    fn the_listener_address_is_read_from_the_admin_answer() {
        let answer = r#"{"listener_statuses":[{"name":"prefixgate_listener","local_address":{"socket_address":{"address":"127.0.0.1","port_value":40123}}}]}"#;
        assert_eq!(listener_address(answer).unwrap(), addr("127.0.0.1:40123"));
        assert!(listener_address(r#"{"listener_statuses":[]}"#).is_err());
        assert!(listener_address("not json").is_err());
    }

    #[test]
    fn durations_render_as_protobuf_durations() {
        assert_eq!(proto_duration(Duration::from_secs(120)), "120s");
        assert_eq!(proto_duration(Duration::from_millis(250)), "0.250s");
    }

    #[test]
    fn the_shipped_templates_route_and_retry_as_the_renderer_does() {
        let rendered = render_bootstrap(&inline_spec());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy");
        for template in ["envoy.yaml", "envoy-ecds.yaml", "ecds/prefixgate.yaml"] {
            let text = std::fs::read_to_string(dir.join(template)).unwrap();
            let needles: &[&str] = if template.starts_with("ecds/") {
                &[
                    "\"upstream_header\": \"x-gateway-destination-endpoint\"",
                    "\"upstream_fallbacks\": 1",
                    "failure_policy: FAIL_RELOAD",
                ]
            } else {
                &[
                    "- header: x-gateway-destination-endpoint",
                    "name: envoy.load_balancing_policies.override_host",
                    "retry_on: connect-failure,refused-stream,reset,retriable-status-codes",
                    "retriable_status_codes: [502, 503]",
                    "num_retries: 1",
                    "name: envoy.retry_host_predicates.previous_hosts",
                    "host_selection_retry_max_attempts: 3",
                    "max_retries: 100000",
                    "timeout: 0s",
                ]
            };
            if !template.starts_with("ecds/") {
                // Envoy's own replies are JSON, as the renderer makes them.
                assert!(
                    text.contains(&local_reply_config()),
                    "envoy/{template} lacks the local_reply_config"
                );
                // Every tag rule of the renderer, verbatim.
                for rule in stats_config().lines().filter(|l| l.contains("tag_name") || l.contains("regex")) {
                    assert!(text.contains(rule), "envoy/{template} lacks {rule:?}");
                }
            }
            for needle in needles {
                assert!(text.contains(needle), "envoy/{template} lacks {needle:?}");
                if !template.starts_with("ecds/") {
                    assert!(rendered.contains(needle), "the renderer lacks {needle:?}");
                }
            }
        }
    }
}
