//! Editing a store's records as anyone with write access to its file
//! could: for drills and tests that show verification catches it. The
//! records are compressed in chunks, so a plain SQL `UPDATE` cannot reach
//! them; this reads them all, hands them over as a list, and writes the
//! list back (no chain, hash or checkpoint is touched unless the caller
//! does).

use std::path::Path;

use rusqlite::Connection;

pub use super::rows::OwnedRow as StoredRow;
use super::rows::{self, Order};
use crate::AuditError;

/// Every record of the store at `path`, in stored order.
pub fn read(path: &Path) -> Result<Vec<StoredRow>, AuditError> {
    let conn = Connection::open(path)?;
    read_from(&conn)
}

fn read_from(conn: &Connection) -> Result<Vec<StoredRow>, AuditError> {
    let mut out = Vec::new();
    rows::scan(conn, 0, u64::MAX, Order::Ascending, &mut |r| {
        out.push(StoredRow::of(r));
        Ok(true)
    })?;
    Ok(out)
}

/// Reads every record, lets `edit` change the list (each row's `seq` is
/// the position it is stored at: keep them ascending), and stores the
/// list in its place, in one transaction.
pub fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<StoredRow>)) -> Result<(), AuditError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let tx = conn.transaction()?;
    let mut list = read_from(&tx)?;
    edit(&mut list);
    tx.execute("DELETE FROM audit_records", [])?;
    tx.execute("DELETE FROM audit_chunks", [])?;
    rows::write_rows(&tx, &list)?;
    tx.commit()?;
    Ok(())
}
