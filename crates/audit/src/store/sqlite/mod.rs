//! The embedded store: one SQLite file in WAL mode.
//!
//! Tables (all prefixed `audit_`, so the same file can hold the
//! control-plane tables that keys and approvals need later):
//!
//! - `audit_meta(key, value)`: `format`, `log_id`, the recorded head
//!   (`head_size`, `head_hash`, rewritten with every batch) and, for
//!   convenience only, `public_key` (an auditor must get the key they trust
//!   from elsewhere).
//! - `audit_chunks(first_seq, last_seq, ts_first, ts_last, body)`: the
//!   records, one row per commit (cut at [`chunk::CHUNK_RECORDS`]), the
//!   body LZ4-compressed (see [`chunk`]). Each record keeps its position
//!   (seq), the exact canonical bytes that were hashed (`envelope`) and
//!   their `hash`; its `ts`, `kind`, `subject`, `decision`, `refers_to`
//!   and `terms` (its search terms) are copies for search and are not
//!   trusted by verification.
//! - `audit_records`: the same, one row per record, in stores written
//!   before chunks (layout 2); a writer carries such a store on in chunks.
//!   Every read goes through [`rows`], which reads both.
//! - `audit_blocks(first_seq, last_seq, ts_first, ts_last, ref_min,
//!   ref_max)`: one row per closed block of records (up to
//!   [`BLOCK_RECORDS`] records or [`BLOCK_AGE`] of them); `ref_*` bound the
//!   statement seqs the block's outcomes refer to.
//! - `audit_terms(term, block)`: one posting per distinct term per block.
//! - `audit_checkpoints(size, ts, head, key_id, signature)`.
//!
//! No index is kept per record: a commit appends its chunk at the end of
//! the chunks table (the cheapest insert SQLite has) and rewrites the
//! head; when a block closes, that commit also writes the block's row and
//! one posting per distinct term, which for a busy proxy is a few dozen
//! for thousands of records. A commit therefore touches two or three
//! pages, which is what keeps `strict` mode's small commits cheap. The
//! records after the last closed block (the open block, at most
//! [`BLOCK_RECORDS`] or [`BLOCK_AGE`] old) have no postings yet: search
//! always reads them. A writer that opens the store rebuilds the open
//! block from those records. Search finds the blocks that hold every term
//! it asks for, then reads those blocks' records and checks each one's own
//! `terms` (see [`crate::search`]). A time range becomes
//! a seq range because `ts` never decreases along the chain (see
//! [`crate::log`]).
//!
//! Rotation ([`crate::retention`]) archives the records up to a signed
//! checkpoint as a bundle, deletes them here ([`rows::delete_through`],
//! which rewrites the chunk that straddles the cut) and records the
//! anchor, so what is left verifies on its own from the anchor.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

pub mod chunk;
pub mod rows;
pub mod tamper;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{BatchStore, StoredItem};
use crate::chain::{Hash, Head, LogId, FORMAT_VERSION};
use crate::checkpoint::{Checkpoint, PublicKey};
use crate::verify::{LogSource, StoredRecord};
use crate::AuditError;
use chunk::Encoder;
use rows::{Damaged, Order};

