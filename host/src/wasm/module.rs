//! One compiled module version: wasmtime module, pre-linked instance and
//! sha256.

use super::abi::table;
use super::engine::{WasmEngine, WasmError};
use super::host_state::HostState;
use sha2::{Digest, Sha256};
use wasmtime::{InstancePre, Module};

/// A compiled proxy-wasm module, ready to instantiate cheaply.
pub struct ModuleVersion {
    /// Hex sha256 of the module bytes.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: usize,
    /// The ABI version marker the module exports (`0_2_1` or `0_2_0`).
    pub abi: &'static str,
    /// Linked and type-checked, ready for a new store.
    pub instance_pre: InstancePre<HostState>,
}

impl ModuleVersion {
    /// Compiles and links `bytes`; refuses modules that are not proxy-wasm
    /// filters of ABI 0.2.x.
    pub fn compile(engine: &WasmEngine, bytes: &[u8]) -> Result<Self, WasmError> {
        if bytes.is_empty() {
            return Err(WasmError::Empty);
        }
        let module = Module::new(engine.engine(), bytes).map_err(WasmError::Compile)?;
        let abi = if module.get_export("proxy_abi_version_0_2_1").is_some() {
            "0_2_1"
        } else if module.get_export("proxy_abi_version_0_2_0").is_some() {
            "0_2_0"
        } else {
            return Err(WasmError::NotProxyWasm);
        };
        let mut linker = engine.linker();
        table::stub_unknown_imports(&mut linker, &module).map_err(WasmError::Compile)?;
        let instance_pre = linker.instantiate_pre(&module).map_err(WasmError::Compile)?;
        let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { sha256, size: bytes.len(), abi, instance_pre })
    }
}
