//! Token selection: greedy, or seeded sampling whose draws depend only on
//! (seed, sequence key, step), never on what else runs in the batch.

mod rng;
mod sampler;

pub use rng::{sequence_key, uniform, Philox};
pub use sampler::{argmax, Sampler, SamplingParams};
