//! Runs an [`EngineCore`] against the wall clock on a dedicated OS thread.
//!
//! Model time `t` (simulated seconds) maps to wall time `epoch + t / time_scale`. A step
//! planned at `start` delivers its tokens at `start + duration`; the next step starts at that
//! model instant, however late the thread wakes, so lateness never accumulates into the
//! simulated timeline. How late each step actually ends is the scheduling lag, recorded in
//! the metrics (`vllm_sim:scheduling_lag_*`).
//!
//! Why a thread and not a tokio task: tokio's timer has a 1 ms resolution, and at
//! `--time-scale 10` a decode step lasts about 1.4 ms of wall time. The thread sleeps on its
//! command channel until shortly before the deadline and spins (yielding) for the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::engine::{EngineConfig, EngineCore, RequestEvent};
use super::error::SimError;
use super::metrics::EngineMetrics;
use super::request::{NewRequest, RequestId};

/// A message to the engine thread.
#[derive(Debug)]
pub enum Command {
    /// Run a new request and send its events on `events`.
    Submit {
        /// The request.
        request: Box<NewRequest>,
        /// Where its events go; a closed channel aborts the request.
        events: UnboundedSender<RequestEvent>,
    },
    /// Drop a request (client gone).
    Abort(RequestId),
    /// Stop the thread.
    Shutdown,
}

/// Converts between model seconds and wall-clock instants.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    epoch: Instant,
    time_scale: f64,
}

impl SimClock {
    /// A clock starting now, running `time_scale` times faster than real time.
    pub fn new(time_scale: f64) -> Self {
        Self { epoch: Instant::now(), time_scale }
    }

    /// Model time of a wall instant.
    pub fn to_model(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64() * self.time_scale
    }

    /// Wall instant of a model time.
    pub fn to_wall(&self, t: f64) -> Instant {
        let secs = (t / self.time_scale).max(0.0);
        self.epoch + Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX / 4)
    }
}

/// Sends commands to an engine thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineSender {
    tx: mpsc::Sender<Command>,
}

impl EngineSender {
    /// Queues a request; `false` if the engine is gone.
    pub fn submit(&self, request: NewRequest, events: UnboundedSender<RequestEvent>) -> bool {
        self.tx.send(Command::Submit { request: Box::new(request), events }).is_ok()
    }

    /// Aborts a request (ignored if it already finished or the engine is gone).
    pub fn abort(&self, id: RequestId) {
        let _ = self.tx.send(Command::Abort(id));
    }
}

/// Owner of one engine thread.
#[derive(Debug)]
pub struct EngineHandle {
    sender: EngineSender,
    metrics: Arc<Mutex<EngineMetrics>>,
    alive: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Clears the `alive` flag when the thread ends, even by a panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl EngineHandle {
    /// Starts an engine thread named `name`.
    pub fn spawn(
        name: String,
        config: EngineConfig,
        time_scale: f64,
        spin: Duration,
    ) -> Result<Self, SimError> {
        let (tx, rx) = mpsc::channel();
        let core = EngineCore::new(config);
        let metrics = Arc::new(Mutex::new(core.metrics().clone()));
        let alive = Arc::new(AtomicBool::new(true));
        let driver = Driver {
            core,
            rx,
            clock: SimClock::new(time_scale),
            spin,
            senders: HashMap::new(),
            shared_metrics: Arc::clone(&metrics),
            last_publish: Instant::now(),
            events: Vec::new(),
        };
        let guard = AliveGuard(Arc::clone(&alive));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _guard = guard;
                driver.run();
            })
            .map_err(SimError::EngineThread)?;
        Ok(Self { sender: EngineSender { tx }, metrics, alive, thread: Some(thread) })
    }

    /// A sender for submitting and aborting requests.
    pub fn sender(&self) -> EngineSender {
        self.sender.clone()
    }

    /// A copy of the metrics as of the last step.
    pub fn metrics(&self) -> EngineMetrics {
        match self.metrics.lock() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the engine thread is still running.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Stops the thread and waits for it to end (blocking; call from a blocking context).
    pub fn shutdown_blocking(mut self) {
        let _ = self.sender.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        let _ = self.sender.tx.send(Command::Shutdown);
    }
}

/// The engine thread's state.
struct Driver {
    core: EngineCore,
    rx: mpsc::Receiver<Command>,
    clock: SimClock,
    spin: Duration,
    senders: HashMap<RequestId, UnboundedSender<RequestEvent>>,
    shared_metrics: Arc<Mutex<EngineMetrics>>,
    last_publish: Instant,
    events: Vec<(RequestId, RequestEvent)>,
}

/// Longest time, in wall-clock terms, the published metrics may lag the engine while it
/// is busy (when idle, and when a request finishes, they are published at once).
const PUBLISH_INTERVAL: Duration = Duration::from_millis(2);

