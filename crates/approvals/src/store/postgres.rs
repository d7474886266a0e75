//! Requests in a PostgreSQL database shared by several proxies (the
//! control-plane store of `[identity] postgres`), and the wake-up across
//! them: every change commits with a `NOTIFY` on [`CHANNEL`], and each
//! proxy keeps one connection listening ([`listen`]), so that a decision
//! recorded through any proxy wakes the session holding the statement on
//! any other at once, without polling.
//!
//! Connections are made on first use and again after they break, as the
//! API keys' store does; the table is made on first connection under an
//! advisory lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::{DecideError, StoreError};
use crate::request::{Request, RequestId, State};
use crate::rules::RuleError;

/// The channel decisions are announced on: the payload is the request id
/// and its new state, separated by a space.
pub const CHANNEL: &str = "portcullis_approvals";

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS portcullis_control;
CREATE TABLE IF NOT EXISTS portcullis_control.approval_requests (
    id         text PRIMARY KEY,
    state      text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    approvers  text NOT NULL,
    requester  text NOT NULL,
    requester_for text,
    digest     text NOT NULL,
    body       text NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_requests_digest
    ON portcullis_control.approval_requests (digest);
CREATE INDEX IF NOT EXISTS approval_requests_pending
    ON portcullis_control.approval_requests (created_at) WHERE state = 'pending';
";

/// How to reach the database: a connection made on demand (TLS and the
/// password are the caller's concern), and a name for it without secrets.
#[derive(Clone)]
pub struct PgLocation {
    pub label: String,
    pub connect: Arc<dyn Fn() -> Result<Client, String> + Send + Sync>,
}

pub struct PostgresStore {
    location: PgLocation,
    client: Mutex<Option<Client>>,
}

impl PostgresStore {
    pub fn open(location: PgLocation) -> PostgresStore {
        PostgresStore {
            location,
            client: Mutex::new(None),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            store: self.location.label.clone(),
            error: e.to_string(),
        }
    }

    fn db_err(&self, e: &postgres::Error) -> StoreError {
        match e.as_db_error() {
            Some(db) => self.err(format!("{} ({})", db.message(), db.code().code())),
            None => self.err(e),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = (self.location.connect)().map_err(|e| self.err(e))?;
        client
            .batch_execute(
                "SET search_path = pg_catalog; SET statement_timeout = '5s'; SET lock_timeout = '5s'",
            )
            .map_err(|e| self.db_err(&e))?;
        let exists: bool = client
            .query_one(
                "SELECT pg_catalog.to_regclass('portcullis_control.approval_requests') IS NOT NULL",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db_err(&e))?;
        if !exists {
            let mut tx = client.transaction().map_err(|e| self.db_err(&e))?;
            tx.batch_execute("SELECT pg_catalog.pg_advisory_xact_lock(1346587467, 2)")
                .map_err(|e| self.db_err(&e))?;
            tx.batch_execute(SCHEMA).map_err(|e| self.db_err(&e))?;
            tx.commit().map_err(|e| self.db_err(&e))?;
        }
        // The table belongs to the schema's owner: one someone else put
        // there is not the store's.
        let same: bool = client
            .query_one(
                "SELECT c.relowner = n.nspowner FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = 'portcullis_control.approval_requests'::pg_catalog.regclass",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.db_err(&e))?;
        if !same {
            return Err(self.err(
                "portcullis_control.approval_requests belongs to another role than its schema; refusing to trust it",
            ));
        }
        Ok(client)
    }

    /// Runs `f` on the connection, made first when there is none; a
    /// connection that broke is made again once.
    fn with<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, WithError>,
    ) -> Result<T, WithError> {
        let mut conn = self.lock();
        for attempt in 0..2 {
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                *conn = Some(self.connect().map_err(WithError::Store)?);
            }
            let Some(client) = conn.as_mut() else {
                continue;
            };
            match f(client) {
                Ok(v) => return Ok(v),
                Err(WithError::Db(_)) if attempt == 0 && client.is_closed() => *conn = None,
                Err(WithError::Db(e)) => return Err(WithError::Store(self.db_err(&e))),
                Err(e) => return Err(e),
            }
        }
        Err(WithError::Store(self.err("the connection broke twice")))
    }

    fn decode(&self, id: &str, body: &str) -> Result<Request, StoreError> {
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
            path: self.location.label.clone().into(),
            id: id.to_owned(),
            error: e.to_string(),
        })
    }

    pub fn insert(&self, r: &Request) -> Result<(), StoreError> {
        let body = serde_json::to_string(r).unwrap_or_default();
        let (requester, requester_for) = super::requesters(r);
        self.with(|c| {
            c.execute(
                "INSERT INTO portcullis_control.approval_requests \
                 (id, state, created_at, expires_at, approvers, requester, requester_for, digest, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &r.id.as_str(),
                    &r.state.as_str(),
                    &r.created_at,
                    &r.asked.expires_at,
                    &r.asked.approvers,
                    &requester,
                    &requester_for,
                    &r.asked.digest.0,
                    &body,
                ],
            )
            .map_err(WithError::Db)
        })
        .map(|_| ())
        .map_err(|e| e.store())
    }

    pub fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        let body: Option<String> = self
            .with(|c| {
                c.query_opt(
                    "SELECT body FROM portcullis_control.approval_requests WHERE id = $1",
                    &[&id.as_str()],
                )
                .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                .map_err(WithError::Db)
            })
            .map_err(|e| e.store())?;
        body.map(|b| self.decode(id.as_str(), &b)).transpose()
    }

    pub fn list(
        &self,
        seen: &super::Seen,
        pending_only: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, body FROM portcullis_control.approval_requests \
             WHERE (approvers = ANY($2) OR requester = ANY($3) OR requester_for = ANY($3)) \
             {} ORDER BY created_at DESC LIMIT $4",
            if pending_only {
                "AND state = 'pending' AND expires_at > $1"
            } else {
                "AND $1::bigint IS NOT NULL"
            }
        );
        let rows = self
            .with(|c| {
                c.query(&sql, &[&now, &seen.groups, &seen.people, &limit])
                    .map_err(WithError::Db)
            })
            .map_err(|e| e.store())?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(|e| self.db_err(&e))?;
                let body: String = r.try_get(1).map_err(|e| self.db_err(&e))?;
                self.decode(&id, &body)
            })
            .collect()
    }

    /// Approved requests with `digest`, newest first.
    pub fn approved_with(&self, digest: &str) -> Result<Vec<RequestId>, StoreError> {
        let rows = self
            .with(|c| {
                c.query(
                    "SELECT id FROM portcullis_control.approval_requests \
                     WHERE digest = $1 AND state = 'approved' ORDER BY created_at DESC LIMIT 16",
                    &[&digest],
                )
                .map_err(WithError::Db)
            })
            .map_err(|e| e.store())?;
        rows.iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .map(RequestId)
                    .map_err(|e| self.db_err(&e))
            })
            .collect()
    }

    pub fn update(
        &self,
        id: &RequestId,
        change: &mut dyn FnMut(&mut Request) -> Result<(), RuleError>,
    ) -> Result<Request, DecideError> {
        let result = self.with(|c| {
            let mut tx = c.transaction().map_err(WithError::Db)?;
            // The row lock: two decisions on two proxies cannot both read
            // the request before either writes.
            let row = tx
                .query_opt(
                    "SELECT body FROM portcullis_control.approval_requests WHERE id = $1 FOR UPDATE",
                    &[&id.as_str()],
                )
                .map_err(WithError::Db)?;
            let Some(row) = row else {
                return Err(WithError::NotFound);
            };
            let body: String = row.try_get(0).map_err(WithError::Db)?;
            let mut request = self.decode(id.as_str(), &body).map_err(WithError::Store)?;
            let before = request.state;
            change(&mut request).map_err(WithError::Rule)?;
            let state: State = request.state;
            tx.execute(
                "UPDATE portcullis_control.approval_requests SET state = $2, body = $3 WHERE id = $1",
                &[
                    &id.as_str(),
                    &state.as_str(),
                    &serde_json::to_string(&request).unwrap_or_default(),
                ],
            )
            .map_err(WithError::Db)?;
            if state != before {
                // Delivered at commit, to every proxy listening.
                let payload = format!("{} {}", id.as_str(), state.as_str());
                tx.execute("SELECT pg_catalog.pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .map_err(WithError::Db)?;
            }
            tx.commit().map_err(WithError::Db)?;
            Ok(request)
        });
        result.map_err(|e| match e {
            WithError::NotFound => DecideError::NotFound(id.0.clone()),
            WithError::Rule(r) => DecideError::Rule(r),
            WithError::Store(s) => DecideError::Store(s),
            WithError::Db(e) => DecideError::Store(self.db_err(&e)),
        })
    }
}

