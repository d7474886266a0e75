//! Requests in the control-plane SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{DecideError, StoreError};
use crate::request::{Request, RequestId, State};
use crate::rules::RuleError;

/// The approvals' part of the file has its own version: the file's
/// `user_version` belongs to the API keys.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS portcullis_parts (
    part    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approval_requests (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    approvers  TEXT NOT NULL,
    requester  TEXT NOT NULL,
    requester_for TEXT,
    digest     TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_requests_digest ON approval_requests (digest);
CREATE INDEX IF NOT EXISTS approval_requests_pending
    ON approval_requests (created_at) WHERE state = 'pending';
";

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError::Sqlite {
            path: path.to_path_buf(),
            error: e.to_string(),
        };
        create_private(path).map_err(|e| err(&e))?;
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| err(&e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(&e))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(&e))?;
        let found: Option<i64> = conn
            .query_row(
                "SELECT version FROM portcullis_parts WHERE part = 'approvals'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| err(&e))?;
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found: v,
                    known: SCHEMA_VERSION,
                })
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT OR IGNORE INTO portcullis_parts (part, version) VALUES ('approvals', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(|e| err(&e))?;
            }
        }
        Ok(SqliteStore {
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

    fn decode(&self, id: &str, body: &str) -> Result<Request, StoreError> {
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            id: id.to_owned(),
            error: e.to_string(),
        })
    }

    pub fn insert(&self, r: &Request) -> Result<(), StoreError> {
        let body = serde_json::to_string(r).unwrap_or_default();
        let (requester, requester_for) = super::requesters(r);
        self.conn()
            .execute(
                "INSERT INTO approval_requests \
                 (id, state, created_at, expires_at, approvers, requester, requester_for, digest, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.id.as_str(),
                    r.state.as_str(),
                    r.created_at,
                    r.asked.expires_at,
                    r.asked.approvers,
                    requester,
                    requester_for,
                    r.asked.digest.0,
                    body
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM approval_requests WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        body.map(|b| self.decode(id.as_str(), &b)).transpose()
    }

    pub fn list(
        &self,
        seen: &super::Seen,
        pending_only: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT id, body FROM approval_requests \
             WHERE (approvers IN (SELECT value FROM json_each(?2)) \
                    OR requester IN (SELECT value FROM json_each(?3)) \
                    OR requester_for IN (SELECT value FROM json_each(?3))) \
             {} ORDER BY created_at DESC LIMIT ?4",
            if pending_only {
                "AND state = 'pending' AND expires_at > ?1"
            } else {
                "AND ?1 = ?1"
            }
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let groups = serde_json::to_string(&seen.groups).unwrap_or_default();
        let people = serde_json::to_string(&seen.people).unwrap_or_default();
        let rows = stmt
            .query_map(
                params![
                    now,
                    groups,
                    people,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(|e| self.err(e))?;
            out.push(self.decode(&id, &body)?);
        }
        Ok(out)
    }

    /// Approved requests with `digest`, newest first.
    pub fn approved_with(&self, digest: &str) -> Result<Vec<RequestId>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id FROM approval_requests WHERE digest = ?1 AND state = 'approved' \
                 ORDER BY created_at DESC LIMIT 16",
            )
            .map_err(|e| self.err(e))?;
        let ids = stmt
            .query_map([digest], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(ids.into_iter().map(RequestId).collect())
    }

    pub fn update(
        &self,
        id: &RequestId,
        change: &mut dyn FnMut(&mut Request) -> Result<(), RuleError>,
    ) -> Result<Request, DecideError> {
        let mut conn = self.conn();
        // IMMEDIATE: the write lock from the read on, so that two
        // decisions cannot both read the request before either writes.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let body: Option<String> = tx
            .query_row(
                "SELECT body FROM approval_requests WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(body) = body else {
            return Err(DecideError::NotFound(id.0.clone()));
        };
        let mut request = self.decode(id.as_str(), &body)?;
        change(&mut request)?;
        let state: State = request.state;
        tx.execute(
            "UPDATE approval_requests SET state = ?2, body = ?3 WHERE id = ?1",
            params![
                id.as_str(),
                state.as_str(),
                serde_json::to_string(&request).unwrap_or_default()
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(request)
    }
}

/// Makes the file readable by its owner only, if it is not there yet.
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
