//! One request's HTTP context in one VM, for its whole life. Every method
//! is synchronous (a short, deadline-bounded callback); actions the filter
//! defers (`continue_stream`, `send_local_response`, `close_stream`) arrive
//! on the session's event channel. Once a callback traps, the session is
//! failed: no more callbacks run and the caller falls back.

use super::pool::Pool;
use super::vm::{Action, Vm};
use super::{CtxEvent, HeaderList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
}

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

    /// Runs `f` on this session's VM and context.
    pub fn call<R>(&self, f: impl FnOnce(&mut Vm, u32) -> Result<R, super::vm::Trap>) -> Option<R> {
        if self.failed() {
            return None;
        }
        let ctx = self.ctx;
        match self.pool.with(self.slot, Some(self.generation), |vm| f(vm, ctx)) {
            Some((r, _)) => Some(r),
            None => {
                self.failed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    fn step(&self, f: impl FnOnce(&mut Vm, u32) -> Result<Action, super::vm::Trap>) -> Step {
        match self.call(f) {
            Some(Action::Continue) => Step::Continue,
            Some(Action::Pause) => Step::Pause,
            None => Step::Failed,
        }
    }

    /// Sets a host property of the context (e.g. `upstream.address`).
    pub fn set_property(&self, key: &str, value: &[u8]) {
        self.call(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.properties.insert(key.to_string(), value.to_vec());
            }
            Ok(())
        });
    }

    /// Runs `on_request_headers` on `headers`.
    pub fn request_headers(&self, headers: HeaderList, eos: bool) -> Step {
        self.step(|vm, id| {
            vm.set_request_headers(id, headers);
            vm.on_request_headers(id, eos)
        })
    }

    /// Appends a chunk to the buffered request body and runs
    /// `on_request_body` with the total size.
    pub fn request_body_buffered(&self, chunk: &[u8], eos: bool) -> Step {
        self.step(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.request_body.extend_from_slice(chunk);
            }
            vm.on_request_body(id, eos)
        })
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
    /// (the buffer is taken).
    pub fn take_request(&self) -> Option<(HeaderList, Vec<u8>)> {
        self.call(|vm, id| {
            Ok(vm
                .ctx(id)
                .map(|c| (c.request_headers.clone(), std::mem::take(&mut c.request_body)))
                .unwrap_or_default())
        })
    }

    /// Runs `on_response_headers` on `headers`.
    pub fn response_headers(&self, headers: HeaderList, eos: bool) -> Step {
        self.step(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.response_headers = headers;
            }
            vm.on_response_headers(id, eos)
        })
    }

    /// The response headers as the filter left them.
    pub fn response_headers_now(&self) -> Option<HeaderList> {
        self.call(|vm, id| Ok(vm.ctx(id).map(|c| c.response_headers.clone()).unwrap_or_default()))
    }

    /// Appends a chunk to the buffered response body and runs
    /// `on_response_body` with the total size.
    pub fn response_body_buffered(&self, chunk: &[u8], eos: bool) -> Step {
        self.step(|vm, id| {
            if let Some(c) = vm.ctx(id) {
                c.response_body.extend_from_slice(chunk);
            }
            vm.on_response_body(id, eos)
        })
    }

    /// Takes the buffered response body.
    pub fn take_response_body(&self) -> Option<Vec<u8>> {
        self.call(|vm, id| Ok(vm.ctx(id).map(|c| std::mem::take(&mut c.response_body)).unwrap_or_default()))
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

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let ctx = self.ctx;
        let _ = self.pool.with(self.slot, Some(self.generation), |vm| vm.finish(ctx));
    }
}
