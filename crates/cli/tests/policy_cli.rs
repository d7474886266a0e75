//! `portcullis policy check | explain | test | init`, run as the built
//! binary: arguments in, exit status and output out.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_config::ScramVerifier;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A path as an argument (temporary folders have UTF-8 names).
fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn portcullis(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .expect("the portcullis binary runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// A file of the repository, from this crate's folder.
fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A configuration with a production target, an observed staging target
/// and two identities; `policy` is the `[policy]` table's body.
fn write_config(dir: &Path, policy: &str) -> PathBuf {
    let verifier = ScramVerifier::generate(b"a password").to_string();
    let text = format!(
        r#"
[[listener]]
name = "main"
listen = "127.0.0.1:0"
allow_plaintext = true

[[target]]
name = "shop"
environment = "production"
host = "127.0.0.1"
user = "app"
row_limit = 500

[[target]]
name = "shop_staging"
environment = "staging"
host = "127.0.0.1"
user = "app"
enforcement = "observe"

[[user]]
name = "alice"
scram = "{verifier}"
groups = ["developers"]

[[user]]
name = "helper"
scram = "{verifier}"
kind = "agent"
groups = ["dba"]

[policy]
{policy}
"#
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

// ---- check ---------------------------------------------------------------

#[test]
fn check_accepts_the_default_bundle() {
    let r = portcullis(&["policy", "check"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("the built-in default bundle: ok, 10 policies"),
        "{r:?}"
    );
    for id in [
        "allow-statements",
        "deny-drop-in-production",
        "approve-schema-change-in-production",
    ] {
        assert!(r.stdout.contains(id), "{id}: {r:?}");
    }
    assert!(r.stdout.contains("(approvers: dba)"), "{r:?}");
    assert!(r.stdout.contains("no warnings"), "{r:?}");
}

#[test]
fn check_names_the_file_and_line_of_a_broken_policy() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("base.cedar");
    std::fs::write(
        &good,
        "@id(\"allow\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let bad = dir.path().join("typo.cedar");
    std::fs::write(
        &bad,
        "@id(\"no-drop\")\n@message(\"no\")\nforbid(principal, action, resource)\nwhen { context.enviroment == \"production\" };\n",
    )
    .unwrap();
    let r = portcullis(&["policy", "check", text(dir.path())]);
    assert_eq!(r.code, 1, "{r:?}");
    let shown = bad.display().to_string();
    assert!(r.stderr.contains(&format!("{shown}:4:")), "{r:?}");
    assert!(r.stderr.contains("enviroment"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    // A syntax error, given as a file.
    std::fs::write(&bad, "permit(principal, action, resource").unwrap();
    let r = portcullis(&["policy", "check", text(&bad)]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&format!("{shown}:1:")), "{r:?}");
}

#[test]
fn check_reads_the_configurations_policy_files_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "files = [\"policies\"]");
    let missing = portcullis(&["policy", "check", "-c", text(&config)]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("policies"), "{missing:?}");

    let init = portcullis(&["policy", "init", text(&dir.path().join("policies"))]);
    assert_eq!(init.code, 0, "{init:?}");
    let r = portcullis(&["policy", "check", "-c", text(&config)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("ok, 10 policies"), "{r:?}");
    assert!(r.stdout.contains("production.cedar"), "{r:?}");
}

// ---- explain ---------------------------------------------------------------

fn explain_production(sql: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "policy",
        "explain",
        "--target",
        "shop",
        "--user",
        "alice",
        "--environment",
        "production",
    ];
    args.extend_from_slice(extra);
    args.push(sql);
    portcullis(&args)
}

#[test]
fn explain_names_the_deciding_policy_and_the_clients_error() {
    let r = explain_production("DROP TABLE orders", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = &r.stdout;
    assert!(out.contains("class:        drop"), "{r:?}");
    assert!(out.contains("Drop on [public.orders]"), "{r:?}");
    assert!(out.contains("by deny-drop-in-production"), "{r:?}");
    assert!(
        out.contains("decision: deny deny-drop-in-production"),
        "{r:?}"
    );
    assert!(
        out.contains("ERROR:  statement denied by policy \"deny-drop-in-production\": DROP statements are not allowed in production"),
        "{r:?}"
    );
    assert!(out.contains("SQLSTATE: 42501"), "{r:?}");
    assert!(out.contains("HINT:  "), "{r:?}");
    assert!(
        out.contains("names are resolved by the search path only"),
        "{r:?}"
    );
}

#[test]
fn explain_allows_a_drop_inside_a_string() {
    let r = explain_production("SELECT 'DROP TABLE x'", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("class:        select"), "{r:?}");
    assert!(r.stdout.contains("decision: allow"), "{r:?}");
    assert!(r.stdout.contains("the statement runs (allowed)"), "{r:?}");
    assert!(!r.stdout.contains("42501"), "{r:?}");
}

#[test]
fn explain_json_is_one_json_object() {
    let r = explain_production("SELECT 1; DELETE FROM orders", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("valid JSON");
    assert_eq!(v["target"]["environment"], "production");
    let statements = v["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0]["decision"]["decision"], "allow");
    assert_eq!(statements[1]["analysis"]["class"], "delete");
    assert_eq!(
        statements[1]["policy_facts"]["operations"][1]["action"],
        "Delete"
    );
    assert_eq!(
        statements[1]["decision"]["policy"],
        "deny-unfiltered-write-in-production"
    );
    assert_eq!(v["client"]["refused"], true);
    assert_eq!(v["client"]["sqlstate"], "42501");
}

#[test]
fn explain_reports_what_the_client_gets_for_text_that_does_not_parse() {
    let r = explain_production("SELEC 1", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("statement does not parse"), "{r:?}");
    assert!(r.stdout.contains("SQLSTATE: 42601"), "{r:?}");
}

#[test]
fn explain_takes_environment_kind_and_groups_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let config = config.to_str().unwrap();

    let r = portcullis(&[
        "policy",
        "explain",
        "-c",
        config,
        "--target",
        "shop",
        "--user",
        "helper",
        "--json",
        "CREATE TABLE t (id int)",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["user"]["kind"], "agent");
    assert_eq!(v["user"]["groups"][0], "dba");
    assert_eq!(v["target"]["row_limit"], 500);
    assert_eq!(v["statements"][0]["decision"]["decision"], "approval");
    assert_eq!(v["statements"][0]["decision"]["approvers"], "dba");

    // Staging is observed: the refusal is computed, and not enforced.
    let r = portcullis(&[
        "policy",
        "explain",
        "-c",
        config,
        "--target",
        "shop_staging",
        "--user",
        "alice",
        "COPY orders FROM PROGRAM 'id'",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("deny-dangerous-capabilities"), "{r:?}");
    assert!(r.stdout.contains("observe mode"), "{r:?}");

    let r = portcullis(&[
        "policy", "explain", "-c", config, "--target", "shopp", "--user", "alice", "SELECT 1",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("no target named \"shopp\"")
            && r.stderr.contains("\"shop\", \"shop_staging\""),
        "{r:?}"
    );
    let r = portcullis(&[
        "policy", "explain", "-c", config, "--target", "shop", "--user", "mallory", "SELECT 1",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("\"alice\", \"helper\""), "{r:?}");
}

#[test]
fn explain_without_a_configuration_needs_an_environment() {
    let r = portcullis(&[
        "policy", "explain", "--target", "shop", "--user", "alice", "SELECT 1",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("--environment"), "{r:?}");
}

// ---- test ------------------------------------------------------------------

const PASSING: &str = r#"
[[case]]
name = "drop refused"
sql = "DROP TABLE orders"
expect = "deny deny-drop-in-production"

[[case]]
name = "literal allowed"
sql = "SELECT 'DROP TABLE x'"
expect = "allow"
"#;

const FAILING: &str = r#"
[[case]]
name = "expects the wrong thing"
sql = "TRUNCATE orders"
expect = "allow"

[[case]]
name = "still fine"
action = "select"
expect = "allow"
"#;

#[test]
fn test_exit_status_says_whether_every_case_passed() {
    let dir = tempfile::tempdir().unwrap();
    let passing = dir.path().join("passing.toml");
    let failing = dir.path().join("failing.toml");
    std::fs::write(&passing, PASSING).unwrap();
    std::fs::write(&failing, FAILING).unwrap();

    let r = portcullis(&["policy", "test", text(&passing)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("PASS  drop refused (deny deny-drop-in-production)"),
        "{r:?}"
    );
    assert!(r.stdout.ends_with("2 passed, 0 failed\n"), "{r:?}");

    let r = portcullis(&["policy", "test", text(&passing), text(&failing)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains(
            "FAIL  expects the wrong thing: expected allow, got deny deny-truncate-in-production"
        ),
        "{r:?}"
    );
    assert!(r.stdout.ends_with("3 passed, 1 failed\n"), "{r:?}");

    // A file that is not a test file is a problem, not a failure.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[case]]\nname = \"x\"\nactoin = \"select\"\nexpect = \"allow\"\n",
    )
    .unwrap();
    let r = portcullis(&["policy", "test", text(&broken)]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("actoin"), "{r:?}");
    let r = portcullis(&["policy", "test", text(&dir.path().join("missing.toml"))]);
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn test_runs_against_given_policies() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    // Only reads are permitted: a DROP is now a default denial everywhere.
    std::fs::write(
        policies.join("read-only.cedar"),
        "@id(\"read-only\")\npermit(principal, action in Portcullis::Action::\"Read\", resource);\n",
    )
    .unwrap();
    let tests = dir.path().join("t.toml");
    std::fs::write(
        &tests,
        "[[case]]\nsql = \"DROP TABLE orders\"\nenvironment = \"staging\"\nexpect = \"deny default-deny\"\n\n[[case]]\nsql = \"SELECT * FROM orders\"\nexpect = \"allow\"\n",
    )
    .unwrap();
    let r = portcullis(&[
        "policy",
        "test",
        "--policies",
        text(&policies),
        text(&tests),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.ends_with("2 passed, 0 failed\n"), "{r:?}");
}

#[test]
fn the_default_bundles_own_tests_pass() {
    let file = repo_file("crates/policy/tests/default_bundle.toml");
    let r = portcullis(&["policy", "test", text(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !r.stdout.contains("FAIL") && !r.stdout.contains("ERROR"),
        "{r:?}"
    );
}

#[test]
fn the_sql_examples_pass() {
    let file = repo_file("docs/examples/policy-tests.toml");
    let r = portcullis(&["policy", "test", text(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    let passed = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("PASS"))
        .count();
    assert!(passed >= 15, "{r:?}");
}

// ---- init ------------------------------------------------------------------

#[test]
fn init_writes_a_bundle_that_check_accepts_and_does_not_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new").join("policies");
    let r = portcullis(&["policy", "init", text(&target)]);
    assert_eq!(r.code, 0, "{r:?}");
    for name in [
        "base.cedar",
        "everywhere.cedar",
        "other-databases.cedar",
        "production.cedar",
        "portcullis.cedarschema",
    ] {
        assert!(target.join(name).is_file(), "{name}: {r:?}");
    }
    assert!(r.stdout.contains("[policy]"), "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("files = [{:?}]", target.display().to_string())),
        "{r:?}"
    );

    let check = portcullis(&["policy", "check", text(&target)]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("ok, 10 policies"), "{check:?}");

    // Edits survive a second init; --force restores the defaults.
    let base = target.join("base.cedar");
    std::fs::write(
        &base,
        "// edited\n@id(\"allow\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let again = portcullis(&["policy", "init", text(&target)]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("--force"), "{again:?}");
    assert!(std::fs::read_to_string(&base)
        .unwrap()
        .starts_with("// edited"));
    let forced = portcullis(&["policy", "init", "--force", text(&target)]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(!std::fs::read_to_string(&base)
        .unwrap()
        .starts_with("// edited"));
}
