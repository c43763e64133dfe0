//! Every end-to-end scenario against both hosts of the prefixgate filter,
//! from one table: Envoy 1.40 (`--concurrency 2`) with the module, and the
//! `prefixgate` binary (two VMs, started with a configuration file as users
//! run it), each a child process in front of simulated vLLM replicas on
//! loopback. Envoy or a binary missing is a failure, not a skip.
//!
//! Tests are named `<host>::<scenario>`: `cargo test --test hosts envoy::`
//! runs Envoy's, `cargo test --test hosts sse_` one scenario on both.
//! `tests/gie.rs` holds the Gateway API endpoint-picker rules, checked
//! against Envoy only, in the `override_host` layout the protocol assumes.
#![allow(clippy::unwrap_used, reason = "test helpers too: a failed unwrap is a failed test")]

mod envoy_only;
mod failures;
mod metrics;
mod prefixgate_only;
mod routing;
mod swap;

use envoy_only::*;
use failures::*;
use metrics::*;
use prefixgate_only::*;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::{Host, ProxyOptions, RunningProxy};
use routing::*;
use std::net::SocketAddr;
use swap::*;

/// Simulated time runs this many times faster than real time.
pub const FAST: f64 = 50.0;

/// `host` in front of `addrs` with the filter under `policy`, scraping every
/// 100 ms, plus the plugin configuration fields `extra`.
pub async fn start(host: Host, addrs: &[SocketAddr], policy: &str, extra: &[(&str, &str)]) -> RunningProxy {
    start_with(host, addrs, policy, extra, &ProxyOptions::default()).await
}

/// [`start`] with `options`.
pub async fn start_with(
    host: Host,
    addrs: &[SocketAddr],
    policy: &str,
    extra: &[(&str, &str)],
    options: &ProxyOptions,
) -> RunningProxy {
    host.start(addrs, plugin_config(policy, addrs, 100, extra), options).await.unwrap()
}

/// The body of a reply that must be JSON (by its content type too).
pub fn json_error(reply: &prefixgate_tests::Reply) -> serde_json::Value {
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok());
    assert_eq!(content_type, Some("application/json"), "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

/// Prefix-cache hit tokens a replica reports.
pub async fn cache_hits(addr: SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("vllm:prefix_cache_hits_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each scenario runs a fleet and a proxy with two workers; on a small
/// machine they run one at a time so that no scenario starves another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test per host and scenario: `both` run on each host; the others
/// exercise what only one host has.
macro_rules! matrix {
    (
        both: [$($both:ident),* $(,)?],
        envoy_only: [$($envoy:ident),* $(,)?],
        prefixgate_only: [$($prefixgate:ident),* $(,)?] $(,)?
    ) => {
        mod envoy {
            on_host!(Envoy: $($both,)* $($envoy,)*);
        }
        mod prefixgate {
            on_host!(Prefixgate: $($both,)* $($prefixgate,)*);
        }
    };
}

/// A test per scenario, each run against `host` under the SERIAL lock.
macro_rules! on_host {
    ($host:ident: $($scenario:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let _serial = super::SERIAL.lock().await;
                super::$scenario(super::Host::$host).await;
            }
        )*
    };
}

matrix! {
    both: [
        // routing.rs
        prefix_groups_stay_on_one_replica_and_hit_its_cache,
        round_robin_cycles_and_pow2_spreads,
        scraped_load_steers_pow2_and_prefix_aware_away_from_a_busy_replica,
        one_poller_at_a_time_scrapes_the_replicas,
        bad_input_is_routed_and_a_client_cannot_pick_the_upstream,
        sse_streams_token_by_token_and_outlives_the_default_route_timeout,
        // failures.rs
        a_replica_failing_fast_is_ejected,
        a_replica_that_never_answers_is_retried_and_ejected,
        killed_replica_is_skipped_until_it_returns,
        no_healthy_replica_gets_a_json_503,
        a_fleet_at_its_cap_answers_a_json_429,
        // swap.rs: ECDS on Envoy, the admin API on prefixgate (which also
        // swaps the module and refuses a broken config and module)
        hot_swap_changes_policy_without_failed_requests,
        // metrics.rs: Envoy's /stats/prometheus, prefixgate's /metrics
        decisions_are_counted_by_policy_and_reason,
    ],
    envoy_only: [
        // envoy_only.rs: the shipped templates are Envoy configuration, and
        // their local_reply_config turns Envoy's own error replies into JSON.
        templates_validate,
        envoys_own_503_is_openai_shaped_json,
    ],
    prefixgate_only: [
        // prefixgate_only.rs: the VM pool's memory limit, the host's own
        // metric families and admin status, the binary's signals and restart.
        in_flight_counts_of_a_trapped_vm_heal,
        scraping_goes_on_through_a_module_swap,
        metrics_are_labelled_families_that_parse_and_lint,
        admin_status_says_unhealthy_as_soon_as_the_filter_skips_a_backend,
        sighup_reloads_the_config_file_and_a_bad_one_is_refused,
        sigterm_stops_it_and_a_restart_serves_on_the_same_ports,
    ],
}
