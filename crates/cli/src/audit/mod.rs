//! `portcullis audit`: verify, search and follow the audit trail. Every
//! command reads the store read-only, so it can run beside a proxy that is
//! writing it.

mod render;
mod search;
mod time;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_audit::SqliteStore;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash, the chain and the checkpoints' signatures;
    /// name each edited, deleted, reordered or inserted record and any
    /// truncation. Exit status 0: clean; 1: findings; 2: could not check.
    Verify(verify::VerifyArgs),
    /// Find records (newest first), as a table or JSON lines.
    Search(search::SearchArgs),
    /// Who read a column (schema.table.column): each subject with how many
    /// statements and when last.
    WhoRead(search::WhoReadArgs),
    /// Print the newest records; with --follow, new ones as they are written.
    Tail(search::TailArgs),
}

pub fn run(command: AuditCommand) -> ExitCode {
    let result = match command {
        AuditCommand::Verify(args) => return verify::run(args),
        AuditCommand::Search(args) => search::search(args),
        AuditCommand::WhoRead(args) => search::who_read(args),
        AuditCommand::Tail(args) => search::tail(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Which store: the one a configuration names, or a file.
#[derive(clap::Args, Clone)]
pub struct StoreArg {
    /// The Portcullis configuration whose [audit] store to read.
    #[arg(short, long = "config", value_name = "FILE", conflicts_with = "store")]
    config: Option<PathBuf>,
    /// The audit store (SQLite file) to read.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    store: Option<PathBuf>,
}

impl StoreArg {
    pub fn path(&self) -> Result<PathBuf, String> {
        match (&self.config, &self.store) {
            (_, Some(s)) => Ok(s.clone()),
            (Some(c), None) => {
                let config = portcullis_config::Config::load(c).map_err(|e| e.to_string())?;
                Ok(config.audit_store_path())
            }
            (None, None) => Err("give --config FILE or --store FILE".into()),
        }
    }

    pub fn open(&self) -> Result<SqliteStore, String> {
        let path = self.path()?;
        if !path.exists() {
            return Err(format!("no audit store at {}", path.display()));
        }
        SqliteStore::open_read_only(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}
