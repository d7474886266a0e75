//! Loading and validation of configuration files: the documented example,
//! one test per validation rule, and syntax errors.

use std::path::{Path, PathBuf};

use portcullis_config::{
    Config, ConfigError, IdentityKind, Inference, LogFormat, RowLimit, SslMode,
    DEFAULT_PRODUCTION_ROW_LIMIT,
};

/// PostgreSQL 15's verifier for the password "secret".
const SCRAM: &str = "SCRAM-SHA-256$4096:yZkIEu9J2GSAYt7nmBNf5A==$Cs3eJ7zVsxA+QQhpyS+WIv8EoZTK74HBaYfnBaxJAzA=:5WXWGKmNyRpxJg0l3yun274icMHKc0oBiqwE8o+MZiU=";

const EXAMPLE: &str = include_str!("../../../docs/examples/portcullis.toml");

/// Tables with only their required keys, so a test can append a key to
/// any of them without repeating it.
const LISTENER: &str =
    "[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:6432\"\nallow_plaintext = true\n";
const TARGET: &str =
    "[[target]]\nname = \"shop\"\nenvironment = \"production\"\nhost = \"db.example\"\nuser = \"portcullis\"\n";

fn user(name: &str) -> String {
    format!("[[user]]\nname = \"{name}\"\nscram = \"{SCRAM}\"\n")
}

fn minimal() -> String {
    format!("{LISTENER}{TARGET}{}", user("alice"))
}

/// Parses `text` without a file and expects a validation error: returns its
/// key and message.
#[track_caller]
fn invalid(text: &str) -> (String, String) {
    match Config::parse(text, None) {
        Err(ConfigError::Invalid {
            origin,
            key,
            message,
        }) => {
            assert_eq!(origin, "<config>");
            (key, message)
        }
        Err(other) => panic!("expected a validation error, got {other}"),
        Ok(_) => panic!("expected a validation error, but the config is valid:\n{text}"),
    }
}

#[track_caller]
fn assert_invalid(text: &str, want_key: &str, want_in_message: &str) -> String {
    let (key, message) = invalid(text);
    assert_eq!(key, want_key, "message: {message}");
    assert!(
        message.contains(want_in_message),
        "message for {key} should mention {want_in_message:?}: {message}"
    );
    message
}

