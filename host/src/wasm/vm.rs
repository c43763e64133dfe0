//! One VM: a store and instance of a module version, its root context, and
//! the callbacks into it. Callbacks run strictly one at a time (the caller
//! holds the VM exclusively) under an epoch deadline and a memory limit;
//! actions the filter requests are delivered after the callback returns.

use super::deadline::Deadline;
use super::engine::{WasmEngine, WasmError};
use super::host_state::CalloutResolver;
use super::host_state::{CallResponse, HostShared, HostState, HttpCtx, Phase, PluginInfo, SlotEvent};
use super::module::ModuleVersion;
use super::{CtxEvent, HeaderList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wasmtime::{Instance, Store, StoreLimitsBuilder, TypedFunc, UpdateDeadline, WasmParams, WasmResults};

/// What a callback asks of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on.
    Continue,
    /// Stop until `proxy_continue_stream` (or a later callback continues).
    Pause,
}

impl Action {
    fn from_abi(v: i32) -> Self {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// A callback trapped (panic, deadline, out of memory, bad hostcall).
#[derive(Debug, Clone, thiserror::Error)]
#[error("filter trapped: {0}")]
pub struct Trap(pub String);

/// Limits applied to every VM.
#[derive(Debug, Clone)]
pub struct VmLimits {
    /// Deadline of each callback.
    pub callback_deadline: Duration,
    /// Deadline of start-up (`_initialize`, `on_vm_start`, `on_configure`).
    pub start_deadline: Duration,
    /// Maximum linear memory, in bytes.
    pub memory_bytes: usize,
}

type F2 = TypedFunc<(i32, i32), ()>;
type F2R = TypedFunc<(i32, i32), i32>;
type F3R = TypedFunc<(i32, i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

struct Exports {
    on_context_create: Option<F2>,
    on_vm_start: Option<F2R>,
    on_configure: Option<F2R>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_queue_ready: Option<F2>,
    on_request_headers: Option<F3R>,
    on_request_body: Option<F3R>,
    on_request_trailers: Option<F2R>,
    on_response_headers: Option<F3R>,
    on_response_body: Option<F3R>,
    on_response_trailers: Option<F2R>,
    on_http_call_response: Option<F5>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_delete: Option<TypedFunc<i32, ()>>,
}

impl Exports {
    fn find(store: &mut Store<HostState>, instance: &Instance) -> Self {
        macro_rules! f {
            ($name:literal) => {
                instance.get_typed_func(&mut *store, $name).ok()
            };
        }
        Exports {
            on_context_create: f!("proxy_on_context_create"),
            on_vm_start: f!("proxy_on_vm_start"),
            on_configure: f!("proxy_on_configure"),
            on_tick: f!("proxy_on_tick"),
            on_queue_ready: f!("proxy_on_queue_ready"),
            on_request_headers: f!("proxy_on_request_headers"),
            on_request_body: f!("proxy_on_request_body"),
            on_request_trailers: f!("proxy_on_request_trailers"),
            on_response_headers: f!("proxy_on_response_headers"),
            on_response_body: f!("proxy_on_response_body"),
            on_response_trailers: f!("proxy_on_response_trailers"),
            on_http_call_response: f!("proxy_on_http_call_response"),
            on_done: f!("proxy_on_done"),
            on_log: f!("proxy_on_log"),
            on_delete: f!("proxy_on_delete"),
        }
    }
}

/// Everything a VM needs from its surroundings.
#[derive(Clone)]
pub struct VmEnv {
    /// Host-owned shared state.
    pub shared: Arc<HostShared>,
    /// Plugin identity and configuration.
    pub plugin: Arc<PluginInfo>,
    /// Callout resolution.
    pub resolver: Arc<dyn CalloutResolver>,
    /// Limits.
    pub limits: VmLimits,
}

/// One instance of a module with its root context.
pub struct Vm {
    store: Store<HostState>,
    f: Exports,
    next_id: u32,
    ticks: u64,
    /// The callback deadline `ticks` stands for.
    budget: Duration,
}

const ROOT_ID: u32 = 1;

impl Vm {
    /// Moves a VM started elsewhere (a spare) to a slot: its events go to
    /// `slot_tx`, tagged with `generation`.
    pub fn rebind(&mut self, slot_tx: mpsc::UnboundedSender<SlotEvent>, generation: u64) {
        let state = self.store.data_mut();
        state.slot_tx = slot_tx;
        state.generation = generation;
        // Its queues now notify it in its slot (the last registration wins,
        // as for a VM started in the slot).
        for name in &state.queues_registered {
            state.shared.queues.register(&state.plugin.vm_id, name, state.slot_tx.clone(), state.root_id);
        }
    }

    /// Instantiates the module, runs `_initialize`, then creates and
    /// configures the root context (`on_context_create`, `on_vm_start`,
    /// `on_configure`).
    pub fn start(
        version: &ModuleVersion,
        env: &VmEnv,
        slot_tx: mpsc::UnboundedSender<SlotEvent>,
        generation: u64,
    ) -> Result<Vm, WasmError> {
        let limits = StoreLimitsBuilder::new().memory_size(env.limits.memory_bytes).instances(1).build();
        let state = HostState {
            shared: env.shared.clone(),
            plugin: env.plugin.clone(),
            shared_data: env.shared.data.namespace(&env.plugin.vm_id),
            scratch: Vec::new(),
            resolver: env.resolver.clone(),
            limits,
            root_id: ROOT_ID,
            contexts: HashMap::new(),
            effective: ROOT_ID,
            phase: Phase::Normal,
            call_response: None,
            deferred: Vec::new(),
            next_token: 0,
            tick_period_ms: 0,
            startup_error: None,
            slot_tx,
            alloc: None,
            memory: None,
            generation,
            queues_registered: Vec::new(),
            deadline: Deadline::start(env.limits.start_deadline),
        };
        let engine = version.instance_pre.module().engine();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        // Past the wall-clock deadline, a callback goes on while it has
        // not used its deadline of CPU time (see `deadline`).
        store.epoch_deadline_callback(|store| {
            Ok(match store.data().deadline.extension() {
                Some(ticks) => UpdateDeadline::Continue(ticks),
                None => UpdateDeadline::Interrupt,
            })
        });
        let start_ticks = WasmEngine::ticks(env.limits.start_deadline);
        store.set_epoch_deadline(start_ticks);
        let instance = version.instance_pre.instantiate(&mut store).map_err(WasmError::Instantiate)?;
        let memory = instance.get_memory(&mut store, "memory");
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok()
            .map(Arc::new);
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc;
        let init = |name: &'static str, store: &mut Store<HostState>| -> Result<bool, WasmError> {
            match instance.get_typed_func::<(), ()>(&mut *store, name) {
                Ok(f) => f.call(&mut *store, ()).map(|_| true).map_err(|e| WasmError::Init(name, e)),
                Err(_) => Ok(false),
            }
        };
        if init("_initialize", &mut store)? {
            if let Ok(main) = instance.get_typed_func::<(i32, i32), i32>(&mut store, "main") {
                main.call(&mut store, (0, 0)).map_err(|e| WasmError::Init("main", e))?;
            }
        } else {
            init("_start", &mut store)?;
        }
        let f = Exports::find(&mut store, &instance);
        let budget = env.limits.callback_deadline;
        let mut vm = Vm { store, f, next_id: ROOT_ID + 1, ticks: WasmEngine::ticks(budget), budget };
        let start = (start_ticks, env.limits.start_deadline);
        let root = ROOT_ID as i32;
        let (vm_cfg, plugin_cfg) = (env.plugin.vm_config.len() as i32, env.plugin.plugin_config.len() as i32);
        if let Some(f) = vm.f.on_context_create.clone() {
            vm.call_with(start, &f, ROOT_ID, (root, 0)).map_err(WasmError::RootContext)?;
        }
        vm.store.data_mut().phase = Phase::VmStart;
        if let Some(f) = vm.f.on_vm_start.clone() {
            match vm.call_with(start, &f, ROOT_ID, (root, vm_cfg)) {
                Ok(0) => return Err(WasmError::VmStart { said: vm.startup_error(), trap: None }),
                Err(e) => return Err(WasmError::VmStart { said: vm.startup_error(), trap: Some(e) }),
                Ok(_) => {}
            }
        }
        vm.store.data_mut().phase = Phase::Configure;
        if let Some(f) = vm.f.on_configure.clone() {
            match vm.call_with(start, &f, ROOT_ID, (root, plugin_cfg)) {
                Ok(0) => return Err(WasmError::Configure { said: vm.startup_error(), trap: None }),
                Err(e) => return Err(WasmError::Configure { said: vm.startup_error(), trap: Some(e) }),
                Ok(_) => {}
            }
        }
        vm.store.data_mut().phase = Phase::Normal;
        Ok(vm)
    }

    /// What the filter last logged as an error while starting, taken.
    fn startup_error(&mut self) -> Option<String> {
        self.store.data_mut().startup_error.take()
    }

    /// Calls `f` for context `ctx` under a deadline of `budget` (`ticks`
    /// epoch ticks on the wall clock, then CPU time: see `deadline`).
    fn call_with<P: WasmParams, R: WasmResults>(
        &mut self,
        (ticks, budget): (u64, Duration),
        f: &TypedFunc<P, R>,
        ctx: u32,
        params: P,
    ) -> Result<R, Trap> {
        self.store.set_epoch_deadline(ticks);
        self.store.data_mut().deadline = Deadline::start(budget);
        self.store.data_mut().effective = ctx;
        let result = f.call(&mut self.store, params);
        let state = self.store.data_mut();
        state.effective = state.root_id;
        let deferred = std::mem::take(&mut state.deferred);
        match result {
            Ok(r) => {
                for (id, event) in deferred {
                    if let Some(c) = state.contexts.get(&id) {
                        let _ = c.events.send(event);
                    }
                }
                Ok(r)
            }
            Err(e) => Err(Trap(format!("{e:#}"))),
        }
    }

    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        f: &TypedFunc<P, R>,
        ctx: u32,
        params: P,
    ) -> Result<R, Trap> {
        self.call_with((self.ticks, self.budget), f, ctx, params)
    }

    /// The tick period the root context asked for (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Creates an HTTP context; returns its id.
    pub fn create_http(
        &mut self,
        events: mpsc::UnboundedSender<CtxEvent>,
        properties: HashMap<String, Vec<u8>>,
    ) -> Result<u32, Trap> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(ROOT_ID + 1);
        self.store.data_mut().contexts.insert(
            id,
            HttpCtx {
                request_headers: Vec::new(),
                request_trailers: Vec::new(),
                response_headers: Vec::new(),
                response_trailers: Vec::new(),
                request_body: Vec::new(),
                response_body: Vec::new(),
                properties,
                events,
            },
        );
        if let Some(f) = self.f.on_context_create.clone() {
            self.call(&f, id, (id as i32, ROOT_ID as i32))?;
        }
        Ok(id)
    }

