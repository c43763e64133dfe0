//! `proxy_get_shared_data` / `proxy_set_shared_data` over the host-owned store.

use super::mem::{read, return_bytes, write_u32};
use super::status::{CAS_MISMATCH, NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use crate::wasm::shared_data::SetOutcome;
use wasmtime::Caller;

/// Reads a key: OK with value and cas, or NOT_FOUND.
pub fn proxy_get_shared_data(
    mut caller: Caller<'_, HostState>,
    kp: i32,
    kl: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> HostResult {
    let key = read(&mut caller, kp, kl)?;
    let state = caller.data();
    let Some((value, cas)) = state.shared.data.get(&state.plugin.vm_id, &key) else {
        return Ok(NOT_FOUND);
    };
    return_bytes(&mut caller, &value, ret_ptr, ret_len)?;
    write_u32(&mut caller, ret_cas, cas)?;
    Ok(OK)
}

/// Writes a key: OK, or CAS_MISMATCH when `cas` is non-zero and stale.
pub fn proxy_set_shared_data(
    mut caller: Caller<'_, HostState>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    cas: i32,
) -> HostResult {
    let key = read(&mut caller, kp, kl)?;
    let value = read(&mut caller, vp, vl)?;
    let state = caller.data();
    Ok(match state.shared.data.set(&state.plugin.vm_id, &key, &value, cas as u32) {
        SetOutcome::Stored => OK,
        SetOutcome::CasMismatch => CAS_MISMATCH,
    })
}
