//! prefixgate: a reverse proxy whose routing policy is a proxy-wasm HTTP
//! filter, run by its own implementation of the proxy-wasm host ABI on
//! wasmtime, with hot swap of the module and its configuration.

pub mod admin;
pub mod app;
pub mod body;
pub mod canary;
pub mod cli;
pub mod config;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod state;
pub mod swap;
pub mod upstream;
pub mod wasm;

/// An error and its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // A level whose message already quotes its source's adds nothing.
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
