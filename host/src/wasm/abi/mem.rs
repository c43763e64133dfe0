//! Guest memory access: reads, writes and allocation through the guest's
//! allocator (called re-entrantly; the only re-entrant call the host makes).

use crate::wasm::host_state::HostState;
use wasmtime::{Caller, Memory};

/// The guest's exported memory.
pub fn memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    if let Some(m) = caller.data().memory {
        return Ok(m);
    }
    match caller.get_export("memory") {
        Some(wasmtime::Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("module exports no memory")),
    }
}

/// Converts a guest i32 pointer or length into a host `usize`.
pub fn u(v: i32) -> usize {
    v as u32 as usize
}

/// The `len` bytes at `ptr` in `data` (guest memory), checked against its end.
pub fn slice(data: &[u8], ptr: i32, len: i32) -> wasmtime::Result<&[u8]> {
    let (ptr, len) = (u(ptr), u(len));
    ptr.checked_add(len)
        .and_then(|end| data.get(ptr..end))
        .ok_or_else(|| wasmtime::Error::msg("guest pointer out of bounds"))
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    Ok(slice(mem.data(&*caller), ptr, len)?.to_vec())
}

/// Reads a guest string (lossy UTF-8).
pub fn read_string(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

/// Writes bytes at `ptr` in guest memory.
pub fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = memory(caller)?;
    mem.write(&mut *caller, u(ptr), bytes).map_err(|_| wasmtime::Error::msg("guest pointer out of bounds"))
}

/// Writes a little-endian u32 at `ptr`.
pub fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, v: u32) -> wasmtime::Result<()> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Writes a little-endian u64 at `ptr`.
pub fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, v: u64) -> wasmtime::Result<()> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Hands `bytes` to the guest: allocates with the guest allocator, copies,
/// and writes pointer and length to the return slots. Empty data is
/// returned as pointer 0 and length 0, which the Rust SDK maps to `None`
/// (and to an empty map), and which it requires for empty maps.
pub fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> wasmtime::Result<()> {
    if bytes.is_empty() {
        write_u32(caller, ret_ptr, 0)?;
        return write_u32(caller, ret_len, 0);
    }
    let len = i32::try_from(bytes.len()).map_err(|_| wasmtime::Error::msg("value too large for guest"))?;
    let ptr = guest_alloc(caller, len)?;
    write(caller, ptr, bytes)?;
    write_u32(caller, ret_ptr, ptr as u32)?;
    write_u32(caller, ret_len, len as u32)
}

/// Allocates `len` bytes with the guest's allocator.
pub fn guest_alloc(caller: &mut Caller<'_, HostState>, len: i32) -> wasmtime::Result<i32> {
    let alloc =
        caller.data().alloc.clone().ok_or_else(|| wasmtime::Error::msg("module exports no allocator"))?;
    match alloc.call(&mut *caller, len)? {
        0 => Err(wasmtime::Error::msg("guest allocator returned null")),
        ptr => Ok(ptr),
    }
}
