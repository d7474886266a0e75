//! Throwaway PostgreSQL for Portcullis' integration tests and the
//! `portcullis demo` command.
//!
//! - [`find_bin_dir`]: where the server binaries are (they are not on `PATH`
//!   on Debian).
//! - [`PgCluster`]: initdb + start a private server on 127.0.0.1 with a fixed
//!   set of test roles, one per authentication method; stopped on drop.
//! - [`shared`] / [`fresh_database`]: one cluster per test binary, one
//!   database per test, so tests run in parallel.
//! - [`TestPki`]: a CA and server certificate for TLS tests.
//! - [`client`]: a rustls connector for tokio-postgres with channel binding.
//!
//! When run as root (dev machines, CI), initdb and postgres run as the
//! `postgres` system user, which owns the cluster directory.

mod bindir;
pub mod client;
pub mod cluster;
mod error;
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
pub use shared::{fresh_database, shared, try_shared};
pub use tls::{IssuedCert, TestPki, TlsError, TlsFiles};