    /// The host state of an HTTP context.
    pub fn ctx(&mut self, id: u32) -> Option<&mut HttpCtx> {
        self.store.data_mut().contexts.get_mut(&id)
    }

    fn action(&mut self, f: Option<F3R>, id: u32, n: usize, eos: bool) -> Result<Action, Trap> {
        match f {
            Some(f) => self.call(&f, id, (id as i32, n as i32, eos as i32)).map(Action::from_abi),
            None => Ok(Action::Continue),
        }
    }

    /// `proxy_on_request_headers` with the context's request headers.
    pub fn on_request_headers(&mut self, id: u32, eos: bool) -> Result<Action, Trap> {
        let n = self.ctx(id).map(|c| c.request_headers.len()).unwrap_or(0);
        self.action(self.f.on_request_headers.clone(), id, n, eos)
    }

    /// `proxy_on_request_body` with the context's current request buffer.
    pub fn on_request_body(&mut self, id: u32, eos: bool) -> Result<Action, Trap> {
        let n = self.ctx(id).map(|c| c.request_body.len()).unwrap_or(0);
        self.action(self.f.on_request_body.clone(), id, n, eos)
    }

    /// `proxy_on_response_headers` with the context's response headers.
    pub fn on_response_headers(&mut self, id: u32, eos: bool) -> Result<Action, Trap> {
        let n = self.ctx(id).map(|c| c.response_headers.len()).unwrap_or(0);
        self.action(self.f.on_response_headers.clone(), id, n, eos)
    }

