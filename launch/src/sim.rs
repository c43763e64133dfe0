//! One `vllm-sim` replica as a child process, as users run it: a
//! system-picked port read back from the line it prints, signalled (killed,
//! frozen, resumed), killed on drop, and restarted on the same port.

use crate::child::{Announced, Output, Signal};
use crate::LaunchError;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// How long a replica may take to listen.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a killed replica may take to be reaped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What vllm-sim prints before each replica's URL.
const LISTENING: &str = "vllm-sim replica ";

/// A running `vllm-sim` replica.
#[derive(Debug)]
pub struct SimProcess {
    process: Option<Announced>,
    binary: PathBuf,
    time_scale: f64,
    args: Vec<OsString>,
    output: Output,
    startup_timeout: Duration,
    addr: SocketAddr,
}

impl SimProcess {
    /// Starts one replica of `binary` on a free loopback port, `time_scale`
    /// times faster than real time, without spinning.
    pub async fn start(binary: &Path, time_scale: f64) -> Result<Self, LaunchError> {
        Self::start_with(binary, time_scale, Vec::new(), Output::Echo, STARTUP_TIMEOUT).await
    }

    /// [`SimProcess::start`] with more `vllm-sim` options (`--profile`,
    /// `--num-gpu-blocks`, ...; not `--host`, `--port` or `--replicas`) and
    /// its output to `output`; it must be listening within `startup_timeout`.
    pub async fn start_with(
        binary: &Path,
        time_scale: f64,
        args: Vec<OsString>,
        output: Output,
        startup_timeout: Duration,
    ) -> Result<Self, LaunchError> {
        let mut sim = Self {
            process: None,
            binary: binary.to_owned(),
            time_scale,
            args,
            output,
            startup_timeout,
            addr: ([127, 0, 0, 1], 0).into(),
        };
        let process = sim.spawn(0).await?;
        sim.addr = parse_listening(&process.line).ok_or_else(|| LaunchError::BadAnnouncement {
            program: binary.display().to_string(),
            line: process.line.clone(),
        })?;
        sim.process = Some(process);
        Ok(sim)
    }

    async fn spawn(&self, port: u16) -> Result<Announced, LaunchError> {
        let mut command = Command::new(&self.binary);
        command
            .args(["--host", "127.0.0.1", "--replicas", "1", "--spin-micros", "0"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--time-scale")
            .arg(self.time_scale.to_string())
            .args(&self.args)
            .env("RUST_LOG", "warn");
        Announced::spawn(command, &self.binary, LISTENING, self.startup_timeout, &self.output).await
    }

    /// The replica's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the process runs (it was not killed, or was restarted).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Whether the process runs and has not exited by itself.
    pub fn is_alive(&mut self) -> bool {
        self.process.as_mut().is_some_and(Announced::is_running)
    }

    /// Sends `signal` (e.g. [`Signal::Stop`], then [`Signal::Continue`]).
    pub async fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        match &self.process {
            Some(process) => process.signal(signal).await,
            None => Err(LaunchError::Gone { program: self.binary.display().to_string() }),
        }
    }

    /// Kills the process (SIGKILL: no goodbye to open connections) and reaps it.
    pub async fn kill(&mut self) -> Result<(), LaunchError> {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::Kill, EXIT_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Starts the replica again on the port it had.
    pub async fn restart(&mut self) -> Result<(), LaunchError> {
        self.kill().await?;
        let process = self.spawn(self.addr.port()).await?;
        self.process = Some(process);
        Ok(())
    }
}

/// The address in `vllm-sim replica 0 listening on http://127.0.0.1:8001`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.split_once(" listening on http://")?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn the_listening_line_gives_the_address() {
        let addr = parse_listening("vllm-sim replica 0 listening on http://127.0.0.1:8001");
        assert_eq!(addr.map(|a| a.port()), Some(8001));
        assert_eq!(parse_listening("vllm-sim replica 0"), None);
    }
}
