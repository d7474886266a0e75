//! The writer's journal: where a record someone waits for becomes durable
//! before it reaches the SQLite store.
//!
//! A `strict` target forwards a statement only once its record is
//! durable. Committing a SQLite transaction per group of waiting records
//! costs about 70 µs of CPU however few records it holds (WAL frames of
//! whole pages, their checksums, the WAL-index locks), and a strict target
//! with few clients commits a group of one or two records per statement.
//! Appending the group's sealed envelopes to a plain file is one `write`
//! of their own bytes, with the same promise as SQLite's WAL at the same
//! `synchronous` setting (`NORMAL`: the bytes are the operating system's
//! once `write` returns, so they survive the process being killed;
//! `FULL`: also `fdatasync`ed, so they survive power loss).
//!
//! The records then reach the store with the next SQLite commit, gathered
//! like queued records (up to `linger` or `max_batch`), and the journal is
//! emptied. What the journal holds is always the sealed records after the
//! store's head, in chain order. If the process dies first, the next
//! process that opens the store for writing, or opens it to read while no
//! writer holds it, moves them in ([`recover`]): each entry must carry the
//! log's id and the next seq and chain from the head (the hash of the one
//! before), so a torn last entry or stray bytes are left out, never stored.
//!
//! Format: entries one after another, each a 4-byte little-endian length
//! and the canonical envelope (see [`crate::canonical::entry`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::chain::{entry_hash, Entry, Head, Sealed, FORMAT_VERSION};
use crate::store::{BatchStore, IndexFields, StoredItem};
use crate::AuditError;

/// The journal of the store at `store`: `<store>.journal`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    sync: bool,
    /// Whether it holds entries the store may not have.
    dirty: bool,
    /// Its length in bytes.
    len: u64,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens (creating) the journal at `path`, which [`recover`] has
    /// emptied; with `sync`, every append is `fdatasync`ed.
    pub fn open(path: PathBuf, sync: bool) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| io(&path, source))?;
        let len = file.metadata().map_err(|source| io(&path, source))?.len();
        Ok(Journal {
            file,
            path,
            sync,
            dirty: len > 0,
            len,
            buf: Vec::new(),
        })
    }

    /// Whether every append is fsynced.
    pub fn syncs(&self) -> bool {
        self.sync
    }

    /// Appends `items` in one write; once it returns they are durable.
    pub fn append(&mut self, items: &[StoredItem]) -> Result<(), AuditError> {
        self.append_parts(&[items])
    }

    /// Appends the items of every part, in order, in one write.
    pub fn append_parts(&mut self, parts: &[&[StoredItem]]) -> Result<(), AuditError> {
        self.buf.clear();
        for item in parts.iter().flat_map(|p| p.iter()) {
            let env = &item.sealed.envelope;
            let len = u32::try_from(env.len()).map_err(|_| AuditError::InvalidField {
                field: "envelope",
                why: "longer than 4 GiB",
            })?;
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(env);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.file
            .write_all(&self.buf)
            .map_err(|source| io(&self.path, source))?;
        self.len += self.buf.len() as u64;
        if self.sync {
            self.file
                .sync_data()
                .map_err(|source| io(&self.path, source))?;
        }
        // A large batch should not keep its buffer for the process' life.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Empties the journal once the store holds everything in it.
    pub fn clear(&mut self) -> Result<(), AuditError> {
        if !self.dirty {
            return Ok(());
        }
        self.file
            .set_len(0)
            .map_err(|source| io(&self.path, source))?;
        self.dirty = false;
        self.len = 0;
        Ok(())
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Makes the journal hold exactly `items` (the records journaled and
    /// not yet stored, after the store took the rest). With none, it is
    /// emptied. Otherwise they are written to a new file that then takes
    /// the journal's name: at no moment does the journal lack a record it
    /// held, so a crash in between loses nothing (the old journal also
    /// holds stored records, which recovery skips).
    pub fn replace(&mut self, items: &[StoredItem]) -> Result<(), AuditError> {
        if items.is_empty() {
            return self.clear();
        }
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        // Appending, as the journal's own handle does (a later `clear`
        // truncates it, and appends must then start at its new end).
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmp)
            .map_err(|source| io(&tmp, source))?;
        let mut fresh = Journal {
            file,
            path: tmp.clone(),
            sync: self.sync,
            dirty: false,
            len: 0,
            buf: std::mem::take(&mut self.buf),
        };
        let written = fresh.append(items);
        self.buf = std::mem::take(&mut fresh.buf);
        written?;
        std::fs::rename(&tmp, &self.path).map_err(|source| io(&self.path, source))?;
        // From the rename on, appends must go to the new file (the old one
        // is unlinked): its handle, at its end, takes over at once, before
        // anything else can fail.
        self.file = fresh.file;
        self.dirty = true;
        self.len = fresh.len;
        if self.sync {
            if let Some(dir) = self.path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|source| io(dir, source))?;
            }
        }
        Ok(())
    }
}

fn io(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The envelopes in the journal at `path`, in order, up to the first one
/// that is not whole (a write cut short by a crash).
fn entries(path: &Path) -> Result<Vec<Vec<u8>>, AuditError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|source| io(path, source))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(path, source)),
    }
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(env) = rest.get(4..4 + len) else {
            break;
        };
        out.push(env.to_vec());
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Whether the journal at `path` holds anything.
pub fn has_entries(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Moves the records the journal at `path` holds beyond `store`'s head into
/// the store, then empties the journal. Returns how many were moved. Only
/// records that continue the chain from the head are taken: the first one
/// that does not (torn, or not this log's next record) ends the walk.
pub fn recover<S: BatchStore>(path: &Path, store: &mut S) -> Result<u64, AuditError> {
    if !has_entries(path) {
        return Ok(0);
    }
    let mut head: Head = store.head()?;
    let mut items = Vec::new();
    for envelope in entries(path)? {
        let Ok(entry) = serde_json::from_slice::<Entry>(&envelope) else {
            break;
        };
        if entry.v != FORMAT_VERSION || entry.log != head.log {
            break;
        }
        if entry.seq <= head.size {
            // Already stored (the commit went through; the crash came
            // before the journal was emptied).
            continue;
        }
        if entry.seq != head.size + 1 || entry.prev != head.hash {
            break;
        }
        let hash = entry_hash(&envelope);
        head.size = entry.seq;
        head.hash = hash;
        items.push(StoredItem {
            index: IndexFields::of(&entry.record),
            sealed: Sealed {
                seq: entry.seq,
                ts_micros: entry.ts,
                hash,
                envelope,
            },
        });
    }
    let moved = items.len() as u64;
    if !items.is_empty() {
        store.commit(&items, None, &head)?;
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .map_err(|source| io(path, source))?;
    Ok(moved)
}
