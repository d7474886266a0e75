//! Throwaway PostgreSQL for Portcullis' integration tests and the
//! `portcullis demo` command.
//!
//! - [`find_bin_dir`]: where the server binaries are (they are not on `PATH`
//!   on Debian).
//! - [`PgCluster`]: initdb + start a private server on 127.0.0.1 with a fixed
//!   set of test roles, one per authentication method; stopped on drop.
//! - [`shared()`] / [`fresh_database`]: one cluster per test binary, one
//!   database per test, so tests run in parallel.
//! - [`TestPki`]: a CA and server certificate for TLS tests.
//! - [`client`]: a rustls connector for tokio-postgres with channel binding.
//! - [`oidc`]: a real OpenID provider (npm `oidc-provider` under Node.js)
//!   and an OAuth client that gets tokens from it.
//!
//! When run as root (dev machines, CI), initdb and postgres run as the
//! `postgres` system user, which owns the cluster directory.
//!
//! # In an integration test
//!
//! ```ignore
//! use portcullis_testbed::{connect, fresh_database, shared, test_role_password, MD5_USER};
//!
//! #[tokio::test]
//! async fn md5_through_the_proxy() {
//!     let pg = shared(); // started once per test binary, TLS on
//!     let db = fresh_database("md5_through_proxy"); // private to this test
//!     let conn = pg.conn_str(&db, MD5_USER, &test_role_password(MD5_USER));
//!     let (client, _task) = connect(&conn, pg.tls()).await.unwrap();
//!     // ... on failure, pg.log_tail(50) shows the server's side.
//! }
//! ```
//!
//! # In the demo
//!
//! ```ignore
//! let pki = TestPki::generate(&["localhost", "127.0.0.1"])?;
//! let options = ClusterOptions {
//!     dir: args.data_dir, // None = temp dir, deleted on drop
//!     tls: Some(ClusterTls::Pki(pki)),
//!     ..ClusterOptions::default()
//! };
//! let pg = tokio::task::spawn_blocking(move || PgCluster::start(options)).await??;
//! // point the proxy at pg.addr(); serve until Ctrl-C (tokio::signal::ctrl_c),
//! // then drop(pg): the server is stopped and a temp dir removed.
//! ```
//! The server runs in its own process group, so Ctrl-C reaches only the
//! demo, which decides the shutdown order; if the demo dies without
//! dropping the cluster, the server still stops (parent-death signal).

mod bindir;
pub mod client;
pub mod cluster;
mod error;
pub mod oidc;
mod postmaster;
mod privilege;
pub mod shared;
pub mod tls;

pub use bindir::{find_bin_dir, PG_BIN_ENV};
pub use client::{connect, RustlsConnect};
pub use cluster::{
    test_role_password, ClusterOptions, ClusterTls, PgCluster, HOST, MD5_USER, PASSWORD_USER,
    SUPERUSER, TEST_ROLES, TLS_ONLY_USER, TRUST_USER,
};
pub use error::TestbedError;
pub use privilege::SERVICE_USER;
/// The certificate generator, for tests that shape their own client
/// certificates.
pub use rcgen;
pub use shared::{fresh_database, shared, try_shared};
pub use tls::{IssuedCert, TestPki, TlsError, TlsFiles};