#[track_caller]
fn valid(text: &str) -> Config {
    Config::parse(text, None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[track_caller]
fn syntax(text: &str) -> (usize, usize, String) {
    match Config::parse(text, None) {
        Err(ConfigError::Syntax {
            origin,
            line,
            column,
            message,
        }) => {
            assert_eq!(origin, "<config>");
            (line, column, message)
        }
        Err(other) => panic!("expected a syntax error, got {other}"),
        Ok(_) => panic!("expected a syntax error"),
    }
}

/// A folder holding `portcullis.toml` with `text` and the given files.
fn folder(text: &str, files: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let path = dir.path().join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A .toml file is a [masking] include: an empty one is valid.
        let contents = if f.ends_with(".toml") {
            ""
        } else {
            "contents\n"
        };
        std::fs::write(&path, contents).unwrap();
    }
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

#[track_caller]
fn load_invalid(config: &Path) -> (String, String) {
    match Config::load(config) {
        Err(ConfigError::Invalid {
            origin,
            key,
            message,
        }) => {
            assert_eq!(origin, config.display().to_string());
            (key, message)
        }
        Err(other) => panic!("expected a validation error, got {other}"),
        Ok(_) => panic!("expected a validation error"),
    }
}

const EXAMPLE_FILES: &[&str] = &[
    "certs/server.crt",
    "certs/server.key",
    "certs/upstream-ca.pem",
    "secrets/shop.password",
    "masking/discovered.toml",
];

// ---------------------------------------------------------------- example

#[test]
fn example_is_valid_and_complete() {
    let (dir, path) = folder(EXAMPLE, EXAMPLE_FILES);
    std::fs::write(dir.path().join("secrets/shop.password"), "hunter2\n").unwrap();
    std::fs::write(
        dir.path().join("masking/discovered.toml"),
        "[[column]]\ntarget = \"shop\"\ncolumn = \"public.orders.notes\"\nclass = \"email\"\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    // The example's own column first, then the included one.
    let columns: Vec<&str> = c
        .masking
        .columns
        .iter()
        .map(|r| r.column.as_str())
        .collect();
    assert_eq!(
        columns,
        ["public.customers.nickname", "public.orders.notes"]
    );
    assert_eq!(c.base_dir(), Some(dir.path()));
    assert_eq!(c.server.handshake_timeout.0.as_secs(), 15);
    assert_eq!(c.server.idle_timeout.0.as_secs(), 30 * 60);
    assert_eq!(c.server.shutdown_grace.0.as_secs(), 30);
    assert_eq!(c.server.max_statement_bytes, 64 << 20);
    assert_eq!(c.server.log_format, LogFormat::Human);
    assert_eq!(c.admin.as_ref().unwrap().listen.port(), 9187);
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(c.resolve(&tls.cert), dir.path().join("certs/server.crt"));

    assert_eq!(c.listeners.len(), 2);
    assert!(!c.listeners[0].allow_plaintext);
    assert!(c.listeners[1].allow_plaintext);
    assert_eq!(c.listeners[1].max_connections, 100);

    assert_eq!(c.targets.len(), 3);
    let shop = c.target("shop").unwrap();
    assert_eq!(shop.upstream_database(), "shop_prod");
    assert_eq!(shop.row_limit, Some(RowLimit::Rows(5000)));
    assert_eq!(shop.effective_row_limit(), Some(5000));
    assert_eq!(shop.sslmode, SslMode::VerifyFull);
    assert_eq!(
        shop.read_password(c.base_dir()).unwrap().as_deref(),
        Some("hunter2")
    );
    let staging = c.target("shop-staging").unwrap();
    assert_eq!(staging.sslmode, SslMode::Require);
    assert_eq!(staging.port, 5432);
    assert_eq!(staging.connect_timeout.0.as_secs(), 2);
    assert_eq!(staging.effective_row_limit(), None);
    let scratch = c.target("scratch").unwrap();
    assert_eq!(scratch.upstream_database(), "scratch");
    assert_eq!(scratch.sslmode, SslMode::Disable);
    assert_eq!(scratch.connect_timeout.0.as_secs(), 5);
    assert_eq!(scratch.read_password(c.base_dir()).unwrap(), None);
    assert_eq!(scratch.row_limit, Some(RowLimit::Off));
    assert_eq!(scratch.effective_row_limit(), None);

    assert_eq!(c.users.len(), 3);
    let alice = c.user("alice").unwrap();
    assert_eq!(alice.kind, IdentityKind::Human);
    assert_eq!(alice.groups, ["engineering", "oncall"]);
    assert_eq!(alice.max_connections, Some(5));
    assert_eq!(c.user("report-agent").unwrap().kind, IdentityKind::Agent);
    let billing = c.user("billing").unwrap();
    assert_eq!(billing.kind, IdentityKind::Service);
    assert_eq!(billing.max_connections, None);
    assert!(billing.groups.is_empty());
}

/// Every key of every table appears in the example, so it documents them all.
#[test]
fn example_documents_every_key() {
    let keys = [
        "handshake_timeout",
        "idle_timeout",
        "shutdown_grace",
        "max_statement_bytes",
        "log_format",
        "[admin]",
        "[tls]",
        "cert =",
        "key =",
        "[[listener]]",
        "allow_plaintext",
        "[[target]]",
        "environment =",
        "host =",
        "port =",
        "database =",
        "password_env =",
        "password_file =",
        "sslmode =",
        "sslrootcert =",
        "connect_timeout =",
        "[[user]]",
        "enforcement =",
        "row_limit =",
        "[policy]",
        "files =",
        "scram =",
        "kind =",
        "groups =",
        "max_connections =",
        "[masking]",
        "max_row_bytes =",
        "key_env =",
        "key_file =",
        "include =",
        "[[masking.column]]",
        "strategy =",
    ];
    for k in keys {
        assert!(EXAMPLE.contains(k), "example does not show {k}");
    }
}

#[test]
fn example_missing_files_are_named() {
    // Without a file of its own, relative paths resolve against the current
    // directory, where the example's certificates do not exist.
    assert_invalid(EXAMPLE, "tls.cert", "does not exist");

    for (missing, key) in [
        ("certs/server.crt", "tls.cert"),
        ("certs/server.key", "tls.key"),
        ("certs/upstream-ca.pem", "target \"shop\".sslrootcert"),
        ("secrets/shop.password", "target \"shop\".password_file"),
        ("masking/discovered.toml", "masking.include[0]"),
    ] {
        let files: Vec<&str> = EXAMPLE_FILES
            .iter()
            .copied()
            .filter(|f| *f != missing)
            .collect();
        let (dir, path) = folder(EXAMPLE, &files);
        let (got, message) = load_invalid(&path);
        assert_eq!(got, key, "{message}");
        let full = dir.path().join(missing);
        assert!(message.contains(&full.display().to_string()), "{message}");
        assert!(message.contains("does not exist"), "{message}");
        assert!(message.contains("resolved against"), "{message}");
    }
}

#[test]
fn absolute_paths_are_used_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let text = format!(
        "{LISTENER}{TARGET}sslmode = \"verify-full\"\nsslrootcert = \"{}\"\n",
        ca.display()
    );
    valid(&text);
    std::fs::remove_file(&ca).unwrap();
    let message = assert_invalid(&text, "target \"shop\".sslrootcert", "does not exist");
    assert!(!message.contains("resolved against"), "{message}");
}

#[test]
fn a_folder_is_not_a_file() {
    let (dir, path) = folder(
        &format!("{LISTENER}{TARGET}password_file = \"secrets\"\n"),
        &["secrets/x"],
    );
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "target \"shop\".password_file");
    assert!(message.contains("not a regular file"), "{message}");
    drop(dir);
}

// ---------------------------------------------------------------- basics

#[test]
fn minimal_config_gets_defaults() {
    let c = valid(&minimal());
    assert!(c.admin.is_none());
    assert!(c.tls.is_none());
    assert_eq!(c.server.handshake_timeout.0.as_secs(), 15);
    assert_eq!(c.listeners[0].max_connections, 10_000);
    assert_eq!(c.targets[0].port, 5432);
    assert_eq!(c.targets[0].sslmode, SslMode::Disable);
    assert_eq!(c.users[0].kind, IdentityKind::Human);
}

#[test]
fn no_users_is_allowed() {
    let c = valid(&format!("{LISTENER}{TARGET}"));
    assert!(c.users.is_empty());
}

#[test]
fn error_display_names_file_and_key() {
    let err = Config::parse(
        &format!("{LISTENER}{TARGET}port = 0\n"),
        Some(Path::new("/etc/p.toml")),
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("/etc/p.toml: target \"shop\".port: "),
        "{shown}"
    );
}

#[test]
fn unreadable_file() {
    let err = Config::load(Path::new("/nonexistent/portcullis.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/portcullis.toml"));
}

// ---------------------------------------------------------------- server

#[test]
fn max_statement_bytes_bounds() {
    for ok in [1024, 1_073_741_823] {
        valid(&format!(
            "[server]\nmax_statement_bytes = {ok}\n{}",
            minimal()
        ));
    }
    for bad in [0, 1023, 1_073_741_824] {
        assert_invalid(
            &format!("[server]\nmax_statement_bytes = {bad}\n{}", minimal()),
            "server.max_statement_bytes",
            "between 1024 and 1073741823",
        );
    }
}

#[test]
fn handshake_timeout_must_be_positive() {
    assert_invalid(
        &format!("[server]\nhandshake_timeout = \"0s\"\n{}", minimal()),
        "server.handshake_timeout",
        "greater than zero",
    );
}

#[test]
fn shutdown_grace_and_idle_timeout_may_be_zero() {
    let c = valid(&format!(
        "[server]\nshutdown_grace = \"0s\"\nidle_timeout = \"0ms\"\nlog_format = \"json\"\n{}",
        minimal()
    ));
    assert!(c.server.shutdown_grace.is_zero());
    assert_eq!(c.server.log_format, LogFormat::Json);
}

// ---------------------------------------------------------------- listeners

#[test]
fn a_listener_is_required() {
    assert_invalid(TARGET, "listener", "no [[listener]]");
    assert_invalid(
        &format!("listener = []\n{TARGET}"),
        "listener",
        "no [[listener]]",
    );
}

#[test]
fn listener_names_are_unique_and_non_empty() {
    let second =
        "[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:6433\"\nallow_plaintext = true\n";
    assert_invalid(
        &format!("{LISTENER}{second}{TARGET}"),
        "listener[1].name",
        "already the name of listener[0]",
    );
    let unnamed =
        "[[listener]]\nname = \"\"\nlisten = \"127.0.0.1:6433\"\nallow_plaintext = true\n";
    assert_invalid(
        &format!("{LISTENER}{unnamed}{TARGET}"),
        "listener[1].name",
        "empty",
    );
}

#[test]
fn listener_addresses_are_unique() {
    let same = "[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:6432\"\nallow_plaintext = true\n";
    assert_invalid(
        &format!("{LISTENER}{same}{TARGET}"),
        "listener[1].listen",
        "also the address of listener[0]",
    );
    let wildcard =
        "[[listener]]\nname = \"b\"\nlisten = \"0.0.0.0:6432\"\nallow_plaintext = true\n";
    assert_invalid(
        &format!("{LISTENER}{wildcard}{TARGET}"),
        "listener[1].listen",
        "both take port 6432",
    );
    let other_port =
        "[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:6433\"\nallow_plaintext = true\n";
    valid(&format!("{LISTENER}{other_port}{TARGET}"));
}

#[test]
fn port_zero_listeners_do_not_clash() {
    let text = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nallow_plaintext = true\n\
                [[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\nallow_plaintext = true\n\
                [admin]\nlisten = \"127.0.0.1:0\"\n";
    valid(&format!("{text}{TARGET}"));
}

#[test]
fn listener_max_connections_positive() {
    assert_invalid(
        &format!("{LISTENER}max_connections = 0\n{TARGET}"),
        "listener[0].max_connections",
        "greater than zero",
    );
}

#[test]
fn admin_needs_its_own_address() {
    assert_invalid(
        &format!("[admin]\nlisten = \"127.0.0.1:6432\"\n{LISTENER}{TARGET}"),
        "admin.listen",
        "listener[0]",
    );
    assert_invalid(
        &format!("[admin]\nlisten = \"0.0.0.0:6432\"\n{LISTENER}{TARGET}"),
        "admin.listen",
        "port of its own",
    );
    let c = valid(&format!(
        "[admin]\nlisten = \"127.0.0.1:9187\"\n{LISTENER}{TARGET}"
    ));
    assert_eq!(c.admin.unwrap().listen.port(), 9187);
}

// ---------------------------------------------------------------- tls

#[test]
fn tls_only_listener_needs_tls_table() {
    let tls_only = "[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:6432\"\n";
    let message = assert_invalid(&format!("{tls_only}{TARGET}"), "tls", "listener[0]");
    assert!(message.contains("allow_plaintext"), "{message}");
    let explicit =
        "[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:6432\"\nallow_plaintext = false\n";
    assert_invalid(&format!("{explicit}{TARGET}"), "tls", "no [tls] table");
}

#[test]
fn tls_files_must_exist() {
    let tls_only = "[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:6432\"\n";
    let text = format!("[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n{tls_only}{TARGET}");
    let (_dir, path) = folder(&text, &["tls/cert.pem", "tls/key.pem"]);
    Config::load(&path).unwrap();
    let (_dir, path) = folder(&text, &["tls/key.pem"]);
    assert_eq!(load_invalid(&path).0, "tls.cert");
    let (_dir, path) = folder(&text, &["tls/cert.pem"]);
    assert_eq!(load_invalid(&path).0, "tls.key");
}

// ---------------------------------------------------------------- targets

#[test]
fn a_target_is_required() {
    assert_invalid(LISTENER, "target", "no [[target]]");
    assert_invalid(
        &format!("target = []\n{LISTENER}"),
        "target",
        "no [[target]]",
    );
}

#[test]
fn production_targets_get_a_row_limit_unless_it_is_switched_off() {
    let limit =
        |extra: &str| valid(&format!("{LISTENER}{TARGET}{extra}")).targets[0].effective_row_limit();
    // Left out: production is limited.
    assert_eq!(limit(""), Some(DEFAULT_PRODUCTION_ROW_LIMIT));
    assert_eq!(DEFAULT_PRODUCTION_ROW_LIMIT, 1000);
    // Raised, lowered, or turned off only by saying so.
    assert_eq!(limit("row_limit = 250000\n"), Some(250_000));
    assert_eq!(limit("row_limit = 10\n"), Some(10));
    assert_eq!(limit("row_limit = \"off\"\n"), None);

    // Every label but exactly staging and development is production, as
    // for the default policies.
    let env = |environment: &str, extra: &str| {
        let target = TARGET.replace("\"production\"", &format!("{environment:?}"));
        valid(&format!("{LISTENER}{target}{extra}")).targets[0].effective_row_limit()
    };
    for production in ["prod", "live", "Staging", "produciton"] {
        assert_eq!(env(production, ""), Some(1000), "{production}");
    }
    for other in ["staging", "development"] {
        assert_eq!(env(other, ""), None, "{other}");
        assert_eq!(env(other, "row_limit = 5\n"), Some(5), "{other}");
        assert_eq!(env(other, "row_limit = \"off\"\n"), None, "{other}");
    }
}

#[test]
fn row_limit_is_a_positive_number_or_off() {
    let message = assert_invalid(
        &format!("{LISTENER}{TARGET}row_limit = 0\n"),
        "target \"shop\".row_limit",
        "is 0",
    );
    assert!(message.contains("\"off\""), "{message}");
    for (value, says) in [
        ("-5", "row_limit is -5"),
        ("\"none\"", "row_limit is \"none\""),
        ("\"OFF\"", "row_limit is \"OFF\""),
        ("\"1000\"", "without quotes"),
        ("false", "\"off\""),
        ("1.5", "\"off\""),
    ] {
        let (line, _, message) = syntax(&format!("{LISTENER}{TARGET}row_limit = {value}\n"));
        assert_eq!(line, 10, "{value}: {message}");
        assert!(message.contains(says), "{value}: {message}");
        assert!(message.contains("greater than zero"), "{value}: {message}");
    }
}

#[test]
fn target_names_unique() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}{TARGET}"),
        "target \"shop\".name",
        "target[0]",
    );
}

