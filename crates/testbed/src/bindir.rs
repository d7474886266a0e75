//! Locating the PostgreSQL server binaries.
//!
//! Debian installs the server binaries in a versioned directory
//! (`/usr/lib/postgresql/15/bin`) that is not on `PATH`, while
//! `/usr/bin/pg_config` comes from `libpq-dev` and may report a `--bindir`
//! for a different major version whose server package is not installed. So
//! every candidate is accepted only if it actually holds `initdb` and
//! `postgres`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, TestbedError};

/// Environment variable that overrides the search.
pub const PG_BIN_ENV: &str = "PORTCULLIS_PG_BIN";

/// The binaries a directory must contain to run a cluster.
const REQUIRED: [&str; 2] = ["initdb", "postgres"];

/// Finds the directory holding the PostgreSQL server binaries.
///
/// Order: `$PORTCULLIS_PG_BIN` (an error if it lacks the binaries, so a typo
/// is not silently ignored), then `pg_config --bindir`, then the highest
/// `/usr/lib/postgresql/<major>/bin`, then `/usr/pgsql-<major>/bin` (RPM
/// layout), then `/usr/local/pgsql/bin` (source builds).
pub fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return match missing_binary(&dir) {
            None => Ok(dir),
            Some(missing) => Err(TestbedError::InvalidBinDir { path: dir, missing }),
        };
    }

    let mut searched = Vec::new();
    let mut candidates = Vec::new();
    if let Some(dir) = pg_config_bindir() {
        candidates.push(dir);
    }
    candidates.extend(versioned_dirs(Path::new("/usr/lib/postgresql"), "", "bin"));
    candidates.extend(versioned_dirs(Path::new("/usr"), "pgsql-", "bin"));
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));

    for dir in candidates {
        if missing_binary(&dir).is_none() {
            return Ok(dir);
        }
        searched.push(dir);
    }
    Err(TestbedError::PostgresNotFound { searched })
}

/// Returns the first required binary absent from `dir`, if any.
fn missing_binary(dir: &Path) -> Option<&'static str> {
    REQUIRED.into_iter().find(|name| !dir.join(name).is_file())
}

/// Asks `pg_config` (if on `PATH`) where binaries live. Any failure simply
/// means "no candidate": pg_config is a hint, not a requirement.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| PathBuf::from(trimmed))
}

/// Lists `<parent>/<prefix><version>/<suffix>` directories, highest version
/// first, so the newest installed server wins when several are present.
fn versioned_dirs(parent: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?;
            let key = version_key(version)?;
            Some((key, entry.path().join(suffix)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, path)| path).collect()
}

/// Parses "15" or "9.6" into comparable numeric components; `None` for
/// anything that is not a version so stray directories are skipped.
fn version_key(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_numerically() {
        let mut keys = [
            version_key("9.6").unwrap(),
            version_key("15").unwrap(),
            version_key("10").unwrap(),
        ];
        keys.sort();
        assert_eq!(keys.last().unwrap(), &vec![15]);
        assert!(version_key("common").is_none());
    }

    #[test]
    fn versioned_dirs_prefers_highest() {
        let tmp = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "12", "notaversion"] {
            std::fs::create_dir_all(tmp.path().join(v).join("bin")).unwrap();
        }
        let dirs = versioned_dirs(tmp.path(), "", "bin");
        assert_eq!(dirs.len(), 3);
        assert_eq!(dirs[0], tmp.path().join("15").join("bin"));
    }
}
