//! Evidence bundles: a segment of a log, exported to a directory that an
//! auditor verifies offline, with nothing but the files and a public key
//! they trust.
//!
//! A bundle is:
//!
//! - `records.jsonl`: the records of seqs `anchor + 1 ..= last`, one per
//!   line, each line exactly the envelope bytes that were stored and
//!   hashed (canonical JSON never holds a raw newline);
//! - `checkpoints.jsonl`: the signed checkpoints at sizes from the anchor
//!   to `last`, one JSON object per line;
//! - `manifest.json`: the log id, the *anchor* (the seq and hash of the
//!   record before the first exported one, from which the chain is
//!   checked), the seq range, the hash of the last record, the time range
//!   asked for and when the bundle was made;
//! - `public-key.pem`: the checkpoint key as the exporting store held it
//!   (a convenience: an auditor verifies with a copy of their own);
//! - `VERIFY.md`: how to check it and what a clean result proves.
//!
//! The exported range is the records whose `ts` falls in `[from, to)`,
//! widened to whole checkpoint intervals: it starts just after the last
//! checkpoint before the first record asked for (so the anchor is a signed
//! head) and ends at the first checkpoint at or after the last one (so a
//! signature covers the end). Where no checkpoint follows yet (the proxy is
//! running and the next one is not due), the bundle ends at the last record
//! asked for and [`Manifest::last_checkpoint`] says how far signatures go.
//!
//! Reading a bundle back gives a [`MemoryLog`] with the anchor set, so
//! [`crate::verify::verify`] checks it as a segment: every record's hash,
//! the chain from the anchor, every checkpoint's signature and head, and
//! the manifest's last hash (as the recorded head).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::chain::{entry_hash, genesis, Hash, Head, LogId};
use crate::checkpoint::{Checkpoint, PublicKey};
use crate::store::sqlite::rows::{self, Order};
use crate::store::sqlite::SqliteStore;
use crate::verify::{self, Finding, LogSource, MemoryLog, Report, StoredRecord};
use crate::AuditError;

pub const FORMAT: &str = "portcullis-audit-bundle/v1";
pub const RECORDS_FILE: &str = "records.jsonl";
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const PUBLIC_KEY_FILE: &str = "public-key.pem";
pub const README_FILE: &str = "VERIFY.md";

/// The record before a bundle's first: the chain is checked from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// 0 when the bundle starts at the log's first record.
    pub seq: u64,
    /// The hash of record `seq` (the log's genesis hash when `seq` is 0).
    pub hash: Hash,
}

/// What `manifest.json` says. Nothing in it is trusted on its own: the
/// anchor and the last hash are checked against the records and the
/// signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub log: LogId,
    pub anchor: Anchor,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of record `last_seq`.
    pub last_hash: Hash,
    /// `ts` of the first and last records, µs since the epoch.
    pub first_ts: i64,
    pub last_ts: i64,
    /// The time range asked for, µs since the epoch (`to` exclusive).
    pub requested_from: Option<i64>,
    pub requested_to: Option<i64>,
    /// The size of the last checkpoint in the bundle: records after it are
    /// chained but not signed. `None` when the bundle holds none past the
    /// anchor.
    pub last_checkpoint: Option<u64>,
    pub records: u64,
    pub checkpoints: u64,
    /// Id of the public key written beside the records, if any.
    pub key_id: Option<String>,
    /// When the bundle was made, µs since the epoch.
    pub exported_at: i64,
}

/// Which records to export, by `ts` in µs since the epoch: `from`
/// inclusive, `to` exclusive; `None` is open-ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// No record after this seq (rotation cuts at a checkpoint's size).
    pub through_seq: Option<u64>,
}

