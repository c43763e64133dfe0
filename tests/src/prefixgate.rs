//! The standalone `prefixgate` binary as a child process: system-picked ports
//! read back from the line it prints once listening, killed on drop.
//!
//! The end-to-end tests run prefixgate in-process; the benchmark starts the
//! release binary this way so that its CPU use is its own (`/proc/<pid>/stat`).

use crate::error::HarnessError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long prefixgate may take to compile the module and open its listeners.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Start of the line prefixgate prints on stdout once both listeners are open.
const LISTENING: &str = "prefixgate listening on ";

/// A running `prefixgate` process.
#[derive(Debug)]
pub struct PrefixgateProcess {
    child: Child,
    base_url: String,
    admin_url: String,
}

impl PrefixgateProcess {
    /// Starts `binary` on loopback (port 0) in front of `backends`, with the
    /// filter embedded in it and `plugin_config`; logs only warnings (to
    /// stderr, inherited).
    pub async fn start(
        binary: &Path,
        backends: &[SocketAddr],
        plugin_config: &str,
    ) -> Result<Self, HarnessError> {
        Self::start_with_args(binary, backends, plugin_config, &[]).await
    }

    /// [`PrefixgateProcess::start`] with more command-line options.
    pub async fn start_with_args(
        binary: &Path,
        backends: &[SocketAddr],
        plugin_config: &str,
        args: &[&str],
    ) -> Result<Self, HarnessError> {
        let backends: Vec<String> = backends.iter().map(SocketAddr::to_string).collect();
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--backends")
            .arg(backends.join(","))
            .arg("--plugin-config")
            .arg(plugin_config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HarnessError::io("start prefixgate", PathBuf::from(binary), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Protocol("prefixgate: no stdout pipe".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                return Err(HarnessError::Protocol("prefixgate exited during startup".to_owned()))
            }
            Ok(Err(e)) => return Err(HarnessError::io("read prefixgate stdout", PathBuf::from(binary), e)),
            Err(_) => {
                return Err(HarnessError::Protocol(format!(
                    "prefixgate not listening after {STARTUP_TIMEOUT:?}"
                )))
            }
        };
        let (base_url, admin_url) = parse_listening(&line)
            .ok_or_else(|| HarnessError::Protocol(format!("prefixgate printed {line:?}")))?;
        // Keep reading stdout so that the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, base_url, admin_url })
    }

    /// Base URL of the proxy listener.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Base URL of the admin listener.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Process id, `None` once the process has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The proxy and admin URLs of `prefixgate listening on http://A admin http://B`.
fn parse_listening(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix(LISTENING)?;
    let (proxy, admin) = rest.split_once(" admin ")?;
    Some((proxy.trim().to_owned(), admin.trim().to_owned()))
}

impl crate::Proxy for PrefixgateProcess {
    fn base_url(&self) -> &str {
        PrefixgateProcess::base_url(self)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn the_listening_line_gives_both_urls() {
        assert_eq!(
            parse_listening("prefixgate listening on http://127.0.0.1:4000 admin http://127.0.0.1:4001"),
            Some(("http://127.0.0.1:4000".to_owned(), "http://127.0.0.1:4001".to_owned()))
        );
        assert_eq!(parse_listening("something else"), None);
    }
}
