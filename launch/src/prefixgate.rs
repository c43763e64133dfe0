//! The `prefixgate` binary as a child process, as users run it: system-picked
//! ports read back from the line it prints once listening, signals, a
//! restart on the same ports, killed on drop.

use crate::child::{Announced, Output, Signal, StderrTail};
use crate::LaunchError;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Command;

/// How long prefixgate may take to compile the module and open its listeners.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Start of the line prefixgate prints on stdout once both listeners are open.
pub const LISTENING: &str = "prefixgate listening on ";

/// A running `prefixgate` process.
#[derive(Debug)]
pub struct PrefixgateProcess {
    process: Box<Announced>,
    binary: PathBuf,
    args: Vec<OsString>,
    output: Output,
    startup_timeout: Duration,
    listen: SocketAddr,
    admin: SocketAddr,
    base_url: String,
    admin_url: String,
}

impl PrefixgateProcess {
    /// Starts `binary` on loopback (port 0) in front of `backends`, with the
    /// filter embedded in it and `plugin_config`; logs only warnings (to
    /// stderr, echoed).
    pub async fn start(
        binary: &Path,
        backends: &[SocketAddr],
        plugin_config: &str,
    ) -> Result<Self, LaunchError> {
        Self::start_with_args(binary, backends, plugin_config, &[]).await
    }

    /// [`PrefixgateProcess::start`] with more command-line options.
    pub async fn start_with_args(
        binary: &Path,
        backends: &[SocketAddr],
        plugin_config: &str,
        args: &[&str],
    ) -> Result<Self, LaunchError> {
        let backends: Vec<String> = backends.iter().map(SocketAddr::to_string).collect();
        let mut all: Vec<OsString> = vec![
            "--backends".into(),
            backends.join(",").into(),
            "--plugin-config".into(),
            plugin_config.into(),
        ];
        all.extend(args.iter().map(OsString::from));
        Self::start_args(binary, all).await
    }

    /// Starts `binary` with `args` (anything but `--listen` and `--admin`,
    /// e.g. `--config FILE`), both listeners on loopback port 0.
    pub async fn start_args(binary: &Path, args: Vec<OsString>) -> Result<Self, LaunchError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(binary, args, (loopback, loopback), Output::Echo, STARTUP_TIMEOUT).await
    }

    /// Starts `binary` with `args` (anything but `--listen` and `--admin`),
    /// its proxy on `listen` (port 0: one the system picks), its admin on a
    /// loopback port the system picks, its output to `output`; it must be
    /// listening within `startup_timeout`.
    pub async fn start_on(
        binary: &Path,
        args: Vec<OsString>,
        listen: SocketAddr,
        output: Output,
        startup_timeout: Duration,
    ) -> Result<Self, LaunchError> {
        let admin = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(binary, args, (listen, admin), output, startup_timeout).await
    }

    async fn spawn(
        binary: &Path,
        args: Vec<OsString>,
        (listen, admin): (SocketAddr, SocketAddr),
        output: Output,
        startup_timeout: Duration,
    ) -> Result<Self, LaunchError> {
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .args(&args)
            .env("RUST_LOG", "warn");
        let process = Box::new(Announced::spawn(command, binary, LISTENING, startup_timeout, &output).await?);
        let (listen, admin) = parse_listening(&process.line).ok_or_else(|| LaunchError::BadAnnouncement {
            program: binary.display().to_string(),
            line: process.line.clone(),
        })?;
        let (base_url, admin_url) = (format!("http://{listen}"), format!("http://{admin}"));
        let binary = binary.to_owned();
        Ok(Self { process, binary, args, output, startup_timeout, listen, admin, base_url, admin_url })
    }

    /// Stops the process with SIGTERM (it must exit within `limit`) and
    /// starts the same command again on the same two ports. Returns the old
    /// process's exit status.
    pub async fn restart(&mut self, limit: Duration) -> Result<ExitStatus, LaunchError> {
        let status = self.process.stop(Signal::Terminate, limit).await?;
        let ports = (self.listen, self.admin);
        let next =
            Self::spawn(&self.binary, self.args.clone(), ports, self.output.clone(), self.startup_timeout)
                .await?;
        *self = next;
        Ok(status)
    }

    /// Base URL of the proxy listener.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Base URL of the admin listener.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The proxy listener's address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Process id, `None` once the process has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> &StderrTail {
        self.process.stderr()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends `signal`.
    pub async fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        self.process.signal(signal).await
    }

    /// Sends `signal` and waits at most `limit` for the process to exit.
    pub async fn stop(&mut self, signal: Signal, limit: Duration) -> Result<ExitStatus, LaunchError> {
        self.process.stop(signal, limit).await
    }
}

/// The proxy and admin addresses of `prefixgate listening on http://A admin http://B`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix(LISTENING)?;
    let (proxy, admin) = rest.split_once(" admin ")?;
    let addr = |url: &str| url.trim().strip_prefix("http://")?.parse().ok();
    Some((addr(proxy)?, addr(admin)?))
}

/// Runs `binary check` on `module` with `plugin_config`: the hot swap's own
/// checks (compile, configure every VM, a canary request and a tick) in a
/// process that binds nothing. A rollout to Envoy runs it first, since
/// Envoy applies whatever module it is served. The sha256 line on success.
pub fn check_filter(binary: &Path, module: &Path, plugin_config: &str) -> Result<String, LaunchError> {
    let output = std::process::Command::new(binary)
        .arg("check")
        .arg("--filter")
        .arg(module)
        .arg("--plugin-config")
        .arg(plugin_config)
        // Warnings only: the refusal is on the `error:` line.
        .env("RUST_LOG", "warn")
        .output()
        .map_err(|e| LaunchError::io("run", binary, e))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    let stderr =
        if errors.is_empty() { stderr.lines().last().unwrap_or_default() } else { &errors.join("; ") };
    Err(LaunchError::FilterRefused {
        module: module.to_path_buf(),
        status: output.status,
        stderr: stderr.chars().take(2_000).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn the_listening_line_gives_both_addresses() {
        let line = "prefixgate listening on http://127.0.0.1:4000 admin http://127.0.0.1:4001";
        let (proxy, admin) = parse_listening(line).unwrap_or_else(|| panic!("{line} not parsed"));
        assert_eq!((proxy.port(), admin.port()), (4000, 4001));
        assert_eq!(parse_listening("something else"), None);
    }
}
