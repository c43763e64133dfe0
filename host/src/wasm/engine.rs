//! The process-wide wasmtime engine and linker, with an epoch ticker that
//! bounds the time of every callback.

use super::abi::table;
use super::host_state::HostState;
use super::vm::Trap;
use std::time::Duration;
use wasmtime::{Config, Engine, Linker};

/// Granularity of callback deadlines: a deadline of *d* fires between *d*
/// and *d* + 5 ms. The ticker thread wakes this often for the life of the
/// process, so a finer tick costs CPU on every idle core.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Errors from the wasm layer. `Display` says what failed; the cause is
/// the `source`.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The engine could not be created.
    #[error("wasm engine")]
    Engine(#[source] wasmtime::Error),
    /// The epoch ticker thread could not be started.
    #[error("wasm engine: starting the epoch ticker")]
    Ticker(#[source] std::io::Error),
    /// The module is empty.
    #[error("module refused: empty module")]
    Empty,
    /// The module exports no proxy-wasm ABI version marker.
    #[error("module refused: not a proxy-wasm filter: no proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0 export")]
    NotProxyWasm,
    /// The bytes are not a WebAssembly binary (no `\0asm` magic), e.g. a
    /// text file or a `.wat`.
    #[error("module refused: not a WebAssembly binary: it starts with \"{}\", not \"\\0asm\"", .head.escape_ascii())]
    NotWasm {
        /// Its first bytes.
        head: Vec<u8>,
    },
    /// The module did not compile or link.
    #[error("module refused")]
    Compile(#[source] wasmtime::Error),
    /// Instantiation failed.
    #[error("module instantiation failed")]
    Instantiate(#[source] wasmtime::Error),
    /// A start-up function (`_initialize`, `_start`, `main`) trapped.
    #[error("module instantiation failed in {0}")]
    Init(&'static str, #[source] wasmtime::Error),
    /// The root context's `proxy_on_context_create` trapped.
    #[error("module instantiation failed in proxy_on_context_create")]
    RootContext(#[source] Trap),
    /// `proxy_on_vm_start` returned false (no source) or trapped.
    #[error("proxy_on_vm_start refused the VM configuration{}", filter_said(.said))]
    VmStart {
        /// The last error the filter logged meanwhile.
        said: Option<String>,
        /// The trap, if it trapped.
        #[source]
        trap: Option<Trap>,
    },
    /// `proxy_on_configure` returned false (no source) or trapped.
    #[error("proxy_on_configure refused the plugin configuration{}", filter_said(.said))]
    Configure {
        /// The last error the filter logged meanwhile (it names the field).
        said: Option<String>,
        /// The trap, if it trapped.
        #[source]
        trap: Option<Trap>,
    },
}

/// `": <what the filter said>"`, or nothing.
fn filter_said(said: &Option<String>) -> String {
    said.as_deref().map(|s| format!(": the filter said: {s}")).unwrap_or_default()
}

/// Engine + linker, shared by every module version.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
}

impl WasmEngine {
    /// Creates the engine (epoch interruption on) and starts its ticker.
    pub fn new() -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(WasmError::Engine)?;
        let mut linker = Linker::new(&engine);
        table::register(&mut linker).map_err(WasmError::Engine)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(WasmError::Ticker)?;
        Ok(Self { engine, linker })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A copy of the linker with every host function registered.
    pub fn linker(&self) -> Linker<HostState> {
        self.linker.clone()
    }

    /// Epoch ticks for a deadline: whole ticks covering it plus one, so a
    /// tick that lands right after the deadline is set cannot cut a callback
    /// short.
    pub fn ticks(deadline: Duration) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        u64::try_from(deadline.as_micros().div_ceil(tick).max(1)).unwrap_or(u64::MAX - 1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_never_fires_early() {
        for ms in [0u64, 1, 5, 7, 20, 500] {
            let ticks = WasmEngine::ticks(Duration::from_millis(ms));
            // The first tick may come at once: `ticks - 1` whole ticks are
            // certain to elapse before the callback is cut.
            let earliest = EPOCH_TICK * (ticks - 1) as u32;
            assert!(earliest >= Duration::from_millis(ms), "{ms} ms: {ticks} ticks");
            assert!(earliest < Duration::from_millis(ms) + EPOCH_TICK.max(Duration::from_millis(1)) * 2);
        }
    }
}
