//! What only Envoy has: its configuration files and its own error replies.

use super::json_error;
use prefixgate_launch::Locate as _;
use prefixgate_tests::client::Client;
use prefixgate_tests::envoy::plugin_config;
use prefixgate_tests::fleet::start_fleet;
use prefixgate_tests::{Envoy, EnvoyMode, Host};

/// The annotated templates in `envoy/` are valid Envoy 1.40 configuration
/// (with the module path pointed at the built module).
pub async fn templates_validate(host: Host) {
    assert_eq!(host, Host::Envoy);
    let root = prefixgate_launch::binary::workspace_root();
    let envoy = prefixgate_launch::EnvoyProcess::locate(None).unwrap();
    let wasm = prefixgate_launch::FILTER_MODULE.locate_or_build().unwrap();
    let dir = prefixgate_tests::envoy::fresh_dir("validate").unwrap();
    let ecds = dir.join("prefixgate.yaml");
    let resource = std::fs::read_to_string(root.join("envoy/ecds/prefixgate.yaml")).unwrap();
    std::fs::write(&ecds, resource.replace("/etc/envoy/ecds/prefixgate-v2.wasm", &wasm.to_string_lossy()))
        .unwrap();
    for name in ["envoy.yaml", "envoy-ecds.yaml"] {
        let text = std::fs::read_to_string(root.join("envoy").join(name)).unwrap();
        let text = text
            .replace("/etc/envoy/prefixgate.wasm", &wasm.to_string_lossy())
            .replace("/etc/envoy/ecds/prefixgate.yaml", &ecds.to_string_lossy());
        let config = dir.join(name);
        std::fs::write(&config, text).unwrap();
        let out = tokio::process::Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{name} does not validate:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With scraping off the filter takes both (stopped) replicas for healthy
/// and routes to one; Envoy's connect failure, after its retry on the
/// other, is its own 503, which the template's local_reply_config turns
/// into `{"error":{"message","type","param","code"}}`, as prefixgate's own
/// replies are.
pub async fn envoys_own_503_is_openai_shaped_json(host: Host) {
    assert_eq!(host, Host::Envoy);
    let mut fleet = start_fleet(2, 50.0).await.unwrap();
    let addrs = fleet.addrs();
    let envoy =
        Envoy::start(&addrs, EnvoyMode::Filter(plugin_config("round_robin", &addrs, 0, &[]))).await.unwrap();
    fleet.stop_replica(0).await.unwrap();
    fleet.stop_replica(1).await.unwrap();
    let client = Client::new(envoy.base_url()).unwrap();
    let reply = client.completion("anyone there?", 1).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    let body = json_error(&reply);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("upstream connect error"), "Envoy's own text: {body}");
    assert_eq!(body["error"]["type"], "ServiceUnavailableError", "{body}");
    assert_eq!(body["error"]["code"], 503, "{body}");
    assert!(body["error"]["param"].is_null(), "{body}");
    drop(envoy);
    fleet.shutdown().await;
}
