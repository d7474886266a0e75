//! Where policy text comes from: the built-in default bundle or the
//! operator's files.
//!
//! The default bundle is compiled in from `policies/*.cedar`, the same files
//! shipped for operators to copy and edit, so the documented defaults and
//! the enforced ones cannot drift apart.

use std::path::{Path, PathBuf};

use crate::error::LoadError;

/// The text of one policy file and the name errors should call it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// The default bundle's files in load order, which is name order: the order
/// [`read_policy_files`] gives a copy of the `policies/` directory, so a
/// copied bundle names the same policy as the built-in one when several
/// deny a statement.
const DEFAULT_BUNDLE: [(&str, &str); 4] = [
    ("base.cedar", include_str!("../policies/base.cedar")),
    (
        "everywhere.cedar",
        include_str!("../policies/everywhere.cedar"),
    ),
    (
        "other-databases.cedar",
        include_str!("../policies/other-databases.cedar"),
    ),
    (
        "production.cedar",
        include_str!("../policies/production.cedar"),
    ),
];

/// The built-in default bundle, named `default/<file>` in errors.
pub fn default_bundle() -> Vec<PolicySource> {
    DEFAULT_BUNDLE
        .iter()
        .map(|(name, text)| PolicySource {
            name: format!("default/{name}"),
            text: (*text).to_owned(),
        })
        .collect()
}

/// Reads policy files. Each path is a `.cedar` file or a directory, searched
/// recursively for `.cedar` files (hidden entries skipped) in name order, so
/// the load order, and with it which policy is named when several deny a
/// statement, is the same on every machine.
pub fn read_policy_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PolicySource>, LoadError> {
    if paths.is_empty() {
        return Err(LoadError::NoPaths);
    }
    let mut files = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            let before = files.len();
            collect_cedar_files(path, &mut files)?;
            if files.len() == before {
                return Err(LoadError::NoPolicyFiles {
                    path: path.to_owned(),
                });
            }
        } else {
            files.push(path.to_owned());
        }
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(PolicySource {
                name: path.display().to_string(),
                text,
            })
        })
        .collect()
}

fn collect_cedar_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_cedar_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}
