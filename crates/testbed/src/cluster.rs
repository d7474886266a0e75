//! Throwaway PostgreSQL clusters.
//!
//! [`PgCluster::start`] runs `initdb` (unless the directory already holds a
//! cluster), writes a fixed authentication setup, and starts `postgres` as a
//! direct child process — not via `pg_ctl`, which daemonizes and so would
//! leave a server running if the test binary or demo crashed. See
//! `postmaster` for how the child is supervised and `privilege` for running
//! as root.
//!
//! Layout of the cluster directory (a temp dir or the one given):
//!
//! ```text
//! <dir>/data/               PGDATA; TLS files are copied in here
//! <dir>/postgres.log        server stderr (see PgCluster::log_tail)
//! <dir>/.s.PGSQL.<port>     unix socket, used for superuser setup via psql
//! ```
//!
//! Authentication (first match wins, see [`PgCluster::hba_lines`]): the
//! unix socket is `trust` (it lives in a private directory); on TCP each
//! [test role](TEST_ROLES) exercises one method, and everyone else uses
//! SCRAM-SHA-256. Every role's password is `<name>-pw`.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bindir::find_bin_dir;
use crate::error::{Result, TestbedError};
use crate::postmaster::Postmaster;
use crate::privilege::{self, chown_if, RunAs};
use crate::tls::TestPki;

/// The superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";
/// The only address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// Role authenticated with an MD5-hashed password (`md5` in pg_hba).
pub const MD5_USER: &str = "md5user";
/// Role authenticated with a cleartext password (`password` in pg_hba).
pub const PASSWORD_USER: &str = "pwuser";
/// Role let in without a password (`trust` in pg_hba).
pub const TRUST_USER: &str = "trustuser";
/// Role that may only connect over TLS (SCRAM over `hostssl`, rejected on
/// `hostnossl`).
pub const TLS_ONLY_USER: &str = "tlsonly";
/// All roles created by [`PgCluster::start`] besides the superuser.
pub const TEST_ROLES: [&str; 4] = [MD5_USER, PASSWORD_USER, TRUST_USER, TLS_ONLY_USER];

/// The password of a test role: `<role>-pw`.
pub fn test_role_password(role: &str) -> String {
    format!("{role}-pw")
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum ClusterTls {
    /// Generated test PKI; kept by the cluster and available from
    /// [`PgCluster::tls`].
    Pki(TestPki),
    /// Existing PEM files. They are copied into the data directory because
    /// PostgreSQL insists the key be owned by the server user and mode 0600.
    Files {
        /// Server certificate (chain), PEM.
        cert: PathBuf,
        /// Server private key, PEM.
        key: PathBuf,
        /// CA for verifying client certificates, PEM (optional).
        ca: Option<PathBuf>,
    },
}

/// How to start a cluster. `ClusterOptions::default()` gives a temp dir, a
/// free port, no TLS.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Cluster directory; `None` creates a temp dir removed on drop. A given
    /// directory is kept, and reused if it already holds a cluster (roles and
    /// passwords are re-applied). Its path must be short enough for a unix
    /// socket (about 90 bytes).
    pub dir: Option<PathBuf>,
    /// TCP port on 127.0.0.1; `None` picks a free one (retrying if another
    /// process grabs it first).
    pub port: Option<u16>,
    /// Password for the `postgres` superuser over TCP (SCRAM).
    pub superuser_password: String,
    /// Enables `ssl=on` with this certificate.
    pub tls: Option<ClusterTls>,
    /// pg_hba lines inserted right after the `local` line, before the
    /// built-in TCP rules, so they take precedence.
    pub extra_hba_lines: Vec<String>,
    /// Extra `postgresql.conf` lines, appended after ours (so they win).
    pub extra_conf: Vec<String>,
    /// `max_connections`; tests and benchmarks open many connections, so
    /// the default is 200 rather than PostgreSQL's 100.
    pub max_connections: u32,
    /// Directory with the server binaries; `None` uses [`find_bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            dir: None,
            port: None,
            superuser_password: test_role_password(SUPERUSER),
            tls: None,
            extra_hba_lines: Vec::new(),
            extra_conf: Vec::new(),
            max_connections: 200,
            bin_dir: None,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// A running throwaway PostgreSQL server. Stopped on drop (and its temp dir
/// removed); see also [`PgCluster::stop`].
pub struct PgCluster {
    bin_dir: PathBuf,
    base_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    superuser_password: String,
    pki: Option<TestPki>,
    tls_enabled: bool,
    postmaster: Postmaster,
    /// `Some` while we own a temp dir; taken (and so deleted) on cleanup.
    temp_dir: Mutex<Option<tempfile::TempDir>>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("base_dir", &self.base_dir)
            .field("port", &self.port)
            .field("tls", &self.tls_enabled)
            .field("pid", &self.postmaster.pid())
            .finish_non_exhaustive()
    }
}

