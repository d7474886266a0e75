use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {error}", file.display())]
    Read { file: PathBuf, error: String },
    /// TOML syntax or type error, located by line and column.
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error("target {target}: {what}")]
    Secret { target: String, what: String },
}

impl ConfigError {
    pub(crate) fn syntax(origin: Option<&Path>, text: &str, e: toml::de::Error) -> Self {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError::Syntax {
            origin: origin_name(origin),
            line,
            column,
            message: e.message().to_owned(),
        }
    }

    pub(crate) fn invalid(
        origin: Option<&Path>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: origin_name(origin),
            key: key.into(),
            message: message.into(),
        }
    }
}

pub(crate) fn origin_name(origin: Option<&Path>) -> String {
    origin
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".to_owned())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, column)
}
