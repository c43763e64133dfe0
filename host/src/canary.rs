//! The canary a hot swap runs before it commits: one request through the
//! request callbacks of one of the new VMs, then a tick, so that a module
//! (or a plugin configuration) that traps or loops there is refused while
//! the old filter still serves.
//!
//! The canary request goes to no backend: after `on_request_headers` and
//! `on_request_body` (end of stream) the context is finished (`on_done`,
//! `on_log`, `on_delete`) without a response, so the filter records no
//! response outcome (passive health is not touched) and whatever it counts
//! per request in flight is uncounted in `on_log`. Its response callbacks
//! are not exercised: the trap-rate rollback (see `reload`) covers them.

use crate::wasm::pool::{CallError, Pool};
use crate::wasm::vm::{Action, Trap};
use crate::wasm::{CtxEvent, HeaderList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The request a swap sends through the new filter before it commits.
#[derive(Debug, Clone)]
pub struct Canary {
    /// `:path` of the request (a `POST`).
    pub path: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Request header marking it as the canary (value `1`), so that a
    /// filter or its logs can tell it apart.
    pub header: String,
    /// How long the filter may keep the request paused at the end of its
    /// body (waiting for its own callout, say) before the canary fails.
    pub wait: Duration,
}

/// Why the canary refused a filter.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// A callback trapped (panic, deadline, out of memory).
    #[error("the canary request trapped the filter in {callback}")]
    Trapped {
        /// The callback that trapped.
        callback: &'static str,
        /// The trap.
        #[source]
        trap: Trap,
    },
    /// The VM was replaced while the canary waited for it: a callback run
    /// meanwhile (a callout's response, a tick) trapped.
    #[error("the filter's VM trapped while the canary request was paused in it")]
    Lost {
        /// The trap, when known.
        #[source]
        trap: Option<Trap>,
    },
    /// The filter kept the request paused for longer than [`Canary::wait`].
    #[error("the filter held the canary request paused for more than {0} ms")]
    Stuck(u128),
}

/// Slot of the new pool the canary runs on.
const SLOT: usize = 0;

impl Canary {
    /// The canary's request headers, pseudo-headers first.
    fn headers(&self) -> HeaderList {
        let pairs: [(&[u8], Vec<u8>); 7] = [
            (b":method", b"POST".to_vec()),
            (b":path", self.path.as_bytes().to_vec()),
            (b":authority", b"prefixgate-canary".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b"content-type", b"application/json".to_vec()),
            (b"content-length", self.body.len().to_string().into_bytes()),
            (self.header.as_bytes(), b"1".to_vec()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_vec(), v)).collect()
    }

    /// Runs the canary request, then a tick, on one VM of `pool` (a pool
    /// not yet serving). Any trap refuses the filter.
    pub async fn run(&self, pool: &Arc<Pool>) -> Result<(), CanaryError> {
        let trapped = |callback: &'static str| {
            move |e: CallError| match e {
                CallError::Trapped(trap) => CanaryError::Trapped { callback, trap },
                CallError::Gone => CanaryError::Lost { trap: pool.last_trap() },
            }
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut props = HashMap::new();
        props.insert("source.address".to_string(), b"127.0.0.1:0".to_vec());
        props.insert("request.protocol".to_string(), b"HTTP/1.1".to_vec());
        let (ctx, generation) = pool
            .try_with(SLOT, None, |vm| vm.create_http(tx, props))
            .map_err(trapped("on_context_create"))?;
        let call = |callback: &'static str,
                    f: &mut dyn FnMut(&mut crate::wasm::vm::Vm) -> Result<Action, Trap>| {
            pool.try_with(SLOT, Some(generation), f).map(|(a, _)| a).map_err(trapped(callback))
        };
        let headers = self.headers();
        let mut action = call("on_request_headers", &mut |vm| {
            vm.set_request_headers(ctx, headers.clone());
            vm.on_request_headers(ctx, false)
        })?;
        // A filter that answers itself (or closes) in request headers is
        // done with the request.
        let mut answered = false;
        while let Ok(ev) = events.try_recv() {
            answered |= matches!(ev, CtxEvent::LocalResponse(_) | CtxEvent::Close);
        }
        if !answered {
            action = call("on_request_body", &mut |vm| {
                if let Some(c) = vm.ctx(ctx) {
                    c.request_body = self.body.clone();
                }
                vm.on_request_body(ctx, true)
            })?;
        }
        if action == Action::Pause && !answered {
            self.wait_for_release(pool, &mut events).await?;
        }
        call("on_done/on_log/on_delete", &mut |vm| vm.finish(ctx).map(|()| Action::Continue))?;
        pool.try_with(SLOT, None, |vm| vm.on_tick()).map_err(trapped("on_tick"))?;
        Ok(())
    }

    /// Waits until the filter continues (or answers) a request it paused
    /// at the end of its body.
    async fn wait_for_release(
        &self,
        pool: &Arc<Pool>,
        events: &mut mpsc::UnboundedReceiver<CtxEvent>,
    ) -> Result<(), CanaryError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(CtxEvent::ContinueRequest | CtxEvent::LocalResponse(_) | CtxEvent::Close) => return Ok(()),
                    Some(_) => {}
                    // The context went with its VM.
                    None => return Err(CanaryError::Lost { trap: pool.last_trap() }),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(CanaryError::Stuck(self.wait.as_millis()));
                }
            }
        }
    }
}
