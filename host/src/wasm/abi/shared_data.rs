//! `proxy_get_shared_data` / `proxy_set_shared_data` over the host-owned store.
//!
//! Keys and values are read in place from guest memory; a value read goes
//! through the VM's scratch buffer, so neither call allocates on the host.

use super::mem::{memory, return_bytes, slice, write_u32};
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
    let mem = memory(&mut caller)?;
    let mut value = std::mem::take(&mut caller.data_mut().scratch);
    let found =
        slice(mem.data(&caller), kp, kl).map(|key| caller.data().shared_data.get_into(key, &mut value));
    let status = match found {
        Ok(Some(cas)) => return_bytes(&mut caller, &value, ret_ptr, ret_len)
            .and_then(|()| write_u32(&mut caller, ret_cas, cas))
            .map(|()| OK),
        Ok(None) => Ok(NOT_FOUND),
        Err(e) => Err(e),
    };
    caller.data_mut().scratch = value;
    status
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
    let mem = memory(&mut caller)?;
    let data = mem.data(&caller);
    let (key, value) = (slice(data, kp, kl)?, slice(data, vp, vl)?);
    Ok(match caller.data().shared_data.set(key, value, cas as u32) {
        SetOutcome::Stored => OK,
        SetOutcome::CasMismatch => CAS_MISMATCH,
    })
}
