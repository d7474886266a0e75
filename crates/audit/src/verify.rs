//! Verification: walk a log's records and checkpoints and say exactly what
//! is wrong, by sequence number.
//!
//! A log is read in *position* order: the store's own key (SQLite's `seq`
//! column, a line number in an exported bundle). Each stored envelope says
//! which seq it *claims* and which hash it chains to. An untouched log has
//! position = claimed seq for every record, every envelope hashing to its
//! stored hash, every `prev` equal to its predecessor's hash, every
//! checkpoint's signature valid and its head equal to the hash at its size.
//!
//! The walk keeps memory proportional to the number of anomalies, not the
//! size of the log: it groups consecutive records that chain correctly
//! into *runs*, and only the runs' ends are kept and compared. A clean log
//! of any size is one run.
//!
//! What each finding means:
//! - [`Finding::Edited`]: the envelope no longer hashes to the hash stored
//!   beside it: its content was changed in place.
//! - [`Finding::Rewritten`]: the next record chained to a different hash:
//!   the record's content *and* its stored hash were changed together.
//! - [`Finding::Missing`]: no record claims these seqs: deleted.
//! - [`Finding::Inserted`]: a record claims a seq that a properly chained
//!   record also holds, and nothing chains to it: forged and slipped in.
//! - [`Finding::Misplaced`]: records sit at positions other than the seq
//!   they claim: reordered (or renumbered around an insertion).
//! - [`Finding::Truncated`]: a checkpoint (or the store's recorded head)
//!   vouches for more records than are present: the end was cut off.
//! - [`Finding::CheckpointMismatch`]: the hash at a checkpoint's size is not
//!   the one it signed: records up to there were rewritten with their chain
//!   recomputed (somewhere after `since`, the last checkpoint that matched).
//! - [`Finding::BadSignature`] / [`Finding::UnknownKey`]: the checkpoint
//!   was not signed by the key the verifier trusts.
//!
//! What verification cannot see: records appended after the last valid
//! checkpoint by someone who can write the store are chained like genuine
//! ones; [`Report::vouched_through`] says how far signatures reach.
//!
//! A source may hold a *segment* of a log rather than the whole of it (an
//! exported evidence bundle, later a rotated file): its
//! [`LogSource::anchor`] names the record before the segment's first, by
//! seq and hash. The walk then starts from the anchor instead of the
//! genesis hash: the first record must claim `anchor.size + 1` and chain to
//! `anchor.hash`; positions continue from the anchor (a segment's first
//! record is at position `anchor.size + 1`); a checkpoint at the anchor's
//! size is compared with the anchor hash, and checkpoints before it are
//! outside the segment and ignored.

use std::fmt;

use serde::Serialize;

use crate::chain::{entry_hash, EnvelopeHeader, Hash, Head, LogId};
use crate::checkpoint::{Checkpoint, PublicKey};
use crate::AuditError;

/// One stored envelope as a source hands it over.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The store's own ordering key (1-based).
    pub position: u64,
    /// The hash stored beside the envelope, if the store keeps one.
    pub hash: Option<Hash>,
    pub envelope: Vec<u8>,
}

