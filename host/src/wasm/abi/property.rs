//! Properties (`proxy_get_property` / `proxy_set_property`). Path segments
//! arrive NUL-separated and are looked up joined with dots.
//!
//! Supported: `request.path`, `request.url_path`, `request.method`,
//! `request.host`, `request.scheme`, `request.protocol`, `request.id`,
//! `request.headers` (a serialized map), `source.address`, `source.port`,
//! `destination.address`, `upstream.address` (once known), `response.code`
//! (once known; int64 little-endian, as Envoy), `plugin_name`,
//! `plugin_root_id`, `plugin_vm_id`, and anything the filter set itself.

use super::header_map::{get, serialize};
use super::mem::{read, return_bytes};
use super::status::{NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use wasmtime::Caller;

fn dotted(path: &[u8]) -> String {
    String::from_utf8_lossy(path).replace('\0', ".")
}

/// Looks a property up for the effective context.
pub fn lookup(state: &mut HostState, path: &str) -> Option<Vec<u8>> {
    match path {
        "plugin_name" => return Some(state.plugin.name.as_bytes().to_vec()),
        "plugin_root_id" => return Some(state.plugin.root_id.as_bytes().to_vec()),
        "plugin_vm_id" => return Some(state.plugin.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let ctx = state.effective_http()?;
    if let Some(v) = ctx.properties.get(path) {
        return Some(v.clone());
    }
    let h = &ctx.request_headers;
    let value = match path {
        "request.path" => get(h, b":path")?.to_vec(),
        "request.url_path" => {
            let p = get(h, b":path")?;
            p.split(|b| *b == b'?').next().unwrap_or(p).to_vec()
        }
        "request.method" => get(h, b":method")?.to_vec(),
        "request.host" => get(h, b":authority")?.to_vec(),
        "request.scheme" => get(h, b":scheme")?.to_vec(),
        "request.id" => get(h, b"x-request-id")?.to_vec(),
        "request.headers" => serialize(&h.iter().filter(|(k, _)| !k.starts_with(b":")).cloned().collect()),
        "response.code" => {
            let code: i64 =
                std::str::from_utf8(get(&ctx.response_headers, b":status")?).ok()?.parse().ok()?;
            code.to_le_bytes().to_vec()
        }
        _ => return None,
    };
    Some(value)
}

/// Reads a property: OK or NOT_FOUND.
pub fn proxy_get_property(
    mut caller: Caller<'_, HostState>,
    pp: i32,
    pl: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let path = dotted(&read(&mut caller, pp, pl)?);
    match lookup(caller.data_mut(), &path) {
        Some(v) => {
            return_bytes(&mut caller, &v, ret_ptr, ret_len)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

/// Sets a property on the effective HTTP context (OK; ignored elsewhere, as
/// the SDK accepts no other status).
pub fn proxy_set_property(
    mut caller: Caller<'_, HostState>,
    pp: i32,
    pl: i32,
    vp: i32,
    vl: i32,
) -> HostResult {
    let path = dotted(&read(&mut caller, pp, pl)?);
    let value = read(&mut caller, vp, vl)?;
    if let Some(ctx) = caller.data_mut().effective_http() {
        ctx.properties.insert(path, value);
    }
    Ok(OK)
}
