//! Envoy as a child process: the rendered bootstrap written beside its log,
//! started with the ports the bootstrap asks for (port 0: the system picks)
//! read back from its admin interface, awaited until `/ready` says `LIVE`,
//! and killed (and reaped) on drop.

use crate::binary::find_executable;
use crate::child::{open_log, Output};
use crate::envoy_config::{listener_address, render_bootstrap, EnvoySpec};
use crate::http::{get, http_client};
use crate::wait::poll_until;
use crate::LaunchError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

/// How long Envoy may take to compile the module and open its listener.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for one answer of the admin interface during startup.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Log lines kept in an error: the start-up banner is noise.
const LOG_TAIL_LINES: usize = 40;

/// How Envoy is run.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`). Default 2: this project's test
    /// machines have two cores, and two workers show cross-worker effects.
    pub concurrency: u32,
    /// `--log-level`. Default `info`: the filter's own log lines are info.
    pub log_level: &'static str,
    /// How long it may take to be ready. Default [`STARTUP_TIMEOUT`].
    pub startup_timeout: Duration,
    /// Where stdout and stderr go (its log goes to its own file either way).
    /// Default: nowhere.
    pub output: Output,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        Self { concurrency: 2, log_level: "info", startup_timeout: STARTUP_TIMEOUT, output: Output::Echo }
    }
}

/// A running Envoy.
#[derive(Debug)]
pub struct EnvoyProcess {
    child: Child,
    binary: PathBuf,
    bootstrap: PathBuf,
    log: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl EnvoyProcess {
    /// The `envoy` executable: `explicit`, `$ENVOY_BIN`, the one `cargo
    /// xtask setup` installs in `<target>/tools/`, or on `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
        find_executable(explicit, "ENVOY_BIN", "envoy", "`cargo xtask setup` installs Envoy 1.40")
    }

    /// Writes `spec`'s bootstrap to `dir/{stem}.envoy.yaml`, starts `binary`
    /// on it with its log in `dir/{stem}.envoy.log`, and waits until it is
    /// ready.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        stem: &str,
        spec: &EnvoySpec,
        options: &EnvoyOptions,
    ) -> Result<Self, LaunchError> {
        let bootstrap = dir.join(format!("{stem}.envoy.yaml"));
        std::fs::write(&bootstrap, render_bootstrap(spec))
            .map_err(|e| LaunchError::io("write bootstrap", &bootstrap, e))?;
        let admin_path = dir.join(format!("{stem}.admin-address"));
        // A stale file from an earlier run would name a dead admin.
        match std::fs::remove_file(&admin_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LaunchError::io("remove", &admin_path, e));
            }
            _ => {}
        }
        let log = dir.join(format!("{stem}.envoy.log"));
        let (stdout, stderr) = match &options.output {
            Output::Echo => (Stdio::null(), Stdio::null()),
            Output::Append { stdout, stderr } => (open_log(stdout)?.into(), open_log(stderr)?.into()),
        };
        let child = Command::new(binary)
            .arg("-c")
            .arg(&bootstrap)
            .args(["--concurrency", &options.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .args(["--log-level", options.log_level, "--disable-hot-restart"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| LaunchError::io("start", binary, e))?;
        let unknown = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut envoy =
            Self { child, binary: binary.to_owned(), bootstrap, log, listen: unknown, admin: unknown };
        envoy.wait_ready(&admin_path, options.startup_timeout).await?;
        Ok(envoy)
    }

    /// Waits until Envoy has written its admin address, its listener is
    /// bound and `/ready` answers `LIVE`; records both addresses.
    async fn wait_ready(&mut self, admin_path: &Path, limit: Duration) -> Result<(), LaunchError> {
        // What is known so far: the admin address, then the listener's.
        let known: Mutex<(Option<SocketAddr>, Option<SocketAddr>)> = Mutex::new((None, None));
        let child = Mutex::new(&mut self.child);
        let client = http_client();
        let (known_ref, child_ref, client_ref) = (&known, &child, &client);
        let ready = poll_until(limit, "Envoy to be ready", || async move {
            let exited = child_ref.lock().ok().and_then(|mut c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Some(Err(status));
            }
            let (mut admin, mut listen) = known_ref.lock().map(|k| *k).unwrap_or_default();
            if admin.is_none() {
                admin = std::fs::read_to_string(admin_path).ok().and_then(|t| t.trim().parse().ok());
            }
            let admin_addr = admin?;
            if listen.is_none() {
                let answer =
                    get(client_ref, &format!("http://{admin_addr}/listeners?format=json"), ADMIN_TIMEOUT)
                        .await;
                listen = answer.ok().and_then(|a| listener_address(&String::from_utf8_lossy(&a)).ok());
            }
            if let Ok(mut k) = known_ref.lock() {
                *k = (admin, listen);
            }
            listen?;
            let live = get(client_ref, &format!("http://{admin_addr}/ready"), ADMIN_TIMEOUT).await;
            live.is_ok_and(|body| body.trim_ascii() == b"LIVE").then_some(Ok(()))
        })
        .await;
        let program = self.binary.display().to_string();
        match ready {
            Ok(Ok(())) => {
                let (admin, listen) = known.into_inner().unwrap_or_default();
                self.admin = admin.unwrap_or(self.admin);
                self.listen = listen.unwrap_or(self.listen);
                Ok(())
            }
            Ok(Err(status)) => {
                Err(LaunchError::Exited { program, status: Some(status), log: self.log_tail() })
            }
            Err(timed_out) => Err(LaunchError::NotReady {
                program,
                limit: timed_out.limit,
                waiting_for: "its admin address, its listener and /ready LIVE",
                log: self.log_tail(),
            }),
        }
    }

    /// The listener's address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The admin interface's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Base URL of the listener, `http://ip:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Base URL of the admin interface.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The bootstrap it runs.
    pub fn bootstrap_path(&self) -> &Path {
        &self.bootstrap
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The warnings, errors and filter log lines at the end of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| ["[warning]", "[error]", "[critical]", "wasm log"].iter().any(|k| l.contains(k)))
            .collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- {} (warnings and errors, last {LOG_TAIL_LINES}) ---\n{tail}", self.log.display())
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
