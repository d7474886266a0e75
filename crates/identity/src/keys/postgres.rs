//! The control-plane store's API keys in a PostgreSQL database, for
//! several Portcullis machines that share keys and revocations: every
//! proxy and `portcullis keys` reading the same database sees the same
//! keys, and a revocation with `--end-sessions` reaches every proxy.
//!
//! The connection is made on first use (not at open, so a proxy starts
//! while the database is away, and no blocking client runs inside the
//! proxy's async runtime), kept, and made again after it breaks. The
//! tables are made on first connection, under an advisory lock so that
//! two proxies starting together do not race.

use std::sync::{Arc, Mutex, MutexGuard};

use postgres::{Client, Row};

use super::store::{NewKey, StoreError};
use super::{mint, KeyId, KeyRecord, RawRecord, StoredKey};

const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS portcullis_control;
CREATE TABLE IF NOT EXISTS portcullis_control.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS portcullis_control.api_keys (
    id           text PRIMARY KEY,
    hash         bytea NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    groups       text NOT NULL,
    on_behalf_of text,
    created_at   bigint NOT NULL,
    expires_at   bigint,
    revoked_at   bigint,
    end_sessions boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS api_keys_revoked
    ON portcullis_control.api_keys (revoked_at) WHERE revoked_at IS NOT NULL;
";

const COLUMNS: &str =
    "id, name, kind, groups, on_behalf_of, created_at, expires_at, revoked_at, end_sessions";

/// How to reach the database: a connection made on demand (TLS and the
/// password are the caller's concern: the same `[.. ] postgres` URL rules
/// as the audit trail's shared store), and a name for it without secrets.
pub struct PostgresLocation {
    /// Names the store in errors and logs (no password).
    pub label: String,
    pub connect: Arc<dyn Fn() -> Result<Client, String> + Send + Sync>,
}

/// The API keys of a control-plane store kept in PostgreSQL.
pub struct PostgresKeys {
    location: PostgresLocation,
    client: Mutex<Connection>,
}

#[derive(Default)]
struct Connection {
    client: Option<Client>,
    /// When connecting last failed, and why: for a second after that,
    /// lookups fail at once instead of each waiting out a connect
    /// timeout while the others queue behind it.
    failed: Option<(std::time::Instant, String)>,
}

/// How long a failed connection is not tried again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl PostgresKeys {
    /// Keeps where the database is; connects on first use.
    pub fn open(location: PostgresLocation) -> PostgresKeys {
        PostgresKeys {
            location,
            client: Mutex::new(Connection::default()),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            store: format!("control-plane store {}", self.location.label),
            error: e.to_string(),
        }
    }

    fn corrupt(&self, what: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.location.label.clone().into(),
            what,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = (self.location.connect)().map_err(|e| self.err(e))?;
        // Names resolve in pg_catalog and the store's own schema only, and
        // lookups are small: a store that hangs must not hold logins.
        client
            .batch_execute(
                "SET search_path = pg_catalog; SET statement_timeout = '5s'; SET lock_timeout = '5s'",
            )
            .map_err(|e| self.db_err(&e))?;
        let exists: bool = client
            .query_one(
                "SELECT pg_catalog.to_regclass('portcullis_control.api_keys') IS NOT NULL \
                    AND pg_catalog.to_regclass('portcullis_control.schema_version') IS NOT NULL",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db_err(&e))?;
        if !exists {
            // Made once, by whoever connects first with the right to
            // create; afterwards the proxies need only to read and write
            // rows.
            let mut tx = client.transaction().map_err(|e| self.db_err(&e))?;
            tx.batch_execute("SELECT pg_catalog.pg_advisory_xact_lock(1346587467, 1)")
                .map_err(|e| self.db_err(&e))?;
            tx.batch_execute(SCHEMA).map_err(|e| self.db_err(&e))?;
            let none: bool = tx
                .query_one(
                    "SELECT NOT EXISTS (SELECT FROM portcullis_control.schema_version)",
                    &[],
                )
                .and_then(|r| r.try_get(0))
                .map_err(|e| self.db_err(&e))?;
            if none {
                tx.execute(
                    "INSERT INTO portcullis_control.schema_version (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .map_err(|e| self.db_err(&e))?;
            }
            tx.commit().map_err(|e| self.db_err(&e))?;
        }
        // The schema and its tables belong to one role: tables someone else
        // put there are not the store's.
        let owners: i64 = client
            .query_one(
                "SELECT count(DISTINCT o) FROM ( \
                   SELECT nspowner AS o FROM pg_catalog.pg_namespace WHERE nspname = 'portcullis_control' \
                   UNION ALL SELECT relowner FROM pg_catalog.pg_class \
                   WHERE relnamespace = 'portcullis_control'::pg_catalog.regnamespace) owners",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db_err(&e))?;
        if owners != 1 {
            return Err(self.err(
                "the schema portcullis_control and its tables belong to different roles; refusing to trust them",
            ));
        }
        let version: Option<i32> = client
            .query_one(
                "SELECT max(version) FROM portcullis_control.schema_version",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db_err(&e))?;
        match version {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: self.location.label.clone().into(),
                found: i64::from(v),
                known: i64::from(SCHEMA_VERSION),
            }),
            Some(_) => Ok(client),
            None => Err(self.err("the schema version is missing")),
        }
    }

    /// A database error with the server's own words (its Display says only
    /// "db error").
    fn db_err(&self, e: &postgres::Error) -> StoreError {
        match e.as_db_error() {
            Some(db) => self.err(format!("{} ({})", db.message(), db.code().code())),
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                self.err(text)
            }
        }
    }

    /// Runs `f` on the connection, making it first when there is none; a
    /// connection that broke is made again once.
    fn with<T>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        for attempt in 0..2 {
            if conn.client.as_ref().is_none_or(|c| c.is_closed()) {
                conn.client = None;
                if let Some((at, why)) = &conn.failed {
                    if at.elapsed() < RETRY_AFTER {
                        return Err(StoreError::Postgres {
                            store: why.clone(),
                            error: "not tried again within a second".into(),
                        });
                    }
                }
                match self.connect() {
                    Ok(c) => {
                        conn.client = Some(c);
                        conn.failed = None;
                    }
                    Err(e) => {
                        conn.failed = Some((std::time::Instant::now(), e.to_string()));
                        return Err(e);
                    }
                }
            }
            let Some(client) = conn.client.as_mut() else {
                continue;
            };
            match f(client) {
                Ok(v) => return Ok(v),
                Err(_) if attempt == 0 && client.is_closed() => conn.client = None,
                Err(e) => return Err(self.db_err(&e)),
            }
        }
        Err(self.err("the connection broke twice"))
    }

    pub fn create(&self, new: NewKey, now: i64) -> Result<(KeyRecord, String), StoreError> {
        let minted = mint()?;
        let record = KeyRecord {
            id: minted.id,
            name: new.name,
            kind: new.kind,
            groups: new.groups,
            on_behalf_of: new.on_behalf_of,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            end_sessions: false,
        };
        let groups = serde_json::to_string(&record.groups).unwrap_or_else(|_| "[]".into());
        let id = record.id.to_string();
        self.with(|c| {
            c.execute(
                "INSERT INTO portcullis_control.api_keys (id, hash, name, kind, groups, on_behalf_of, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &id,
                    &&minted.hash[..],
                    &record.name,
                    &record.kind.as_str(),
                    &groups,
                    &record.on_behalf_of,
                    &record.created_at,
                    &record.expires_at,
                ],
            )
        })?;
        Ok((record, minted.text))
    }

    pub fn find(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        let id = id.to_string();
        let row = self.with(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS}, hash FROM portcullis_control.api_keys WHERE id = $1"),
                &[&id],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let record = read_record(&row).map_err(|w| self.corrupt(w))?;
        let hash: Vec<u8> = row
            .try_get(9)
            .map_err(|_| self.corrupt("hash is not bytes"))?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| self.corrupt("hash is not 32 bytes"))?;
        Ok(Some(StoredKey { record, hash }))
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                &format!("SELECT {COLUMNS} FROM portcullis_control.api_keys ORDER BY created_at DESC, id"),
                &[],
            )
        })?;
        self.records(&rows)
    }

    pub fn ending_sessions_since(&self, since: i64) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM portcullis_control.api_keys WHERE revoked_at >= $1 AND end_sessions"
                ),
                &[&since],
            )
        })?;
        self.records(&rows)
    }

    pub fn revoke(
        &self,
        id: KeyId,
        now: i64,
        end_sessions: bool,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let text = id.to_string();
        self.with(|c| {
            c.execute(
                "UPDATE portcullis_control.api_keys SET revoked_at = COALESCE(revoked_at, $2),
                                                end_sessions = end_sessions OR $3
                 WHERE id = $1",
                &[&text, &now, &end_sessions],
            )
        })?;
        Ok(self.find(id)?.map(|k| k.record))
    }

    fn records(&self, rows: &[Row]) -> Result<Vec<KeyRecord>, StoreError> {
        rows.iter()
            .map(|r| read_record(r).map_err(|w| self.corrupt(w)))
            .collect()
    }
}

impl Drop for PostgresKeys {
    fn drop(&mut self) {
        // The blocking client owns a runtime of its own, which must not be
        // dropped on an async runtime's thread (the proxy drops its store
        // there at shutdown).
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .client
            .take();
        if let Some(c) = client {
            let _ = std::thread::Builder::new()
                .name("portcullis-keys-close".into())
                .spawn(move || drop(c));
        }
    }
}

fn read_record(r: &Row) -> Result<KeyRecord, &'static str> {
    let text = |i: usize| {
        r.try_get::<_, String>(i)
            .map_err(|_| "a text column is missing")
    };
    let int = |i: usize| {
        r.try_get::<_, Option<i64>>(i)
            .map_err(|_| "a time is not an integer")
    };
    RawRecord {
        id: text(0)?,
        name: text(1)?,
        kind: text(2)?,
        groups: text(3)?,
        on_behalf_of: r.try_get(4).map_err(|_| "on_behalf_of is not text")?,
        created_at: int(5)?,
        expires_at: int(6)?,
        revoked_at: int(7)?,
        end_sessions: r
            .try_get::<_, bool>(8)
            .map_err(|_| "end_sessions is not a boolean")?,
    }
    .check()
}