/// The thread should stop.
struct Stop;

impl Driver {
    fn run(mut self) {
        let _ = self.run_loop();
        // Dropping the senders ends every open response stream.
        self.senders.clear();
    }

    fn run_loop(&mut self) -> Result<(), Stop> {
        let mut prev_end = 0.0_f64;
        loop {
            let Some(start) = self.core.next_step_start(prev_end) else {
                // Idle: show the final state (aborts included), then block until a command.
                self.publish();
                let cmd = self.rx.recv().map_err(|_| Stop)?;
                self.handle(cmd)?;
                continue;
            };
            self.wait_until(self.clock.to_wall(start))?;
            let mut events = std::mem::take(&mut self.events);
            let plan = self.core.plan_step(start, &mut events);
            self.dispatch(&mut events);
            let Some(plan) = plan else {
                // Everything runnable was aborted meanwhile.
                prev_end = start;
                self.events = events;
                continue;
            };
            let deadline = self.clock.to_wall(plan.end());
            self.wait_until(deadline)?;
            let lag = Instant::now().saturating_duration_since(deadline);
            let lag_model = lag.as_secs_f64() * self.clock.time_scale;
            self.core.record_lag(lag_model, plan.duration);
            self.core.complete_step(&plan, &mut events);
            // Publish before dispatching when a request finished (its client may scrape at
            // once), else at most every PUBLISH_INTERVAL: copying the metrics every step
            // would cost more than the step's own bookkeeping.
            let finished =
                events.iter().any(|(_, e)| matches!(e, RequestEvent::Token { finish: Some(_), .. }));
            if finished || self.last_publish.elapsed() >= PUBLISH_INTERVAL {
                self.publish();
            }
            self.dispatch(&mut events);
            self.events = events;
            prev_end = plan.end();
        }
    }

    /// Waits for a wall instant, handling commands meanwhile: sleeps on the channel until
    /// `spin` before the deadline, then polls it, yielding the CPU between polls.
    fn wait_until(&mut self, deadline: Instant) -> Result<(), Stop> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                // Take what is already queued, so arrivals join the next step.
                loop {
                    match self.rx.try_recv() {
                        Ok(cmd) => self.handle(cmd)?,
                        Err(TryRecvError::Empty) => return Ok(()),
                        Err(TryRecvError::Disconnected) => return Err(Stop),
                    }
                }
            }
            let remaining = deadline - now;
            if remaining > self.spin {
                match self.rx.recv_timeout(remaining - self.spin) {
                    Ok(cmd) => self.handle(cmd)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(Stop),
                }
            } else {
                match self.rx.try_recv() {
                    Ok(cmd) => self.handle(cmd)?,
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(TryRecvError::Disconnected) => return Err(Stop),
                }
            }
        }
    }

    fn handle(&mut self, cmd: Command) -> Result<(), Stop> {
        match cmd {
            Command::Submit { request, events } => {
                let arrival = self.clock.to_model(Instant::now());
                self.senders.insert(request.id, events);
                // In the front end it is not yet counted anywhere in the gauges: the
                // step that follows its arrival at the engine publishes it.
                self.core.add_request(*request, arrival);
            }
            Command::Abort(id) => {
                self.senders.remove(&id);
                self.core.abort(id);
            }
            Command::Shutdown => return Err(Stop),
        }
        Ok(())
    }

    /// Sends events to their requests; a request whose receiver is gone is aborted.
    fn dispatch(&mut self, events: &mut Vec<(RequestId, RequestEvent)>) {
        for (id, event) in events.drain(..) {
            let last = matches!(event, RequestEvent::Token { finish: Some(_), .. });
            let delivered = self.senders.get(&id).is_some_and(|tx| tx.send(event).is_ok());
            if last || !delivered {
                self.senders.remove(&id);
                if !delivered && !last {
                    self.core.abort(id);
                }
            }
        }
    }

    fn publish(&mut self) {
        self.last_publish = Instant::now();
        if let Ok(mut m) = self.shared_metrics.lock() {
            m.clone_from(self.core.metrics());
        }
    }
}

/// Aborts a request in the engine when dropped, unless disarmed: a client that disconnects
/// drops its response (body or pending handler), and the engine frees the request's blocks.
#[derive(Debug)]
pub struct AbortOnDrop {
    sender: EngineSender,
    id: RequestId,
    armed: bool,
}

impl AbortOnDrop {
    /// Guards request `id`.
    pub fn new(sender: EngineSender, id: RequestId) -> Self {
        Self { sender, id, armed: true }
    }

    /// The request finished; nothing to abort.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.sender.abort(self.id);
        }
    }
}
