//! A pool of VMs of one module version and plugin configuration. Each VM
//! sits in a slot behind a mutex: callbacks on one VM are strictly
//! sequential, and a request stays on the slot it started on. Each slot has
//! a background task for ticks, callouts and queue notifications. A VM that
//! traps is replaced (at most once a second per slot).

use super::callout::{self, CalloutClient};
use super::engine::WasmError;
use super::host_state::SlotEvent;
use super::module::ModuleVersion;
use super::vm::{Trap, Vm, VmEnv};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Called with a description each time a filter callback traps.
pub type TrapHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How a pool is built.
#[derive(Clone)]
pub struct PoolSettings {
    /// Number of VMs.
    pub vms: usize,
    /// Environment of every VM.
    pub env: VmEnv,
    /// Called on every trap.
    pub on_trap: TrapHook,
}

struct SlotInner {
    vm: Option<Vm>,
    generation: u64,
    last_start: Instant,
}

/// One VM and its event channel.
pub struct Slot {
    inner: Mutex<SlotInner>,
    tx: mpsc::UnboundedSender<SlotEvent>,
}

/// VMs of one module version and configuration.
pub struct Pool {
    /// The module all VMs run.
    pub version: Arc<ModuleVersion>,
    settings: PoolSettings,
    slots: Vec<Slot>,
    next: AtomicUsize,
    client: CalloutClient,
}

const RESTART_INTERVAL: Duration = Duration::from_secs(1);

impl Pool {
    /// Starts every VM (refusing the configuration if any VM refuses it)
    /// and their background tasks. Must run inside a tokio runtime.
    pub fn start(version: Arc<ModuleVersion>, settings: PoolSettings) -> Result<Arc<Pool>, WasmError> {
        let mut slots = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..settings.vms.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let vm = Vm::start(&version, &settings.env, tx.clone(), 0)?;
            slots.push(Slot {
                inner: Mutex::new(SlotInner { vm: Some(vm), generation: 0, last_start: Instant::now() }),
                tx,
            });
            receivers.push(rx);
        }
        let pool =
            Arc::new(Pool { version, settings, slots, next: AtomicUsize::new(0), client: callout::client() });
        for (i, rx) in receivers.into_iter().enumerate() {
            tokio::spawn(run_slot(Arc::downgrade(&pool), i, rx));
        }
        Ok(pool)
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a pool has at least one slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Picks a slot for a new request (round robin).
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    /// Runs `f` on the VM of `slot` if it is still of `generation` (any
    /// generation if `None`). Returns `None` when there is no live VM, the
    /// generation changed, or `f` trapped (then the VM is replaced).
    pub fn with<R>(
        &self,
        slot: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm) -> Result<R, Trap>,
    ) -> Option<(R, u64)> {
        let slot_ref = self.slots.get(slot)?;
        let mut inner = slot_ref.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.vm.is_none() && inner.last_start.elapsed() >= RESTART_INTERVAL {
            self.restart(slot_ref, &mut inner);
        }
        if generation.is_some_and(|g| g != inner.generation) {
            return None;
        }
        let generation = inner.generation;
        let vm = inner.vm.as_mut()?;
        match f(vm) {
            Ok(r) => Some((r, generation)),
            Err(trap) => {
                tracing::warn!(sha256 = %self.version.sha256, slot, "{trap}; replacing the VM");
                (self.settings.on_trap)(&trap.0);
                inner.vm = None;
                inner.generation += 1;
                if inner.last_start.elapsed() >= RESTART_INTERVAL {
                    self.restart(slot_ref, &mut inner);
                }
                None
            }
        }
    }

    fn restart(&self, slot: &Slot, inner: &mut SlotInner) {
        inner.last_start = Instant::now();
        inner.generation += 1;
        match Vm::start(&self.version, &self.settings.env, slot.tx.clone(), inner.generation) {
            Ok(vm) => inner.vm = Some(vm),
            Err(e) => tracing::error!("VM restart failed: {e}"),
        }
        let _ = slot.tx.send(SlotEvent::TickChanged);
    }

    /// Current generation of a slot.
    pub fn generation(&self, slot: usize) -> u64 {
        self.slots
            .get(slot)
            .map(|s| s.inner.lock().unwrap_or_else(|p| p.into_inner()).generation)
            .unwrap_or(0)
    }
}

/// The background task of one slot: ticks, callouts, queue notifications.
/// It ends when the pool is dropped.
async fn run_slot(pool: Weak<Pool>, slot: usize, mut rx: mpsc::UnboundedReceiver<SlotEvent>) {
    let mut next_tick: Option<tokio::time::Instant> = None;
    let period = |pool: &Pool| -> Option<Duration> {
        pool.with(slot, None, |vm| Ok(vm.tick_period_ms()))
            .and_then(|(ms, _)| (ms > 0).then(|| Duration::from_millis(ms as u64)))
    };
    loop {
        let sleep = async {
            match next_tick {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                let Some(pool) = pool.upgrade() else { return };
                match event {
                    SlotEvent::StartCall(call) => {
                        let generation = call.generation;
                        let client = pool.client.clone();
                        let tx = pool.slots[slot].tx.clone();
                        let token = call.token;
                        tokio::spawn(async move {
                            let response = callout::run(&client, call).await;
                            let _ = tx.send(SlotEvent::CallDone { token, generation, response });
                        });
                    }
                    SlotEvent::CallDone { token, generation, response } => {
                        let _ = pool.with(slot, Some(generation), |vm| vm.on_http_call_response(token, response));
                    }
                    SlotEvent::QueueReady { root, queue } => {
                        let _ = pool.with(slot, None, |vm| vm.on_queue_ready(root, queue));
                    }
                    SlotEvent::TickChanged => {
                        next_tick = period(&pool).map(|p| tokio::time::Instant::now() + p);
                    }
                }
            }
            _ = sleep => {
                let Some(pool) = pool.upgrade() else { return };
                let _ = pool.with(slot, None, |vm| vm.on_tick());
                next_tick = period(&pool).map(|p| tokio::time::Instant::now() + p);
            }
        }
    }
}
