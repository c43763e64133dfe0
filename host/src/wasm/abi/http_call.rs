//! `proxy_http_call`: validates the call, resolves the cluster to one
//! configured backend and queues the call; it is started once the callback
//! returns and answered through `proxy_on_http_call_response`.

use super::header_map::{deserialize, get};
use super::mem::{read, read_string, write_u32};
use super::status::{BAD_ARGUMENT, OK};
use super::HostResult;
use crate::wasm::host_state::{HostState, PendingCall, SlotEvent};
use std::time::Duration;
use wasmtime::Caller;

/// Dispatches an HTTP call; BAD_ARGUMENT for a malformed call or a target
/// that is not a configured backend.
#[allow(clippy::too_many_arguments)]
pub fn proxy_http_call(
    mut caller: Caller<'_, HostState>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> HostResult {
    let cluster = read_string(&mut caller, up, ul)?;
    let headers = deserialize(&read(&mut caller, hp, hl)?);
    let body = read(&mut caller, bp, bl)?;
    let _trailers = read(&mut caller, tp, tl)?;
    let Some(headers) = headers else {
        return Ok(BAD_ARGUMENT);
    };
    if [&b":method"[..], b":path", b":authority"].iter().any(|k| get(&headers, k).is_none()) {
        return Ok(BAD_ARGUMENT);
    }
    let Some(target) = caller.data().resolver.resolve(&cluster, &headers) else {
        tracing::debug!(cluster, "http call to an unknown cluster or backend refused");
        return Ok(BAD_ARGUMENT);
    };
    let state = caller.data_mut();
    state.next_token = state.next_token.wrapping_add(1).max(1);
    let token = state.next_token;
    let timeout = (timeout_ms != 0).then(|| Duration::from_millis(timeout_ms as u32 as u64));
    let generation = state.generation;
    let _ = state.slot_tx.send(SlotEvent::StartCall(PendingCall {
        token,
        target,
        headers,
        body,
        timeout,
        generation,
    }));
    write_u32(&mut caller, ret_token, token)?;
    Ok(OK)
}
