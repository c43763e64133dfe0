//! One request's HTTP context in one VM, for its whole life. Every method
//! is synchronous (a short, deadline-bounded callback); actions the filter
//! defers (`continue_stream`, `send_local_response`, `close_stream`) arrive
//! on the session's event channel. Once a callback traps, the session is
//! failed: no more callbacks run and the caller falls back.
//!
//! Each method takes the VM's slot lock once: a callback returns the state
//! the caller needs after it (the request or response as the filter left
//! it, once the filter lets it go), and properties the host sets between
//! callbacks are applied at the start of the next one.

use super::pool::Pool;
use super::vm::{Action, Vm};
use super::{CtxEvent, HeaderList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Outcome of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The filter let the stream go on.
    Continue,
    /// The filter paused the stream.
    Pause,
    /// The filter failed (trap or VM gone): fall back.
    Failed,
}

/// The shareable part of a session (request and response bodies hold a
/// clone). The context is finished (`on_done`, `on_log`, `on_delete`) when
/// the last clone is dropped.
pub struct SessionHandle {
    pool: Arc<Pool>,
    slot: usize,
    generation: u64,
    ctx: u32,
    failed: AtomicBool,
    /// `on_done`, `on_log` and `on_delete` have run.
    finished: AtomicBool,
    /// Properties set since the last callback, applied before the next.
    pending: Mutex<Vec<(&'static str, Vec<u8>)>>,
}

/// The request as the filter left it when it let it go: its headers, and
/// the buffered body (taken from the filter's buffer).
pub type Released = (HeaderList, Vec<u8>);

/// A request's session: the handle plus its event channel.
pub struct Session {
    /// Shared handle.
    pub handle: Arc<SessionHandle>,
    events: mpsc::UnboundedReceiver<CtxEvent>,
}

impl Session {
    /// Opens an HTTP context on one of the pool's VMs; `None` if that VM is
    /// down or trapped while creating the context.
    pub fn open(pool: &Arc<Pool>, properties: HashMap<String, Vec<u8>>) -> Option<Session> {
        let slot = pool.pick();
        let (tx, events) = mpsc::unbounded_channel();
        let (ctx, generation) = pool.with(slot, None, |vm| vm.create_http(tx, properties))?;
        let handle = Arc::new(SessionHandle {
            pool: pool.clone(),
            slot,
            generation,
            ctx,
            failed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
        });
        Some(Session { handle, events })
    }

    /// The next deferred action; `None` once the context is gone (trap).
    pub async fn next_event(&mut self) -> Option<CtxEvent> {
        if self.handle.failed() {
            return None;
        }
        self.events.recv().await
    }

