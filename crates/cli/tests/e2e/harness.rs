//! Starting Portcullis in front of the shared test cluster.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use portcullis_config::{Config, ScramVerifier};
use portcullis_proxy::server::{Server, ServerHandle};
pub use portcullis_testbed::{shared, PgCluster, TestPki};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Client identities every test proxy knows: (name, password, extra TOML).
pub const ALICE: (&str, &str) = ("alice", "alice-secret");
pub const BOB: (&str, &str) = ("bob", "bob-secret");
/// Has max_connections = 2.
pub const LIMITED: (&str, &str) = ("limited", "limited-secret");

fn verifier(password: &str) -> String {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    c.entry(password.to_owned())
        .or_insert_with(|| ScramVerifier::generate(password.as_bytes()).to_string())
        .clone()
}

/// What a test proxy looks like.
#[derive(Clone)]
pub struct Setup {
    pub allow_plaintext: bool,
    /// Extra TOML appended to the generated configuration.
    pub extra: String,
    /// Extra `[server]` keys.
    pub server: String,
    /// Extra keys for the main target.
    pub target_extra: String,
    /// The main target's environment. Protocol tests use "development",
    /// where the default policies let ordinary DDL and functions through;
    /// the policy tests use "production".
    pub environment: &'static str,
    pub listener_max_connections: usize,
    pub admin: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            allow_plaintext: true,
            extra: String::new(),
            server: String::new(),
            target_extra: String::new(),
            environment: "development",
            listener_max_connections: 100,
            admin: false,
        }
    }
}

/// A Portcullis instance in front of one fresh database.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub handle: ServerHandle,
    /// The upstream database behind target "app".
    pub db: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub fn cluster() -> &'static PgCluster {
    shared()
}

pub fn pki() -> &'static TestPki {
    cluster().tls().expect("shared cluster has TLS")
}

/// Writes the test configuration for `setup` into `dir`.
pub fn write_config(dir: &Path, db: &str, setup: &Setup, listen: &str) -> PathBuf {
    let c = cluster();
    let files = pki().write_to(&dir.join("tls")).unwrap();
    std::fs::write(dir.join("pgpass"), c.superuser_password()).unwrap();
    let admin = if setup.admin {
        "[admin]\nlisten = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let text = format!(
        r#"
[server]
handshake_timeout = "5s"
{server}

{admin}

[tls]
cert = "{cert}"
key = "{key}"

[[listener]]
name = "test"
listen = "{listen}"
allow_plaintext = {plain}
max_connections = {maxconn}

[[target]]
name = "app"
environment = "{environment}"
host = "127.0.0.1"
port = {port}
database = "{db}"
user = "postgres"
password_file = "pgpass"
{target_extra}

[[user]]
name = "{alice}"
scram = "{alice_v}"

[[user]]
name = "{bob}"
kind = "agent"
groups = ["agents"]
scram = "{bob_v}"

[[user]]
name = "{limited}"
scram = "{limited_v}"
max_connections = 2

{extra}
"#,
        server = setup.server,
        cert = files.server_cert.display(),
        key = files.server_key.display(),
        plain = setup.allow_plaintext,
        maxconn = setup.listener_max_connections,
        port = c.port(),
        target_extra = setup.target_extra,
        environment = setup.environment,
        alice = ALICE.0,
        alice_v = verifier(ALICE.1),
        bob = BOB.0,
        bob_v = verifier(BOB.1),
        limited = LIMITED.0,
        limited_v = verifier(LIMITED.1),
        extra = setup.extra,
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Proxy {
    pub async fn start() -> Proxy {
        Proxy::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Proxy {
        let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
            .await
            .unwrap();
        Proxy::with_db(setup, db).await
    }

    pub async fn with_db(setup: Setup, db: String) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), &db, &setup, "127.0.0.1:0");
        let config = Config::load(&config_path).unwrap_or_else(|e| panic!("test config: {e}"));
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addrs()[0].1;
        let admin = server.admin_addr();
        let handle = server.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Proxy {
            addr,
            admin,
            handle,
            db,
            dir,
            config_path,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// libpq-style connection string for `user` to `target`.
    pub fn conn_str_for(&self, target: &str, user: (&str, &str), extra: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={target} user={} password={} {extra}",
            self.addr.port(),
            user.0,
            user.1
        )
    }

    pub fn conn_str(&self, user: (&str, &str), extra: &str) -> String {
        self.conn_str_for("app", user, extra)
    }

    /// Connects as alice over TLS.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.connect(&self.conn_str(ALICE, "sslmode=require"))
            .await
            .unwrap()
    }

    pub async fn connect(
        &self,
        conn_str: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, _task) = portcullis_testbed::connect(conn_str, Some(pki())).await?;
        Ok(client)
    }

    /// Stops the proxy and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
    }

    /// Stops the proxy and hands back its directory (configuration, audit
    /// store), which would otherwise go with it.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Runs SQL directly on the upstream database as superuser.
    pub fn upstream_sql(&self, sql: &str) -> String {
        cluster().sql(&self.db, sql).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server (or proxy) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// The record of `subject`'s first successful login in the audit store of
/// a proxy's folder (from [`Proxy::shutdown`]).
pub fn login_record(dir: &Path, subject: &str) -> portcullis_audit::record::ConnectionRecord {
    use portcullis_audit::record::{ConnectionResult, Record, RecordKind};
    let store =
        portcullis_audit::SqliteStore::open_read_only(&dir.join("portcullis-audit.db")).unwrap();
    let found = portcullis_audit::search(
        &store,
        &portcullis_audit::search::Filter {
            kinds: vec![RecordKind::Connection],
            subject: Some(subject.into()),
            limit: 100,
            ..portcullis_audit::search::Filter::default()
        },
    )
    .unwrap();
    found
        .iter()
        .find_map(|f| match &f.record {
            Record::Connection(c) if matches!(c.result, ConnectionResult::Succeeded { .. }) => {
                Some((**c).clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no login record for {subject}: {found:?}"))
}

/// A tokio-postgres session of `who` over TLS.
pub async fn tls_client(proxy: &Proxy, who: (&str, &str)) -> tokio_postgres::Client {
    proxy
        .connect(&proxy.conn_str(who, "sslmode=require"))
        .await
        .unwrap()
}

/// `e` is the 54000 of the `[[limit]]` named "agents", its message saying
/// `words`, with a hint.
#[track_caller]
pub fn agents_limit_error(e: &tokio_postgres::Error, words: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("54000"), "{e:?}");
    let db = e.as_db_error().unwrap();
    assert!(db.message().contains("\"agents\""), "{}", db.message());
    assert!(db.message().contains(words), "{}", db.message());
    assert!(db.hint().is_some());
}
