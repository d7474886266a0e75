//! `portcullis demo`: a throwaway PostgreSQL with a seeded shop database,
//! Portcullis in front of it with two targets and three identities, and
//! ready-to-paste connection lines. Runs until Ctrl-C and cleans up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_config::{Config, ScramVerifier};
use portcullis_proxy::server::Server;
use portcullis_testbed::cluster::{ClusterOptions, ClusterTls, PgCluster};
use portcullis_testbed::tls::TestPki;
use serde_json::json;

const SEED: &str = include_str!("seed.sql");
/// The role Portcullis logs in to PostgreSQL as for the production target;
/// it owns the `shop` database and nothing else.
const UPSTREAM_ROLE: &str = "portcullis";
/// The role for the staging target, owning only `shop_staging`. Two roles,
/// so that a session through staging cannot own, and so cannot drop,
/// rename or alter, production's objects even if a statement got past the
/// policies: the server's privileges are the second wall.
const STAGING_ROLE: &str = "portcullis_staging";
/// A read-only role on `shop`: the access profile of the demo's API-key
/// agent, so that the database itself refuses its writes.
const READER_ROLE: &str = "portcullis_reader";
/// The agent that logs in with an API key.
const KEY_AGENT: &str = "report-bot";
/// What people signing in through the demo's OpenID provider ask for: an
/// access token for Portcullis (its audience), with their email and
/// groups, and a refresh token.
const SSO_RESOURCE: &str = "urn:portcullis";
const SSO_SCOPE: &str = "openid email groups offline_access db";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep everything (cluster, certificates, configuration) in this
    /// directory instead of a temporary one. An existing demo directory is
    /// reused.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Address the proxy listens on.
    #[arg(long, default_value = "127.0.0.1:6432", value_name = "ADDR")]
    listen: SocketAddr,
    /// Print the connection details as one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

/// A demo identity.
struct DemoUser {
    name: &'static str,
    kind: &'static str,
    groups: &'static [&'static str],
    role: &'static str,
    password: String,
}

fn random_password() -> String {
    use base64::Engine;
    let bytes: [u8; 12] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn run(args: DemoArgs) -> ExitCode {
    crate::logging::init(portcullis_config::LogFormat::Human);
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A demo ready to serve: the seeded cluster, the configuration written
/// for it, and the identities in it.
struct Demo {
    dir: PathBuf,
    config_path: PathBuf,
    ca_cert: PathBuf,
    /// Issued the certificates of PostgreSQL and Portcullis.
    #[cfg_attr(not(test), allow(dead_code))]
    pki: TestPki,
    upstream_password: String,
    /// The password of [`STAGING_ROLE`].
    staging_password: String,
    users: Vec<DemoUser>,
    /// The API key of [`KEY_AGENT`], made for this run.
    agent_key: String,
    /// The demo's own OpenID provider (the test bed's), when Node.js and
    /// its packages are installed; stopped on drop.
    sso: Option<portcullis_testbed::oidc::OidcProvider>,
    /// Declared before `_temp` so PostgreSQL stops before its directory is
    /// removed.
    cluster: PgCluster,
    _temp: Option<tempfile::TempDir>,
}

/// Run as root, the demo's PostgreSQL runs as the `postgres` user, which
/// must be able to pass through `dir` (mktemp -d makes it 0700): the
/// directory itself gets the traverse bit for others (not read: its files
/// stay private, the secrets in it are 0600); a directory above it that
/// stops postgres is an error saying what to do.
fn reachable_by_postgres(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001)).map_err(
            |e| {
                format!(
                    "cannot make {} traversable for postgres: {e}",
                    dir.display()
                )
            },
        )?;
    }
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        if mode & 0o001 == 0 {
            return Err(format!(
                "the demo's PostgreSQL runs as the postgres user, which cannot reach {}: {} is not traversable by others; choose a directory under /tmp, or run `chmod o+x {}`",
                dir.display(),
                ancestor.display(),
                ancestor.display()
            ));
        }
    }
    Ok(())
}