    /// A deferred action already delivered, if any.
    pub fn try_event(&mut self) -> Option<CtxEvent> {
        self.events.try_recv().ok()
    }
}

impl SessionHandle {
    /// Whether a callback of this session trapped.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Runs `f` on this session's VM and context, after the properties set
    /// since the last callback.
    pub fn call<R>(&self, f: impl FnOnce(&mut Vm, u32) -> Result<R, super::vm::Trap>) -> Option<R> {
        if self.failed() || self.finished.load(Ordering::Relaxed) {
            return None;
        }
        let ctx = self.ctx;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        match self.pool.with(self.slot, Some(self.generation), |vm| {
            apply(vm, ctx, pending);
            f(vm, ctx)
        }) {
            Some((r, _)) => Some(r),
            None => {
                self.failed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Runs a callback returning an action; when it lets the stream go,
    /// `released` reads what the caller needs in the same lock.
    fn step<T>(
        &self,
        f: impl FnOnce(&mut Vm, u32) -> Result<Action, super::vm::Trap>,
        released: impl FnOnce(&mut Vm, u32) -> T,
    ) -> (Step, Option<T>) {
        let r = self.call(|vm, id| {
            Ok(match f(vm, id)? {
                Action::Continue => (Step::Continue, Some(released(vm, id))),
                Action::Pause => (Step::Pause, None),
            })
        });
        r.unwrap_or((Step::Failed, None))
    }

    /// Sets a host property of the context (e.g. `upstream.address`); the
    /// filter sees it from its next callback on.
    pub fn set_property(&self, key: &'static str, value: &[u8]) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push((key, value.to_vec()));
    }

    /// Runs `on_request_headers` on `headers`; the request as left when the
    /// filter lets it go.
    pub fn request_headers(&self, headers: HeaderList, eos: bool) -> (Step, Option<Released>) {
        self.step(
            |vm, id| {
                vm.set_request_headers(id, headers);
                vm.on_request_headers(id, eos)
            },
            released_request,
        )
    }

    /// Appends a chunk to the buffered request body and runs
    /// `on_request_body` with the total size; the request as left when the
    /// filter lets it go.
    pub fn request_body_buffered(&self, chunk: &[u8], eos: bool) -> (Step, Option<Released>) {
        self.step(
            |vm, id| {
                if let Some(c) = vm.ctx(id) {
                    c.request_body.extend_from_slice(chunk);
                }
                vm.on_request_body(id, eos)
            },
            released_request,
        )
    }

    /// Runs `on_request_body` on one streamed chunk; returns the chunk as
    /// the filter left it.
    pub fn request_body_chunk(&self, chunk: Vec<u8>, eos: bool) -> Option<Vec<u8>> {
        self.call(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.request_body = chunk;
            }
            vm.on_request_body(id, eos)?;
            Ok(vm.ctx(id).map(|c| std::mem::take(&mut c.request_body)).unwrap_or_default())
        })
    }

    /// The request headers and the buffered body as the filter left them
    /// (the buffer is taken), for a filter that let the request go later
    /// (`proxy_continue_stream`).
    pub fn take_request(&self) -> Option<Released> {
        self.call(|vm, id| Ok(released_request(vm, id)))
    }

    /// Runs `on_response_headers` on `headers`; the headers as left when
    /// the filter lets the response go.
    pub fn response_headers(&self, headers: HeaderList, eos: bool) -> (Step, Option<HeaderList>) {
        self.step(
            |vm, id| {
                if let Some(c) = vm.ctx(id) {
                    c.response_headers = headers;
                }
                vm.on_response_headers(id, eos)
            },
            |vm, id| vm.ctx(id).map(|c| c.response_headers.clone()).unwrap_or_default(),
        )
    }

    /// Appends a chunk to the buffered response body and runs
    /// `on_response_body` with the total size; the headers and the body
    /// (taken) as left when the filter lets the response go.
    pub fn response_body_buffered(&self, chunk: &[u8], eos: bool) -> (Step, Option<Released>) {
        self.step(
            |vm, id| {
                if let Some(c) = vm.ctx(id) {
                    c.response_body.extend_from_slice(chunk);
                }
                vm.on_response_body(id, eos)
            },
            released_response,
        )
    }

    /// The response headers and the buffered body (taken) as the filter
    /// left them.
    pub fn take_response(&self) -> Option<Released> {
        self.call(|vm, id| Ok(released_response(vm, id)))
    }

    /// Runs `on_response_body` on one streamed chunk; returns the chunk as
    /// the filter left it.
    pub fn response_body_chunk(&self, chunk: Vec<u8>, eos: bool) -> Option<Vec<u8>> {
        self.call(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.response_body = chunk;
            }
            vm.on_response_body(id, eos)?;
            Ok(vm.ctx(id).map(|c| std::mem::take(&mut c.response_body)).unwrap_or_default())
        })
    }

    /// The end of the response: `on_response_body` at end of stream, then
    /// `on_done`, `on_log` and `on_delete`, in one lock; returns what the
    /// filter added at the end. No callback runs on this session after it.
    pub fn response_end(&self) -> Option<Vec<u8>> {
        let last = self.call(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.response_body = Vec::new();
            }
            vm.on_response_body(id, true)?;
            let last = vm.ctx(id).map(|c| std::mem::take(&mut c.response_body)).unwrap_or_default();
            vm.finish(id)?;
            Ok(last)
        });
        self.finished.store(true, Ordering::Relaxed);
        last
    }

    /// Runs `on_response_trailers`; returns the trailers as left.
    pub fn response_trailers(&self, trailers: HeaderList) -> Option<HeaderList> {
        self.call(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.response_trailers = trailers;
            }
            vm.on_trailers(id, true)?;
            Ok(vm.ctx(id).map(|c| c.response_trailers.clone()).unwrap_or_default())
        })
    }
}

/// Applies properties the host set between callbacks.
fn apply(vm: &mut Vm, id: u32, pending: Vec<(&'static str, Vec<u8>)>) {
    if let Some(c) = vm.ctx(id) {
        for (key, value) in pending {
            c.properties.insert(key.to_string(), value);
        }
    }
}

fn released_request(vm: &mut Vm, id: u32) -> Released {
    vm.ctx(id).map(|c| (c.request_headers.clone(), std::mem::take(&mut c.request_body))).unwrap_or_default()
}

fn released_response(vm: &mut Vm, id: u32) -> Released {
    vm.ctx(id).map(|c| (c.response_headers.clone(), std::mem::take(&mut c.response_body))).unwrap_or_default()
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let ctx = self.ctx;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = self.pool.with(self.slot, Some(self.generation), |vm| {
            apply(vm, ctx, pending);
            vm.finish(ctx)
        });
    }
}
