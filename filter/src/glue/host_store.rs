//! [`SharedStore`] over proxy-wasm shared data: owned by the host, seen by
//! every VM with the same `vm_id`, and kept across module swaps.

use crate::store::{Cas, SharedStore, StoreError, Value};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use std::rc::Rc;

/// The host's shared data.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Value, Cas)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) if !bytes.is_empty() => Some((Rc::new(bytes), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Host { status: status as u32 }),
        }
    }
}
