//! A fleet of replicas in one process, on consecutive ports (or free ports with port 0).
//! The API tests, the benchmark and other crates use to get vLLM-like backends.

use std::net::SocketAddr;

use super::config::SimConfig;
use super::error::SimError;
use super::metrics::EngineMetrics;
use super::replica::{Replica, SharedResources};

/// Replicas started from one [`SimConfig`]; each can be stopped and started again.
#[derive(Debug)]
pub struct Fleet {
    shared: SharedResources,
    addrs: Vec<SocketAddr>,
    replicas: Vec<Option<Replica>>,
}

impl Fleet {
    /// Starts `replicas` replicas: on `config.port`, `config.port + 1`, … or, with port 0,
    /// each on a free port. Returns once every replica is listening.
    pub async fn start(config: SimConfig, replicas: usize) -> Result<Self, SimError> {
        let shared = SharedResources::load(config)?;
        let mut fleet =
            Self { shared, addrs: Vec::with_capacity(replicas), replicas: Vec::with_capacity(replicas) };
        for index in 0..replicas {
            let port = match fleet.shared.config.port {
                0 => 0,
                base => u16::try_from(usize::from(base) + index)
                    .map_err(|_| SimError::PortRange { base, replicas })?,
            };
            let addr = SocketAddr::new(fleet.shared.config.host, port);
            let replica = match Replica::start(&fleet.shared, index, addr).await {
                Ok(r) => r,
                Err(e) => {
                    fleet.shutdown().await;
                    return Err(e);
                }
            };
            fleet.addrs.push(replica.addr());
            fleet.replicas.push(Some(replica));
        }
        Ok(fleet)
    }

    /// The configuration every replica runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Number of replicas (running or stopped).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether the fleet has no replicas.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Listening address of each replica (kept while a replica is stopped).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Base URL of each replica, `http://ip:port`.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    /// A running replica.
    pub fn replica(&self, index: usize) -> Option<&Replica> {
        self.replicas.get(index).and_then(Option::as_ref)
    }

    /// Whether replica `index` is running.
    pub fn is_running(&self, index: usize) -> bool {
        self.replica(index).is_some()
    }

    /// Metrics of a running replica.
    pub fn metrics(&self, index: usize) -> Option<EngineMetrics> {
        self.replica(index).map(Replica::metrics)
    }

    /// Kills one replica: its listener and connections close at once and its engine state
    /// (queues, KV cache) is lost. Its address stays reserved for [`Fleet::restart_replica`].
    pub async fn stop_replica(&mut self, index: usize) -> Result<(), SimError> {
        let slot =
            self.replicas.get_mut(index).ok_or(SimError::Replica { index, message: "no such replica" })?;
        let replica = slot.take().ok_or(SimError::Replica { index, message: "already stopped" })?;
        replica.stop().await;
        Ok(())
    }

    /// Starts a stopped replica again on its old address, with an empty cache.
    pub async fn restart_replica(&mut self, index: usize) -> Result<(), SimError> {
        let addr = *self.addrs.get(index).ok_or(SimError::Replica { index, message: "no such replica" })?;
        if self.is_running(index) {
            return Err(SimError::Replica { index, message: "already running" });
        }
        let replica = Replica::start(&self.shared, index, addr).await?;
        if let Some(slot) = self.replicas.get_mut(index) {
            *slot = Some(replica);
        }
        Ok(())
    }

    /// Stops every replica.
    pub async fn shutdown(mut self) {
        for slot in &mut self.replicas {
            if let Some(r) = slot.take() {
                r.stop().await;
            }
        }
    }
}
