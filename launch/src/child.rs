//! A child process that announces itself on stdout: started, awaited until
//! it prints the line that says it listens, signalled, and killed on drop.
//! Its stderr is echoed to ours (or both its streams appended to log files)
//! and its last lines kept, for assertions and for the error when it exits
//! during startup.

use crate::LaunchError;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    /// `SIGSTOP`: freeze (connections stay open, nothing answers).
    Stop,
    /// `SIGCONT`: resume after [`Signal::Stop`].
    Continue,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "HUP",
            Signal::Terminate => "TERM",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Continue => "CONT",
        }
    }
}

/// Where a child's output goes.
#[derive(Clone, Debug, Default)]
pub enum Output {
    /// Stderr echoed to ours; stdout read and dropped.
    #[default]
    Echo,
    /// Each stream appended, line by line, to its file (created if missing).
    Append {
        /// The file for stdout.
        stdout: PathBuf,
        /// The file for stderr.
        stderr: PathBuf,
    },
}

impl Output {
    /// The file a stream is appended to, if any.
    async fn open(path: Option<&Path>) -> Result<Option<tokio::fs::File>, LaunchError> {
        let Some(path) = path else { return Ok(None) };
        Ok(Some(tokio::fs::File::from_std(open_log(path)?)))
    }

    fn paths(&self) -> (Option<&Path>, Option<&Path>) {
        match self {
            Output::Echo => (None, None),
            Output::Append { stdout, stderr } => (Some(stdout), Some(stderr)),
        }
    }
}

/// Opens `path` for appending a child's output, creating it if missing.
pub(crate) fn open_log(path: &Path) -> Result<std::fs::File, LaunchError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LaunchError::io("open log", path, e))
}

