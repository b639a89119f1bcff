//! Evaluation: composable configs, pinned datasets and prompt templates,
//! scored tasks, run directories with manifests, `verify` and `diff`.

pub mod chat;
pub mod compare;
pub mod config;
pub mod dataset;
pub mod experiment;
pub mod fewshot;
pub mod folder;
pub mod lmeval;
pub mod manifest;
pub mod merge;
pub mod metrics;
pub mod perplexity;
pub mod plan;
pub mod proof;
pub mod run;
pub mod sample;
pub mod score;
pub mod shard;
pub mod sweep;
pub mod template;