/// Starts PostgreSQL in `dir` (a temporary directory if `None`), seeds it
/// and writes a configuration listening on `listen`.
fn set_up(dir: Option<&Path>, listen: &SocketAddr) -> Result<Demo, String> {
    let (dir, temp) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            let d = d
                .canonicalize()
                .map_err(|e| format!("{}: {e}", d.display()))?;
            (d, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("portcullis-demo-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    reachable_by_postgres(&dir)?;
    eprintln!("Starting a throwaway PostgreSQL in {} ...", dir.display());
    let pki = TestPki::generate(&["localhost", "127.0.0.1"]).map_err(|e| e.to_string())?;
    let tls_files = pki.write_to(&dir.join("tls")).map_err(|e| e.to_string())?;
    let cluster = PgCluster::start(ClusterOptions {
        dir: Some(dir.join("pg")),
        superuser_password: random_password(),
        tls: Some(ClusterTls::Pki(pki.clone())),
        ..ClusterOptions::default()
    })
    .map_err(|e| format!("cannot start PostgreSQL: {e}"))?;

    let upstream_password = random_password();
    let staging_password = random_password();
    let reader_password = random_password();
    seed(&cluster, &upstream_password, &staging_password)?;
    read_only_role(&cluster, &reader_password)?;

    let users = vec![
        DemoUser {
            name: "dana",
            kind: "human",
            groups: &["developers"],
            role: "developer",
            password: random_password(),
        },
        DemoUser {
            name: "olga",
            kind: "human",
            groups: &["dba", "approvers"],
            role: "DBA, can approve",
            password: random_password(),
        },
        DemoUser {
            name: "agent-7",
            kind: "agent",
            groups: &["agents"],
            role: "AI agent (service identity)",
            password: random_password(),
        },
    ];
    let sso = match portcullis_testbed::oidc::OidcProvider::start() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("(No SSO sign-in in this demo: {e}.)");
            None
        }
    };
    let config_path = write_config(
        &dir,
        listen,
        &cluster,
        &tls_files,
        &RolePasswords {
            upstream: &upstream_password,
            staging: &staging_password,
            reader: &reader_password,
        },
        &users,
        sso.as_ref().map(|p| p.issuer.as_str()),
    )?;
    let agent_key = make_agent_key(&config_path)?;
    Ok(Demo {
        dir,
        config_path,
        ca_cert: tls_files.ca_cert,
        pki,
        upstream_password,
        staging_password,
        users,
        agent_key,
        sso,
        cluster,
        _temp: temp,
    })
}

/// [`READER_ROLE`]: may connect to `shop` and read its tables, nothing
/// more.
fn read_only_role(cluster: &PgCluster, password: &str) -> Result<(), String> {
    let sql = |db: &str, sql: &str| {
        cluster
            .sql(db, sql)
            .map_err(|e| format!("making the read-only role: {e}"))
    };
    sql(
        "postgres",
        &format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN CREATE ROLE {READER_ROLE} LOGIN; END IF; END$$; \
             ALTER ROLE {READER_ROLE} PASSWORD '{password}'; \
             GRANT CONNECT ON DATABASE shop TO {READER_ROLE}"
        ),
    )?;
    sql(
        "shop",
        &format!(
            "GRANT USAGE ON SCHEMA public TO {READER_ROLE}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}"
        ),
    )?;
    Ok(())
}

/// An API key for [`KEY_AGENT`], acting for dana, in the control-plane
/// store the configuration names, valid for a day.
fn make_agent_key(config_path: &Path) -> Result<String, String> {
    use portcullis_identity::keys::{unix_now, KeyStore, NewKey};
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let store =
        KeyStore::open(&config.resolve(&config.identity.store)).map_err(|e| e.to_string())?;
    let (_, key) = store
        .create(
            NewKey {
                name: KEY_AGENT.into(),
                kind: portcullis_identity::Kind::Agent,
                groups: vec!["agents".into()],
                on_behalf_of: Some("dana".into()),
                expires_at: Some(unix_now() + 86_400),
            },
            unix_now(),
        )
        .map_err(|e| e.to_string())?;
    Ok(key)
}

fn demo(args: DemoArgs) -> Result<(), String> {
    let demo = set_up(args.dir.as_deref(), &args.listen)?;
    let config = Config::load(&demo.config_path).map_err(|e| e.to_string())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let server = Server::bind(config).await.map_err(|e| e.to_string())?;
        let proxy = server
            .local_addrs()
            .first()
            .map(|(_, a)| *a)
            .ok_or("no listener")?;
        let admin = server.admin_addr();
        print_details(&args, &demo, proxy, admin);
        crate::serve(server).await;
        Ok::<(), String>(())
    })?;
    eprintln!("Stopping PostgreSQL and cleaning up ...");
    drop(demo);
    Ok(())
}