    /// `proxy_on_response_body` with the context's current response buffer.
    pub fn on_response_body(&mut self, id: u32, eos: bool) -> Result<Action, Trap> {
        let n = self.ctx(id).map(|c| c.response_body.len()).unwrap_or(0);
        self.action(self.f.on_response_body.clone(), id, n, eos)
    }

    /// `proxy_on_{request,response}_trailers`.
    pub fn on_trailers(&mut self, id: u32, response: bool) -> Result<Action, Trap> {
        let (rf, sf) = (self.f.on_request_trailers.clone(), self.f.on_response_trailers.clone());
        let (f, n) = match (response, self.ctx(id)) {
            (false, Some(c)) => (rf, c.request_trailers.len()),
            (true, Some(c)) => (sf, c.response_trailers.len()),
            _ => return Ok(Action::Continue),
        };
        match f {
            Some(f) => self.call(&f, id, (id as i32, n as i32)).map(Action::from_abi),
            None => Ok(Action::Continue),
        }
    }

    /// Ends a context: `on_done`, `on_log`, `on_delete`, then forgets it.
    pub fn finish(&mut self, id: u32) -> Result<(), Trap> {
        if !self.store.data().contexts.contains_key(&id) {
            return Ok(());
        }
        let result = (|| {
            if let Some(f) = self.f.on_done.clone() {
                self.call(&f, id, id as i32)?;
            }
            if let Some(f) = self.f.on_log.clone() {
                self.call(&f, id, id as i32)?;
            }
            if let Some(f) = self.f.on_delete.clone() {
                self.call(&f, id, id as i32)?;
            }
            Ok(())
        })();
        self.store.data_mut().contexts.remove(&id);
        result
    }

