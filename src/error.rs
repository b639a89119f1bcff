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

    #[error("unsupported: {0}")]
    Unsupported(String),

    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
