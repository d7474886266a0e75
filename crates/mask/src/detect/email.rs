//! Email addresses: `local@domain.tld` where the TLD is a real one (see
//! [`super::tld`]). With an email context the TLD check is dropped, so
//! `root@localhost` in an `email` column is still found.

use super::scan::{at as byte_at, before};
use super::tld::is_tld;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The address around the `@` at `at`: its (start, end).
pub(super) fn at(text: &[u8], at: usize, any_domain: bool) -> Option<(usize, usize)> {
    // The local part, read backwards and bounded so that a long run before
    // an `@` costs at most MAX_LOCAL steps.
    let mut start = at;
    while start > 0 && is_local_byte(text[start - 1]) {
        start -= 1;
        if at - start > MAX_LOCAL {
            return None;
        }
    }
    while start < at && matches!(text[start], b'.' | b'\'') {
        start += 1;
    }
    if start == at || text[at - 1] == b'.' || before(text, start) == Some(b'@') {
        return None;
    }

    // The domain: labels split by single dots; a trailing dot ends a sentence.
    let mut end = at + 1;
    let mut labels = 0;
    let mut last_label = end..end;
    loop {
        let len = text[end..]
            .iter()
            .take(MAX_LABEL + 1)
            .take_while(|&&b| is_label_byte(b))
            .count();
        if len == 0 || len > MAX_LABEL || text[end] == b'-' || text[end + len - 1] == b'-' {
            if labels == 0 {
                return None;
            }
            break;
        }
        labels += 1;
        last_label = end..end + len;
        end += len;
        if end - at > MAX_DOMAIN {
            return None;
        }
        match (byte_at(text, end), byte_at(text, end + 1)) {
            (Some(b'.'), Some(b)) if is_label_byte(b) => end += 1,
            _ => break,
        }
    }
    // A label cut short by the checks above leaves `end` past a dot.
    end = last_label.end;
    if byte_at(text, end) == Some(b'@') {
        return None;
    }
    let tld = &text[last_label];
    let valid = if any_domain {
        true
    } else {
        labels >= 2 && tld.iter().any(u8::is_ascii_alphabetic) && is_tld(tld)
    };
    valid.then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str, any_domain: bool) -> Option<&str> {
        let t = text.as_bytes();
        let a = t.iter().position(|&b| b == b'@')?;
        at(t, a, any_domain).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn positives() {
        for (text, email) in [
            ("mail jane.doe@example.com now", "jane.doe@example.com"),
            (
                "<john+tag@mail.example.co.uk>",
                "john+tag@mail.example.co.uk",
            ),
            ("write to a@b.io.", "a@b.io"),
            ("\"x_y-z@sub.domain.dev\"", "x_y-z@sub.domain.dev"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            ("bob@files.zip", "bob@files.zip"),
            ("bob@EXAMPLE.COM", "bob@EXAMPLE.COM"),
            ("..dots@example.org", "dots@example.org"),
        ] {
            assert_eq!(find(text, false), Some(email), "{text}");
        }
    }

    #[test]
    fn negatives() {
        for text in [
            "user@localhost",
            "a@b.notatld",
            "logo@2x.png",
            "icon@3x.jpg",
            "a@host.local",
            "a@b.invalid",
            "@example.com",
            "a.@example.com",
            "a@-example.com",
            "a@example.com@b",
            "git@github",
            "a@.com",
            "a@123.456",
        ] {
            assert_eq!(find(text, false), None, "{text}");
        }
    }

    #[test]
    fn any_domain_with_email_context() {
        assert_eq!(find("user@localhost", true), Some("user@localhost"));
        assert_eq!(find("a@host.local", true), Some("a@host.local"));
        assert_eq!(find("@x", true), None);
    }

    #[test]
    fn long_local_part_is_bounded() {
        let text = format!("{}@example.com", "a".repeat(100));
        assert_eq!(find(&text, false), None);
    }
}
