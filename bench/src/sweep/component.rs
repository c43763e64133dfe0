//! A sweep component (the simulated fleet, the router): a child process whose
//! stdout and stderr are appended to the strategy's log files, which reports
//! readiness by printing its listening address.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The log files of one strategy: `logs/{strategy}_stdout.log` and `_stderr.log`.
#[derive(Clone, Debug)]
pub struct LogFiles {
    /// Every component's stdout.
    pub stdout: PathBuf,
    /// Every component's stderr.
    pub stderr: PathBuf,
}

impl LogFiles {
    /// Creates (truncates) the log files of `strategy` under `dir`.
    pub fn create(dir: &Path, strategy: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let logs = Self {
            stdout: dir.join(format!("{strategy}_stdout.log")),
            stderr: dir.join(format!("{strategy}_stderr.log")),
        };
        for p in [&logs.stdout, &logs.stderr] {
            File::create(p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(logs)
    }

    fn append(path: &Path) -> Result<File> {
        OpenOptions::new().append(true).open(path).with_context(|| format!("opening {}", path.display()))
    }

    /// The last `n` lines of both logs, for an error message.
    pub fn tail(&self, n: usize) -> String {
        let mut out = String::new();
        for p in [&self.stderr, &self.stdout] {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            out.push_str(&format!("--- {} (last {} lines)\n", p.display(), lines.len() - start));
            for l in &lines[start..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// A running child process, killed when dropped so nothing outlives the sweep.
#[derive(Debug)]
pub struct Component {
    name: String,
    child: Child,
    logs: LogFiles,
}

impl Component {
    /// Starts `cmd` with its output appended to `logs`.
    pub fn spawn(name: &str, mut cmd: Command, logs: &LogFiles) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(LogFiles::append(&logs.stdout)?)
            .stderr(LogFiles::append(&logs.stderr)?)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Self { name: name.to_owned(), child, logs: logs.clone() })
    }

    /// Waits until the stdout log holds `n` lines starting with `prefix` and
    /// returns the rest of each; fails with the logs' tail if the process exits
    /// or `timeout` passes first.
    pub async fn wait_for_lines(&mut self, prefix: &str, n: usize, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.logs.stdout).unwrap_or_default();
            let found: Vec<String> =
                text.lines().filter_map(|l| l.strip_prefix(prefix)).map(str::to_owned).collect();
            if found.len() >= n {
                return Ok(found);
            }
            if let Some(status) = self.child.try_wait().context("waiting for a component")? {
                bail!("{} exited during startup ({status}):\n{}", self.name, self.logs.tail(20));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not report `{prefix}` within {:.0} s:\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.logs.tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The component's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds an executable: `explicit`, else `$ENV`, else beside the running
/// program (or in the `tools/` directory of its target directory), else on
/// `PATH`; `hint` says how to get it, for the error message.
pub fn find_executable(explicit: Option<&Path>, env: &str, name: &str, hint: &str) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        // target/<profile>/prefixgate-bench, or target/<profile>/deps/<test> in tests.
        for dir in me.ancestors().skip(1).take(3) {
            dirs.push(dir.to_owned());
            dirs.push(dir.join("tools"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    match dirs.iter().map(|d| d.join(&exe)).find(|c| c.is_file()) {
        Some(found) => Ok(found),
        None => bail!("cannot find `{name}` beside this program or on PATH: {hint}, or set {env}"),
    }
}
