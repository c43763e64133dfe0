//! Renders Envoy 1.40 configurations for prefixgate: a bootstrap with the
//! routing filter inline or through ECDS, a plain round-robin bootstrap (the
//! benchmark's baseline) and the ECDS resource file that hot swaps the filter.
//!
//! Pure functions from a struct to YAML text: nothing here touches the file
//! system, so the same code serves `cargo xtask envoy`, `cargo xtask
//! envoy-swap` and the end-to-end tests (which include this file as a module).
//! `envoy/envoy.yaml` and `envoy/envoy-ecds.yaml` are the documented
//! templates these functions follow.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Name of the filter, of its ECDS resource and (as `root_id`) of the plugin.
pub const FILTER_NAME: &str = "prefixgate";
/// Default `vm_id`: the shared-data namespace. Keep it across rollouts so the
/// prefix index survives a swap.
pub const DEFAULT_VM_ID: &str = "prefixgate";
/// The ORIGINAL_DST cluster requests are forwarded through.
pub const BACKENDS_CLUSTER: &str = "prefixgate_backends";
/// Listener and cluster buffer limit: the filter reads bodies up to 4 MiB
/// (`max_body_bytes`), so Envoy must be able to hold more than that before
/// it would answer 413.
pub const BUFFER_LIMIT_BYTES: u64 = 8 * 1024 * 1024;

/// Name of the STATIC cluster holding only backend `index`, used for its
/// `/metrics` scrapes.
pub fn metrics_cluster_name(index: usize) -> String {
    format!("prefixgate_metrics_{index}")
}

/// Where the bootstrap gets the routing filter from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// The filter's config is part of the bootstrap (`typed_config`).
    Inline(FilterSpec),
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// Absolute path of the `.wasm` module (read when the config is applied).
    pub wasm_path: String,
    /// The plugin configuration JSON (see the filter's README), already
    /// rendered, e.g. by [`plugin_config_json`].
    pub plugin_config: String,
    /// Shared-data namespace; [`DEFAULT_VM_ID`] unless several independent
    /// routers share one Envoy.
    pub vm_id: String,
}

/// Everything a bootstrap needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoySpec {
    /// Address of the listener clients connect to (port 0: any free port).
    pub listen: SocketAddr,
    /// Address of the admin interface (port 0: any free port).
    pub admin: SocketAddr,
    /// The vLLM replicas, in the order the plugin config lists them.
    pub backends: Vec<SocketAddr>,
    /// Filter inline, through ECDS, or none.
    pub mode: FilterMode,
}

/// Renders the plugin configuration JSON for `backends` under `policy`.
///
/// Each backend names its own STATIC metrics cluster
/// ([`metrics_cluster_name`]), which the bootstrap defines. `version` is the
/// rollout label (changing it changes the ECDS hash); `extra` holds further
/// top-level fields as `(name, raw JSON value)` pairs, e.g.
/// `("scrape_interval_ms", "200")`.
pub fn plugin_config_json(
    policy: &str,
    backends: &[SocketAddr],
    version: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let mut out = String::from("{");
    let _ = write!(out, "\"policy\":{}", json_string(policy));
    out.push_str(",\"backends\":[");
    for (i, backend) in backends.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"address\":{},\"cluster\":{}}}",
            json_string(&backend.to_string()),
            json_string(&metrics_cluster_name(i))
        );
    }
    out.push(']');
    if let Some(version) = version {
        let _ = write!(out, ",\"version\":{}", json_string(version));
    }
    for (name, value) in extra {
        let _ = write!(out, ",{}:{}", json_string(name), value);
    }
    out.push('}');
    out
}

/// Quotes `s` as a JSON string, which is also a valid YAML double-quoted scalar.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        format!("    vm_id: {}", json_string(&spec.vm_id)),
        "    runtime: envoy.wasm.runtime.v8".to_owned(),
        "    code:".to_owned(),
        "      local:".to_owned(),
        format!("        filename: {}", json_string(&spec.wasm_path)),
        "  configuration:".to_owned(),
        "    \"@type\": type.googleapis.com/google.protobuf.StringValue".to_owned(),
        format!("    value: {}", json_string(&spec.plugin_config)),
        "  # Pause at the headers until the body (the prompt) is in (Envoy >= 1.35).".to_owned(),
        "  allow_on_headers_stop_iteration: true".to_owned(),
        "  # A VM that traps is replaced for the next request; anything else fails".to_owned(),
        "  # closed (503). Never FAIL_OPEN: skipping the filter would let a client's".to_owned(),
        "  # own x-envoy-original-dst-host pick the upstream.".to_owned(),
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
    let _ = writeln!(out, "version_info: {}", json_string(version));
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
        json_string(&addr.ip().to_string()),
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
/// carries the traffic of the whole fleet.
const CIRCUIT_BREAKERS: &str = "    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: 100000
        max_pending_requests: 100000
        max_requests: 100000
        max_retries: 3
