//! Stream control (`continue_stream`, `close_stream`, `send_local_response`),
//! the effective context, `proxy_done`, `proxy_get_status` and the foreign
//! function entry point. Stream actions are deferred until the callback
//! returns.

use super::header_map::deserialize;
use super::mem::{read, read_string, write_u32};
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use crate::wasm::{CtxEvent, LocalResponse};
use wasmtime::Caller;

fn defer(state: &mut HostState, event: CtxEvent) {
    let ctx = state.effective;
    state.deferred.push((ctx, event));
}

/// Resumes a paused stream (0: request, 1: response).
pub fn proxy_continue_stream(mut caller: Caller<'_, HostState>, stream: i32) -> HostResult {
    match stream {
        0 => defer(caller.data_mut(), CtxEvent::ContinueRequest),
        1 => defer(caller.data_mut(), CtxEvent::ContinueResponse),
        _ => {}
    }
    Ok(OK)
}

/// ABI 0.1.0 `proxy_continue_request`.
pub fn proxy_continue_request(mut caller: Caller<'_, HostState>) -> HostResult {
    defer(caller.data_mut(), CtxEvent::ContinueRequest);
    Ok(OK)
}

/// ABI 0.1.0 `proxy_continue_response`.
pub fn proxy_continue_response(mut caller: Caller<'_, HostState>) -> HostResult {
    defer(caller.data_mut(), CtxEvent::ContinueResponse);
    Ok(OK)
}

/// Resets the stream.
pub fn proxy_close_stream(mut caller: Caller<'_, HostState>, _stream: i32) -> HostResult {
    defer(caller.data_mut(), CtxEvent::Close);
    Ok(OK)
}

/// Answers the request from the filter.
#[allow(clippy::too_many_arguments)]
pub fn proxy_send_local_response(
    mut caller: Caller<'_, HostState>,
    status: i32,
    dp: i32,
    dl: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    _grpc_status: i32,
) -> HostResult {
    let details = read_string(&mut caller, dp, dl)?;
    let body = read(&mut caller, bp, bl)?;
    let headers = deserialize(&read(&mut caller, hp, hl)?)
        .ok_or_else(|| wasmtime::Error::msg("malformed header map"))?;
    let status = u16::try_from(status).ok().filter(|s| (100..1000).contains(s)).unwrap_or(500);
    defer(caller.data_mut(), CtxEvent::LocalResponse(LocalResponse { status, headers, body, details }));
    Ok(OK)
}

/// Makes hostcalls act on another context (the SDK does this on callouts).
pub fn proxy_set_effective_context(mut caller: Caller<'_, HostState>, ctx: i32) -> HostResult {
    let state = caller.data_mut();
    let ctx = ctx as u32;
    if ctx == state.root_id || state.contexts.contains_key(&ctx) {
        state.effective = ctx;
        Ok(OK)
    } else {
        Ok(BAD_ARGUMENT)
    }
}

/// Deferred deletion is not used by this host: always OK.
pub fn proxy_done(_caller: Caller<'_, HostState>) -> HostResult {
    Ok(OK)
}

/// gRPC status of the last call: always 0 with no message.
pub fn proxy_get_status(
    mut caller: Caller<'_, HostState>,
    ret_code: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    write_u32(&mut caller, ret_code, 0)?;
    write_u32(&mut caller, ret_ptr, 0)?;
    write_u32(&mut caller, ret_len, 0)?;
    Ok(OK)
}

/// No foreign functions are registered.
pub fn proxy_call_foreign_function(
    _caller: Caller<'_, HostState>,
    _np: i32,
    _nl: i32,
    _ap: i32,
    _al: i32,
    _rp: i32,
    _rl: i32,
) -> HostResult {
    Ok(NOT_FOUND)
}
