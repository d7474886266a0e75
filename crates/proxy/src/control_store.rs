//! Opening the control-plane store the configuration names: the SQLite
//! file `[identity] store`, or, when `[identity] postgres` is set, a
//! PostgreSQL database shared by several proxies, reached exactly as the
//! audit trail's shared store is (`PgTarget`: the URL's sslmode, the CA
//! file, the password from the environment or a file). `portcullis keys`
//! and the proxy open it the same way.

use std::sync::Arc;

use portcullis_audit::PgTarget;
use portcullis_config::Config;
use portcullis_identity::keys::{KeyStore, PostgresLocation, StoreError};

/// How the store's connections are named in `pg_stat_activity`: the API
/// keys' and the approvals' (requests and the listening connection).
pub const APPLICATION_NAME: &str = "portcullis-control";
pub const APPROVALS_APPLICATION_NAME: &str = "portcullis-approvals";

/// The store; a PostgreSQL one connects on first use.
pub fn open(config: &Config) -> Result<KeyStore, StoreError> {
    let Some(_) = &config.identity.postgres else {
        return KeyStore::open(&config.resolve(&config.identity.store));
    };
    let (label, connect) =
        postgres(config, APPLICATION_NAME).map_err(|error| StoreError::Postgres {
            store: "[identity] postgres".into(),
            error,
        })?;
    Ok(KeyStore::open_postgres(PostgresLocation { label, connect }))
}

/// How to connect to the PostgreSQL control-plane store, and its name
/// without secrets; `Err` when `[identity] postgres` is not usable.
pub type Connect = Arc<dyn Fn() -> Result<postgres::Client, String> + Send + Sync>;

pub fn postgres(config: &Config, application_name: &str) -> Result<(String, Connect), String> {
    let url = config
        .identity
        .postgres
        .as_ref()
        .ok_or("no [identity] postgres")?;
    let password = config
        .identity_store_password()
        .map_err(|e| e.to_string())?;
    let mut target = PgTarget::parse(url, password.as_deref())
        .map_err(|e| e.to_string())?
        .with_application_name(application_name)
        .with_network_timeout(std::time::Duration::from_secs(10));
    if let Some(ca) = config.identity_store_ca_file() {
        target = target.with_ca_file(ca).map_err(|e| e.to_string())?;
    }
    let label = target.shown().to_owned();
    Ok((
        label,
        Arc::new(move || target.connect().map_err(|e| e.to_string())),
    ))
}
