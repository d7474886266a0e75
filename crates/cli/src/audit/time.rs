//! Times on the command line: RFC 3339 (`2026-12-04T10:00:00Z`), a date
//! (`2026-12-04`, midnight UTC), or an age (`30d`, `12h`, `15m`, `45s`:
//! that long before now). Records keep µs since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// µs since the epoch for `text`, relative ages counted back from `now`.
pub fn parse(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(n) = t[..t.len() - 1].parse::<i64>() {
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(format!("{t:?}: an age ends in s, m, h, d or w")),
            };
            return Ok(now - n.saturating_mul(secs).saturating_mul(1_000_000));
        }
    }
    rfc3339(t).ok_or_else(|| {
        format!("{t:?} is not a time: give 2026-12-04, 2026-12-04T10:00:00Z or an age such as 30d")
    })
}

/// `YYYY-MM-DD[THH:MM[:SS[.frac]]][Z|±HH:MM]` → µs since the epoch.
fn rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut micros = 0i64;
    let mut rest = &t[10..];
    if let Some(r) = rest.strip_prefix(['T', 't', ' ']) {
        let (h, mi) = (
            r.get(0..2)?.parse::<i64>().ok()?,
            r.get(3..5)?.parse::<i64>().ok()?,
        );
        if r.as_bytes().get(2) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        secs += h * 3600 + mi * 60;
        rest = &r[5..];
        if let Some(r) = rest.strip_prefix(':') {
            secs += r.get(0..2)?.parse::<i64>().ok().filter(|s| *s < 61)?;
            rest = &r[2..];
            if let Some(r) = rest.strip_prefix('.') {
                let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
                let mut frac = digits.clone();
                frac.truncate(6);
                while frac.len() < 6 {
                    frac.push('0');
                }
                micros = frac.parse().ok()?;
                rest = &r[digits.len()..];
            }
        }
        match rest {
            "" | "Z" | "z" => {}
            _ => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let (oh, om) = (
                    rest.get(1..3)?.parse::<i64>().ok()?,
                    rest.get(4..6)?.parse::<i64>().ok()?,
                );
                if rest.len() != 6 {
                    return None;
                }
                secs -= sign * (oh * 3600 + om * 60);
            }
        }
    } else if !rest.is_empty() {
        return None;
    }
    Some(secs * 1_000_000 + micros)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// µs since the epoch as `2026-12-04T10:00:00.123Z`.
pub fn format(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let ms = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil from days (the inverse of days_from_civil).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        let now = 1_000_000_000_000_000;
        assert_eq!(parse("30d", now).unwrap(), now - 30 * 86_400 * 1_000_000);
        assert_eq!(parse("15m", now).unwrap(), now - 15 * 60 * 1_000_000);
        assert_eq!(parse("1970-01-01", now).unwrap(), 0);
        assert_eq!(parse("1970-01-02T00:00:01Z", now).unwrap(), 86_401_000_000);
        assert_eq!(parse("1970-01-01T01:00:00+01:00", now).unwrap(), 0);
        assert_eq!(
            parse("2026-12-04T10:20:30.5Z", now).unwrap() % 1_000_000,
            500_000
        );
        assert!(parse("yesterday", now).is_err());
        assert!(parse("2026-13-01", now).is_err());
        assert!(parse("5x", now).is_err());
    }

    #[test]
    fn format_round_trips() {
        for t in [
            "2026-12-04T10:20:30.123Z",
            "1999-02-28T23:59:59.000Z",
            "2000-02-29T00:00:00.000Z",
        ] {
            assert_eq!(format(parse(t, 0).unwrap()), t);
        }
    }
}
