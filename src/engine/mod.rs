//! The engine: one scheduler (`core`) that every way in uses. Generation
//! and log-likelihood scoring are kinds of sequence to it (`generate`,
//! `loglikelihoods` here are its batch front ends; `serve` drives it step by
//! step). Every sequence's logits are bit-identical however it is batched,
//! chunked or shared with others, because every op computes each row on its
//! own (see kernels) and the KV of a position depends only on the tokens
//! before it.

mod base;
mod batch;
pub mod core;
pub mod prefix;
mod seq;
mod spec;

pub use base::{combine_digests, ids_digest, loglik_fits, prompt_fits, StopReason};
pub use batch::{
    generate, generate_with_stops, loglikelihoods, GenOptions, LoglikOutput, LoglikRequest,
    Request, SeqOutput,
};
