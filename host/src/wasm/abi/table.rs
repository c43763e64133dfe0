//! Registers every host function with the linker: the single table of
//! implemented imports. Imports a module declares beyond this table get
//! stubs from [`stub_unknown_imports`].

use super::*;
use crate::wasm::host_state::HostState;
use wasmtime::{Linker, Module, Val, ValType};

/// The WASI module name.
pub const WASI: &str = "wasi_snapshot_preview1";

/// Adds every implemented host function to `linker`.
pub fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let l = linker;
    l.func_wrap("env", "proxy_log", log::proxy_log)?;
    l.func_wrap("env", "proxy_get_log_level", log::proxy_get_log_level)?;
    l.func_wrap("env", "proxy_get_current_time_nanoseconds", log::proxy_get_current_time_nanoseconds)?;
    l.func_wrap("env", "proxy_set_tick_period_milliseconds", timer::proxy_set_tick_period_milliseconds)?;
    l.func_wrap("env", "proxy_get_buffer_bytes", buffer::proxy_get_buffer_bytes)?;
    l.func_wrap("env", "proxy_set_buffer_bytes", buffer::proxy_set_buffer_bytes)?;
    l.func_wrap("env", "proxy_get_buffer_status", buffer::proxy_get_buffer_status)?;
    l.func_wrap("env", "proxy_get_header_map_pairs", header_map::proxy_get_header_map_pairs)?;
    l.func_wrap("env", "proxy_set_header_map_pairs", header_map::proxy_set_header_map_pairs)?;
    l.func_wrap("env", "proxy_get_header_map_value", header_map::proxy_get_header_map_value)?;
    l.func_wrap("env", "proxy_add_header_map_value", header_map::proxy_add_header_map_value)?;
    l.func_wrap("env", "proxy_replace_header_map_value", header_map::proxy_replace_header_map_value)?;
    l.func_wrap("env", "proxy_remove_header_map_value", header_map::proxy_remove_header_map_value)?;
    l.func_wrap("env", "proxy_get_header_map_size", header_map::proxy_get_header_map_size)?;
    l.func_wrap("env", "proxy_get_property", property::proxy_get_property)?;
    l.func_wrap("env", "proxy_set_property", property::proxy_set_property)?;
    l.func_wrap("env", "proxy_continue_stream", stream::proxy_continue_stream)?;
    l.func_wrap("env", "proxy_continue_request", stream::proxy_continue_request)?;
    l.func_wrap("env", "proxy_continue_response", stream::proxy_continue_response)?;
    l.func_wrap("env", "proxy_close_stream", stream::proxy_close_stream)?;
    l.func_wrap("env", "proxy_send_local_response", stream::proxy_send_local_response)?;
    l.func_wrap("env", "proxy_set_effective_context", stream::proxy_set_effective_context)?;
    l.func_wrap("env", "proxy_done", stream::proxy_done)?;
    l.func_wrap("env", "proxy_get_status", stream::proxy_get_status)?;
    l.func_wrap("env", "proxy_call_foreign_function", stream::proxy_call_foreign_function)?;
    l.func_wrap("env", "proxy_http_call", http_call::proxy_http_call)?;
    l.func_wrap("env", "proxy_get_shared_data", shared_data::proxy_get_shared_data)?;
    l.func_wrap("env", "proxy_set_shared_data", shared_data::proxy_set_shared_data)?;
    l.func_wrap("env", "proxy_register_shared_queue", shared_queue::proxy_register_shared_queue)?;
    l.func_wrap("env", "proxy_resolve_shared_queue", shared_queue::proxy_resolve_shared_queue)?;
    l.func_wrap("env", "proxy_enqueue_shared_queue", shared_queue::proxy_enqueue_shared_queue)?;
    l.func_wrap("env", "proxy_dequeue_shared_queue", shared_queue::proxy_dequeue_shared_queue)?;
    l.func_wrap("env", "proxy_define_metric", metric::proxy_define_metric)?;
    l.func_wrap("env", "proxy_increment_metric", metric::proxy_increment_metric)?;
    l.func_wrap("env", "proxy_record_metric", metric::proxy_record_metric)?;
    l.func_wrap("env", "proxy_get_metric", metric::proxy_get_metric)?;
    l.func_wrap(WASI, "fd_write", wasi::fd_write)?;
    l.func_wrap(WASI, "clock_time_get", wasi::clock_time_get)?;
    l.func_wrap(WASI, "random_get", wasi::random_get)?;
    l.func_wrap(WASI, "environ_sizes_get", wasi::environ_sizes_get)?;
    l.func_wrap(WASI, "environ_get", wasi::environ_get)?;
    l.func_wrap(WASI, "args_sizes_get", wasi::args_sizes_get)?;
    l.func_wrap(WASI, "args_get", wasi::args_get)?;
    l.func_wrap(WASI, "proc_exit", wasi::proc_exit)?;
    Ok(())
}

/// Defines the function imports of `module` missing from `linker`: a
/// proxy-wasm call returning one i32 answers UNIMPLEMENTED (gRPC calls, …),
/// a WASI call answers ENOSYS, anything else traps when called.
pub fn stub_unknown_imports(linker: &mut Linker<HostState>, module: &Module) -> wasmtime::Result<()> {
    const ENOSYS: i32 = 52;
    for import in module.imports() {
        let Some(ty) = import.ty().func().cloned() else { continue };
        let (m, name) = (import.module().to_string(), import.name().to_string());
        let results: Vec<ValType> = ty.results().collect();
        let answer = match (m.as_str(), results.as_slice()) {
            ("env", [ValType::I32]) => Some(status::UNIMPLEMENTED),
            (WASI, [ValType::I32]) => Some(ENOSYS),
            _ => None,
        };
        let label = format!("{m}.{name}");
        // Defining an import the table already provides fails (shadowing is
        // off): that is how implemented imports are skipped.
        let _already_defined = linker.func_new(&m, &name, ty, move |_caller, _params, out| match answer {
            Some(v) => {
                tracing::debug!(import = %label, "unsupported hostcall");
                out[0] = Val::I32(v);
                Ok(())
            }
            None => Err(wasmtime::Error::msg(format!("unsupported import {label} called"))),
        });
    }
    Ok(())
}
