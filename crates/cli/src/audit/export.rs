//! `portcullis audit export`: an evidence bundle of a time range (the
//! default), or the statements as OCSF events (`--format ocsf`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_audit::bundle::{self, ExportRange};
use portcullis_audit::export::ocsf;

use super::time::{format_micros, now_micros, parse_instant};
use super::{fail, output_failed, StoreArgs};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A directory an auditor verifies offline: records, checkpoints,
    /// manifest, public key and VERIFY.md.
    Bundle,
    /// OCSF Datastore Activity (6005) events, one JSON object per line.
    Ocsf,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Records at or after this time: RFC 3339, a date, or an age (30d).
    /// Default: the log's start.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Records before this time (same forms). Default: now.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Where to write: a directory that does not exist or is empty (bundle),
    /// or a file, `-` for standard output (ocsf, the default).
    #[arg(short, long, value_name = "PATH")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Bundle)]
    format: Format,
    /// Bundle: the public key file to include (PEM, base64 or hex) instead
    /// of the copy kept in the store.
    #[arg(long, value_name = "PUBKEY_FILE")]
    key: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> ExitCode {
    let now = now_micros();
    let at = |t: &Option<String>| t.as_deref().map(|t| parse_instant(t, now)).transpose();
    let range = match (at(&args.from), at(&args.to)) {
        (Ok(from), Ok(to)) => ExportRange {
            from,
            to,
            through_seq: None,
        },
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if let (Some(f), Some(t)) = (range.from, range.to) {
        if f >= t {
            return fail("--from must be before --to");
        }
    }
    let store = match args
        .store
        .path("export")
        .and_then(|p| super::open_store(&p))
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match args.format {
        Format::Bundle => export_bundle(args, &store, range),
        Format::Ocsf => export_ocsf(args, &store, range),
    }
}

fn export_bundle(
    args: &ExportArgs,
    store: &portcullis_audit::SqliteStore,
    range: ExportRange,
) -> ExitCode {
    let Some(dir) = args.out.as_deref().filter(|p| p.as_os_str() != "-") else {
        return fail("a bundle is a directory: give --out DIR");
    };
    let key = match args.key.as_deref() {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| portcullis_audit::PublicKey::parse(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(k),
            Err(e) => return fail(format_args!("{}: {e}", p.display())),
        },
        None => None,
    };
    let m = match bundle::export(store, range, key.as_ref(), dir) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    println!(
        "exported seqs {}..={} ({} record(s), {} checkpoint(s)) of log {} to {}",
        m.first_seq,
        m.last_seq,
        m.records,
        m.checkpoints,
        m.log,
        dir.display()
    );
    println!(
        "records from {} to {}; the range asked for is widened to whole checkpoint intervals",
        format_micros(m.first_ts),
        format_micros(m.last_ts)
    );
    match m.last_checkpoint {
        Some(s) if s >= m.last_seq => println!("every record is covered by a signed checkpoint"),
        Some(s) => eprintln!(
            "warning: seqs {}..={} come after the log's last checkpoint: they are chained, not signed; \
             export again after the next checkpoint to have them signed",
            s + 1,
            m.last_seq
        ),
        None => eprintln!(
            "warning: no checkpoint covers these records yet: they are chained, not signed; \
             export again after the next checkpoint"
        ),
    }
    match &m.key_id {
        Some(id) => println!("public key {id} written to {}", bundle::PUBLIC_KEY_FILE),
        None => eprintln!("warning: the store holds no public key; none was written"),
    }
    println!(
        "check it with: portcullis audit verify --bundle {} --key <your copy of the public key>",
        dir.display()
    );
    ExitCode::SUCCESS
}

fn export_ocsf(
    args: &ExportArgs,
    store: &portcullis_audit::SqliteStore,
    range: ExportRange,
) -> ExitCode {
    if args.key.is_some() {
        return fail("--key is for bundles; OCSF events are not signed");
    }
    let to_stdout = args.out.as_deref().is_none_or(|p| p.as_os_str() == "-");
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let path = args.out.as_deref().unwrap_or_else(|| "-".as_ref());
        match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return fail(format_args!("{}: {e}", path.display())),
        }
    };
    let n = match ocsf::export(store, range.from, range.to, &mut out) {
        Ok(n) => n,
        Err(portcullis_audit::AuditError::Io { source, .. }) => return output_failed(&source),
        Err(e) => return fail(e),
    };
    if let Err(e) = out.flush() {
        return output_failed(&e);
    }
    if !to_stdout {
        eprintln!(
            "wrote {n} OCSF event(s) to {}",
            args.out.as_deref().unwrap_or("-".as_ref()).display()
        );
    }
    ExitCode::SUCCESS
}
