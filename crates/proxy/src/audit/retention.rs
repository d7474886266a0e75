//! `[audit] retain`: a thread that rotates records older than the bound
//! out of the store every hour (see the audit crate's `retention`), and
//! records each rotation in the trail itself as an administrative record.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_audit::record::{AdminAction, AdminRecord, Identity, IdentityKind, Record};
use portcullis_audit::{retention, AuditLog};
use tracing::{info, warn};

/// How often the store is looked at.
const EVERY: Duration = Duration::from_secs(3600);

pub struct Retention {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Retention {
    /// Starts the thread; its first rotation runs at once.
    pub fn start(
        log: Arc<AuditLog>,
        store: PathBuf,
        archive: PathBuf,
        retain: Duration,
    ) -> Retention {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("audit-retention".into())
            .spawn(move || {
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    drop(stopped);
                    rotate_once(&log, &store, &archive, retain);
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if *stopped {
                        break;
                    }
                    stopped = cvar
                        .wait_timeout(stopped, EVERY)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(error = %e, "audit retention thread could not start: the store keeps everything");
                None
            }
        };
        Retention {
            stop,
            thread: Mutex::new(thread),
        }
    }

    /// Stops the thread (after the rotation under way, if any).
    pub fn stop(&self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rotate_once(
    log: &AuditLog,
    store: &std::path::Path,
    archive: &std::path::Path,
    retain: Duration,
) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let before = now.saturating_sub(retain.as_micros().min(i64::MAX as u128) as i64);
    match retention::rotate(store, before, archive, log.public_key().as_ref()) {
        Ok(None) => {}
        Ok(Some(r)) => {
            let m = &r.manifest;
            info!(
                first_seq = m.first_seq,
                last_seq = m.last_seq,
                records = m.records,
                segment = %r.dir.display(),
                "audit records rotated out of the store"
            );
            let record = Record::Admin(AdminRecord {
                actor: Identity {
                    kind: IdentityKind::Service,
                    subject: "portcullis".into(),
                    groups: Vec::new(),
                    on_behalf_of: None,
                },
                action: AdminAction::AuditRotated,
                object: r
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                detail: Some(format!(
                    "seqs {}..={} ({} records) moved to an archived segment; the store starts after seq {}",
                    m.first_seq, m.last_seq, m.records, r.anchor
                )),
            });
            if let Err(e) = log.submit_follow_up(&record) {
                warn!(error = %e, "the rotation's own record could not be queued");
            }
        }
        Err(e) => warn!(
            error = %e,
            store = %store.display(),
            "audit rotation failed: nothing was deleted; the store keeps growing until it succeeds"
        ),
    }
}
