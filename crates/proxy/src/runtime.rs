//! A configuration made ready for use: certificates loaded, secrets read,
//! verifiers parsed. Built whole before it replaces the one in force, so a
//! reload either applies completely or not at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_analysis::SharedAnalysisCache;
use portcullis_config::{Config, ScramVerifier, SslMode, Target, User};
use portcullis_guard::{Guard, GuardSettings};
use portcullis_policy::{Enforcement, PolicyEngine, TargetRef};
use thiserror::Error;

use crate::catalog::CatalogLoader;
use crate::masking::TargetMasking;
use portcullis_mask::detect::Detectors;

use crate::tls::{ClientCa, ServerTls, TlsError, UpstreamTls};
use portcullis_identity::certs::{CertPolicy, NameField};

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
    #[error("masking key: {0}")]
    MaskingKey(String),
    #[error(transparent)]
    Issuer(#[from] crate::oidc::IssuerError),
    #[error("identity.certificates.name: {0:?} is not cn, email, dns or uri")]
    CertificateName(String),
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
    /// The access profiles, in the file's order, with their passwords.
    pub profiles: Arc<[ProfileRuntime]>,
    pub tls: Option<UpstreamTls>,
    /// Judges every statement sent to this target.
    pub guard: Guard,
    pub catalog: CatalogLoader,
    /// Masking of results; `None` when off.
    pub masking: Option<Arc<TargetMasking>>,
}

/// One access profile, ready to log in with.
pub struct ProfileRuntime {
    pub config: portcullis_config::AccessProfile,
    pub password: Option<Secret>,
}

/// Who a session logs in upstream as: the target's own role, or an access
/// profile's.
#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: Option<&'a Secret>,
    /// The access profile's name; `None` for the target's own role.
    pub profile: Option<&'a str>,
}

impl TargetRuntime {
    /// The role `identity` logs in as: the first access profile that
    /// matches it, or the target's own.
    pub fn login_for(&self, identity: &portcullis_identity::Identity) -> Login<'_> {
        let kind = crate::auth::identity::config_kind(identity.kind);
        match self
            .profiles
            .iter()
            .find(|p| p.config.matches(kind, &identity.subject, &identity.groups))
        {
            Some(p) => Login {
                user: &p.config.user,
                password: p.password.as_ref(),
                profile: Some(&p.config.name),
            },
            None => self.own_login(),
        }
    }

    /// The login [`TargetRuntime::login_for`] chose, by its profile's name
    /// (`None`: the target's own role); `None` if there is no such profile.
    pub fn login_of(&self, profile: Option<&str>) -> Option<Login<'_>> {
        match profile {
            None => Some(self.own_login()),
            Some(name) => self
                .profiles
                .iter()
                .find(|p| p.config.name == name)
                .map(|p| Login {
                    user: &p.config.user,
                    password: p.password.as_ref(),
                    profile: Some(&p.config.name),
                }),
        }
    }

    /// The target's own role (what the catalog is read as).
    pub fn own_login(&self) -> Login<'_> {
        Login {
            user: &self.config.user,
            password: self.password.as_ref(),
            profile: None,
        }
    }

    fn new(
        config: Target,
        password: Option<Secret>,
        profiles: Arc<[ProfileRuntime]>,
        tls: Option<UpstreamTls>,
        engine: &Arc<PolicyEngine>,
        analyses: &Arc<SharedAnalysisCache>,
        masking: Option<Arc<TargetMasking>>,
    ) -> TargetRuntime {
        let guard = Guard::new(
            engine.clone(),
            analyses.clone(),
            GuardSettings {
                target: TargetRef {
                    name: config.name.clone(),
                    environment: config.environment.clone(),
                    database: config.upstream_database().to_owned(),
                },
                enforcement: match config.enforcement {
                    portcullis_config::Enforcement::Enforce => Enforcement::Enforce,
                    portcullis_config::Enforcement::Observe => Enforcement::Observe,
                },
                row_limit: config.effective_row_limit(),
                masking: masking.as_ref().map(|m| m.rules).unwrap_or_default(),
            },
        );
        TargetRuntime {
            config,
            password,
            profiles,
            tls,
            guard,
            catalog: CatalogLoader::default(),
            masking,
        }
    }
}

pub struct UserRuntime {
    pub config: User,
    pub verifier: ScramVerifier,
}

pub struct Runtime {
    pub config: Config,
    pub server_tls: Option<ServerTls>,
    /// The targets with a name of their own.
    pub targets: HashMap<String, Arc<TargetRuntime>>,
    /// The `"*"` target, if configured: it serves every other name.
    wildcard: Option<Wildcard>,
    pub users: HashMap<String, Arc<UserRuntime>>,
    /// Trusted OIDC issuers (`[[identity.oidc]]`); their keys are cached
    /// in `Shared`.
    pub issuers: Vec<crate::oidc::Issuer>,
    /// How client certificates name principals (`[identity.certificates]`);
    /// the server TLS setup verifies their chains.
    pub cert_policy: Option<CertPolicy>,
    engine: Arc<PolicyEngine>,
    shared: SharedMasking,
}

/// What every target's masking shares: the detectors (compiled once) and
/// the key of the `keyed` strategy.
struct SharedMasking {
    detectors: Detectors,
    key: Option<Vec<u8>>,
}

impl SharedMasking {
    fn load(config: &Config) -> Result<SharedMasking, RuntimeError> {
        let m = &config.masking;
        let bad = |why: String| RuntimeError::MaskingKey(why);
        let key = match (&m.key_env, &m.key_file) {
            (Some(var), _) => Some(
                std::env::var(var)
                    .map_err(|_| bad(format!("environment variable {var} is not set")))?
                    .into_bytes(),
            ),
            (None, Some(path)) => Some(
                std::fs::read(config.resolve(path))
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?,
            ),
            (None, None) => None,
        };
        if let Some(k) = &key {
            if k.len() < 32 {
                return Err(bad(format!(
                    "the masking key has {} bytes; it needs at least 32",
                    k.len()
                )));
            }
        }
        Ok(SharedMasking {
            detectors: Detectors::new(),
            key,
        })
    }

