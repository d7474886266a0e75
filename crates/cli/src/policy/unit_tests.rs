//! `portcullis policy test`: policy unit test files (the format is in the
//! policy crate's README), with cases written as SQL analysed as the proxy
//! analyses them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_policy::{run_policy_tests_with, CaseOutcome};

use super::analyzer::{search_path, SqlAnalyzer};
use super::{fail, source, DEFAULT_SEARCH_PATH, EXIT_PROBLEM, EXIT_TEST_FAILED};

pub fn run(config: Option<&Path>, policies: &[PathBuf], files: &[PathBuf]) -> ExitCode {
    let (_, loaded) = match source::load(config, policies) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let analyzer = SqlAnalyzer::new(search_path(DEFAULT_SEARCH_PATH).expect("the default parses"));
    println!("policies: {}", loaded.origin);
    println!("sql cases: search_path {DEFAULT_SEARCH_PATH}, no catalog (names are resolved by the search path only)");

    let (mut passed, mut failed, mut unusable) = (0, 0, 0);
    for file in files {
        let shown = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {shown}: {e}");
                unusable += 1;
                continue;
            }
        };
        let report = match run_policy_tests_with(&loaded.engine, &text, Some(&analyzer)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {shown}: {e}");
                unusable += 1;
                continue;
            }
        };
        println!("{shown}");
        for case in &report.cases {
            match &case.outcome {
                CaseOutcome::Passed { decision } => {
                    println!("  PASS  {} ({decision})", case.name)
                }
                CaseOutcome::Failed { expected, decision } => {
                    println!("  FAIL  {}: expected {expected}, got {decision}", case.name)
                }
                CaseOutcome::Error { message } => println!("  ERROR {}: {message}", case.name),
            }
        }
        println!(
            "  {}: {} passed, {} failed",
            shown,
            report.passed(),
            report.failed()
        );
        passed += report.passed();
        failed += report.failed();
    }

    if unusable > 0 {
        println!(
            "{passed} passed, {failed} failed; {unusable} file{} could not be run",
            if unusable == 1 { "" } else { "s" }
        );
        return ExitCode::from(EXIT_PROBLEM);
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::from(EXIT_TEST_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
