//! Where the SQLite store keeps its records, and the one way to read and
//! write them.
//!
//! Records live in `audit_chunks`: one row per commit (cut at
//! [`CHUNK_RECORDS`]), `first_seq` its key, `last_seq`, `ts_first` and
//! `ts_last` beside the compressed records (see [`super::chunk`]). A store
//! written before chunks (layout 2) also has rows in `audit_records`, one
//! per record; a writer that opens it leaves them where they are and
//! appends chunks after them, so every reader here reads both: the old
//! rows first, then the chunks, each in seq order.

use rusqlite::{params, Connection, OptionalExtension};

use super::chunk::{Decoded, Encoder, Row, CHUNK_RECORDS};
use crate::store::StoredItem;
use crate::AuditError;

/// The direction of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// What a scan does with a chunk that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damaged {
    /// Fails: search and export must not quietly leave records out.
    Fail,
    /// Passes over it: verification then finds its records missing and
    /// says where.
    Skip,
}

/// A hash column that is not 32 bytes reads as all zeros, which no
/// envelope hashes to: verification then reports the record as edited.
static ZERO_HASH: [u8; 32] = [0; 32];

/// Visits the records stored at positions `lo..=hi` in `order` until
/// `each` returns `false`.
pub fn scan(
    conn: &Connection,
    lo: u64,
    hi: u64,
    order: Order,
    each: &mut dyn FnMut(&Row<'_>) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    scan_with(conn, lo, hi, order, Damaged::Fail, each)
}

pub fn scan_with(
    conn: &Connection,
    lo: u64,
    hi: u64,
    order: Order,
    damaged: Damaged,
    each: &mut dyn FnMut(&Row<'_>) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    if lo > hi {
        return Ok(());
    }
    match order {
        Order::Ascending => {
            if legacy(conn, lo, hi, order, each)? {
                chunks(conn, lo, hi, order, damaged, each)?;
            }
        }
        Order::Descending => {
            if chunks(conn, lo, hi, order, damaged, each)? {
                legacy(conn, lo, hi, order, each)?;
            }
        }
    }
    Ok(())
}

/// The per-record rows of a layout 2 store. Returns whether to go on.
fn legacy(
    conn: &Connection,
    lo: u64,
    hi: u64,
    order: Order,
    each: &mut dyn FnMut(&Row<'_>) -> Result<bool, AuditError>,
) -> Result<bool, AuditError> {
    let mut stmt = conn.prepare_cached(match order {
        Order::Ascending => {
            "SELECT seq, ts, kind, subject, decision, refers_to, terms, hash, envelope \
             FROM audit_records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
        }
        Order::Descending => {
            "SELECT seq, ts, kind, subject, decision, refers_to, terms, hash, envelope \
             FROM audit_records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq DESC"
        }
    })?;
    let mut rows = stmt.query(params![clamp(lo), clamp(hi)])?;
    while let Some(r) = rows.next()? {
        let text = |i: usize| -> Result<Option<&str>, AuditError> {
            Ok(match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => None,
                v => Some(v.as_str().map_err(rusqlite::Error::from)?),
            })
        };
        let hash: &[u8; 32] = r
            .get_ref(7)?
            .as_blob()
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or(&ZERO_HASH);
        let row = Row {
            seq: r.get::<_, i64>(0)? as u64,
            ts: r.get(1)?,
            kind: text(2)?.unwrap_or_default(),
            subject: text(3)?,
            decision: text(4)?,
            refers_to: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            terms: text(6)?.unwrap_or_default(),
            hash,
            envelope: r.get_ref(8)?.as_bytes().map_err(rusqlite::Error::from)?,
        };
        if !each(&row)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The chunks holding positions `lo..=hi`. Returns whether to go on.
fn chunks(
    conn: &Connection,
    lo: u64,
    hi: u64,
    order: Order,
    damaged: Damaged,
    each: &mut dyn FnMut(&Row<'_>) -> Result<bool, AuditError>,
) -> Result<bool, AuditError> {
    // From the chunk that holds `lo` (the last one starting at or below
    // it), by the key alone.
    let mut stmt = conn.prepare_cached(match order {
        Order::Ascending => {
            "SELECT body FROM audit_chunks WHERE first_seq BETWEEN \
             COALESCE((SELECT first_seq FROM audit_chunks WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1), ?1) \
             AND ?2 ORDER BY first_seq"
        }
        Order::Descending => {
            "SELECT body FROM audit_chunks WHERE first_seq BETWEEN \
             COALESCE((SELECT first_seq FROM audit_chunks WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1), ?1) \
             AND ?2 ORDER BY first_seq DESC"
        }
    })?;
    let mut rows = stmt.query(params![clamp(lo), clamp(hi)])?;
    let mut decoded = Decoded::default();
    while let Some(r) = rows.next()? {
        let body = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from);
        let loaded = match body {
            Ok(b) => decoded.load(b),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = loaded {
            match damaged {
                Damaged::Fail => return Err(e),
                Damaged::Skip => continue,
            }
        }
        let mut inside = decoded.rows();
        match order {
            Order::Ascending => {
                for row in inside.by_ref() {
                    let row = match (row, damaged) {
                        (Ok(row), _) => row,
                        (Err(e), Damaged::Fail) => return Err(e),
                        (Err(_), Damaged::Skip) => break,
                    };
                    if row.seq < lo || row.seq > hi {
                        continue;
                    }
                    if !each(&row)? {
                        return Ok(false);
                    }
                }
            }
            Order::Descending => {
                let mut backwards: Vec<Row<'_>> = Vec::with_capacity(CHUNK_RECORDS);
                for row in inside.by_ref() {
                    match (row, damaged) {
                        (Ok(row), _) => backwards.push(row),
                        (Err(e), Damaged::Fail) => return Err(e),
                        (Err(_), Damaged::Skip) => break,
                    }
                }
                for row in backwards.iter().rev() {
                    if row.seq < lo || row.seq > hi {
                        continue;
                    }
                    if !each(row)? {
                        return Ok(false);
                    }
                }
            }
        }
    }
    Ok(true)
}

/// SQLite integers are signed: positions beyond `i64::MAX` do not exist.
fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The record at position `seq`, owned.
pub fn get(conn: &Connection, seq: u64) -> Result<Option<OwnedRow>, AuditError> {
    let mut found = None;
    scan(conn, seq, seq, Order::Ascending, &mut |r| {
        found = Some(OwnedRow::of(r));
        Ok(false)
    })?;
    Ok(found)
}

/// The last record stored, owned.
pub fn last(conn: &Connection) -> Result<Option<OwnedRow>, AuditError> {
    match last_seq(conn)? {
        Some(seq) => get(conn, seq),
        None => Ok(None),
    }
}

/// The highest position stored.
pub fn last_seq(conn: &Connection) -> Result<Option<u64>, AuditError> {
    let chunk: Option<i64> = conn
        .prepare_cached("SELECT last_seq FROM audit_chunks ORDER BY first_seq DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if let Some(s) = chunk {
        return Ok(Some(s.max(0) as u64));
    }
    let row: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM audit_records")?
        .query_row([], |r| r.get(0))?;
    Ok(row.map(|s| s.max(0) as u64))
}

/// The lowest position stored.
pub fn first_seq(conn: &Connection) -> Result<Option<u64>, AuditError> {
    let row: Option<i64> = conn
        .prepare_cached("SELECT min(seq) FROM audit_records")?
        .query_row([], |r| r.get(0))?;
    if let Some(s) = row {
        return Ok(Some(s.max(0) as u64));
    }
    let chunk: Option<i64> = conn
        .prepare_cached("SELECT first_seq FROM audit_chunks ORDER BY first_seq LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(chunk.map(|s| s.max(0) as u64))
}

/// The first position whose ts is at or after `ts`, found by bisecting
/// (ts never decreases along the chain, so no ts index is kept): each probe
/// is a key lookup; gaps (deleted rows) are stepped over.
pub fn first_at_or_after(conn: &Connection, ts: i64) -> Result<Option<u64>, AuditError> {
    // The old rows first: they come before every chunk.
    let legacy = first_key_reaching(
        conn,
        "SELECT seq, ts FROM audit_records WHERE seq >= ?1 ORDER BY seq LIMIT 1",
        ts,
    )?;
    if legacy.is_some() {
        return Ok(legacy);
    }
    // The first chunk that ends at or after `ts`, then the record in it.
    let Some(first) = first_key_reaching(
        conn,
        "SELECT first_seq, ts_last FROM audit_chunks WHERE first_seq >= ?1 ORDER BY first_seq LIMIT 1",
        ts,
    )?
    else {
        return Ok(None);
    };
    let mut found = None;
    scan(conn, first, u64::MAX, Order::Ascending, &mut |r| {
        if r.ts >= ts {
            found = Some(r.seq);
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(found)
}

/// The first key whose time reaches `ts`, by bisection over `probe`: a
/// query that gives the first (key, time) at or after a key, times never
/// decreasing with keys.
fn first_key_reaching(conn: &Connection, probe: &str, ts: i64) -> Result<Option<u64>, AuditError> {
    let mut probe = conn.prepare_cached(probe)?;
    // Invariant: every key below `lo` has a time before `ts`; the first
    // key at or after `hi`, if any, does not.
    let (mut lo, mut hi) = (0i64, i64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, i64)> = probe
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((key, t)) if t < ts => lo = key.saturating_add(1),
            _ => hi = mid,
        }
    }
    let first: Option<i64> = probe.query_row([lo], |r| r.get(0)).optional()?;
    Ok(first.map(|s| s.max(0) as u64))
}

/// Appends a commit's records as chunks.
pub fn append(tx: &Connection, enc: &mut Encoder, batch: &[StoredItem]) -> Result<(), AuditError> {
    write_chunks(tx, enc, batch, |item| Row {
        seq: item.sealed.seq,
        ts: item.sealed.ts_micros,
        kind: item.index.kind,
        subject: item.index.subject.as_deref(),
        decision: item.index.decision,
        refers_to: item.index.refers_to,
        terms: &item.index.terms,
        hash: &item.sealed.hash.0,
        envelope: &item.sealed.envelope,
    })
}

/// Writes rows as chunks (in the order given).
pub fn write_rows(tx: &Connection, rows: &[OwnedRow]) -> Result<(), AuditError> {
    write_chunks(tx, &mut Encoder::default(), rows, OwnedRow::as_row)
}

/// Writes `items` as chunks of [`CHUNK_RECORDS`], each keyed by its first
/// record's seq.
fn write_chunks<'a, T>(
    tx: &Connection,
    enc: &mut Encoder,
    items: &'a [T],
    row: impl Fn(&'a T) -> Row<'a>,
) -> Result<(), AuditError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO audit_chunks (first_seq, last_seq, ts_first, ts_last, body) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for part in items.chunks(CHUNK_RECORDS) {
        let (Some(first), Some(last)) = (part.first().map(&row), part.last().map(&row)) else {
            continue;
        };
        enc.begin();
        for item in part {
            enc.push(&row(item));
        }
        insert.execute(params![
            clamp(first.seq),
            clamp(last.seq),
            first.ts,
            last.ts,
            enc.finish(),
        ])?;
    }
    Ok(())
}

/// Deletes every record at or below position `seq` (rotation): old rows,
/// whole chunks, and from the chunk that straddles it the records up to
/// it (the chunk is written again with the rest).
pub fn delete_through(tx: &Connection, seq: u64) -> Result<(), AuditError> {
    let s = clamp(seq);
    tx.execute("DELETE FROM audit_records WHERE seq <= ?1", [s])?;
    tx.execute("DELETE FROM audit_chunks WHERE last_seq <= ?1", [s])?;
    let straddling: Option<i64> = tx
        .query_row(
            "SELECT first_seq FROM audit_chunks WHERE first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1",
            [s],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(first) = straddling {
        let body: Vec<u8> = tx.query_row(
            "SELECT body FROM audit_chunks WHERE first_seq = ?1",
            [first],
            |r| r.get(0),
        )?;
        let mut decoded = Decoded::default();
        decoded.load(&body)?;
        let rest: Vec<OwnedRow> = decoded
            .rows()
            .filter_map(Result::ok)
            .filter(|r| r.seq > seq)
            .map(|r| OwnedRow::of(&r))
            .collect();
        tx.execute("DELETE FROM audit_chunks WHERE first_seq = ?1", [first])?;
        write_rows(tx, &rest)?;
    }
    Ok(())
}

/// A stored record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRow {
    /// The position the store holds it at.
    pub seq: u64,
    pub ts: i64,
    pub kind: String,
    pub subject: Option<String>,
    pub decision: Option<String>,
    pub refers_to: Option<u64>,
    pub terms: String,
    pub hash: [u8; 32],
    pub envelope: Vec<u8>,
}

impl OwnedRow {
    pub fn of(r: &Row<'_>) -> Self {
        OwnedRow {
            seq: r.seq,
            ts: r.ts,
            kind: r.kind.to_owned(),
            subject: r.subject.map(str::to_owned),
            decision: r.decision.map(str::to_owned),
            refers_to: r.refers_to,
            terms: r.terms.to_owned(),
            hash: *r.hash,
            envelope: r.envelope.to_vec(),
        }
    }

    pub fn as_row(&self) -> Row<'_> {
        Row {
            seq: self.seq,
            ts: self.ts,
            kind: &self.kind,
            subject: self.subject.as_deref(),
            decision: self.decision.as_deref(),
            refers_to: self.refers_to,
            terms: &self.terms,
            hash: &self.hash,
            envelope: &self.envelope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::record::Record;
    use crate::store::sqlite::{SqliteStore, Synchronous};
    use crate::store::{BatchStore, IndexFields};

    /// A store of 70 records committed 7 at a time (10 chunks), each
    /// record's ts 10 × its seq.
    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("audit.db");
        let mut store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        let record = Record::admin_for_tests("root", "o");
        let bytes = crate::canonical::encode(&record).unwrap();
        let index = IndexFields::of(&record);
        for _ in 0..10 {
            let batch: Vec<StoredItem> = (0..7)
                .map(|_| {
                    let ts = 10 * (chain.head().size as i64 + 1);
                    StoredItem {
                        sealed: chain.append(ts, &bytes),
                        index: index.clone(),
                    }
                })
                .collect();
            store.commit(&batch, None, chain.head()).unwrap();
        }
        store
    }

    fn seqs(conn: &Connection, lo: u64, hi: u64, order: Order) -> Vec<u64> {
        let mut out = Vec::new();
        scan(conn, lo, hi, order, &mut |r| {
            out.push(r.seq);
            Ok(true)
        })
        .unwrap();
        out
    }

    /// Scans, lookups and bisection, against what they must return.
    fn check_reads(conn: &Connection, first: u64, last: u64) {
        for (lo, hi) in [
            (1, 70),
            (3, 9),
            (7, 8),
            (14, 14),
            (15, 15),
            (0, u64::MAX),
            (60, 200),
        ] {
            let want: Vec<u64> = (lo.max(first)..=hi.min(last)).collect();
            assert_eq!(seqs(conn, lo, hi, Order::Ascending), want, "{lo}..={hi}");
            let mut down = want.clone();
            down.reverse();
            assert_eq!(
                seqs(conn, lo, hi, Order::Descending),
                down,
                "{lo}..={hi} down"
            );
        }
        assert_eq!(last_seq(conn).unwrap(), Some(last));
        assert_eq!(first_seq(conn).unwrap(), Some(first));
        assert_eq!(super::last(conn).unwrap().unwrap().seq, last);
        for s in first..=last {
            let row = get(conn, s).unwrap().unwrap();
            assert_eq!((row.seq, row.ts), (s, 10 * s as i64));
            // Exactly at a record's ts, and just after the one before.
            assert_eq!(first_at_or_after(conn, 10 * s as i64).unwrap(), Some(s));
            assert_eq!(first_at_or_after(conn, 10 * s as i64 - 9).unwrap(), Some(s));
        }
        assert_eq!(first_at_or_after(conn, 10 * last as i64 + 1).unwrap(), None);
        assert_eq!(first_at_or_after(conn, i64::MIN).unwrap(), Some(first));
        assert_eq!(get(conn, last + 1).unwrap(), None);
    }

    #[test]
    fn reads_across_chunks_match_the_records_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let chunks: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM audit_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(chunks, 10);
        check_reads(store.conn(), 1, 70);
    }

    #[test]
    fn reads_span_the_rows_of_an_earlier_layout_and_the_chunks_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let conn = store.conn();
        // Records 1..=20 as a layout 2 store kept them, one row each.
        let old: Vec<OwnedRow> = (1..=20).map(|s| get(conn, s).unwrap().unwrap()).collect();
        let rest: Vec<OwnedRow> = (21..=70).map(|s| get(conn, s).unwrap().unwrap()).collect();
        conn.execute("DELETE FROM audit_chunks", []).unwrap();
        for r in &old {
            conn.execute(
                "INSERT INTO audit_records (seq, ts, kind, subject, decision, refers_to, terms, hash, envelope) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.seq as i64,
                    r.ts,
                    r.kind,
                    r.subject,
                    r.decision,
                    r.refers_to.map(|v| v as i64),
                    r.terms,
                    &r.hash[..],
                    r.envelope
                ],
            )
            .unwrap();
        }
        write_rows(conn, &rest).unwrap();
        check_reads(conn, 1, 70);
        let back: Vec<OwnedRow> = (1..=20).map(|s| get(conn, s).unwrap().unwrap()).collect();
        assert_eq!(back, old, "old rows read back whole");
    }

    #[test]
    fn deleting_through_a_position_inside_a_chunk_keeps_the_rest_of_it() {
        for cut in [1, 6, 7, 8, 30, 69] {
            let dir = tempfile::tempdir().unwrap();
            let store = store(&dir);
            let conn = store.conn();
            let before: Vec<OwnedRow> = (cut + 1..=70)
                .map(|s| get(conn, s).unwrap().unwrap())
                .collect();
            delete_through(conn, cut).unwrap();
            check_reads(conn, cut + 1, 70);
            let after: Vec<OwnedRow> = (cut + 1..=70)
                .map(|s| get(conn, s).unwrap().unwrap())
                .collect();
            assert_eq!(after, before, "cut {cut}");
            assert_eq!(get(conn, cut).unwrap(), None);
        }
    }

    #[test]
    fn a_damaged_chunk_fails_a_search_scan_and_is_passed_over_by_verification() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let conn = store.conn();
        // The third chunk (15..=21) loses its tail.
        conn.execute(
            "UPDATE audit_chunks SET body = substr(body, 1, length(body) / 2) WHERE first_seq = 15",
            [],
        )
        .unwrap();
        let mut n = 0;
        let err = scan(conn, 1, 70, Order::Ascending, &mut |_| {
            n += 1;
            Ok(true)
        })
        .unwrap_err();
        assert!(
            matches!(err, AuditError::Corrupt { what: "chunk", .. }),
            "{err}"
        );
        let mut seen = Vec::new();
        scan_with(conn, 1, 70, Order::Ascending, Damaged::Skip, &mut |r| {
            seen.push(r.seq);
            Ok(true)
        })
        .unwrap();
        let want: Vec<u64> = (1..=14).chain(22..=70).collect();
        assert_eq!(seen, want);
        let report = crate::verify::verify(&store, None).unwrap();
        assert!(
            report.findings.contains(&crate::verify::Finding::Missing {
                first: 15,
                last: 21
            }),
            "{:?}",
            report.findings
        );
    }
}