/// The store layout this code writes (meta `layout`); the chain format is
/// [`FORMAT_VERSION`].
const LAYOUT: &str = "3";
/// The layout before chunks: one row per record in `audit_records`. A
/// writer carries such a store on in chunks; readers read both.
const LAYOUT_ROWS: &str = "2";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    decision TEXT,
    refers_to INTEGER,
    terms TEXT,
    hash BLOB NOT NULL,
    envelope BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chunks (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_blocks (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    ref_min INTEGER,
    ref_max INTEGER
);
CREATE TABLE IF NOT EXISTS audit_terms (
    term TEXT NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (term, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    head TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
";

/// How hard a commit presses data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL with `synchronous=NORMAL`: a committed batch survives the proxy
    /// being killed (the WAL is in the OS's hands); an OS crash or power
    /// loss can lose the last batches.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; survives power loss.
    Full,
}

/// The page size of a new store's file.
pub const PAGE_SIZE: i64 = 16_384;

/// Most records in one block.
pub const BLOCK_RECORDS: u64 = 4096;
/// A block closes with the first commit this long after it opened.
pub const BLOCK_AGE: Duration = Duration::from_secs(1);

pub struct SqliteStore {
    conn: Connection,
    log: LogId,
    /// The writer's open block (none for a read-only store).
    block: Option<OpenBlock>,
    catch_up: CatchUp,
    encoder: Encoder,
}

/// Records committed since the last closed block.
#[derive(Debug, Default, Clone)]
struct OpenBlock {
    /// (first, last) seq and ts.
    span: Option<((u64, i64), (u64, i64))>,
    count: u64,
    refs: Option<(u64, u64)>,
    terms: HashSet<String>,
    /// Whole `terms` strings already taken apart into `terms`: most
    /// records repeat one seen before (the same session, statement and
    /// outcome kind), and one lookup of the whole string is cheaper than
    /// one per term. Bounded; past the bound, records are taken apart.
    seen: HashSet<String>,
    opened: Option<std::time::Instant>,
}

/// Most whole `terms` strings an open block remembers.
const SEEN_TERMS: usize = 1024;

impl OpenBlock {
    fn add(&mut self, seq: u64, ts: i64, refers_to: Option<u64>, terms: &str) {
        self.span = Some(match self.span {
            None => ((seq, ts), (seq, ts)),
            Some((first, _)) => (first, (seq, ts)),
        });
        self.count += 1;
        if let Some(r) = refers_to {
            self.refs = Some(self.refs.map_or((r, r), |(a, b)| (a.min(r), b.max(r))));
        }
        self.opened.get_or_insert_with(std::time::Instant::now);
        if self.seen.contains(terms) {
            return;
        }
        for t in terms.split('\n').filter(|t| !t.is_empty()) {
            if !self.terms.contains(t) {
                self.terms.insert(t.to_owned());
            }
        }
        if self.seen.len() < SEEN_TERMS {
            self.seen.insert(terms.to_owned());
        }
    }

    fn add_batch(&mut self, batch: &[StoredItem]) {
        for item in batch {
            let ix = &item.index;
            self.add(
                item.sealed.seq,
                item.sealed.ts_micros,
                ix.refers_to,
                &ix.terms,
            );
        }
    }

    /// Whether the block closes with a commit of `more` records.
    fn due_with(&self, more: u64) -> bool {
        self.count + more >= BLOCK_RECORDS || self.opened.is_some_and(|o| o.elapsed() >= BLOCK_AGE)
    }

    /// Writes the block's row and postings.
    fn write(&self, tx: &Connection) -> Result<(), AuditError> {
        let Some(((first, ts_first), (last, ts_last))) = self.span else {
            return Ok(());
        };
        tx.prepare_cached(
            "INSERT INTO audit_blocks (first_seq, last_seq, ts_first, ts_last, ref_min, ref_max) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            first as i64,
            last as i64,
            ts_first,
            ts_last,
            self.refs.map(|r| r.0 as i64),
            self.refs.map(|r| r.1 as i64),
        ])?;
        let mut posting =
            tx.prepare_cached("INSERT OR IGNORE INTO audit_terms (term, block) VALUES (?1, ?2)")?;
        for t in &self.terms {
            posting.execute(params![t, first as i64])?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("log", &self.log)
            .finish()
    }
}

/// A WAL this many frames long (4 KiB each) is rewound by the writer
/// (see [`CatchUp`]).
const RESTART_FRAMES: i64 = 1024;

/// How long the writer waits for a lock another process holds.
const WRITER_BUSY: Duration = Duration::from_secs(5);

/// Raised by the [`Checkpointer`] when the WAL has grown long; the writer
/// then checkpoints it in RESTART mode right after its next commit, so
/// that its following commit writes from the start of the WAL again.
///
/// Why: measured under steady load, the WAL never started over by itself
/// although the background checkpoints copied every frame: it grew by
/// tens of MB a second, and every frame landed in a new file block that
/// the kernel allocated and zeroed, which was most of a small commit's
/// cost in `strict` mode. The writer's RESTART copies only the frames
/// written since the background pass (the bulk is done) and does not wait
/// for readers: with a reader still in the WAL it gives up, and the next
/// pass asks again.
#[derive(Debug, Clone, Default)]
pub struct CatchUp(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// Copies the WAL into the database file in the background (a PASSIVE
/// checkpoint every half second: it never blocks the writer) and asks the
/// writer to rewind the WAL when it has grown (see [`CatchUp`]). Stops
/// when dropped.
pub struct Checkpointer {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path, catch_up: CatchUp) -> Result<Checkpointer, AuditError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(100))?;
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = cvar
                        .wait_timeout(stopped, Duration::from_millis(500))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    Self::pass(&conn, &catch_up);
                }
            })
            .map_err(|source| AuditError::Io {
                path: "audit checkpoint thread".into(),
                source,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// One background pass. A busy or failed checkpoint is retried on the
    /// next; the WAL only grows meanwhile.
    fn pass(conn: &Connection, catch_up: &CatchUp) {
        // Columns: busy, frames in the WAL, frames copied.
        let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
        if frames.is_ok_and(|f| f >= RESTART_FRAMES) {
            catch_up.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) a store for writing.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, AuditError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(WRITER_BUSY)?;
        // A new file gets 16 KiB pages (SQLite's default is 4 KiB): a
        // statement record is about a kilobyte, so a commit of a batch fills
        // a quarter as many pages, each a WAL frame with its own header and
        // checksum, and the checkpointer copies fewer. Measured: the store
        // takes 59k -> 78k statement records/s, and a queued target costs the
        // proxy about 5 us less per statement. The page size of an existing
        // file is fixed once it is in WAL mode; this changes nothing there.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match synchronous {
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            },
        )?;
        // The writer appends at the tail of the records table and, when a
        // block closes, writes its postings: a few pages per commit. 8 MiB
        // holds those tails (SQLite's default is 2 MB); the 64 MiB this once
        // was, for per-record indexes, only grew the proxy's memory
        // (measured: the same throughput, RSS see docs/BENCHMARKS.md).
        conn.pragma_update(None, "cache_size", -8_192)?;
        // Checkpoints (copying the WAL into the database file, with an
        // fsync) are the `Checkpointer`'s, on a thread of its own, so that
        // the writer never waits for the bulk of one (see `CatchUp`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.execute_batch(SCHEMA)?;
        let format: Option<String> = meta(&conn, "format")?;
        match format {
            None => {
                let log = LogId::random();
                conn.execute_batch("BEGIN IMMEDIATE")?;
                let init = (|| -> Result<(), AuditError> {
                    // Another process may have initialised it meanwhile.
                    if meta(&conn, "format")?.is_none() {
                        set_meta(&conn, "format", &FORMAT_VERSION.to_string())?;
                        set_meta(&conn, "layout", LAYOUT)?;
                        set_meta(&conn, "log_id", log.as_str())?;
                    }
                    Ok(())
                })();
                conn.execute_batch(if init.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
                init?;
            }
            Some(f) if f == FORMAT_VERSION.to_string() => match meta(&conn, "layout")?.as_deref() {
                Some(LAYOUT) => {}
                // Its rows stay; new records go into chunks after them.
                Some(LAYOUT_ROWS) => set_meta(&conn, "layout", LAYOUT)?,
                _ => {
                    return Err(AuditError::Corrupt {
                        what: "layout",
                        why: "written by an earlier Portcullis (per-record indexes); verify it with that version, then move it aside".into(),
                    });
                }
            },
            Some(_) => {
                return Err(AuditError::Corrupt {
                    what: "format",
                    why: "written by an unknown version".into(),
                })
            }
        }
        let mut store = Self::with_conn(conn)?;
        store.block = Some(store.reopen_block()?);
        Ok(store)
    }

    /// The flag its [`Checkpointer`] raises (see [`CatchUp`]).
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up.clone()
    }

    /// Opens an existing store without writing to it (search, verify).
    ///
    /// One exception, as SQLite makes for its own hot journal: if a writer
    /// died with records in its journal ([`crate::journal`]) and no writer
    /// holds the store now, those records are first moved into the store,
    /// so that what a reader sees includes every record a statement waited
    /// for. If the store cannot be written here, the reader sees the store
    /// as it is.
    pub fn open_read_only(path: &Path) -> Result<Self, AuditError> {
        let journal = crate::journal::path_for(path);
        if crate::journal::has_entries(&journal) {
            if let Ok(lock) = crate::log::lock_store(path) {
                if let Ok(mut store) = SqliteStore::open(path, Synchronous::Full) {
                    crate::journal::recover(&journal, &mut store)?;
                }
                drop(lock);
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Self::with_conn(conn)
    }

    fn with_conn(conn: Connection) -> Result<Self, AuditError> {
        let log = meta(&conn, "log_id")?
            .map(LogId::new)
            .ok_or(AuditError::Corrupt {
                what: "meta",
                why: "no log id".into(),
            })?;
        Ok(SqliteStore {
            conn,
            log,
            block: None,
            catch_up: CatchUp::default(),
            encoder: Encoder::default(),
        })
    }

    pub fn log(&self) -> &LogId {
        &self.log
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Publishes the checkpoint key's public half in the store, for
    /// convenience; verification should use a key obtained elsewhere.
    pub fn set_public_key(&self, key: &PublicKey) -> Result<(), AuditError> {
        set_meta(&self.conn, "public_key", &key.to_base64())
    }

    pub fn public_key(&self) -> Result<Option<PublicKey>, AuditError> {
        meta(&self.conn, "public_key")?
            .map(|k| PublicKey::parse(&k))
            .transpose()
    }

    /// One record's envelope by seq.
    pub fn envelope(&self, seq: u64) -> Result<Option<Vec<u8>>, AuditError> {
        Ok(rows::get(&self.conn, seq)?.map(|r| r.envelope))
    }

    /// The records after the last closed block, as the open block (a
    /// writer that stopped left them without postings).
    fn reopen_block(&self) -> Result<OpenBlock, AuditError> {
        let mut block = OpenBlock::default();
        let indexed: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(last_seq), 0) FROM audit_blocks",
            [],
            |r| r.get(0),
        )?;
        rows::scan(
            &self.conn,
            indexed.max(0) as u64 + 1,
            u64::MAX,
            Order::Ascending,
            &mut |r| {
                block.add(r.seq, r.ts, r.refers_to, r.terms);
                Ok(true)
            },
        )?;
        Ok(block)
    }

    fn last_row(&self) -> Result<Option<(u64, Hash)>, AuditError> {
        Ok(rows::last(&self.conn)?.map(|r| (r.seq, Hash(r.hash))))
    }
}

