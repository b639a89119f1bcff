//! infer-eval: deterministic, bit-reproducible inference for open-weight language models.
//!
//! The modules stand on floors; each uses only lower floors, and no file
//! uses another that uses it back (`tests/architecture.rs` checks both on
//! the sources; docs/ARCHITECTURE.md has the same table and the path of a
//! request):
//!
//! ```text
//! 8 main (binary)      the command line
//! 7 cli (binary)       the subcommands
//! 6 export, report     MLflow export, HTML reports of run folders
//! 5 bench, contrast, eval, generation, serve, trace
//! 4 baseline, engine, loader, record
//! 3 device, fetch, model, tokenizer
//! 2 formats, ops
//! 1 lib (this root), fsio, kernels, prompts, sampling
//! 0 error, numerics
//! ```
//!
//! `kernels` are plain functions over slices: the canonical arithmetic of
//! `docs/DETERMINISM.md`, each taking the ISA it runs on. `ops` wraps them
//! as Candle custom ops, the boundary a CUDA backend implements. `model`
//! knows nothing of tokenizers, sampling or evaluation; `tokenizer` knows
//! nothing of models; `engine` is the one scheduler generation, scoring and
//! serving go through. `device` (`--device cpu|cuda:N`) picks where ops run.

pub mod baseline;
pub mod bench;
#[cfg(feature = "contrast")]
pub mod contrast;
pub mod device;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod formats;
pub mod fsio;
pub mod generation;
pub mod kernels;
pub mod loader;
pub mod model;
pub mod numerics;
pub mod ops;
pub mod prompts;
pub mod record;
pub mod report;
pub mod sampling;
pub mod serve;
pub mod tokenizer;
pub mod trace;

pub use error::{Error, Result};

/// Bumped whenever any change alters output bits (logits or tokens) for the
/// same model, prompt and parameters. Golden digests are tied to it.
pub const DETERMINISM_VERSION: u32 = 3;

/// sha256 fingerprints of the expected digests in tests/golden/bitexact.toml,
/// one per determinism version, oldest first. A change of golden digests
/// needs a new DETERMINISM_VERSION and a new entry here (tests check both).
pub const GOLDEN_FINGERPRINTS: &[(u32, &str)] = &[
    (
        1,
        "9e28b13a11ea7a06eb223b6d1681e8dfb5407961ceced24f7f44ac1550c6d6ad",
    ),
    // 2: Q4_0/Q4_1/Q8_0 products became integer block sums over 8-bit
    // activations (docs/DETERMINISM.md §3b), for speed.
    (
        2,
        "b3d7235cb6ee105c6005b325c1b34e0c6f6e7520ec9b8d048355aa20c54b1cf5",
    ),
    // 3: log-softmax sums in f64 lanes (docs/DETERMINISM.md §7b), so
    // log-probabilities and log-likelihoods change; the suite now pins them
    // (logprobs_digest, log-likelihood cases). Token and logits digests are
    // those of version 2.
    (
        3,
        "017b5749560898b2ccd49ccf084c881048408a7475668e4f2e2ae56f990f4459",
    ),
];
