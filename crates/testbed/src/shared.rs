//! One cluster per test binary.
//!
//! Starting PostgreSQL costs seconds (initdb), so every test in a binary
//! shares one TLS-enabled cluster and isolates itself with
//! [`fresh_database`]. Cleanup strategy, since Rust never drops statics:
//! - normal exit (all tests done, or a failure): a `libc::atexit` hook stops
//!   the server and deletes its temp dir;
//! - the binary is killed or aborts (no atexit): the postmaster receives
//!   SIGINT from the kernel because its parent died (`PR_SET_PDEATHSIG`),
//!   so no server outlives the test run; only the temp dir (tens of MB in
//!   the system temp directory) is left behind.

use std::sync::OnceLock;

use crate::cluster::{ClusterOptions, ClusterTls, PgCluster};
use crate::error::TestbedError;
use crate::tls::TestPki;

static SHARED: OnceLock<Result<PgCluster, TestbedError>> = OnceLock::new();

/// The names the shared cluster's certificate is valid for.
pub const SHARED_CERT_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The per-process cluster, started on first use; the error (e.g.
/// PostgreSQL not installed) is cached so every test reports it.
pub fn try_shared() -> Result<&'static PgCluster, &'static TestbedError> {
    SHARED.get_or_init(start_shared).as_ref()
}

/// The per-process cluster, started on first use, with TLS from a fresh
/// [`TestPki`] (see [`PgCluster::tls`]).
///
/// # Panics
/// If the cluster cannot start. This is a test helper: a panic with the
/// reason (including how to install PostgreSQL) is the useful outcome.
/// Use [`try_shared`] to handle the error instead.
pub fn shared() -> &'static PgCluster {
    match try_shared() {
        Ok(cluster) => cluster,
        Err(e) => panic!("portcullis-testbed: shared PostgreSQL cluster unavailable: {e}"),
    }
}

/// Creates a uniquely named database (`<prefix>_<pid>_<n>`) in the shared
/// cluster, owned by the superuser and usable (including `CREATE TABLE`) by
/// every test role. Databases are not dropped; the cluster is throwaway.
///
/// # Panics
/// If the shared cluster is unavailable or `CREATE DATABASE` fails.
pub fn fresh_database(prefix: &str) -> String {
    match shared().fresh_database(prefix) {
        Ok(name) => name,
        Err(e) => panic!("portcullis-testbed: creating a fresh database failed: {e}"),
    }
}

fn start_shared() -> Result<PgCluster, TestbedError> {
    let pki = TestPki::generate(&SHARED_CERT_NAMES)?;
    let cluster = PgCluster::start(ClusterOptions {
        tls: Some(ClusterTls::Pki(pki)),
        ..ClusterOptions::default()
    })?;
    // SAFETY: registering a plain `extern "C" fn` with no captured state.
    // If registration fails (only when the atexit table is full), we still
    // have the parent-death signal, so the error is ignored.
    unsafe {
        libc::atexit(stop_shared_at_exit);
    }
    Ok(cluster)
}

extern "C" fn stop_shared_at_exit() {
    // Unwinding out of an `extern "C"` fn aborts; cleanup is best-effort.
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(cluster)) = SHARED.get() {
            cluster.shutdown_and_cleanup();
        }
    });
}