    /// The root context's `on_tick`.
    pub fn on_tick(&mut self) -> Result<(), Trap> {
        match self.f.on_tick.clone() {
            Some(f) => self.call(&f, ROOT_ID, ROOT_ID as i32),
            None => Ok(()),
        }
    }

    /// `on_queue_ready` for a root context.
    pub fn on_queue_ready(&mut self, root: u32, queue: u32) -> Result<(), Trap> {
        match self.f.on_queue_ready.clone() {
            Some(f) => self.call(&f, root, (root as i32, queue as i32)),
            None => Ok(()),
        }
    }

    /// Delivers a callout's response (`None`: the call failed, reported as
    /// zero headers).
    pub fn on_http_call_response(&mut self, token: u32, response: Option<CallResponse>) -> Result<(), Trap> {
        let Some(f) = self.f.on_http_call_response.clone() else { return Ok(()) };
        let r = response.unwrap_or_default();
        let (nh, nb, nt) = (r.headers.len() as i32, r.body.len() as i32, r.trailers.len() as i32);
        self.store.data_mut().call_response = Some(r);
        let result = self.call(&f, ROOT_ID, (ROOT_ID as i32, token as i32, nh, nb, nt));
        self.store.data_mut().call_response = None;
        result
    }

    /// Sets the request headers of a context.
    pub fn set_request_headers(&mut self, id: u32, headers: HeaderList) {
        if let Some(c) = self.ctx(id) {
            c.request_headers = headers;
        }
    }
}