fn bundle_err(why: impl Into<String>) -> AuditError {
    AuditError::Bundle(why.into())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a bundle of `range` from `store` into `dir`, which must not
/// exist or be empty. `public_key` is written as `public-key.pem`; without
/// it, the key the store holds is.
///
/// The records, checkpoints and anchor are read in one read transaction,
/// so a writer appending meanwhile does not split the bundle.
pub fn export(
    store: &SqliteStore,
    range: ExportRange,
    public_key: Option<&PublicKey>,
    dir: &Path,
) -> Result<Manifest, AuditError> {
    if let Ok(mut entries) = fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(bundle_err(format!(
                "{} exists and is not empty",
                dir.display()
            )));
        }
    }
    let conn = store.conn();
    let tx = conn.unchecked_transaction()?;

    // ts never decreases along the chain: a time range is a seq range.
    let first: Option<u64> = match range.from {
        Some(from) => rows::first_at_or_after(&tx, from)?,
        None => rows::first_seq(&tx)?,
    };
    let last: Option<u64> = match range.to {
        Some(to) => match rows::first_at_or_after(&tx, to)? {
            Some(after) => after.checked_sub(1).filter(|&l| l >= 1),
            None => rows::last_seq(&tx)?,
        },
        None => rows::last_seq(&tx)?,
    };
    let last = match range.through_seq {
        Some(cut) => last.map(|l| l.min(cut)),
        None => last,
    };
    let (Some(first), Some(last)) = (first, last) else {
        return Err(bundle_err("the log has no records in that time range"));
    };
    if first > last {
        return Err(bundle_err("the log has no records in that time range"));
    }

    // The store's connection is the transaction's: these read its snapshot.
    let mut checkpoints = store.checkpoints()?;
    checkpoints.sort_by_key(|c| c.size);
    // Widen to whole checkpoint intervals.
    let anchor = match checkpoints.iter().rev().find(|c| c.size < first) {
        Some(c) => Anchor {
            seq: c.size,
            hash: c.head,
        },
        None => Anchor {
            seq: 0,
            hash: genesis(store.log()),
        },
    };
    let end = checkpoints
        .iter()
        .find(|c| c.size >= last)
        .map_or(last, |c| c.size);
    let included: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| c.size >= anchor.seq && c.size <= end)
        .collect();

    let key = match public_key {
        Some(k) => Some(*k),
        None => store.public_key()?,
    };

    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let records_path = dir.join(RECORDS_FILE);
    let mut out = BufWriter::new(fs::File::create(&records_path).map_err(io_err(&records_path))?);
    let mut count = 0u64;
    let mut span: Option<(u64, i64, i64)> = None;
    let mut last_row: (u64, Hash) = (anchor.seq, anchor.hash);
    rows::scan(&tx, anchor.seq + 1, end, Order::Ascending, &mut |r| {
        let (seq, ts) = (r.seq, r.ts);
        out.write_all(r.envelope).map_err(io_err(&records_path))?;
        out.write_all(b"\n").map_err(io_err(&records_path))?;
        count += 1;
        let first_ts = span.map_or(ts, |s| s.1);
        span = Some((span.map_or(seq, |s| s.0), first_ts, ts));
        last_row = (seq, entry_hash(r.envelope));
        Ok(true)
    })?;
    finish(out, &records_path)?;
    let Some((first_seq, first_ts, last_ts)) = span else {
        return Err(bundle_err("the log has no records in that time range"));
    };

    let cp_path = dir.join(CHECKPOINTS_FILE);
    let mut cp_out = BufWriter::new(fs::File::create(&cp_path).map_err(io_err(&cp_path))?);
    for cp in &included {
        let line = serde_json::to_vec(cp).map_err(|e| bundle_err(e.to_string()))?;
        cp_out.write_all(&line).map_err(io_err(&cp_path))?;
        cp_out.write_all(b"\n").map_err(io_err(&cp_path))?;
    }
    finish(cp_out, &cp_path)?;
    tx.finish()?;

    let manifest = Manifest {
        format: FORMAT.to_owned(),
        log: store.log().clone(),
        anchor,
        first_seq,
        last_seq: last_row.0,
        last_hash: last_row.1,
        first_ts,
        last_ts,
        requested_from: range.from,
        requested_to: range.to,
        last_checkpoint: included
            .iter()
            .map(|c| c.size)
            .filter(|&s| s >= first_seq)
            .max(),
        records: count,
        checkpoints: included.len() as u64,
        key_id: key.map(|k| k.key_id()),
        exported_at: now_micros(),
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(|e| bundle_err(e.to_string()))?;
    text.push(b'\n');
    fs::write(&manifest_path, text).map_err(io_err(&manifest_path))?;
    if let Some(k) = key {
        let p = dir.join(PUBLIC_KEY_FILE);
        fs::write(&p, k.to_pem()).map_err(io_err(&p))?;
    }
    let p = dir.join(README_FILE);
    fs::write(&p, readme(&manifest)).map_err(io_err(&p))?;
    Ok(manifest)
}