    /// `wildcard`: the name of the `"*"` target `target` is served by.
    fn masking_for(
        &self,
        config: &Config,
        target: &Target,
        wildcard: Option<&str>,
    ) -> Option<Arc<TargetMasking>> {
        TargetMasking::build(
            config,
            target,
            wildcard,
            &self.detectors,
            self.key.as_deref(),
        )
        .map(Arc::new)
    }
}

/// How many databases one wildcard target keeps (each has its own catalog
/// snapshot); past it one no session uses is dropped to make room, and a
/// new name is refused only while all of them are in use.
const MAX_WILDCARD_DATABASES: usize = 1_000;

/// The `"*"` target and the databases it has served so far.
struct Wildcard {
    config: Target,
    password: Option<Secret>,
    profiles: Arc<[ProfileRuntime]>,
    tls: Option<UpstreamTls>,
    analyses: Arc<SharedAnalysisCache>,
    served: Mutex<HashMap<String, Arc<TargetRuntime>>>,
}

/// `[identity.certificates]` as the identity crate reads it.
fn cert_policy(c: &portcullis_config::ClientCertificates) -> Result<CertPolicy, RuntimeError> {
    Ok(CertPolicy {
        name_field: NameField::parse(&c.name)
            .ok_or_else(|| RuntimeError::CertificateName(c.name.clone()))?,
        uri_prefix: c.uri_prefix.clone(),
        agents: c.agents.clone(),
        services: c.services.clone(),
        groups_from_ou: c.groups_from_ou,
    })
}

impl Runtime {
    pub fn build(config: Config) -> Result<Runtime, RuntimeError> {
        let certificates = config.identity.certificates.as_ref();
        let ca_file = certificates.map(|c| config.resolve(&c.ca_file));
        let server_tls = match &config.tls {
            Some(t) => Some(
                ServerTls::load(
                    &config.resolve(&t.cert),
                    &config.resolve(&t.key),
                    ca_file.as_deref().map(|ca_file| ClientCa {
                        ca_file,
                        crl_files: certificates
                            .map(|c| c.crl_files.iter().map(|f| config.resolve(f)).collect())
                            .unwrap_or_default(),
                    }),
                )
                .map_err(RuntimeError::ServerTls)?,
            ),
            None => None,
        };
        let cert_policy = certificates.map(cert_policy).transpose()?;
        let engine = Arc::new(load_policies(&config)?);
        let shared = SharedMasking::load(&config)?;
        let analyses = portcullis_guard::shared_analysis_cache();
        let mut targets = HashMap::new();
        let mut wildcard = None;
        for t in &config.targets {
            let password = t.read_password(config.base_dir())?.map(Secret);
            let profiles = t
                .profiles
                .iter()
                .map(|p| {
                    Ok(ProfileRuntime {
                        config: p.clone(),
                        password: p.read_password(&t.name, config.base_dir())?.map(Secret),
                    })
                })
                .collect::<Result<Vec<_>, portcullis_config::ConfigError>>()?
                .into();
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
            if t.is_wildcard() {
                wildcard = Some(Wildcard {
                    config: t.clone(),
                    password,
                    profiles,
                    tls,
                    analyses: analyses.clone(),
                    served: Mutex::new(HashMap::new()),
                });
                continue;
            }
            targets.insert(
                t.name.clone(),
                Arc::new(TargetRuntime::new(
                    t.clone(),
                    password,
                    profiles,
                    tls,
                    &engine,
                    &analyses,
                    shared.masking_for(&config, t, None),
                )),
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
        let issuers = config
            .identity
            .oidc
            .iter()
            .map(|o| {
                crate::oidc::Issuer::new(
                    o,
                    o.ca_file.as_ref().map(|f| config.resolve(f)).as_deref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Runtime {
            config,
            server_tls,
            targets,
            wildcard,
            users,
            issuers,
            cert_policy,
            engine,
            shared,
        })
    }

    /// The policy engine every target shares.
    pub fn policy_engine(&self) -> Option<&PolicyEngine> {
        Some(&self.engine)
    }

    /// The target serving database `name`: the one of that name, or else
    /// the `"*"` target's for that database (made on first use).
    pub fn target(&self, name: &str) -> Option<Arc<TargetRuntime>> {
        if let Some(t) = self.targets.get(name) {
            return Some(t.clone());
        }
        let w = self.wildcard.as_ref()?;
        let mut served = w.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = served.get(name) {
            return Some(t.clone());
        }
        if name.is_empty() {
            return None;
        }
        if served.len() >= MAX_WILDCARD_DATABASES {
            // Make room from a database no session uses now (a name asked
            // for once, or that does not exist): its catalog snapshot goes.
            let idle = served
                .iter()
                .find(|(_, t)| Arc::strong_count(t) == 1)
                .map(|(k, _)| k.clone())?;
            served.remove(&idle);
        }
        let target = w.config.for_database(name);
        // Column rules name the database (as `portcullis discover` writes
        // them) or the wildcard target itself.
        let masking = self
            .shared
            .masking_for(&self.config, &target, Some(&w.config.name));
        let t = Arc::new(TargetRuntime::new(
            target,
            w.password.clone(),
            w.profiles.clone(),
            w.tls.clone(),
            &self.engine,
            &w.analyses,
            masking,
        ));
        served.insert(name.to_owned(), t.clone());
        Some(t)
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
