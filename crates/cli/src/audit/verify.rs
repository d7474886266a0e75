//! `portcullis audit verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_audit::{verify, PublicKey};

use super::StoreArg;

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArg,
    /// The public key to check checkpoint signatures with (PEM or base64),
    /// obtained from somewhere other than the store. Without it the key the
    /// store names is used, which proves the chain is intact but not who
    /// signed it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyArgs) -> ExitCode {
    match check(&args) {
        Ok(clean) if clean => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &VerifyArgs) -> Result<bool, String> {
    let store = args.store.open()?;
    let stored_key = store.public_key().map_err(|e| e.to_string())?;
    let (key, from_store) = match &args.key {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            (
                Some(PublicKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?),
                false,
            )
        }
        None => (stored_key, true),
    };
    let report = verify(&store, key.as_ref()).map_err(|e| e.to_string())?;
    let clean = report.is_clean();
    if args.json {
        let v = serde_json::json!({
            "log": report.log.as_str(),
            "records": report.records,
            "last_seq": report.last_seq,
            "checkpoints": report.checkpoints,
            "signatures_checked": report.signatures_checked,
            "key_id": key.as_ref().map(PublicKey::key_id),
            "key_from_store": from_store,
            "vouched_through": report.vouched_through,
            "clean": clean,
            "findings": report.findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(clean);
    }
    println!("log {}", report.log.as_str());
    println!(
        "{} records (last seq {}), {} checkpoints",
        report.records, report.last_seq, report.checkpoints
    );
    match &key {
        Some(k) if report.signatures_checked => {
            println!(
                "signatures checked with key {}{}",
                k.key_id(),
                if from_store {
                    " (the key the store names: pass --key with a copy kept elsewhere to prove who signed)"
                } else {
                    ""
                }
            );
        }
        _ => println!("signatures not checked: no public key"),
    }
    println!(
        "signed checkpoints vouch for seqs 1..={}{}",
        report.vouched_through,
        if report.vouched_through < report.last_seq {
            format!(
                "; seqs {}..={} are chained but not yet signed",
                report.vouched_through + 1,
                report.last_seq
            )
        } else {
            String::new()
        }
    );
    if clean {
        println!("clean: every record hashes to its stored hash and chains to the one before it");
    } else {
        println!("{} finding(s):", report.findings.len());
        for f in &report.findings {
            println!("  {f}");
        }
    }
    if let Some(k) = &key {
        println!("\npublic key {}:\n{}", k.key_id(), k.to_pem().trim_end());
    }
    Ok(clean)
}
