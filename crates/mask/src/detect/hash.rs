//! Password hashes and verifiers: bcrypt (`$2a$`, `$2b$`, `$2x$`, `$2y$`),
//! argon2 (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), crypt(3) MD5, SHA-256
//! and SHA-512 (`$1$`, `$5$`, `$6$`), PostgreSQL SCRAM verifiers
//! (`SCRAM-SHA-256$iter:salt$stored:server`) and PostgreSQL MD5 verifiers
//! (`md5` and 32 hex digits). Each shape is exact enough to be reported
//! without a column context.

use super::scan::{at as byte_at, before, is_alnum, run_len};

/// The alphabet of bcrypt and crypt(3) hashes.
fn is_crypt_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

fn is_b64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

fn ends_cleanly(text: &[u8], end: usize) -> bool {
    !byte_at(text, end).is_some_and(|b| is_crypt_byte(b) || b == b'$')
}

/// A hash whose first `$` is at `dollar`: its (start, end).
pub(super) fn at_dollar(text: &[u8], dollar: usize) -> Option<(usize, usize)> {
    const SCRAM: &[u8] = b"SCRAM-SHA-256";
    if dollar >= SCRAM.len() && &text[dollar - SCRAM.len()..dollar] == SCRAM {
        let start = dollar - SCRAM.len();
        return scram(text, dollar + 1)
            .filter(|_| !before(text, start).is_some_and(is_alnum))
            .map(|end| (start, end));
    }
    if before(text, dollar).is_some_and(|b| is_alnum(b) || b == b'$') {
        return None;
    }
    let rest = &text[dollar..];
    let end = if rest.starts_with(b"$argon2") {
        argon2(text, dollar + 7)
    } else if rest.len() > 3
        && rest[1] == b'2'
        && matches!(rest[2], b'a' | b'b' | b'x' | b'y')
        && rest[3] == b'$'
    {
        bcrypt(text, dollar + 4)
    } else if rest.starts_with(b"$1$") {
        crypt(text, dollar + 3, 8, 22)
    } else if rest.starts_with(b"$5$") {
        crypt(text, dollar + 3, 16, 43)
    } else if rest.starts_with(b"$6$") {
        crypt(text, dollar + 3, 16, 86)
    } else {
        None
    }?;
    Some((dollar, end))
}

/// `NN$` and 53 characters (22 of salt, 31 of hash).
fn bcrypt(text: &[u8], i: usize) -> Option<usize> {
    let cost = text.get(i..i + 3)?;
    if !(cost[0].is_ascii_digit() && cost[1].is_ascii_digit() && cost[2] == b'$') {
        return None;
    }
    let body = i + 3;
    let end = body + 53;
    (run_len(text, body, 53, is_crypt_byte) == 53 && ends_cleanly(text, end)).then_some(end)
}

/// `[rounds=N$]salt$hash` with the salt at most `max_salt` long and the
/// hash exactly `hash_len`.
fn crypt(text: &[u8], mut i: usize, max_salt: usize, hash_len: usize) -> Option<usize> {
    if text[i..].starts_with(b"rounds=") {
        let digits = run_len(text, i + 7, 10, |b| b.is_ascii_digit());
        if digits == 0 || byte_at(text, i + 7 + digits) != Some(b'$') {
            return None;
        }
        i += 7 + digits + 1;
    }
    let salt = run_len(text, i, max_salt + 1, is_crypt_byte);
    if salt == 0 || salt > max_salt || byte_at(text, i + salt) != Some(b'$') {
        return None;
    }
    let hash = i + salt + 1;
    let end = hash + hash_len;
    (run_len(text, hash, hash_len, is_crypt_byte) == hash_len && ends_cleanly(text, end))
        .then_some(end)
}

/// After `$argon2`: `id$` / `i$` / `d$`, an optional `v=19$`, the
/// parameters `m=…,t=…,p=…$`, the salt, `$`, the hash.
fn argon2(text: &[u8], mut i: usize) -> Option<usize> {
    let rest = text.get(i..)?;
    i += if rest.starts_with(b"id$") {
        3
    } else if rest.starts_with(b"i$") || rest.starts_with(b"d$") {
        2
    } else {
        return None;
    };
    if text[i..].starts_with(b"v=") {
        let digits = run_len(text, i + 2, 4, |b| b.is_ascii_digit());
        if digits == 0 || byte_at(text, i + 2 + digits) != Some(b'$') {
            return None;
        }
        i += 2 + digits + 1;
    }
    let params = run_len(text, i, 128, |b| {
        b.is_ascii_alphanumeric() || b == b'=' || b == b','
    });
    if params == 0
        || !text[i..i + params].contains(&b'=')
        || byte_at(text, i + params) != Some(b'$')
    {
        return None;
    }
    i += params + 1;
    let salt = run_len(text, i, usize::MAX, is_b64_byte);
    if salt < 8 || byte_at(text, i + salt) != Some(b'$') {
        return None;
    }
    i += salt + 1;
    let hash = run_len(text, i, usize::MAX, is_b64_byte);
    (hash >= 16).then_some(i + hash)
}

/// After `SCRAM-SHA-256$`: `iterations:salt$StoredKey:ServerKey`.
fn scram(text: &[u8], mut i: usize) -> Option<usize> {
    let iterations = run_len(text, i, 10, |b| b.is_ascii_digit());
    if iterations == 0 || byte_at(text, i + iterations) != Some(b':') {
        return None;
    }
    i += iterations + 1;
    for separator in [b'$', b':'] {
        let len = run_len(text, i, usize::MAX, is_b64_byte);
        if len == 0 || byte_at(text, i + len) != Some(separator) {
            return None;
        }
        i += len + 1;
    }
    let server = run_len(text, i, usize::MAX, is_b64_byte);
    (server > 0).then_some(i + server)
}

/// A PostgreSQL MD5 verifier whose `md5` starts at `start`: its end.
pub(super) fn md5_verifier(text: &[u8], start: usize) -> Option<usize> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let end = start + 3 + 32;
    (!before(text, start).is_some_and(is_alnum)
        && run_len(text, start + 3, 32, hex) == 32
        && !byte_at(text, end).is_some_and(is_alnum))
    .then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(text: &str) -> Option<&str> {
        let t = text.as_bytes();
        let d = t.iter().position(|&b| b == b'$')?;
        at_dollar(t, d).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn hashes() {
        for hash in [
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$2y$10$abcdefghijklmnopqrstuuVg2CZ0qQaK0sZ7YzB9p1f7uJ8l0yCm6",
            "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$argon2i$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$6$rounds=5000$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF4lXbqk7",
            "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
            "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5c2VydmVya2V5",
        ] {
            let text = format!("'{hash}',");
            assert_eq!(find(&text), Some(hash), "{hash}");
        }
        let md5 = b"md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(md5_verifier(md5, 0), Some(md5.len()));
    }

    #[test]
    fn not_hashes() {
        for text in [
            "$2b$12$tooshort",
            "$2b$1x$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$6$salt$short",
            "$5 and $6",
            "price: $1$ each",
            "x$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$argon2id$v=19$m=65536$c2FsdA$aGFzaA",
            "SCRAM-SHA-256$x:salt$a:b",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
        assert_eq!(md5_verifier(b"md5a3556571e93b0d20722ba62be61e8c2", 0), None);
        assert_eq!(md5_verifier(b"md5sum", 0), None);
        assert_eq!(
            md5_verifier(b"xmd5a3556571e93b0d20722ba62be61e8c2d", 1),
            None
        );
    }
}
