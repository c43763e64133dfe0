//! Shared queues: register, resolve, enqueue, dequeue.

use super::mem::{read, read_string, return_bytes, write_u32};
use super::status::{EMPTY, NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use wasmtime::Caller;

/// Registers a queue owned by this VM's root context.
pub fn proxy_register_shared_queue(
    mut caller: Caller<'_, HostState>,
    np: i32,
    nl: i32,
    ret_id: i32,
) -> HostResult {
    let name = read_string(&mut caller, np, nl)?;
    let s = caller.data_mut();
    let id = s.shared.queues.register(&s.plugin.vm_id, &name, s.slot_tx.clone(), s.root_id);
    if !s.queues_registered.contains(&name) {
        s.queues_registered.push(name);
    }
    write_u32(&mut caller, ret_id, id)?;
    Ok(OK)
}

/// Finds a queue by vm_id and name.
pub fn proxy_resolve_shared_queue(
    mut caller: Caller<'_, HostState>,
    vp: i32,
    vl: i32,
    np: i32,
    nl: i32,
    ret_id: i32,
) -> HostResult {
    let mut vm_id = read_string(&mut caller, vp, vl)?;
    let name = read_string(&mut caller, np, nl)?;
    if vm_id.is_empty() {
        vm_id = caller.data().plugin.vm_id.clone();
    }
    match caller.data().shared.queues.resolve(&vm_id, &name) {
        Some(id) => {
            write_u32(&mut caller, ret_id, id)?;
            Ok(OK)
        }
        None => Ok(NOT_FOUND),
    }
}

/// Appends an item: OK or NOT_FOUND.
pub fn proxy_enqueue_shared_queue(
    mut caller: Caller<'_, HostState>,
    id: i32,
    vp: i32,
    vl: i32,
) -> HostResult {
    let value = read(&mut caller, vp, vl)?;
    Ok(if caller.data().shared.queues.enqueue(id as u32, value) { OK } else { NOT_FOUND })
}

/// Takes an item: OK, EMPTY or NOT_FOUND.
pub fn proxy_dequeue_shared_queue(
    mut caller: Caller<'_, HostState>,
    id: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult {
    match caller.data().shared.queues.dequeue(id as u32) {
        None => Ok(NOT_FOUND),
        Some(None) => Ok(EMPTY),
        Some(Some(item)) => {
            return_bytes(&mut caller, &item, ret_ptr, ret_len)?;
            Ok(OK)
        }
    }
}
