//! `portcullis discover`, the real binary against a real database: columns
//! whose names say nothing get classes proposed from their values, the
//! file carries counts and never a value, and once the configuration
//! includes it the proxy masks those columns by their class.

use std::path::Path;
use std::process::{Command, Output};

use tokio_postgres::SimpleQueryMessage;

use crate::harness::*;
use crate::masking::forms;
use portcullis_testbed::{test_role_password, TLS_ONLY_USER};

const EMAILS: [&str; 3] = [
    "alice.smithson@example.com",
    "bob.okonkwo@example.org",
    "carol.diaz@example.net",
];
/// Luhn-valid, with issuer prefixes valid for their length.
const CARDS: [&str; 3] = [
    "4539148803436467",
    "5375123456789011",
    "4111 1111 1111 1111",
];
/// Valid-range SSNs.
const SSNS: [&str; 3] = ["536-22-8174", "078-05-1120", "219-45-6723"];

/// GitHub tokens with correct checksums.
fn tokens() -> Vec<String> {
    [
        *b"Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y",
        *b"aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1",
    ]
    .iter()
    .map(|r| portcullis_mask::detect::github_token("ghp_", r))
    .collect()
}

fn seed() -> String {
    let t = tokens();
    format!(
        "
CREATE TABLE accounts (
    id int PRIMARY KEY,
    notes text,      -- emails
    c1 varchar(40),  -- cards
    c2 char(11),     -- SSNs
    c3 text,         -- tokens
    email text,      -- classified by its name already
    label text,      -- emails, but a comment says not sensitive
    remarks text,    -- one email in four values
    plain text,      -- nothing sensitive
    code text,       -- digits that are no card
    amount int
);
COMMENT ON COLUMN accounts.label IS 'pii:none';
INSERT INTO accounts VALUES
 (1, '{e0}', '{c0}', '{s0}', '{t0}', '{e0}', '{e0}', 'call back', 'prefers mornings', '1234567890123', 10),
 (2, '{e1}', '{c1}', '{s1}', '{t1}', '{e1}', '{e1}', 'wrote to {e2}', 'vip', '9999', 20),
 (3, '{e2}', '{c2}', '{s2}', '{t0}', '{e2}', '{e2}', 'ok', 'new', '000-00-0000', 30),
 (4, NULL, 'n/a', NULL, NULL, NULL, NULL, 'ok', 'returning', '42', 40);
CREATE MATERIALIZED VIEW contacts AS SELECT id, notes AS reach FROM accounts;
",
        e0 = EMAILS[0],
        e1 = EMAILS[1],
        e2 = EMAILS[2],
        c0 = CARDS[0],
        c1 = CARDS[1],
        c2 = CARDS[2],
        s0 = SSNS[0],
        s1 = SSNS[1],
        s2 = SSNS[2],
        t0 = t[0],
        t1 = t[1],
    )
}

fn discover(config: &Path, args: &[&str]) -> Output {
    discover_target(config, "app", args)
}

