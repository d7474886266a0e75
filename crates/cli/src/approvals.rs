//! `portcullis approvals`: list, show, approve and deny statements held
//! for approval, through a running proxy's approvals API (on its admin
//! listener). You sign in as you do to the proxy: your user name and
//! password, or an API key or OIDC token as the password
//! (`PORTCULLIS_PASSWORD`, or asked for).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use portcullis_proxy::oidc::fetch;
use serde_json::Value;

const EXIT_REFUSED: u8 = 1;
const EXIT_PROBLEM: u8 = 2;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List the pending requests you made or may decide (--all: decided
    /// ones too).
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        all: bool,
        /// Print the requests as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one request: who, where, the statement, its parameters
    /// (masked), why it is held and its decisions.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request.
    Approve {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Why (kept in the request and the audit trail).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request; a reason is required, and the client is told it.
    Deny {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        reason: String,
    },
}

/// Where the API is and who you are.
#[derive(Args)]
pub struct ApiArgs {
    /// The proxy's admin listener, e.g. http://127.0.0.1:9187 (default:
    /// $PORTCULLIS_URL).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Your user name (default: $PORTCULLIS_USER, then $USER).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// CA certificate(s) for an https URL (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

pub fn run(command: ApprovalsCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_PROBLEM);
        }
    };
    match rt.block_on(dispatch(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_PROBLEM)
        }
    }
}

async fn dispatch(command: ApprovalsCommand) -> Result<ExitCode, String> {
    match command {
        ApprovalsCommand::List { api, all, json } => {
            let path = if all {
                "/approvals?all=1"
            } else {
                "/approvals"
            };
            let v = match call(&api, Method::GET, path, None).await? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let requests = v["requests"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", Value::Array(requests));
            } else if requests.is_empty() {
                println!("no requests");
            } else {
                for r in &requests {
                    println!("{}", summary(r));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, api, json } => {
            let v = match call(
                &api,
                Method::GET,
                &format!("/approvals/{}", encode(&id)),
                None,
            )
            .await?
            {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if json {
                println!("{v}");
            } else {
                print!("{}", details(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, api, reason } => decide(&api, &id, "approve", reason).await,
        ApprovalsCommand::Deny { id, api, reason } => decide(&api, &id, "deny", Some(reason)).await,
    }
}

async fn decide(
    api: &ApiArgs,
    id: &str,
    verdict: &str,
    reason: Option<String>,
) -> Result<ExitCode, String> {
    let body = serde_json::json!({ "reason": reason }).to_string();
    let path = format!("/approvals/{}/{verdict}", encode(id));
    let v = match call(api, Method::POST, &path, Some(body)).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let state = text(&v["state"]);
    let id = text(&v["id"]);
    match state.as_str() {
        "approved" => println!("{id} approved: the statement runs now"),
        "denied" => println!("{id} denied"),
        "pending" => {
            let given = v["decisions"].as_array().map_or(0, |d| {
                d.iter().filter(|d| d["verdict"] == "approve").count()
            });
            println!(
                "{id}: approval recorded ({given} of {} needed)",
                v["required"].as_u64().unwrap_or(1)
            );
        }
        other => println!("{id} is {other}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls the API; `Ok(Err(code))` when it answered with an error (printed).
async fn call(
    api: &ApiArgs,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Result<Value, ExitCode>, String> {
    let user = api
        .user
        .clone()
        .or_else(|| std::env::var("PORTCULLIS_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .ok_or("give your user name with --user or PORTCULLIS_USER")?;
    let base = api
        .url
        .clone()
        .or_else(|| std::env::var("PORTCULLIS_URL").ok())
        .ok_or("give the proxy's admin URL with --url or PORTCULLIS_URL")?;
    let password = match std::env::var("PORTCULLIS_PASSWORD") {
        Ok(p) => p,
        Err(_) => crate::passwd::read_hidden(&format!("Password, API key or token for {user}: "))?,
    };
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let tls = if url.starts_with("https://") {
        Some(
            portcullis_audit::tls::client_config(api.ca_file.as_deref())
                .map_err(|e| format!("TLS roots: {e}"))?,
        )
    } else {
        None
    };
    let (status, body) = fetch::call_json(
        &url,
        tls.as_ref(),
        Duration::from_secs(30),
        method,
        &[("authorization", authorization)],
        body,
    )
    .await
    .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status == StatusCode::OK {
        return Ok(Ok(v));
    }
    let message = v["error"]
        .as_str()
        .map(printable)
        .unwrap_or_else(|| format!("HTTP {status}"));
    eprintln!("error: {message}");
    Ok(Err(ExitCode::from(match status {
        StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::NOT_FOUND
        | StatusCode::CONFLICT
        | StatusCode::BAD_REQUEST => EXIT_REFUSED,
        _ => EXIT_PROBLEM,
    })))
}

/// A request id as a path segment: only its own letters pass.
fn encode(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

fn text(v: &Value) -> String {
    printable(v.as_str().unwrap_or(""))
}

/// Text from the server, safe for a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

fn requester(r: &Value) -> String {
    let who = &r["requester"];
    match who["on_behalf_of"].as_str() {
        Some(p) => format!(
            "{} ({} for {})",
            text(&who["subject"]),
            text(&who["kind"]),
            printable(p)
        ),
        None => text(&who["subject"]),
    }
}

fn summary(r: &Value) -> String {
    let statement = text(&r["statement"]).replace('\n', " ");
    let short: String = statement.chars().take(60).collect();
    format!(
        "{}  {:<9} {:<20} {:<12} {}{}",
        text(&r["id"]),
        text(&r["state"]),
        requester(r),
        text(&r["target"]),
        short,
        if statement.chars().count() > 60 {
            "…"
        } else {
            ""
        }
    )
}

fn details(r: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    line("request", text(&r["id"]));
    line("state", text(&r["state"]));
    line("requested by", requester(r));
    line(
        "target",
        format!("{} ({})", text(&r["target"]), text(&r["environment"])),
    );
    line(
        "needs",
        format!(
            "{} approval(s) from group \"{}\"",
            r["required"].as_u64().unwrap_or(1),
            text(&r["approvers"])
        ),
    );
    line(
        "why",
        format!("{} (policy {})", text(&r["reason"]), text(&r["policy"])),
    );
    if r["in_transaction"] == Value::Bool(true) {
        line(
            "transaction",
            "held inside an open transaction, which keeps its locks".into(),
        );
    }
    for a in r["analysis"].as_array().into_iter().flatten() {
        line("analysis", text(a));
    }
    if let Some(summary) = r["dry_run"]["summary"].as_str() {
        line("dry run", printable(summary));
    }
    line("statement", text(&r["statement"]));
    for (i, p) in r["parameters"].as_array().into_iter().flatten().enumerate() {
        line(&format!("  ${}", i + 1), text(p));
    }
    line("digest", text(&r["digest"]));
    for d in r["decisions"].as_array().into_iter().flatten() {
        let reason = d["reason"].as_str().map(printable).unwrap_or_default();
        line(
            "decision",
            format!(
                "{} by {} {}",
                text(&d["verdict"]),
                text(&d["approver"]["subject"]),
                reason
            ),
        );
    }
    out
}
