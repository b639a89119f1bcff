//! infer-eval: deterministic, bit-reproducible inference for open-weight language models.
//!
//! Dependencies point one way, top to bottom:
//!
//! ```text
//! cli (main.rs) ─► engine ─► model ─► ops ─► kernels ─► numerics
//!                   │          └─► gguf / safetensors loading
//!                   ├─► sampling ─► numerics
//!                   └─► tokenizer
//! fetch (model manifests, downloads) and record (JSON outputs) sit beside the engine;
//! device (`--device cpu|cuda:N`) picks where the ops run.
//! ```
//!
//! `kernels` are plain functions over slices: the canonical arithmetic of
//! `docs/DETERMINISM.md`. `ops` wraps them as Candle custom ops, the boundary a
//! CUDA backend implements. `model` knows nothing of sampling or evaluation.

pub mod baseline;
pub mod bench;
pub mod contrast;
pub mod device;
pub mod engine;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod kernels;
pub mod model;
pub mod numerics;
pub mod ops;
pub mod prompts;
pub mod record;
pub mod sampling;
pub mod testkit;
pub mod tokenizer;

pub use error::{Error, Result};

/// Bumped whenever any change alters output bits (logits or tokens) for the
/// same model, prompt and parameters. Golden digests are tied to it.
pub const DETERMINISM_VERSION: u32 = 2;

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
];
