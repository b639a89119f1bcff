//! The generation command (`infer-eval --model M --seed S`) as a library
//! function: prompts in, a `GenerationRecord` out. The binary only parses
//! flags, shows progress and prints; everything a record says is decided here.

use crate::engine::{self, GenOptions, Request};
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::prompts::{self, Prompt};
use crate::record::{GenerationRecord, ModelRecord, RunOptions, SequenceRecord};
use crate::sampling::SamplingParams;
use std::path::PathBuf;

/// Where the prompts come from.
#[derive(Debug, Clone)]
pub enum PromptSource {
    /// One prompt, id "0".
    One(String),
    /// A JSONL file: {"prompt": "...", "id": "..."} per line.
    File(PathBuf),
    /// The built-in prompt set.
    Builtin,
}

impl PromptSource {
    pub fn read(&self) -> Result<Vec<Prompt>> {
        Ok(match self {
            PromptSource::One(p) => vec![Prompt {
                id: "0".into(),
                prompt: p.clone(),
            }],
            PromptSource::File(f) => prompts::read_jsonl(f)?,
            PromptSource::Builtin => prompts::builtin(),
        })
    }
}

/// Everything that decides a generation run's outputs, and how it is run.
#[derive(Debug, Clone)]
pub struct GenerationJob {
    /// As given on the command line (a manifest name, a file or a folder).
    pub model_name: String,
    pub sampling: SamplingParams,
    pub threads: usize,
    pub batch_size: usize,
    pub prefill_chunk: usize,
    /// Wrap each prompt in the model's chat template.
    pub chat: bool,
}

/// One finished run: the record (what `--out` writes) and its timing.
pub struct GenerationRun {
    pub record: GenerationRecord,
    pub seconds: f64,
    pub tokens: usize,
    /// sha256 over the sequences' logits digests, in order.
    pub logits_digest: String,
}

impl GenerationJob {
    /// Checks that need no model: an error names the flag.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate().map_err(Error::Usage)?;
        if self.threads == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        if self.batch_size == 0 || self.prefill_chunk == 0 {
            return Err(Error::Usage(
                "--batch-size and --prefill-chunk must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Tokenize `prompts`, generate on `self.threads` threads and build the
    /// record. `on_progress(tokens done, tokens at most)` reports progress.
    pub fn run(
        &self,
        loaded: &LoadedModel,
        prompts: &[Prompt],
        mut on_progress: impl FnMut(usize, usize) + Send,
    ) -> Result<GenerationRun> {
        self.validate()?;
        let tok = &loaded.tokenizer;
        let mut requests = Vec::with_capacity(prompts.len());
        for p in prompts {
            requests.push(Request {
                id: p.id.clone(),
                prompt_ids: tok.encode_prompt(&p.prompt, self.chat)?,
            });
        }
        let opts = GenOptions {
            sampling: self.sampling.clone(),
            batch_size: self.batch_size,
            prefill_chunk: self.prefill_chunk,
            keep_logits: false,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| {
                Error::Input(format!("cannot start {} worker threads: {e}", self.threads))
            })?;
        let total = requests.len() * self.sampling.max_tokens;
        let t0 = std::time::Instant::now();
        let outs = pool.install(|| {
            engine::generate(&loaded.model, &tok.eos, &requests, &opts, |n| {
                on_progress(n, total)
            })
        })?;
        let seconds = t0.elapsed().as_secs_f64();
        let mut sequences = Vec::with_capacity(outs.len());
        for (o, p) in outs.iter().zip(prompts) {
            sequences.push(SequenceRecord {
                id: o.id.clone(),
                prompt: p.prompt.clone(),
                prompt_ids: o.prompt_ids.clone(),
                output_ids: o.output_ids.clone(),
                text: tok.decode(&o.output_ids)?,
                digest: engine::ids_digest(&o.output_ids),
                logits_digest: o.logits_digest.clone(),
                stop: o.stop.name().to_string(),
            });
        }
        let digest = engine::combine_digests(sequences.iter().map(|s| s.digest.as_str()));
        let logits_digest =
            engine::combine_digests(sequences.iter().map(|s| s.logits_digest.as_str()));
        let tokens = outs.iter().map(|o| o.output_ids.len()).sum();
        let record = GenerationRecord {
            infer_eval_version: env!("CARGO_PKG_VERSION").into(),
            determinism_version: crate::DETERMINISM_VERSION,
            model: ModelRecord {
                name: self.model_name.clone(),
                path: loaded.info.path.display().to_string(),
                format: loaded.info.format.into(),
                sha256: loaded.info.sha256.clone(),
            },
            tokenizer_sha256: tok.sha256.clone(),
            sampling: self.sampling.clone(),
            options: RunOptions {
                threads: self.threads,
                batch_size: self.batch_size,
                prefill_chunk: self.prefill_chunk,
                isa: loaded.model.isa.name().into(),
                chat: self.chat,
            },
            sequences,
            digest,
        };
        Ok(GenerationRun {
            record,
            seconds,
            tokens,
            logits_digest,
        })
    }
}

/// The thread count to use: `asked`, or the number of cores.
pub fn threads_or_cores(asked: Option<usize>) -> usize {
    asked.unwrap_or_else(cores)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
