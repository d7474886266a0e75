//! Checks that go beyond the file's shape: everything a running proxy would
//! otherwise trip over later (a missing CA file, two listeners on one port, a
//! verifier that does not parse). The first problem found is returned, named
//! by its key (`listener[0].listen`, `target "shop".sslrootcert`) with a
//! message that says what is wrong and how to fix it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::include::Included;
use crate::{ColumnRule, Config, ConfigError, Duration, ScramVerifier, SslMode};

/// PostgreSQL identifiers (database and role names) are at most
/// NAMEDATALEN - 1 = 63 bytes; longer names are truncated by the server.
pub(crate) const MAX_NAME_BYTES: usize = 63;

/// Bounds of `server.max_statement_bytes`. The upper one is PostgreSQL's own
/// limit on a message (MaxAllocSize - 1).
pub(crate) const MIN_STATEMENT_BYTES: usize = 1024;
pub(crate) const MAX_STATEMENT_BYTES: usize = 0x3fff_ffff;

pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    let v = Validator {
        config,
        origin: config.source.as_deref(),
    };
    v.server()?;
    v.listeners()?;
    v.admin()?;
    v.tls()?;
    v.targets()?;
    v.users()?;
    v.masking()?;
    v.audit()?;
    v.identity()?;
    v.limits()?;
    v.approvals()?;
    Ok(())
}

/// Validates the entries of the files `[masking] include` names, read but
/// not yet merged, so that an error names the file and the entry in it.
pub(crate) fn included(config: &Config, included: &[Included]) -> Result<(), ConfigError> {
    let v = Validator {
        config,
        origin: config.source.as_deref(),
    };
    for file in included {
        for (i, rule) in file.columns.iter().enumerate() {
            v.column_rule(Some(&file.path), &format!("column[{i}]"), rule)?;
        }
    }
    Ok(())
}

struct Validator<'a> {
    config: &'a Config,
    origin: Option<&'a Path>,
}

/// How a target or user is named in error keys: by name when it has a usable
/// one (`target "shop"`), by position otherwise (`target[2]`).
fn label(table: &str, index: usize, name: &str) -> String {
    if name.trim().is_empty() {
        format!("{table}[{index}]")
    } else {
        format!("{table} {name:?}")
    }
}

/// Whether binding both addresses would fail with "address in use". Port 0
/// asks the system for a free port, so it never clashes. A wildcard address
/// (0.0.0.0 or ::) takes the port on every address of its family, and `::`
/// on IPv4 too (Linux binds it dual-stack by default).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    if a.ip() == b.ip() {
        return true;
    }
    let covers = |w: SocketAddr, other: SocketAddr| {
        w.ip().is_unspecified() && (w.is_ipv6() || w.is_ipv4() == other.is_ipv4())
    };
    covers(a, b) || covers(b, a)
}

fn fmt_duration(d: Duration) -> String {
    format!("{:?}", d.0)
}

