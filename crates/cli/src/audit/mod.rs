//! `portcullis audit`: verify, search, follow and export the audit trail.
//!
//! - `verify`: check the hash chain and the signed checkpoints of a store
//!   or of an exported evidence bundle;
//! - `search`: records matching filters, as a table or JSON lines;
//! - `who-read`: who read a column (or a table), with counts and when last;
//! - `tail`: the latest records, and with `--follow` new ones as they come;
//! - `export`: an evidence bundle an auditor verifies offline, or OCSF
//!   events for a SIEM;
//! - `forward`: follow the store and POST new records in batches to a
//!   SIEM's HTTP collector, resuming from a cursor file;
//! - `rotate`: move records older than a retention bound into an archived,
//!   verified segment (the one command that writes the store).
//!
//! Every command reads the store the configuration names (`--config`) or
//! a store file given directly (`--store`), read-only (`rotate` aside):
//! the proxy may be writing it meanwhile. The logic lives in the audit crate; these modules
//! parse arguments and print.
//!
//! Exit codes: 0 success (for `verify`: nothing wrong), 1 `verify` found
//! something wrong, 2 a usage or I/O problem (the message is on standard
//! error).

mod export;
mod filter;
mod forward;
mod render;
mod rotate;
mod search;
mod tail;
mod time;
pub(crate) use time::format_micros;
mod verify;
mod who_read;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_audit::{PgTarget, PostgresStore, SqliteStore, Store};
use portcullis_config::Config;

/// A usage or I/O problem.
const EXIT_PROBLEM: u8 = 2;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed checkpoints of the audit store,
    /// or of an exported evidence bundle, and say what is wrong by seq.
    ///
    /// Exit status: 0 when nothing is wrong, 1 when something is, 2 when
    /// the store or bundle cannot be read.
    Verify(verify::VerifyArgs),
    /// Find records: by user, target, session, time, table and column,
    /// decision, fingerprint, SQLSTATE, text or kind. Newest first.
    Search(search::SearchArgs),
    /// Who read a column (schema.table.column) or a table (schema.table):
    /// each user with how many statements read it, how many were refused,
    /// and when last.
    WhoRead(who_read::WhoReadArgs),
    /// Print the latest records; with --follow, keep printing new ones.
    Tail(tail::TailArgs),
    /// Write an evidence bundle of a time range (a directory an auditor
    /// verifies offline), or the statements as OCSF events.
    Export(export::ExportArgs),
    /// Move the records older than a retention bound (--before 90d) into
    /// an archived evidence bundle, verified before they are deleted; the
    /// store then starts at the signed checkpoint where it was cut.
    Rotate(rotate::RotateArgs),
    /// Follow the store and POST new records in batches (NDJSON, OCSF or
    /// native) to a SIEM's HTTP collector, with retries and a cursor file
    /// to resume from. Delivery is at least once.
    ///
    /// Exit status: 0 when stopped or, with --once, all delivered; 1 when
    /// the collector refused a batch or retries ran out; 2 on a usage or
    /// I/O problem.
    Forward(forward::ForwardArgs),
}

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => verify::run(&args),
        AuditCommand::Search(args) => search::run(&args),
        AuditCommand::WhoRead(args) => who_read::run(&args),
        AuditCommand::Tail(args) => tail::run(&args),
        AuditCommand::Export(args) => export::run(&args),
        AuditCommand::Rotate(args) => rotate::run(&args),
        AuditCommand::Forward(args) => forward::run(&args),
    }
}

/// Where the store is: the configuration's `[audit] path` or `[audit]
/// postgres`, a SQLite file, or a PostgreSQL URL.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Read the audit store this configuration file names ([audit] path,
    /// or [audit] postgres with its password).
    #[arg(short, long = "config", value_name = "FILE", conflicts_with = "store")]
    config: Option<PathBuf>,
    /// Read this audit store directly: a SQLite file, or a shared
    /// PostgreSQL store as postgres://user@host:port/database?sslmode=disable
    /// (the password from PGPASSWORD).
    #[arg(long, value_name = "FILE|URL")]
    store: Option<String>,
}

/// Where a store is, resolved (once per command: sizes do not matter).
#[allow(clippy::large_enum_variant)]
enum Location {
    File(PathBuf),
    Postgres(PgTarget),
}

impl StoreArgs {
    fn given(&self) -> bool {
        self.config.is_some() || self.store.is_some()
    }

    fn location(&self) -> Result<Location, String> {
        match (&self.store, &self.config) {
            (Some(s), _) if is_postgres_url(s) => {
                // As libpq reads them: the password, and with
                // sslmode=require the CA the server's certificate must
                // chain to.
                let password = std::env::var("PGPASSWORD").ok();
                let target = PgTarget::parse(s, password.as_deref()).map_err(|e| e.to_string())?;
                match std::env::var_os("PGSSLROOTCERT") {
                    Some(ca) if target.uses_tls() => target.with_ca_file(ca),
                    _ => Ok(target),
                }
                .map(Location::Postgres)
                .map_err(|e| e.to_string())
            }
            (Some(s), _) => Ok(Location::File(PathBuf::from(s))),
            (None, Some(c)) => {
                let config = Config::load(c).map_err(|e| e.to_string())?;
                if let Some(url) = &config.audit.postgres {
                    let password = config.audit_store_password().map_err(|e| e.to_string())?;
                    let target =
                        PgTarget::parse(url, password.as_deref()).map_err(|e| e.to_string())?;
                    return match config.audit_store_ca_file() {
                        Some(ca) => target.with_ca_file(ca),
                        None => Ok(target),
                    }
                    .map(Location::Postgres)
                    .map_err(|e| e.to_string());
                }
                if !config.audit.enabled {
                    eprintln!(
                        "note: {} turns the audit trail off ([audit] enabled = false); reading {} anyway",
                        c.display(),
                        config.audit_store_path().display()
                    );
                }
                Ok(Location::File(config.audit_store_path()))
            }
            (None, None) => {
                Err("say which store to read: --config FILE or --store FILE|URL".into())
            }
        }
    }

    /// The SQLite store's path, for the commands only it supports.
    fn path(&self, command: &str) -> Result<PathBuf, String> {
        match self.location()? {
            Location::File(p) => Ok(p),
            Location::Postgres(t) => Err(format!(
                "{command} is not built for the PostgreSQL store ({}) yet; it works on a SQLite store",
                t.shown()
            )),
        }
    }

    /// Opens the store read-only; the text names it for people (never
    /// with a password).
    fn open(&self) -> Result<(String, Store), String> {
        match self.location()? {
            Location::File(path) => {
                let store = open_store(&path)?;
                Ok((path.display().to_string(), Store::Sqlite(store)))
            }
            Location::Postgres(target) => {
                let store = PostgresStore::open_reader(&target)
                    .map_err(|e| format!("{}: {e}", target.shown()))?;
                Ok((target.shown().to_owned(), Store::Postgres(store)))
            }
        }
    }
}

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn open_store(path: &Path) -> Result<SqliteStore, String> {
    if !path.is_file() {
        return Err(format!("no audit store at {}", path.display()));
    }
    SqliteStore::open_read_only(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reports a problem that stops the command.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_PROBLEM)
}

/// Ends a command whose output could not be written: quietly when the
/// reader went away (`| head`), as a problem otherwise.
fn output_failed(e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        fail(format_args!("writing the output: {e}"))
    }
}

/// Standard output, locked, for commands that print many lines.
fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}
