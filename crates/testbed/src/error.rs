//! Error types for the testbed.
//!
//! Failures here are almost always environmental (PostgreSQL not installed,
//! running as root without a `postgres` user, a port clash), so every
//! variant carries enough context — paths, stderr, the server log tail — to
//! diagnose a red CI run without re-running it.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while locating, starting or driving a
/// throwaway PostgreSQL cluster.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// No directory with the PostgreSQL server binaries was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found; searched: {}. \
         Install them with `apt-get install postgresql` (or run scripts/setup.sh), \
         or point PORTCULLIS_PG_BIN at the directory containing initdb",
        display_paths(searched)
    )]
    PostgresNotFound {
        /// Every directory that was looked at, in order.
        searched: Vec<PathBuf>,
    },

    /// `PORTCULLIS_PG_BIN` was set but does not hold the server binaries;
    /// reported instead of silently falling back so a typo is noticed.
    #[error("PORTCULLIS_PG_BIN={} does not contain {missing}", path.display())]
    InvalidBinDir {
        /// The directory named by the variable.
        path: PathBuf,
        /// The binary that is missing.
        missing: &'static str,
    },

    /// We are root, and initdb/postgres refuse to run as root, but there is
    /// no unprivileged `postgres` account to run them as.
    #[error(
        "running as root, but initdb/postgres refuse to run as root and there is no \
         `{user}` system user to run them as; install the Debian postgresql packages \
         (`apt-get install postgresql`) or run as an unprivileged user"
    )]
    NoServiceUser {
        /// The account name that was looked up.
        user: String,
    },

    /// A filesystem or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A helper program (initdb, psql, pg_config) exited unsuccessfully.
    #[error("`{program}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The program and its salient arguments.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },

    /// The postmaster exited or did not become ready in time.
    #[error("PostgreSQL did not start: {reason}\n--- server log (tail) ---\n{log_tail}")]
    StartFailed {
        /// Why we gave up.
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// A caller-supplied option cannot work (e.g. a socket path that is too
    /// long for `sockaddr_un`).
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// Generating or loading TLS material failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl TestbedError {
    /// Wraps an I/O error with a description of what was being attempted.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TestbedError::Io {
            context: context.into(),
            source,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand used throughout the crate.
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;
