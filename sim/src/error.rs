//! Errors of the simulator library.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting or configuring a simulated replica.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range; the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
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