fn finish(out: BufWriter<fs::File>, path: &Path) -> Result<(), AuditError> {
    let file = out.into_inner().map_err(|e| AuditError::Io {
        path: path.display().to_string(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(path))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A bundle read back.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    /// The records and checkpoints as a segment: record on line `n` of
    /// `records.jsonl` is at position `anchor.seq + n`.
    pub log: MemoryLog,
    /// `public-key.pem`, if present and readable.
    pub public_key: Option<PublicKey>,
    /// Lines of `checkpoints.jsonl` that are not checkpoints.
    pub unreadable_checkpoints: Vec<u64>,
}

impl Bundle {
    /// The line of `records.jsonl` a position in a finding stands for.
    pub fn line_of(&self, position: u64) -> u64 {
        position.saturating_sub(self.manifest.anchor.seq)
    }
}

/// Reads the bundle in `dir`. Fails only when the manifest or the records
/// file cannot be read at all; damage inside them is left for
/// verification to report.
pub fn read(dir: &Path) -> Result<Bundle, AuditError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bundle_err(format!("{MANIFEST_FILE} is not a bundle manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bundle_err(format!(
            "{MANIFEST_FILE}: unknown format {:?}",
            manifest.format
        )));
    }

    let records_path = dir.join(RECORDS_FILE);
    let bytes = fs::read(&records_path).map_err(io_err(&records_path))?;
    let mut records = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if !body.is_empty() {
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            records.push(StoredRecord {
                position: manifest.anchor.seq + i as u64 + 1,
                hash: None,
                envelope: line.to_vec(),
            });
        }
    }

    let cp_path = dir.join(CHECKPOINTS_FILE);
    let cp_text = match fs::read(&cp_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&cp_path)(e)),
    };
    let mut checkpoints = Vec::new();
    let mut unreadable_checkpoints = Vec::new();
    for (i, line) in cp_text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Checkpoint>(line) {
            Ok(cp) => checkpoints.push(cp),
            Err(_) => unreadable_checkpoints.push(i as u64 + 1),
        }
    }

    let public_key = fs::read_to_string(dir.join(PUBLIC_KEY_FILE))
        .ok()
        .and_then(|t| PublicKey::parse(&t).ok());

    let log = MemoryLog {
        log: manifest.log.clone(),
        records,
        checkpoints,
        head: Some(Head {
            log: manifest.log.clone(),
            size: manifest.last_seq,
            hash: manifest.last_hash,
        }),
        anchor: Some(Head {
            log: manifest.log.clone(),
            size: manifest.anchor.seq,
            hash: manifest.anchor.hash,
        }),
    };
    Ok(Bundle {
        manifest,
        log,
        public_key,
        unreadable_checkpoints,
    })
}

/// Verifies a bundle read with [`read`] against `key` (the auditor's copy;
/// without one, signatures are not checked).
pub fn verify(bundle: &Bundle, key: Option<&PublicKey>) -> Result<Report, AuditError> {
    let mut report = verify::verify(&bundle.log, key)?;
    report.findings.extend(
        bundle
            .unreadable_checkpoints
            .iter()
            .map(|&line| Finding::MalformedCheckpoint { line }),
    );
    Ok(report)
}