#[test]
fn target_name_non_empty() {
    let t = TARGET.replace("name = \"shop\"", "name = \"\"");
    assert_invalid(&format!("{LISTENER}{TARGET}{t}"), "target[1].name", "empty");
}

#[test]
fn target_name_characters() {
    for bad in ["shop db", "shop/db", "shöp", "shop\\\"x"] {
        let t = TARGET.replace("name = \"shop\"", &format!("name = \"{bad}\""));
        let (key, message) = invalid(&format!("{LISTENER}{t}"));
        assert!(key.ends_with(".name"), "{key}");
        assert!(message.contains("only letters"), "{message}");
    }
    let t = TARGET.replace("name = \"shop\"", "name = \"Shop_1.v2-x\"");
    valid(&format!("{LISTENER}{t}"));
}

#[test]
fn target_name_length() {
    let ok = "a".repeat(63);
    let t = TARGET.replace("name = \"shop\"", &format!("name = \"{ok}\""));
    valid(&format!("{LISTENER}{t}"));
    let long = "a".repeat(64);
    let t = TARGET.replace("name = \"shop\"", &format!("name = \"{long}\""));
    assert_invalid(
        &format!("{LISTENER}{t}"),
        &format!("target \"{long}\".name"),
        "at most 63 bytes",
    );
}

