//! Settings that decide how the server reads statement text, and the
//! proxy's own settings: neither may be changed by a client.
//!
//! The analysis reads SQL text as PostgreSQL does with
//! `standard_conforming_strings = on` in a client encoding where every
//! quote and backslash byte is that character. Two settings break that:
//! `standard_conforming_strings = off` makes a backslash escape a quote in
//! an ordinary literal, and in the client-only encodings (SJIS, BIG5, GBK,
//! ...) a quote or backslash byte can be the second half of a character.
//! Either way one text splits into different statements for the proxy and
//! for the server (the CVE-2006-2313 family). The server announces such a
//! change with ParameterStatus only at the end of the request that made
//! it, and not at all for `SET LOCAL` or `set_config(..., true)` until then,
//! while the client may have pipelined more text behind it. So a change is
//! refused when it is judged, in every form the analysis reports (SET, SET
//! LOCAL, SET NAMES, set_config anywhere, RESET to a value other than the
//! login one is impossible for these); `ALTER ROLE/DATABASE ... SET` is a
//! refused capability of its own. Setting the safe value stays allowed.
//!
//! Writes to `pg_settings` go through that view's rule to `set_config`
//! with a name taken from the rows: any setting at all, so they are refused
//! too.
//!
//! Settings named `portcullis.*` hold the proxy's bookkeeping (the row
//! limit's counts) and the identity it tells the server
//! (`portcullis.identity`, `portcullis.identity_kind`,
//! `portcullis.on_behalf_of`); `application_name` names who is connected.
//! A client that could write them could rewrite the check, or pass for
//! someone else in the server's logs and row-level security. SET, SET
//! LOCAL, RESET and set_config of them are refused; RESET ALL and DISCARD
//! ALL return them to the values Portcullis gave at login, and pass.
//! set_config with a computed name could be any of these, so it is
//! refused too.

use portcullis_analysis::{ActionKind, Execution, SettingTarget, SettingValue, StatementFacts};
use portcullis_wire::{sqlstate, Refusal};

use crate::encoding;

/// The first reason `stmt` may not be let through, if any.
pub fn check(stmt: &StatementFacts) -> Option<Refusal> {
    // A function's SET clause is in force while it runs (its statements
    // would run under another application_name or portcullis.identity);
    // role, database and system defaults lose to the startup values, but
    // are refused alike: one rule, no exceptions to reason about.
    if let Some(name) = stmt.stored_settings.iter().find(|n| proxy_owned(n)) {
        return Some(
            Refusal::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("{name} is set by Portcullis and cannot be stored in a function, role, database or system setting"),
            )
            .hint("Remove this setting from the statement."),
        );
    }
    for change in &stmt.settings {
        if change.execution == Execution::Never {
            continue;
        }
        let name = match &change.target {
            SettingTarget::Named(name) => name,
            SettingTarget::All => continue,
            SettingTarget::Unknown => return Some(
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "Portcullis does not allow set_config with a setting name computed at run time",
                )
                .hint("Name the setting with a constant, which Portcullis can judge."),
            ),
        };
        if name == "application_name" {
            return Some(
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "application_name is set by Portcullis to name who is connected, and cannot be changed",
                )
                .hint("Give your application's name as the application_name connection parameter: the database sees it next to your identity."),
            );
        }
        if name.starts_with("portcullis.") {
            return Some(
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "settings named portcullis.* are reserved for Portcullis",
                )
                .hint("Use another prefix for custom settings."),
            );
        }
        match name.as_str() {
            // With counting off, row limits and rows-changed budgets would
            // count nothing (the counting statements also refuse to pass
            // while it is off).
            "track_counts" => {
                return Some(
                    Refusal::error(
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        "Portcullis does not allow changing track_counts: row limits count changed rows with it",
                    )
                    .hint("Leave track_counts on."),
                );
            }
            "standard_conforming_strings" if !safe_conforming_strings(&change.value) => {
                return Some(unsupported(
                    "Portcullis does not allow changing standard_conforming_strings".into(),
                    "With it off, backslashes change where string literals end; keep it on and use E'...' literals for escapes.",
                ));
            }
            "client_encoding" if !safe_client_encoding(&change.value) => {
                return Some(unsupported(
                    format!(
                        "Portcullis does not allow client_encoding {}",
                        shown_value(&change.value)
                    ),
                    "In the client-only encodings (SJIS, BIG5, GBK, GB18030, UHC, JOHAB, SHIFT_JIS_2004) a quote or backslash byte can hide inside a character; use UTF8 or another server encoding.",
                ));
            }
            _ => {}
        }
    }
    for action in &stmt.actions {
        if action.execution == Execution::Never {
            continue;
        }
        let table = match &action.kind {
            ActionKind::Update { table, .. }
            | ActionKind::Delete { table, .. }
            | ActionKind::Insert { table, .. }
            | ActionKind::Merge { table, .. } => table,
            _ => continue,
        };
        if table.name == "pg_settings" && table.schema.as_deref().is_none_or(|s| s == "pg_catalog")
        {
            return Some(
                Refusal::error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    "Portcullis does not allow changing settings through pg_settings",
                )
                .hint("Use SET or set_config() with a constant setting name, which Portcullis can judge."),
            );
        }
    }
    None
}