/// Each demo database with the role that owns it (and that its target logs
/// in as).
const DATABASES: [(&str, &str); 2] = [("shop", UPSTREAM_ROLE), ("shop_staging", STAGING_ROLE)];

fn seed(
    cluster: &PgCluster,
    upstream_password: &str,
    staging_password: &str,
) -> Result<(), String> {
    let sql = |db: &str, sql: &str| {
        cluster
            .sql(db, sql)
            .map_err(|e| format!("seeding the demo: {e}"))
    };
    let exists = sql(
        "postgres",
        "SELECT 1 FROM pg_database WHERE datname = 'shop'",
    )?;
    for (role, password) in [
        (UPSTREAM_ROLE, upstream_password),
        (STAGING_ROLE, staging_password),
    ] {
        sql(
            "postgres",
            &format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} LOGIN; END IF; END$$; \
                 ALTER ROLE {role} PASSWORD '{password}'"
            ),
        )?;
    }
    if exists.trim() == "1" {
        eprintln!("Reusing the demo databases already in this directory.");
        return separate_staging_owner(cluster);
    }
    for (db, owner) in DATABASES {
        // Only the owner may connect: each target's role reaches its own
        // database and no other.
        sql("postgres", &format!("CREATE DATABASE {db} OWNER {owner}"))?;
        sql(
            "postgres",
            &format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        )?;
        sql(db, &format!("SET ROLE {owner};\n{SEED}"))?;
    }
    Ok(())
}

/// A demo directory from before the targets had roles of their own has
/// `shop_staging` owned by the production role: hand it to the staging
/// role (REASSIGN also moves `shop` itself, a shared object, so it is
/// given back).
fn separate_staging_owner(cluster: &PgCluster) -> Result<(), String> {
    let sql = |db: &str, sql: &str| {
        cluster
            .sql(db, sql)
            .map_err(|e| format!("updating the demo databases: {e}"))
    };
    let owner = sql(
        "postgres",
        "SELECT datdba::regrole FROM pg_database WHERE datname = 'shop_staging'",
    )?;
    if owner.trim() == STAGING_ROLE {
        return Ok(());
    }
    sql(
        "shop_staging",
        &format!("REASSIGN OWNED BY {UPSTREAM_ROLE} TO {STAGING_ROLE}"),
    )?;
    sql(
        "postgres",
        &format!(
            "ALTER DATABASE shop OWNER TO {UPSTREAM_ROLE}; \
             REVOKE ALL ON DATABASE shop FROM PUBLIC; REVOKE ALL ON DATABASE shop_staging FROM PUBLIC"
        ),
    )?;
    Ok(())
}

/// The passwords of the upstream roles the configuration names.
struct RolePasswords<'a> {
    upstream: &'a str,
    staging: &'a str,
    reader: &'a str,
}