/// What a call on the connection can end in.
enum WithError {
    Db(postgres::Error),
    Store(StoreError),
    NotFound,
    Rule(RuleError),
}

impl WithError {
    fn store(self) -> StoreError {
        match self {
            WithError::Store(s) => s,
            WithError::Db(e) => StoreError::Postgres {
                store: "approval store".into(),
                error: e.to_string(),
            },
            WithError::NotFound | WithError::Rule(_) => StoreError::Postgres {
                store: "approval store".into(),
                error: "unexpected answer".into(),
            },
        }
    }
}

/// Listens for decisions made through any proxy, calling `changed` for
/// each, until `stop` is set. On a new connection (the first, or after
/// one broke) it calls `caught_up` first: notifications sent while it was
/// away are lost, so the caller reads the requests it waits on again.
/// Blocking: run it on a thread of its own.
pub fn listen(
    location: &PgLocation,
    stop: &AtomicBool,
    mut changed: impl FnMut(RequestId, State),
    mut caught_up: impl FnMut(),
    mut failed: impl FnMut(&str),
) {
    while !stop.load(Ordering::Relaxed) {
        let mut client = match (location.connect)() {
            Ok(c) => c,
            Err(e) => {
                failed(&e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            failed(&e.to_string());
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        caught_up();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = client
                .notifications()
                .timeout_iter(Duration::from_millis(500))
                .next();
            match next {
                Ok(Some(n)) => {
                    if let Some((id, state)) = parse(n.payload()) {
                        changed(id, state);
                    }
                }
                Ok(None) => {
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    failed(&e.to_string());
                    break;
                }
            }
        }
    }
}

fn parse(payload: &str) -> Option<(RequestId, State)> {
    let (id, state) = payload.split_once(' ')?;
    let id = RequestId::parse(id)?;
    let state = match state {
        "approved" => State::Approved,
        "denied" => State::Denied,
        "expired" => State::Expired,
        "withdrawn" => State::Withdrawn,
        _ => return None,
    };
    Some((id, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_strictly() {
        let id = RequestId::new();
        assert_eq!(
            parse(&format!("{id} approved")),
            Some((id.clone(), State::Approved))
        );
        assert_eq!(parse(&format!("{id} pending")), None);
        assert_eq!(parse("R-x approved"), None);
        assert_eq!(parse(&id.to_string()), None);
    }
}
