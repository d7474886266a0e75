//! `[masking] include`: column classifications kept in files of their own.
//!
//! `portcullis discover` proposes classifications from sampled rows and
//! writes them as a file of `[[column]]` entries for a person to review.
//! Keeping that file apart from the configuration lets it be regenerated,
//! diffed and reviewed on its own; the configuration names it, and loading
//! merges its entries after the configuration's own `[[masking.column]]`
//! entries (which therefore win where both name a column). Included
//! entries are validated like the configuration's, and their errors name
//! the included file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ColumnRule, Config, ConfigError};

/// One included file, as read.
#[derive(Debug)]
pub(crate) struct Included {
    /// The file's path, resolved against the configuration's folder.
    pub path: PathBuf,
    pub columns: Vec<ColumnRule>,
}

/// What an included file may hold: `[[column]]` entries and nothing else
/// (an include inside an included file is an unknown key, not a chain).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnsFile {
    #[serde(default, rename = "column")]
    columns: Vec<ColumnRule>,
}

/// Reads every file `[masking] include` names, in order.
pub(crate) fn read(config: &Config) -> Result<Vec<Included>, ConfigError> {
    let origin = config.source.as_deref();
    let mut out = Vec::with_capacity(config.masking.include.len());
    for (i, path) in config.masking.include.iter().enumerate() {
        let key = format!("masking.include[{i}]");
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                origin,
                key,
                "is empty; give the path of a file of [[column]] entries",
            ));
        }
        let full = config.resolve(path);
        let text = std::fs::read_to_string(&full).map_err(|e| {
            let hint = relative_hint(config, path);
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} does not exist{hint}; fix the path, or write the file with portcullis discover",
                    full.display()
                )
            } else {
                format!("cannot read {}: {e}{hint}", full.display())
            };
            ConfigError::invalid(origin, &key, message)
        })?;
        let file: ColumnsFile =
            toml::from_str(&text).map_err(|e| ConfigError::syntax(Some(&full), &text, e))?;
        out.push(Included {
            path: full,
            columns: file.columns,
        });
    }
    Ok(out)
}

fn relative_hint(config: &Config, path: &Path) -> String {
    if path.is_absolute() {
        return String::new();
    }
    match config.base_dir() {
        Some(base) if !base.as_os_str().is_empty() => format!(
            " (relative paths are resolved against the config file's folder {})",
            base.display()
        ),
        _ => " (relative paths are resolved against the current directory)".to_owned(),
    }
}
