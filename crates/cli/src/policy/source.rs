//! Where the policies come from: the configuration's `[policy] files`,
//! files named on the command line, or the built-in default bundle, the
//! same choice the proxy makes at start.

use std::path::{Path, PathBuf};

use portcullis_config::Config;
use portcullis_policy::{LoadError, PolicyEngine};

/// An engine and a description of what it was loaded from, for reports.
pub struct Loaded {
    pub engine: PolicyEngine,
    pub origin: String,
}

pub fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

/// The policy paths to load: the configuration's, resolved against its
/// folder, or `paths` as given. Empty means the default bundle.
pub fn policy_paths(config: Option<&Config>, paths: &[PathBuf]) -> Vec<PathBuf> {
    match config {
        Some(c) => c.policy.files.iter().map(|f| c.resolve(f)).collect(),
        None => paths.to_vec(),
    }
}

pub fn load_engine(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    if paths.is_empty() {
        return Ok(Loaded {
            engine: PolicyEngine::default_bundle()?,
            origin: "the built-in default bundle".to_owned(),
        });
    }
    Ok(Loaded {
        engine: PolicyEngine::from_paths(paths)?,
        origin: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Loads the policies a command works on: from the configuration at
/// `config` if given, else from `paths`, else the default bundle. Returns
/// the configuration too, for commands that need its targets and users.
pub fn load(config: Option<&Path>, paths: &[PathBuf]) -> Result<(Option<Config>, Loaded), String> {
    let config_path = config;
    let config = config.map(load_config).transpose()?;
    let mut loaded =
        load_engine(&policy_paths(config.as_ref(), paths)).map_err(|e| load_error(&e))?;
    if let (Some(c), Some(path)) = (&config, config_path) {
        if c.policy.files.is_empty() {
            loaded.origin = format!(
                "{} (no [policy] files in {})",
                loaded.origin,
                path.display()
            );
        }
    }
    Ok((config, loaded))
}

/// A load error as an operator reads it: every problem with its file, line
/// and column.
pub fn load_error(e: &LoadError) -> String {
    format!("policies do not load: {e}")
}