/// The settings Portcullis gives the session and a client may not change.
fn proxy_owned(name: &str) -> bool {
    name == "application_name" || name.starts_with("portcullis.")
}

/// Whether statement text may read differently while a change of the
/// client encoding or of string syntax may be taking effect: only text
/// with a backslash or a non-ASCII byte can.
pub fn sensitive(text: &[u8]) -> bool {
    text.iter().any(|&b| b == b'\\' || b >= 0x80)
}

/// The refusal for sensitive text sent while the lexer is unsettled.
pub fn unsettled() -> Refusal {
    Refusal::error(
        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
        "statement refused by Portcullis: it was sent before the server confirmed an earlier statement that may change how text is read",
    )
    .hint("Wait for the replies to the earlier statements (after Sync) before sending text with backslashes or non-ASCII characters.")
}

/// Whether a setting given as text at session start (a startup parameter
/// or `options -c name=value`) keeps text readable by the analysis.
/// `name` in lower case.
pub fn safe_startup_setting(name: &str, value: &str) -> bool {
    let value = SettingValue::Values(vec![value.to_owned()]);
    match name {
        "standard_conforming_strings" => safe_conforming_strings(&value),
        "client_encoding" => safe_client_encoding(&value),
        _ => true,
    }
}

fn one_value(value: &SettingValue) -> Option<&str> {
    match value {
        SettingValue::Values(v) if v.len() == 1 => Some(&v[0]),
        _ => None,
    }
}

fn safe_conforming_strings(value: &SettingValue) -> bool {
    // RESET returns to the login value, which was on (the session would
    // have ended otherwise).
    *value == SettingValue::Default
        || one_value(value).is_some_and(|v| {
            ["on", "true", "yes", "1"]
                .iter()
                .any(|ok| v.trim().eq_ignore_ascii_case(ok))
        })
}

fn safe_client_encoding(value: &SettingValue) -> bool {
    *value == SettingValue::Default
        || one_value(value).is_some_and(|v| {
            v.eq_ignore_ascii_case("default")
                || encoding::canonical(v).is_some_and(|c| !encoding::CLIENT_ONLY.contains(&c))
        })
}