impl BatchStore for SqliteStore {
    /// The recorded head, or the last row if it is further on (it never is
    /// unless the meta table was edited). When rows after the recorded head
    /// were deleted, the chain continues from the recorded head, so the
    /// deletion shows as a gap rather than being papered over.
    fn head(&self) -> Result<Head, AuditError> {
        let recorded = recorded_head(&self.conn, &self.log)?;
        let last = self.last_row()?;
        Ok(match (recorded, last) {
            (Some(h), Some((seq, _))) if h.size >= seq => h,
            (_, Some((seq, hash))) => Head {
                log: self.log.clone(),
                size: seq,
                hash,
            },
            (Some(h), None) => h,
            (None, None) => Head::empty(self.log.clone()),
        })
    }

    fn commit(
        &mut self,
        batch: &[StoredItem],
        checkpoint: Option<&Checkpoint>,
        head: &Head,
    ) -> Result<(), AuditError> {
        let block = self.block.get_or_insert_with(OpenBlock::default);
        let close;
        let tx = self.conn.transaction()?;
        {
            rows::append(&tx, &mut self.encoder, batch)?;
            // The block advances only once the commit succeeds: a failed
            // commit is retried with the same batch.
            close = block.due_with(batch.len() as u64);
            if close {
                let mut closing = block.clone();
                closing.add_batch(batch);
                closing.write(&tx)?;
            }
            if let Some(cp) = checkpoint {
                tx.execute(
                    "INSERT OR REPLACE INTO audit_checkpoints (size, ts, head, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![cp.size as i64, cp.ts, cp.head.to_hex(), cp.key_id, cp.signature],
                )?;
            }
            set_meta(&tx, "head_size", &head.size.to_string())?;
            set_meta(&tx, "head_hash", &head.hash.to_hex())?;
        }
        tx.commit()?;
        if close {
            *block = OpenBlock::default();
        } else {
            block.add_batch(batch);
        }
        if self
            .catch_up
            .0
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            // RESTART, not waiting: with readers still in the WAL it copies
            // what it can and gives up, and the next round asks again.
            // Best effort: the writer's own busy wait is back at once.
            let _ = self.conn.busy_timeout(Duration::ZERO);
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
            self.conn.busy_timeout(WRITER_BUSY)?;
        }
        Ok(())
    }
}

