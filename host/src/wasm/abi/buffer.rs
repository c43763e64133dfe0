//! Buffers: request/response bodies, the callout response body and the VM and
//! plugin configurations.

use super::mem::{guest_alloc, memory, read, return_bytes, u, write_u32};
use super::status::{NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use wasmtime::Caller;

/// A copy of a slice of buffer `buf_type`, or `None` if it is unavailable.
fn buffer(state: &mut HostState, buf_type: i32) -> Option<&[u8]> {
    match buf_type {
        0 => state.effective_http().map(|c| c.request_body.as_slice()),
        1 => state.effective_http().map(|c| c.response_body.as_slice()),
        4 => state.call_response.as_ref().map(|r| r.body.as_slice()),
        6 => Some(state.plugin.vm_config.as_slice()),
        7 => Some(state.plugin.plugin_config.as_slice()),
        _ => None,
    }
}

fn buffer_mut(state: &mut HostState, buf_type: i32) -> Option<&mut Vec<u8>> {
    match buf_type {
        0 => state.effective_http().map(|c| &mut c.request_body),
        1 => state.effective_http().map(|c| &mut c.response_body),
        4 => state.call_response.as_mut().map(|r| &mut r.body),
        _ => None,
    }
}

/// Reads `[start, start + max_size)` of a buffer, clamped to its length
/// (the SDK asks for the configurations with `max_size = usize::MAX`).
pub fn proxy_get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buf_type: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    let Some(buf) = buffer(caller.data_mut(), buf_type) else {
        return Ok(NOT_FOUND);
    };
    let begin = u(start).min(buf.len());
    let end = begin.saturating_add(u(max_size)).min(buf.len());
    if end == begin {
        return_bytes(&mut caller, &[], ret_ptr, ret_len)?;
        return Ok(OK);
    }
    // A request body can be megabytes, read inside the callback's
    // deadline: copied once, from the host's buffer straight into the
    // guest's allocation.
    let len = i32::try_from(end - begin).map_err(|_| wasmtime::Error::msg("value too large for guest"))?;
    let ptr = guest_alloc(&mut caller, len)?;
    let mem = memory(&mut caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let src = buffer(state, buf_type).and_then(|b| b.get(begin..end));
    let dst = u(ptr).checked_add(end - begin).and_then(|stop| data.get_mut(u(ptr)..stop));
    match (src, dst) {
        (Some(src), Some(dst)) => dst.copy_from_slice(src),
        _ => return Err(wasmtime::Error::msg("guest pointer out of bounds")),
    }
    write_u32(&mut caller, ret_ptr, ptr as u32)?;
    write_u32(&mut caller, ret_len, len as u32)?;
    Ok(OK)
}

/// Replaces `[start, start + size)` of a buffer with new bytes
/// (`start = size = 0` prepends; `start ≥ len` appends).
pub fn proxy_set_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    buf_type: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> HostResult {
    let data = read(&mut caller, ptr, len)?;
    if let Some(buf) = buffer_mut(caller.data_mut(), buf_type) {
        splice(buf, u(start), u(size), &data);
    }
    // The SDK accepts only OK here; an unavailable buffer is ignored.
    Ok(OK)
}

/// The buffer edit of `proxy_set_buffer_bytes`.
pub fn splice(buf: &mut Vec<u8>, start: usize, size: usize, data: &[u8]) {
    let begin = start.min(buf.len());
    let end = begin.saturating_add(size).min(buf.len());
    buf.splice(begin..end, data.iter().copied());
}

/// Length and flags of a buffer.
pub fn proxy_get_buffer_status(
    mut caller: Caller<'_, HostState>,
    buf_type: i32,
    ret_len: i32,
    ret_flags: i32,
) -> HostResult {
    let Some(len) = buffer(caller.data_mut(), buf_type).map(<[u8]>::len) else {
        return Ok(NOT_FOUND);
    };
    write_u32(&mut caller, ret_len, len as u32)?;
    write_u32(&mut caller, ret_flags, 0)?;
    Ok(OK)
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn splice_rules() {
        let mut b = b"hello".to_vec();
        splice(&mut b, 0, 0, b">");
        assert_eq!(b, b">hello");
        splice(&mut b, 99, 0, b"<");
        assert_eq!(b, b">hello<");
        splice(&mut b, 1, 5, b"HI");
        assert_eq!(b, b">HI<");
        splice(&mut b, 0, usize::MAX, b"all");
        assert_eq!(b, b"all");
    }
}