";

/// Renders a complete bootstrap for `spec`.
pub fn render_bootstrap(spec: &EnvoySpec) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated by prefixgate's Envoy renderer; see envoy/envoy.yaml for the annotated template.\n",
    );
    // Subscriptions (ECDS) need a node identity.
    out.push_str("node:\n  id: prefixgate\n  cluster: prefixgate\n");
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
          # SSE streams may stay silent through a long prefill; the default is 5 min.
          stream_idle_timeout: 300s
          route_config:
            name: prefixgate_route
            virtual_hosts:
            - name: llm
              domains: [\"*\"]
              routes:
              - match: {prefix: \"/\"}
                route:
",
    );
    let cluster =
        if spec.mode == FilterMode::RoundRobin { "prefixgate_round_robin" } else { BACKENDS_CLUSTER };
    let _ = writeln!(out, "                  cluster: {cluster}");
    out.push_str(
        "                  # The route timeout counts until the whole response; 0s for streams.
                  timeout: 0s
          http_filters:
",
    );
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
            let _ = writeln!(out, "                  path: {}", json_string(path));
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
    if spec.mode == FilterMode::RoundRobin {
        out.push_str(
            "  - name: prefixgate_round_robin
    type: STATIC
    lb_policy: ROUND_ROBIN
    connect_timeout: 5s
",
        );
        out.push_str(CIRCUIT_BREAKERS);
        out.push_str("    load_assignment:\n      cluster_name: prefixgate_round_robin\n      endpoints:\n");
        out.push_str(&endpoints(&spec.backends, 6));
        return out;
    }
    let _ = writeln!(out, "  - name: {BACKENDS_CLUSTER}");
    out.push_str(
        "    # The filter names the replica in x-envoy-original-dst-host (ip:port).
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    original_dst_lb_config:
      use_http_header: true
    connect_timeout: 5s
",
    );
    let _ = writeln!(out, "    per_connection_buffer_limit_bytes: {BUFFER_LIMIT_BYTES}");
    out.push_str(CIRCUIT_BREAKERS);
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

    #[test]
    fn plugin_config_names_a_metrics_cluster_per_backend() {
        let json = plugin_config_json(
            "pow2",
            &[addr("127.0.0.1:8001"), addr("127.0.0.1:8002")],
            Some("v1"),
            &[("scrape_interval_ms", "200")],
        );
        assert_eq!(
            json,
            r#"{"policy":"pow2","backends":[{"address":"127.0.0.1:8001","cluster":"prefixgate_metrics_0"},{"address":"127.0.0.1:8002","cluster":"prefixgate_metrics_1"}],"version":"v1","scrape_interval_ms":200}"#
        );
    }

    #[test]
    fn json_string_escapes_quotes_and_controls() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn inline_bootstrap_has_filter_clusters_and_limits() {
        let spec = EnvoySpec {
            listen: addr("127.0.0.1:10000"),
            admin: addr("127.0.0.1:9901"),
            backends: vec![addr("127.0.0.1:8001"), addr("127.0.0.1:8002")],
            mode: FilterMode::Inline(FilterSpec {
                wasm_path: "/m.wasm".into(),
                plugin_config: "{\"backends\":[]}".into(),
                vm_id: DEFAULT_VM_ID.into(),
            }),
        };
        let yaml = render_bootstrap(&spec);
        for needle in [
            "allow_on_headers_stop_iteration: true",
            "runtime: envoy.wasm.runtime.v8",
            "type: ORIGINAL_DST",
            "use_http_header: true",
            "timeout: 0s",
            "name: prefixgate_metrics_1",
            "port_value: 8002",
            "value: \"{\\\"backends\\\":[]}\"",
            "per_connection_buffer_limit_bytes: 8388608",
        ] {
            assert!(yaml.contains(needle), "missing {needle:?} in\n{yaml}");
        }
        assert!(!yaml.contains('\t'));
    }

    #[test]
    fn round_robin_bootstrap_has_no_filter() {
        let spec = EnvoySpec {
            listen: addr("127.0.0.1:0"),
            admin: addr("127.0.0.1:0"),
            backends: vec![addr("127.0.0.1:8001")],
            mode: FilterMode::RoundRobin,
        };
        let yaml = render_bootstrap(&spec);
        assert!(!yaml.contains("wasm"));
        assert!(yaml.contains("lb_policy: ROUND_ROBIN"));
    }

    #[test]
    fn ecds_resource_carries_the_version() {
        let spec = FilterSpec {
            wasm_path: "/m.wasm".into(),
            plugin_config: "{}".into(),
            vm_id: DEFAULT_VM_ID.into(),
        };
        let yaml = render_ecds_resource(&spec, "v7");
        assert!(yaml.contains("version_info: \"v7\""));
        assert!(yaml.contains("name: prefixgate\n"));
    }
}
