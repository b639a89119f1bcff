//! `infer-eval trace`: record a forward-pass trace, or compare two.

use anyhow::Result;
use infer_eval::trace;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// Model: a manifest name, a .gguf file or a model folder.
    #[arg(long, default_value = "llama", conflicts_with = "compare")]
    pub model: String,
    /// The prompt text (tokenized as generation does, without a chat template).
    #[arg(long, conflicts_with_all = ["prompt_ids", "compare"])]
    pub prompt: Option<String>,
    /// The prompt as token ids, comma-separated (what `verify` prints).
    #[arg(long, value_delimiter = ',', conflicts_with = "compare")]
    pub prompt_ids: Option<Vec<u32>>,
    /// Prompt tokens per forward call (the bits do not depend on it).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub prefill_chunk: u64,
    /// Worker threads (the bits do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub threads: u64,
    /// Also write every intermediate's f32 values (large).
    #[arg(long)]
    pub values: bool,
    /// Where to write the trace (JSON).
    #[arg(long, required_unless_present = "compare")]
    pub out: Option<PathBuf>,
    /// Compare two trace files instead: prints SAME or the first difference (exit 6).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<PathBuf>>,
}

pub fn trace(a: TraceArgs) -> Result<i32> {
    if let Some(files) = &a.compare {
        let (x, y) = (trace::read(&files[0])?, trace::read(&files[1])?);
        for n in trace::notes(&x, &y) {
            println!("note: {n}");
        }
        return Ok(match trace::compare(&x, &y) {
            None => {
                println!(
                    "SAME {} ({} intermediates; {} threads, chunk {} on {} vs {} threads, chunk {} on {})",
                    x.digest,
                    x.entries.len(),
                    x.threads,
                    x.prefill_chunk,
                    x.device,
                    y.threads,
                    y.prefill_chunk,
                    y.device
                );
                0
            }
            Some(d) => {
                println!("DIFFERENT: {d}");
                infer_eval::error::exit::MISMATCH
            }
        });
    }
    let m = super::load(&a.model)?;
    let ids = match (&a.prompt, &a.prompt_ids) {
        (Some(p), _) => m.tokenizer.encode_prompt(p, false)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => {
            return Err(infer_eval::Error::Usage(
                "trace: give --prompt TEXT or --prompt-ids IDS".into(),
            )
            .into())
        }
    };
    super::warn_oversubscribed(a.threads as usize);
    let t = trace::record(
        &m,
        &ids,
        a.prefill_chunk as usize,
        a.threads as usize,
        a.values,
    )?;
    let out = a.out.expect("required without --compare");
    infer_eval::fsio::write_json(&out, &t)?;
    eprintln!(
        "infer-eval: {} intermediates of {} positions; digest {}; written to {}",
        t.entries.len(),
        ids.len(),
        t.digest,
        out.display()
    );
    Ok(0)
}