#[test]
fn target_environment_non_empty() {
    let t = TARGET.replace("environment = \"production\"", "environment = \"  \"");
    assert_invalid(
        &format!("{LISTENER}{t}"),
        "target \"shop\".environment",
        "empty",
    );
}

#[test]
fn target_host_non_empty() {
    let t = TARGET.replace("host = \"db.example\"", "host = \"\"");
    assert_invalid(&format!("{LISTENER}{t}"), "target \"shop\".host", "empty");
}

#[test]
fn target_port_non_zero() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}port = 0\n"),
        "target \"shop\".port",
        "5432",
    );
}

#[test]
fn target_user_and_database_non_empty() {
    let t = TARGET.replace("user = \"portcullis\"", "user = \"\"");
    assert_invalid(&format!("{LISTENER}{t}"), "target \"shop\".user", "empty");
    assert_invalid(
        &format!("{LISTENER}{TARGET}database = \"\"\n"),
        "target \"shop\".database",
        "empty",
    );
}

#[test]
fn password_sources_are_exclusive() {
    let (_dir, path) = folder(
        &format!("{LISTENER}{TARGET}password_env = \"PW\"\npassword_file = \"pw\"\n"),
        &["pw"],
    );
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "target \"shop\".password_file");
    assert!(message.contains("password_env"), "{message}");
}

#[test]
fn password_env_must_be_a_name() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}password_env = \"\"\n"),
        "target \"shop\".password_env",
        "environment variable",
    );
    // Whether the variable is set is checked when the password is read.
    valid(&format!(
        "{LISTENER}{TARGET}password_env = \"PORTCULLIS_TEST_SURELY_UNSET\"\n"
    ));
}

#[test]
fn password_file_must_exist() {
    let text = format!("{LISTENER}{TARGET}password_file = \"secrets/shop\"\n");
    let (_dir, path) = folder(&text, &["secrets/shop"]);
    Config::load(&path).unwrap();
    let (_dir, path) = folder(&text, &[]);
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "target \"shop\".password_file");
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn verify_full_needs_sslrootcert() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}sslmode = \"verify-full\"\n"),
        "target \"shop\".sslrootcert",
        "required with sslmode = \"verify-full\"",
    );
}

#[test]
fn sslrootcert_only_with_verify_full() {
    let (_dir, path) = folder(
        &format!("{LISTENER}{TARGET}sslmode = \"require\"\nsslrootcert = \"ca.pem\"\n"),
        &["ca.pem"],
    );
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "target \"shop\".sslrootcert");
    assert!(message.contains("only used with"), "{message}");
}

#[test]
fn sslrootcert_must_exist() {
    let text =
        format!("{LISTENER}{TARGET}sslmode = \"verify-full\"\nsslrootcert = \"ca/root.pem\"\n");
    let (_dir, path) = folder(&text, &["ca/root.pem"]);
    assert_eq!(
        Config::load(&path).unwrap().targets[0].sslmode,
        SslMode::VerifyFull
    );
    let (dir, path) = folder(&text, &[]);
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "target \"shop\".sslrootcert");
    assert!(
        message.contains(&dir.path().join("ca/root.pem").display().to_string()),
        "{message}"
    );
}

#[test]
fn connect_timeout_positive() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}connect_timeout = \"0s\"\n"),
        "target \"shop\".connect_timeout",
        "greater than zero",
    );
}

// ---------------------------------------------------------------- users

#[test]
fn user_names_unique() {
    assert_invalid(
        &format!(
            "{LISTENER}{TARGET}{}{}{}",
            user("alice"),
            user("bob"),
            user("alice")
        ),
        "user \"alice\".name",
        "user[0]",
    );
}

#[test]
fn user_name_non_empty() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}{}{}", user("alice"), user("")),
        "user[1].name",
        "empty",
    );
}

#[test]
fn user_name_length() {
    valid(&format!("{LISTENER}{TARGET}{}", user(&"u".repeat(63))));
    let long = "u".repeat(64);
    assert_invalid(
        &format!("{LISTENER}{TARGET}{}", user(&long)),
        &format!("user \"{long}\".name"),
        "at most 63 bytes",
    );
}

#[test]
fn user_scram_must_parse_and_is_not_echoed() {
    let weak = SCRAM.replace("$4096:", "$1000:");
    let text = format!("{LISTENER}{TARGET}[[user]]\nname = \"alice\"\nscram = \"{weak}\"\n");
    let message = assert_invalid(
        &text,
        "user \"alice\".scram",
        "iteration count must be at least 4096",
    );
    assert!(
        !message.contains("yZkIEu9J2GSAYt7nmBNf5A"),
        "salt leaked: {message}"
    );
    assert!(!message.contains("Cs3eJ7"), "StoredKey leaked: {message}");

    let text = format!("{LISTENER}{TARGET}[[user]]\nname = \"alice\"\nscram = \"secret\"\n");
    let message = assert_invalid(&text, "user \"alice\".scram", "SCRAM-SHA-256$");
    assert!(!message.contains("\"secret\""), "{message}");
}

#[test]
fn group_names_non_empty() {
    assert_invalid(
        &format!(
            "{LISTENER}{TARGET}{}groups = [\"ops\", \"\"]\n",
            user("alice")
        ),
        "user \"alice\".groups[1]",
        "empty",
    );
}

#[test]
fn user_max_connections_positive() {
    assert_invalid(
        &format!("{LISTENER}{TARGET}{}max_connections = 0\n", user("alice")),
        "user \"alice\".max_connections",
        "greater than zero",
    );
    let c = valid(&format!(
        "{LISTENER}{TARGET}{}max_connections = 1\n",
        user("alice")
    ));
    assert_eq!(c.users[0].max_connections, Some(1));
}

// ---------------------------------------------------------------- syntax

#[test]
fn syntax_error_has_line_and_column() {
    let text = "[[listener]]\nname = \"main\"\nlisten = 127.0.0.1:6432\n";
    // TOML reads `127.0` as a float and stops at the second '.', column 15
    // (columns count from 1).
    let (line, column, message) = syntax(text);
    assert_eq!((line, column), (3, 15), "{message}");
    let shown = Config::parse(text, Some(Path::new("p.toml")))
        .unwrap_err()
        .to_string();
    assert!(shown.starts_with("p.toml:3:15: "), "{shown}");
    // An error on the first character of a line is at column 1.
    let (line, column, _) = syntax("[[listener]]\nname = \"main\"\n= 1\n");
    assert_eq!((line, column), (3, 1));
}

