//! promtool, Prometheus' linter, which the metrics test runs on prefixgate's
//! `/metrics` when it is on `PATH`. Installed from the platform's package
//! where there is one: Debian's and Ubuntu's `prometheus` package ships
//! `/usr/bin/promtool`. Where there is none (or no root), setup says so and
//! goes on: the test then skips the lint and says it did.

use std::process::{Command, Stdio};

fn runs() -> bool {
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("xtask: running apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes promtool available if the platform packages it; never fails.
pub fn ensure_promtool() {
    if runs() {
        return;
    }
    let has_apt = Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_ok();
    if has_apt {
        let install = ["install", "-y", "--no-install-recommends", "prometheus"];
        // A fresh machine may have no package lists yet.
        if (apt_get(&install) || (apt_get(&["update"]) && apt_get(&install))) && runs() {
            eprintln!("xtask: promtool installed (Debian package `prometheus`)");
            return;
        }
    }
    eprintln!(
        "xtask: promtool is not installed and could not be (no apt-get, no root, or no `prometheus` \
         package): the metrics test will skip `promtool check metrics`"
    );
}
