//! The proxy's approval desk: where a held session asks for approval, and
//! where decisions (from the HTTP API) are recorded, wake the held session
//! and are audited. The rules and the store are `portcullis_approvals`';
//! the desk only runs them off the async threads and tells the others.

use std::sync::Arc;

use std::sync::atomic::AtomicBool;
use std::sync::RwLock;

use portcullis_approvals::store::PgLocation;
use portcullis_approvals::{
    DecideError, Hub, NewRequest, Person, Request, RequestId, Rule, State, Store, StoreError,
    Verdict, Watch, Window,
};
use portcullis_audit::record::{ApprovalEvent, ApprovalRecord, Identity, IdentityKind};
use portcullis_audit::Record;
use portcullis_config::Config;
use tracing::{info, warn};

use crate::approval_notify::Notifier;
use crate::audit::AuditTrail;

pub struct Desk {
    store: Arc<Store>,
    hub: Arc<Hub>,
    audit: Option<Arc<AuditTrail>>,
    /// The shared store, when requests live in PostgreSQL.
    location: Option<PgLocation>,
    /// What a reload may change.
    settings: RwLock<Arc<Settings>>,
}

/// The `[approvals]` settings in force, with what they name read.
pub struct Settings {
    pub config: portcullis_config::Approvals,
    notifier: Arc<Notifier>,
    /// The Slack app's signing secret, with `[approvals.slack]`.
    slack_secret: Option<String>,
}

impl Settings {
    fn of(config: &Config) -> Result<Settings, DeskError> {
        Ok(Settings {
            config: config.approvals.clone(),
            notifier: Arc::new(Notifier::from_config(config).map_err(DeskError::Notify)?),
            slack_secret: config
                .approvals_slack_secret()
                .map_err(|e| DeskError::Notify(e.to_string()))?,
        })
    }

    /// The Slack app's signing secret, when presses are accepted.
    pub fn slack_secret(&self) -> Option<&str> {
        self.slack_secret.as_deref()
    }
}

/// Why the desk could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("[identity] postgres: {0}")]
    Postgres(String),
    #[error("{0}")]
    Notify(String),
}

impl Desk {
    /// The desk over the control-plane store the configuration names: the
    /// SQLite file, or the PostgreSQL database several proxies share (then
    /// a thread listens for decisions made through the others, see
    /// [`Desk::listen`]).
    pub fn open(config: &Config, audit: Option<Arc<AuditTrail>>) -> Result<Desk, DeskError> {
        let (store, location) = if config.identity.postgres.is_some() {
            let (label, connect) = crate::control_store::postgres(
                config,
                crate::control_store::APPROVALS_APPLICATION_NAME,
            )
            .map_err(DeskError::Postgres)?;
            let location = PgLocation { label, connect };
            (Store::open_postgres(location.clone()), Some(location))
        } else {
            (
                Store::open_sqlite(&config.resolve(&config.identity.store))?,
                None,
            )
        };
        Ok(Desk {
            store: Arc::new(store),
            hub: Arc::new(Hub::default()),
            audit,
            location,
            settings: RwLock::new(Arc::new(Settings::of(config)?)),
        })
    }

    /// A reloaded configuration's `[approvals]`: in force for requests
    /// asked from now on. The store itself cannot change without a
    /// restart (sessions wait on requests in it).
    pub fn reload(&self, old: &Config, new: &Config) -> Result<(), String> {
        if old.identity.postgres != new.identity.postgres
            || old.resolve(&old.identity.store) != new.resolve(&new.identity.store)
        {
            return Err(
                "the control-plane store cannot change on reload; restart Portcullis to change it"
                    .into(),
            );
        }
        let settings = Settings::of(new).map_err(|e| e.to_string())?;
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
        Ok(())
    }

