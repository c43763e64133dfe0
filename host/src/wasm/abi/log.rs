//! `proxy_log`, `proxy_get_log_level`, `proxy_get_current_time_nanoseconds`.

use super::mem::{read_string, write_u32, write_u64};
use super::status::OK;
use super::HostResult;
use crate::wasm::host_state::{HostState, Phase, STARTUP_ERROR_MAX};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::level_filters::LevelFilter;
use wasmtime::Caller;

/// Logs a message from the filter at the given proxy-wasm level.
pub fn proxy_log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> HostResult {
    let msg = read_string(&mut caller, ptr, len)?;
    emit(caller.data(), level, &msg);
    let state = caller.data_mut();
    if level >= 4 && state.phase != Phase::Normal {
        state.startup_error = Some(msg[..msg.floor_char_boundary(STARTUP_ERROR_MAX)].to_owned());
    }
    Ok(OK)
}

/// Emits a filter log line through `tracing` (target `filter`).
pub fn emit(state: &HostState, level: i32, msg: &str) {
    let plugin = state.plugin.name.as_str();
    match level {
        0 => tracing::trace!(target: "filter", plugin, "{msg}"),
        1 => tracing::debug!(target: "filter", plugin, "{msg}"),
        2 => tracing::info!(target: "filter", plugin, "{msg}"),
        3 => tracing::warn!(target: "filter", plugin, "{msg}"),
        _ => tracing::error!(target: "filter", plugin, "{msg}"),
    }
}

/// The host's log level as a `proxy_log_level_t`.
pub fn proxy_get_log_level(mut caller: Caller<'_, HostState>, ret: i32) -> HostResult {
    let level = match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    };
    write_u32(&mut caller, ret, level)?;
    Ok(OK)
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn proxy_get_current_time_nanoseconds(mut caller: Caller<'_, HostState>, ret: i32) -> HostResult {
    write_u64(&mut caller, ret, now_nanos())?;
    Ok(OK)
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
