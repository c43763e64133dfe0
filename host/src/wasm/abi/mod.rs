//! Host functions of the proxy-wasm ABI, one module per area, all registered
//! from [`table::register`].

pub mod buffer;
pub mod header_map;
pub mod http_call;
pub mod log;
pub mod mem;
pub mod metric;
pub mod property;
pub mod shared_data;
pub mod shared_queue;
pub mod stream;
pub mod table;
pub mod timer;
pub mod wasi;

/// `proxy_status_t` values.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The key, value or context does not exist.
    pub const NOT_FOUND: i32 = 1;
    /// An argument is invalid.
    pub const BAD_ARGUMENT: i32 = 2;
    /// Serialization failed.
    pub const SERIALIZATION_FAILURE: i32 = 3;
    /// The queue is empty.
    pub const EMPTY: i32 = 7;
    /// Compare-and-swap mismatch.
    pub const CAS_MISMATCH: i32 = 8;
    /// An internal error.
    pub const INTERNAL_FAILURE: i32 = 10;
    /// The call is not implemented by this host.
    pub const UNIMPLEMENTED: i32 = 12;
}

/// Result type of every host function: a status, or a trap.
pub type HostResult = wasmtime::Result<i32>;