    /// With a shared store: listens for decisions made through any proxy
    /// and wakes this one's sessions, on a thread of its own, until
    /// `stop` is set.
    pub fn listen(self: &Arc<Self>, stop: Arc<AtomicBool>) {
        let Some(location) = self.location.clone() else {
            return;
        };
        let desk = self.clone();
        let spawned = std::thread::Builder::new()
            .name("approvals-listen".into())
            .spawn(move || {
                let catch_up = desk.clone();
                portcullis_approvals::store::listen(
                    &location,
                    &stop,
                    |id, _state| desk.hub.wake(&id),
                    // Notifications sent while no connection listened are
                    // lost: read again every request a session waits on.
                    || {
                        for id in catch_up.hub.waiting() {
                            catch_up.hub.wake(&id);
                        }
                    },
                    |why| warn!(error = %why, "approvals: cannot listen for decisions on the shared store; retrying"),
                );
            });
        if let Err(e) = spawned {
            warn!(error = %e, "approvals: cannot start the listening thread");
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How `group`'s approvals work.
    pub fn rule(&self, group: &str) -> Rule {
        let g = self.settings().config.group(group);
        let window = g.has_window().then(|| {
            let (from_minute, to_minute) = g.minutes().unwrap_or((0, 1440));
            Window {
                days: g.day_bits().unwrap_or(0x7f),
                from_minute,
                to_minute,
            }
        });
        Rule {
            required: g.required.max(1),
            window,
        }
    }

    /// Where approvers decide `id`, for the notice.
    pub fn where_to_decide(&self, id: &RequestId) -> String {
        match &self.settings().config.console_url {
            Some(url) => format!(
                "approve in the console at {}/{id} or with `portcullis approvals approve {id}`",
                url.trim_end_matches('/')
            ),
            None => format!("approve with `portcullis approvals approve {id}`"),
        }
    }

    /// Stores a request and starts watching it (first, so that no decision
    /// is missed).
    pub async fn ask(&self, asked: NewRequest) -> Result<(Request, Watch), StoreError> {
        let id = RequestId::new();
        let watch = self.hub.watch(id.clone());
        let store = self.store.clone();
        let now = portcullis_approvals::now_millis();
        let request = blocking(move || store.create(id, asked, now)).await??;
        info!(
            request = %request.id,
            user = %request.asked.requester.subject,
            target = %request.asked.target,
            approvers = %request.asked.approvers,
            "statement held for approval"
        );
        self.record(
            &request,
            ApprovalEvent::Requested,
            Some(&request.asked.requester),
            None,
        );
        self.settings()
            .notifier
            .announce("requested", &request, self.where_to_decide(&request.id));
        Ok((request, watch))
    }

    /// Records `approver`'s decision; wakes the held session once the
    /// request is decided.
    pub async fn decide(
        &self,
        id: &RequestId,
        approver: &Person,
        verdict: Verdict,
        reason: Option<String>,
    ) -> Result<Request, DecideError> {
        let store = self.store.clone();
        let (id2, who) = (id.clone(), approver.clone());
        let now = portcullis_approvals::now_millis();
        let request = blocking(move || store.decide(&id2, &who, verdict, reason, now))
            .await
            .map_err(DecideError::Store)??;
        let event = match verdict {
            Verdict::Approve => ApprovalEvent::Approved,
            Verdict::Deny => ApprovalEvent::Rejected,
        };
        let comment = request.decisions.last().and_then(|d| d.reason.clone());
        self.record(&request, event, Some(approver), comment);
        info!(request = %request.id, approver = %approver.subject, state = %request.state, "approval decision recorded");
        if request.state.is_final() {
            self.hub.wake(&request.id);
            self.settings().notifier.announce(
                request.state.as_str(),
                &request,
                self.where_to_decide(&request.id),
            );
        }
        Ok(request)
    }

    /// The approval of this very statement (`digest`) asked for earlier by a
    /// session that did not wait, if it may run now: used, so it runs once.
    /// It must have been asked by exactly this identity (`requester`,
    /// including whom it acts for), for the same group, with the same
    /// analysis (what it touches, as resolved now).
    pub async fn take_rerun(
        &self,
        digest: &portcullis_approvals::Digest,
        requester: &Person,
        approvers: &str,
        analysis: Vec<String>,
    ) -> Option<Request> {
        let store = self.store.clone();
        let digest = digest.clone();
        let (requester, approvers) = (requester.clone(), approvers.to_owned());
        let same = move |r: &Request| {
            let asked = &r.asked;
            let who = &asked.requester;
            who.kind == requester.kind
                && who
                    .subject
                    .trim()
                    .eq_ignore_ascii_case(requester.subject.trim())
                && who.on_behalf_of.as_deref().map(str::to_lowercase)
                    == requester.on_behalf_of.as_deref().map(str::to_lowercase)
                && asked.approvers == approvers
                && asked.analysis == analysis
        };
        let window =
            i64::try_from(self.settings().config.rerun_window.0.as_millis()).unwrap_or(i64::MAX);
        let now = portcullis_approvals::now_millis();
        match blocking(move || store.take_rerun(&digest, &same, now, window)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "approvals: could not look for an approval to re-run");
                None
            }
        }
    }

