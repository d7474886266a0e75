//! `portcullis audit verify`: check a store's or a bundle's hash chain and
//! signed checkpoints, and say plainly what was checked, with which key,
//! and what each finding means.
//!
//! A shared PostgreSQL store holds one log per node: each is verified on
//! its own (its chain, its checkpoints, with `--key` or the key its node
//! keeps in the store) and reported in turn, all read in one snapshot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_audit::bundle::{self, Bundle};
use portcullis_audit::verify::Finding;
use portcullis_audit::{PublicKey, Report, SigningKey};
use serde_json::json;

use super::time::format_micros;
use portcullis_audit::{PostgresStore, Store};

use super::{fail, StoreArgs};

/// Exit code when verification found something wrong.
const EXIT_FINDINGS: u8 = 1;

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The public key to check signatures with (PEM, base64 or hex): an
    /// auditor's own copy, obtained apart from the store. Without it the
    /// key kept in the store (or the bundle) is used, which proves less.
    #[arg(long, value_name = "PUBKEY_FILE")]
    key: Option<PathBuf>,
    /// Verify an exported evidence bundle (a directory) instead of a store.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "store"])]
    bundle: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where the key that checked the signatures came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyOrigin {
    File,
    Store,
    Bundle,
}

impl KeyOrigin {
    fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::File => "file",
            KeyOrigin::Store => "store",
            KeyOrigin::Bundle => "bundle",
        }
    }
}

/// Reads a public key file; a private key file (PKCS#8 or seed) is
/// accepted too, for the operator's convenience, and its public half used.
pub(super) fn read_key(path: &Path) -> Result<PublicKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if let Ok(k) = PublicKey::parse(text) {
            return Ok(k);
        }
    }
    SigningKey::from_key_bytes(&bytes)
        .map(|k| k.public_key())
        .map_err(|_| {
            format!(
                "{}: not an Ed25519 public key (PEM, base64 or hex)",
                path.display()
            )
        })
}

struct Checked {
    source: String,
    report: Report,
    key: Option<(PublicKey, KeyOrigin)>,
    bundle: Option<Bundle>,
}

