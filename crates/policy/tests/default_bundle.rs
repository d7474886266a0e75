//! The default bundle against its shipped policy unit tests, and the
//! shipped policy files against the compiled-in bundle.

use portcullis_policy::{run_policy_tests, CaseOutcome, PolicyEffect, PolicyEngine};

const TESTS: &str = include_str!("default_bundle.toml");

#[test]
fn default_bundle_passes_its_policy_tests() {
    let engine = PolicyEngine::default_bundle().unwrap();
    let report = run_policy_tests(&engine, TESTS).unwrap();
    println!("{report}");
    assert!(report.all_passed(), "{report}");
    assert!(report.cases.len() >= 40);
}

#[test]
fn policy_tests_cover_every_default_forbid() {
    let engine = PolicyEngine::default_bundle().unwrap();
    let report = run_policy_tests(&engine, TESTS).unwrap();
    let decided: Vec<&str> = report
        .cases
        .iter()
        .filter_map(|c| match &c.outcome {
            CaseOutcome::Passed { decision } => decision.policy(),
            _ => None,
        })
        .collect();
    for policy in engine.policies() {
        if policy.effect == PolicyEffect::Forbid {
            assert!(
                decided.contains(&policy.id.as_str()),
                "no case exercises {}",
                policy.id
            );
        }
    }
}

#[test]
fn shipped_policy_directory_loads_as_the_same_bundle() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let from_files = PolicyEngine::from_paths(&[dir]).unwrap();
    let built_in = PolicyEngine::default_bundle().unwrap();
    let ids = |e: &PolicyEngine| {
        e.policies()
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&from_files), ids(&built_in));
    let report = run_policy_tests(&from_files, TESTS).unwrap();
    assert!(report.all_passed(), "{report}");
}
