use thiserror::Error;

/// Why a statement string could not be analysed.
///
/// Every variant means the same thing to the proxy: refuse the string
/// (fail closed). The variants exist so that logs and metrics can tell a
/// client's syntax error from an input the analysis itself could not handle.
///
/// `Syntax` carries the parser's message, which may quote a fragment of the
/// statement (`syntax error at or near "..."`): treat it like statement text,
/// which Portcullis never writes to logs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnalysisError {
    /// The PostgreSQL grammar rejects the text.
    #[error("statement does not parse: {message}")]
    Syntax {
        /// The parser's message, as PostgreSQL would word it.
        message: String,
    },
    /// The text contains a NUL byte, which no PostgreSQL message can carry.
    #[error("statement contains a NUL byte")]
    NulByte,
    /// The statement is nested deeper than the analysis follows: the
    /// parser's stack, the tree reader's or the walk's depth limit (see the
    /// "Limits" paragraph of the crate documentation).
    #[error("statement is nested too deeply to analyse")]
    TooDeep,
    /// The parser library failed in a way it should not (a panic caught at the
    /// boundary, an undecodable tree). Reported rather than trusted.
    #[error("statement analysis failed unexpectedly: {0}")]
    Internal(&'static str),
}
