//! Dates and times on the wire. Binary: `date` is i32 days and `timestamp`
//! / `timestamptz` i64 microseconds since 2000-01-01 (UTC for timestamptz),
//! `time` i64 microseconds since midnight; the extreme values mean
//! ±infinity (`datatype/timestamp.h`). Text: the ISO DateStyle, the one
//! every driver that decodes dates sets (pgjdbc insists on it); a text
//! value not in it is replaced by the type's constant, never kept.

/// Days from 1970-01-01 to 2000-01-01 (`POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE`).
pub const PG_EPOCH_DAYS: i64 = 10_957;
pub const USECS_PER_DAY: i64 = 86_400_000_000;
pub const USECS_PER_HOUR: i64 = 3_600_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 = 1 BC).
/// Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            era * 400 + yoe + 1
        } else {
            era * 400 + yoe
        },
        m,
        d,
    )
}

/// Binary `date` → the first day of its year. Infinities stay.
pub fn date_to_year(days: i32) -> i32 {
    if days == i32::MAX || days == i32::MIN {
        return days;
    }
    let (y, _, _) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
    let first = days_from_civil(y, 1, 1) - PG_EPOCH_DAYS;
    // The first day of a year is never further from the epoch than a day
    // of that year, so it fits.
    i32::try_from(first).unwrap_or(days)
}

/// Binary `timestamp[tz]` → midnight on the first day of its year (UTC).
pub fn timestamp_to_year(usecs: i64) -> i64 {
    if usecs == i64::MAX || usecs == i64::MIN {
        return usecs;
    }
    let days = usecs.div_euclid(USECS_PER_DAY) + PG_EPOCH_DAYS;
    let (y, _, _) = civil_from_days(days);
    (days_from_civil(y, 1, 1) - PG_EPOCH_DAYS).saturating_mul(USECS_PER_DAY)
}

/// Appends `YYYY-MM-DD` (with ` BC` last, as PostgreSQL writes it, when
/// `bc`) for days since 1970.
pub fn write_date(days: i64, out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    write_ymd(year, m, d, out);
    if bc {
        out.extend_from_slice(b" BC");
    }
}

fn write_ymd(year: i64, m: u32, d: u32, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{year:04}-{m:02}-{d:02}");
}

/// Appends `HH:MM:SS` for seconds since midnight.
pub fn write_time(secs: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// The year of an ISO text date or timestamp (`2024-05-03`,
/// `2024-05-03 10:00:00+02`, `0044-03-15 BC`): its digits and whether it
/// is BC. None when the text is not ISO.
pub fn iso_year(text: &[u8]) -> Option<(&[u8], bool)> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    // Years have at least four digits in ISO output and at most six
    // (timestamps end in 294276 AD).
    if !(4..=7).contains(&digits) {
        return None;
    }
    let rest = &text[digits..];
    let month_day = rest.get(..6)?;
    if month_day[0] != b'-' || month_day[3] != b'-' {
        return None;
    }
    if !month_day[1..3]
        .iter()
        .chain(&month_day[4..6])
        .all(u8::is_ascii_digit)
    {
        return None;
    }
    Some((&text[..digits], text.ends_with(b" BC")))
}

/// The first day of the year of an ISO text date/timestamp, in the same
/// text shape: `time` appends midnight and `zone` a UTC offset.
pub fn write_text_year(text: &[u8], time: bool, zone: bool, out: &mut Vec<u8>) -> bool {
    let Some((year, bc)) = iso_year(text) else {
        return false;
    };
    out.extend_from_slice(year);
    out.extend_from_slice(b"-01-01");
    if time {
        out.extend_from_slice(b" 00:00:00");
    }
    if zone {
        out.extend_from_slice(b"+00");
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
    true
}

/// `HH:MM:SS[.ffffff]` → its hour, when the text is a time of day.
pub fn text_hour(text: &[u8]) -> Option<u32> {
    if text.len() < 8 || text[2] != b':' || text[5] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        let (a, b) = (text[i], text[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    };
    let hour = two(0)?;
    (hour <= 24 && two(3)? < 60 && two(6)? < 61).then_some(hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-1_000_000, -719_468, -1, 0, 1, 10_957, 59, 60, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 1, 1), PG_EPOCH_DAYS);
        assert_eq!(civil_from_days(19_846), (2024, 5, 3));
    }

    #[test]
    fn years() {
        // 2024-05-03 is day 8889 after 2000-01-01; 2024-01-01 is 8766.
        assert_eq!(date_to_year(8889), 8766);
        assert_eq!(
            date_to_year(-1),
            days_from_civil(1999, 1, 1) as i32 - PG_EPOCH_DAYS as i32
        );
        assert_eq!(date_to_year(i32::MAX), i32::MAX);
        let ts = 8889 * USECS_PER_DAY + 12 * USECS_PER_HOUR + 17;
        assert_eq!(timestamp_to_year(ts), 8766 * USECS_PER_DAY);
        assert_eq!(timestamp_to_year(i64::MIN), i64::MIN);
        // Far ends of the i64 range do not overflow.
        let _ = timestamp_to_year(i64::MAX - 1);
        let _ = timestamp_to_year(i64::MIN + 1);
    }

    #[test]
    fn text_forms() {
        let mut out = Vec::new();
        assert!(write_text_year(
            b"2024-05-03 10:11:12.5+02",
            true,
            true,
            &mut out
        ));
        assert_eq!(out, b"2024-01-01 00:00:00+00");
        out.clear();
        assert!(write_text_year(b"0044-03-15 BC", false, false, &mut out));
        assert_eq!(out, b"0044-01-01 BC");
        assert!(!write_text_year(b"03.05.2024", false, false, &mut out));
        assert!(!write_text_year(b"infinity", false, false, &mut out));
        out.clear();
        write_date(0, &mut out);
        assert_eq!(out, b"1970-01-01");
        out.clear();
        write_date(days_from_civil(-43, 3, 15), &mut out);
        assert_eq!(out, b"0044-03-15 BC");
        assert_eq!(text_hour(b"13:45:00.123"), Some(13));
        assert_eq!(text_hour(b"1:45"), None);
    }
}
