//! Checks on the built `.wasm`: small, and importing nothing a proxy-wasm host
//! (Envoy or prefixgate) does not provide.
//!
//! The module comes from `$PREFIXGATE_FILTER_WASM` (set by `cargo xtask test`),
//! or is built here for `wasm32-wasip1` into a separate target directory, by
//! the same build the host's build script uses.

use prefixgate_filter_module::FILTER_MODULE;
use std::path::{Path, PathBuf};
use wasmparser::{Parser, Payload, TypeRef};

/// Functions of proxy-wasm ABI 0.2.1 (and 0.2.0) a host may be asked for.
const PROXY_WASM_ABI: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_header_map_size",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_status",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_call_foreign_function",
];

/// The WASI preview 1 functions a `wasm32-wasip1` filter may import.
const WASI: &[&str] =
    &["fd_write", "clock_time_get", "random_get", "environ_sizes_get", "environ_get", "proc_exit"];

/// Exports every host calls.
const REQUIRED_EXPORTS: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_response_headers",
    "proxy_on_http_call_response",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_delete",
];

fn module_path() -> PathBuf {
    if let Some(path) = FILTER_MODULE.prebuilt() {
        return path;
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("filter-wasm");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    FILTER_MODULE.build(workspace, &target).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn module_imports_only_the_proxy_wasm_abi_and_six_wasi_functions() {
    let path = module_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(bytes.len() < 1 << 20, "module is {} bytes, over 1 MiB", bytes.len());
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.expect("valid wasm") {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import.expect("valid import");
                    assert!(matches!(import.ty, TypeRef::Func(_)), "non-function import {}", import.name);
                    imports.push((import.module.to_owned(), import.name.to_owned()));
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    exports.push(export.expect("valid export").name.to_owned());
                }
            }
            _ => {}
        }
    }
    let unexpected: Vec<_> = imports
        .iter()
        .filter(|(module, name)| match module.as_str() {
            "env" => !PROXY_WASM_ABI.contains(&name.as_str()),
            "wasi_snapshot_preview1" => !WASI.contains(&name.as_str()),
            _ => true,
        })
        .collect();
    assert!(unexpected.is_empty(), "imports outside the allowed list: {unexpected:?}");
    assert!(imports.iter().any(|(_, n)| n == "proxy_get_shared_data"), "{imports:?}");
    let missing: Vec<_> = REQUIRED_EXPORTS.iter().filter(|e| !exports.iter().any(|x| x == *e)).collect();
    assert!(missing.is_empty(), "missing exports: {missing:?}");
}
