//! Limits that depend on who the session is (the proxy works them out
//! from `[[limit]]` at login and hands them over in [`crate::Who`]):
//! today, the longest `statement_timeout` the session may run with.
//!
//! Portcullis sets `statement_timeout` at login to the limit (or the
//! client's own, when it is shorter). The server then enforces it; what is
//! judged here is every way the session could raise or disable it: SET
//! and SET LOCAL to 0, to more than the limit, or to a value the proxy
//! cannot read; set_config of it; a function's SET clause (in force while
//! the function runs); and the same inside DO blocks and function bodies.
//! RESET and SET ... TO DEFAULT go back to the login value and pass.

use portcullis_analysis::{SettingChange, SettingTarget, SettingValue};
use portcullis_wire::{sqlstate, Refusal};

/// The session's identity-dependent limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionLimits {
    /// The longest statement_timeout allowed, in milliseconds, and the
    /// name of the `[[limit]]` that sets it.
    pub statement_timeout: Option<(u64, String)>,
}

/// The first refusal the limits make of these setting changes and stored
/// settings (a statement's own, or the code inside it).
pub fn check<'a>(
    changes: impl IntoIterator<Item = &'a SettingChange>,
    stored: impl IntoIterator<Item = &'a String>,
    limits: &SessionLimits,
) -> Option<Refusal> {
    let (max, name) = limits.statement_timeout.as_ref()?;
    if stored.into_iter().any(|s| s == "statement_timeout") {
        return Some(refusal(*max, name));
    }
    for change in changes {
        if change.target != SettingTarget::Named("statement_timeout".into()) {
            continue;
        }
        let ok = match &change.value {
            SettingValue::Default => true,
            SettingValue::Values(v) if v.len() == 1 => {
                milliseconds(&v[0]).is_some_and(|ms| ms > 0 && ms <= *max)
            }
            _ => false,
        };
        if !ok {
            return Some(refusal(*max, name));
        }
    }
    None
}

fn refusal(max: u64, name: &str) -> Refusal {
    Refusal::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("statement_timeout may not be disabled or set above {max}ms, the limit \"{name}\" of this session"),
    )
    .hint("Set a shorter statement_timeout, or RESET it to the limit.")
}

/// A statement_timeout value as the server reads it (an integer or a
/// number, with an optional unit: us, ms, s, min, h, d; milliseconds
/// without one), rounded to whole milliseconds. `None` when the server
/// would read it some other way or not at all: the caller refuses.
pub fn milliseconds(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| {
            !(c.is_ascii_digit()
                || c == '.'
                || c == '-'
                || c == '+'
                || c == 'e'
                || c == 'E'
                || c == 'x'
                || c == 'X')
        })
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number = number.trim();
    let value: f64 = if let Some(hex) = number
        .strip_prefix("0x")
        .or_else(|| number.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else if number.len() > 1
        && number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit())
    {
        // strtol with base 0 reads a leading zero as octal.
        u64::from_str_radix(&number[1..], 8).ok()? as f64
    } else {
        number.parse::<f64>().ok()?
    };
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (value * scale).round();
    if !ms.is_finite() || ms < 0.0 || ms > i32::MAX as f64 {
        return None;
    }
    Some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_the_server_reads_them() {
        assert_eq!(milliseconds("5000"), Some(5000));
        assert_eq!(milliseconds("5s"), Some(5000));
        assert_eq!(milliseconds(" 5 s "), Some(5000));
        assert_eq!(milliseconds("1.5s"), Some(1500));
        assert_eq!(milliseconds("2min"), Some(120_000));
        assert_eq!(milliseconds("1h"), Some(3_600_000));
        assert_eq!(milliseconds("1500us"), Some(2));
        assert_eq!(milliseconds("0x10"), Some(16));
        assert_eq!(milliseconds("010"), Some(8));
        assert_eq!(milliseconds("0"), Some(0));
        assert_eq!(milliseconds("5 S"), None);
        assert_eq!(milliseconds("5sec"), None);
        assert_eq!(milliseconds("-1"), None);
        assert_eq!(milliseconds("1e12"), None);
        assert_eq!(milliseconds("soon"), None);
    }

    #[test]
    fn only_changes_within_the_limit_pass() {
        let limits = SessionLimits {
            statement_timeout: Some((30_000, "agents".into())),
        };
        let judge = |sql: &str| {
            let a = portcullis_analysis::analyze(sql).unwrap();
            let s = &a.statements[0];
            check(&s.settings, &s.stored_settings, &limits).is_some()
        };
        for refused in [
            "SET statement_timeout = 0",
            "SET statement_timeout = '31s'",
            "SET LOCAL statement_timeout TO 60000",
            "SELECT set_config('statement_timeout', '0', false)",
            "SELECT set_config('statement_timeout', $1, false)",
            "SET statement_timeout = '1 fortnight'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET statement_timeout = '1s' AS $$ SELECT 1 $$",
            "ALTER ROLE CURRENT_USER SET statement_timeout = 0",
        ] {
            assert!(judge(refused), "{refused}");
        }
        for passes in [
            "SET statement_timeout = '10s'",
            "SET statement_timeout = 30000",
            "RESET statement_timeout",
            "SET statement_timeout TO DEFAULT",
            "RESET ALL",
            "SET lock_timeout = 0",
        ] {
            assert!(!judge(passes), "{passes}");
        }
        assert!(check(&[], &[], &SessionLimits::default()).is_none());
    }
}
