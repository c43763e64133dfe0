//! The proxy-wasm side of the filter: the only module that touches the SDK.
//!
//! `root` parses the configuration and polls the backends' `/metrics`;
//! `http` routes each request at the end of its body.

mod host_store;
mod http;
mod metrics;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::FilterRoot::new(context_id)));
}}

/// Host time in milliseconds since the Unix epoch.
fn now_ms(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Logs through the host; logging failures are ignored.
fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
}
