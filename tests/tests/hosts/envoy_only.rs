//! What only Envoy has: its configuration files.

use prefixgate_tests::Host;

/// The annotated templates in `envoy/` are valid Envoy 1.40 configuration
/// (with the module path pointed at the built module).
pub async fn templates_validate(host: Host) {
    assert_eq!(host, Host::Envoy);
    let root = prefixgate_tests::wasm::workspace_root();
    let envoy = prefixgate_tests::wasm::envoy_bin().unwrap();
    let wasm = prefixgate_tests::wasm::filter_wasm().unwrap();
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
