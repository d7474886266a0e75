//! Errors from loading policies.
//!
//! Loading reports every problem it finds, each with its file and line, so
//! `portcullis policy check` can list them all at once instead of making an
//! operator fix one error per run. These errors are for operators: they may
//! quote policy text, and must never be sent to a database client (the
//! client only ever sees a decision's id, message and hint).

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no .cedar policy files found", path.display())]
    NoPolicyFiles { path: PathBuf },
    #[error("no policy files given")]
    NoPaths,
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
    /// The schema compiled into Portcullis did not load: a bug, caught by
    /// this crate's tests.
    #[error("the built-in Portcullis schema does not load: {0}")]
    Schema(String),
}

/// One thing wrong with the policies, located as precisely as Cedar allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as it was named (a path, or `default/<name>` for the
    /// built-in bundle).
    pub file: String,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The policy's `@id`, when the problem belongs to one policy.
    pub policy: Option<String>,
    pub message: String,
    /// Cedar's or our suggestion for a fix.
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(policy) = &self.policy {
            write!(f, "policy {policy:?}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the policies",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset, counting columns in
/// characters as editors do.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, text.find('f').unwrap()), (3, 1));
        assert_eq!(line_column(text, 7), (2, 4));
    }
}
