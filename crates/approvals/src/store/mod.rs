//! Where requests live: the control-plane store, a SQLite file by default
//! (one proxy, or several on one machine), PostgreSQL when several proxies
//! share state.
//!
//! Every change to a request is one transaction that reads the request,
//! applies [`crate::rules`] and writes it back, so two approvers deciding
//! at once (on two nodes) cannot both count, and a decision cannot land on
//! a request its session has just withdrawn.

mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};

use crate::request::{NewRequest, Person, Request, RequestId, State, Verdict};
use crate::rules::RuleError;

pub use postgres::{listen, PgLocation, PostgresStore, CHANNEL};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("approval store {path}: {error}")]
    Sqlite { path: PathBuf, error: String },
    #[error("approval store {path}: schema version {found} is newer than this Portcullis knows ({known})")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("approval store {store}: {error}")]
    Postgres { store: String, error: String },
    #[error("approval store {path}: request {id} is malformed ({error})")]
    Corrupt {
        path: PathBuf,
        id: String,
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no request {0}")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whom a listing is for: its groups, and the people it is (lower case,
/// as requests keep their requesters for searching).
pub struct Seen {
    pub groups: Vec<String>,
    pub people: Vec<String>,
}

impl Seen {
    fn of(p: &Person) -> Seen {
        Seen {
            groups: p.groups.clone(),
            people: p.people().map(|n| n.trim().to_lowercase()).collect(),
        }
    }
}

/// A request's requester and the person it acts for, as kept for
/// searching.
fn requesters(r: &Request) -> (String, Option<String>) {
    let q = &r.asked.requester;
    (
        q.subject.trim().to_lowercase(),
        q.on_behalf_of.as_ref().map(|p| p.trim().to_lowercase()),
    )
}

/// The control plane's requests.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

impl Store {
    /// The SQLite store in `path` (the control-plane file, shared with the
    /// API keys), made when missing.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).map(Store::Sqlite)
    }

    /// The PostgreSQL store at `location` (connects on first use).
    pub fn open_postgres(location: PgLocation) -> Store {
        Store::Postgres(Box::new(PostgresStore::open(location)))
    }

    /// Whether a change recorded through another proxy is announced here
    /// (see [`listen`]); otherwise only changes made through this process
    /// wake its sessions.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Stores a new pending request.
    pub fn create(
        &self,
        id: RequestId,
        asked: NewRequest,
        now: i64,
    ) -> Result<Request, StoreError> {
        let request = Request {
            id,
            asked,
            created_at: now,
            state: State::Pending,
            decisions: Vec::new(),
            closed_at: None,
            used_at: None,
        };
        match self {
            Store::Sqlite(s) => s.insert(&request)?,
            Store::Postgres(s) => s.insert(&request)?,
        }
        Ok(request)
    }

    pub fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get(id),
            Store::Postgres(s) => s.get(id),
        }
    }

    /// The newest requests `to` may see first (those it made, or that
    /// were made on its behalf, and those its groups decide); only those
    /// still pending at `now` when `pending_only`.
    pub fn list(
        &self,
        to: &Person,
        pending_only: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let seen = Seen::of(to);
        match self {
            Store::Sqlite(s) => s.list(&seen, pending_only, now, limit),
            Store::Postgres(s) => s.list(&seen, pending_only, now, limit),
        }
    }

    /// Records `approver`'s decision, as the rules allow.
    pub fn decide(
        &self,
        id: &RequestId,
        approver: &Person,
        verdict: Verdict,
        reason: Option<String>,
        now: i64,
    ) -> Result<Request, DecideError> {
        self.update(id, &mut |r| {
            crate::rules::decide(r, approver, verdict, reason.clone(), now).map(|_| ())
        })
    }

    /// The approval of a statement refused to a session that did not wait,
    /// sent again (`digest`: the same identity, target, text and
    /// parameters) within `window` milliseconds of the approval, and for
    /// which `same` holds too (the caller compares what the digest does
    /// not cover: who acts for whom, the group, what the statement
    /// touches now): marked used and returned, so that it runs once.
    pub fn take_rerun(
        &self,
        digest: &crate::Digest,
        same: &dyn Fn(&Request) -> bool,
        now: i64,
        window: i64,
    ) -> Result<Option<Request>, StoreError> {
        let ids = match self {
            Store::Sqlite(s) => s.approved_with(&digest.0)?,
            Store::Postgres(s) => s.approved_with(&digest.0)?,
        };
        for id in ids {
            let taken = self.update(&id, &mut |r| {
                // Checked again under the store's lock: used once.
                match r.rerun_until(window) {
                    Some(until) if now < until && r.asked.digest == *digest && same(r) => {
                        r.used_at = Some(now);
                        Ok(())
                    }
                    _ => Err(RuleError::Closed(r.id.0.clone(), r.state)),
                }
            });
            match taken {
                Ok(r) => return Ok(Some(r)),
                Err(DecideError::Store(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(None)
    }

    /// Ends a request that is still pending (its session gave up waiting:
    /// expired, or withdrawn by a cancel or disconnect). Returns the
    /// request as it stands: a decision that landed first is kept.
    pub fn close(&self, id: &RequestId, state: State, now: i64) -> Result<Request, DecideError> {
        self.update(id, &mut |r| {
            if r.state == State::Pending {
                r.state = state;
                r.closed_at = Some(now);
            }
            Ok(())
        })
    }

    fn update(
        &self,
        id: &RequestId,
        change: &mut dyn FnMut(&mut Request) -> Result<(), RuleError>,
    ) -> Result<Request, DecideError> {
        match self {
            Store::Sqlite(s) => s.update(id, change),
            Store::Postgres(s) => s.update(id, change),
        }
    }
}

#[cfg(test)]
mod tests;
