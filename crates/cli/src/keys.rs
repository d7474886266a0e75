//! `portcullis keys`: make, list and revoke the API keys agents and jobs
//! log in with. Keys live in the control-plane store the configuration
//! names (`[identity] store`), or in a store file given with `--store`;
//! the proxy reads the same file at every key login, so a new key works
//! and a revoked one stops working for the next connection, without a
//! reload.
//!
//! `create` prints the key alone on standard output (so that
//! `KEY=$(portcullis keys create ...)` works) and what it made on standard
//! error. The key is not stored and cannot be shown again.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use portcullis_config::{Config, Duration};
use portcullis_identity::keys::{unix_now, KeyId, KeyRecord, KeyStore, NewKey};
use portcullis_identity::Kind;

use crate::audit::format_micros;

const EXIT_PROBLEM: u8 = 2;
/// PostgreSQL's NAMEDATALEN - 1: a longer user name is cut by clients.
const MAX_NAME_BYTES: usize = 63;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key for an agent or a service and print it (once).
    Create(CreateArgs),
    /// List keys: id, name, kind, groups, state, when made and when they
    /// expire. Never their secrets, which are not stored.
    List(ListArgs),
    /// Revoke a key: the next login with it fails. With --end-sessions,
    /// running proxies also end the sessions it opened (within
    /// `[identity] revocation_poll`).
    Revoke(RevokeArgs),
}

/// Where the store is.
#[derive(Args)]
pub struct StoreArgs {
    /// The configuration whose `[identity] store` to use.
    #[arg(short, long = "config", value_name = "FILE", conflicts_with = "store")]
    config: Option<PathBuf>,
    /// The control-plane store file itself.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    store: Option<PathBuf>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The agent the key is for: its user name when it logs in.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "service",
        required_unless_present = "service"
    )]
    agent: Option<String>,
    /// A job or pipeline the key is for (principal kind service).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// A group policies match on; repeat for several.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The person the holder acts for: policies and the audit trail see
    /// both.
    #[arg(long, value_name = "PERSON")]
    on_behalf_of: Option<String>,
    /// Expire after this long (`30d`, `12h`); left out, the key lasts until
    /// revoked.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct ListArgs {
    /// One JSON object per key instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The key's id (the 16 hex digits after `pck_`, as `list` shows).
    id: String,
    /// Also end the sessions the key opened.
    #[arg(long)]
    end_sessions: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Create(a) => create(a),
        KeysCommand::List(a) => list(a),
        KeysCommand::Revoke(a) => revoke(a),
    }
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_PROBLEM)
    })
}

/// The store, and the configuration when one was given.
fn open(args: &StoreArgs) -> Result<(KeyStore, Option<Config>), String> {
    match (&args.config, &args.store) {
        (Some(file), _) => {
            let config = Config::load(file).map_err(|e| e.to_string())?;
            let store =
                portcullis_proxy::control_store::open(&config).map_err(|e| e.to_string())?;
            Ok((store, Some(config)))
        }
        (None, Some(path)) => Ok((KeyStore::open(path).map_err(|e| e.to_string())?, None)),
        (None, None) => Err("give --config FILE or --store FILE".into()),
    }
}