/// Attempts at a free port before giving up; clashes need another process
/// to bind the port between our probe and the server's bind, so a few
/// retries are plenty.
const PORT_ATTEMPTS: usize = 5;
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// How long each shutdown signal gets before escalating.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl PgCluster {
    /// Initializes (if needed) and starts a cluster, then creates the
    /// [test roles](TEST_ROLES). Blocks for a few seconds (initdb dominates);
    /// from async code call it inside `tokio::task::spawn_blocking`.
    pub fn start(options: ClusterOptions) -> Result<PgCluster> {
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => find_bin_dir()?,
        };
        let run_as = RunAs::detect()?;

        let (base_dir, temp_dir) = match &options.dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| TestbedError::io(format!("creating {}", dir.display()), e))?;
                let abs = fs::canonicalize(dir)
                    .map_err(|e| TestbedError::io(format!("resolving {}", dir.display()), e))?;
                (abs, None)
            }
            None => {
                reap_stale_temp_dirs();
                let tmp = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .map_err(|e| TestbedError::io("creating temp dir", e))?;
                write_file(
                    &tmp.path().join(OWNER_FILE),
                    std::process::id().to_string().as_bytes(),
                )?;
                (tmp.path().to_owned(), Some(tmp))
            }
        };
        let socket_len = base_dir.join(".s.PGSQL.65535").as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(TestbedError::InvalidOption(format!(
                "cluster directory {} is too long for a unix socket path ({socket_len} > {MAX_SOCKET_PATH} bytes)",
                base_dir.display()
            )));
        }
        chown_if(run_as, &base_dir)?;

        let data_dir = base_dir.join("data");
        let log_path = base_dir.join("postgres.log");
        if !data_dir.join("PG_VERSION").exists() {
            initdb(&bin_dir, &data_dir, run_as)?;
        }

        let pki = match &options.tls {
            Some(ClusterTls::Pki(pki)) => Some(pki.clone()),
            _ => None,
        };
        if let Some(tls) = &options.tls {
            install_tls(tls, &data_dir, run_as)?;
        }
        write_config_file(
            &data_dir.join("pg_hba.conf"),
            &Self::hba_lines(&options.extra_hba_lines).join("\n"),
            run_as,
        )?;
        ensure_include(&data_dir, run_as)?;

        let mut attempt = 0;
        let (port, postmaster) = loop {
            attempt += 1;
            let port = match options.port {
                Some(port) => port,
                None => free_port()?,
            };
            write_config_file(
                &data_dir.join(INCLUDE_FILE),
                &server_conf(&options, port, &base_dir),
                run_as,
            )?;
            let postmaster = spawn_postmaster(&bin_dir, &data_dir, &log_path, run_as)?;
            match wait_ready(&postmaster, &data_dir, options.start_timeout) {
                Ok(()) => break (port, postmaster),
                Err(Startup::Exited(status)) => {
                    let log_tail = tail_lines(&log_path, 30);
                    let clash = log_tail.contains("Address already in use");
                    if clash && options.port.is_none() && attempt < PORT_ATTEMPTS {
                        continue;
                    }
                    return Err(TestbedError::StartFailed {
                        reason: format!("postgres exited during startup ({status})"),
                        log_tail,
                    });
                }
                Err(Startup::TimedOut) => {
                    postmaster.stop(libc::SIGQUIT, STOP_GRACE);
                    return Err(TestbedError::StartFailed {
                        reason: format!("not ready after {:?}", options.start_timeout),
                        log_tail: tail_lines(&log_path, 30),
                    });
                }
            }
        };

        let cluster = PgCluster {
            bin_dir,
            base_dir,
            data_dir,
            log_path,
            port,
            superuser_password: options.superuser_password.clone(),
            pki,
            tls_enabled: options.tls.is_some(),
            postmaster,
            temp_dir: Mutex::new(temp_dir),
        };
        // On error `cluster` is dropped here, which stops the server.
        cluster.create_roles()?;
        Ok(cluster)
    }

    /// The pg_hba.conf lines written by [`PgCluster::start`], with `extra`
    /// placed where they take precedence over the built-in TCP rules.
    pub fn hba_lines(extra: &[String]) -> Vec<String> {
        let mut lines = vec![
            "# Written by portcullis-testbed; first match wins.".to_owned(),
            "local all all trust".to_owned(),
        ];
        lines.extend(extra.iter().cloned());
        lines.extend(
            [
                "host all md5user 127.0.0.1/32 md5",
                "host all pwuser 127.0.0.1/32 password",
                "host all trustuser 127.0.0.1/32 trust",
                "hostssl all tlsonly 127.0.0.1/32 scram-sha-256",
                "hostnossl all tlsonly 127.0.0.1/32 reject",
                "host all all 127.0.0.1/32 scram-sha-256",
            ]
            .map(str::to_owned),
        );
        lines
    }

    /// Creates (or, for a reused directory, updates) the superuser password
    /// and the test roles, and lets every role create objects in new
    /// databases.
    fn create_roles(&self) -> Result<()> {
        let mut sql = format!(
            "ALTER ROLE {SUPERUSER} PASSWORD {};\n",
            quote_literal(&self.superuser_password)
        );
        for role in TEST_ROLES {
            // md5user's verifier must be stored as MD5 or md5 auth fails.
            let encryption = if role == MD5_USER {
                "md5"
            } else {
                "scram-sha-256"
            };
            sql.push_str(&format!(
                "SET password_encryption = '{encryption}';\n\
                 DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) \
                 THEN CREATE ROLE {ident}; END IF; END$$;\n\
                 ALTER ROLE {ident} LOGIN PASSWORD {pw};\n",
                lit = quote_literal(role),
                ident = quote_ident(role),
                pw = quote_literal(&test_role_password(role)),
            ));
        }
        self.sql(SUPERUSER, &sql)?;
        // Since PostgreSQL 15 only the database owner may create objects in
        // `public`. Tests connect as the test roles to databases owned by
        // the superuser, so restore the pre-15 behaviour in the template
        // that every new database is copied from.
        self.sql("template1", "GRANT ALL ON SCHEMA public TO PUBLIC;")?;
        Ok(())
    }

    /// TCP port on [`HOST`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host to connect to over TCP (always `127.0.0.1`).
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// `host:port`, for socket addresses and proxy configs.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Directory holding the unix socket (the cluster directory).
    pub fn socket_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The cluster directory (temp dir or the one given).
    pub fn dir(&self) -> &Path {
        &self.base_dir
    }

    /// PGDATA.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Superuser name (`postgres`).
    pub fn superuser(&self) -> &'static str {
        SUPERUSER
    }

    /// Superuser password (SCRAM over TCP).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// Directory with the server binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Path of a client program matching the server version (`psql`,
    /// `pgbench`, ...) or, if the bin dir lacks it, the bare name for a
    /// `PATH` lookup.
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// The test PKI, when the cluster was started with [`ClusterTls::Pki`].
    pub fn tls(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// Whether `ssl=on`.
    pub fn tls_enabled(&self) -> bool {
        self.tls_enabled
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> i32 {
        self.postmaster.pid()
    }

    /// Whether the postmaster is still running (the demo uses this to
    /// notice the server dying underneath it).
    pub fn is_running(&self) -> bool {
        self.postmaster.exit_status().is_none()
    }

    /// A libpq keyword/value connection string for TCP, with every value
    /// quoted so passwords may contain spaces and quotes. Append options
    /// such as `" sslmode=require"` as needed.
    pub fn conn_str(&self, db: &str, user: &str, password: &str) -> String {
        format!(
            "host={} port={} dbname={} user={} password={}",
            quote_conn_value(HOST),
            self.port,
            quote_conn_value(db),
            quote_conn_value(user),
            quote_conn_value(password),
        )
    }

    /// [`PgCluster::conn_str`] for the superuser.
    pub fn superuser_conn_str(&self, db: &str) -> String {
        self.conn_str(db, SUPERUSER, &self.superuser_password)
    }

    /// A `psql` command connected as the superuser to `db` over the unix
    /// socket (trust), with `-X -q -v ON_ERROR_STOP=1` and libpq environment
    /// variables cleared so the caller's environment cannot redirect it.
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin("psql"));
        cmd.arg("-h")
            .arg(&self.base_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ]);
        clear_libpq_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// Runs `sql` (any number of statements, each in its own transaction,
    /// so `CREATE DATABASE` works) as the superuser in `db`, and returns the
    /// result rows as `psql -At` prints them (`|`-separated columns, one row
    /// per line), without the final newline.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = self.psql_command(db);
        cmd.args(["-A", "-t", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| TestbedError::io(format!("spawning {}", self.bin("psql").display()), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means psql exited early; its stderr says why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| TestbedError::io("waiting for psql", e))?;
        if !out.status.success() {
            return Err(TestbedError::CommandFailed {
                program: format!("psql -d {db}"),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        Ok(stdout)
    }

    /// Creates database `name`, owned by `owner` (the superuser if `None`).
    pub fn create_database(&self, name: &str, owner: Option<&str>) -> Result<()> {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if let Some(owner) = owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        sql.push(';');
        self.sql(SUPERUSER, &sql).map(drop)
    }

    /// Creates a database with a unique name (`<prefix>_<pid>_<n>`, prefix
    /// sanitized to `[a-z0-9_]`) owned by the superuser, and returns the
    /// name. Unique across tests in this process and across processes
    /// sharing a cluster; databases are never dropped (the cluster is
    /// throwaway).
    pub fn fresh_database(&self, prefix: &str) -> Result<String> {
        let name = unique_db_name(prefix);
        self.create_database(&name, None)?;
        Ok(name)
    }

    /// Path of the server log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_lines(&self.log_path, lines)
    }

    /// Stops the server and waits for it to exit: a fast shutdown (clients
    /// disconnected, data checkpointed) escalating to immediate and then
    /// SIGKILL. Idempotent. The directory is kept until drop.
    pub fn stop(&self) -> Result<()> {
        self.stop_with(libc::SIGINT)
    }

    fn stop_with(&self, signal: i32) -> Result<()> {
        match self.postmaster.stop(signal, STOP_GRACE) {
            Some(_) => Ok(()),
            None => Err(TestbedError::io(
                format!("stopping postgres (pid {})", self.postmaster.pid()),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            )),
        }
    }

    /// Stops the server and deletes the temp dir, if any. Used by `Drop` and
    /// by the shared cluster's exit hook; never panics.
    pub(crate) fn shutdown_and_cleanup(&self) {
        let mut temp = self.temp_dir.lock().unwrap_or_else(|e| e.into_inner());
        // A temp dir is deleted right after, so there is nothing to keep
        // consistent: immediate shutdown is fastest. A given directory may
        // be reused, so it gets a clean (fast) shutdown.
        let signal = if temp.is_some() {
            libc::SIGQUIT
        } else {
            libc::SIGINT
        };
        let _ = self.stop_with(signal);
        if let Some(dir) = temp.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.shutdown_and_cleanup();
    }
}

/// Prefix of temp cluster directories.
const TEMP_PREFIX: &str = "portcullis-pg-";
/// File in a temp cluster directory naming the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Deletes temp cluster directories whose owning process is gone — left
/// behind when a test binary was killed (its server stops by itself, see
/// `privilege::configure`, but nothing deletes the ~40 MB directory).
/// A directory is only removed if its owner file names a dead process and
/// no live postmaster holds it; anything unclear is left alone. Best-effort.
fn reap_stale_temp_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let pid_in = |file: &Path| -> Option<i32> {
            let text = fs::read_to_string(file).ok()?;
            text.lines().next()?.trim().parse().ok()
        };
        let Some(owner) = pid_in(&dir.join(OWNER_FILE)) else {
            continue; // not ours, or still being set up
        };
        let server = pid_in(&dir.join("data").join("postmaster.pid"));
        let server_gone = match server {
            Some(pid) => process_gone(pid),
            None => true,
        };
        if process_gone(owner) && server_gone {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// Whether no process `pid` exists (EPERM means it exists as another user).
fn process_gone(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence; no signal is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Name of our settings file, included from postgresql.conf so that
/// restarts (a new port) rewrite only our file.
const INCLUDE_FILE: &str = "portcullis.conf";

fn initdb(bin_dir: &Path, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let mut cmd = Command::new(bin_dir.join("initdb"));
    // Trust is temporary: pg_hba.conf is replaced before the server first
    // starts, and passwords are set over the unix socket afterwards, which
    // avoids a password file on disk.
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some(parent) = data_dir.parent() {
        cmd.current_dir(parent);
    }
    privilege::configure(&mut cmd, run_as, None);
    let out = cmd.output().map_err(|e| {
        TestbedError::io(format!("running {}", bin_dir.join("initdb").display()), e)
    })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            stderr.push_str("\nstdout: ");
            stderr.push_str(stdout.trim());
        }
        return Err(TestbedError::CommandFailed {
            program: format!("initdb -D {}", data_dir.display()),
            status: out.status,
            stderr,
        });
    }
    Ok(())
}

/// Puts server.crt/server.key/ca.crt into PGDATA, owned by the server user.
fn install_tls(tls: &ClusterTls, data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let cert = data_dir.join("server.crt");
    let key = data_dir.join("server.key");
    let ca = data_dir.join("ca.crt");
    match tls {
        ClusterTls::Pki(pki) => {
            pki.write_to(data_dir)?;
        }
        ClusterTls::Files {
            cert: src_cert,
            key: src_key,
            ca: src_ca,
        } => {
            copy_file(src_cert, &cert, 0o644)?;
            copy_file(src_key, &key, 0o600)?;
            match src_ca {
                Some(src) => copy_file(src, &ca, 0o644)?,
                None => {
                    // Don't leave a stale CA from a previous run trusted.
                    let _ = fs::remove_file(&ca);
                }
            }
        }
    }
    for path in [&cert, &key, &ca] {
        if path.exists() {
            chown_if(run_as, path)?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let contents =
        fs::read(from).map_err(|e| TestbedError::io(format!("reading {}", from.display()), e))?;
    write_file(to, &contents)?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(|e| TestbedError::io(format!("chmod {}", to.display()), e))
}

fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents)
        .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
}

fn write_config_file(path: &Path, contents: &str, run_as: Option<RunAs>) -> Result<()> {
    let mut text = contents.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_file(path, text.as_bytes())?;
    chown_if(run_as, path)
}

/// Appends `include_if_exists 'portcullis.conf'` to postgresql.conf once.
fn ensure_include(data_dir: &Path, run_as: Option<RunAs>) -> Result<()> {
    let conf = data_dir.join("postgresql.conf");
    let line = format!("include_if_exists '{INCLUDE_FILE}'");
    let existing = fs::read_to_string(&conf)
        .map_err(|e| TestbedError::io(format!("reading {}", conf.display()), e))?;
    if existing.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    write_config_file(
        &conf,
        &format!("{existing}\n# portcullis-testbed\n{line}\n"),
        run_as,
    )
}

/// Our postgresql.conf settings. Durability is off (fsync etc.): the data
/// is throwaway and this makes CREATE DATABASE and checkpoints much faster.
fn server_conf(options: &ClusterOptions, port: u16, socket_dir: &Path) -> String {
    let mut lines = vec![
        "# Written by portcullis-testbed on every start.".to_owned(),
        format!("listen_addresses = '{HOST}'"),
        format!("port = {port}"),
        format!(
            "unix_socket_directories = {}",
            quote_literal(&socket_dir.to_string_lossy())
        ),
        format!("max_connections = {}", options.max_connections),
        "fsync = off".to_owned(),
        "synchronous_commit = off".to_owned(),
        "full_page_writes = off".to_owned(),
        "timezone = 'UTC'".to_owned(),
        "log_timezone = 'UTC'".to_owned(),
        "lc_messages = 'C'".to_owned(),
    ];
    if options.tls.is_some() {
        lines.push("ssl = on".to_owned());
        lines.push("ssl_cert_file = 'server.crt'".to_owned());
        lines.push("ssl_key_file = 'server.key'".to_owned());
        let has_ca = match &options.tls {
            Some(ClusterTls::Files { ca, .. }) => ca.is_some(),
            _ => true,
        };
        if has_ca {
            lines.push("ssl_ca_file = 'ca.crt'".to_owned());
        }
    } else {
        lines.push("ssl = off".to_owned());
    }
    lines.extend(options.extra_conf.iter().cloned());
    lines.join("\n")
}

fn spawn_postmaster(
    bin_dir: &Path,
    data_dir: &Path,
    log_path: &Path,
    run_as: Option<RunAs>,
) -> Result<Postmaster> {
    let log = fs::File::create(log_path)
        .map_err(|e| TestbedError::io(format!("creating {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| TestbedError::io("duplicating log file handle", e))?;
    let mut cmd = Command::new(bin_dir.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Own process group: a Ctrl-C in the demo's terminal goes to the
        // demo, which then shuts the server down in order, instead of
        // hitting the server directly.
        .process_group(0);
    if let Some(parent) = data_dir.parent() {
        cmd.current_dir(parent);
    }
    // SIGINT = fast shutdown if we die without cleaning up.
    privilege::configure(&mut cmd, run_as, Some(libc::SIGINT));
    Postmaster::spawn(cmd).map_err(|e| {
        TestbedError::io(
            format!("spawning {}", bin_dir.join("postgres").display()),
            e,
        )
    })
}

enum Startup {
    Exited(ExitStatus),
    TimedOut,
}

/// Waits until postmaster.pid names our process and says "ready" — the
/// same signal `pg_ctl -w` uses, without spawning a client per poll.
fn wait_ready(
    postmaster: &Postmaster,
    data_dir: &Path,
    timeout: Duration,
) -> std::result::Result<(), Startup> {
    let pid_file = data_dir.join("postmaster.pid");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = postmaster.exit_status() {
            return Err(Startup::Exited(status));
        }
        if let Ok(contents) = fs::read_to_string(&pid_file) {
            let lines: Vec<&str> = contents.lines().collect();
            let ours = lines.first().map(|l| l.trim()) == Some(&*postmaster.pid().to_string());
            // Line 8 is the postmaster status (PM_STATUS_READY = "ready").
            if ours && lines.get(7).map(|l| l.trim()) == Some("ready") {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Startup::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks the kernel for an unused port. Racy by nature (it is free when we
/// look), which `start` handles by retrying on "Address already in use".
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| TestbedError::io("binding 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestbedError::io("reading local address", e))
}

/// Last `n` lines of a file, reading at most the final 64 KiB.
fn tail_lines(path: &Path, n: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Removes every libpq environment variable that could redirect or alter a
/// client tool (`psql`, `pgbench`), so tests connect exactly where they say.
pub fn clear_libpq_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGREQUIRESSL",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGCHANNELBINDING",
        "PGTARGETSESSIONATTRS",
        "PGGSSENCMODE",
        "PGAPPNAME",
        "PGCONNECT_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
}

/// Builds `<prefix>_<pid>_<n>` within PostgreSQL's 63-byte identifier limit.
fn unique_db_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut clean: String = prefix
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert_str(0, "db_");
    }
    let suffix = format!("_{}_{n}", std::process::id());
    clean.truncate(63 - suffix.len());
    clean + &suffix
}

/// SQL string literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// SQL identifier.
pub(crate) fn quote_ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// A libpq keyword/value value: single-quoted, `\` and `'` escaped.
fn quote_conn_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_are_unique_and_valid() {
        let a = unique_db_name("My Test-DB");
        let b = unique_db_name("My Test-DB");
        assert_ne!(a, b);
        assert!(a.starts_with("my_test_db_"));
        assert!(unique_db_name("9lives").starts_with("db_9lives"));
        assert!(unique_db_name(&"x".repeat(200)).len() <= 63);
    }

    #[test]
    fn process_liveness() {
        assert!(!process_gone(std::process::id() as i32));
        assert!(!process_gone(0));
        assert!(process_gone(i32::MAX - 1));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_conn_value(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn extra_hba_lines_come_first() {
        let lines = PgCluster::hba_lines(&["host all bob 127.0.0.1/32 reject".to_owned()]);
        let bob = lines.iter().position(|l| l.contains("bob")).unwrap();
        let md5 = lines.iter().position(|l| l.contains("md5user")).unwrap();
        assert!(bob < md5);
        assert_eq!(
            lines.last().unwrap(),
            "host all all 127.0.0.1/32 scram-sha-256"
        );
    }
}