#[test]
fn unknown_key_is_an_error() {
    let text = format!("{LISTENER}{TARGET}sslmod = \"require\"\n");
    let (line, _, message) = syntax(&text);
    assert_eq!(line, 10, "{message}");
    assert!(message.contains("unknown field `sslmod`"), "{message}");
    let (line, _, message) = syntax(&format!("[server]\nlog = \"json\"\n{}", minimal()));
    assert_eq!(line, 2);
    assert!(message.contains("unknown field `log`"), "{message}");
}

#[test]
fn unknown_enum_value_is_an_error() {
    let (line, _, message) = syntax(&format!("{LISTENER}{TARGET}sslmode = \"verify-ca\"\n"));
    assert_eq!(line, 10);
    assert!(message.contains("verify-full"), "{message}");
}

#[test]
fn bad_duration() {
    let (line, _, message) = syntax(&format!("{LISTENER}{TARGET}connect_timeout = \"5 sec\"\n"));
    assert_eq!(line, 10);
    assert!(message.contains("unknown unit"), "{message}");
    let (_, _, message) = syntax(&format!("{LISTENER}{TARGET}connect_timeout = \"5\"\n"));
    assert!(message.contains("needs a unit"), "{message}");
    let (_, _, message) = syntax(&format!("{LISTENER}{TARGET}connect_timeout = 5\n"));
    assert!(message.contains("string"), "{message}");
}

#[test]
fn bad_socket_address() {
    let (line, _, _) = syntax("[[listener]]\nname = \"main\"\nlisten = \"localhost\"\n");
    assert_eq!(line, 3);
}

#[test]
fn unix_socket_hosts_cannot_use_tls() {
    let target = TARGET.replace("host = \"db.example\"", "host = \"/var/run/postgresql\"");
    valid(&format!("{LISTENER}{target}"));
    assert_invalid(
        &format!("{LISTENER}{target}sslmode = \"require\"\n"),
        "target \"shop\".sslmode",
        "Unix socket",
    );
}

#[test]
fn the_wildcard_target_serves_names_not_one_database() {
    let ok = EXAMPLE.to_owned()
        + "\n[[target]]\nname = \"*\"\nenvironment = \"development\"\nhost = \"db\"\nuser = \"u\"\n";
    let (dir, path) = folder(&ok, EXAMPLE_FILES);
    std::fs::write(dir.path().join("secrets/shop.password"), "hunter2\n").unwrap();
    let config = Config::load(&path).map_err(|e| e.to_string());
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    let served = config.target("made_by_a_test_suite").expect("served by *");
    assert_eq!(served.upstream_database(), "made_by_a_test_suite");
    assert_eq!(served.environment, "development");

    let bad = ok.replace("\nname = \"*\"", "\nname = \"*\"\ndatabase = \"x\"");
    std::fs::write(&path, &bad).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("database"), "{err}");
}

#[test]
fn masking_is_on_by_default_and_its_table_is_checked() {
    let c = valid(&minimal());
    assert!(c.masking.enabled);
    let c = valid(&format!(
        "{}[masking]\nmax_row_bytes = 2048\n[[masking.column]]\ncolumn = \"public.customers.nickname\"\nclass = \"person_name\"\nstrategy = \"keyed\"\n[[masking.column]]\ntarget = \"shop\"\ncolumn = \"public.customers.email\"\nclass = \"none\"\n",
        minimal()
    ));
    assert_eq!(c.masking.columns.len(), 2);
    assert_eq!(
        c.masking.columns[0].parts(),
        Some(("public", "customers", "nickname"))
    );
    let bad = |extra: &str| format!("{}[masking]\n{extra}", minimal());
    assert_invalid(
        &bad("[[masking.column]]\ncolumn = \"customers.email\"\nclass = \"email\"\n"),
        "masking.column[0].column",
        "schema.table.column",
    );
    assert_invalid(
        &bad("[[masking.column]]\ncolumn = \"public.customers.email\"\nclass = \"mail\"\n"),
        "masking.column[0].class",
        "person_name",
    );
    assert_invalid(
        &bad("[[masking.column]]\ncolumn = \"public.customers.email\"\nclass = \"email\"\nstrategy = \"hide\"\n"),
        "masking.column[0].strategy",
        "redact, partial",
    );
    assert_invalid(
        &bad("[[masking.column]]\ntarget = \"nope\"\ncolumn = \"public.customers.email\"\nclass = \"email\"\n"),
        "masking.column[0].target",
        "not a configured target",
    );
    assert_invalid(
        &bad("max_row_bytes = 10\n"),
        "masking.max_row_bytes",
        "1024",
    );
    assert_invalid(
        &bad("key_env = \"K\"\nkey_file = \"k\"\n"),
        "masking.key_env",
        "one way",
    );
}

/// `[masking] include`: files of `[[column]]` entries, merged after the
/// configuration's own, validated like them, their errors naming the file.
#[test]
fn masking_include_files_are_merged_and_checked_in_their_own_name() {
    let text = format!(
        "{}[masking]\ninclude = [\"masking/found.toml\"]\n[[masking.column]]\ncolumn = \"public.t.a\"\nclass = \"none\"\n",
        minimal()
    );
    let (dir, path) = folder(&text, &["masking/found.toml"]);
    let included = dir.path().join("masking/found.toml");
    let write = |body: &str| std::fs::write(&included, body).unwrap();

    write("# proposed\n[[column]]\ntarget = \"shop\"\ncolumn = \"public.t.b\"\nclass = \"card\"\n\n[[column]]\ncolumn = \"public.t.a\"\nclass = \"email\"\nstrategy = \"redact\"\n");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(&str, &str, Option<&str>)> = c
        .masking
        .columns
        .iter()
        .map(|r| (r.column.as_str(), r.class.as_str(), r.target.as_deref()))
        .collect();
    // The configuration's own entry comes first, so it wins over the
    // included one for public.t.a.
    assert_eq!(
        got,
        [
            ("public.t.a", "none", None),
            ("public.t.b", "card", Some("shop")),
            ("public.t.a", "email", None),
        ]
    );

    // An empty file is valid: nothing was found.
    write("# nothing found\n");
    assert_eq!(Config::load(&path).unwrap().masking.columns.len(), 1);

    // Errors in an included file name it, and the entry in it.
    let in_file = |body: &str| -> (String, String, String) {
        write(body);
        match Config::load(&path) {
            Err(ConfigError::Invalid {
                origin,
                key,
                message,
            }) => (origin, key, message),
            Err(other) => panic!("expected a validation error, got {other}"),
            Ok(_) => panic!("expected a validation error for\n{body}"),
        }
    };
    let shown = included.display().to_string();
    let ok = "[[column]]\ncolumn = \"public.t.b\"\nclass = \"card\"\n";
    for (body, key, wanted) in [
        (
            "[[column]]\ncolumn = \"t.b\"\nclass = \"card\"\n",
            "column[0].column",
            "schema.table.column",
        ),
        (
            &format!("{ok}[[column]]\ncolumn = \"public.t.c\"\nclass = \"cc\"\n"),
            "column[1].class",
            "person_name",
        ),
        (
            "[[column]]\ncolumn = \"public.t.b\"\nclass = \"card\"\nstrategy = \"hide\"\n",
            "column[0].strategy",
            "redact, partial",
        ),
        (
            "[[column]]\ntarget = \"nope\"\ncolumn = \"public.t.b\"\nclass = \"card\"\n",
            "column[0].target",
            "not a configured target",
        ),
    ] {
        let (origin, got, message) = in_file(body);
        assert_eq!(origin, shown, "{message}");
        assert_eq!(got, key, "{message}");
        assert!(message.contains(wanted), "{key}: {message}");
    }

    // Syntax errors and unknown keys are located in the included file; an
    // included file cannot include another.
    for body in [
        "[[column]\n",
        "[[column]]\ncolumn = \"public.t.b\"\nclass = \"card\"\nshare = 0.9\n",
        "[masking]\ninclude = [\"other.toml\"]\n",
    ] {
        write(body);
        match Config::load(&path) {
            Err(ConfigError::Syntax { origin, .. }) => assert_eq!(origin, shown, "{body}"),
            other => panic!("expected a syntax error for {body:?}, got {other:?}"),
        }
    }

    // A missing file is named by the configuration's key, with its full path.
    std::fs::remove_file(&included).unwrap();
    let (key, message) = load_invalid(&path);
    assert_eq!(key, "masking.include[0]");
    assert!(message.contains(&shown), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("portcullis discover"), "{message}");

    assert_invalid(
        &format!("{}[masking]\ninclude = [\"\"]\n", minimal()),
        "masking.include[0]",
        "is empty",
    );
}

