//! Subcommands of the binary (the library knows nothing of them).

pub mod baseline;
pub mod bench;
pub mod eval;
pub mod export;
pub mod multirun;
pub mod perplexity;
pub mod report;
pub mod serve;
pub mod trace;

pub(crate) use super::load;
