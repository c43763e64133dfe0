//! Metrics: define, increment, record, get.

use super::mem::{read_string, write_u32, write_u64};
use super::status::{BAD_ARGUMENT, NOT_FOUND, OK};
use super::HostResult;
use crate::wasm::host_state::HostState;
use crate::wasm::metrics::{MetricError, MetricKind};
use wasmtime::Caller;

fn status(r: Result<(), MetricError>) -> i32 {
    match r {
        Ok(()) => OK,
        Err(MetricError::NotFound) => NOT_FOUND,
        Err(MetricError::BadArgument) => BAD_ARGUMENT,
    }
}

/// Defines a metric and returns its id.
pub fn proxy_define_metric(
    mut caller: Caller<'_, HostState>,
    kind: i32,
    np: i32,
    nl: i32,
    ret_id: i32,
) -> HostResult {
    let name = read_string(&mut caller, np, nl)?;
    let Some(kind) = MetricKind::from_abi(kind) else {
        return Ok(BAD_ARGUMENT);
    };
    let id = caller.data().shared.metrics.define(kind, &name);
    write_u32(&mut caller, ret_id, id)?;
    Ok(OK)
}

/// Adds to a counter or gauge.
pub fn proxy_increment_metric(caller: Caller<'_, HostState>, id: i32, delta: i64) -> HostResult {
    Ok(status(caller.data().shared.metrics.increment(id as u32, delta)))
}

/// Sets a gauge or counter, or records a histogram sample.
pub fn proxy_record_metric(caller: Caller<'_, HostState>, id: i32, value: i64) -> HostResult {
    Ok(status(caller.data().shared.metrics.record(id as u32, value)))
}

/// Reads a counter or gauge.
pub fn proxy_get_metric(mut caller: Caller<'_, HostState>, id: i32, ret: i32) -> HostResult {
    match caller.data().shared.metrics.get(id as u32) {
        Ok(v) => {
            write_u64(&mut caller, ret, v as u64)?;
            Ok(OK)
        }
        Err(e) => Ok(status(Err(e))),
    }
}
