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
    /// The identity's rows changed are counted against a budget
    /// (`[[limit]] max_rows_changed`): every data-changing statement runs
    /// under a row limit, on every target.
    pub counts_rows: bool,
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
        match &change.target {
            // A computed name may be this one (also refused on its own).
            SettingTarget::Unknown => return Some(refusal(*max, name)),
            SettingTarget::Named(n) if n == "statement_timeout" => {}
            _ => continue,
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

/// A statement_timeout value as the server reads it (`parse_int` with
/// `convert_to_base_unit`): an integer (`strtol`, base 0: `0x` hex, a
/// leading `0` octal) or else a number (`strtod`), optional spaces, then
/// an optional unit (us, ms, s, min, h, d; milliseconds without one). A
/// fractional value is first rounded to whole units of the next smaller
/// unit (`min` to seconds, `s` to milliseconds, ...), then the result to a
/// whole millisecond, both half to even (`rint`). `None` when the server
/// would read it some other way or refuse it: the caller refuses too.
pub fn milliseconds(text: &str) -> Option<u64> {
    let t = text.trim_start();
    let (value, rest) = integer(t).or_else(|| float(t))?;
    // Units in the order of the server's table: each one's next is the
    // next smaller unit.
    const UNITS: [(&str, f64); 6] = [
        ("d", 86_400_000.0),
        ("h", 3_600_000.0),
        ("min", 60_000.0),
        ("s", 1_000.0),
        ("ms", 1.0),
        ("us", 0.001),
    ];
    let unit = rest.trim();
    let ms = if unit.is_empty() {
        value
    } else {
        let i = UNITS.iter().position(|(u, _)| *u == unit)?;
        let v = value * UNITS[i].1;
        match UNITS.get(i + 1) {
            Some((_, smaller)) => (v / smaller).round_ties_even() * smaller,
            None => v,
        }
    };
    let ms = ms.round_ties_even();
    if !ms.is_finite() || ms < 0.0 || ms > f64::from(i32::MAX) {
        return None;
    }
    Some(ms as u64)
}

/// `strtol(text, &end, 0)` on what follows leading spaces: the value and
/// the rest, when some digits were read and the rest is not a fraction or
/// exponent (then the server reads the text as a number instead).
fn integer(t: &str) -> Option<(f64, &str)> {
    let (negative, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits_start) = if body.len() > 2
        && (body.starts_with("0x") || body.starts_with("0X"))
        && body.as_bytes()[2].is_ascii_hexdigit()
    {
        (16, 2)
    } else if body.starts_with('0') {
        (8, 0)
    } else {
        (10, 0)
    };
    let digits = &body[digits_start..];
    let len = digits
        .bytes()
        .take_while(|b| (*b as char).is_digit(radix))
        .count();
    if len == 0 {
        return None;
    }
    let rest = &digits[len..];
    if rest.starts_with(['.', 'e', 'E']) && radix != 16 {
        return None;
    }
    let v = u64::from_str_radix(&digits[..len], radix).ok()? as f64;
    Some((if negative { -v } else { v }, rest))
}

/// `strtod` on what follows leading spaces: the longest prefix that is a
/// decimal number.
fn float(t: &str) -> Option<(f64, &str)> {
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += 1 + frac;
    }
    if int + frac == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp > 0 {
            i = j + exp;
        }
    }
    Some((t[..i].parse().ok()?, &t[i..]))
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
        // Rounded as the server rounds: half to even, and to whole units
        // of the next smaller unit first.
        assert_eq!(milliseconds("0.5"), Some(0));
        assert_eq!(milliseconds("1.5"), Some(2));
        assert_eq!(milliseconds("2.5"), Some(2));
        assert_eq!(milliseconds("500us"), Some(0));
        assert_eq!(milliseconds("0.5ms"), Some(0));
        assert_eq!(milliseconds("0.008min"), Some(0));
        assert_eq!(milliseconds("0.0001h"), Some(0));
        assert_eq!(milliseconds("0.01h"), Some(60_000));
        assert_eq!(milliseconds("0.5s"), Some(500));
        assert_eq!(milliseconds("1e3"), Some(1000));
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
            counts_rows: false,
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
            "SET statement_timeout = '0.5'",
            "SET statement_timeout = '500us'",
            "SET statement_timeout = '0.0001h'",
            "SET statement_timeout = '0.01h'",
            "SELECT set_config('statement_timeoutX'::varchar(17), '0', false)",
            "SELECT set_config('statement_timeout', '01'::varchar(1), false)",
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