pub fn run(args: &VerifyArgs) -> ExitCode {
    if args.bundle.is_none() && !args.store.given() {
        return fail("say what to verify: --store FILE, --config FILE or --bundle DIR");
    }
    let given = match args.key.as_deref().map(read_key).transpose() {
        Ok(k) => k.map(|k| (k, KeyOrigin::File)),
        Err(e) => return fail(e),
    };
    let checked = match &args.bundle {
        Some(dir) => verify_bundle(dir, given).map(|c| vec![c]),
        None => verify_store(&args.store, given),
    };
    let checked = match checked {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    for (i, c) in checked.iter().enumerate() {
        if args.json {
            println!("{}", to_json(c));
        } else {
            if i > 0 {
                println!();
            }
            print_report(c);
        }
    }
    if checked.is_empty() && !args.json {
        println!("the store holds no logs yet: nothing to verify");
    }
    if checked.iter().all(|c| c.report.is_clean()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    }
}

/// Every node's log in a shared store, in one snapshot.
fn verify_shared(
    shown: &str,
    store: &PostgresStore,
    given: Option<(PublicKey, KeyOrigin)>,
) -> Result<Vec<Checked>, String> {
    store
        .in_snapshot(|s| {
            let mut out = Vec::new();
            for l in s.logs()? {
                let key = given.or(l.public_key.map(|k| (k, KeyOrigin::Store)));
                let report =
                    portcullis_audit::verify(&s.log_source(&l.log), key.as_ref().map(|k| &k.0))?;
                out.push(Checked {
                    source: format!("store {shown}, node {}", l.node),
                    report,
                    key,
                    bundle: None,
                });
            }
            Ok(out)
        })
        .map_err(|e| format!("{shown}: {e}"))
}

fn verify_store(
    store: &StoreArgs,
    given: Option<(PublicKey, KeyOrigin)>,
) -> Result<Vec<Checked>, String> {
    let (shown, store) = store.open()?;
    let store = match store {
        Store::Sqlite(s) => s,
        Store::Postgres(p) => return verify_shared(&shown, &p, given),
    };
    let key = match given {
        Some(k) => Some(k),
        None => store
            .public_key()
            .map_err(|e| e.to_string())?
            .map(|k| (k, KeyOrigin::Store)),
    };
    let report =
        portcullis_audit::verify(&store, key.as_ref().map(|k| &k.0)).map_err(|e| e.to_string())?;
    Ok(vec![Checked {
        source: format!("store {shown}"),
        report,
        key,
        bundle: None,
    }])
}

fn verify_bundle(dir: &Path, given: Option<(PublicKey, KeyOrigin)>) -> Result<Checked, String> {
    let b = bundle::read(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = given.or(b.public_key.map(|k| (k, KeyOrigin::Bundle)));
    let report = bundle::verify(&b, key.as_ref().map(|k| &k.0)).map_err(|e| e.to_string())?;
    Ok(Checked {
        source: format!("bundle {}", dir.display()),
        report,
        key,
        bundle: Some(b),
    })
}

/// Whether a finding is about the records (the chain) rather than about
/// the checkpoints' signatures.
fn breaks_chain(f: &Finding) -> bool {
    !matches!(
        f,
        Finding::BadSignature { .. }
            | Finding::UnknownKey { .. }
            | Finding::CheckpointForeignLog { .. }
            | Finding::MalformedCheckpoint { .. }
    )
}

/// What a finding means, in a sentence.
fn meaning(f: &Finding) -> &'static str {
    match f {
        Finding::Malformed { .. } => "the stored bytes are not a record: damaged or replaced",
        Finding::ForeignLog { .. } => "a record of another log was put in this one",
        Finding::Edited { .. } => {
            "the record, or the hash stored beside it, was changed after it was written"
        }
        Finding::Rewritten { .. } => {
            "the record was changed and its hash recomputed; the next record still names the original"
        }
        Finding::BadGenesis => "the log's first record was replaced",
        Finding::BadAnchor { .. } => {
            "the records do not continue from the record the bundle names as their predecessor: \
             the first record or the anchor was changed"
        }
        Finding::BeforeAnchor { .. } => "a record from before the exported range was put in it",
        Finding::Missing { .. } => "records were deleted",
        Finding::Inserted { .. } => "records were added that the chain does not include",
        Finding::Misplaced { .. } => "records were moved out of order",
        Finding::Truncated { .. } => "records at the end were deleted",
        Finding::CheckpointMismatch { .. } => {
            "records were changed and the chain recomputed; the signed checkpoint still names the original"
        }
        Finding::HeadMismatch { .. } => {
            "the end of the log is not the one the writer (or the exporter) last recorded"
        }
        Finding::BadSignature { .. } => {
            "the checkpoint's signature does not verify: it was forged or altered"
        }
        Finding::UnknownKey { .. } => {
            "the checkpoint was signed by another key than the one given"
        }
        Finding::CheckpointForeignLog { .. } => "the checkpoint belongs to another log",
        Finding::MalformedCheckpoint { .. } => "a line of checkpoints.jsonl is not a checkpoint",
    }
}

fn print_report(c: &Checked) {
    let r = &c.report;
    println!("verifying {}", c.source);
    println!("log          {}", r.log);
    let range = if r.records == 0 {
        "no records".to_owned()
    } else {
        format!("seqs {}..={}", r.anchor + 1, r.last_seq)
    };
    println!("records      {} checked ({range})", r.records);
    if let Some(b) = &c.bundle {
        let m = &b.manifest;
        println!(
            "bundle       seqs {}..={} exported {}, from {} to {}; anchored at seq {}",
            m.first_seq,
            m.last_seq,
            format_micros(m.exported_at),
            format_micros(m.first_ts),
            format_micros(m.last_ts),
            m.anchor.seq
        );
    }
    let chain_broken = r.findings.iter().filter(|f| breaks_chain(f)).count();
    if chain_broken == 0 {
        println!("chain        ok");
    } else {
        println!("chain        BROKEN ({chain_broken} finding(s) below)");
    }
    let sig_problems = r.findings.len() - chain_broken;
    let vouched = if r.vouched_through == 0 {
        "no record is vouched for by a valid checkpoint".to_owned()
    } else if chain_broken > 0 {
        format!(
            "the last that matches is at seq {}, but the findings below show records that \
             are not what was written",
            r.vouched_through
        )
    } else if r.vouched_through >= r.last_seq {
        format!("vouched through seq {} (every record)", r.vouched_through)
    } else {
        format!(
            "vouched through seq {}; seqs {}..={} are chained but not yet signed",
            r.vouched_through,
            r.vouched_through + 1,
            r.last_seq
        )
    };
    if !r.signatures_checked {
        println!(
            "checkpoints  {}, signatures NOT checked: no public key given or stored",
            r.checkpoints
        );
    } else if sig_problems == 0 {
        println!("checkpoints  {}, all valid; {vouched}", r.checkpoints);
    } else {
        println!(
            "checkpoints  {}, {sig_problems} INVALID (below); {vouched}",
            r.checkpoints
        );
    }
    match &c.key {
        Some((k, origin)) => {
            let note = match origin {
                KeyOrigin::File => "given with --key",
                KeyOrigin::Store => {
                    "the copy kept in the store: whoever can change the store can change it; \
                     an auditor should pass --key with a copy of the public key obtained elsewhere"
                }
                KeyOrigin::Bundle => {
                    "the copy in the bundle: whoever made the bundle chose it; an auditor should \
                     pass --key with a copy of the public key obtained elsewhere"
                }
            };
            println!("key id       {} ({note})", k.key_id());
            print!("{}", k.to_pem());
        }
        None => println!("key          none"),
    }
    if r.findings.is_empty() {
        println!("findings     none");
    } else {
        println!("findings     {}:", r.findings.len());
        if c.bundle.is_some() {
            println!(
                "  (in a bundle, position P is line P - {} of records.jsonl)",
                r.anchor
            );
        }
        for f in &r.findings {
            println!("  {f}");
            println!("      {}", meaning(f));
        }
    }
    if r.is_clean() {
        println!("result       clean");
    } else {
        println!("result       {} finding(s)", r.findings.len());
    }
}

fn to_json(c: &Checked) -> serde_json::Value {
    let r = &c.report;
    let findings: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or_default();
            v["message"] = json!(f.to_string());
            v["meaning"] = json!(meaning(f));
            v
        })
        .collect();
    let mut v = json!({
        "source": c.source,
        "log": r.log,
        "anchor": r.anchor,
        "records": r.records,
        "last_seq": r.last_seq,
        "checkpoints": r.checkpoints,
        "signatures_checked": r.signatures_checked,
        "vouched_through": r.vouched_through,
        "clean": r.is_clean(),
        "findings": findings,
    });
    if let Some((k, origin)) = &c.key {
        v["key"] = json!({ "id": k.key_id(), "pem": k.to_pem(), "from": origin.as_str() });
    }
    if let Some(b) = &c.bundle {
        v["bundle"] = serde_json::to_value(&b.manifest).unwrap_or_default();
    }
    v
}