/// Writes `line` and a newline to `file` when there is one; a failed write
/// of a log line is not worth stopping the child for.
async fn log_line(file: &mut Option<tokio::fs::File>, line: &str) {
    if let Some(file) = file {
        let _ = file.write_all(format!("{line}\n").as_bytes()).await;
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
    /// Spawns `command` (stdin closed, stdout and stderr piped to `output`)
    /// and waits at most `limit` for a stdout line starting with `prefix`.
    pub async fn spawn(
        mut command: Command,
        program: &Path,
        prefix: &str,
        limit: Duration,
        output: &Output,
    ) -> Result<Self, LaunchError> {
        let (stdout_log, stderr_log) = output.paths();
        let (mut stdout_log, mut stderr_log) =
            (Output::open(stdout_log).await?, Output::open(stderr_log).await?);
        let echo_stderr = stderr_log.is_none();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::io("start", program, e))?;
        let name = program.display().to_string();
        let stderr = StderrTail::default();
        let mut echo = None;
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            echo = Some(tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo_stderr {
                        eprintln!("{line}");
                    }
                    log_line(&mut stderr_log, &line).await;
                    tail.push(line);
                }
            }));
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(LaunchError::io("read stdout", program, std::io::ErrorKind::BrokenPipe.into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        log_line(&mut stdout_log, &line).await;
                        if line.starts_with(prefix) {
                            return Ok(line);
                        }
                    }
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
                return Err(LaunchError::Exited { program: name, status, log: stderr.lines().join("\n") });
            }
            Ok(Err(Some(source))) => return Err(LaunchError::io("read stdout", program, source)),
            Err(_) => {
                return Err(LaunchError::NotReady {
                    program: name,
                    limit,
                    waiting_for: "its listening line on stdout",
                    log: stderr.lines().join("\n"),
                })
            }
        };
        // Keep reading stdout so that the process never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                log_line(&mut stdout_log, &line).await;
            }
        });
        Ok(Self { child, program: program.to_owned(), line, stderr })
    }

    /// Process id, `None` once the process has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> &StderrTail {
        &self.stderr
    }

    /// Sends `signal` with kill(1).
    pub async fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        let pid =
            self.pid().ok_or_else(|| LaunchError::Gone { program: self.program.display().to_string() })?;
        let status = Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(pid.to_string())
            .status()
            .await
            .map_err(|e| LaunchError::io("run kill", "kill", e))?;
        if !status.success() {
            return Err(LaunchError::KillFailed { signal: signal.name(), pid, status });
        }
        Ok(())
    }

    /// Waits at most `limit` for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> Result<ExitStatus, LaunchError> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(LaunchError::io("wait for", &self.program, source)),
            Err(_) => Err(LaunchError::StillRunning { program: self.program.display().to_string(), limit }),
        }
    }

    /// Sends `signal` and waits at most `limit` for the process to exit.
    pub async fn stop(&mut self, signal: Signal, limit: Duration) -> Result<ExitStatus, LaunchError> {
        self.signal(signal).await?;
        self.wait(limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::{Announced, Output, Signal};
    use crate::wait::poll_until;
    use std::path::Path;
    use std::time::Duration;
    use tokio::process::Command;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn appended_output_keeps_both_streams_and_the_announcement() {
        let dir = std::env::temp_dir().join(format!("prefixgate-launch-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let (stdout, stderr) = (dir.join("out.log"), dir.join("err.log"));
        let output = Output::Append { stdout: stdout.clone(), stderr: stderr.clone() };
        let script = "echo before; echo 'ready at 1'; echo oops >&2; echo after; exec sleep 30";
        let mut child =
            Announced::spawn(shell(script), Path::new("sh"), "ready at", Duration::from_secs(10), &output)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(child.line, "ready at 1");
        // The lines after the announcement are copied by background tasks.
        let seen = poll_until(Duration::from_secs(5), "both streams copied", || {
            let seen = std::fs::read_to_string(&stdout).unwrap_or_default();
            let done =
                seen.contains("after") && std::fs::read_to_string(&stderr).is_ok_and(|e| e.contains("oops"));
            async move { done.then_some(seen) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen, "before\nready at 1\nafter\n");
        assert_eq!(std::fs::read_to_string(&stderr).unwrap_or_default(), "oops\n");
        assert_eq!(child.stderr().count("oops"), 1, "stderr is kept as well as logged");
        let status =
            child.stop(Signal::Kill, Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_child_that_exits_before_announcing_itself_says_so_with_its_stderr() {
        let err = Announced::spawn(
            shell("echo 'cannot bind 127.0.0.1:1' >&2; exit 3"),
            Path::new("sh"),
            "ready",
            Duration::from_secs(10),
            &Output::Echo,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("exited during startup"), "{err}");
        assert!(err.contains("cannot bind 127.0.0.1:1"), "{err}");
    }

    #[tokio::test]
    async fn a_stopped_child_is_resumed_by_continue() {
        let script = "echo ready; while true; do sleep 0.05; done";
        let mut child =
            Announced::spawn(shell(script), Path::new("sh"), "ready", Duration::from_secs(10), &Output::Echo)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        child.signal(Signal::Stop).await.unwrap_or_else(|e| panic!("{e}"));
        let pid = child.pid().unwrap_or_default();
        let state = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        };
        let stopped = poll_until(Duration::from_secs(5), "the process stopped", || {
            let stopped = state() == Some('T');
            async move { stopped.then_some(()) }
        })
        .await;
        assert!(stopped.is_ok(), "SIGSTOP leaves the process stopped: {:?}", state());
        child.signal(Signal::Continue).await.unwrap_or_else(|e| panic!("{e}"));
        let resumed = poll_until(Duration::from_secs(5), "the process resumed", || {
            let resumed = state().is_some_and(|s| s != 'T');
            async move { resumed.then_some(()) }
        })
        .await;
        assert!(resumed.is_ok(), "SIGCONT resumes it: {:?}", state());
        assert!(child.is_running());
        let _ = child.stop(Signal::Kill, Duration::from_secs(10)).await;
    }
}
