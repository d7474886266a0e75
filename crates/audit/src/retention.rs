//! Retention: rotating the oldest records out of the live store into an
//! archived, self-verifying segment, so the store stops growing without
//! breaking the chain.
//!
//! A rotation cuts at a signed checkpoint (size `S`, the last one older
//! than the retention bound): records `anchor + 1 ..= S` are written as an
//! evidence bundle (see [`crate::bundle`]) under the archive directory,
//! the bundle is read back and verified, and only then are those records
//! deleted from the store, in one transaction that also records `S` and
//! the checkpoint's head hash as the store's anchor. The checkpoint at `S`
//! stays in the store. From then on:
//!
//! - `verify` on the store walks from the anchor: the first record must
//!   chain to the anchor hash, which the signed checkpoint at `S` vouches
//!   for; its report names the anchor, so an auditor sees that the
//!   earlier records live in archived segments;
//! - each archived bundle verifies on its own (`verify --bundle`), and
//!   consecutive segments join: one's last hash is the next one's anchor.
//!
//! Deleted pages are reused by new records (the file stops growing; it
//! does not shrink without a `VACUUM`).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::bundle::{self, ExportRange, Manifest};
use crate::checkpoint::PublicKey;
use crate::store::sqlite::rows;
use crate::store::sqlite::{set_meta, SqliteStore};
use crate::verify::LogSource;
use crate::AuditError;

/// What one rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The archived segment's directory and manifest.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The store's new anchor: the last seq moved out.
    pub anchor: u64,
}

