//! A configuration made ready for use: certificates loaded, secrets read,
//! verifiers parsed. Built whole before it replaces the one in force, so a
//! reload either applies completely or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_config::{Config, ScramVerifier, SslMode, Target, User};
use portcullis_guard::{Guard, GuardSettings};
use portcullis_policy::{Enforcement, PolicyEngine, TargetRef};
use thiserror::Error;

use crate::catalog::CatalogLoader;

use crate::tls::{ServerTls, TlsError, UpstreamTls};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("TLS certificate for clients: {0}")]
    ServerTls(TlsError),
    #[error("target {target}: TLS: {error}")]
    UpstreamTls { target: String, error: TlsError },
    #[error(transparent)]
    Config(#[from] portcullis_config::ConfigError),
    #[error("user {user}: {error}")]
    Verifier { user: String, error: String },
    #[error("policies: {0}")]
    Policy(#[from] portcullis_policy::LoadError),
}

/// A password that never appears in Debug output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub struct TargetRuntime {
    pub config: Target,
    pub password: Option<Secret>,
    pub tls: Option<UpstreamTls>,
    /// Judges every statement sent to this target.
    pub guard: Guard,
    pub catalog: CatalogLoader,
}

pub struct UserRuntime {
    pub config: User,
    pub verifier: ScramVerifier,
}

pub struct Runtime {
    pub config: Config,
    pub server_tls: Option<ServerTls>,
    pub targets: HashMap<String, Arc<TargetRuntime>>,
    pub users: HashMap<String, Arc<UserRuntime>>,
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, RuntimeError> {
        let server_tls = match &config.tls {
            Some(t) => Some(
                ServerTls::load(&config.resolve(&t.cert), &config.resolve(&t.key))
                    .map_err(RuntimeError::ServerTls)?,
            ),
            None => None,
        };
        let engine = Arc::new(load_policies(&config)?);
        let analyses = portcullis_guard::shared_analysis_cache();
        let mut targets = HashMap::new();
        for t in &config.targets {
            let password = t.read_password(config.base_dir())?.map(Secret);
            let tls = match t.sslmode {
                SslMode::Disable => None,
                SslMode::Require => Some(UpstreamTls::require(&t.host)),
                SslMode::VerifyFull => {
                    let root = t.sslrootcert.as_deref().map(|p| config.resolve(p));
                    match root {
                        Some(root) => Some(UpstreamTls::verify_full(&t.host, &root)),
                        None => Some(Err(TlsError::Read {
                            path: "sslrootcert".into(),
                            error: "verify-full needs sslrootcert".into(),
                        })),
                    }
                }
            }
            .transpose()
            .map_err(|error| RuntimeError::UpstreamTls {
                target: t.name.clone(),
                error,
            })?;
            targets.insert(
                t.name.clone(),
                Arc::new(TargetRuntime {
                    config: t.clone(),
                    password,
                    tls,
                    guard: Guard::new(
                        engine.clone(),
                        analyses.clone(),
                        GuardSettings {
                            target: TargetRef {
                                name: t.name.clone(),
                                environment: t.environment.clone(),
                                database: t.upstream_database().to_owned(),
                            },
                            enforcement: match t.enforcement {
                                portcullis_config::Enforcement::Enforce => Enforcement::Enforce,
                                portcullis_config::Enforcement::Observe => Enforcement::Observe,
                            },
                            row_limit: t.effective_row_limit(),
                        },
                    ),
                    catalog: CatalogLoader::default(),
                }),
            );
        }
        let mut users = HashMap::new();
        for u in &config.users {
            let verifier =
                ScramVerifier::parse(&u.scram).map_err(|error| RuntimeError::Verifier {
                    user: u.name.clone(),
                    error,
                })?;
            users.insert(
                u.name.clone(),
                Arc::new(UserRuntime {
                    config: u.clone(),
                    verifier,
                }),
            );
        }
        Ok(Runtime {
            config,
            server_tls,
            targets,
            users,
        })
    }

    /// The policy engine every target shares.
    pub fn policy_engine(&self) -> Option<&PolicyEngine> {
        self.targets.values().next().map(|t| t.guard.engine())
    }

    /// Target names, sorted, for messages to authenticated users.
    pub fn target_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The configured policy files, or the default bundle when none are named.
pub fn load_policies(config: &Config) -> Result<PolicyEngine, portcullis_policy::LoadError> {
    if config.policy.files.is_empty() {
        return PolicyEngine::default_bundle();
    }
    let paths: Vec<std::path::PathBuf> = config
        .policy
        .files
        .iter()
        .map(|p| config.resolve(p))
        .collect();
    PolicyEngine::from_paths(&paths)
}
