//! Errors of the simulator library.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting or configuring a simulated replica.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} {why}")]
    Config {
        /// The field.
        field: &'static str,
        /// What it must be.
        why: &'static str,
    },
    /// A profile's value is out of range.
    #[error("invalid profile {profile}: {field} {why}")]
    ProfileValue {
        /// The profile's name.
        profile: String,
        /// The field.
        field: &'static str,
        /// What it must be.
        why: &'static str,
    },
    /// A fleet's replicas would run past the last port.
    #[error("invalid configuration: port {base} + {replicas} replicas exceeds 65535")]
    PortRange {
        /// The first replica's port.
        base: u16,
        /// How many replicas.
        replicas: usize,
    },
    /// A metrics format that is neither v0 nor v1.
    #[error("invalid configuration: metrics format {0:?} is unknown (expected v0 or v1)")]
    MetricsFormat(String),
    /// A profile file could not be read.
    #[error("cannot read profile {path}")]
    ProfileRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A profile file is not valid TOML for a profile.
    #[error("invalid profile {path}")]
    ProfileParse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// A profile name is neither built in nor a file.
    #[error("unknown profile {0:?} (built in: l4-qwen2.5-1.5b, l4-qwen2.5-0.5b; or a .toml file)")]
    UnknownProfile(String),
    /// A `tokenizer.json` could not be loaded.
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine thread could not be started.
    #[error("cannot start the engine thread")]
    EngineThread(#[source] std::io::Error),
    /// A replica index is out of range or in the wrong state.
    #[error("replica {index}: {message}")]
    Replica {
        /// The index.
        index: usize,
        /// What is wrong.
        message: &'static str,
    },
}