fn write_config(
    dir: &Path,
    listen: &SocketAddr,
    cluster: &PgCluster,
    tls: &portcullis_testbed::tls::TlsFiles,
    passwords: &RolePasswords<'_>,
    users: &[DemoUser],
    sso_issuer: Option<&str>,
) -> Result<PathBuf, String> {
    let secret = dir.join("upstream-password");
    write_private(&secret, passwords.upstream)?;
    let staging_secret = dir.join("upstream-password-staging");
    write_private(&staging_secret, passwords.staging)?;
    let reader_secret = dir.join("upstream-password-reader");
    write_private(&reader_secret, passwords.reader)?;
    let mut text = format!(
        r#"# Written by `portcullis demo`. Edit it and send SIGHUP (or POST /reload
# to the admin listener) to reload without dropping sessions.

[server]
log_format = "human"

[admin]
listen = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"

[[listener]]
name = "demo"
listen = "{listen}"

# Production: no row_limit here, so the default applies: at most {limit}
# rows per data-changing statement. Raise it with row_limit = N, or turn it
# off with row_limit = "off".
[[target]]
name = "shop"
environment = "production"
host = "127.0.0.1"
port = {port}
user = "{UPSTREAM_ROLE}"
password_file = "{secret}"
sslmode = "verify-full"
sslrootcert = "{ca}"

# The API-key agent logs in to shop as a read-only role: the database
# itself refuses its writes, whatever the policies allow.
[[target.profile]]
name = "agents-read-only"
user = "{READER_ROLE}"
password_file = "{reader_secret}"
subjects = ["{KEY_AGENT}"]

# Staging logs in as a role of its own, which owns only shop_staging.
[[target]]
name = "shop_staging"
environment = "staging"
host = "127.0.0.1"
port = {port}
user = "{STAGING_ROLE}"
password_file = "{staging_secret}"
sslmode = "require"
"#,
        cert = tls.server_cert.display(),
        key = tls.server_key.display(),
        ca = tls.ca_cert.display(),
        port = cluster.port(),
        secret = secret.display(),
        staging_secret = staging_secret.display(),
        reader_secret = reader_secret.display(),
        limit = portcullis_config::DEFAULT_PRODUCTION_ROW_LIMIT,
    );
    text.push_str(
        "\n# Agents: statements end after 30 seconds (they cannot raise it), at most\n\
         # 5 sessions each, and an exfiltration budget: a statement may return\n\
         # 1000 rows and a session 10 MB; past that the statement fails (54000).\n\
         [[limit]]\nname = \"agents\"\nkinds = [\"agent\"]\n\
         statement_timeout = \"30s\"\nmax_sessions = 5\nmax_rows_returned = 1000\n\
         max_bytes_returned_per_session = 10000000\n",
    );
    for u in users {
        let groups: Vec<String> = u.groups.iter().map(|g| format!("\"{g}\"")).collect();
        text.push_str(&format!(
            "\n[[user]]\nname = \"{}\"\nkind = \"{}\"\ngroups = [{}]\nscram = \"{}\"\n",
            u.name,
            u.kind,
            groups.join(", "),
            ScramVerifier::generate(u.password.as_bytes())
        ));
    }
    if let Some(issuer) = sso_issuer {
        text.push_str(&format!(
            "\n# People sign in at the demo's own OpenID provider (`portcullis login`)\n\
             # and present its token as their password; their user name is their\n\
             # email, their groups come from the token.\n[[identity.oidc]]\n\
             issuer = \"{issuer}\"\naudience = \"{SSO_RESOURCE}\"\nuser_claim = \"email\"\n\
             groups_claim = \"groups\"\nallowed_domains = [\"example.com\"]\n"
        ));
    }
    write_policies(&dir.join("policies"))?;
    text.push_str(
        "\n# The default policies, and one of the demo's own: the DBAs may see\n\
         # classified columns unmasked on staging (masking is on with no\n\
         # configuration; see docs/MASKING.md).\n[policy]\nfiles = [\"policies\"]\n",
    );
    let path = dir.join("portcullis.toml");
    write_private(&path, &text)?;
    Ok(path)
}

/// Who may see classified columns unmasked in the demo.
pub(crate) const DEMO_UNMASK_POLICY: &str = r#"// The demo's own policy: DBAs see classified columns unmasked on staging,
// password hashes excepted. Everyone else, and everyone on production,
// sees them masked (nothing grants Unmask otherwise).
@id("dba-unmasks-on-staging")
permit(principal in Portcullis::Group::"dba", action == Portcullis::Action::"Unmask", resource)
when { context.environment == "staging" && resource.classification != "password_hash" };
"#;

