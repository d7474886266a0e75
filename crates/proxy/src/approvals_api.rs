//! The approvals HTTP API, served on the admin listener.
//!
//! | route                              | what                                         |
//! |------------------------------------|----------------------------------------------|
//! | `GET /approvals`                   | pending requests the caller may see (`?all=1`: decided ones too) |
//! | `GET /approvals/{id}`              | one request                                  |
//! | `POST /approvals/{id}/approve`     | approve; body `{"reason": "..."}` (optional) |
//! | `POST /approvals/{id}/deny`        | deny; body `{"reason": "..."}` (required)    |
//! | `POST /approvals/slack`            | a Slack button press (`[approvals.slack]`)   |
//!
//! A Slack press is authenticated by its request signature (see
//! `portcullis_approvals::slack`), and decides as the configured user the
//! Slack user id is mapped to.
//!
//! Every call is authenticated with the identities clients log in with:
//! HTTP Basic with a configured user's password, or with any user name
//! and an API key or OIDC token as the password (checked exactly as at a
//! login). A caller sees the requests it made and those its groups may
//! decide; who may decide is `portcullis_approvals::rules`'. Bind the admin
//! listener to a loopback or private address, or put TLS in front of it:
//! credentials cross it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use portcullis_approvals::{DecideError, Person, Request, RequestId, RuleError, Verdict};
use tracing::{info, warn};

use crate::approval_desk::{person, Desk};
use crate::context::Shared;
use crate::handshake::{identify, CredentialFailure};

/// What the API needs.
#[derive(Clone)]
pub struct Api {
    pub desk: Arc<Desk>,
    pub shared: Arc<Shared>,
    /// Credential checks running at once (see `caller`).
    pub checks: Arc<tokio::sync::Semaphore>,
}

impl Api {
    pub fn new(desk: Arc<Desk>, shared: Arc<Shared>) -> Api {
        Api {
            desk,
            shared,
            checks: Arc::new(tokio::sync::Semaphore::new(MAX_CHECKS)),
        }
    }
}

/// Credential checks the API runs at once.
const MAX_CHECKS: usize = 4;

/// Refuses a decision a browser could have been made to send for another
/// site (cross-site request forgery): decisions come as JSON, which a
/// page of another site cannot send without a CORS preflight this API
/// never answers, and with no `Origin` or cross-site `Sec-Fetch-Site`.
fn cross_site(headers: &HeaderMap) -> Option<Response> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let json = value("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a decision is sent as application/json",
        ));
    }
    let site = value("sec-fetch-site");
    if value("origin").is_some() || site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Some(error(
            StatusCode::FORBIDDEN,
            "decisions are not taken from web pages; use the CLI or the console",
        ));
    }
    None
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/approvals/slack", post(slack_press))
        .with_state(api)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(status, serde_json::json!({ "error": message.to_string() }))
}

/// The caller, from its Basic credentials.
async fn caller(api: &Api, headers: &HeaderMap) -> Result<Person, Response> {
    // No WWW-Authenticate challenge: a browser would then keep the
    // credentials and send them with pages of other sites too.
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "authentication required: a user name and its password, API key or token",
        )
    };
    // Checking a configured user's password costs a PBKDF2 run: at most a
    // few at once, so that a flood of guesses cannot take every core.
    let permit =
        tokio::time::timeout(std::time::Duration::from_secs(2), api.checks.acquire()).await;
    let Ok(Ok(_permit)) = permit else {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins at once; try again in a moment",
        ));
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized())?;
    let text = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let (user, password) = text.split_once(':').ok_or_else(unauthorized)?;
    let runtime = api.shared.runtime();
    match identify(user, password.as_bytes(), &api.shared, &runtime).await {
        Ok(identity) => Ok(person(&identity)),
        Err(CredentialFailure::Refused(why)) => {
            warn!(user = %printable(user), reason = %why, "approvals API: authentication failed");
            Err(unauthorized())
        }
        Err(CredentialFailure::Unavailable(why)) => {
            warn!(reason = %why, "approvals API: credentials could not be checked");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "credentials could not be checked; try again later",
            ))
        }
    }
}

fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Whether `who` may see `r`: it made it, or its groups may decide it.
fn may_see(who: &Person, r: &Request) -> bool {
    let asked = &r.asked;
    who.groups.contains(&asked.approvers)
        || asked.requester.people().any(|p| {
            who.people()
                .any(|q| q.trim().eq_ignore_ascii_case(p.trim()))
        })
}

/// A request as the API shows it to `who`: its stored form, with its
/// state at the time of asking (a pending request past its expiry is
/// expired). The dry run only to the group that decides: to its
/// requester, counting rows its statement chooses would be an oracle on
/// data the proxy's read policies may hide (a count of rows by a masked
/// column's value).
fn shown(who: &Person, r: &Request) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["state"] = serde_json::json!(r.state_at(portcullis_approvals::now_millis()));
    if !who.groups.contains(&r.asked.approvers) {
        if let Some(o) = v.as_object_mut() {
            o.remove("dry_run");
        }
    }
    v
}

async fn list(State(api): State<Api>, headers: HeaderMap, uri: Uri) -> Response {
    let who = match caller(&api, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let all = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "all=1" || kv == "all=true"));
    match api.desk.list(&who, !all, 500).await {
        Ok(requests) => json(
            StatusCode::OK,
            serde_json::json!({
                "requests": requests
                    .iter()
                    .filter(|r| may_see(&who, r))
                    .map(|r| shown(&who, r))
                    .collect::<Vec<_>>()
            }),
        ),
        Err(e) => {
            warn!(error = %e, "approvals API: the store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the approval store is unavailable",
            )
        }
    }
}

async fn show(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match caller(&api, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(id) = RequestId::parse(&id) else {
        return error(StatusCode::NOT_FOUND, "no such request");
    };
    match api.desk.get(&id).await {
        Ok(Some(r)) if may_see(&who, &r) => json(StatusCode::OK, shown(&who, &r)),
        // Not shown to others: as if it were not there.
        Ok(_) => error(StatusCode::NOT_FOUND, "no such request"),
        Err(e) => {
            warn!(error = %e, "approvals API: the store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the approval store is unavailable",
            )
        }
    }
}

async fn approve(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(api, headers, id, body, Verdict::Approve).await
}

async fn deny(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(api, headers, id, body, Verdict::Deny).await
}

/// The reason in a decision's body: `{"reason": "..."}`, or empty.
fn reason_of(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| *k != "reason") {
        return Err(format!(
            "unknown field {k:?}; a decision takes only \"reason\""
        ));
    }
    match obj.get("reason") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(r)) if r.len() > 2000 => {
            Err("the reason is longer than 2000 bytes".into())
        }
        Some(serde_json::Value::String(r)) => Ok(Some(r.clone())),
        Some(_) => Err("\"reason\" must be a string".into()),
    }
}

