//! A statement's text as the audit trail may keep it: every literal
//! replaced by a placeholder and every comment dropped, so that no value a
//! client sent (a password in CREATE ROLE, an email in a WHERE clause, a
//! note in a comment) reaches a record; and a fingerprint that is the same
//! for every text of the same statement whatever its literals, spacing,
//! comments or keyword case.
//!
//! Built from PostgreSQL's own scanner (pg_query's `scan_tokens`), not the
//! parser: what is a literal is decided by the same rules the server lexes
//! by. A text the scanner rejects (an unterminated string, a NUL byte) is
//! withheld whole rather than guessed at.

use std::sync::{Arc, OnceLock};

use pg_query::protobuf::{KeywordKind, Token};

/// What stands for the text of a statement the scanner could not read.
pub const WITHHELD_TEXT: &str = "<statement text withheld: it could not be tokenised>";

/// Longest normalised text kept, in bytes; longer ones are cut at a token
/// boundary and end in [`TRUNCATION_MARK`]. The fingerprint covers the
/// whole statement.
pub const MAX_AUDIT_TEXT: usize = 8 * 1024;

pub const TRUNCATION_MARK: &str = " …";

/// One statement's audit text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditText {
    /// The statement with literals as `$n` (numbered after the highest
    /// parameter the statement already has) and comments dropped; tokens
    /// separated by one space where the source had any space between them.
    pub text: String,
    /// 16 hex digits: SHA-256 over the token sequence with every literal
    /// as one placeholder and keywords in lower case.
    pub fingerprint: String,
}

/// The audit texts of an analysis' statements, computed once per analysis
/// (an analysis is shared by every text of its shape, and those texts
/// differ only in their literals, so they share their audit texts too).
/// Compares equal to every other: it is derived data, not part of what an
/// analysis says.
#[derive(Debug, Clone, Default)]
pub struct AuditTexts(OnceLock<Arc<[AuditText]>>);

impl PartialEq for AuditTexts {
    fn eq(&self, _: &AuditTexts) -> bool {
        true
    }
}

impl Eq for AuditTexts {}

impl serde::Serialize for AuditTexts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl AuditTexts {
    /// The texts, computing them from `sql` (the text the analysis was
    /// made from, or any text of its shape) on first use.
    pub fn get_or_compute(
        &self,
        sql: &str,
        spans: impl Iterator<Item = std::ops::Range<usize>>,
    ) -> Arc<[AuditText]> {
        self.0
            .get_or_init(|| {
                spans
                    .map(|span| audit_text(sql.get(span).unwrap_or("")))
                    .collect()
            })
            .clone()
    }

    /// The texts if computed already.
    pub fn get(&self) -> Option<Arc<[AuditText]>> {
        self.0.get().cloned()
    }
}

/// The audit text of one statement.
pub fn audit_text(sql: &str) -> AuditText {
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return AuditText {
            text: WITHHELD_TEXT.to_owned(),
            fingerprint: fingerprint_of(&[b"withheld"]),
        };
    };
    let slice = |t: &pg_query::protobuf::ScanToken| {
        sql.get(t.start.max(0) as usize..t.end.max(0) as usize)
            .unwrap_or("")
    };
    // Placeholders are numbered after the statement's own parameters so
    // that `$1` keeps meaning the first bind parameter.
    let mut next = 1 + tokens
        .iter()
        .filter(|t| t.token == Token::Param as i32)
        .filter_map(|t| slice(t).get(1..)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    let mut text = String::with_capacity(sql.len().min(MAX_AUDIT_TEXT));
    let mut truncated = false;
    let mut hasher = Fingerprinter::default();
    let mut last_end: Option<usize> = None;
    let mut spaced = false;
    for t in &tokens {
        let kind = t.token;
        if kind == Token::SqlComment as i32 || kind == Token::CComment as i32 {
            spaced = true;
            continue;
        }
        let start = t.start.max(0) as usize;
        if let Some(end) = last_end {
            spaced |= start > end;
        }
        last_end = Some(t.end.max(0) as usize);
        let literal = is_literal(kind);
        let placeholder;
        let piece: &str = if literal {
            placeholder = format!("${next}");
            next += 1;
            &placeholder
        } else {
            slice(t)
        };
        if literal {
            hasher.token(b"?");
        } else if t.keyword_kind != KeywordKind::NoKeyword as i32 {
            hasher.token(piece.to_ascii_lowercase().as_bytes());
        } else {
            hasher.token(piece.as_bytes());
        }
        if truncated {
            continue;
        }
        let sep = usize::from(spaced && !text.is_empty());
        if text.len() + sep + piece.len() > MAX_AUDIT_TEXT {
            truncated = true;
            text.push_str(TRUNCATION_MARK);
            continue;
        }
        if sep == 1 {
            text.push(' ');
        }
        text.push_str(piece);
        spaced = false;
    }
    AuditText {
        text,
        fingerprint: hasher.finish(),
    }
}

