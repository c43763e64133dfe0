//! The prefix index's replay (`prefixgate-replay`'s trace, as in the filter's
//! `replay` bench) through the filter module in this host: every decision is
//! a real HTTP context in a wasmtime VM (`on_request_headers`, then
//! `on_request_body` with the JSON body, then `on_done`/`on_log`), with the
//! proxy-wasm shared-data calls answered by the host's own shared data.
//!
//! Both runs share the host's clock (the module reads the wall clock), so
//! the same trace is also decided natively on the host's shared data (the
//! filter's router called directly, the prompt read from the same body),
//! in the same process: the ratio is what the module and its host calls
//! cost. Each run starts from an index warmed natively with the trace's
//! first prompts, their times ending at the start of the run.
//!
//! `cargo bench -p prefixgate --bench replay [-- --warm N --measured N]`; with
//! `PREFIXGATE_FILTER_WASM` set when it runs, the module is read from that file
//! (another build of this tree's filter: the index is warmed by this tree's
//! native code, so its layout and keys must be the module's).

use prefixgate::app::EMBEDDED_FILTER;
use prefixgate::upstream::Backends;
use prefixgate::wasm::engine::WasmEngine;
use prefixgate::wasm::host_state::{HostShared, PluginInfo};
use prefixgate::wasm::module::ModuleVersion;
use prefixgate::wasm::shared_data::{Namespace, SetOutcome};
use prefixgate::wasm::vm::{Vm, VmEnv, VmLimits};
use prefixgate_filter::config::BackendConfig;
use prefixgate_filter::prompt::extract_prompt;
use prefixgate_filter::store::{Cas, SharedStore, StoreError, Value};
use prefixgate_filter::{FilterConfig, Router};
use prefixgate_replay::{BenchArgs, Timings, Trace, TraceShape, Turn};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BACKENDS: usize = 8;
const VM_ID: &str = "prefixgate";
const PATH: &str = "/v1/completions";

/// The host's shared data as the native router's store.
struct HostStore(Arc<Namespace>);

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Value, Cas)> {
        self.0.get(key.as_bytes()).filter(|(v, _)| !v.is_empty()).map(|(v, c)| (std::rc::Rc::new(v), c))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), StoreError> {
        match self.0.set(key.as_bytes(), value, cas.unwrap_or(0)) {
            SetOutcome::Stored => Ok(()),
            SetOutcome::CasMismatch => Err(StoreError::CasMismatch),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn body(prompt: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"model": "m", "prompt": prompt, "max_tokens": 1}))
        .unwrap_or_default()
}

fn config(names: &[String]) -> FilterConfig {
    let mut config = FilterConfig::new(names.iter().cloned().map(BackendConfig::Address).collect());
    // No poller: every backend is healthy and its load is the in-flight count.
    config.scrape_interval_ms = 0;
    if let Err(e) = config.validate() {
        panic!("replay config: {e}");
    }
    config
}

/// A fresh shared-data store holding the index after the trace's first
/// `warm` prompts, decided natively with their times ending now; returns it
/// with the rest of the trace.
fn warmed(names: &[String], warm: usize, measured: usize) -> (Arc<HostShared>, Vec<Turn>) {
    let shared = Arc::new(HostShared {
        data: Default::default(),
        queues: Default::default(),
        metrics: Default::default(),
    });
    let store = HostStore(shared.data.namespace(VM_ID));
    let router = Router::new(config(names));
    router.on_configure(&store);
    let mut trace = Trace::new(TraceShape::default());
    let first: Vec<Turn> = trace.by_ref().take(warm).collect();
    let span = first.last().map_or(0, |t| t.time_ms);
    let start = now_ms().saturating_sub(span + 1);
    let mut rng = fastrand::Rng::with_seed(1);
    for turn in &first {
        if let Ok(d) = router.route(&store, Some(&turn.prompt), start + turn.time_ms, &mut rng) {
            router.finish(&store, &d.backend);
        }
    }
    (shared, trace.take(measured).collect())
}

fn headers(len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let pairs: [(&str, String); 6] = [
        (":method", "POST".into()),
        (":path", PATH.into()),
        (":authority", "prefixgate".into()),
        (":scheme", "http".into()),
        ("content-type", "application/json".into()),
        ("content-length", len.to_string()),
    ];
    pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes())).collect()
}