/// Moves the records up to the last signed checkpoint older than
/// `before_ts` (µs since the epoch) into a bundle under `archive_dir`,
/// verifies it and deletes them from the store at `path`. `None` when no
/// checkpoint past the current anchor is that old.
///
/// Safe while a proxy writes the store: the bundle is read in one read
/// transaction and the deletion is one write transaction that touches
/// only rows before the cut.
pub fn rotate(
    path: &Path,
    before_ts: i64,
    archive_dir: &Path,
    key: Option<&PublicKey>,
) -> Result<Option<Rotation>, AuditError> {
    let store = SqliteStore::open_read_only(path)?;
    let anchor = store.anchor()?.map_or(0, |a| a.size);
    let Some(cut) = store
        .checkpoints()?
        .into_iter()
        .filter(|c| c.size > anchor && c.ts < before_ts)
        .max_by_key(|c| c.size)
    else {
        return Ok(None);
    };
    let key = match key {
        Some(k) => Some(*k),
        None => store.public_key()?,
    };
    let Some(key) = key else {
        // Without a key the cut could not be vouched for.
        return Err(AuditError::Bundle(
            "rotation needs the checkpoint public key (none given, none in the store)".into(),
        ));
    };
    let dir = archive_dir.join(format!(
        "{}-{:012}-{:012}",
        store.log().as_str(),
        anchor + 1,
        cut.size
    ));
    let manifest = bundle::export(
        &store,
        ExportRange {
            from: None,
            to: None,
            through_seq: Some(cut.size),
        },
        Some(&key),
        &dir,
    )?;
    if manifest.last_seq != cut.size || manifest.anchor.seq != anchor {
        return Err(AuditError::Bundle(format!(
            "the archived segment holds {}..={} (anchor {}), not {}..={}; nothing was deleted",
            manifest.first_seq,
            manifest.last_seq,
            manifest.anchor.seq,
            anchor + 1,
            cut.size
        )));
    }
    // Read back what was written and verify it before deleting anything:
    // a store that does not verify is not rotated.
    let report = bundle::verify(&bundle::read(&dir)?, Some(&key))?;
    if !report.is_clean() || report.vouched_through != cut.size {
        return Err(AuditError::Bundle(format!(
            "the archived segment {} does not verify ({} findings, signed through {}); nothing was deleted",
            dir.display(),
            report.findings.len(),
            report.vouched_through
        )));
    }
    drop(store);

    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let s = cut.size as i64;
    tx.execute(
        "DELETE FROM audit_terms WHERE block IN (SELECT first_seq FROM audit_blocks WHERE last_seq <= ?1)",
        [s],
    )?;
    tx.execute("DELETE FROM audit_blocks WHERE last_seq <= ?1", [s])?;
    rows::delete_through(&tx, cut.size)?;
    tx.execute("DELETE FROM audit_checkpoints WHERE size < ?1", [s])?;
    set_meta(&tx, "anchor_size", &cut.size.to_string())?;
    set_meta(&tx, "anchor_hash", &cut.head.to_hex())?;
    tx.commit()?;
    Ok(Some(Rotation {
        dir,
        manifest,
        anchor: cut.size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::checkpoint::SigningKey;
    use crate::record::Record;
    use crate::store::{BatchStore, IndexFields, StoredItem};
    use crate::verify::verify;
    use crate::Synchronous;

    fn key() -> SigningKey {
        SigningKey::from_seed(&[9; 32]).unwrap()
    }

    fn record(i: u64) -> Record {
        Record::admin_for_tests(&format!("admin{i}"), &format!("object-{i}"))
    }

    /// Appends records `from..=to` with `ts = 1000 * seq`, a checkpoint
    /// every 10.
    fn append(path: &Path, from: u64, to: u64) {
        let mut store = SqliteStore::open(path, Synchronous::Normal).unwrap();
        let k = key();
        store.set_public_key(&k.public_key()).unwrap();
        let mut chain = Chain::resume(store.head().unwrap());
        for i in from..=to {
            let r = record(i);
            let sealed = chain.append(i as i64 * 1000, &crate::canonical::encode(&r).unwrap());
            let cp = (i % 10 == 0).then(|| k.checkpoint(chain.head(), i as i64 * 1000));
            store
                .commit(
                    &[StoredItem {
                        sealed,
                        index: IndexFields::of(&r),
                    }],
                    cp.as_ref(),
                    chain.head(),
                )
                .unwrap();
        }
    }

    fn clean(path: &Path) -> crate::verify::Report {
        let store = SqliteStore::open_read_only(path).unwrap();
        let report = verify(&store, Some(&key().public_key())).unwrap();
        assert!(report.is_clean(), "{:?}", report.findings);
        report
    }

    #[test]
    fn rotated_segments_and_the_store_verify_and_join() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let archive = dir.path().join("archive");
        append(&path, 1, 35);
        // Checkpoints at 10, 20, 30 (ts = 1000 * seq): older than 25 000 → 20.
        let r1 = rotate(&path, 25_000, &archive, None).unwrap().unwrap();
        assert_eq!((r1.manifest.first_seq, r1.anchor), (1, 20));
        let report = clean(&path);
        assert_eq!(
            (report.anchor, report.records, report.last_seq),
            (20, 15, 35)
        );
        // Nothing old enough past the anchor: no rotation.
        assert!(rotate(&path, 25_000, &archive, None).unwrap().is_none());

        // The proxy goes on writing; a second rotation joins the first.
        append(&path, 36, 52);
        let r2 = rotate(&path, 51_000, &archive, None).unwrap().unwrap();
        assert_eq!((r2.manifest.first_seq, r2.anchor), (21, 50));
        assert_eq!(r2.manifest.anchor.seq, 20);
        assert_eq!(r2.manifest.anchor.hash, r1.manifest.last_hash);
        let report = clean(&path);
        assert_eq!(
            (report.anchor, report.records, report.last_seq),
            (50, 2, 52)
        );
        for r in [&r1, &r2] {
            let b = bundle::read(&r.dir).unwrap();
            let rep = bundle::verify(&b, Some(&key().public_key())).unwrap();
            assert!(rep.is_clean(), "{:?}", rep.findings);
        }
        // Search still works over what is left.
        let store = SqliteStore::open_read_only(&path).unwrap();
        let found = crate::search::search(&store, &crate::search::Filter::default()).unwrap();
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn a_store_that_does_not_verify_is_not_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        append(&path, 1, 25);
        crate::store::sqlite::tamper::rewrite(&path, |rows| {
            let r = &mut rows[4];
            r.envelope = String::from_utf8(r.envelope.clone())
                .unwrap()
                .replace("admin5", "admin6")
                .into_bytes();
        })
        .unwrap();
        let err = rotate(&path, i64::MAX, &dir.path().join("archive"), None).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        let left = crate::store::sqlite::tamper::read(&path).unwrap().len();
        assert_eq!(left, 25, "nothing deleted");
    }

    #[test]
    fn deleting_old_records_without_rotating_is_caught() {
        // What rotation writes (the anchor) is what verify trusts only
        // through a signed checkpoint at the anchor.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        append(&path, 1, 25);
        crate::store::sqlite::tamper::rewrite(&path, |rows| rows.retain(|r| r.seq > 15)).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DELETE FROM audit_checkpoints WHERE size < 15;
             INSERT INTO audit_meta (key, value) VALUES ('anchor_size', '15'),
               ('anchor_hash', '0000000000000000000000000000000000000000000000000000000000000000');",
        )
        .unwrap();
        let store = SqliteStore::open_read_only(&path).unwrap();
        let report = verify(&store, Some(&key().public_key())).unwrap();
        assert!(!report.is_clean(), "a forged anchor must not verify");
    }
}
