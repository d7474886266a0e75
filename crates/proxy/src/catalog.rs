//! Loading each target's catalog snapshot for the guard.
//!
//! The snapshot is taken over a connection of Portcullis' own, with the
//! target's credentials: once before the first session of a target is
//! served, again in the background when a session changed the schema (after
//! its transaction ended, so the change is visible), and when a session
//! starts and the snapshot is older than [`MAX_AGE`] (to notice migrations
//! run outside Portcullis). Until a refresh lands, objects created since
//! the last one are judged conservatively (see `portcullis_guard::catalog`).
//!
//! Refreshes after schema changes are coalesced per target: a load starts
//! once no further change was reported for [`QUIET`] (at most [`SETTLE`]
//! after the first), so a migration or test suite running hundreds of DDL
//! statements in a row costs a few loads, not one per statement.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_guard::{CatalogSnapshot, CATALOG_QUERIES};
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::runtime::TargetRuntime;
use crate::upstream;

/// A snapshot older than this is refreshed when a session starts.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// A refresh waits until schema changes have paused this long...
pub const QUIET: Duration = Duration::from_millis(100);

/// ... but no longer than this after it was first asked for.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Coordinates loads for one target.
#[derive(Debug, Default)]
pub struct CatalogLoader {
    /// Serialises loads made on a session's behalf.
    first: tokio::sync::Mutex<()>,
    /// A background refresh is running.
    in_flight: AtomicBool,
    /// A refresh was asked for since the running one started.
    dirty: AtomicBool,
    /// Background loads started (for tests and metrics).
    loads: AtomicU64,
    loaded_at: Mutex<Option<Instant>>,
}

/// Takes a snapshot of `target`'s catalog over a connection of its own,
/// classified with the target's masking (unclassified when masking is
/// off). `portcullis discover` reads the catalog this way too.
pub async fn load(target: &TargetRuntime) -> Result<CatalogSnapshot, String> {
    let mut up = upstream::connect(target, target.own_login(), &[])
        .await
        .map_err(|e| format!("could not connect for the catalog queries: {e}"))?;
    let result = tokio::time::timeout(
        Duration::from(target.config.connect_timeout).max(Duration::from_secs(10)),
        upstream::simple_query(&mut up.stream, &mut up.leftover, CATALOG_QUERIES),
    )
    .await;
    let mut bye = BytesMut::new();
    portcullis_wire::encode::terminate(&mut bye);
    let _ = up.stream.write_all(&bye).await;
    let sets = result
        .map_err(|_| "catalog queries timed out".to_owned())?
        .map_err(|e| format!("catalog queries failed: {e}"))?;
    let mut snapshot = CatalogSnapshot::from_rows(&sets)
        .map_err(|e| format!("catalog results unreadable: {e}"))?;
    if let Some(m) = &target.masking {
        snapshot
            .classify(&|relation, column, comment, ty| m.classify(relation, column, comment, ty));
    }
    Ok(snapshot)
}

async fn load_into(target: &TargetRuntime) {
    let started = Instant::now();
    // Read before the load begins: every change numbered so far was
    // committed before it, so the snapshot shows it.
    let covers = target.guard.schema_changes();
    match load(target).await {
        Ok(snapshot) => {
            debug!(
                target = %target.config.name,
                relations = snapshot.relation_count(),
                functions = snapshot.function_count(),
                ms = started.elapsed().as_millis() as u64,
                "catalog loaded"
            );
            target.guard.set_catalog(snapshot, covers);
            *target
                .catalog
                .loaded_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        Err(e) => warn!(
            target = %target.config.name,
            error = %e,
            "catalog load failed; statements are judged without it (unknown functions count as opaque)"
        ),
    }
}

/// Before serving a session: make sure the target has a snapshot, loading
/// one if none was loaded yet, and start a refresh if it is old.
pub async fn ensure(target: &Arc<TargetRuntime>) {
    if target.guard.catalog().1.is_none() {
        let _first = target.catalog.first.lock().await;
        if target.guard.catalog().1.is_none() {
            load_into(target).await;
            return;
        }
    }
    let old = target
        .catalog
        .loaded_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_none_or(|at| at.elapsed() > MAX_AGE);
    if old {
        refresh(target);
    }
}

impl CatalogLoader {
    /// How many background loads this target has started.
    pub fn background_loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

/// Refreshes the snapshot in the background; requests made while one runs
/// are folded into one more run.
pub fn refresh(target: &Arc<TargetRuntime>) {
    let loader = &target.catalog;
    loader.dirty.store(true, Ordering::SeqCst);
    if loader.in_flight.swap(true, Ordering::SeqCst) {
        return;
    }
    let target = target.clone();
    tokio::spawn(async move {
        loop {
            // Let a burst of schema changes finish first.
            let asked = Instant::now();
            loop {
                target.catalog.dirty.store(false, Ordering::SeqCst);
                tokio::time::sleep(QUIET).await;
                if !target.catalog.dirty.load(Ordering::SeqCst) || asked.elapsed() >= SETTLE {
                    break;
                }
            }
            target.catalog.dirty.store(false, Ordering::SeqCst);
            target.catalog.loads.fetch_add(1, Ordering::Relaxed);
            load_into(&target).await;
            if !target.catalog.dirty.load(Ordering::SeqCst) {
                target.catalog.in_flight.store(false, Ordering::SeqCst);
                // A request that raced with the line above must not be lost.
                if !target.catalog.dirty.load(Ordering::SeqCst)
                    || target.catalog.in_flight.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        }
    });
}
