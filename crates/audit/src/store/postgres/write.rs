//! The node's writer: batches, the writer lock, and picking up again
//! after a lost connection.

use postgres::Client;

use super::{size_i64, PostgresStore, LOCK_CLASS};
use crate::chain::{Hash, Head, LogId};
use crate::checkpoint::Checkpoint;
use crate::store::{BatchStore, StoredItem};
use crate::AuditError;

/// What the writer keeps between batches.
#[derive(Debug)]
pub(super) struct WriterState {
    node: String,
    /// The writer lock's key (the log's `number`).
    number: i32,
    /// The head as this writer last committed it (or found it at start).
    pub(super) head: Head,
    /// The last commit failed: the connection may be gone, and the batch
    /// may have been committed without the answer arriving.
    uncertain: bool,
}

impl WriterState {
    pub(super) fn new(node: &str, number: i32, head: Head) -> Self {
        WriterState {
            node: node.to_owned(),
            number,
            head,
            uncertain: false,
        }
    }
}

/// Takes the log's writer lock for the life of the connection, or says
/// who holds it.
pub(super) fn lock(client: &mut Client, number: i32, node: &str) -> Result<(), AuditError> {
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &number],
        )?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(AuditError::WriterInUse {
            node: node.to_owned(),
        })
    }
}

/// The head recorded for `log` (the empty head before its first batch),
/// refused when records lie beyond it: the next batch would collide with
/// them, so the writer says why at start instead.
pub(super) fn start_head(client: &mut Client, log: &LogId) -> Result<Head, AuditError> {
    let head = stored_head(client, log)?;
    let last: Option<i64> = client
        .query_one(
            "SELECT max(seq) FROM portcullis_audit.records WHERE log_id = $1",
            &[&log.as_str()],
        )?
        .get(0);
    if last.is_some_and(|l| l > size_i64(head.size)) {
        return Err(AuditError::Corrupt {
            what: "log head",
            why: format!(
                "log {log} holds records after its recorded head (seq {}); run `portcullis audit verify` on the store",
                head.size
            ),
        });
    }
    Ok(head)
}

/// The head recorded for `log` (the empty head before its first batch).
pub(super) fn stored_head(client: &mut Client, log: &LogId) -> Result<Head, AuditError> {
    let row = client.query_one(
        "SELECT head_size, head_hash FROM portcullis_audit.logs WHERE log_id = $1",
        &[&log.as_str()],
    )?;
    let size: Option<i64> = row.get(0);
    let hash: Option<String> = row.get(1);
    match (size, hash) {
        (Some(size), Some(hash)) => Ok(Head {
            log: log.clone(),
            size: u64::try_from(size).map_err(|_| AuditError::Corrupt {
                what: "head_size",
                why: "negative".into(),
            })?,
            hash: Hash::try_from(hash).map_err(|why| AuditError::Corrupt {
                what: "head_hash",
                why,
            })?,
        }),
        _ => Ok(Head::empty(log.clone())),
    }
}

const INSERT: &str = "
INSERT INTO portcullis_audit.records
    (log_id, seq, ts, kind, subject, decision, refers_to, terms, hash, envelope)
SELECT $1, u.seq, u.ts, u.kind, u.subject, u.decision, u.refers_to,
       array_remove(string_to_array(u.terms, E'\\n'), ''), u.hash, u.envelope
FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[],
            $8::text[], $9::bytea[], $10::bytea[])
     AS u(seq, ts, kind, subject, decision, refers_to, terms, hash, envelope)";

impl PostgresStore {
    fn writer(&self) -> Result<&WriterState, AuditError> {
        self.writer.as_ref().ok_or(AuditError::InvalidField {
            field: "store",
            why: "opened for reading only",
        })
    }