/// The default bundle, and the demo's unmask policy beside it.
fn write_policies(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for source in portcullis_policy::default_bundle() {
        // Names are paths below the bundle's folder (`default/base.cedar`).
        let path = dir.join(&source.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        write_private(&path, &source.text)?;
    }
    write_private(&dir.join("zz-demo-unmask.cedar"), DEMO_UNMASK_POLICY)
}

/// What the printed instructions show of masking: a query of classified
/// columns, masked for everyone on production.
const TRY_MASKING: &str = "SELECT full_name, email, phone, ssn FROM customers ORDER BY id LIMIT 3";

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn dsn(host: &str, port: u16, db: &str, user: &str, password: &str) -> String {
    format!("host={host} port={port} dbname={db} user={user} password={password} sslmode=require")
}

/// What happens to a statement the instructions suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Runs,
    /// Refused by this default policy (SQLSTATE 42501).
    Policy(&'static str),
    /// Runs, changes more rows than the target's row limit, and is rolled
    /// back (SQLSTATE 54000).
    OverRowLimit,
}

/// What the printed instructions suggest trying on the production target,
/// and what happens to each there. On the staging target every one of them
/// runs. The demo's test holds the proxy to this list.
const TRY_ON_PRODUCTION: &[(&str, Verdict)] = &[
    (
        "SELECT id, status, total_cents FROM orders ORDER BY id LIMIT 5",
        Verdict::Runs,
    ),
    (
        "UPDATE orders SET status = 'cancelled' WHERE id = 1",
        Verdict::Runs,
    ),
    // Cancelling old orders, but the status filter was forgotten: the WHERE
    // limits nothing in practice (every order is older than an hour), which
    // no static rule can know. The row limit can.
    (
        "UPDATE orders SET status = 'cancelled' WHERE created_at < now() - interval '1 hour'",
        Verdict::OverRowLimit,
    ),
    (
        "DELETE FROM api_tokens",
        Verdict::Policy("deny-unfiltered-write-in-production"),
    ),
    (
        "DROP TABLE api_tokens",
        Verdict::Policy("deny-drop-in-production"),
    ),
];

/// What the instructions suggest trying on the staging target: it cannot
/// reach production's database, with or without FORCE.
const TRY_ON_STAGING: &[(&str, &str)] = &[
    ("DROP DATABASE shop", "deny-other-database"),
    (
        "DROP DATABASE shop WITH (FORCE)",
        "deny-dangerous-capabilities",
    ),
];

/// What the instructions suggest the developer runs on the production
/// target: held there until a DBA approves it.
const TRY_APPROVAL: &str = "CREATE INDEX orders_total_cents_idx ON orders (total_cents)";

/// The statement `policy explain` is shown with.
const EXPLAIN_EXAMPLE: &str = "DELETE FROM api_tokens";

/// How to run this binary again, for a ready-to-paste command line.
fn this_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "portcullis".to_owned())
}

/// How [`KEY_AGENT`] connects through the proxy: with its key, over TLS
/// (keys are never asked for over plaintext).
/// The API-key agent's connection line (TLS, as every [`dsn`] is: keys are
/// only accepted over TLS).
fn agent_dsn(proxy: SocketAddr, key: &str) -> String {
    dsn(
        &proxy.ip().to_string(),
        proxy.port(),
        "shop",
        KEY_AGENT,
        key,
    )
}

/// The `portcullis login` arguments for the demo's provider and proxy.
fn sso_login_args(issuer: &str, proxy: SocketAddr, ca: &Path) -> Vec<String> {
    vec![
        "login".into(),
        "--issuer".into(),
        issuer.into(),
        "--resource".into(),
        SSO_RESOURCE.into(),
        "--scope".into(),
        SSO_SCOPE.into(),
        "--proxy".into(),
        proxy.to_string(),
        "--proxy-ca".into(),
        ca.display().to_string(),
    ]
}

