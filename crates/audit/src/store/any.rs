//! Whichever store the configuration names, for the readers: search
//! treats both alike; verification and export look at which it is.

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::chain::LogId;
use crate::search::{Filter, Found, SearchSource, SubjectSummary};
use crate::AuditError;

// A store is opened once per command: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Store {
    /// One log in a file.
    Sqlite(SqliteStore),
    /// One log per node in a shared database.
    Postgres(PostgresStore),
}

impl Store {
    fn source(&self) -> &dyn SearchSource {
        match self {
            Store::Sqlite(s) => s,
            Store::Postgres(p) => p,
        }
    }
}

impl SearchSource for Store {
    fn search(&self, filter: &Filter) -> Result<Vec<Found>, AuditError> {
        self.source().search(filter)
    }

    fn subjects(&self, filter: &Filter) -> Result<Vec<SubjectSummary>, AuditError> {
        self.source().subjects(filter)
    }

    fn outcome_of(&self, log: &LogId, statement_seq: u64) -> Result<Option<Found>, AuditError> {
        self.source().outcome_of(log, statement_seq)
    }
}
