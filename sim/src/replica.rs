//! One simulated replica: an engine thread plus an HTTP listener, started and stopped as a
//! unit. Stopping closes the listener and every open connection at once, like a process
//! that dies, so a replica can be "killed" and started again on the same address.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::config::SimConfig;
use super::engine::EngineConfig;
use super::engine_thread::EngineHandle;
use super::error::SimError;
use super::metrics::EngineMetrics;
use super::server::{self, ReplicaState};
use super::text_gen::GenVocabulary;
use super::tokenization::DecodeTable;
use super::tokenizer::SimTokenizer;

/// What replicas of one fleet share: config, tokenizer, generation vocabulary, and the
/// built-in tokenizer's decode table.
#[derive(Debug, Clone)]
pub struct SharedResources {
    /// Configuration.
    pub config: Arc<SimConfig>,
    /// Prompt tokenizer.
    pub tokenizer: Arc<SimTokenizer>,
    /// Words for generated tokens, with ids under the tokenizer.
    pub vocab: Arc<GenVocabulary>,
    /// Texts of the built-in tokenizer's ids returned by `/tokenize`, for `/detokenize`.
    pub decode_table: Arc<DecodeTable>,
}

impl SharedResources {
    /// Validates the config and loads the tokenizer.
    pub fn load(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let tokenizer = SimTokenizer::load(config.tokenizer.as_deref())?;
        let vocab = GenVocabulary::new(|w| tokenizer.word_id(w));
        Ok(Self {
            config: Arc::new(config),
            tokenizer: Arc::new(tokenizer),
            vocab: Arc::new(vocab),
            decode_table: Arc::new(DecodeTable::new()),
        })
    }
}

/// A running replica.
#[derive(Debug)]
pub struct Replica {
    index: usize,
    addr: SocketAddr,
    state: Arc<ReplicaState>,
    accept_task: JoinHandle<()>,
}

impl Replica {
    /// Binds `addr` (port 0 picks a free port), starts the engine and serves.
    pub async fn start(shared: &SharedResources, index: usize, addr: SocketAddr) -> Result<Self, SimError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind { addr, source })?;
        let config = &shared.config;
        let engine = EngineHandle::spawn(
            format!("vllm-sim-engine-{index}"),
            EngineConfig {
                limits: config.limits,
                num_gpu_blocks: config.num_gpu_blocks(),
                profile: config.profile.clone(),
                vocab: Arc::clone(&shared.vocab),
                metrics_format: config.metrics_format,
                max_model_len: config.max_model_len(),
            },
            config.time_scale,
            Duration::from_micros(config.spin_micros),
        )?;
        let state = Arc::new(ReplicaState {
            index,
            config: Arc::clone(config),
            served_names: config.served_names(),
            tokenizer: Arc::clone(&shared.tokenizer),
            decode_table: Arc::clone(&shared.decode_table),
            engine,
            next_id: AtomicU64::new(0),
            created: server::unix_now(),
            max_model_len: config.max_model_len(),
            prompt_tokens_details: config.enable_prompt_tokens_details,
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        tracing::debug!(index, %addr, "replica listening");
        Ok(Self { index, addr, state, accept_task })
    }

    /// Index in the fleet.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The engine's metrics as of its last step.
    pub fn metrics(&self) -> EngineMetrics {
        self.state.engine.metrics()
    }

    /// Closes the listener and all connections (in-flight requests are cut), then stops the
    /// engine thread. When it returns, the address can be bound again.
    pub async fn stop(self) {
        self.accept_task.abort();
        let _ = self.accept_task.await;
        // Connection tasks are gone with the accept task's JoinSet; the state is now ours.
        match Arc::try_unwrap(self.state) {
            Ok(state) => {
                let engine = state.engine;
                let _ = tokio::task::spawn_blocking(move || engine.shutdown_blocking()).await;
            }
            Err(state) => drop(state), // dropping the handle still tells the thread to stop
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ReplicaState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| server::handle(req, Arc::clone(&state)));
                        let conn = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
