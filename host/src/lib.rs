//! prefixgate: a reverse proxy whose routing policy is a proxy-wasm HTTP
//! filter, run by its own implementation of the proxy-wasm host ABI on
//! wasmtime, with hot swap of the module and its configuration.

pub mod admin;
pub mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod swap;
pub mod upstream;
pub mod wasm;
