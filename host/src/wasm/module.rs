//! One compiled module version: wasmtime module, pre-linked instance and
//! sha256.

use super::abi::table;
use super::engine::{WasmEngine, WasmError};
use super::host_state::HostState;
use sha2::{Digest, Sha256};
use wasmtime::{InstancePre, Module};

/// The custom section describing a module's metric families.
pub const METRIC_HELP_SECTION: &str = "prometheus.help";

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
    /// The module's `prometheus.help` custom section, if it has one: the
    /// descriptions of its metric families (see [`crate::wasm::metrics`]).
    pub metric_help: Option<String>,
}

/// The UTF-8 content of the custom section `name` of a module, if any.
pub fn custom_section(bytes: &[u8], name: &str) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::CustomSection(section)) = payload {
            if section.name() == name {
                return std::str::from_utf8(section.data()).ok().map(str::to_owned);
            }
        }
    }
    None
}

impl ModuleVersion {
    /// Compiles and links `bytes`; refuses modules that are not proxy-wasm
    /// filters of ABI 0.2.x.
    pub fn compile(engine: &WasmEngine, bytes: &[u8]) -> Result<Self, WasmError> {
        if bytes.is_empty() {
            return Err(WasmError::Empty);
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(WasmError::NotWasm { head: bytes[..bytes.len().min(8)].to_vec() });
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
        let metric_help = custom_section(bytes, METRIC_HELP_SECTION);
        Ok(Self { sha256, size: bytes.len(), abi, instance_pre, metric_help })
    }
}
