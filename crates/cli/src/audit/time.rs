//! Times on the command line and in output. Records keep µs since the Unix
//! epoch (UTC); people write RFC 3339 (`2026-12-04T09:30:00Z`,
//! `2026-12-04T10:30:00+01:00`), a date (`2026-12-04`, midnight UTC) or an
//! age (`30d`, `12h`, `15m`, `45s`, `2w`: that long before now).

use portcullis_mask::datetime::{civil_from_days, days_from_civil};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MICROS_PER_SEC: i64 = 1_000_000;

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Parses an instant, an age counting back from `now`.
pub fn parse_instant(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(age) = parse_age(t) {
        let micros = age.ok_or_else(|| format!("{t:?} is too long ago"))?;
        return Ok(now.saturating_sub(micros));
    }
    parse_rfc3339(t).ok_or_else(|| {
        format!(
            "{t:?} is not a time: give RFC 3339 (2026-12-04T09:30:00Z), a date (2026-12-04) \
             or an age (30d, 12h, 15m, 45s)"
        )
    })
}

/// `<n><unit>` with unit s, m, h, d or w, as µs; `None` if `t` is not of
/// that form, `Some(None)` on overflow.
fn parse_age(t: &str) -> Option<Option<i64>> {
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    if split == 0 {
        return None;
    }
    let (num, unit) = t.split_at(split);
    let secs: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    let n: i64 = num.parse().ok()?;
    Some(
        n.checked_mul(secs)
            .and_then(|s| s.checked_mul(MICROS_PER_SEC)),
    )
}

/// A duration for `--for` and `--interval`: `<n><unit>` with unit ms, s,
/// m or h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!("{t:?} is not a duration: give a whole number and a unit (ms, s, m, h), such as 250ms or 10s")
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    })
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_rfc3339(t: &str) -> Option<i64> {
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (year, month, day) = (digits(y)?, digits(m)?, digits(d)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // Month and day were checked above: they fit in u32.
    let days = days_from_civil(year, month as u32, day as u32);
    let Some(rest) = rest else {
        return Some(days * 86_400 * MICROS_PER_SEC);
    };
    // hh:mm:ss[.frac](Z|±hh:mm)
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let mut hp = hms.split(':');
    let (h, mi, s) = (hp.next()?, hp.next()?, hp.next()?);
    if hp.next().is_some() || h.len() != 2 || mi.len() != 2 || s.len() != 2 {
        return None;
    }
    let (hour, minute, second) = (digits(h)?, digits(mi)?, digits(s)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let micros = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let mut padded: String = f.chars().take(6).collect();
            while padded.len() < 6 {
                padded.push('0');
            }
            padded.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let offset = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om) = (digits(oh)?, digits(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs * MICROS_PER_SEC + micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-04T09:30:00.123Z`.
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(MICROS_PER_SEC);
    let millis = us.rem_euclid(MICROS_PER_SEC) / 1000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_dates() {
        let t = parse_instant("2026-12-04T23:17:09Z", 0).unwrap();
        assert_eq!(t, 1_796_426_229_000_000);
        assert_eq!(format_micros(t), "2026-12-04T23:17:09.000Z");
        assert_eq!(
            parse_instant("2026-12-05T00:17:09.5+01:00", 0).unwrap(),
            t + 500_000
        );
        assert_eq!(
            parse_instant("2026-12-04 22:17:09.000001-01:00", 0).unwrap(),
            t + 1
        );
        assert_eq!(
            parse_instant("1970-01-01", 0).unwrap(),
            0,
            "a date is midnight UTC"
        );
        assert_eq!(
            format_micros(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(parse_instant("2000-02-29", 0).unwrap(), 951_782_400_000_000);
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999Z");
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-12-04T25:00:00Z",
            "2026-12-04T10:00:00",
            "26-12-04",
            "yesterday",
            "10x",
            "",
        ] {
            assert!(parse_instant(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages_count_back_from_now() {
        let now = 10_000_000_000_000;
        assert_eq!(
            parse_instant("30d", now).unwrap(),
            now - 30 * 86_400_000_000
        );
        assert_eq!(parse_instant("12h", now).unwrap(), now - 12 * 3_600_000_000);
        assert_eq!(parse_instant("15m", now).unwrap(), now - 15 * 60_000_000);
        assert_eq!(parse_instant("45s", now).unwrap(), now - 45_000_000);
        assert_eq!(parse_instant("1w", now).unwrap(), now - 604_800_000_000);
        assert_eq!(parse_instant("now", now).unwrap(), now);
        assert!(parse_instant("99999999999999999d", now).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
