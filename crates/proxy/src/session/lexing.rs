//! The backstop for settings that would make Portcullis and PostgreSQL
//! split SQL text differently.
//!
//! Statement analysis (and anything that judges SQL text) must lex exactly as
//! the server does. Two settings change how the server reads string
//! literals: `standard_conforming_strings = off` makes backslashes escape
//! quotes in ordinary literals, and the client-only encodings
//! (`portcullis_guard::encoding::CLIENT_ONLY`) allow a backslash or quote
//! byte as the second byte of a multibyte character, so a byte that looks
//! like a quote to one reader is half a character to the other (the
//! CVE-2006-2313 family). Every change the judge can see is refused when it
//! is judged (`portcullis_guard::lexer`); this catches the rest (code inside
//! a function or DO block) when the server announces it with
//! ParameterStatus, and ends the session.

use portcullis_wire::{sqlstate, Refusal};

/// Whether a ParameterStatus announces a setting Portcullis cannot lex under.
pub fn hazard(name: &str, value: &str) -> Option<Refusal> {
    if name.eq_ignore_ascii_case("standard_conforming_strings") && !value.eq_ignore_ascii_case("on")
    {
        return Some(
            Refusal::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "Portcullis does not allow standard_conforming_strings = off",
            )
            .hint("With it off, backslashes change how string literals end; keep the default (on) and use E'...' literals for escapes."),
        );
    }
    if name.eq_ignore_ascii_case("client_encoding")
        && portcullis_guard::encoding::is_client_only(value)
    {
        let shown: String = value
            .chars()
            .take(32)
            .filter(|c| c.is_ascii_graphic())
            .collect();
        return Some(
            Refusal::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("Portcullis does not allow client_encoding {shown}"),
            )
            .hint("In this encoding a quote or backslash byte can hide inside a multibyte character; use UTF8."),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::hazard;

    #[test]
    fn lexing_hazards() {
        assert!(hazard("standard_conforming_strings", "off").is_some());
        assert!(hazard("standard_conforming_strings", "on").is_none());
        for e in [
            "SJIS",
            "BIG5",
            "GBK",
            "GB18030",
            "UHC",
            "JOHAB",
            "SHIFT_JIS_2004",
            "sjis",
        ] {
            assert!(hazard("client_encoding", e).is_some(), "{e}");
        }
        for e in ["UTF8", "LATIN1", "SQL_ASCII", "EUC_JP", "WIN1252"] {
            assert!(hazard("client_encoding", e).is_none(), "{e}");
        }
        assert!(hazard("application_name", "SJIS").is_none());
    }
}
