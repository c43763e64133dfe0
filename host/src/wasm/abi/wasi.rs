//! The WASI preview1 functions a `wasm32-wasip1` filter imports, provided
//! directly: `fd_write` (to the log), `clock_time_get`, `random_get`, an
//! empty environment and argument list, and `proc_exit` (a trap).

use super::log::{emit, now_nanos};
use super::mem::{memory, slice, u, write, write_u32, write_u64};
use super::HostResult;
use crate::wasm::host_state::HostState;
use rand::RngCore;
use std::time::Instant;
use wasmtime::Caller;

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const INVAL: i32 = 28;

/// Most bytes of one `fd_write` that reach the log.
const MAX_LOG_LINE: usize = 64 << 10;

/// Writes stdout (INFO) and stderr (ERROR) to the log.
pub fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    ret_n: i32,
) -> HostResult {
    if fd != 1 && fd != 2 {
        return Ok(BADF);
    }
    // Every iovec is bounds-checked in place, but at most MAX_LOG_LINE bytes
    // are copied: iovecs may all cover the whole memory, and copying them
    // would let one call make the host allocate without limit.
    let mem = memory(&mut caller)?;
    let data = mem.data(&caller);
    let mut text = Vec::new();
    let mut total: u64 = 0;
    for i in 0..u(iovs_len) {
        let at = u(iovs)
            .checked_add(i * 8)
            .and_then(|at| u32::try_from(at).ok())
            .ok_or_else(|| wasmtime::Error::msg("guest pointer out of bounds"))? as i32;
        let iov = slice(data, at, 8)?;
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let bytes = slice(data, ptr as i32, len as i32)?;
        total += u64::from(len);
        let room = MAX_LOG_LINE.saturating_sub(text.len());
        text.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    let Ok(n) = u32::try_from(total) else {
        return Ok(INVAL);
    };
    let msg = String::from_utf8_lossy(&text);
    emit(caller.data(), if fd == 1 { 2 } else { 4 }, msg.trim_end());
    write_u32(&mut caller, ret_n, n)?;
    Ok(SUCCESS)
}

/// Realtime (0) and monotonic (1) clocks, in nanoseconds.
pub fn clock_time_get(
    mut caller: Caller<'_, HostState>,
    clock: i32,
    _precision: i64,
    ret: i32,
) -> HostResult {
    let t = match clock {
        0 => now_nanos(),
        1 => monotonic_nanos(),
        _ => return Ok(INVAL),
    };
    write_u64(&mut caller, ret, t)?;
    Ok(SUCCESS)
}

fn monotonic_nanos() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Most bytes one `random_get` fills; a larger request is INVAL.
const MAX_RANDOM: usize = 1 << 20;

/// Fills a buffer with random bytes (std seeds its `HashMap`s from this);
/// INVAL for more than [`MAX_RANDOM`] bytes, which are never half-filled.
pub fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> HostResult {
    if u(len) > MAX_RANDOM {
        return Ok(INVAL);
    }
    let mut bytes = vec![0u8; u(len)];
    rand::rng().fill_bytes(&mut bytes);
    write(&mut caller, buf, &bytes)?;
    Ok(SUCCESS)
}

/// An empty environment (never the host's).
pub fn environ_sizes_get(mut caller: Caller<'_, HostState>, ret_count: i32, ret_size: i32) -> HostResult {
    write_u32(&mut caller, ret_count, 0)?;
    write_u32(&mut caller, ret_size, 0)?;
    Ok(SUCCESS)
}

/// Nothing to copy.
pub fn environ_get(_caller: Caller<'_, HostState>, _array: i32, _buf: i32) -> HostResult {
    Ok(SUCCESS)
}

/// No arguments.
pub fn args_sizes_get(caller: Caller<'_, HostState>, ret_count: i32, ret_size: i32) -> HostResult {
    environ_sizes_get(caller, ret_count, ret_size)
}

/// Nothing to copy.
pub fn args_get(_caller: Caller<'_, HostState>, _array: i32, _buf: i32) -> HostResult {
    Ok(SUCCESS)
}

/// Exiting the process is not allowed: trap.
pub fn proc_exit(_caller: Caller<'_, HostState>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!("filter called proc_exit({code})")))
}