#[test]
fn strict_masking_and_inference_are_read_and_need_masking_on() {
    let c = valid(&minimal());
    assert!(!c.masking.strict);
    assert_eq!(c.masking.inference, Inference::Flag);
    let c = valid(&format!(
        "{}[masking]\nstrict = true\ninference = \"refuse\"\n",
        minimal()
    ));
    assert!(c.masking.strict);
    assert_eq!(c.masking.inference, Inference::Refuse);
    let bad = |extra: &str| format!("{}[masking]\n{extra}", minimal());
    assert_invalid(
        &bad("enabled = false\nstrict = true\n"),
        "masking.strict",
        "masking on",
    );
    assert_invalid(
        &bad("enabled = false\ninference = \"refuse\"\n"),
        "masking.inference",
        "masking on",
    );
    valid(&bad("enabled = false\ninference = \"flag\"\n"));
    assert!(Config::parse(&bad("inference = \"warn\"\n"), None).is_err());
}

#[test]
fn audit_postgres_store_is_checked_and_never_quoted() {
    let with = |audit: &str| format!("{}[audit]\n{audit}", minimal());
    let ok = "postgres = \"postgres://portcullis@db.internal:5432/ctl?sslmode=disable\"\nnode = \"eu-1\"\npostgres_password_env = \"AUDIT_PG_PASSWORD\"\n";
    let c = Config::parse(&with(ok), None).unwrap();
    assert_eq!(c.audit.node.as_deref(), Some("eu-1"));

    let (key, message) = invalid(&with(
        "postgres = \"postgres://portcullis:s3cret@db/ctl?sslmode=disable\"\nnode = \"eu-1\"\n",
    ));
    assert_eq!(key, "audit.postgres");
    assert!(
        message.contains("password") && !message.contains("s3cret"),
        "{message}"
    );

    let (key, message) = invalid(&with(
        "postgres = \"postgres://portcullis@db/ctl\"\nnode = \"eu-1\"\n",
    ));
    assert_eq!(key, "audit.postgres");
    assert!(message.contains("sslmode=disable"), "{message}");

    let (key, _) = invalid(&with(
        "postgres = \"mysql://x@db/ctl?sslmode=disable\"\nnode = \"eu-1\"\n",
    ));
    assert_eq!(key, "audit.postgres");

    let (key, message) = invalid(&with(
        "postgres = \"postgres://portcullis@db/ctl?sslmode=disable\"\n",
    ));
    assert_eq!(key, "audit.node");
    assert!(message.contains("required"), "{message}");

    let (key, message) = invalid(&with(&format!("{ok}retain = \"90d\"\n")));
    assert_eq!(key, "audit.retain");
    assert!(message.contains("not built"), "{message}");

    let (key, _) = invalid(&with(&format!("{ok}postgres_password_file = \"pw\"\n")));
    assert_eq!(key, "audit.postgres_password_env");

    let (key, _) = invalid(&with("node = \"eu-1\"\n"));
    assert_eq!(key, "audit.node");

    // TLS: require (with a CA file or the system's roots) or disable;
    // prefer could fall back to plaintext.
    let tls = "postgres = \"postgres://portcullis@db.internal:5432/ctl?sslmode=require\"\nnode = \"eu-1\"\n";
    Config::parse(&with(tls), None).unwrap();
    let (key, message) = invalid(&with(
        "postgres = \"postgres://portcullis@db/ctl?sslmode=prefer\"\nnode = \"eu-1\"\n",
    ));
    assert_eq!(key, "audit.postgres");
    assert!(message.contains("plaintext"), "{message}");
    let (key, _) = invalid(&with(&format!(
        "{tls}postgres_ca_file = \"/nonexistent/ca.pem\"\n"
    )));
    assert_eq!(key, "audit.postgres_ca_file");
    let (key, message) = invalid(&with(&format!("{ok}postgres_ca_file = \"ca.pem\"\n")));
    assert_eq!(key, "audit.postgres_ca_file");
    assert!(message.contains("sslmode=require"), "{message}");
    let (key, _) = invalid(&with("postgres_ca_file = \"ca.pem\"\n"));
    assert_eq!(key, "audit.postgres_ca_file");
}

// ---------------------------------------------------------------- identity

