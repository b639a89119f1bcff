//! Library errors. Every variant names the file or the input it is about,
//! so the CLI can print one line a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A model, tokenizer or config file that is malformed.
    #[error("{path}: {msg}")]
    BadFile { path: PathBuf, msg: String },

    #[error("unknown model '{name}': not a manifest in models/ ({known}), nor an existing .gguf file or model folder")]
    UnknownModel { name: String, known: String },

    #[error("{what}: sha256 mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("could not fetch model '{name}': {msg}")]
    Fetch { name: String, msg: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("invalid input: {0}")]
    Input(String),

    /// A command-line flag with a value it cannot take (exit code 2, as
    /// clap's own usage errors).
    #[error("{0}")]
    Usage(String),

    /// Something would not fit: memory, or the model's context.
    #[error("{0}")]
    Resource(String),

    /// A server (MLflow tracking) that cannot be reached or refused a request.
    #[error("{0}")]
    Remote(String),

    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Process exit codes, documented in docs/ERRORS.md.
pub mod exit {
    /// Any other failure (I/O, internal).
    pub const ERROR: i32 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// Invalid input: a malformed model, tokenizer, config, dataset or prompt file,
    /// an unknown model or key, a pinned hash that does not match.
    pub const INVALID_INPUT: i32 = 3;
    /// A model could not be fetched.
    pub const FETCH: i32 = 4;
    /// Over a resource limit: memory, or the model's context.
    pub const RESOURCE: i32 = 5;
    /// A comparison found a difference (verify MISMATCH, baseline DIFF, bench DIFF).
    pub const MISMATCH: i32 = 6;
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadFile { .. }
            | Error::UnknownModel { .. }
            | Error::HashMismatch { .. }
            | Error::Tokenizer(_)
            | Error::Input(_) => exit::INVALID_INPUT,
            Error::Usage(_) => exit::USAGE,
            Error::Fetch { .. } => exit::FETCH,
            Error::Resource(_) => exit::RESOURCE,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                exit::INVALID_INPUT
            }
            Error::Io { .. } | Error::Candle(_) | Error::Remote(_) => exit::ERROR,
        }
    }

    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An I/O error on `path`; a folder where a file was read is bad input
    /// and says so.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::IsADirectory {
            return Error::bad_file(path, "is a folder; a file is expected here");
        }
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `text` cut to about `max` characters for an error message: a long input
/// (an override, a template, a data line) is echoed readably, with its length.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}... ({} bytes in all)", &text[..i], text.len()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cut_keeps_short_text_and_shortens_long_text() {
        assert_eq!(super::cut("abc", 5), "abc");
        assert_eq!(super::cut("abcdef", 3), "abc... (6 bytes in all)");
        assert_eq!(super::cut("ééé", 2), "éé... (6 bytes in all)");
    }
}
