//! `portcullis policy init DIR`: the default bundle as files to edit, plus
//! the schema for reference and editor tooling.
//!
//! A copied bundle behaves exactly like the built-in one: its files load in
//! name order, the order the built-in bundle uses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_policy::{default_bundle, SCHEMA_TEXT};

use super::fail;

/// The schema's file name. Not `.cedar`, so loading the folder skips it:
/// Portcullis validates against the schema built into it.
const SCHEMA_FILE: &str = "portcullis.cedarschema";

pub fn run(dir: &Path, force: bool) -> ExitCode {
    let mut files: Vec<(PathBuf, String)> = default_bundle()
        .into_iter()
        .map(|source| {
            let name = source
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&source.name)
                .to_owned();
            (dir.join(name), source.text)
        })
        .collect();
    files.push((dir.join(SCHEMA_FILE), SCHEMA_TEXT.to_owned()));

    // Refuse before writing anything, so a refusal leaves the folder as it
    // was.
    if !force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(path, _)| path.symlink_metadata().is_ok())
            .map(|(path, _)| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return fail(format_args!(
                "{} already exist{}; pass --force to overwrite",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            ));
        }
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(format_args!("cannot create {}: {e}", dir.display()));
    }
    for (path, text) in &files {
        if let Err(e) = std::fs::write(path, text) {
            return fail(format_args!("cannot write {}: {e}", path.display()));
        }
        println!("wrote {}", path.display());
    }

    // A TOML basic string: JSON's escapes are a subset of TOML's.
    let quoted = serde_json::to_string(&dir.display().to_string()).expect("a string serialises");
    println!();
    println!("Use them from the configuration (a relative path is resolved against the configuration file's folder):");
    println!();
    println!("[policy]");
    println!("files = [{quoted}]");
    println!();
    println!(
        "Check your edits with `portcullis policy check {}`.",
        dir.display()
    );
    ExitCode::SUCCESS
}