fn shown_value(value: &SettingValue) -> String {
    one_value(value)
        .unwrap_or("(computed)")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

fn unsupported(message: String, hint: &str) -> Refusal {
    Refusal::error(sqlstate::FEATURE_NOT_SUPPORTED, message).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> bool {
        let a = portcullis_analysis::analyze(sql).expect("parses");
        a.statements.iter().any(|s| check(s).is_some())
    }

    #[test]
    fn lexer_settings_are_refused_in_every_form() {
        for sql in [
            "SET standard_conforming_strings = off",
            "SET LOCAL standard_conforming_strings TO 'off'",
            "SET SESSION standard_conforming_strings = false",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT 1 WHERE set_config('standard_conforming_strings', 'off', true) IS NULL",
            "SET client_encoding = 'SJIS'",
            "SET client_encoding TO 'Win-950'",
            "SET NAMES 'gbk'",
            "SELECT set_config('client_encoding', 'mskanji', true)",
            "SET client_encoding = 'no_such_encoding'",
            "SET standard_conforming_strings = $$off$$",
            "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
            "UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'search_path'",
            "WITH u AS (UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path' RETURNING 1) SELECT * FROM u",
            "SELECT set_config('portcullis.row_base', '100000', true)",
            "SET portcullis.row_base = 0",
            "RESET portcullis.row_base",
            "PREPARE p AS SELECT set_config('standard_conforming_strings', 'off', false)",
        ] {
            assert!(refused(sql), "{sql}");
        }
    }

    #[test]
    fn the_identity_settings_are_refused_in_every_form() {
        for sql in [
            "SET application_name = 'someone else'",
            "SET LOCAL application_name TO 'x'",
            "SET SESSION \"Application_Name\" = 'x'",
            "RESET application_name",
            "SET application_name TO DEFAULT",
            "SELECT set_config('application_name', 'x', false)",
            "SELECT set_config('APPLICATION_NAME', 'x', true)",
            "WITH s AS (SELECT set_config('application_name', 'x', false)) SELECT * FROM s",
            "SELECT 1 FROM pg_class WHERE set_config('portcullis.identity', 'bob', false) IS NOT NULL",
            "SET portcullis.identity = 'bob'",
            "SET \"portcullis.IDENTITY\" = 'bob'",
            "RESET portcullis.identity_kind",
            "SET LOCAL portcullis.on_behalf_of = 'x'",
            "PREPARE p AS SELECT set_config('portcullis.identity', $1, false)",
            "SELECT set_config(name, 'x', false) FROM (VALUES ('application_name')) v(name)",
            "SELECT set_config($1, $2, false)",
            "SELECT set_config('application_name   '::char(19), 'x', false)",
            "SELECT set_config('application_nameX'::varchar(16), 'x', false)",
            "SELECT set_config('portcullis.identityX'::name, 'x', false)",
            // A bare `text` may be a domain in pg_temp (types are looked
            // up there first).
            "SELECT set_config('application_name'::text, 'x', false)",
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql SET application_name = 'x' AS $$ SELECT 1::text $$",
            "ALTER FUNCTION f() SET portcullis.identity = 'bob'",
            "CREATE PROCEDURE p() LANGUAGE sql SET \"Application_Name\" FROM CURRENT AS $$ SELECT 1 $$",
            "ALTER ROLE alice SET application_name = 'x'",
            "ALTER DATABASE d RESET portcullis.identity",
            "ALTER SYSTEM SET application_name = 'x'",
        ] {
            assert!(refused(sql), "{sql}");
        }
        for sql in [
            "RESET ALL",
            "DISCARD ALL",
            "SELECT current_setting('application_name')",
        ] {
            assert!(!refused(sql), "{sql}");
        }
    }

    #[test]
    fn the_safe_values_stay_allowed() {
        for sql in [
            "SET standard_conforming_strings = on",
            "SET standard_conforming_strings TO true",
            "RESET standard_conforming_strings",
            "SET client_encoding = 'UTF8'",
            "SET client_encoding = 'latin1'",
            "SET NAMES 'EUC_JP'",
            "RESET client_encoding",
            "SET client_encoding TO DEFAULT",
            "RESET ALL",
            "SELECT * FROM pg_settings WHERE name = 'search_path'",
            "SELECT set_config('myapp.user', 'x', false)",
            "EXPLAIN UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
        ] {
            assert!(!refused(sql), "{sql}");
        }
    }

    #[test]
    fn sensitive_text() {
        assert!(!sensitive(b"SELECT 'a' FROM t"));
        assert!(sensitive(b"SELECT 'a\\'"));
        assert!(sensitive("SELECT 'é'".as_bytes()));
    }
}