fn print_details(args: &DemoArgs, demo: &Demo, proxy: SocketAddr, admin: Option<SocketAddr>) {
    let Demo {
        dir,
        config_path: config,
        ca_cert: ca,
        cluster,
        upstream_password,
        staging_password,
        users,
        agent_key,
        sso,
        ..
    } = demo;
    let sso_login = sso.as_ref().map(|p| sso_login_args(&p.issuer, proxy, ca));
    let agent_dsn = agent_dsn(proxy, agent_key);
    let host = proxy.ip().to_string();
    let direct = dsn(
        cluster.host(),
        cluster.port(),
        "shop",
        UPSTREAM_ROLE,
        upstream_password,
    );
    let explain = format!(
        "{} policy explain -c {} --target shop --user {} \"{EXPLAIN_EXAMPLE}\"",
        this_binary(),
        config.display(),
        users[0].name
    );
    if args.json {
        let users: Vec<_> = users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "kind": u.kind,
                    "groups": u.groups,
                    "password": u.password,
                    "dsn": dsn(&host, proxy.port(), "shop", u.name, &u.password),
                    "dsn_staging": dsn(&host, proxy.port(), "shop_staging", u.name, &u.password),
                })
            })
            .collect();
        let examples: Vec<_> = TRY_ON_PRODUCTION
            .iter()
            .map(|(sql, verdict)| {
                let (by, sqlstate) = match verdict {
                    Verdict::Runs => (None, None),
                    Verdict::Policy(p) => (Some(*p), Some("42501")),
                    Verdict::OverRowLimit => (Some("row_limit"), Some("54000")),
                };
                json!({ "sql": sql, "refused_on_production_by": by, "sqlstate": sqlstate })
            })
            .collect();
        let staging_examples: Vec<_> = TRY_ON_STAGING
            .iter()
            .map(|(sql, policy)| {
                json!({ "sql": sql, "refused_on_staging_by": policy, "sqlstate": "42501" })
            })
            .collect();
        let out = json!({
            "proxy": { "host": host, "port": proxy.port() },
            "admin": admin.map(|a| format!("http://{a}")),
            "targets": [
                {
                    "name": "shop",
                    "environment": "production",
                    "upstream_user": UPSTREAM_ROLE,
                    "row_limit": portcullis_config::DEFAULT_PRODUCTION_ROW_LIMIT,
                },
                {
                    "name": "shop_staging",
                    "environment": "staging",
                    "upstream_user": STAGING_ROLE,
                    "row_limit": null,
                },
            ],
            "users": users,
            "agent_key": {
                "name": KEY_AGENT,
                "kind": "agent",
                "on_behalf_of": "dana",
                "key": agent_key,
                "upstream_role": READER_ROLE,
                "dsn": agent_dsn,
            },
            "sso": sso.as_ref().zip(sso_login.as_ref()).map(|(p, login)| json!({
                "issuer": p.issuer,
                "accounts": ["dana", "erin", "mallory"],
                "login": login,
                "user": "dana@example.com",
            })),
            "examples": examples,
            "staging_examples": staging_examples,
            "approval_example": {
                "sql": TRY_APPROVAL,
                "as": demo.users[0].name,
                "approver": demo.users[1].name,
                "approve": admin.map(|a| format!(
                    "{} approvals approve REQUEST-ID --url http://{a} --user {}",
                    this_binary(),
                    demo.users[1].name
                )),
            },
            "explain": explain,
            "upstream": {
                "host": cluster.host(),
                "port": cluster.port(),
                "user": UPSTREAM_ROLE,
                "password": upstream_password,
                "dsn": direct,
            },
            "upstream_staging": {
                "host": cluster.host(),
                "port": cluster.port(),
                "user": STAGING_ROLE,
                "password": staging_password,
                "dsn": dsn(
                    cluster.host(),
                    cluster.port(),
                    "shop_staging",
                    STAGING_ROLE,
                    staging_password,
                ),
            },
            "ca_cert": ca,
            "config": config,
            "dir": dir,
            "pid": std::process::id(),
        });
        println!("{out}");
        return;
    }
    let mut s = String::new();
    s.push_str("\nPortcullis demo is running. Press Ctrl-C to stop; everything is cleaned up.\n\n");
    s.push_str(
        "Targets: shop (production), shop_staging (staging)\n\nConnect through Portcullis:\n",
    );
    for u in users {
        s.push_str(&format!("  # {} ({})\n", u.name, u.role));
        s.push_str(&format!(
            "  psql \"{}\"\n",
            dsn(&host, proxy.port(), "shop", u.name, &u.password)
        ));
    }
    s.push_str(&format!(
        "  # {KEY_AGENT} (AI agent with an API key, acting for dana; TLS only; logs in as the\n  \
         # read-only role {READER_ROLE}, so the database refuses its writes; like agent-7\n  \
         # it may read 1000 rows per statement: SELECT * FROM orders fails, 54000)\n  \
         psql \"{agent_dsn}\"\n"
    ));
    if let Some(login) = &sso_login {
        let quoted: Vec<String> = login
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.clone()
                }
            })
            .collect();
        s.push_str(&format!(
            "  # a person signing in with SSO at the demo's own OpenID provider (sign in as\n  \
             # dana; the token names dana@example.com, group engineers; add --device for a\n  \
             # code to enter in any browser), then psql with the token as the password.\n  \
             # The demo's provider asks only for a name, no password: anyone on this\n  \
             # machine can sign in through it while the demo runs.\n  \
             {} {}\n  {} psql shop\n",
            this_binary(),
            quoted.join(" "),
            this_binary()
        ));
    }
    s.push_str(&format!(
        "  # the same users reach staging with dbname=shop_staging\n\nDirect to PostgreSQL, bypassing Portcullis (for comparison):\n  psql \"{direct}\"\n\n"
    ));
    s.push_str(
        "Guardrails: every statement is judged by the default policies. On shop (production):\n",
    );
    let limit = portcullis_config::DEFAULT_PRODUCTION_ROW_LIMIT;
    for (sql, verdict) in TRY_ON_PRODUCTION {
        let verdict = match verdict {
            Verdict::Runs => "runs".to_owned(),
            Verdict::Policy(p) => format!("refused, SQLSTATE 42501, policy {p}"),
            Verdict::OverRowLimit => format!(
                "refused, SQLSTATE 54000: changes more than {limit} rows, production's default row limit"
            ),
        };
        s.push_str(&format!("  {sql};\n      -- {verdict}\n"));
    }
    s.push_str("On shop_staging they all run. But staging cannot reach production's database:\n");
    for (sql, policy) in TRY_ON_STAGING {
        s.push_str(&format!(
            "  {sql};\n      -- on shop_staging: refused, SQLSTATE 42501, policy {policy}\n"
        ));
    }
    s.push_str(&format!(
        "and its upstream role ({STAGING_ROLE}) owns nothing in production anyway.\n\
         Inside a transaction a refusal aborts it, as any PostgreSQL error does.\n\
         Why a statement is refused, step by step:\n  {explain}\n\
         Observe mode (log what would be refused, refuse nothing): add enforcement = \"observe\"\n\
         to the shop [[target]] in the configuration and reload; new sessions use it.\n\n"
    ));
    s.push_str(&format!(
        "Masking, with no configuration: classified columns come back masked, whatever the query:\n  \
         {TRY_MASKING};\n      -- masked for every user on shop; olga (DBA) sees it unmasked on shop_staging\n  \
         SELECT upper(email), row_to_json(c) FROM customers c LIMIT 1;\n      -- computed from masked columns: masked whole\n\n"
    ));
    if let (Some(a), [dev, dba, ..]) = (admin, users.as_slice()) {
        s.push_str(&format!(
            "Approvals: on shop a schema change waits inside the session until a DBA approves it.
             As {dev} (developer), on shop:
               {TRY_APPROVAL};
      -- held: psql prints the request id (held for approval: request R-...) and waits
             Then in another terminal, as {dba} (DBA):
               PORTCULLIS_PASSWORD='{pw}' {bin} approvals list --url http://{a} --user {dba}
               PORTCULLIS_PASSWORD='{pw}' {bin} approvals approve R-... --url http://{a} --user {dba}
                   -- the statement completes in {dev}'s session ({bin} approvals deny R-... --reason '...' refuses it)

",
            dev = dev.name,
            dba = dba.name,
            pw = dba.password,
            bin = this_binary(),
        ));
    }
    let cfg = config.display();
    let first = users.first().map_or("dana", |u| u.name);
    s.push_str(&format!(
        "Audit, with no configuration: every connection, statement and outcome is recorded\n         (statement text with literals as placeholders, never a value) in a hash chain with\n         signed checkpoints; on shop a statement runs only once its record is committed:\n  \
         portcullis audit search --config {cfg} --user {first}\n  \
         portcullis audit who-read public.customers.ssn --config {cfg} --since 1d\n  \
         portcullis audit tail --config {cfg} --follow\n  \
         portcullis audit verify --config {cfg}\n\n"
    ));
    s.push_str(&format!(
        "Identity: every session names who it is to the database (SHOW application_name;\n\
         SELECT current_setting('portcullis.identity')), and cannot change it. API keys:\n  \
         portcullis keys create --config {cfg} --agent NAME --group G --expires 30d\n  \
         portcullis keys list --config {cfg}\n  \
         portcullis keys revoke --config {cfg} ID --end-sessions\n\n"
    ));
    if let Some(a) = admin {
        s.push_str(&format!(
            "Metrics: http://{a}/metrics   Health: http://{a}/health\n"
        ));
    }
    s.push_str(&format!(
        "Configuration: {} (reload: kill -HUP {})\nCA certificate (for sslmode=verify-full): {}\n",
        config.display(),
        std::process::id(),
        ca.display()
    ));
    println!("{s}");
}

#[cfg(test)]
mod tests;
