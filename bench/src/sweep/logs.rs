//! The log files of one strategy, to which every process it starts (the
//! simulated replicas, the router) appends its stdout and stderr.

use anyhow::{Context, Result};
use prefixgate_launch::Output;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The log files of one strategy: `logs/{strategy}_stdout.log` and `_stderr.log`.
#[derive(Clone, Debug)]
pub struct LogFiles {
    /// The directory they are in (Envoy's bootstrap and log go there too).
    pub dir: PathBuf,
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
            dir: dir.to_owned(),
            stdout: dir.join(format!("{strategy}_stdout.log")),
            stderr: dir.join(format!("{strategy}_stderr.log")),
        };
        for p in [&logs.stdout, &logs.stderr] {
            File::create(p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok(logs)
    }

    /// Where a started process's output goes: appended to both files.
    pub fn output(&self) -> Output {
        Output::Append { stdout: self.stdout.clone(), stderr: self.stderr.clone() }
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