    /// After a failed commit: reconnects if the connection is gone (taking
    /// the lock again) and finds whether the batch ending at `head` made it
    /// in. `Ok(true)`: it did.
    fn recover(&mut self, head: &Head) -> Result<bool, AuditError> {
        let Some(w) = self.writer.as_ref() else {
            return Ok(false);
        };
        let (number, node, log) = (w.number, w.node.clone(), w.head.log.clone());
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if client.is_closed() {
            let mut fresh = self.target.connect()?;
            lock(&mut fresh, number, &node)?;
            *client = fresh;
        }
        let stored = stored_head(&mut client, &log)?;
        drop(client);
        let w = self.writer.as_mut().ok_or(AuditError::StoreDown)?;
        if stored == *head {
            w.head = stored;
            w.uncertain = false;
            return Ok(true);
        }
        if stored != w.head {
            // Someone else wrote this log meanwhile: writing on would fork
            // the chain.
            return Err(AuditError::Corrupt {
                what: "log head",
                why: format!(
                    "node {node}'s log moved to seq {} while its writer was away; another process writes it",
                    stored.size
                ),
            });
        }
        w.uncertain = false;
        Ok(false)
    }

    fn write_batch(
        &mut self,
        batch: &[StoredItem],
        checkpoint: Option<&Checkpoint>,
        head: &Head,
    ) -> Result<(), AuditError> {
        let w = self.writer()?;
        let log = w.head.log.as_str().to_owned();
        let from = w.head.clone();
        let n = batch.len();
        let (mut seq, mut ts, mut kind, mut subject, mut decision, mut refers, mut terms) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut hash, mut envelope) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for item in batch {
            let ix = &item.index;
            seq.push(size_i64(item.sealed.seq));
            ts.push(item.sealed.ts_micros);
            kind.push(ix.kind);
            subject.push(ix.subject.as_deref());
            decision.push(ix.decision);
            refers.push(ix.refers_to.map(size_i64));
            terms.push(&*ix.terms);
            hash.push(&item.sealed.hash.0[..]);
            envelope.push(item.sealed.envelope.as_slice());
        }
        let mut client = self.client();
        let mut tx = client.transaction()?;
        if n > 0 {
            tx.execute(
                INSERT,
                &[
                    &log, &seq, &ts, &kind, &subject, &decision, &refers, &terms, &hash, &envelope,
                ],
            )?;
        }
        if let Some(cp) = checkpoint {
            tx.execute(
                "INSERT INTO portcullis_audit.checkpoints (log_id, size, ts, head, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (log_id, size) DO UPDATE SET ts = excluded.ts, head = excluded.head, \
                 key_id = excluded.key_id, signature = excluded.signature",
                &[
                    &log,
                    &size_i64(cp.size),
                    &cp.ts,
                    &cp.head.to_hex(),
                    &cp.key_id,
                    &cp.signature,
                ],
            )?;
        }
        // Only from the head this writer holds: a second writer, had the
        // lock been lost unseen, updates nothing and rolls back.
        let moved = tx.execute(
            "UPDATE portcullis_audit.logs SET head_size = $2, head_hash = $3 \
             WHERE log_id = $1 AND COALESCE(head_size, 0) = $4 \
             AND COALESCE(head_hash, $5) = $5",
            &[
                &log,
                &size_i64(head.size),
                &head.hash.to_hex(),
                &size_i64(from.size),
                &from.hash.to_hex(),
            ],
        )?;
        if moved != 1 {
            return Err(AuditError::Corrupt {
                what: "log head",
                why: "the log's recorded head is not the one this writer holds; another process writes it".into(),
            });
        }
        tx.commit()?;
        drop(client);
        if let Some(w) = self.writer.as_mut() {
            w.head = head.clone();
        }
        Ok(())
    }
}

impl BatchStore for PostgresStore {
    /// The head this writer holds: the recorded one at start (records
    /// after it, if the logs row was edited back, would collide with the
    /// next batch and fail it rather than be overwritten).
    fn head(&self) -> Result<Head, AuditError> {
        Ok(self.writer()?.head.clone())
    }

    fn commit(
        &mut self,
        batch: &[StoredItem],
        checkpoint: Option<&Checkpoint>,
        head: &Head,
    ) -> Result<(), AuditError> {
        if self.writer()?.uncertain && self.recover(head)? {
            return Ok(());
        }
        let result = self.write_batch(batch, checkpoint, head);
        if result.is_err() {
            if let Some(w) = self.writer.as_mut() {
                w.uncertain = true;
            }
        }
        result
    }
}
