//! The control-plane store's API keys: one SQLite file that `portcullis
//! keys` writes and every proxy reading the same configuration looks keys
//! up in, at each login (so a revocation holds for the next connection).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{mint, KeyId, KeyRecord, RawRecord, StoredKey};
use crate::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("control-plane store {path}: {error}")]
    Sqlite { path: PathBuf, error: String },
    #[error("control-plane store {path}: schema version {found} is newer than this Portcullis knows ({known})")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the system's random source failed")]
    Random,
    #[error("control-plane store {path}: a stored key is malformed ({what})")]
    Corrupt { path: PathBuf, what: &'static str },
    #[error("{store}: {error}")]
    Postgres { store: String, error: String },
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    groups       TEXT NOT NULL,
    on_behalf_of TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    end_sessions INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS api_keys_revoked ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;
";

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub kind: Kind,
    pub groups: Vec<String>,
    pub on_behalf_of: Option<String>,
    /// Unix seconds; `None`: until revoked.
    pub expires_at: Option<i64>,
}

/// The API keys of a control-plane store kept in a SQLite file.
pub struct SqliteKeys {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteKeys {
    /// Opens the store, making the file (readable by its owner only) and
    /// its tables when they are not there yet.
    pub fn open(path: &Path) -> Result<SqliteKeys, StoreError> {
        let err = |e: rusqlite::Error| StoreError::Sqlite {
            path: path.to_path_buf(),
            error: e.to_string(),
        };
        create_private(path).map_err(|e| StoreError::Sqlite {
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(SqliteKeys {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            error: e.to_string(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes and stores a key; returns its record and the key's text, which
    /// is never stored and cannot be shown again.
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
        self.conn()
            .execute(
                "INSERT INTO api_keys (id, hash, name, kind, groups, on_behalf_of, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    record.id.to_string(),
                    &minted.hash[..],
                    record.name,
                    record.kind.as_str(),
                    groups,
                    record.on_behalf_of,
                    record.created_at,
                    record.expires_at,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok((record, minted.text))
    }

    /// The key with this id, with the hash of its secret.
    pub fn find(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, name, kind, groups, on_behalf_of, created_at, expires_at, revoked_at, end_sessions, hash
                 FROM api_keys WHERE id = ?1",
                [id.to_string()],
                |r| Ok((read_record(r), r.get::<_, Vec<u8>>(9)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((record, hash)) = row else {
            return Ok(None);
        };
        let record = record.map_err(|what| self.corrupt(what))?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| self.corrupt("hash is not 32 bytes"))?;
        Ok(Some(StoredKey { record, hash }))
    }

    fn corrupt(&self, what: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.select(
            "SELECT id, name, kind, groups, on_behalf_of, created_at, expires_at, revoked_at, end_sessions
             FROM api_keys ORDER BY created_at DESC, id",
            [],
        )
    }

    /// Keys revoked at or after `since` (unix seconds) whose revocation
    /// also ends their sessions.
    pub fn ending_sessions_since(&self, since: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.select(
            "SELECT id, name, kind, groups, on_behalf_of, created_at, expires_at, revoked_at, end_sessions
             FROM api_keys WHERE revoked_at >= ?1 AND end_sessions = 1",
            [since],
        )
    }

    fn select(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| Ok(read_record(r)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))?.map_err(|w| self.corrupt(w))?);
        }
        Ok(out)
    }

    /// Revokes a key at `now`; with `end_sessions`, proxies also end the
    /// sessions it opened. Returns the record as it is now, or `None` when
    /// no key has this id. Revoking a revoked key keeps the first time,
    /// and can still add `end_sessions` (proxies look for revocations
    /// since they started, so its sessions are found).
    pub fn revoke(
        &self,
        id: KeyId,
        now: i64,
        end_sessions: bool,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.conn()
            .execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2),
                                     end_sessions = MAX(end_sessions, ?3)
                 WHERE id = ?1",
                params![id.to_string(), now, end_sessions],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.find(id)?.map(|k| k.record))
    }
}

fn read_record(r: &Row<'_>) -> Result<KeyRecord, &'static str> {
    let text = |i: usize| {
        r.get::<_, String>(i)
            .map_err(|_| "a text column is missing")
    };
    let int = |i: usize| {
        r.get::<_, Option<i64>>(i)
            .map_err(|_| "a time is not an integer")
    };
    RawRecord {
        id: text(0)?,
        name: text(1)?,
        kind: text(2)?,
        groups: text(3)?,
        on_behalf_of: r.get(4).map_err(|_| "on_behalf_of is not text")?,
        created_at: int(5)?,
        expires_at: int(6)?,
        revoked_at: int(7)?,
        end_sessions: r
            .get::<_, i64>(8)
            .map_err(|_| "end_sessions is not 0 or 1")?
            != 0,
    }
    .check()
}

/// Makes the file with mode 0600 when it does not exist (SQLite would make
/// it with the process's umask, often world-readable).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{check, parse, Refused};

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            kind: Kind::Agent,
            groups: vec!["agents".into(), "readers".into()],
            on_behalf_of: Some("alice".into()),
            expires_at: Some(10_000),
        }
    }

    #[test]
    fn keys_are_made_found_listed_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        let store = SqliteKeys::open(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (record, text) = store.create(new_key("etl"), 100).unwrap();
        let (_, other) = store.create(new_key("report"), 200).unwrap();
        assert_ne!(text, other);

        let presented = parse(&text).unwrap();
        let found = store.find(presented.id).unwrap().unwrap();
        assert_eq!(found.record, record);
        let id = check(presented, "etl", 500, Some(&found)).unwrap();
        assert_eq!(id.groups, ["agents", "readers"]);

        let listed = store.list().unwrap();
        assert_eq!(
            listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["report", "etl"]
        );

        // A second handle (another process, in life) sees the revocation.
        let again = SqliteKeys::open(&path).unwrap();
        let revoked = again.revoke(record.id, 600, true).unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(600));
        assert!(revoked.end_sessions);
        let found = store.find(presented.id).unwrap().unwrap();
        assert_eq!(
            check(presented, "etl", 700, Some(&found)),
            Err(Refused::Revoked)
        );
        // Revoking again keeps the first time.
        assert_eq!(
            again
                .revoke(record.id, 900, false)
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(600)
        );
        assert_eq!(store.ending_sessions_since(600).unwrap().len(), 1);
        assert!(store.ending_sessions_since(601).unwrap().is_empty());
        assert!(store.revoke(KeyId([9; 8]), 1, false).unwrap().is_none());
        assert!(store.find(KeyId([9; 8])).unwrap().is_none());
    }

    #[test]
    fn a_store_from_a_newer_portcullis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        drop(SqliteKeys::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteKeys::open(&path),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
    }

    #[test]
    fn a_tampered_row_is_an_error_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        let store = SqliteKeys::open(&path).unwrap();
        let (record, _) = store.create(new_key("etl"), 100).unwrap();
        store
            .conn()
            .execute("UPDATE api_keys SET kind = 'root'", [])
            .unwrap();
        assert!(matches!(
            store.find(record.id),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
