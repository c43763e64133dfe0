//! A pool of VMs of one module version and plugin configuration. Each VM
//! sits in a slot behind a mutex: callbacks on one VM are strictly
//! sequential, and a request stays on the slot it started on. Each slot has
//! a background task for ticks, callouts and queue notifications.
//!
//! A VM that traps is replaced at once by the pool's spare, a VM started
//! and configured ahead of time; a new spare is then started off the
//! request path (on the blocking pool). A slot that traps while no spare is
//! ready gets the next one as soon as it is built (or, should building
//! fail, a VM started in the slot at most once a second).

use super::callout::{self, CalloutClient};
use super::engine::WasmError;
use super::host_state::SlotEvent;
use super::module::ModuleVersion;
use super::vm::{Trap, Vm, VmEnv};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// A started VM waiting to replace one that traps.
    spare: Mutex<Option<Vm>>,
    /// A spare is being started.
    building: AtomicBool,
    /// The last trap of any VM of the pool.
    last_trap: Mutex<Option<Trap>>,
    me: Weak<Pool>,
}

/// Why a call into a slot's VM returned nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The slot has no live VM, or not the generation asked for (it was
    /// replaced after a trap).
    #[error("the VM is gone (replaced after a trap)")]
    Gone,
    /// The callback trapped; the VM was replaced.
    #[error(transparent)]
    Trapped(#[from] Trap),
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
        let (unbound, _) = mpsc::unbounded_channel();
        let spare = Vm::start(&version, &settings.env, unbound, 0)?;
        let pool = Arc::new_cyclic(|me| Pool {
            version,
            settings,
            slots,
            next: AtomicUsize::new(0),
            client: callout::client(),
            spare: Mutex::new(Some(spare)),
            building: AtomicBool::new(false),
            last_trap: Mutex::new(None),
            me: me.clone(),
        });
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
        self.try_with(slot, generation, f).ok()
    }

    /// As [`Pool::with`], saying why nothing came back: the VM is gone (or
    /// of another generation), or `f` trapped (then the VM is replaced).
    pub fn try_with<R>(
        &self,
        slot: usize,
        generation: Option<u64>,
        f: impl FnOnce(&mut Vm) -> Result<R, Trap>,
    ) -> Result<(R, u64), CallError> {
        let slot_ref = self.slots.get(slot).ok_or(CallError::Gone)?;
        let mut inner = slot_ref.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.vm.is_none() && inner.last_start.elapsed() >= RESTART_INTERVAL {
            self.restart(slot_ref, &mut inner);
        }
        if generation.is_some_and(|g| g != inner.generation) {
            return Err(CallError::Gone);
        }
        let generation = inner.generation;
        let vm = inner.vm.as_mut().ok_or(CallError::Gone)?;
        match f(vm) {
            Ok(r) => Ok((r, generation)),
            Err(trap) => {
                tracing::warn!(sha256 = %self.version.sha256, slot, "{trap}; replacing the VM");
                (self.settings.on_trap)(&trap.0);
                *self.last_trap.lock().unwrap_or_else(|p| p.into_inner()) = Some(trap.clone());
                inner.vm = None;
                inner.generation += 1;
                if let Some(vm) = self.take_spare() {
                    Self::install(slot_ref, &mut inner, vm);
                }
                self.build_spare();
                Err(CallError::Trapped(trap))
            }
        }
    }

    /// The last trap of any of this pool's VMs.
    pub fn last_trap(&self) -> Option<Trap> {
        self.last_trap.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a spare VM is ready to replace one that traps.
    pub fn spare_ready(&self) -> bool {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn take_spare(&self) -> Option<Vm> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Puts `vm` into an empty slot under a new generation.
    fn install(slot: &Slot, inner: &mut SlotInner, mut vm: Vm) {
        inner.generation += 1;
        inner.last_start = Instant::now();
        vm.rebind(slot.tx.clone(), inner.generation);
        inner.vm = Some(vm);
        let _ = slot.tx.send(SlotEvent::TickChanged);
    }

    /// Starts a spare on the blocking pool unless one is ready or being
    /// started. Once started, it fills any slot left empty meanwhile (and a
    /// new spare is started), else it waits as the spare.
    fn build_spare(&self) {
        if self.spare_ready() || self.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.building.store(false, Ordering::Release);
            return;
        };
        let me = self.me.clone();
        runtime.spawn_blocking(move || {
            let Some(pool) = me.upgrade() else { return };
            let (unbound, _) = mpsc::unbounded_channel();
            let started = Vm::start(&pool.version, &pool.settings.env, unbound, 0);
            let filled = match started {
                Ok(vm) => pool.place(vm),
                Err(e) => {
                    // Not retried here: an empty slot restarts its own VM
                    // at most once a second.
                    tracing::error!(sha256 = %pool.version.sha256, "spare VM failed to start: {}", crate::error_chain(&e));
                    pool.building.store(false, Ordering::Release);
                    return;
                }
            };
            pool.building.store(false, Ordering::Release);
            // A slot may have trapped while this was being built.
            let empty =
                pool.slots.iter().any(|s| s.inner.lock().unwrap_or_else(|p| p.into_inner()).vm.is_none());
            if filled || empty {
                if empty {
                    if let Some(vm) = pool.take_spare() {
                        pool.place(vm);
                    }
                }
                pool.build_spare();
            }
        });
    }

    /// Installs `vm` in the first empty slot (true), or keeps it as the
    /// spare (false).
    fn place(&self, vm: Vm) -> bool {
        for slot in &self.slots {
            let mut inner = slot.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.vm.is_none() {
                Self::install(slot, &mut inner, vm);
                return true;
            }
        }
        *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(vm);
        false
    }

    fn restart(&self, slot: &Slot, inner: &mut SlotInner) {
        inner.last_start = Instant::now();
        inner.generation += 1;
        match Vm::start(&self.version, &self.settings.env, slot.tx.clone(), inner.generation) {
            Ok(vm) => inner.vm = Some(vm),
            Err(e) => tracing::error!("VM restart failed: {}", crate::error_chain(&e)),
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