impl LogSource for SqliteStore {
    fn log_id(&self) -> Result<LogId, AuditError> {
        Ok(self.log.clone())
    }

    fn scan(&self, each: &mut dyn FnMut(StoredRecord)) -> Result<(), AuditError> {
        // A chunk that does not decode is passed over: its records are
        // then missing, which verification reports by position.
        rows::scan_with(
            &self.conn,
            0,
            u64::MAX,
            Order::Ascending,
            Damaged::Skip,
            &mut |r| {
                each(stored(r));
                Ok(true)
            },
        )
    }

    fn record_at(&self, position: u64) -> Result<Option<StoredRecord>, AuditError> {
        Ok(rows::get(&self.conn, position)?.map(|r| stored(&r.as_row())))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        let mut stmt = self.conn.prepare(
            "SELECT size, ts, head, key_id, signature FROM audit_checkpoints ORDER BY size",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (size, ts, head, key_id, signature) = row?;
            // An unreadable head hash can only match nothing: all zeros.
            let head = Hash::try_from(head).unwrap_or(Hash([0; 32]));
            out.push(Checkpoint {
                log: self.log.clone(),
                size: size as u64,
                head,
                ts,
                key_id,
                signature,
            });
        }
        Ok(out)
    }

    fn recorded_head(&self) -> Result<Option<Head>, AuditError> {
        recorded_head(&self.conn, &self.log)
    }

