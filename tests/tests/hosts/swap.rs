//! Hot swap under load, as each host offers it.

use super::{start_with, FAST};
use prefixgate_launch::Locate as _;
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::module_variant::variant;
use prefixgate_tests::scenarios::{eventually, prompt, routed_to, SwapLoad};
use prefixgate_tests::{Host, Prefixgate, Proxy, ProxyOptions};
use std::time::Duration;

/// pow2 → prefix_aware while four connections keep sending: no request
/// fails, the new policy decides, and the prefix index survives the swap.
/// Envoy takes the new configuration through ECDS; prefixgate through its
/// admin API, where the scenario also swaps the module and has a broken
/// configuration and a broken module refused while the load runs.
pub async fn hot_swap_changes_policy_without_failed_requests(host: Host) {
    let fleet = start_fleet(3, FAST).await.unwrap();
    let addrs = fleet.addrs();
    let options = ProxyOptions { hot_swap: true, ..ProxyOptions::default() };
    let mut proxy = start_with(host, &addrs, "pow2", &[], &options).await;
    let client = Client::new(proxy.base_url()).unwrap();

    // A prompt routed by pow2 is recorded in the shared index.
    let warm = prompt("warm-before-swap", 2_000);
    let before = client.completion(&format!("{warm} first"), 2).await.unwrap();
    assert_eq!(before.reason(), Some("pow2"));
    let warm_backend = routed_to(&before, &addrs);

    // Bounded load on four connections while the rollout happens.
    let load = SwapLoad::start(&client, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.swap_plugin_config(&plugin_config("prefix_aware", &addrs, 100, &[])).await.unwrap();
    if let Some(prefixgate) = proxy.prefixgate() {
        swap_module_and_refuse_broken_ones(prefixgate).await;
    }
    eventually(Duration::from_secs(20), "the prefix_aware rollout", || async {
        let reply = client.completion("which policy?", 1).await.unwrap();
        reply.decision.as_deref().is_some_and(|d| d.contains("policy=prefix_aware"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (total, after_swap) = load.finish("policy=prefix_aware").await;
    assert!(total > 20 && after_swap > 0, "{total} requests, {after_swap} after the swap");

    // The index survived the swap: the warm prompt still matches where it went.
    let again = client.completion(&format!("{warm} second"), 2).await.unwrap();
    assert_eq!(again.reason(), Some("prefix_match"), "{:?}", again.decision);
    assert_eq!(routed_to(&again, &addrs), warm_backend);
    if let Some(prefixgate) = proxy.prefixgate() {
        let status = prefixgate.admin_get("/admin/status").await.unwrap();
        assert!(status.contains("prefix_aware"), "status does not show the new config: {status}");
    }
    drop(proxy);
    fleet.shutdown().await;
}

/// Through prefixgate's admin API: a broken configuration is refused and the
/// current one keeps serving; a new module (the same filter with an extra
/// custom section, so a new sha256) is taken; a broken one is refused.
async fn swap_module_and_refuse_broken_ones(prefixgate: &Prefixgate) {
    let (status, answer) = prefixgate.admin_put("config", br#"{"backends": []}"#.to_vec()).await.unwrap();
    assert_eq!(status, 400, "an empty backend list was accepted: {answer}");
    let filter = std::fs::read(prefixgate_launch::FILTER_MODULE.locate_or_build().unwrap()).unwrap();
    let module = variant(&filter, "version 2");
    let (status, answer) = prefixgate.admin_put("module", module).await.unwrap();
    assert_eq!(status, 200, "module swap refused: {answer}");
    let (status, _) = prefixgate.admin_put("module", b"not wasm".to_vec()).await.unwrap();
    assert_eq!(status, 400, "a broken module was accepted");
}