#[test]
fn access_profiles_are_checked() {
    let profile = |body: &str| {
        format!(
            "{LISTENER}{TARGET}[[target.profile]]\n{body}\n{}",
            user("alice")
        )
    };
    let c = valid(&profile(
        "name = \"ro\"\nuser = \"reader\"\npassword_env = \"RO\"\nkinds = [\"agent\"]\ngroups = [\"analysts\"]",
    ));
    let p = &c.targets[0].profiles[0];
    assert!(p.matches(portcullis_config::IdentityKind::Agent, "x", &[]));
    assert!(p.matches(
        portcullis_config::IdentityKind::Human,
        "x",
        &["analysts".into()]
    ));
    assert!(!p.matches(
        portcullis_config::IdentityKind::Human,
        "x",
        &["other".into()]
    ));
    assert_invalid(
        &profile("name = \"ro\"\nuser = \"reader\""),
        "target \"shop\".profile \"ro\".kinds",
        "matches nobody",
    );
    assert_invalid(
        &profile("name = \"ro\"\nuser = \"\"\nkinds = [\"agent\"]"),
        "target \"shop\".profile \"ro\".user",
        "is empty",
    );
    assert_invalid(
        &profile("name = \"ro\"\nuser = \"r\"\nkinds = [\"agent\"]\npassword_env = \"A\"\npassword_file = \"f\""),
        "target \"shop\".profile \"ro\".password_file",
        "both set",
    );
    assert_invalid(
        &format!(
            "{LISTENER}{TARGET}[[target.profile]]\nname = \"a\"\nuser = \"r\"\nkinds = [\"agent\"]\n[[target.profile]]\nname = \"a\"\nuser = \"s\"\nsubjects = [\"bob\"]\n{}",
            user("alice")
        ),
        "target \"shop\".profile \"a\".name",
        "must be unique",
    );
}

#[test]
fn oidc_issuers_are_checked() {
    let issuer = |body: &str| format!("{}[[identity.oidc]]\n{body}\n", minimal());
    let c = valid(&issuer(
        "issuer = \"https://login.example.com\"\naudience = \"portcullis\"",
    ));
    let o = &c.identity.oidc[0];
    assert_eq!(o.user_claim, "email");
    assert_eq!(o.algorithms.len(), portcullis_config::OIDC_ALGORITHMS.len());
    assert_eq!(
        o.discovery(),
        "https://login.example.com/.well-known/openid-configuration"
    );
    valid(&issuer(
        "issuer = \"http://127.0.0.1:8080/realms/x\"\naudience = \"a\"",
    ));
    assert_invalid(
        &issuer("issuer = \"http://login.example.com\"\naudience = \"a\""),
        "identity.oidc[0].issuer",
        "https://",
    );
    for alg in ["none", "HS256", "rs256"] {
        assert_invalid(
            &issuer(&format!(
                "issuer = \"https://i\"\naudience = \"a\"\nalgorithms = [\"{alg}\"]"
            )),
            "identity.oidc[0].algorithms",
            "not allowed",
        );
    }
    assert_invalid(
        &issuer("issuer = \"https://i\"\naudience = \"\""),
        "identity.oidc[0].audience",
        "is empty",
    );
    assert_invalid(
        &issuer("issuer = \"https://i\"\naudience = \"a\"\nagents = [\"x\"]\nservices = [\"x\"]"),
        "identity.oidc[0].services",
        "one kind",
    );
    assert_invalid(
        &issuer("issuer = \"https://i\"\naudience = \"a\"\nmax_token_bytes = 100000"),
        "identity.oidc[0].max_token_bytes",
        "between",
    );
    assert_invalid(
        &format!("{}[identity]\nrevocation_poll = \"0s\"\n", minimal()),
        "identity.revocation_poll",
        "is zero",
    );
}

#[test]
fn an_issuer_that_vouches_for_anyone_needs_domains() {
    let google = |extra: &str| {
        format!(
            "{}[[identity.oidc]]\nissuer = \"https://accounts.google.com\"\naudience = \"portcullis\"\n{extra}\n",
            minimal()
        )
    };
    assert_invalid(
        &google(""),
        "identity.oidc[0].allowed_domains",
        "any account",
    );
    valid(&google("allowed_domains = [\"example.com\"]"));
    valid(&google("hosted_domain = \"example.com\""));
    assert_invalid(
        &google("allowed_domains = [\"alice@example.com\"]"),
        "identity.oidc[0].allowed_domains",
        "domains",
    );
}

#[test]
fn client_certificates_are_checked() {
    let tls = "[tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n";
    let files = &["server.crt", "server.key", "clients.pem", "clients.crl"];
    let with = |tls: &str, body: &str| {
        format!(
            "{}{tls}[identity.certificates]\nca_file = \"clients.pem\"\n{body}\n",
            minimal()
        )
    };
    let (_dir, path) = folder(&with(tls, "crl_files = [\"clients.crl\"]"), files);
    let c = Config::load(&path).unwrap();
    let certs = c.identity.certificates.as_ref().unwrap();
    assert_eq!(certs.name, "cn");
    assert!(!certs.groups_from_ou);

    let refused = |text: String, key: &str, words: &str| {
        let (_dir, path) = folder(&text, files);
        let (k, message) = load_invalid(&path);
        assert_eq!(k, key, "{message}");
        assert!(message.contains(words), "{message}");
    };
    refused(with("", ""), "identity.certificates", "needs [tls]");
    refused(
        with(tls, "crl_files = [\"missing.crl\"]"),
        "identity.certificates.crl_files",
        "missing.crl",
    );
    refused(
        with(tls, "name = \"CN\""),
        "identity.certificates.name",
        "one of cn",
    );
    refused(
        with(tls, "uri_prefix = \"spiffe://x/\""),
        "identity.certificates.uri_prefix",
        "name = \"uri\"",
    );
    refused(
        with(tls, "name = \"uri\"\nuri_prefix = \"\""),
        "identity.certificates.uri_prefix",
        "is empty",
    );
    refused(
        with(tls, "agents = [\"x\"]\nservices = [\"x\"]"),
        "identity.certificates.services",
        "one kind",
    );
    let (_dir, path) = folder(
        &with(
            tls,
            "name = \"uri\"\nuri_prefix = \"spiffe://corp.example/sa/\"",
        ),
        files,
    );
    Config::load(&path).unwrap();
}

#[test]
fn returned_limits_are_checked() {
    let limit = |body: &str| {
        format!(
            "{}[[limit]]\nname = \"agents\"\nkinds = [\"agent\"]\n{body}\n",
            minimal()
        )
    };
    let c = valid(&limit(
        "max_rows_returned = 1000\nmax_bytes_returned = 65536\nmax_rows_returned_per_session = 10000\nmax_bytes_returned_per_session = 1048576",
    ));
    let e = portcullis_config::effective_limits(
        &c.limits,
        portcullis_config::IdentityKind::Agent,
        "bot",
        &[],
    );
    assert_eq!(e.returned.rows, Some((1000, "agents".into())));
    assert_eq!(e.returned.session_bytes, Some((1048576, "agents".into())));
    for key in [
        "max_rows_returned",
        "max_bytes_returned",
        "max_rows_returned_per_session",
        "max_bytes_returned_per_session",
    ] {
        assert_invalid(
            &limit(&format!("{key} = 0")),
            &format!("limit \"agents\".{key}"),
            "is zero",
        );
    }
}