    /// Ends a request its session stops waiting for (`Expired` or
    /// `Withdrawn`); returns it as it stands (a decision that landed first
    /// is kept).
    pub async fn close(&self, id: &RequestId, state: State) -> Result<Request, DecideError> {
        let store = self.store.clone();
        let id2 = id.clone();
        let now = portcullis_approvals::now_millis();
        let request = blocking(move || store.close(&id2, state, now))
            .await
            .map_err(DecideError::Store)??;
        if request.state == state {
            let event = match state {
                State::Expired => ApprovalEvent::Expired,
                _ => ApprovalEvent::Cancelled,
            };
            self.record(&request, event, None, None);
            self.settings().notifier.announce(
                request.state.as_str(),
                &request,
                self.where_to_decide(&request.id),
            );
        }
        Ok(request)
    }

    /// Whether decisions made by other processes wake this one's sessions
    /// (a shared PostgreSQL store announces them); otherwise a holding
    /// session also looks at its request now and then (several proxies
    /// may share one SQLite file).
    pub fn announces_changes(&self) -> bool {
        self.store.is_shared()
    }

    /// The approved statement did not run: the client cancelled it as it
    /// was approved.
    pub fn not_run(&self, request: &Request) {
        self.record(
            request,
            ApprovalEvent::Cancelled,
            None,
            Some("approved, then cancelled by the client before it ran".into()),
        );
    }

    /// The approved statement went to the database.
    pub fn executed(&self, request: &Request) {
        self.record(request, ApprovalEvent::Executed, None, None);
    }

    pub async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        let store = self.store.clone();
        let id = id.clone();
        blocking(move || store.get(&id)).await?
    }

    /// The requests `to` may see (see `Store::list`).
    pub async fn list(
        &self,
        to: &Person,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<Request>, StoreError> {
        let store = self.store.clone();
        let to = to.clone();
        let now = portcullis_approvals::now_millis();
        blocking(move || store.list(&to, pending_only, now, limit)).await?
    }

    fn record(
        &self,
        request: &Request,
        event: ApprovalEvent,
        actor: Option<&Person>,
        comment: Option<String>,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        audit.submit_quietly(&Record::Approval(ApprovalRecord {
            request_id: request.id.to_string(),
            event,
            actor: actor.map(audit_identity),
            requester: Some(audit_identity(&request.asked.requester)),
            target: request.asked.target.clone(),
            statement_seq: None,
            fingerprint: Some(request.asked.digest.0.clone()),
            comment,
        }));
    }
}

fn audit_identity(p: &Person) -> Identity {
    Identity {
        kind: match p.kind.as_str() {
            "agent" => IdentityKind::Agent,
            "service" => IdentityKind::Service,
            _ => IdentityKind::Human,
        },
        subject: p.subject.clone(),
        groups: p.groups.clone(),
        on_behalf_of: p.on_behalf_of.clone(),
    }
}

/// The person an identity is, for the approval rules.
pub fn person(id: &portcullis_identity::Identity) -> Person {
    Person {
        subject: id.subject.clone(),
        kind: id.kind.to_string(),
        groups: id.groups.clone(),
        on_behalf_of: id.on_behalf_of.clone(),
    }
}

/// Runs a store call on the blocking pool (SQLite waits on file locks).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        warn!(error = %e, "approval store call failed");
        StoreError::Sqlite {
            path: "(approvals)".into(),
            error: "the store call did not finish".into(),
        }
    })
}
