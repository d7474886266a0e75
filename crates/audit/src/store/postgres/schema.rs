//! The shared store's tables, in a schema of their own so that the
//! control-plane database can hold other tables beside them.
//!
//! - `meta(key, value)`: `format` (the chain format) and `layout` (this
//!   table layout).
//! - `logs`: one row per node: its `log_id` (random, chosen when the node
//!   first wrote), `node` (the configured name), `number` (the key of its
//!   writer lock), the recorded head (`head_size`, `head_hash`, rewritten
//!   by every batch) and, for convenience only, the checkpoint key's
//!   `public_key`.
//! - `records`: one row per record, keyed by `(log_id, seq)`. `envelope`
//!   holds the exact bytes that were hashed and `hash` their hash; `ts`,
//!   `kind`, `subject`, `decision`, `refers_to` and `terms` are copies for
//!   search, not trusted by verification.
//! - `checkpoints`: keyed by `(log_id, size)`.
//!
//! Search uses PostgreSQL's own indexes: a GIN index on the terms, a
//! B-tree on `ts` (results across logs come newest first by time), and one
//! on `(log_id, refers_to)` for a statement's outcome.

use postgres::Client;

use crate::chain::FORMAT_VERSION;
use crate::AuditError;

/// The layout this code writes (meta `layout`).
const LAYOUT: &str = "1";

/// Taken (for the transaction) while the schema is created, so that two
/// nodes starting at once do not both create it.
const SCHEMA_LOCK: i64 = 0x5043_4C41_0000_0000;

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS portcullis_audit;
CREATE TABLE IF NOT EXISTS portcullis_audit.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS portcullis_audit.logs (
    log_id text PRIMARY KEY,
    node text NOT NULL UNIQUE,
    number integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    head_size bigint,
    head_hash text,
    public_key text
);
CREATE TABLE IF NOT EXISTS portcullis_audit.records (
    log_id text NOT NULL,
    seq bigint NOT NULL,
    ts bigint NOT NULL,
    kind text NOT NULL,
    subject text,
    decision text,
    refers_to bigint,
    terms text[] NOT NULL,
    hash bytea NOT NULL,
    envelope bytea NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX IF NOT EXISTS records_terms ON portcullis_audit.records USING gin (terms);
CREATE INDEX IF NOT EXISTS records_ts ON portcullis_audit.records (ts);
CREATE INDEX IF NOT EXISTS records_refers_to ON portcullis_audit.records (log_id, refers_to)
    WHERE refers_to IS NOT NULL;
CREATE TABLE IF NOT EXISTS portcullis_audit.checkpoints (
    log_id text NOT NULL,
    size bigint NOT NULL,
    ts bigint NOT NULL,
    head text NOT NULL,
    key_id text NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (log_id, size)
);
";

/// Creates the schema when missing, or checks the one there.
pub(super) fn ensure(client: &mut Client) -> Result<(), AuditError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    tx.execute(
        "INSERT INTO portcullis_audit.meta (key, value) VALUES ('format', $1), ('layout', $2) \
         ON CONFLICT (key) DO NOTHING",
        &[&FORMAT_VERSION.to_string(), &LAYOUT],
    )?;
    check_versions(&mut tx)?;
    tx.commit()?;
    Ok(())
}

/// Checks that the schema exists and has a layout this code reads.
pub(super) fn check(client: &mut Client) -> Result<(), AuditError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('portcullis_audit.meta') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Err(AuditError::Corrupt {
            what: "PostgreSQL store",
            why: "this database has no audit store (schema portcullis_audit); a proxy creates it when it first writes".into(),
        });
    }
    let mut tx = client.transaction()?;
    check_versions(&mut tx)?;
    tx.commit()?;
    Ok(())
}

fn check_versions(tx: &mut postgres::Transaction<'_>) -> Result<(), AuditError> {
    for (key, want) in [
        ("format", FORMAT_VERSION.to_string()),
        ("layout", LAYOUT.into()),
    ] {
        let row = tx.query_opt(
            "SELECT value FROM portcullis_audit.meta WHERE key = $1",
            &[&key],
        )?;
        let have: Option<String> = row.map(|r| r.get(0));
        if have.as_deref() != Some(want.as_str()) {
            return Err(AuditError::Corrupt {
                what: if key == "format" { "format" } else { "layout" },
                why: format!(
                    "the PostgreSQL store says {key} {}, this Portcullis reads {want}",
                    have.as_deref().unwrap_or("(none)")
                ),
            });
        }
    }
    Ok(())
}
