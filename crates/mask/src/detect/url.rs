//! URLs that carry a password: `scheme://user:password@host`. The hit is
//! the password alone, so the rest of the URL (host, database) stays
//! readable.

/// How far back from an `@` the `://` may be.
const MAX_USERINFO: usize = 512;

fn is_userinfo_byte(b: u8) -> bool {
    // RFC 3986 unreserved, sub-delims, pct-encoded and ':'.
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
        )
}

/// The password of a URL whose userinfo ends at the `@` at `at`:
/// its (start, end).
pub(super) fn password_at(text: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    let floor = at.saturating_sub(MAX_USERINFO);
    while i > floor && is_userinfo_byte(text[i - 1]) {
        i -= 1;
    }
    // `i` is the start of the userinfo, which must follow `scheme://`.
    if i < 3
        || &text[i - 3..i] != b"://"
        || !text[..i - 3].last().is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    // The scheme's own `:` is before `i`, so the first colon in the span is
    // the user/password split.
    let colon = i + text[i..at].iter().position(|&b| b == b':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<&str> {
        let t = text.as_bytes();
        let a = t.iter().rposition(|&b| b == b'@')?;
        password_at(t, a).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn passwords() {
        for (text, pw) in [
            ("postgres://app:s3cr%40t@db:5432/x", "s3cr%40t"),
            ("DATABASE_URL=mysql://root:hunter2@localhost/app", "hunter2"),
            ("https://u:p:q@example.com/", "p:q"),
            ("redis://:onlypass@cache:6379", "onlypass"),
        ] {
            assert_eq!(find(text), Some(pw), "{text}");
        }
    }

    #[test]
    fn no_password() {
        for text in [
            "https://user@example.com/",
            "ssh://git@github.com",
            "mailto:bob@example.com",
            "a://u:@h",
            "://u:p@h",
            "user:pass@host",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }
}
