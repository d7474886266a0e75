//! Reading the shared store: which logs it holds, and each log as a
//! [`LogSource`] for verification.

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::{size_i64, PostgresStore};
use crate::chain::{Hash, Head, LogId};
use crate::checkpoint::{Checkpoint, PublicKey};
use crate::verify::{LogSource, StoredRecord};
use crate::AuditError;

/// One node's log in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    pub log: LogId,
    /// The node's configured name.
    pub node: String,
    /// The copy of the checkpoint key's public half the node keeps in the
    /// store (a convenience: an auditor uses a copy obtained elsewhere).
    pub public_key: Option<PublicKey>,
}

/// The log of `node`, created (with a random id) the first time.
pub(super) fn log_of_node(client: &mut Client, node: &str) -> Result<(LogId, i32), AuditError> {
    client.execute(
        "INSERT INTO portcullis_audit.logs (log_id, node) VALUES ($1, $2) ON CONFLICT (node) DO NOTHING",
        &[&LogId::random().as_str(), &node],
    )?;
    let row = client.query_one(
        "SELECT log_id, number FROM portcullis_audit.logs WHERE node = $1",
        &[&node],
    )?;
    Ok((LogId::new(row.get::<_, String>(0)), row.get(1)))
}

impl PostgresStore {
    /// Every log in the store, by node name.
    pub fn logs(&self) -> Result<Vec<LogInfo>, AuditError> {
        let rows = self.client().query(
            "SELECT log_id, node, public_key FROM portcullis_audit.logs ORDER BY node",
            &[],
        )?;
        rows.into_iter()
            .map(|r| {
                let key: Option<String> = r.get(2);
                Ok(LogInfo {
                    log: LogId::new(r.get::<_, String>(0)),
                    node: r.get(1),
                    public_key: key.map(|k| PublicKey::parse(&k)).transpose()?,
                })
            })
            .collect()
    }

    /// One log, for [`crate::verify::verify`].
    pub fn log_source(&self, log: &LogId) -> PgLog<'_> {
        PgLog {
            store: self,
            log: log.clone(),
        }
    }
}

/// One log of the shared store, read for verification: position is the
/// `seq` column, as in the SQLite store.
#[derive(Debug)]
pub struct PgLog<'a> {
    store: &'a PostgresStore,
    log: LogId,
}

impl LogSource for PgLog<'_> {
    fn log_id(&self) -> Result<LogId, AuditError> {
        Ok(self.log.clone())
    }

    fn scan(&self, each: &mut dyn FnMut(StoredRecord)) -> Result<(), AuditError> {
        let mut client = self.store.client();
        // Streamed, not collected: verification keeps memory in proportion
        // to what it finds, not to the log.
        let mut rows = client.query_raw(
            "SELECT seq, hash, envelope FROM portcullis_audit.records WHERE log_id = $1 ORDER BY seq",
            [self.log.as_str()],
        )?;
        while let Some(r) = rows.next()? {
            each(stored(r.get(0), r.get(1), r.get(2)));
        }
        Ok(())
    }

    fn record_at(&self, position: u64) -> Result<Option<StoredRecord>, AuditError> {
        let row = self.store.client().query_opt(
            "SELECT seq, hash, envelope FROM portcullis_audit.records WHERE log_id = $1 AND seq = $2",
            &[&self.log.as_str(), &size_i64(position)],
        )?;
        Ok(row.map(|r| stored(r.get(0), r.get(1), r.get(2))))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        let rows = self.store.client().query(
            "SELECT size, ts, head, key_id, signature FROM portcullis_audit.checkpoints \
             WHERE log_id = $1 ORDER BY size",
            &[&self.log.as_str()],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Checkpoint {
                log: self.log.clone(),
                size: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                // An unreadable head hash can only match nothing.
                head: Hash::try_from(r.get::<_, String>(2)).unwrap_or(Hash([0; 32])),
                ts: r.get(1),
                key_id: r.get(3),
                signature: r.get(4),
            })
            .collect())
    }

    fn recorded_head(&self) -> Result<Option<Head>, AuditError> {
        let head = super::write::stored_head(&mut self.store.client(), &self.log)?;
        Ok((head.size > 0).then_some(head))
    }
}

/// A hash column that is not 32 bytes is kept as all zeros, which no
/// envelope hashes to: verification then reports the record as edited.
fn stored(seq: i64, hash: Vec<u8>, envelope: Vec<u8>) -> StoredRecord {
    StoredRecord {
        position: u64::try_from(seq).unwrap_or(0),
        hash: Some(
            <[u8; 32]>::try_from(hash)
                .map(Hash)
                .unwrap_or(Hash([0; 32])),
        ),
        envelope,
    }
}
