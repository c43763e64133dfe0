//! A child process that announces itself on stdout: started, awaited until
//! it prints the line that says it listens, signalled, and killed on drop.
//! Its stderr is echoed to ours and its last lines kept, for assertions and
//! for the error when it exits during startup.

use crate::LaunchError;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Lines of stderr kept per process.
const STDERR_LINES: usize = 200;

/// A signal [`Announced::signal`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGHUP`: prefixgate reloads its configuration file.
    Hangup,
    /// `SIGTERM`: stop.
    Terminate,
    /// `SIGKILL`: die at once.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "HUP",
            Signal::Terminate => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// The last lines a process wrote on stderr.
#[derive(Clone, Debug, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// How many kept lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A running child that printed its announcement.
#[derive(Debug)]
pub struct Announced {
    child: Child,
    program: PathBuf,
    /// The first stdout line that started with the awaited prefix.
    pub line: String,
    stderr: StderrTail,
}

impl Announced {
    /// Spawns `command` (stdin closed, stdout and stderr piped) and waits at
    /// most `limit` for a stdout line starting with `prefix`.
    pub async fn spawn(
        mut command: Command,
        program: &Path,
        prefix: &str,
        limit: Duration,
    ) -> Result<Self, LaunchError> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LaunchError::Io { what: "start", path: program.to_owned(), source })?;
        let stderr = StderrTail::default();
        let mut echo = None;
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            echo = Some(tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("{line}");
                    tail.push(line);
                }
            }));
        }
        let stdout = child.stdout.take().ok_or_else(|| LaunchError::Protocol("no stdout pipe".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        let name = program.display().to_string();
        let wait = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.starts_with(prefix) => return Ok(line),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(None),
                    Err(e) => return Err(Some(e)),
                }
            }
        };
        let line = match tokio::time::timeout(limit, wait).await {
            Ok(Ok(line)) => line,
            Ok(Err(None)) => {
                let status = child.wait().await.ok();
                // The pipe is closed: the echo task ends once it has read the rest.
                if let Some(echo) = echo {
                    let _ = tokio::time::timeout(Duration::from_secs(5), echo).await;
                }
                return Err(LaunchError::Exited { program: name, status, stderr: stderr.lines().join("\n") });
            }
            Ok(Err(Some(source))) => {
                return Err(LaunchError::Io { what: "read stdout", path: program.to_owned(), source })
            }
            Err(_) => {
                return Err(LaunchError::Protocol(format!("{name} printed no `{prefix}` line in {limit:?}")))
            }
        };
        // Keep reading stdout so that the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, program: program.to_owned(), line, stderr })
    }

    /// Process id, `None` once the process has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> &StderrTail {
        &self.stderr
    }

    /// Sends `signal` with kill(1).
    pub async fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        let pid = self.pid().ok_or_else(|| LaunchError::Protocol("the process is gone".to_owned()))?;
        let status = Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(pid.to_string())
            .status()
            .await
            .map_err(|source| LaunchError::Io { what: "run kill", path: PathBuf::from("kill"), source })?;
        if !status.success() {
            return Err(LaunchError::Protocol(format!("kill -{} {pid} failed: {status}", signal.name())));
        }
        Ok(())
    }

    /// Waits at most `limit` for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> Result<ExitStatus, LaunchError> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(LaunchError::Io { what: "wait for", path: self.program.clone(), source }),
            Err(_) => Err(LaunchError::Protocol(format!(
                "{} still running after {limit:?}",
                self.program.display()
            ))),
        }
    }

    /// Sends `signal` and waits at most `limit` for the process to exit.
    pub async fn stop(&mut self, signal: Signal, limit: Duration) -> Result<ExitStatus, LaunchError> {
        self.signal(signal).await?;
        self.wait(limit).await
    }
}
