//! Simulated vLLM replicas for the scenarios, started in-process.

use crate::error::HarnessError;
use crate::failing_replica::{FailingReplica, Failure};
use std::net::SocketAddr;
use vllm_sim::{Fleet, SimConfig};

/// A simulator configuration for tests: loopback, free ports, `time_scale`
/// times faster than real time, no spinning (the test machine is small).
pub fn sim_config(time_scale: f64) -> SimConfig {
    SimConfig { port: 0, time_scale, spin_micros: 0, ..SimConfig::default() }
}

/// Starts `replicas` replicas running `time_scale` times faster than real time.
pub async fn start_fleet(replicas: usize, time_scale: f64) -> Result<Fleet, HarnessError> {
    Ok(Fleet::start(sim_config(time_scale), replicas).await?)
}

/// `healthy` simulated replicas and one failing replica behind them.
#[derive(Debug)]
pub struct FleetWithFailure {
    /// The healthy replicas.
    pub fleet: Fleet,
    /// The replica that fails.
    pub failing: FailingReplica,
    /// Every address, the healthy replicas first and the failing one last.
    pub addrs: Vec<SocketAddr>,
}

/// Starts `healthy` replicas at `time_scale` and one failing as `failure` says.
pub async fn start_fleet_with_failure(
    healthy: usize,
    time_scale: f64,
    failure: Failure,
) -> Result<FleetWithFailure, HarnessError> {
    let fleet = start_fleet(healthy, time_scale).await?;
    let failing = FailingReplica::start_failing(failure).await?;
    let mut addrs = fleet.addrs();
    addrs.push(failing.addr);
    Ok(FleetWithFailure { fleet, failing, addrs })
}

/// Requests replica `index` has finished (any finish reason), as of its last step.
pub fn served(fleet: &Fleet, index: usize) -> u64 {
    fleet.metrics(index).map(|m| m.request_success.iter().sum()).unwrap_or(0)
}

/// Index of the replica at `addr` (as written in `x-prefixgate-backend`).
pub fn index_of(addrs: &[SocketAddr], backend: &str) -> Option<usize> {
    addrs.iter().position(|a| a.to_string() == backend)
}

/// Requests running or waiting on the replica at `addr`, from its own
/// `/metrics` (0 when it does not answer).
pub async fn sim_queued(addr: SocketAddr) -> u64 {
    let Ok(reply) = reqwest::get(format!("http://{addr}/metrics")).await else { return 0 };
    let text = reply.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("vllm:num_requests_running") || l.starts_with("vllm:num_requests_waiting"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Replicas as `vllm-sim` processes, as users run them (the binary located
/// through `$VLLM_SIM_BIN` or built by cargo): what a scenario that kills
/// and restarts a replica uses, so that the kill is a real `SIGKILL` and the
/// restart goes through the command line.
#[derive(Debug)]
pub struct ProcessFleet {
    replicas: Vec<prefixgate_launch::SimProcess>,
}

impl ProcessFleet {
    /// Starts `replicas` processes running `time_scale` times faster than real time.
    pub async fn start(replicas: usize, time_scale: f64) -> Result<Self, HarnessError> {
        let binary = prefixgate_launch::VLLM_SIM.locate_or_build()?;
        let mut started = Vec::with_capacity(replicas);
        for _ in 0..replicas {
            started.push(prefixgate_launch::SimProcess::start(&binary, time_scale).await?);
        }
        Ok(Self { replicas: started })
    }

    /// Every replica's address, in start order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().map(prefixgate_launch::SimProcess::addr).collect()
    }

    /// Kills replica `index` (`SIGKILL`).
    pub async fn kill_replica(&mut self, index: usize) -> Result<(), HarnessError> {
        Ok(self.replica(index)?.kill().await?)
    }

    /// Starts replica `index` again, on its port.
    pub async fn restart_replica(&mut self, index: usize) -> Result<(), HarnessError> {
        Ok(self.replica(index)?.restart().await?)
    }

    fn replica(&mut self, index: usize) -> Result<&mut prefixgate_launch::SimProcess, HarnessError> {
        let len = self.replicas.len();
        self.replicas.get_mut(index).ok_or(HarnessError::NoReplica { index, len })
    }
}
