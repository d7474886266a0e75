//! `portcullis policy check`: load policies exactly as the proxy would and
//! say what was loaded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_policy::{PolicyEffect, PolicyInfo};

use super::{fail, source};

pub fn run(config: Option<&Path>, paths: &[PathBuf]) -> ExitCode {
    let (_, loaded) = match source::load(config, paths) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let policies = loaded.engine.policies();
    println!(
        "{}: ok, {} polic{} valid against the Portcullis schema",
        loaded.origin,
        policies.len(),
        if policies.len() == 1 { "y" } else { "ies" }
    );
    let width = policies.iter().map(|p| p.id.len()).max().unwrap_or(0);
    for p in policies {
        let approvers = p
            .approvers
            .as_ref()
            .map(|g| format!("  (approvers: {g})"))
            .unwrap_or_default();
        println!(
            "  {:<8} {:<width$}  {}:{}{approvers}",
            effect(p),
            p.id,
            p.file,
            p.line
        );
    }
    let warnings = loaded.engine.warnings();
    for w in warnings {
        println!("warning: {w}");
    }
    if warnings.is_empty() {
        println!("no warnings");
    }
    ExitCode::SUCCESS
}

/// `permit`, `forbid`, or `approval` for a forbid that holds statements for
/// approval.
fn effect(p: &PolicyInfo) -> &'static str {
    match (p.effect, &p.approvers) {
        (PolicyEffect::Permit, _) => "permit",
        (PolicyEffect::Forbid, None) => "forbid",
        (PolicyEffect::Forbid, Some(_)) => "approval",
    }
}