fn is_literal(kind: i32) -> bool {
    [
        Token::Sconst,
        Token::Usconst,
        Token::Iconst,
        Token::Fconst,
        Token::Bconst,
        Token::Xconst,
    ]
    .iter()
    .any(|t| *t as i32 == kind)
}

#[derive(Default)]
struct Fingerprinter(Vec<u8>);

impl Fingerprinter {
    fn token(&mut self, bytes: &[u8]) {
        self.0
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn finish(self) -> String {
        fingerprint_of(&[&self.0])
    }
}

fn fingerprint_of(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"portcullis-fingerprint/v1\0");
    for p in parts {
        h.update(p);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        audit_text(sql).text
    }

    #[test]
    fn literals_become_placeholders_after_the_statements_own() {
        assert_eq!(
            text("SELECT * FROM t WHERE a = $1 AND b = 'x' AND c = 42"),
            "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3"
        );
        assert_eq!(
            text("insert into t values (1.5, E'a\\'b', $$dollar$$, B'101', X'ff', U&'d\\0061')"),
            "insert into t values ($1, $2, $3, $4, $5, $6)"
        );
    }

    #[test]
    fn comments_and_spacing_go() {
        assert_eq!(
            text("SELECT /* ssn 123-45-6789 */ a\n\t,b -- alice@example.com\nFROM t"),
            "SELECT a ,b FROM t"
        );
    }

    #[test]
    fn seeded_secrets_never_survive() {
        let secrets = [
            "CREATE ROLE bob PASSWORD 'hunter2-secret'",
            "ALTER USER bob WITH PASSWORD 'hunter2-secret'",
            "SET app.token = 'hunter2-secret'",
            "SELECT set_config('app.token', 'hunter2-secret', false)",
            "DO $x$ BEGIN PERFORM 'hunter2-secret'; END $x$",
            "SELECT * FROM users WHERE email = 'hunter2-secret' -- hunter2-secret",
            "COPY t FROM PROGRAM 'echo hunter2-secret'",
            "SELECT 'hunter2-' 'secret'",
            "PREPARE p AS SELECT 'hunter2-secret'",
        ];
        for sql in secrets {
            let t = text(sql);
            assert!(!t.contains("hunter2"), "{sql} -> {t}");
        }
        assert_eq!(text("SELECT 123456789"), "SELECT $1");
    }

    #[test]
    fn what_the_scanner_cannot_read_is_withheld() {
        assert_eq!(text("SELECT 'unterminated secret"), WITHHELD_TEXT);
        assert_eq!(text("SELECT 'a\0b'"), WITHHELD_TEXT);
    }

    #[test]
    fn fingerprints_ignore_literals_spacing_comments_and_keyword_case() {
        let a = audit_text("SELECT a FROM t WHERE id = 1").fingerprint;
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            audit_text("select  a\nfrom t /* x */ where id = 'seven'").fingerprint
        );
        assert_ne!(a, audit_text("SELECT b FROM t WHERE id = 1").fingerprint);
        // Identifiers keep their case: "A" and a are different columns.
        assert_ne!(
            a,
            audit_text("SELECT \"A\" FROM t WHERE id = 1").fingerprint
        );
    }

    #[test]
    fn long_texts_are_cut_at_a_token() {
        let sql = format!("SELECT {}", vec!["col"; 5000].join(", "));
        let t = text(&sql);
        assert!(t.len() <= MAX_AUDIT_TEXT + TRUNCATION_MARK.len());
        assert!(t.ends_with(TRUNCATION_MARK));
    }
}
