//! The data of one VM's store: its context table, the per-request maps and
//! buffers, and the actions deferred until the running callback returns.

use super::deadline::Deadline;
use super::metrics::FilterMetrics;
use super::shared_data::{Namespace, SharedData};
use super::shared_queue::SharedQueues;
use super::{CtxEvent, HeaderList};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wasmtime::{Memory, StoreLimits, TypedFunc};

/// Resolves the target of a `proxy_http_call`: a cluster name plus the
/// call's headers to one configured backend address, or `None`.
pub trait CalloutResolver: Send + Sync {
    /// The address to call, never one outside the configured backends.
    fn resolve(&self, cluster: &str, headers: &HeaderList) -> Option<SocketAddr>;
}

/// Host-owned state shared by every VM of every module version.
pub struct HostShared {
    /// Shared data (`proxy_{get,set}_shared_data`).
    pub data: Arc<SharedData>,
    /// Shared queues.
    pub queues: Arc<SharedQueues>,
    /// The filter's own metrics.
    pub metrics: Arc<FilterMetrics>,
}

/// What identifies a plugin: its names and configuration bytes.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// `plugin_name` property.
    pub name: String,
    /// `plugin_root_id` property.
    pub root_id: String,
    /// Shared data and queue namespace.
    pub vm_id: String,
    /// Bytes of the VM configuration (buffer 6).
    pub vm_config: Vec<u8>,
    /// Bytes of the plugin configuration (buffer 7).
    pub plugin_config: Vec<u8>,
}

/// Host state of one HTTP context.
pub struct HttpCtx {
    /// Request headers, pseudo-headers (`:method`, `:path`, `:authority`,
    /// `:scheme`) first.
    pub request_headers: HeaderList,
    /// Request trailers.
    pub request_trailers: HeaderList,
    /// Response headers (`:status` first).
    pub response_headers: HeaderList,
    /// Response trailers.
    pub response_trailers: HeaderList,
    /// The buffered request body, or the current chunk while streaming.
    pub request_body: Vec<u8>,
    /// The buffered response body, or the current chunk while streaming.
    pub response_body: Vec<u8>,
    /// Properties set by the host (`source.address`, `upstream.address`, …)
    /// or by the filter, keyed by dotted path.
    pub properties: HashMap<String, Vec<u8>>,
    /// Where deferred actions for this context are delivered.
    pub events: mpsc::UnboundedSender<CtxEvent>,
}

/// The response of an HTTP callout, readable only during
/// `proxy_on_http_call_response`.
#[derive(Debug, Default, Clone)]
pub struct CallResponse {
    /// Response headers with `:status`.
    pub headers: HeaderList,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: HeaderList,
}

/// An HTTP callout requested by the filter, started after the callback.
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// Token returned to the filter.
    pub token: u32,
    /// The backend to call.
    pub target: SocketAddr,
    /// Request headers, with pseudo-headers.
    pub headers: HeaderList,
    /// Request body.
    pub body: Vec<u8>,
    /// Timeout; `None` (the filter passed 0) means the host's default,
    /// `callout::DEFAULT_TIMEOUT`.
    pub timeout: Option<Duration>,
    /// Generation of the VM that issued it.
    pub generation: u64,
}

/// Work for a VM slot's background task.
#[derive(Debug)]
pub enum SlotEvent {
    /// A callout to start.
    StartCall(PendingCall),
    /// A callout finished (`response` is `None` if it failed).
    CallDone {
        /// The callout's token.
        token: u32,
        /// Generation of the VM that issued it.
        generation: u64,
        /// The response.
        response: Option<CallResponse>,
    },
    /// A shared queue registered by `root` has data.
    QueueReady { root: u32, queue: u32 },
    /// The tick period changed.
    TickChanged,
}

/// Which configuration buffer the running callback may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Any other callback.
    Normal,
    /// `proxy_on_vm_start`.
    VmStart,
    /// `proxy_on_configure`.
    Configure,
}

/// The store data of one VM.
pub struct HostState {
    /// Host-owned shared state.
    pub shared: Arc<HostShared>,
    /// Plugin identity and configuration.
    pub plugin: Arc<PluginInfo>,
    /// This VM's shared-data namespace (`plugin.vm_id`), resolved once.
    pub shared_data: Arc<Namespace>,
    /// Reused buffer for values on their way into guest memory.
    pub scratch: Vec<u8>,
    /// Callout target resolution.
    pub resolver: Arc<dyn CalloutResolver>,
    /// Memory limits of this store.
    pub limits: StoreLimits,
    /// The root context id.
    pub root_id: u32,
    /// Live HTTP contexts.
    pub contexts: HashMap<u32, HttpCtx>,
    /// The context hostcalls act on.
    pub effective: u32,
    /// Which configuration buffer is readable.
    pub phase: Phase,
    /// The callout response being delivered, if any.
    pub call_response: Option<CallResponse>,
    /// Actions to apply once the callback returns.
    pub deferred: Vec<(u32, CtxEvent)>,
    /// Next callout token.
    pub next_token: u32,
    /// Tick period of the root context (0: off).
    pub tick_period_ms: u32,
    /// The VM's background task.
    pub slot_tx: mpsc::UnboundedSender<SlotEvent>,
    /// The guest allocator (behind an `Arc`: a hostcall clones it to call
    /// it, and a `TypedFunc` clone copies its type).
    pub alloc: Option<Arc<TypedFunc<i32, i32>>>,
    /// The guest memory.
    pub memory: Option<Memory>,
    /// Generation of this VM within its slot.
    pub generation: u64,
    /// Names of the shared queues this VM registered (registered again
    /// when a spare VM moves to a slot).
    pub queues_registered: Vec<String>,
    /// The clocks of the running callback.
    pub deadline: Deadline,
    /// The last error the filter logged while starting (`proxy_on_vm_start`,
    /// `proxy_on_configure`), cut to [`STARTUP_ERROR_MAX`] bytes: the reason a
    /// refusal gives the operator, beside the log.
    pub startup_error: Option<String>,
}

/// Longest filter error message kept for a refused start.
pub const STARTUP_ERROR_MAX: usize = 1024;

impl HostState {
    /// The HTTP context hostcalls currently act on, if it is one.
    pub fn effective_http(&mut self) -> Option<&mut HttpCtx> {
        let id = self.effective;
        self.contexts.get_mut(&id)
    }
}