#[test]
fn rows_changed_limits_are_checked() {
    let limit = |body: &str| {
        format!(
            "{}[[limit]]\nname = \"agents\"\nkinds = [\"agent\"]\n{body}\n",
            minimal()
        )
    };
    let c = valid(&limit("max_rows_changed = 500"));
    assert_eq!(c.limits[0].max_rows_changed, Some(500));
    let e = portcullis_config::effective_limits(
        &c.limits,
        portcullis_config::IdentityKind::Agent,
        "bot",
        &[],
    );
    assert_eq!(
        e.rows_changed[0].window,
        portcullis_config::DEFAULT_ROWS_CHANGED_WINDOW
    );
    valid(&limit(
        "max_rows_changed = 5\nrows_changed_window = \"30s\"",
    ));
    assert_invalid(
        &limit("max_rows_changed = 0"),
        "limit \"agents\".max_rows_changed",
        "read-only role",
    );
    assert_invalid(
        &limit("rows_changed_window = \"1h\""),
        "limit \"agents\".rows_changed_window",
        "without max_rows_changed",
    );
    assert_invalid(
        &limit("max_rows_changed = 5\nrows_changed_window = \"0s\""),
        "limit \"agents\".rows_changed_window",
        "between 1s and 31d",
    );
    assert_invalid(
        &limit("max_rows_changed = 5\nrows_changed_window = \"40d\""),
        "limit \"agents\".rows_changed_window",
        "between 1s and 31d",
    );
}

#[test]
fn a_shared_control_store_is_checked_like_the_audit_store() {
    let with = |body: &str| format!("{}[identity]\n{body}\n", minimal());
    valid(&with(
        "postgres = \"postgres://portcullis@db.internal/control?sslmode=require\"\npostgres_password_env = \"PGPASS\"",
    ));
    valid(&with(
        "postgres = \"postgresql://p@127.0.0.1:5432/control?sslmode=disable\"",
    ));
    assert_invalid(
        &with("postgres = \"postgres://p:secret@db/control?sslmode=require\""),
        "identity.postgres",
        "holds a password",
    );
    assert_invalid(
        &with("postgres = \"postgres://p@db/control?sslmode=require&password=x\""),
        "identity.postgres",
        "holds a password",
    );
    assert_invalid(
        &with("postgres = \"postgres://p@db/control?sslmode=prefer\""),
        "identity.postgres",
        "sslmode=require",
    );
    assert_invalid(
        &with("postgres = \"host=db dbname=control\""),
        "identity.postgres",
        "not a PostgreSQL URL",
    );
    assert_invalid(
        &with("postgres_password_env = \"PGPASS\""),
        "identity.postgres_password_env",
        "without identity.postgres",
    );
    assert_invalid(
        &with("postgres = \"postgres://p@db/c?sslmode=disable\"\npostgres_ca_file = \"ca.pem\""),
        "identity.postgres_ca_file",
        "sslmode=disable",
    );
    assert_invalid(
        &with("postgres = \"postgres://p@db/c?sslmode=require\"\npostgres_password_env = \"A\"\npostgres_password_file = \"f\""),
        "identity.postgres_password_file",
        "give one",
    );
}

#[test]
fn approvals_are_checked() {
    let base = minimal();
    let c = valid(&format!(
        "{base}[approvals]\ntimeout = \"2m\"\nconsole_url = \"https://portcullis.example/approvals\"\n[[approvals.group]]\nname = \"dba\"\nrequired = 2\ndays = [\"mon\", \"fri\"]\nhours = \"08:00-18:00\"\n"
    ));
    assert_eq!(c.approvals.timeout.0, std::time::Duration::from_secs(120));
    assert_eq!(c.approvals.group("dba").required, 2);
    assert_eq!(c.approvals.group("ops").required, 1);
    assert_eq!(
        valid(&base).approvals.timeout.0,
        std::time::Duration::from_secs(600)
    );
    assert_invalid(
        &format!("{base}[approvals]\ntimeout = \"0s\"\n"),
        "approvals.timeout",
        "zero",
    );
    assert_invalid(
        &format!("{base}[approvals]\nconsole_url = \"javascript:alert(1)\"\n"),
        "approvals.console_url",
        "not an http(s) URL",
    );
    for (group, key, words) in [
        (
            "name = \"dba\"\nrequired = 0\n",
            "approvals.group[0].required",
            "zero",
        ),
        (
            "name = \"dba\"\ndays = [\"someday\"]\n",
            "approvals.group[0].days",
            "not a day",
        ),
        (
            "name = \"dba\"\nhours = \"8-18\"\n",
            "approvals.group[0].hours",
            "range of hours",
        ),
        ("name = \"\"\n", "approvals.group[0].name", "empty"),
    ] {
        assert_invalid(&format!("{base}[[approvals.group]]\n{group}"), key, words);
    }
    assert_invalid(
        &format!(
            "{base}[[approvals.group]]\nname = \"dba\"\n[[approvals.group]]\nname = \"dba\"\n"
        ),
        "approvals.group[1].name",
        "already configured",
    );
}

#[test]
fn approval_notifications_and_slack_are_checked() {
    let base = minimal();
    let c = valid(&format!(
        "{base}[approvals.notify]\nwebhook_url = \"https://hooks.example/approvals\"\n\
         [approvals.slack]\nsigning_secret_env = \"SLACK_SIGNING_SECRET\"\nusers = {{ U1 = \"alice\" }}\n"
    ));
    assert_eq!(c.approvals.slack.unwrap().users["U1"], "alice");
    assert_invalid(
        &format!("{base}[approvals.notify]\nwebhook_url = \"http://hooks.example/x\"\n"),
        "approvals.notify.webhook_url",
        "https",
    );
    assert_invalid(
        &format!("{base}[approvals.notify]\nwebhook_secret_env = \"S\"\n"),
        "approvals.notify.webhook_secret_env",
        "without webhook_url",
    );
    assert_invalid(
        &format!("{base}[approvals.slack]\nusers = {{}}\n"),
        "approvals.slack.signing_secret_env",
        "signing secret",
    );
    assert_invalid(
        &format!(
            "{base}[approvals.slack]\nsigning_secret_env = \"S\"\nusers = {{ U1 = \"nobody\" }}\n"
        ),
        "approvals.slack.users.U1",
        "not a configured [[user]]",
    );
    let agent = format!("{base}[[user]]\nname = \"bot\"\nkind = \"agent\"\nscram = \"{SCRAM}\"\n");
    assert_invalid(
        &format!(
            "{agent}[approvals.slack]\nsigning_secret_env = \"S\"\nusers = {{ U1 = \"bot\" }}\n"
        ),
        "approvals.slack.users.U1",
        "not a person",
    );
}
