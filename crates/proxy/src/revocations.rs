//! API keys revoked with `--end-sessions`: the proxy looks for them in the
//! control-plane store every `identity.revocation_poll`, and sessions
//! opened with one of them end. The store is the only channel between
//! `portcullis keys revoke` and running proxies, so every proxy reading it
//! hears the same revocations, whichever process wrote them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Config;
use portcullis_identity::keys::{KeyId, KeyStore, StoreError};
use tokio::sync::watch;
use tracing::{info, warn};

/// Opens the store when API keys are on.
pub fn open_store(config: &Config) -> Result<Option<Arc<KeyStore>>, StoreError> {
    if !config.identity.api_keys {
        return Ok(None);
    }
    crate::control_store::open(config).map(|s| Some(Arc::new(s)))
}

/// Publishes into `revoked` every key revoked with `--end-sessions` since
/// `since` (unix seconds), until `stop` completes.
pub async fn watch(
    store: Arc<KeyStore>,
    revoked: watch::Sender<Arc<HashSet<KeyId>>>,
    since: i64,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        let s = store.clone();
        let found = tokio::task::spawn_blocking(move || s.ending_sessions_since(since)).await;
        let keys = match found {
            Ok(Ok(keys)) => keys,
            Ok(Err(e)) => {
                warn!(error = %e, "could not look for revoked API keys");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "could not look for revoked API keys");
                continue;
            }
        };
        let now: HashSet<KeyId> = keys.iter().map(|k| k.id).collect();
        revoked.send_if_modified(|current| {
            if now.is_subset(current) {
                return false;
            }
            for k in keys.iter().filter(|k| !current.contains(&k.id)) {
                info!(key = %k.id, name = %k.name, "API key revoked: ending its sessions");
            }
            let mut all = (**current).clone();
            all.extend(now.iter().copied());
            *current = Arc::new(all);
            true
        });
    }
}