/// `VERIFY.md`: how to check the bundle, and what that shows.
pub fn readme(m: &Manifest) -> String {
    let range = match (m.requested_from, m.requested_to) {
        (None, None) => "the whole log".to_owned(),
        (from, to) => format!(
            "records with timestamps from {} to {} (µs since the Unix epoch, UTC; the end excluded)",
            from.map_or("the start".to_owned(), |t| t.to_string()),
            to.map_or("the end".to_owned(), |t| t.to_string()),
        ),
    };
    let signed = match m.last_checkpoint {
        Some(s) if s >= m.last_seq => {
            format!("Every record here is covered by a signed checkpoint (the last at seq {s}).")
        }
        Some(s) => format!(
            "Signed checkpoints cover the records up to seq {s}. Seqs {}..={} were \
             written after the last checkpoint of the log at export time: they are \
             chained, not signed.",
            s + 1,
            m.last_seq
        ),
        None => "No signed checkpoint covers these records yet: they are chained, not \
                 signed. Export again once the log has written its next checkpoint."
            .to_owned(),
    };
    format!(
        "# Portcullis audit evidence bundle

Records {first}..={last} ({count} records) of the Portcullis audit log
`{log}`, exported for {range}. The range is widened to whole checkpoint
intervals, so the bundle may hold records before and after the period asked
for. {signed}

## Files

- `records.jsonl`: the records, one per line, each line exactly the bytes
  that were stored and hashed (the envelope: `log`, `seq`, `ts`, `prev`,
  `record`, `v`).
- `checkpoints.jsonl`: the signed checkpoints from seq {anchor} to {last}.
- `manifest.json`: the seq range; `anchor`, the seq and hash of the record
  before the first one here, from which the chain is checked; the hash of
  the last record.
- `public-key.pem`: the checkpoint key as the exporting store held it. Do
  not rely on it: check with a copy of the public key you obtained from the
  log's operator beforehand or through another channel (its key id is
  printed by `portcullis audit verify` on the proxy host).

## How to check it

```
portcullis audit verify --bundle <this directory> --key <your copy of the public key>
```

No database or network is needed. The command recomputes each record's
hash (SHA-256 of `portcullis-audit/v1/entry\\0` followed by the line's
bytes), checks that each record names its predecessor's hash, starting from
the anchor, and checks every checkpoint's Ed25519 signature with the key
given and that the hash it signs is the hash of the record at its seq. It
exits 0 and prints `result: clean` when nothing is wrong, 1 and the
findings by seq otherwise, 2 when the bundle cannot be read. The format is
described in Portcullis' `docs/AUDIT.md`, so the check can be redone
without Portcullis.

## What a clean result proves

- Every record from seq {first} to the last checkpoint the report says it
  is vouched through is present, in order, and unchanged since the holder
  of the signing key signed that checkpoint; no record was removed from or
  added to that range.
- When a checkpoint at seq {anchor} is included and matches, the anchor
  itself is signed, so the segment is tied to the log before it.

## What it does not prove

- That the records are true. They say what Portcullis observed and decided,
  and are as trustworthy as the proxy and its configuration.
- That everything was recorded: targets with `audit = \"off\"`, statements
  let through unrecorded under `audit_failure = \"open\"`, and connections
  that reached the database without passing through Portcullis leave no
  record.
- Anything about records after the last checkpoint: someone able to write
  the store could have written those.
- Anything about records outside seqs {first}..={last}.
- Who held the signing key: a signature shows that the key was used, not
  by whom.
- Times: `ts` is the proxy host's clock.
",
        first = m.first_seq,
        last = m.last_seq,
        count = m.records,
        log = m.log,
        anchor = m.anchor.seq,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::checkpoint::SigningKey;
    use crate::record::Record;
    use crate::store::sqlite::Synchronous;
    use crate::store::{BatchStore, IndexFields, StoredItem};
    use crate::verify::Evidence;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[5; 32]).unwrap()
    }

    fn record(i: u64) -> Record {
        Record::admin_for_tests("root", &format!("object-{i}"))
    }

    /// A store of `n` records with `ts = 1000 * seq`, checkpointed every
    /// 5 records (none after the last multiple of 5).
    fn store(dir: &Path, n: u64) -> SqliteStore {
        let path = dir.join("audit.db");
        let mut store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let k = key();
        store.set_public_key(&k.public_key()).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        for i in 1..=n {
            let r = record(i);
            let bytes = crate::canonical::encode(&r).unwrap();
            let sealed = chain.append(i as i64 * 1000, &bytes);
            let item = StoredItem {
                sealed,
                index: IndexFields::of(&r),
            };
            let cp = (i % 5 == 0).then(|| k.checkpoint(chain.head(), i as i64 * 1000));
            store.commit(&[item], cp.as_ref(), chain.head()).unwrap();
        }
        drop(store);
        SqliteStore::open_read_only(&path).unwrap()
    }

    fn range(from: i64, to: i64) -> ExportRange {
        ExportRange {
            through_seq: None,
            from: Some(from),
            to: Some(to),
        }
    }

    fn lines(dir: &Path) -> Vec<Vec<u8>> {
        let bytes = fs::read(dir.join(RECORDS_FILE)).unwrap();
        bytes
            .strip_suffix(b"\n")
            .unwrap()
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn write_lines(dir: &Path, lines: &[Vec<u8>]) {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        fs::write(dir.join(RECORDS_FILE), out).unwrap();
    }

    fn check(dir: &Path) -> Report {
        verify(&read(dir).unwrap(), Some(&key().public_key())).unwrap()
    }

    #[test]
    fn export_widens_to_checkpoints_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 20);
        let out = tmp.path().join("bundle");
        // Records 7..=11 asked for: 6..=15 exported, anchored at 5.
        let m = export(&store, range(7_000, 12_000), None, &out).unwrap();
        assert_eq!(
            (
                m.anchor.seq,
                m.first_seq,
                m.last_seq,
                m.records,
                m.checkpoints
            ),
            (5, 6, 15, 10, 3)
        );
        assert_eq!(m.last_checkpoint, Some(15));
        assert_eq!((m.first_ts, m.last_ts), (6_000, 15_000));
        assert_eq!(m.key_id.as_deref(), Some(key().key_id()));
        for f in [
            RECORDS_FILE,
            CHECKPOINTS_FILE,
            MANIFEST_FILE,
            PUBLIC_KEY_FILE,
            README_FILE,
        ] {
            assert!(out.join(f).exists(), "{f}");
        }
        // The lines are the stored bytes.
        let l = lines(&out);
        for (i, line) in l.iter().enumerate() {
            assert_eq!(Some(line.clone()), store.envelope(6 + i as u64).unwrap());
        }

        let b = read(&out).unwrap();
        assert_eq!(b.public_key, Some(key().public_key()));
        let r = verify(&b, b.public_key.as_ref()).unwrap();
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(
            (r.anchor, r.records, r.last_seq, r.vouched_through),
            (5, 10, 15, 15)
        );
        let readme = fs::read_to_string(out.join(README_FILE)).unwrap();
        assert!(readme.contains("portcullis audit verify --bundle"));

        // A non-empty directory is refused.
        assert!(matches!(
            export(&store, range(7_000, 12_000), None, &out),
            Err(AuditError::Bundle(_))
        ));
    }

    #[test]
    fn export_from_the_start_and_into_the_unsigned_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 23);
        let out = tmp.path().join("all");
        let m = export(&store, ExportRange::default(), None, &out).unwrap();
        assert_eq!(
            m.anchor,
            Anchor {
                seq: 0,
                hash: genesis(store.log())
            }
        );
        assert_eq!(
            (m.first_seq, m.last_seq, m.last_checkpoint),
            (1, 23, Some(20))
        );
        let r = check(&out);
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(r.vouched_through, 20);

        let out = tmp.path().join("tail");
        let m = export(&store, range(21_000, 30_000), None, &out).unwrap();
        assert_eq!((m.anchor.seq, m.first_seq, m.last_seq), (20, 21, 23));
        assert_eq!(m.last_checkpoint, None);
        let r = check(&out);
        assert!(r.is_clean(), "{:?}", r.findings);
        // The anchor's checkpoint matches; nothing after it is signed.
        assert_eq!(r.vouched_through, 20);
        assert!(fs::read_to_string(out.join(README_FILE))
            .unwrap()
            .contains("No signed checkpoint covers"));

        assert!(matches!(
            export(
                &store,
                range(50_000, 60_000),
                None,
                &tmp.path().join("none")
            ),
            Err(AuditError::Bundle(_))
        ));
    }

    #[test]
    fn tampered_bundles_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 20);
        let fresh = |name: &str| {
            let out = tmp.path().join(name);
            export(&store, range(7_000, 12_000), None, &out).unwrap();
            out
        };

        // One byte of seq 8's line changed.
        let out = fresh("edited");
        let mut l = lines(&out);
        let pos = l[2].windows(8).position(|w| w == b"object-8").unwrap();
        l[2][pos + 7] = b'9';
        write_lines(&out, &l);
        assert_eq!(check(&out).findings, vec![Finding::Rewritten { seq: 8 }]);

        // The last line changed: only the checkpoint and the manifest's
        // last hash can tell.
        let out = fresh("last");
        let mut l = lines(&out);
        let n = l.len();
        let pos = l[n - 1].windows(9).position(|w| w == b"object-15").unwrap();
        l[n - 1][pos + 8] = b'6';
        write_lines(&out, &l);
        assert_eq!(
            check(&out).findings,
            vec![
                Finding::CheckpointMismatch {
                    size: 15,
                    since: 10
                },
                Finding::HeadMismatch { size: 15 },
            ]
        );

        // A line removed.
        let out = fresh("removed");
        let mut l = lines(&out);
        l.remove(4);
        write_lines(&out, &l);
        let f = check(&out).findings;
        assert!(
            f.contains(&Finding::Missing {
                first: 10,
                last: 10
            }),
            "{f:?}"
        );

        // The end cut off.
        let out = fresh("truncated");
        let mut l = lines(&out);
        l.truncate(8);
        write_lines(&out, &l);
        let f = check(&out).findings;
        assert!(
            f.contains(&Finding::Truncated {
                vouched: 15,
                present: 13,
                by: Evidence::Checkpoint
            }),
            "{f:?}"
        );

        // A checkpoint line garbled, another's signature forged.
        let out = fresh("checkpoints");
        let text = fs::read_to_string(out.join(CHECKPOINTS_FILE)).unwrap();
        let mut cps: Vec<String> = text.lines().map(str::to_owned).collect();
        cps[0] = "{not json".into();
        let mut cp: Checkpoint = serde_json::from_str(&cps[1]).unwrap();
        cp.ts += 1;
        cps[1] = serde_json::to_string(&cp).unwrap();
        fs::write(out.join(CHECKPOINTS_FILE), cps.join("\n") + "\n").unwrap();
        let f = check(&out).findings;
        assert_eq!(
            f,
            vec![
                Finding::BadSignature { size: 10 },
                Finding::MalformedCheckpoint { line: 1 },
            ]
        );

        // Another key: nothing is vouched for.
        let out = fresh("other-key");
        let other = SigningKey::from_seed(&[6; 32]).unwrap().public_key();
        let r = verify(&read(&out).unwrap(), Some(&other)).unwrap();
        assert_eq!(r.findings.len(), 3);
        assert!(r
            .findings
            .iter()
            .all(|f| matches!(f, Finding::UnknownKey { .. })));
        assert_eq!(r.vouched_through, 0);
    }
}
