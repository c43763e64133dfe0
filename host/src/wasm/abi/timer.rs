//! `proxy_set_tick_period_milliseconds`: one tick timer per root context,
//! driven by the VM slot's background task.

use super::status::OK;
use super::HostResult;
use crate::wasm::host_state::{HostState, SlotEvent};
use wasmtime::Caller;

/// Sets the tick period of the root context (0 disables it).
pub fn proxy_set_tick_period_milliseconds(mut caller: Caller<'_, HostState>, period: i32) -> HostResult {
    let state = caller.data_mut();
    state.tick_period_ms = period as u32;
    let _ = state.slot_tx.send(SlotEvent::TickChanged);
    Ok(OK)
}
