//! vllm-sim: a simulated vLLM replica with real prefix caching, continuous batching, a
//! step-time cost model and vLLM's `/metrics`, served over vLLM's OpenAI-compatible HTTP API.
//!
//! Layers, from the inside out:
//! - pure engine model, no clock and no I/O, stepped on a model clock its caller advances
//!   ([`engine::EngineCore::next_step_start`], `plan_step`, `complete_step`):
//!   [`block_hash`], [`block_pool`], [`kv_cache`], [`request`], [`scheduler`],
//!   [`cost_model`], [`engine`]; [`admission`] turns a request body into an engine request;
//! - [`engine_thread`]: runs one engine against the wall clock, divided by `--time-scale`;
//! - HTTP: [`openai`] (wire types), [`tokenization`] (`/tokenize`, `/detokenize`),
//!   [`server`], [`sse`]; [`replica`] and [`fleet`] start them.

pub mod admission;
pub mod api_error;
pub mod approx_tokenizer;
pub mod block_hash;
pub mod block_pool;
pub mod calibrate;
pub mod chat_template;
pub mod config;
pub mod cost_model;
pub mod engine;
pub mod engine_thread;
pub mod error;
pub mod exposition;
pub mod fast_hash;
pub mod fleet;
pub mod kv_cache;
pub mod metrics;
pub mod openai;
pub mod profile;
pub mod reference;
pub mod replica;
pub mod request;
pub mod scheduler;
pub mod server;
pub mod sse;
pub mod text_gen;
pub mod tokenization;
pub mod tokenizer;

pub use config::{EngineLimits, MetricsFormat, SimConfig};
pub use error::SimError;
pub use fleet::Fleet;
pub use profile::Profile;
pub use replica::Replica;