fn create(args: CreateArgs) -> Result<ExitCode, String> {
    let (name, kind) = match (args.agent, args.service) {
        (Some(n), None) => (n, Kind::Agent),
        (None, Some(n)) => (n, Kind::Service),
        _ => return Err("give exactly one of --agent NAME or --service NAME".into()),
    };
    check_name("the name", &name)?;
    for g in &args.groups {
        check_name("a group", g)?;
    }
    if let Some(p) = &args.on_behalf_of {
        check_name("--on-behalf-of", p)?;
    }
    let now = unix_now();
    let expires_at = match &args.expires {
        Some(text) => {
            let d = Duration::parse(text)?;
            if d.is_zero() {
                return Err("--expires must be longer than zero".into());
            }
            Some(now.saturating_add(i64::try_from(d.0.as_secs()).unwrap_or(i64::MAX)))
        }
        None => None,
    };
    let (store, config) = open(&args.store)?;
    if let Some(config) = &config {
        if !config.identity.api_keys {
            eprintln!("warning: [identity] api_keys is off in this configuration: the proxy will not accept this key until it is on");
        }
        if config.user(&name).is_some() {
            return Err(format!(
                "\"{name}\" is a configured SCRAM user; a key for it could never be used (that name always logs in with SCRAM). Choose another name."
            ));
        }
    }
    let (record, text) = store
        .create(
            NewKey {
                name,
                kind,
                groups: args.groups,
                on_behalf_of: args.on_behalf_of,
                expires_at,
            },
            now,
        )
        .map_err(|e| e.to_string())?;
    eprintln!(
        "Created API key {} for {} \"{}\"{}{}{}.",
        record.id,
        record.kind,
        record.name,
        if record.groups.is_empty() {
            String::new()
        } else {
            format!(", groups {}", record.groups.join(", "))
        },
        record
            .on_behalf_of
            .as_deref()
            .map(|p| format!(", acting for {p}"))
            .unwrap_or_default(),
        record
            .expires_at
            .map(|e| format!(", expires {}", when(e)))
            .unwrap_or_else(|| ", no expiry".into()),
    );
    eprintln!("Log in as user \"{}\" with the key as the password, over TLS. It is not stored and cannot be shown again:", record.name);
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} is {} bytes long; PostgreSQL names are at most {MAX_NAME_BYTES} bytes",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} contains a control character"));
    }
    Ok(())
}

fn when(unix: i64) -> String {
    let t = format_micros(unix.saturating_mul(1_000_000));
    // Whole seconds: drop ".000".
    t.replace(".000Z", "Z")
}

fn list(args: ListArgs) -> Result<ExitCode, String> {
    let (store, _) = open(&args.store)?;
    let keys = store.list().map_err(|e| e.to_string())?;
    let now = unix_now();
    if args.json {
        for k in &keys {
            println!("{}", json(k, now));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<24}  {:<7}  {:<8}  {:<20}  {:<20}  GROUPS",
        "ID", "NAME", "KIND", "STATE", "CREATED", "EXPIRES"
    );
    for k in &keys {
        println!(
            "{:<16}  {:<24}  {:<7}  {:<8}  {:<20}  {:<20}  {}",
            k.id,
            k.name,
            k.kind,
            k.state(now),
            when(k.created_at),
            k.expires_at.map(when).unwrap_or_else(|| "never".into()),
            k.groups.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn json(k: &KeyRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": k.id.to_string(),
        "name": k.name,
        "kind": k.kind.as_str(),
        "groups": k.groups,
        "on_behalf_of": k.on_behalf_of,
        "state": k.state(now),
        "created_at": when(k.created_at),
        "expires_at": k.expires_at.map(when),
        "revoked_at": k.revoked_at.map(when),
        "end_sessions": k.end_sessions,
    })
}

fn revoke(args: RevokeArgs) -> Result<ExitCode, String> {
    // Given the whole key by mistake, the id is its first part; what was
    // given is never echoed (it may hold the secret).
    let given = match args.id.strip_prefix("pck_") {
        // A whole key: its id is what comes before the second `_`.
        Some(rest) => rest.get(..16).unwrap_or(rest),
        None => args.id.as_str(),
    };
    let id = KeyId::parse(given)
        .ok_or("that is not a key id (16 hex digits, as `portcullis keys list` shows)")?;
    let (store, _) = open(&args.store)?;
    match store
        .revoke(id, unix_now(), args.end_sessions)
        .map_err(|e| e.to_string())?
    {
        Some(k) => {
            eprintln!(
                "Revoked API key {} of {} \"{}\" at {}{}.",
                k.id,
                k.kind,
                k.name,
                k.revoked_at.map(when).unwrap_or_default(),
                if k.end_sessions {
                    "; proxies end its sessions"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Err(format!("no key has id {id}")),
    }
}