async fn decide(
    api: Api,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    verdict: Verdict,
) -> Response {
    if let Some(refused) = cross_site(&headers) {
        return refused;
    }
    let who = match caller(&api, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(id) = RequestId::parse(&id) else {
        return error(StatusCode::NOT_FOUND, "no such request");
    };
    let reason = match reason_of(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Someone who may not see the request learns nothing of it.
    match api.desk.get(&id).await {
        Ok(Some(r)) if may_see(&who, &r) => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such request"),
        Err(e) => {
            warn!(error = %e, "approvals API: the store failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the approval store is unavailable",
            );
        }
    }
    match api.desk.decide(&id, &who, verdict, reason).await {
        Ok(r) => json(StatusCode::OK, shown(&who, &r)),
        Err(DecideError::NotFound(_)) => error(StatusCode::NOT_FOUND, "no such request"),
        Err(DecideError::Rule(e)) => {
            info!(request = %id, user = %who.subject, reason = %e, "approvals API: decision refused");
            let status = match e {
                RuleError::Closed(..) | RuleError::Expired(_) | RuleError::AlreadyDecided => {
                    StatusCode::CONFLICT
                }
                RuleError::ReasonRequired => StatusCode::BAD_REQUEST,
                RuleError::NotInGroup(_)
                | RuleError::NotAPerson
                | RuleError::OwnRequest
                | RuleError::OutsideWindow(_) => StatusCode::FORBIDDEN,
            };
            error(status, e)
        }
        Err(DecideError::Store(e)) => {
            warn!(error = %e, "approvals API: the store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the approval store is unavailable",
            )
        }
    }
}

/// A button press from the Slack app.
async fn slack_press(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    use portcullis_approvals::slack;
    let settings = api.desk.settings();
    let Some(secret) = settings.slack_secret() else {
        return error(StatusCode::NOT_FOUND, "no Slack app is configured");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = portcullis_approvals::now_millis() / 1000;
    if let Err(e) = slack::verify(
        secret.as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now,
    ) {
        warn!(reason = %e, "approvals API: a Slack press was refused");
        return error(StatusCode::UNAUTHORIZED, e);
    }
    let press = match slack::parse_press(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Who pressed: the configured person the Slack user id stands for.
    let runtime = api.shared.runtime();
    let user = settings
        .config
        .slack
        .as_ref()
        .and_then(|s| s.users.get(&press.slack_user))
        .and_then(|name| runtime.users.get(name));
    let Some(user) = user else {
        warn!(slack_user = %printable(&press.slack_user), "approvals API: a Slack press from a user not mapped to anyone");
        return slack_reply(
            &press,
            "You are not mapped to a Portcullis user: ask an administrator.".into(),
        )
        .await;
    };
    let who = person(&crate::auth::identity::of_scram_user(&user.config, false));
    match api.desk.get(&press.request).await {
        Ok(Some(r)) if may_see(&who, &r) => {}
        Ok(_) => return slack_reply(&press, "No such request.".into()).await,
        Err(e) => {
            warn!(error = %e, "approvals API: the store failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the approval store is unavailable",
            );
        }
    }
    let text = match api
        .desk
        .decide(&press.request, &who, press.verdict, press.reason.clone())
        .await
    {
        Ok(r) => format!(
            "{} is {} (by {}).",
            r.id,
            r.state_at(portcullis_approvals::now_millis()),
            who.subject
        ),
        Err(DecideError::Rule(e)) => format!("Not recorded: {e}."),
        Err(DecideError::NotFound(_)) => "No such request.".into(),
        Err(DecideError::Store(e)) => {
            warn!(error = %e, "approvals API: the store failed");
            "The approval store is unavailable; try again.".into()
        }
    };
    slack_reply(&press, text).await
}

/// Answers a press: Slack shows the text in the channel, through the
/// press's response URL (only ever Slack's own), posted after the answer
/// (Slack wants one within three seconds).
async fn slack_reply(press: &portcullis_approvals::slack::Press, text: String) -> Response {
    if let Some(url) = press
        .response_url
        .clone()
        .filter(|u| u.starts_with("https://hooks.slack.com/"))
    {
        let body = serde_json::json!({ "replace_original": false, "text": text }).to_string();
        tokio::spawn(async move {
            let Ok(tls) = portcullis_audit::tls::client_config(None) else {
                return;
            };
            let posted = crate::oidc::fetch::call_json(
                &url,
                Some(&tls),
                std::time::Duration::from_secs(10),
                http::Method::POST,
                &[],
                Some(body),
            )
            .await;
            if posted.is_err() {
                warn!("approvals API: the answer to a Slack press could not be posted");
            }
        });
    }
    json(StatusCode::OK, serde_json::json!({ "text": text }))
}