    /// Set by rotation (see [`crate::retention`]): the records up to the
    /// anchor were moved to an archived bundle.
    fn anchor(&self) -> Result<Option<Head>, AuditError> {
        meta_head(&self.conn, &self.log, "anchor_size", "anchor_hash")
    }
}

fn stored(r: &chunk::Row<'_>) -> StoredRecord {
    StoredRecord {
        position: r.seq,
        hash: Some(Hash(*r.hash)),
        envelope: r.envelope.to_vec(),
    }
}

fn recorded_head(conn: &Connection, log: &LogId) -> Result<Option<Head>, AuditError> {
    meta_head(conn, log, "head_size", "head_hash")
}

/// A head kept in the meta table as a size and a hash under two keys.
fn meta_head(
    conn: &Connection,
    log: &LogId,
    size_key: &'static str,
    hash_key: &'static str,
) -> Result<Option<Head>, AuditError> {
    let (Some(size), Some(hash)) = (meta(conn, size_key)?, meta(conn, hash_key)?) else {
        return Ok(None);
    };
    let size = size.parse::<u64>().map_err(|_| AuditError::Corrupt {
        what: size_key,
        why: "not a number".into(),
    })?;
    let hash = Hash::try_from(hash).map_err(|why| AuditError::Corrupt {
        what: hash_key,
        why,
    })?;
    Ok(Some(Head {
        log: log.clone(),
        size,
        hash,
    }))
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, AuditError> {
    Ok(conn
        .query_row("SELECT value FROM audit_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), AuditError> {
    conn.prepare_cached("INSERT INTO audit_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute([key, value])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::record::Record;
    use crate::store::IndexFields;

    /// The WAL header's checkpoint sequence and salts: they change when
    /// the WAL starts over.
    fn wal_generation(path: &Path) -> Vec<u8> {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::read(wal).unwrap()[12..24].to_vec()
    }

    #[test]
    fn a_long_wal_is_rewound_by_the_writer_after_a_background_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let checkpointer = Connection::open(&path).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        let record = Record::admin_for_tests("root", "o");
        let bytes = crate::canonical::encode(&record).unwrap();
        let index = IndexFields::of(&record);
        let mut commit = |store: &mut SqliteStore, n: usize| {
            for _ in 0..n {
                let sealed = chain.append(0, &bytes);
                let item = StoredItem {
                    sealed,
                    index: index.clone(),
                };
                store.commit(&[item], None, chain.head()).unwrap();
            }
        };
        // Each commit appends at least a frame: past the threshold.
        commit(&mut store, RESTART_FRAMES as usize + 50);
        // As under load: the background pass cannot copy every frame (here
        // a reader holds an older snapshot; in the proxy, the writer
        // commits while the pass copies).
        let mut reader = Connection::open(&path).unwrap();
        let snapshot = reader.transaction().unwrap();
        let _: i64 = snapshot
            .query_row("SELECT count(*) FROM audit_chunks", [], |r| r.get(0))
            .unwrap();
        commit(&mut store, 10);
        Checkpointer::pass(&checkpointer, &store.catch_up());
        snapshot.commit().unwrap();
        let before = wal_generation(&path);
        // The first commit after the pass has SQLite copy the rest; the
        // next one starts the WAL over. Without that, every frame copied
        // is not enough: a write transaction that began before the copy
        // ended keeps appending.
        commit(&mut store, 1);
        commit(&mut store, 1);
        assert_ne!(wal_generation(&path), before, "the WAL started over");
    }
}