fn discover_target(config: &Path, target: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("discover")
        .arg("--config")
        .arg(config)
        .args(["--target", target])
        .args(args)
        .output()
        .expect("spawn portcullis discover")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Panics if any form of any seeded value appears in `text`.
fn assert_no_seeded_value(what: &str, text: &str) {
    let lower = text.to_lowercase();
    let digits: String = lower.chars().filter(char::is_ascii_digit).collect();
    let tokens = tokens();
    let seeded = EMAILS
        .iter()
        .chain(&CARDS)
        .chain(&SSNS)
        .copied()
        .chain(tokens.iter().map(String::as_str));
    for v in seeded {
        for f in forms(v) {
            let f = f.to_lowercase();
            let hay = if f.chars().all(|c| c.is_ascii_digit()) {
                &digits
            } else {
                &lower
            };
            assert!(!hay.contains(&f), "{what}: holds {v:?} as {f:?}:\n{text}");
        }
        // Not even a part: the local part of an email, a token's body.
        if let Some((local, _)) = v.split_once('@') {
            assert!(
                !lower.contains(local),
                "{what}: holds part of {v:?}:\n{text}"
            );
        }
        if let Some(body) = v.strip_prefix("ghp_") {
            assert!(
                !text.contains(&body[..12]),
                "{what}: holds part of {v:?}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_proposes_classes_from_content_and_the_proxy_masks_by_them() {
    // The target reaches PostgreSQL over TLS: discover connects as the
    // proxy does, with the target's settings.
    let proxy = Proxy::with(Setup {
        target_extra: "sslmode = \"require\"".into(),
        ..Setup::default()
    })
    .await;
    proxy.upstream_sql(&seed());
    let select = "SELECT notes, c1, c2, c3, label, plain, code FROM accounts ORDER BY id";

    // Before: nothing classifies these columns (their names say nothing),
    // so only what the content detectors find is hidden; a comment saying
    // `pii:none` is taken at its word.
    let before = rows(&proxy.client().await, select).await;
    assert_ne!(before[0][0].as_deref(), Some(EMAILS[0]));
    assert_ne!(before[0][1].as_deref(), Some(CARDS[0]));
    assert_eq!(before[0][4].as_deref(), Some(EMAILS[0]));

    let config = proxy.config_path.clone();
    let out = proxy.dir.path().join("discovered.toml");
    let run = tokio::task::spawn_blocking({
        let config = config.clone();
        let out = out.clone();
        move || discover(&config, &["--out", out.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(
        run.status.success(),
        "discover failed: {}",
        text(&run.stderr)
    );
    let stderr = text(&run.stderr);
    assert!(stderr.contains("5 proposal(s)"), "{stderr}");
    let file = std::fs::read_to_string(&out).unwrap();

    let entry = |column: &str, class: &str| {
        format!("[[column]]\ntarget = \"app\"\ncolumn = \"public.{column}\"\nclass = \"{class}\"\n")
    };
    for (column, class, evidence) in [
        ("accounts.notes", "email", "email in 3 of 3 values (100%)"),
        ("accounts.c1", "card", "card in 3 of 4 values (75%)"),
        (
            "accounts.c2",
            "national_id",
            "national_id in 3 of 3 values (100%)",
        ),
        ("accounts.c3", "token", "token in 3 of 3 values (100%)"),
        ("contacts.reach", "email", "email in 3 of 3 values (100%)"),
    ] {
        let at = file
            .find(&entry(column, class))
            .unwrap_or_else(|| panic!("no {class} entry for {column}:\n{file}"));
        let comment = file[..at].lines().last().unwrap();
        assert_eq!(comment, format!("# public.{column}: {evidence}"), "{file}");
    }
    assert_eq!(file.matches("[[column]]\n").count(), 5, "{file}");
    assert!(
        file.contains("#   public.accounts.email: email, by its name or comment; the values agree: email in 3 of 3 values (100%)"),
        "{file}"
    );
    assert!(
        file.contains("#   public.accounts.label: not sensitive, by its name or comment; CHECK IT, the values say: email in 3 of 3 values (100%)"),
        "{file}"
    );
    assert!(
        file.contains("#   public.accounts.remarks: email in 1 of 4 values (25%)"),
        "{file}"
    );
    for clean in ["plain", "code", "amount", "accounts.id", "contacts.id"] {
        assert!(!file.contains(clean), "{clean} is mentioned:\n{file}");
    }
    assert_no_seeded_value("the discovered file", &file);
    assert_no_seeded_value(
        "discover's messages",
        &format!("{stderr}{}", text(&run.stdout)),
    );

    // The file is not replaced without --force; on standard output, or
    // with --force, a second run writes the same.
    let again = discover(&config, &["--out", out.to_str().unwrap()]);
    assert!(!again.status.success());
    let err = text(&again.stderr);
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), file);
    let printed = discover(&config, &[]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    assert_eq!(text(&printed.stdout), file);
    let forced = discover(&config, &["--out", out.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), file);
    let unknown = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["discover", "--target", "nope", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no target is named \"nope\""));

    // Include it; check-config reads it, and a reload applies it.
    let mut with_include = std::fs::read_to_string(&config).unwrap();
    with_include.push_str("\n[masking]\ninclude = [\"discovered.toml\"]\n");
    std::fs::write(&config, &with_include).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config: {}",
        text(&check.stderr)
    );
    let handle = proxy.handle.clone();
    tokio::task::spawn_blocking(move || handle.reload_from_source())
        .await
        .unwrap()
        .expect("reload with the included file");

    // After: each column is masked by its class's strategy.
    let after = rows(&proxy.client().await, select).await;
    let [notes, card, ssn, token, label, plain, code] = &after[0][..] else {
        panic!("{after:?}")
    };
    let notes = notes.as_deref().unwrap();
    assert!(
        notes.starts_with('a') && notes.ends_with("@example.com"),
        "{notes}"
    );
    assert_ne!(notes, EMAILS[0]);
    let card = card.as_deref().unwrap();
    assert!(card.ends_with("6467") && !card.contains("453914"), "{card}");
    assert_eq!(ssn.as_deref(), Some("***-**-8174"));
    assert_eq!(token.as_deref(), Some("****"));
    // A comment that says "not sensitive" still decides; the file only
    // flagged it for review.
    assert_eq!(label.as_deref(), Some(EMAILS[0]));
    assert_eq!(plain.as_deref(), Some("prefers mornings"));
    assert_eq!(code.as_deref(), Some("1234567890123"));
    let reach = rows(
        &proxy.client().await,
        "SELECT reach FROM contacts ORDER BY id",
    )
    .await;
    assert_ne!(reach[0][0].as_deref(), Some(EMAILS[0]));
    assert_no_seeded_value(
        "masked columns",
        &format!("{:?}", after.iter().map(|r| &r[..4]).collect::<Vec<_>>()),
    );
}

/// A role that may read part of the database: what it may not read is
/// listed by SQLSTATE (the server's message is never shown), the rest is
/// sampled. The role logs in with SCRAM over TLS, as the target says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_what_the_role_may_not_read_and_samples_the_rest() {
    let db = tokio::task::spawn_blocking(|| portcullis_testbed::fresh_database("e2e"))
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("limited.pw");
    std::fs::write(&pw, test_role_password(TLS_ONLY_USER)).unwrap();
    let extra = format!(
        "[[target]]\nname = \"limited\"\nenvironment = \"development\"\nhost = \"127.0.0.1\"\n\
         port = {port}\ndatabase = \"{db}\"\nuser = \"{TLS_ONLY_USER}\"\npassword_file = \"{pw}\"\n\
         sslmode = \"require\"\n",
        port = cluster().port(),
        pw = pw.display(),
    );
    let proxy = Proxy::with_db(
        Setup {
            extra,
            ..Setup::default()
        },
        db,
    )
    .await;
    proxy.upstream_sql(&format!(
        "CREATE TABLE hidden (id int, notes text);
         INSERT INTO hidden VALUES (1, '{e0}');
         CREATE TABLE partly (id int, notes text, other text);
         INSERT INTO partly VALUES (1, '{e0}', '{e1}'), (2, '{e1}', '{e2}');
         GRANT SELECT (id, notes) ON partly TO {TLS_ONLY_USER};",
        e0 = EMAILS[0],
        e1 = EMAILS[1],
        e2 = EMAILS[2],
    ));
    let config = proxy.config_path.clone();
    let run = tokio::task::spawn_blocking(move || discover_target(&config, "limited", &[]))
        .await
        .unwrap();
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let file = text(&run.stdout);
    assert!(
        file.contains("[[column]]\ntarget = \"limited\"\ncolumn = \"public.partly.notes\"\nclass = \"email\"\n"),
        "{file}"
    );
    assert_eq!(file.matches("[[column]]\n").count(), 1, "{file}");
    assert!(
        file.contains("# Not sampled:\n#   public.hidden: permission denied (SQLSTATE 42501)\n#   public.partly.other: permission denied (SQLSTATE 42501)\n"),
        "{file}"
    );
    assert!(
        stderr.contains("2 relation(s) or column(s) could not be sampled"),
        "{stderr}"
    );
    assert_no_seeded_value("the discovered file", &file);
    assert_no_seeded_value("discover's messages", &stderr);
}