/// What verification reads. The SQLite store implements it; so does
/// [`MemoryLog`] (tests, exported bundles).
pub trait LogSource {
    fn log_id(&self) -> Result<LogId, AuditError>;
    /// Every record in position order.
    fn scan(&self, each: &mut dyn FnMut(StoredRecord)) -> Result<(), AuditError>;
    fn record_at(&self, position: u64) -> Result<Option<StoredRecord>, AuditError>;
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError>;
    /// The head the writer recorded with its last commit, if the store keeps
    /// one; it catches a truncation after the last checkpoint that did not
    /// also rewrite this record.
    fn recorded_head(&self) -> Result<Option<Head>, AuditError>;
    /// For a segment of a log, the record before its first: its seq (the
    /// anchor's `size`) and hash. `None` (the default) for a whole log,
    /// which starts from the genesis hash.
    fn anchor(&self) -> Result<Option<Head>, AuditError> {
        Ok(None)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    Malformed {
        position: u64,
    },
    ForeignLog {
        position: u64,
    },
    Edited {
        seq: u64,
        position: u64,
    },
    Rewritten {
        seq: u64,
    },
    /// Record 1 does not chain to this log's genesis hash.
    BadGenesis,
    /// A segment's first record does not chain to the anchor hash given
    /// for the record before it.
    BadAnchor {
        seq: u64,
    },
    /// A segment holds a record claiming a seq at or before its anchor.
    BeforeAnchor {
        position: u64,
        seq: u64,
    },
    /// A line of a bundle's checkpoint file that is not a checkpoint.
    MalformedCheckpoint {
        line: u64,
    },
    Missing {
        first: u64,
        last: u64,
    },
    Inserted {
        first_position: u64,
        last_position: u64,
        first_seq: u64,
        last_seq: u64,
    },
    Misplaced {
        first_position: u64,
        last_position: u64,
        first_seq: u64,
        last_seq: u64,
    },
    Truncated {
        vouched: u64,
        present: u64,
        by: Evidence,
    },
    CheckpointMismatch {
        size: u64,
        since: u64,
    },
    HeadMismatch {
        size: u64,
    },
    BadSignature {
        size: u64,
    },
    UnknownKey {
        size: u64,
        key_id: String,
    },
    CheckpointForeignLog {
        size: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    Checkpoint,
    RecordedHead,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Malformed { position } => write!(f, "position {position}: not a readable record"),
            Finding::ForeignLog { position } => write!(f, "position {position}: record of another log"),
            Finding::Edited { seq, position } => {
                write!(f, "seq {seq} (position {position}): edited, its content no longer matches its hash")
            }
            Finding::Rewritten { seq } => write!(
                f,
                "seq {seq}: rewritten, content and hash changed together (seq {} chained to the original)",
                seq + 1
            ),
            Finding::BadGenesis => write!(f, "seq 1 does not chain to this log's genesis"),
            Finding::BadAnchor { seq } => write!(
                f,
                "seq {seq} does not chain to the hash given for seq {} (the segment's anchor)",
                seq - 1
            ),
            Finding::BeforeAnchor { position, seq } => write!(
                f,
                "position {position}: claims seq {seq}, which is not in this segment"
            ),
            Finding::MalformedCheckpoint { line } => {
                write!(f, "checkpoint line {line}: not a readable checkpoint")
            }
            Finding::Missing { first, last } if first == last => write!(f, "seq {first}: missing (deleted)"),
            Finding::Missing { first, last } => write!(f, "seqs {first}..={last}: missing (deleted)"),
            Finding::Inserted { first_position, last_position, first_seq, last_seq } => write!(
                f,
                "positions {first_position}..={last_position}: inserted records claiming seqs {first_seq}..={last_seq}"
            ),
            Finding::Misplaced { first_position, last_position, first_seq, last_seq } => write!(
                f,
                "seqs {first_seq}..={last_seq} stored at positions {first_position}..={last_position}: reordered"
            ),
            Finding::Truncated { vouched, present, by } => write!(
                f,
                "truncated: {} vouches for {vouched} records, {present} present",
                match by {
                    Evidence::Checkpoint => "a checkpoint",
                    Evidence::RecordedHead => "the recorded head",
                }
            ),
            Finding::CheckpointMismatch { size, since } => write!(
                f,
                "checkpoint at size {size} does not match the records: some record in {}..={size} was rewritten",
                since + 1
            ),
            Finding::HeadMismatch { size } => write!(f, "the recorded head at size {size} does not match the records"),
            Finding::BadSignature { size } => write!(f, "checkpoint at size {size}: bad signature"),
            Finding::UnknownKey { size, key_id } => {
                write!(f, "checkpoint at size {size}: signed by unknown key {key_id}")
            }
            Finding::CheckpointForeignLog { size } => write!(f, "checkpoint at size {size}: for another log"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub log: LogId,
    /// The seq the walk started after: 0 for a whole log, the anchor's
    /// seq for a segment.
    pub anchor: u64,
    /// Records read.
    pub records: u64,
    /// Highest seq held by a genuine record.
    pub last_seq: u64,
    pub checkpoints: u64,
    /// Whether signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// Size of the last checkpoint whose signature verified and whose head
    /// matched: records after it are vouched for by nothing.
    pub vouched_through: u64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A run of records that chain correctly and sit at consecutive positions.
#[derive(Debug, Clone)]
struct Run {
    first_seq: u64,
    last_seq: u64,
    first_position: u64,
    last_position: u64,
    first_prev: Hash,
    /// The last record's stored and recomputed hash: a successor may have
    /// chained to either (the stored one if only the content was edited).
    last_hashes: [Hash; 2],
}

impl Run {
    fn position_of(&self, seq: u64) -> u64 {
        self.first_position + (seq - self.first_seq)
    }
}

fn hashes_of(rec: &StoredRecord) -> [Hash; 2] {
    let computed = entry_hash(&rec.envelope);
    [rec.hash.unwrap_or(computed), computed]
}

/// Verifies a log. `key` is the public key the auditor trusts; without it,
/// signatures are not checked and the report says so.
pub fn verify(source: &dyn LogSource, key: Option<&PublicKey>) -> Result<Report, AuditError> {
    let log = source.log_id()?;
    let anchor = source.anchor()?.unwrap_or_else(|| Head::empty(log.clone()));
    let mut findings = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut current: Option<Run> = None;
    let mut records = 0u64;

    source.scan(&mut |rec| {
        records += 1;
        let header = match EnvelopeHeader::parse(&rec.envelope) {
            Ok(h) => h,
            Err(_) => {
                findings.push(Finding::Malformed {
                    position: rec.position,
                });
                runs.extend(current.take());
                return;
            }
        };
        if header.log != log {
            findings.push(Finding::ForeignLog {
                position: rec.position,
            });
            runs.extend(current.take());
            return;
        }
        if header.seq <= anchor.size {
            findings.push(Finding::BeforeAnchor {
                position: rec.position,
                seq: header.seq,
            });
            runs.extend(current.take());
            return;
        }
        let hashes = hashes_of(&rec);
        if hashes[0] != hashes[1] {
            findings.push(Finding::Edited {
                seq: header.seq,
                position: rec.position,
            });
        }
        if let Some(run) = current.as_mut() {
            let follows = header.seq == run.last_seq + 1
                && rec.position == run.last_position + 1
                && run.last_hashes.contains(&header.prev);
            if follows {
                run.last_seq = header.seq;
                run.last_position = rec.position;
                run.last_hashes = hashes;
                return;
            }
        }
        runs.extend(current.replace(Run {
            first_seq: header.seq,
            last_seq: header.seq,
            first_position: rec.position,
            last_position: rec.position,
            first_prev: header.prev,
            last_hashes: hashes,
        }));
    })?;
    runs.extend(current.take());

    let accepted = resolve_overlaps(source, runs, &mut findings)?;
    let last_seq = link_runs(&anchor, &accepted, &mut findings);

    let mut checkpoints = source.checkpoints()?;
    checkpoints.sort_by_key(|c| c.size);
    let mut vouched_through = 0;
    let mut since = anchor.size;
    for cp in &checkpoints {
        if cp.log != log {
            findings.push(Finding::CheckpointForeignLog { size: cp.size });
            continue;
        }
        if let Some(key) = key {
            if cp.key_id != key.key_id() {
                findings.push(Finding::UnknownKey {
                    size: cp.size,
                    key_id: cp.key_id.clone(),
                });
                continue;
            }
            if !key.verify(cp) {
                findings.push(Finding::BadSignature { size: cp.size });
                continue;
            }
        }
        match compare_at(source, &anchor, &accepted, last_seq, cp.size, &cp.head)? {
            Compared::Beyond => findings.push(Finding::Truncated {
                vouched: cp.size,
                present: last_seq,
                by: Evidence::Checkpoint,
            }),
            Compared::Differs => findings.push(Finding::CheckpointMismatch {
                size: cp.size,
                since,
            }),
            Compared::Gap | Compared::Outside => {}
            Compared::Matches => {
                since = cp.size;
                if key.is_some() {
                    vouched_through = cp.size;
                }
            }
        }
    }

    if let Some(head) = source.recorded_head()? {
        match compare_at(source, &anchor, &accepted, last_seq, head.size, &head.hash)? {
            Compared::Beyond => findings.push(Finding::Truncated {
                vouched: head.size,
                present: last_seq,
                by: Evidence::RecordedHead,
            }),
            Compared::Differs => findings.push(Finding::HeadMismatch { size: head.size }),
            Compared::Gap | Compared::Matches | Compared::Outside => {}
        }
    }

    Ok(Report {
        log,
        anchor: anchor.size,
        records,
        last_seq,
        checkpoints: checkpoints.len() as u64,
        signatures_checked: key.is_some(),
        vouched_through,
        findings,
    })
}

/// Where two runs claim the same seqs, the one that goes on further is the
/// genuine chain (later records chained to it); the other's overlapping
/// records are inserted. Returns runs sorted by seq, without overlaps.
fn resolve_overlaps(
    source: &dyn LogSource,
    mut runs: Vec<Run>,
    findings: &mut Vec<Finding>,
) -> Result<Vec<Run>, AuditError> {
    runs.sort_by_key(|r| (r.first_seq, r.first_position));
    let mut accepted: Vec<Run> = Vec::with_capacity(runs.len());
    for run in runs {
        let mut keep_new = true;
        while let Some(last) = accepted.last_mut() {
            if run.first_seq > last.last_seq {
                break;
            }
            if run.last_seq > last.last_seq {
                // The new run goes on further: the earlier run's tail is forged.
                let first_position = last.position_of(run.first_seq);
                findings.push(Finding::Inserted {
                    first_position,
                    last_position: last.last_position,
                    first_seq: run.first_seq,
                    last_seq: last.last_seq,
                });
                if run.first_seq == last.first_seq {
                    accepted.pop();
                    continue;
                }
                last.last_seq = run.first_seq - 1;
                last.last_position = first_position - 1;
                last.last_hashes = match source.record_at(last.last_position)? {
                    Some(rec) => hashes_of(&rec),
                    None => [Hash([0; 32]); 2],
                };
                break;
            }
            // Contained in the earlier run: the new run is forged.
            findings.push(Finding::Inserted {
                first_position: run.first_position,
                last_position: run.last_position,
                first_seq: run.first_seq,
                last_seq: run.last_seq,
            });
            keep_new = false;
            break;
        }
        if keep_new {
            accepted.push(run);
        }
    }
    Ok(accepted)
}

/// Checks the joints between runs, from the anchor on: gaps, broken
/// links, positions.
fn link_runs(anchor: &Head, runs: &[Run], findings: &mut Vec<Finding>) -> u64 {
    let mut covered = anchor.size;
    let mut tip = [anchor.hash, anchor.hash];
    for run in runs {
        if run.first_seq > covered + 1 {
            findings.push(Finding::Missing {
                first: covered + 1,
                last: run.first_seq - 1,
            });
        } else if !tip.contains(&run.first_prev) {
            findings.push(if covered == 0 {
                Finding::BadGenesis
            } else if covered == anchor.size {
                Finding::BadAnchor { seq: covered + 1 }
            } else {
                Finding::Rewritten { seq: covered }
            });
        }
        if run.first_position != run.first_seq {
            findings.push(Finding::Misplaced {
                first_position: run.first_position,
                last_position: run.last_position,
                first_seq: run.first_seq,
                last_seq: run.last_seq,
            });
        }
        covered = run.last_seq;
        tip = run.last_hashes;
    }
    covered
}

enum Compared {
    Matches,
    Differs,
    /// The seq is in a gap already reported missing.
    Gap,
    /// Beyond the last record present.
    Beyond,
    /// Before a segment's anchor: nothing here to compare with.
    Outside,
}

fn compare_at(
    source: &dyn LogSource,
    anchor: &Head,
    runs: &[Run],
    last_seq: u64,
    size: u64,
    expected: &Hash,
) -> Result<Compared, AuditError> {
    if size < anchor.size {
        return Ok(Compared::Outside);
    }
    if size == anchor.size {
        return Ok(if anchor.hash == *expected {
            Compared::Matches
        } else {
            Compared::Differs
        });
    }
    if size > last_seq {
        return Ok(Compared::Beyond);
    }
    let idx = runs.partition_point(|r| r.last_seq < size);
    let Some(run) = runs.get(idx).filter(|r| r.first_seq <= size) else {
        return Ok(Compared::Gap);
    };
    let hashes = if size == run.last_seq {
        run.last_hashes
    } else {
        match source.record_at(run.position_of(size))? {
            Some(rec) => hashes_of(&rec),
            None => return Ok(Compared::Gap),
        }
    };
    Ok(if hashes.contains(expected) {
        Compared::Matches
    } else {
        Compared::Differs
    })
}

/// A log, or a segment of one, held in memory: for tests and for
/// exported bundles.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    pub log: LogId,
    pub records: Vec<StoredRecord>,
    pub checkpoints: Vec<Checkpoint>,
    pub head: Option<Head>,
    /// For a segment, the record before its first (see
    /// [`LogSource::anchor`]).
    pub anchor: Option<Head>,
}

impl LogSource for MemoryLog {
    fn log_id(&self) -> Result<LogId, AuditError> {
        Ok(self.log.clone())
    }

    fn scan(&self, each: &mut dyn FnMut(StoredRecord)) -> Result<(), AuditError> {
        let mut sorted: Vec<&StoredRecord> = self.records.iter().collect();
        sorted.sort_by_key(|r| r.position);
        for r in sorted {
            each(r.clone());
        }
        Ok(())
    }

    fn record_at(&self, position: u64) -> Result<Option<StoredRecord>, AuditError> {
        // Records are usually held in position order from the first: try
        // the index that order gives before searching.
        let guess = self.records.first().and_then(|first| {
            let i = usize::try_from(position.checked_sub(first.position)?).ok()?;
            self.records.get(i).filter(|r| r.position == position)
        });
        Ok(guess
            .or_else(|| self.records.iter().find(|r| r.position == position))
            .cloned())
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        Ok(self.checkpoints.clone())
    }

    fn recorded_head(&self) -> Result<Option<Head>, AuditError> {
        Ok(self.head.clone())
    }

    fn anchor(&self) -> Result<Option<Head>, AuditError> {
        Ok(self.anchor.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{genesis, Chain};
    use crate::checkpoint::SigningKey;

    /// A log of `n` records with checkpoints at every `every` and the head.
    fn build(n: u64, every: u64) -> (MemoryLog, SigningKey) {
        let key = SigningKey::from_seed(&[1; 32]).unwrap();
        let log = LogId::new("mem");
        let mut chain = Chain::resume(Head::empty(log.clone()));
        let mut records = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 1..=n {
            let body = format!(r#"{{"i":{i}}}"#);
            let s = chain.append(i as i64, body.as_bytes());
            records.push(StoredRecord {
                position: s.seq,
                hash: Some(s.hash),
                envelope: s.envelope,
            });
            if i % every == 0 {
                checkpoints.push(key.checkpoint(chain.head(), i as i64));
            }
        }
        let head = Some(chain.head().clone());
        (
            MemoryLog {
                log,
                records,
                checkpoints,
                head,
                anchor: None,
            },
            key,
        )
    }

    fn run(log: &MemoryLog, key: &SigningKey) -> Report {
        verify(log, Some(&key.public_key())).unwrap()
    }

    /// Rebuilds the chain from `from` on, as an attacker without the key can.
    fn rechain(log: &mut MemoryLog, from: usize) {
        let mut prev = if from == 0 {
            genesis(&log.log)
        } else {
            log.records[from - 1].hash.unwrap()
        };
        for r in &mut log.records[from..] {
            let mut v: serde_json::Value = serde_json::from_slice(&r.envelope).unwrap();
            v["prev"] = serde_json::Value::String(prev.to_hex());
            r.envelope = crate::canonical::encode(&v).unwrap();
            let h = entry_hash(&r.envelope);
            r.hash = Some(h);
            prev = h;
        }
    }

    #[test]
    fn clean_log() {
        let (log, key) = build(20, 5);
        let r = run(&log, &key);
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(
            (r.records, r.last_seq, r.checkpoints, r.vouched_through),
            (20, 20, 4, 20)
        );
        let unchecked = verify(&log, None).unwrap();
        assert!(
            unchecked.is_clean() && !unchecked.signatures_checked && unchecked.vouched_through == 0
        );
    }

    #[test]
    fn empty_log_is_clean() {
        let (log, key) = build(0, 5);
        assert!(run(&log, &key).is_clean());
    }

    #[test]
    fn edit_in_place() {
        let (mut log, key) = build(20, 5);
        let env = String::from_utf8(log.records[6].envelope.clone()).unwrap();
        log.records[6].envelope = env.replace(r#""i":7"#, r#""i":70"#).into_bytes();
        assert_eq!(
            run(&log, &key).findings,
            vec![Finding::Edited {
                seq: 7,
                position: 7
            }]
        );
    }

    #[test]
    fn edit_with_hash_recomputed() {
        let (mut log, key) = build(20, 5);
        let env = String::from_utf8(log.records[6].envelope.clone()).unwrap();
        log.records[6].envelope = env.replace(r#""i":7"#, r#""i":70"#).into_bytes();
        log.records[6].hash = Some(entry_hash(&log.records[6].envelope));
        assert_eq!(
            run(&log, &key).findings,
            vec![Finding::Rewritten { seq: 7 }]
        );
    }

    #[test]
    fn edit_with_whole_chain_recomputed_caught_by_checkpoint() {
        let (mut log, key) = build(20, 5);
        let env = String::from_utf8(log.records[6].envelope.clone()).unwrap();
        log.records[6].envelope = env.replace(r#""i":7"#, r#""i":70"#).into_bytes();
        rechain(&mut log, 6);
        let f = run(&log, &key).findings;
        assert!(
            f.contains(&Finding::CheckpointMismatch { size: 10, since: 5 }),
            "{f:?}"
        );
        assert!(f.contains(&Finding::HeadMismatch { size: 20 }), "{f:?}");
    }

    #[test]
    fn deleted_record() {
        let (mut log, key) = build(20, 5);
        log.records.remove(11);
        assert_eq!(
            run(&log, &key).findings,
            vec![Finding::Missing {
                first: 12,
                last: 12
            }]
        );
    }

    #[test]
    fn deleted_first_record() {
        let (mut log, key) = build(20, 5);
        log.records.remove(0);
        assert_eq!(
            run(&log, &key).findings,
            vec![Finding::Missing { first: 1, last: 1 }]
        );
    }

    #[test]
    fn swapped_records() {
        for (a, b) in [(4usize, 5usize), (3, 9)] {
            let (mut log, key) = build(20, 5);
            let (pa, pb) = (log.records[a].position, log.records[b].position);
            log.records[a].position = pb;
            log.records[b].position = pa;
            let f = run(&log, &key).findings;
            let (sa, sb) = (a as u64 + 1, b as u64 + 1);
            assert_eq!(
                f,
                vec![
                    Finding::Misplaced {
                        first_position: sb,
                        last_position: sb,
                        first_seq: sa,
                        last_seq: sa
                    },
                    Finding::Misplaced {
                        first_position: sa,
                        last_position: sa,
                        first_seq: sb,
                        last_seq: sb
                    },
                ],
                "swap {sa} {sb}"
            );
        }
    }

    #[test]
    fn inserted_record_with_renumbering() {
        let (mut log, key) = build(20, 5);
        // A forged record claiming seq 8, chained to 7, and every later
        // record moved up one position to make room.
        for r in &mut log.records[7..] {
            r.position += 1;
        }
        let prev = log.records[6].hash.unwrap();
        let forged = crate::canonical::entry(
            &crate::canonical::EnvelopeFields {
                log: "mem",
                prev: &prev.0,
                seq: 8,
                ts_micros: 8,
                version: 1,
            },
            br#"{"i":"forged"}"#,
        );
        log.records.push(StoredRecord {
            position: 8,
            hash: Some(entry_hash(&forged)),
            envelope: forged,
        });
        let f = run(&log, &key).findings;
        assert_eq!(
            f,
            vec![
                Finding::Inserted {
                    first_position: 8,
                    last_position: 8,
                    first_seq: 8,
                    last_seq: 8
                },
                Finding::Misplaced {
                    first_position: 9,
                    last_position: 21,
                    first_seq: 8,
                    last_seq: 20
                },
            ]
        );
    }

    #[test]
    fn truncated_before_last_checkpoint() {
        let (mut log, key) = build(20, 5);
        log.records.truncate(17);
        let f = run(&log, &key).findings;
        assert_eq!(
            f,
            vec![
                Finding::Truncated {
                    vouched: 20,
                    present: 17,
                    by: Evidence::Checkpoint
                },
                Finding::Truncated {
                    vouched: 20,
                    present: 17,
                    by: Evidence::RecordedHead
                },
            ]
        );
    }

    #[test]
    fn truncated_after_last_checkpoint() {
        let (mut log, key) = build(23, 5);
        log.records.truncate(21);
        assert_eq!(
            run(&log, &key).findings,
            vec![Finding::Truncated {
                vouched: 23,
                present: 21,
                by: Evidence::RecordedHead
            }]
        );
    }

    #[test]
    fn bad_signature_and_unknown_key() {
        let (mut log, key) = build(20, 5);
        log.checkpoints[1].size = 11;
        let other = SigningKey::from_seed(&[2; 32]).unwrap();
        log.checkpoints[2] = other.checkpoint(
            &Head {
                log: log.log.clone(),
                size: 15,
                hash: log.records[14].hash.unwrap(),
            },
            1,
        );
        let f = run(&log, &key).findings;
        assert_eq!(
            f,
            vec![
                Finding::BadSignature { size: 11 },
                Finding::UnknownKey {
                    size: 15,
                    key_id: other.key_id().to_owned()
                },
            ]
        );
    }

    #[test]
    fn foreign_and_malformed() {
        let (mut log, key) = build(5, 5);
        log.records[1].envelope = b"not json".to_vec();
        let f = run(&log, &key).findings;
        assert!(f.contains(&Finding::Malformed { position: 2 }), "{f:?}");
        assert!(f.contains(&Finding::Missing { first: 2, last: 2 }), "{f:?}");
    }

    /// Records `from..=to` of `log` as a segment anchored at `from - 1`,
    /// with the checkpoints from the anchor's on.
    fn segment(log: &MemoryLog, from: u64, to: u64) -> MemoryLog {
        let anchor = if from == 1 {
            Head::empty(log.log.clone())
        } else {
            Head {
                log: log.log.clone(),
                size: from - 1,
                hash: log.records[from as usize - 2].hash.unwrap(),
            }
        };
        let records = log.records[from as usize - 1..to as usize]
            .iter()
            .map(|r| StoredRecord {
                hash: None,
                ..r.clone()
            })
            .collect();
        MemoryLog {
            log: log.log.clone(),
            records,
            checkpoints: log
                .checkpoints
                .iter()
                .filter(|c| c.size >= anchor.size && c.size <= to)
                .cloned()
                .collect(),
            head: Some(Head {
                log: log.log.clone(),
                size: to,
                hash: log.records[to as usize - 1].hash.unwrap(),
            }),
            anchor: Some(anchor),
        }
    }

    #[test]
    fn segment_verifies_from_its_anchor() {
        let (log, key) = build(20, 5);
        let seg = segment(&log, 6, 15);
        let r = run(&seg, &key);
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(
            (
                r.anchor,
                r.records,
                r.last_seq,
                r.checkpoints,
                r.vouched_through
            ),
            (5, 10, 15, 3, 15)
        );
        // Checkpoints before the anchor are outside the segment.
        let mut wider = seg.clone();
        wider.checkpoints = log.checkpoints.clone();
        wider.checkpoints.retain(|c| c.size <= 15);
        let r = run(&wider, &key);
        assert!(r.is_clean(), "{:?}", r.findings);
        // One after its end says the segment was cut short.
        wider.checkpoints = log.checkpoints.clone();
        assert_eq!(
            run(&wider, &key).findings,
            vec![Finding::Truncated {
                vouched: 20,
                present: 15,
                by: Evidence::Checkpoint
            }]
        );
    }

    #[test]
    fn segment_with_a_wrong_anchor() {
        let (log, key) = build(20, 5);
        let mut seg = segment(&log, 6, 15);
        seg.anchor.as_mut().unwrap().hash = Hash([7; 32]);
        let f = run(&seg, &key).findings;
        assert_eq!(
            f,
            vec![
                Finding::BadAnchor { seq: 6 },
                Finding::CheckpointMismatch { size: 5, since: 5 },
            ]
        );
    }

    #[test]
    fn segment_tampering() {
        let (log, key) = build(20, 5);
        // First record gone.
        let mut seg = segment(&log, 6, 15);
        seg.records.remove(0);
        for r in &mut seg.records {
            r.position -= 1;
        }
        let f = run(&seg, &key).findings;
        assert!(f.contains(&Finding::Missing { first: 6, last: 6 }), "{f:?}");
        // A record edited in the middle: no stored hash, so its successor
        // no longer chains to it.
        let mut seg = segment(&log, 6, 15);
        let env = String::from_utf8(seg.records[2].envelope.clone()).unwrap();
        seg.records[2].envelope = env.replace(r#""i":8"#, r#""i":80"#).into_bytes();
        assert_eq!(
            run(&seg, &key).findings,
            vec![Finding::Rewritten { seq: 8 }]
        );
        // A record from before the anchor slipped in.
        let mut seg = segment(&log, 6, 15);
        let mut early = log.records[2].clone();
        early.position = 16;
        seg.records.push(early);
        let f = run(&seg, &key).findings;
        assert_eq!(
            f,
            vec![Finding::BeforeAnchor {
                position: 16,
                seq: 3
            }]
        );
    }
}
