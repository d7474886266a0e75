//! `portcullis audit rotate`: move the records older than a retention
//! bound out of the store into an archived evidence bundle, verified
//! before anything is deleted (see the audit crate's `retention`).

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_audit::retention;

use super::time::{format_micros, now_micros, parse_instant};
use super::verify::read_key;
use super::{fail, StoreArgs};

#[derive(clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Move out the records older than this: an age (90d) or a time
    /// (RFC 3339 or a date). The cut falls on the last signed checkpoint
    /// before it, so a few newer records may stay.
    #[arg(long, value_name = "TIME")]
    before: String,
    /// The directory that receives the archived segment (one bundle per
    /// rotation, named after the log and its seqs).
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// The checkpoint public key to verify the segment with (PEM, base64
    /// or hex). Default: the copy kept in the store.
    #[arg(long, value_name = "PUBKEY_FILE")]
    key: Option<PathBuf>,
}

pub fn run(args: &RotateArgs) -> ExitCode {
    let now = now_micros();
    let before = match parse_instant(&args.before, now) {
        Ok(t) => t,
        Err(e) => return fail(format_args!("--before: {e}")),
    };
    let key = match args.key.as_deref().map(read_key).transpose() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let path = match args.store.path("rotate") {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if !path.is_file() {
        return fail(format_args!("no audit store at {}", path.display()));
    }
    match retention::rotate(&path, before, &args.archive, key.as_ref()) {
        Ok(None) => {
            println!(
                "nothing to rotate: no signed checkpoint before {} past the store's start",
                format_micros(before)
            );
            ExitCode::SUCCESS
        }
        Ok(Some(r)) => {
            let m = &r.manifest;
            println!(
                "moved records {}..={} ({} records, {} to {}) to {}",
                m.first_seq,
                m.last_seq,
                m.records,
                format_micros(m.first_ts),
                format_micros(m.last_ts),
                r.dir.display()
            );
            println!(
                "the store now starts after seq {}; check the segment with: portcullis audit verify --bundle {}",
                r.anchor,
                r.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("{}: {e}", path.display())),
    }
}
