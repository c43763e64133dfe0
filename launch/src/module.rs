//! The routing filter's module (`prefixgate_filter.wasm`), which Envoy loads
//! and `prefixgate --filter` runs instead of its embedded copy: named by
//! `$PREFIXGATE_FILTER_WASM`, or built (release, `wasm32-wasip1`) on demand
//! by the build [`prefixgate_filter_module`] defines for every builder.

use crate::binary::{from_env, own_profile_dir, workspace_root};
use crate::LaunchError;
pub use prefixgate_filter_module::{Module, FILTER_MODULE, WASM_TARGET};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Finding a module for a program that runs it.
pub trait Locate {
    /// `explicit`, else `$env`; either must name a file. For programs that
    /// run a module built beforehand (`cargo xtask build-filter`).
    fn locate(&self, explicit: Option<&Path>) -> Result<PathBuf, LaunchError>;

    /// `$env` when set (it must name a file); else a release build for
    /// `wasm32-wasip1`, once per process, into the running program's target
    /// directory, and its path.
    fn locate_or_build(&self) -> Result<PathBuf, LaunchError>;
}

impl Locate for Module {
    fn locate(&self, explicit: Option<&Path>) -> Result<PathBuf, LaunchError> {
        match explicit {
            Some(path) if path.is_file() => Ok(path.to_owned()),
            Some(path) => Err(LaunchError::MissingFile { path: path.to_owned() }),
            None => from_env(self.env)?.ok_or(LaunchError::NoModule { var: self.env }),
        }
    }

    fn locate_or_build(&self) -> Result<PathBuf, LaunchError> {
        if let Some(path) = from_env(self.env)? {
            return Ok(path);
        }
        static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(path) = built.as_ref() {
            return Ok(path.clone());
        }
        let (_, target) = own_profile_dir()?;
        let path = self.build(&workspace_root(), &target).map_err(LaunchError::ModuleBuild)?;
        *built = Some(path.clone());
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::{Locate, FILTER_MODULE};
    use crate::LaunchError;
    use std::path::Path;

    #[test]
    fn an_explicit_module_that_is_not_a_file_is_refused_by_name() {
        let missing = Path::new("/nonexistent/prefixgate_filter.wasm");
        match FILTER_MODULE.locate(Some(missing)) {
            Err(LaunchError::MissingFile { path }) => assert_eq!(path, missing),
            other => panic!("expected MissingFile, got {other:?}"),
        }
    }
}