impl Validator<'_> {
    /// The `[audit]` table: sizes that make sense, one source per key, key
    /// files that exist.
    fn audit(&self) -> Result<(), ConfigError> {
        let a = &self.config.audit;
        if !a.enabled {
            return Ok(());
        }
        if a.path.as_os_str().is_empty() {
            return Err(self.err("audit.path", "is empty; give a file for the audit store"));
        }
        self.audit_postgres()?;
        if a.queue_capacity < 16 {
            return Err(self.err(
                "audit.queue_capacity",
                format!("is {}; give at least 16", a.queue_capacity),
            ));
        }
        if a.checkpoint_records == 0 || a.checkpoint_interval.is_zero() {
            return Err(self.err(
                "audit.checkpoint_records",
                "and audit.checkpoint_interval must both be above zero",
            ));
        }
        if a.commit_timeout.is_zero() {
            return Err(self.err("audit.commit_timeout", "must be above zero"));
        }
        if a.max_queued_age.is_zero() {
            return Err(self.err("audit.max_queued_age", "must be above zero"));
        }
        if let Some(retain) = a.retain {
            // Shorter than a checkpoint interval could cut records the
            // writer has not signed yet: nothing would rotate, silently.
            if retain < crate::duration::Duration::from_secs(3600) {
                return Err(self.err(
                    "audit.retain",
                    "is under an hour; keep at least an hour of records in the store (1h, 90d)",
                ));
            }
            if a.archive_dir.as_os_str().is_empty() {
                return Err(self.err(
                    "audit.archive_dir",
                    "is empty; give a folder for rotated segments",
                ));
            }
        }
        if let Some(path) = &a.signing_key_file {
            self.file("audit.signing_key_file", path, "audit signing key file")?;
        }
        if a.params_key_env.is_some() && a.params_key_file.is_some() {
            return Err(self.err(
                "audit.params_key_env",
                "and audit.params_key_file are both set; give the key one way",
            ));
        }
        if let Some(path) = &a.params_key_file {
            self.file("audit.params_key_file", path, "audit parameter key file")?;
        }
        if a.params == crate::ParamsMode::KeyedHash
            && a.params_key_env.is_none()
            && a.params_key_file.is_none()
        {
            return Err(self.err(
                "audit.params",
                "is \"keyed_hash\" but no key is given; set audit.params_key_env or audit.params_key_file",
            ));
        }
        Ok(())
    }

    /// `[audit] postgres` and what goes with it: a URL without a password,
    /// `sslmode=require` or `disable` (never `prefer`, which could fall
    /// back to plaintext), a CA file only with TLS, a node name, one
    /// password source, and no rotation (not built for this store).
    fn audit_postgres(&self) -> Result<(), ConfigError> {
        let a = &self.config.audit;
        let Some(url) = &a.postgres else {
            for (key, set) in [
                ("audit.node", a.node.is_some()),
                (
                    "audit.postgres_password_env",
                    a.postgres_password_env.is_some(),
                ),
                (
                    "audit.postgres_password_file",
                    a.postgres_password_file.is_some(),
                ),
                ("audit.postgres_ca_file", a.postgres_ca_file.is_some()),
            ] {
                if set {
                    return Err(self.err(
                        key,
                        "is set without audit.postgres; it names the shared PostgreSQL store",
                    ));
                }
            }
            return Ok(());
        };
        self.postgres_url("audit", url, a.postgres_ca_file.as_deref())?;
        match a.node.as_deref() {
            None => {
                return Err(self.err(
                    "audit.node",
                    "is required with audit.postgres: name this proxy (its chain in the shared store is kept under that name across restarts; one name per proxy)",
                ))
            }
            Some(n) if n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control) => {
                return Err(self.err("audit.node", "must be 1 to 200 printable characters"))
            }
            Some(_) => {}
        }
        if a.postgres_password_env.is_some() && a.postgres_password_file.is_some() {
            return Err(self.err(
                "audit.postgres_password_env",
                "and audit.postgres_password_file are both set; give the password one way",
            ));
        }
        if let Some(path) = &a.postgres_password_file {
            self.file(
                "audit.postgres_password_file",
                path,
                "audit store password file",
            )?;
        }
        if a.retain.is_some() {
            return Err(self.err(
                "audit.retain",
                "is not built for the PostgreSQL store yet; leave it out with audit.postgres (rotation works on the SQLite store)",
            ));
        }
        Ok(())
    }

    /// The `[masking]` table: names the mask crate knows, columns written
    /// `schema.table.column`, targets that exist, a key source that does.
    fn masking(&self) -> Result<(), ConfigError> {
        let m = &self.config.masking;
        if m.max_row_bytes < 1024 {
            return Err(self.err(
                "masking.max_row_bytes",
                format!("is {}; give at least 1024 (bytes)", m.max_row_bytes),
            ));
        }
        if m.key_env.is_some() && m.key_file.is_some() {
            return Err(self.err(
                "masking.key_env",
                "and masking.key_file are both set; give the key one way",
            ));
        }
        if let Some(path) = &m.key_file {
            self.file("masking.key_file", path, "masking key file")?;
        }
        // Refusals that come from masking would silently not happen: say so.
        if !m.enabled && m.strict {
            return Err(self.err(
                "masking.strict",
                "is true while masking.enabled is false; strict masking needs masking on",
            ));
        }
        if !m.enabled && m.inference == crate::Inference::Refuse {
            return Err(self.err(
                "masking.inference",
                "is \"refuse\" while masking.enabled is false; refusing inference needs masking on",
            ));
        }
        for (i, rule) in m.columns.iter().enumerate() {
            self.column_rule(self.origin, &format!("masking.column[{i}]"), rule)?;
        }
        Ok(())
    }

    /// One column classification, written in the configuration (`origin`
    /// is the configuration file) or in an included file (`origin` is that
    /// file); `at` names the entry in it.
    fn column_rule(
        &self,
        origin: Option<&Path>,
        at: &str,
        c: &ColumnRule,
    ) -> Result<(), ConfigError> {
        let err =
            |k: &str, message: String| ConfigError::invalid(origin, format!("{at}.{k}"), message);
        if c.parts().is_none() {
            return Err(err(
                "column",
                format!(
                    "is {:?}; write it as schema.table.column, for example \"public.customers.email\"",
                    c.column
                ),
            ));
        }
        if c.class != "none" && portcullis_mask::Class::from_name(&c.class).is_none() {
            let names: Vec<&str> = portcullis_mask::Class::ALL
                .iter()
                .map(|k| k.name())
                .collect();
            return Err(err(
                "class",
                format!(
                    "is {:?}; use one of {} or \"none\"",
                    c.class,
                    names.join(", ")
                ),
            ));
        }
        if let Some(s) = &c.strategy {
            if portcullis_mask::Strategy::from_name(s).is_none() {
                return Err(err(
                    "strategy",
                    format!("is {s:?}; use redact, partial, keyed, nullify or generalise"),
                ));
            }
            if c.class == "none" {
                return Err(err(
                    "strategy",
                    "is set for a column classified \"none\", which is not masked".to_owned(),
                ));
            }
        }
        if let Some(t) = &c.target {
            let known = self
                .config
                .targets
                .iter()
                .any(|x| x.name == *t || x.is_wildcard());
            if !known {
                return Err(err(
                    "target",
                    format!("names {t:?}, which is not a configured target"),
                ));
            }
        }
        Ok(())
    }

    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.origin, key, message)
    }

    /// A path named in the file must be a readable regular file.
    fn file(&self, key: &str, path: &Path, what: &str) -> Result<(), ConfigError> {
        if path.as_os_str().is_empty() {
            return Err(self.err(key, format!("is empty; give the path of the {what}")));
        }
        let full = self.config.resolve(path);
        let hint = if path.is_relative() {
            match self.config.base_dir() {
                Some(base) if !base.as_os_str().is_empty() => format!(
                    " (relative paths are resolved against the config file's folder {})",
                    base.display()
                ),
                _ => " (relative paths are resolved against the config file's folder; \
                      here, the current directory)"
                    .to_owned(),
            }
        } else {
            String::new()
        };
        match std::fs::metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.err(
                key,
                format!(
                    "{what} {} does not exist{hint}; fix the path or create the file",
                    full.display()
                ),
            )),
            Err(e) => Err(self.err(
                key,
                format!("cannot access {what} {}: {e}{hint}", full.display()),
            )),
            Ok(m) if !m.is_file() => Err(self.err(
                key,
                format!(
                    "{what} {} is not a regular file{hint}; give the path of the file itself",
                    full.display()
                ),
            )),
            Ok(_) => match std::fs::File::open(&full) {
                Ok(_) => Ok(()),
                Err(e) => Err(self.err(
                    key,
                    format!(
                        "cannot open {what} {}: {e}; check its permissions",
                        full.display()
                    ),
                )),
            },
        }
    }

    fn server(&self) -> Result<(), ConfigError> {
        let s = &self.config.server;
        if s.handshake_timeout.is_zero() {
            return Err(self.err(
                "server.handshake_timeout",
                "must be greater than zero, or no client could ever log in; use e.g. \"15s\"",
            ));
        }
        if !(MIN_STATEMENT_BYTES..=MAX_STATEMENT_BYTES).contains(&s.max_statement_bytes) {
            return Err(self.err(
                "server.max_statement_bytes",
                format!(
                    "is {}, must be between {MIN_STATEMENT_BYTES} and {MAX_STATEMENT_BYTES} \
                     (PostgreSQL's own message limit); the default is {}",
                    s.max_statement_bytes,
                    64 << 20
                ),
            ));
        }
        Ok(())
    }

    fn listeners(&self) -> Result<(), ConfigError> {
        let listeners = &self.config.listeners;
        if listeners.is_empty() {
            return Err(self.err(
                "listener",
                "no [[listener]] is configured; add one, e.g. [[listener]] name = \"main\" \
                 listen = \"0.0.0.0:5432\"",
            ));
        }
        for (i, l) in listeners.iter().enumerate() {
            if l.name.trim().is_empty() {
                return Err(self.err(
                    format!("listener[{i}].name"),
                    "is empty; give the listener a name (it appears in logs and metrics)",
                ));
            }
            if let Some(j) = listeners[..i].iter().position(|o| o.name == l.name) {
                return Err(self.err(
                    format!("listener[{i}].name"),
                    format!(
                        "{:?} is already the name of listener[{j}]; listener names must be unique",
                        l.name
                    ),
                ));
            }
            if let Some(j) = listeners[..i]
                .iter()
                .position(|o| clash(o.listen, l.listen))
            {
                let other = listeners[j].listen;
                let what = if other == l.listen {
                    format!(
                        "{} is also the address of listener[{j}] ({:?})",
                        l.listen, listeners[j].name
                    )
                } else {
                    format!(
                        "{} overlaps {} of listener[{j}] ({:?}): both take port {}",
                        l.listen,
                        other,
                        listeners[j].name,
                        l.listen.port()
                    )
                };
                return Err(self.err(
                    format!("listener[{i}].listen"),
                    format!("{what}; give each listener its own address or port"),
                ));
            }
            if l.max_connections == 0 {
                return Err(self.err(
                    format!("listener[{i}].max_connections"),
                    "must be greater than zero (0 would refuse every client); omit it for the \
                     default of 10000",
                ));
            }
        }
        Ok(())
    }

    fn admin(&self) -> Result<(), ConfigError> {
        let Some(admin) = &self.config.admin else {
            return Ok(());
        };
        for (i, l) in self.config.listeners.iter().enumerate() {
            if clash(admin.listen, l.listen) {
                return Err(self.err(
                    "admin.listen",
                    format!(
                        "{} collides with listener[{i}] ({:?}) on {}; the admin endpoint needs a port \
                         of its own, e.g. \"127.0.0.1:9187\"",
                        admin.listen, l.name, l.listen
                    ),
                ));
            }
        }
        Ok(())
    }

    fn tls(&self) -> Result<(), ConfigError> {
        match &self.config.tls {
            Some(tls) => {
                self.file("tls.cert", &tls.cert, "certificate file")?;
                self.file("tls.key", &tls.key, "private key file")?;
            }
            None => {
                if let Some((i, l)) = self
                    .config
                    .listeners
                    .iter()
                    .enumerate()
                    .find(|(_, l)| !l.allow_plaintext)
                {
                    return Err(self.err(
                        "tls",
                        format!(
                            "listener[{i}] ({:?}) accepts only TLS clients (allow_plaintext is false, \
                             the default) but there is no [tls] table; add [tls] with cert and key, \
                             or set allow_plaintext = true on that listener",
                            l.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn targets(&self) -> Result<(), ConfigError> {
        let targets = &self.config.targets;
        if targets.is_empty() {
            return Err(self.err(
                "target",
                "no [[target]] is configured; add at least one database for clients to reach",
            ));
        }
        for (i, t) in targets.iter().enumerate() {
            let at = label("target", i, &t.name);
            let key = |field: &str| format!("{at}.{field}");

            if t.name.is_empty() {
                return Err(self.err(
                    key("name"),
                    "is empty; it is the database name clients connect to, e.g. \"shop\"",
                ));
            }
            if t.name.len() > MAX_NAME_BYTES {
                return Err(self.err(
                    key("name"),
                    format!(
                        "is {} bytes long; PostgreSQL database names are at most {MAX_NAME_BYTES} bytes",
                        t.name.len()
                    ),
                ));
            }
            if t.is_wildcard() && t.database.is_some() {
                return Err(self.err(
                    key("database"),
                    "cannot be set on the \"*\" target: it serves every database name clients ask for (each one as the upstream database)",
                ));
            }
            if let Some(c) = t
                .name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .filter(|_| !t.is_wildcard())
            {
                return Err(self.err(
                    key("name"),
                    format!("contains {c:?}; use only letters A-Z a-z, digits, '_', '.' and '-'"),
                ));
            }
            if t.row_limit == Some(crate::RowLimit::Rows(0)) {
                return Err(self.err(
                    key("row_limit"),
                    format!(
                        "is 0; give the most rows one statement may touch, or \"off\" for no limit \
                         (left out, production targets get {} and others none)",
                        crate::DEFAULT_PRODUCTION_ROW_LIMIT
                    ),
                ));
            }
            if let Some(j) = targets[..i].iter().position(|o| o.name == t.name) {
                return Err(self.err(
                    key("name"),
                    format!("is also the name of target[{j}]; target names must be unique"),
                ));
            }
            if t.environment.trim().is_empty() {
                return Err(self.err(
                    key("environment"),
                    "is empty; label the target, e.g. \"production\", \"staging\" or \"development\"",
                ));
            }
            if t.host.trim().is_empty() {
                return Err(self.err(
                    key("host"),
                    "is empty; give the upstream server's host name or IP address, or a Unix socket directory (starting with /)",
                ));
            }
            if t.host.starts_with('/') && t.sslmode != crate::SslMode::Disable {
                return Err(self.err(
                    key("sslmode"),
                    "must be \"disable\" when host is a Unix socket directory; PostgreSQL has no TLS on Unix sockets",
                ));
            }
            if t.port == 0 {
                return Err(self.err(
                    key("port"),
                    "must not be 0; omit it for PostgreSQL's default 5432",
                ));
            }
            if t.database.as_deref().is_some_and(str::is_empty) {
                return Err(self.err(
                    key("database"),
                    "is empty; remove it to use the target name, or name the upstream database",
                ));
            }
            if let Some(db) = &t.database {
                if db.len() > MAX_NAME_BYTES {
                    return Err(self.err(
                        key("database"),
                        format!(
                            "is {} bytes long; PostgreSQL database names are at most {MAX_NAME_BYTES} bytes",
                            db.len()
                        ),
                    ));
                }
            }
            self.credentials(
                &at,
                &t.user,
                t.password_env.as_deref(),
                t.password_file.as_deref(),
            )?;
            self.profiles(&at, t)?;
            match (t.sslmode, &t.sslrootcert) {
                (SslMode::VerifyFull, None) => {
                    return Err(self.err(
                        key("sslrootcert"),
                        "is required with sslmode = \"verify-full\"; give the CA bundle (PEM) that \
                         signed the server's certificate",
                    ));
                }
                (SslMode::VerifyFull, Some(ca)) => {
                    self.file(&key("sslrootcert"), ca, "CA bundle")?
                }
                (mode, Some(_)) => {
                    let mode = if mode == SslMode::Require {
                        "require"
                    } else {
                        "disable"
                    };
                    return Err(self.err(
                        key("sslrootcert"),
                        format!(
                            "is only used with sslmode = \"verify-full\", but sslmode is \"{mode}\"; \
                             set sslmode = \"verify-full\" or remove sslrootcert"
                        ),
                    ));
                }
                (_, None) => {}
            }
            if t.connect_timeout.is_zero() {
                return Err(self.err(
                    key("connect_timeout"),
                    format!(
                        "is {}, must be greater than zero; omit it for the default of 5s",
                        fmt_duration(t.connect_timeout)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A role Portcullis logs in as upstream, and where its password is.
    fn credentials(
        &self,
        at: &str,
        user: &str,
        password_env: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("{at}.{field}");
        if user.is_empty() {
            return Err(self.err(
                key("user"),
                "is empty; give the role Portcullis logs in as upstream",
            ));
        }
        if user.len() > MAX_NAME_BYTES {
            return Err(self.err(
                key("user"),
                format!(
                    "is {} bytes long; PostgreSQL role names are at most {MAX_NAME_BYTES} bytes",
                    user.len()
                ),
            ));
        }
        if password_env.is_some() && password_file.is_some() {
            return Err(self.err(
                key("password_file"),
                "password_env and password_file are both set; keep only one of them",
            ));
        }
        if let Some(var) = password_env {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(self.err(
                    key("password_env"),
                    format!(
                        "{var:?} is not a usable environment variable name; e.g. \"SHOP_PASSWORD\""
                    ),
                ));
            }
        }
        if let Some(file) = password_file {
            self.file(&key("password_file"), file, "password file")?;
        }
        Ok(())
    }

    /// A target's access profiles.
    fn profiles(&self, at: &str, t: &crate::Target) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (j, p) in t.profiles.iter().enumerate() {
            let pat = label(&format!("{at}.profile"), j, &p.name);
            let key = |field: &str| format!("{pat}.{field}");
            if p.name.is_empty() {
                return Err(self.err(
                    key("name"),
                    "is empty; name the profile (it is logged and audited)",
                ));
            }
            if let Some(k) = seen.insert(p.name.as_str(), j) {
                return Err(self.err(
                    key("name"),
                    format!("is also the name of profile[{k}]; profile names must be unique in a target"),
                ));
            }
            self.credentials(
                &pat,
                &p.user,
                p.password_env.as_deref(),
                p.password_file.as_deref(),
            )?;
            if p.kinds.is_empty() && p.groups.is_empty() && p.subjects.is_empty() {
                return Err(self.err(
                    key("kinds"),
                    "the profile matches nobody; give kinds, groups or subjects",
                ));
            }
            if p.groups.iter().chain(&p.subjects).any(String::is_empty) {
                return Err(self.err(
                    key("groups"),
                    "an empty group or subject name matches nothing",
                ));
            }
        }
        Ok(())
    }

    fn limits(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, l) in self.config.limits.iter().enumerate() {
            let at = label("limit", i, &l.name);
            let key = |field: &str| format!("{at}.{field}");
            if l.name.is_empty() {
                return Err(self.err(key("name"), "is empty; name the limit (refusals name it)"));
            }
            if let Some(j) = seen.insert(l.name.as_str(), i) {
                return Err(self.err(
                    key("name"),
                    format!("is also the name of limit[{j}]; limit names must be unique"),
                ));
            }
            if l.kinds.is_empty() && l.groups.is_empty() && l.subjects.is_empty() {
                return Err(self.err(
                    key("kinds"),
                    "the limit applies to nobody; give kinds, groups or subjects",
                ));
            }
            if l.max_sessions == Some(0) {
                return Err(self.err(
                    key("max_sessions"),
                    "is zero; it would lock the identity out",
                ));
            }
            if let Some(t) = l.statement_timeout {
                if t.0 < std::time::Duration::from_millis(1) {
                    return Err(self.err(key("statement_timeout"), "is zero; give at least 1ms"));
                }
                if t.0 > std::time::Duration::from_millis(i32::MAX as u64) {
                    return Err(self.err(
                        key("statement_timeout"),
                        "is over PostgreSQL's largest (about 24 days)",
                    ));
                }
            }
            if l.max_rows_changed == Some(0) {
                return Err(self.err(
                    key("max_rows_changed"),
                    "is zero; to allow no changes at all, give the identity a read-only role ([[target.profile]])",
                ));
            }
            if let Some(w) = l.rows_changed_window {
                if l.max_rows_changed.is_none() {
                    return Err(self.err(
                        key("rows_changed_window"),
                        "is given without max_rows_changed",
                    ));
                }
                if w.0 < std::time::Duration::from_secs(1)
                    || w.0 > std::time::Duration::from_secs(31 * 86_400)
                {
                    return Err(self.err(key("rows_changed_window"), "must be between 1s and 31d"));
                }
            }
            let returned = [
                ("max_rows_returned", l.max_rows_returned),
                ("max_bytes_returned", l.max_bytes_returned),
                (
                    "max_rows_returned_per_session",
                    l.max_rows_returned_per_session,
                ),
                (
                    "max_bytes_returned_per_session",
                    l.max_bytes_returned_per_session,
                ),
            ];
            for (name, value) in returned {
                if value == Some(0) {
                    return Err(self.err(
                        key(name),
                        "is zero; every statement that returns a row would fail (to allow no reads, give the identity a role without SELECT, [[target.profile]])",
                    ));
                }
            }
            if l.max_sessions.is_none()
                && l.statement_timeout.is_none()
                && l.max_rows_changed.is_none()
                && returned.iter().all(|(_, v)| v.is_none())
            {
                return Err(self.err(
                    key("name"),
                    "sets no limit; give max_sessions, statement_timeout, max_rows_changed or a max_*_returned limit",
                ));
            }
        }
        Ok(())
    }

    /// A shared store's `postgres` URL (`section` is `audit` or
    /// `identity`): no password in it, `sslmode=require` or `disable`
    /// (never `prefer`, which could fall back to plaintext), and a CA file
    /// only with TLS.
    fn postgres_url(
        &self,
        section: &str,
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{section}.{k}");
        // Never quote the URL back: it may hold a password.
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            return Err(self.err(
                key("postgres"),
                "is not a PostgreSQL URL; write postgres://user@host:port/database?sslmode=require",
            ));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority
            .rsplit_once('@')
            .is_some_and(|(user, _)| user.contains(':'))
        {
            return Err(self.err(
                key("postgres"),
                format!("holds a password; take it out of the URL and give it with {section}.postgres_password_env or {section}.postgres_password_file"),
            ));
        }
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        if query.split('&').any(|kv| {
            kv.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("password"))
        }) {
            return Err(self.err(
                key("postgres"),
                format!("holds a password; take it out of the URL and give it with {section}.postgres_password_env or {section}.postgres_password_file"),
            ));
        }
        let sslmode = query.split('&').find_map(|kv| kv.strip_prefix("sslmode="));
        match sslmode {
            Some("require") => {
                if let Some(path) = ca_file {
                    self.file(&key("postgres_ca_file"), path, "store CA file")?;
                }
            }
            Some("disable") => {
                if ca_file.is_some() {
                    return Err(self.err(
                        key("postgres_ca_file"),
                        format!("is set but {section}.postgres says sslmode=disable; use sslmode=require for TLS to the store"),
                    ));
                }
            }
            _ => {
                return Err(self.err(
                    key("postgres"),
                    format!("must say sslmode=require (TLS; the store's certificate is checked against {section}.postgres_ca_file or the system's roots, and its host name) or sslmode=disable (a trusted network); prefer could fall back to plaintext"),
                ));
            }
        }
        Ok(())
    }

    /// `[identity] postgres` and the keys that go with it.
    fn identity_postgres(&self) -> Result<(), ConfigError> {
        let id = &self.config.identity;
        let Some(url) = &id.postgres else {
            for (key, set) in [
                (
                    "identity.postgres_password_env",
                    id.postgres_password_env.is_some(),
                ),
                (
                    "identity.postgres_password_file",
                    id.postgres_password_file.is_some(),
                ),
                ("identity.postgres_ca_file", id.postgres_ca_file.is_some()),
            ] {
                if set {
                    return Err(self.err(
                        key,
                        "is set without identity.postgres; it names the shared PostgreSQL store",
                    ));
                }
            }
            return Ok(());
        };
        if id.postgres_password_env.is_some() && id.postgres_password_file.is_some() {
            return Err(self.err(
                "identity.postgres_password_file",
                "and identity.postgres_password_env are both set; give one",
            ));
        }
        self.postgres_url("identity", url, id.postgres_ca_file.as_deref())
    }

    fn approvals(&self) -> Result<(), ConfigError> {
        let a = &self.config.approvals;
        if a.timeout.is_zero() {
            return Err(self.err(
                "approvals.timeout",
                "is zero; give how long a held statement waits for a decision, e.g. \"10m\"",
            ));
        }
        if a.rerun_window.is_zero() {
            return Err(self.err(
                "approvals.rerun_window",
                "is zero; give how long an approved statement may be sent again, e.g. \"15m\"",
            ));
        }
        if let Some(url) = &a.console_url {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.chars().any(char::is_control)
            {
                return Err(self.err(
                    "approvals.console_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        for (i, g) in a.groups.iter().enumerate() {
            let key = |k: &str| format!("approvals.group[{i}].{k}");
            if g.name.trim().is_empty() {
                return Err(self.err(
                    key("name"),
                    "is empty; name the group a policy's @approvers names",
                ));
            }
            if let Some(j) = a.groups[..i].iter().position(|o| o.name == g.name) {
                return Err(self.err(
                    key("name"),
                    format!("{:?} is already configured in approvals.group[{j}]", g.name),
                ));
            }
            if g.required == 0 {
                return Err(self.err(
                    key("required"),
                    "is zero; a request needs at least one approval",
                ));
            }
            g.day_bits().map_err(|e| self.err(key("days"), e))?;
            g.minutes().map_err(|e| self.err(key("hours"), e))?;
        }
        let n = &a.notify;
        if n.slack_webhook_env.is_some() && n.slack_webhook_file.is_some() {
            return Err(self.err(
                "approvals.notify.slack_webhook_file",
                "give the webhook URL once: slack_webhook_env or slack_webhook_file",
            ));
        }
        if let Some(url) = &n.webhook_url {
            if !crate::secure_url(url) {
                return Err(self.err(
                    "approvals.notify.webhook_url",
                    format!("{url:?} must be an https URL (or http to this machine)"),
                ));
            }
        } else if n.webhook_secret_env.is_some() || n.webhook_secret_file.is_some() {
            return Err(self.err(
                "approvals.notify.webhook_secret_env",
                "a webhook secret without webhook_url",
            ));
        }
        if let Some(slack) = &a.slack {
            if slack.signing_secret_env.is_none() == slack.signing_secret_file.is_none() {
                return Err(self.err(
                    "approvals.slack.signing_secret_env",
                    "give the Slack app's signing secret once: signing_secret_env or signing_secret_file",
                ));
            }
            for (slack_id, user) in &slack.users {
                match self.config.users.iter().find(|u| u.name == *user) {
                    None => {
                        return Err(self.err(
                            format!("approvals.slack.users.{slack_id}"),
                            format!("{user:?} is not a configured [[user]]"),
                        ))
                    }
                    Some(u) if u.kind != crate::IdentityKind::Human => {
                        return Err(self.err(
                            format!("approvals.slack.users.{slack_id}"),
                            format!(
                            "{user:?} is not a person (kind human); only people decide requests"
                        ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    fn identity(&self) -> Result<(), ConfigError> {
        let id = &self.config.identity;
        if id.store.as_os_str().is_empty() {
            return Err(self.err(
                "identity.store",
                "is empty; give the path of the control-plane store (a SQLite file)",
            ));
        }
        if id.revocation_poll.is_zero() {
            return Err(self.err(
                "identity.revocation_poll",
                "is zero; give how often to look for revoked keys, such as \"2s\"",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, o) in id.oidc.iter().enumerate() {
            let key = |field: &str| format!("identity.oidc[{i}].{field}");
            if !crate::secure_url(&o.issuer) {
                return Err(self.err(
                    key("issuer"),
                    "must be an https:// URL (http:// only for a provider on a loopback address)",
                ));
            }
            if let Some(j) = seen.insert(o.issuer.as_str(), i) {
                return Err(self.err(
                    key("issuer"),
                    format!("is also the issuer of identity.oidc[{j}]; each issuer once"),
                ));
            }
            if !crate::secure_url(&o.discovery()) {
                return Err(self.err(
                    key("discovery_url"),
                    "must be an https:// URL (http:// only on a loopback address)",
                ));
            }
            for (field, value) in [("audience", &o.audience), ("user_claim", &o.user_claim)] {
                if value.is_empty() {
                    return Err(self.err(key(field), "is empty"));
                }
            }
            if o.groups_claim.as_deref() == Some("") {
                return Err(self.err(key("groups_claim"), "is empty; leave it out for no groups"));
            }
            if o.algorithms.is_empty() {
                return Err(self.err(key("algorithms"), "is empty; allow at least one"));
            }
            for a in &o.algorithms {
                if !crate::OIDC_ALGORITHMS.contains(&a.as_str()) {
                    return Err(self.err(
                        key("algorithms"),
                        format!(
                            "names {a:?}, which is not allowed (never none or HMAC); use some of {}",
                            crate::OIDC_ALGORITHMS.join(", ")
                        ),
                    ));
                }
            }
            // The handshake reads at most 32 KiB for a password message.
            if o.max_token_bytes < 512 || o.max_token_bytes > (32 << 10) {
                return Err(self.err(key("max_token_bytes"), "must be between 512 and 32768"));
            }
            if o.leeway.0 > std::time::Duration::from_secs(600) {
                return Err(self.err(key("leeway"), "is over 10 minutes; keep clock skew small"));
            }
            if o.keys_max_age.0 < std::time::Duration::from_secs(1) {
                return Err(self.err(key("keys_max_age"), "is under a second"));
            }
            if let Some(ca) = &o.ca_file {
                self.file(&key("ca_file"), ca, "CA bundle")?;
            }
            for (field, list) in [("agents", &o.agents), ("services", &o.services)] {
                if list.iter().any(|n| n.is_empty()) {
                    return Err(self.err(key(field), "contains an empty client id"));
                }
            }
            if o.allowed_domains
                .iter()
                .any(|d| d.is_empty() || d.contains('@'))
            {
                return Err(self.err(
                    key("allowed_domains"),
                    "holds an empty name or an address; give domains such as \"example.com\"",
                ));
            }
            if o.hosted_domain.as_deref() == Some("") {
                return Err(self.err(key("hosted_domain"), "is empty"));
            }
            if crate::identity::OPEN_ISSUERS.contains(&o.issuer.trim_end_matches('/'))
                && o.allowed_domains.is_empty()
                && o.hosted_domain.is_none()
            {
                return Err(self.err(
                    key("allowed_domains"),
                    "is required for this issuer: it signs tokens for any account in the world; give your domains (or hosted_domain)",
                ));
            }
            if let Some(both) = o.agents.iter().find(|a| o.services.contains(a)) {
                return Err(self.err(
                    key("services"),
                    format!("names {both:?}, which is also an agent; a client is one kind"),
                ));
            }
        }
        if let Some(c) = &id.certificates {
            self.client_certificates(c)?;
        }
        self.identity_postgres()
    }

    fn client_certificates(&self, c: &crate::ClientCertificates) -> Result<(), ConfigError> {
        let key = |field: &str| format!("identity.certificates.{field}");
        if self.config.tls.is_none() {
            return Err(self.err(
                "identity.certificates",
                "needs [tls]: client certificates are presented in the TLS handshake",
            ));
        }
        self.file(&key("ca_file"), &c.ca_file, "CA bundle")?;
        for crl in &c.crl_files {
            self.file(&key("crl_files"), crl, "revocation list")?;
        }
        if !crate::identity::CERTIFICATE_NAMES.contains(&c.name.as_str()) {
            return Err(self.err(
                key("name"),
                format!(
                    "is {:?}; use one of {}",
                    c.name,
                    crate::identity::CERTIFICATE_NAMES.join(", ")
                ),
            ));
        }
        match (&c.uri_prefix, c.name.as_str()) {
            (Some(p), "uri") if p.is_empty() => {
                return Err(self.err(
                    key("uri_prefix"),
                    "is empty; leave it out to use whole URIs",
                ))
            }
            (Some(_), name) if name != "uri" => {
                return Err(self.err(key("uri_prefix"), "only applies with name = \"uri\""))
            }
            _ => {}
        }
        for (field, list) in [("agents", &c.agents), ("services", &c.services)] {
            if list.iter().any(|n| n.is_empty()) {
                return Err(self.err(key(field), "contains an empty name"));
            }
        }
        if let Some(both) = c.agents.iter().find(|a| c.services.contains(a)) {
            return Err(self.err(
                key("services"),
                format!("names {both:?}, which is also an agent; a name is one kind"),
            ));
        }
        Ok(())
    }

    fn users(&self) -> Result<(), ConfigError> {
        let users = &self.config.users;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let at = label("user", i, &u.name);
            let key = |field: &str| format!("{at}.{field}");
            if u.name.is_empty() {
                return Err(self.err(key("name"), "is empty; give the name clients log in with"));
            }
            if u.name.len() > MAX_NAME_BYTES {
                return Err(self.err(
                    key("name"),
                    format!(
                        "is {} bytes long; PostgreSQL user names are at most {MAX_NAME_BYTES} bytes",
                        u.name.len()
                    ),
                ));
            }
            if u.name.contains('\0') {
                return Err(self.err(
                    key("name"),
                    "contains a NUL character, which no client can send; remove it",
                ));
            }
            if let Some(j) = seen.insert(&u.name, i) {
                return Err(self.err(
                    key("name"),
                    format!("is also the name of user[{j}]; user names must be unique"),
                ));
            }
            // The message from parse never contains the verifier itself.
            if let Err(e) = ScramVerifier::parse(&u.scram) {
                return Err(self.err(
                    key("scram"),
                    format!("is not a valid SCRAM-SHA-256 verifier: {e}"),
                ));
            }
            if let Some(g) = u.groups.iter().position(|g| g.trim().is_empty()) {
                return Err(self.err(
                    format!("{at}.groups[{g}]"),
                    "is empty; remove it or name the group",
                ));
            }
            if u.max_connections == Some(0) {
                return Err(self.err(
                    key("max_connections"),
                    "must be greater than zero (0 would lock the user out); omit it for no limit",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clash_rules() {
        assert!(clash(addr("127.0.0.1:5432"), addr("127.0.0.1:5432")));
        assert!(!clash(addr("127.0.0.1:5432"), addr("127.0.0.1:5433")));
        assert!(!clash(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
        assert!(clash(addr("0.0.0.0:5432"), addr("10.0.0.1:5432")));
        assert!(clash(addr("10.0.0.1:5432"), addr("0.0.0.0:5432")));
        assert!(!clash(addr("0.0.0.0:5432"), addr("[::1]:5432")));
        assert!(clash(addr("[::]:5432"), addr("127.0.0.1:5432")));
        assert!(!clash(addr("127.0.0.1:5432"), addr("127.0.0.2:5432")));
    }

    #[test]
    fn labels() {
        assert_eq!(label("target", 3, "shop"), "target \"shop\"");
        assert_eq!(label("target", 3, ""), "target[3]");
        assert_eq!(label("user", 0, "a\"b"), "user \"a\\\"b\"");
    }
}
