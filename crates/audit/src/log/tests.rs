//! The sealer's promise to recovery, driven without a proxy: a waiter that
//! journals its record while the writer is storing records nobody waited
//! for journals those first, so the journal always continues the store's
//! chain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::checkpoint::Checkpoint;
use crate::store::StoredItem;

/// A store whose commits wait at a gate, and fail while it is broken.
struct Controlled {
    inner: SqliteStore,
    gate: Arc<Mutex<()>>,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl Controlled {
    fn open(path: &std::path::Path) -> Self {
        Controlled {
            inner: SqliteStore::open(path, Synchronous::Normal).unwrap(),
            gate: Arc::default(),
            broken: Arc::default(),
        }
    }
}

impl BatchStore for Controlled {
    fn head(&self) -> Result<crate::chain::Head, AuditError> {
        self.inner.head()
    }

    fn commit(
        &mut self,
        batch: &[StoredItem],
        checkpoint: Option<&Checkpoint>,
        head: &crate::chain::Head,
    ) -> Result<(), AuditError> {
        let _open = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if self.broken.load(Ordering::SeqCst) {
            return Err(AuditError::StoreDown);
        }
        self.inner.commit(batch, checkpoint, head)
    }
}

fn record(i: u64) -> Record {
    Record::admin_for_tests(&format!("admin{i}"), "o")
}

fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    std::fs::copy(from, to).unwrap();
    let (mut wal_from, mut wal_to) = (from.as_os_str().to_owned(), to.as_os_str().to_owned());
    wal_from.push("-wal");
    wal_to.push("-wal");
    if std::path::Path::new(&wal_from).exists() {
        std::fs::copy(&wal_from, &wal_to).unwrap();
    }
}

#[test]
fn a_waiter_journals_the_batch_in_flight_before_its_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Controlled::open(&path);
    let gate = store.gate.clone();
    let journal_path = journal::path_for(&path);
    let journal = Journal::open(journal_path.clone(), false).unwrap();
    let mut config = AuditConfig::new(&path);
    config.linger = Duration::ZERO;
    let log = AuditLog::start_with(store, config, Some(journal)).unwrap();
    assert!(log.sealer.inline());
    // The writer will be blocked on purpose: not a stall to wait out.
    log.sealer.set_stall_after(Duration::from_secs(600));

    let held = gate.lock().unwrap();
    // Records nobody waits for: the writer takes them and blocks storing.
    for i in 0..5 {
        log.submit(&record(i)).unwrap();
    }
    // The writer takes the first of them (perhaps more) and blocks.
    let mut in_flight = false;
    for _ in 0..500 {
        if log.sealer.lock().is_some_and(|st| st.storing()) {
            in_flight = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(in_flight, "the writer is storing a batch");

    // A record someone waits for is durable at once, on this thread,
    // although the writer is still blocked.
    let (accepted, receipt) = log.submit_with_receipt(&record(5)).unwrap();
    assert_eq!(accepted.seq, 6);
    assert_eq!(receipt.wait(Duration::from_secs(2)).unwrap().seq, 6);

    // What a crash now would leave: the store as it is (nothing stored)
    // and the journal, which must carry the store's chain up to seq 6.
    let copy = dir.path().join("copy.db");
    copy_store(&path, &copy);
    let copy_journal = journal::path_for(&copy);
    std::fs::copy(&journal_path, &copy_journal).unwrap();
    let mut fresh = SqliteStore::open(&copy, Synchronous::Normal).unwrap();
    assert_eq!(fresh.head().unwrap().size, 0);
    assert_eq!(journal::recover(&copy_journal, &mut fresh).unwrap(), 6);
    assert_eq!(fresh.head().unwrap().size, 6);

    drop(held);
    log.close();
    // Stored, and the journal emptied.
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(store.head().unwrap().size, 6);
    assert!(crate::verify::verify(&store, None).unwrap().is_clean());
    assert!(!journal::has_entries(&journal_path));
}

/// Closing over a dead store ends (even when the last batch is cut by a
/// checkpoint), and whoever waits for a record that never became durable
/// is answered `StoreDown`, also after the writer is gone.
#[test]
fn closing_over_a_dead_store_ends_and_answers_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Controlled::open(&path);
    let broken = store.broken.clone();
    let mut config = AuditConfig::new(&path);
    config.linger = Duration::from_secs(30);
    config.signing_key = Some(SigningKey::from_seed(&[3; 32]).unwrap());
    config.checkpoints = CheckpointPolicy {
        every_records: 3,
        every: Duration::from_secs(3600),
    };
    // No journal: a waiter's record is durable only once stored.
    let log = AuditLog::start_with(store, config, None).unwrap();
    broken.store(true, Ordering::SeqCst);
    for i in 0..4 {
        log.submit(&record(i)).unwrap();
    }
    let (_, receipt) = log.submit_with_receipt(&record(4)).unwrap();
    let (_, late) = log.submit_with_receipt(&record(5)).unwrap();
    let started = std::time::Instant::now();
    log.close();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "close returned in {:?}",
        started.elapsed()
    );
    assert!(matches!(
        receipt.wait(Duration::from_secs(5)),
        Err(AuditError::StoreDown)
    ));
    assert!(matches!(
        late.wait(Duration::from_secs(5)),
        Err(AuditError::StoreDown)
    ));
}