fn main() {
    let Some(args) = BenchArgs::selected("replay", &["--warm", "--measured"]) else {
        return;
    };
    // The module under test: the file PREFIXGATE_FILTER_WASM names at run
    // time (another build of the filter, compared on this host), else the
    // one embedded in this build.
    let module = match std::env::var_os("PREFIXGATE_FILTER_WASM") {
        Some(path) => std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading the filter module {}: {e}", path.to_string_lossy())),
        None => EMBEDDED_FILTER.to_vec(),
    };
    assert!(!module.is_empty(), "the routing filter was not embedded in this build");
    let warm = args.count("--warm", 100_000);
    let measured = args.count("--measured", 30_000);
    let names: Vec<String> = (0..BACKENDS).map(|i| format!("10.0.0.{}:8000", i + 1)).collect();
    println!("replay through the module: {warm} prompts indexed, then {measured} decisions over {BACKENDS} backends");

    // Native, on the host's shared data.
    let (shared, turns) = warmed(&names, warm, measured);
    let store = HostStore(shared.data.namespace(VM_ID));
    let router = Router::new(config(&names));
    let mut rng = fastrand::Rng::with_seed(2);
    let mut native = Timings::default();
    let mut reading = Timings::default();
    for turn in &turns {
        let body = body(&turn.prompt);
        let t = Instant::now();
        let prompt = extract_prompt(PATH, black_box(&body), router.config().max_prompt_chars);
        let read = t.elapsed();
        if let Ok(d) = router.route(&store, prompt.as_deref(), now_ms(), &mut rng) {
            router.finish(&store, &d.backend);
        }
        native.record(turn.prompt.len(), t.elapsed());
        reading.record(turn.prompt.len(), read);
    }
    println!("\nnative (prompt read from the body, route, finish), on the host's shared data:");
    print!("{native}");
    println!("\nof which reading the prompt from the JSON body:");
    print!("{reading}");

    // The module, on a store warmed the same way.
    let (shared, turns) = warmed(&names, warm, measured);
    let engine = match WasmEngine::new() {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    };
    let version = match ModuleVersion::compile(&engine, &module) {
        Ok(v) => v,
        Err(e) => panic!("compiling the embedded filter: {e}"),
    };
    let plugin_config = serde_json::to_vec(&config(&names)).unwrap_or_default();
    let resolver = match Backends::new(&names, &BTreeMap::new()) {
        Ok(b) => Arc::new(b),
        Err(e) => panic!("backends: {e}"),
    };
    let env = VmEnv {
        shared: shared.clone(),
        plugin: Arc::new(PluginInfo {
            name: "prefixgate".into(),
            root_id: String::new(),
            vm_id: VM_ID.into(),
            vm_config: Vec::new(),
            plugin_config,
        }),
        resolver,
        limits: VmLimits {
            callback_deadline: Duration::from_secs(1),
            start_deadline: Duration::from_secs(10),
            memory_bytes: 256 << 20,
        },
    };
    let (slot_tx, _slot_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut vm = match Vm::start(&version, &env, slot_tx, 0) {
        Ok(vm) => vm,
        Err(e) => panic!("starting the filter: {e}"),
    };
    let mut module = Timings::default();
    let mut whole = Timings::default();
    let mut routed = 0;
    let upstream_header = config(&names).upstream_header;
    for turn in &turns {
        let body = body(&turn.prompt);
        let headers = headers(body.len());
        let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let t = Instant::now();
        let Ok(id) = vm.create_http(tx, HashMap::new()) else {
            panic!("on_context_create trapped");
        };
        vm.set_request_headers(id, headers);
        let _ = vm.on_request_headers(id, false);
        if let Some(ctx) = vm.ctx(id) {
            ctx.request_body = body;
        }
        let _ = vm.on_request_body(id, true);
        let decided = t.elapsed();
        routed += usize::from(
            vm.ctx(id)
                .is_some_and(|c| c.request_headers.iter().any(|(k, _)| k == upstream_header.as_bytes())),
        );
        let _ = vm.finish(id);
        module.record(turn.prompt.len(), decided);
        whole.record(turn.prompt.len(), t.elapsed());
    }
    println!("\nmodule (context created, request headers and body; the filter routes at the body's end):");
    print!("{module}");
    println!("\nmodule, the context's whole life (as above, then on_done, on_log, on_delete):");
    print!("{whole}");
    println!("\n{routed} of {} requests routed by the filter", turns.len());
    for bucket in prefixgate_replay::Bucket::ALL {
        let ratio = |a: &Timings, q| {
            let (a, b) = (a.quantile(bucket, q), native.quantile(bucket, q));
            a.zip(b).map_or(f64::NAN, |(a, b)| a.as_secs_f64() / b.as_secs_f64())
        };
        println!(
            "{:<6} module ÷ native: median {:.2}×, p99 {:.2}× (whole life: median {:.2}×)",
            bucket.label(),
            ratio(&module, 0.5),
            ratio(&module, 0.99),
            ratio(&whole, 0.5)
        );
    }
}
