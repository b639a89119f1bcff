//! `infer-eval bench bitexact`: the regression table.

use anyhow::Result;
use infer_eval::bench;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Re-run every bit-exactness case and compare digests (exit 6 on any DIFF).
    Bitexact {
        /// The golden file.
        #[arg(long, default_value = "tests/golden/bitexact.toml")]
        golden: PathBuf,
        /// Only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Rewrite the expected digests with the actual ones (with a new determinism version only).
        #[arg(long)]
        update: bool,
        /// Also write the table as JSON (case, device, expected and actual digests).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Prefill and decode speed on one synthetic prompt; prints one JSON line.
    Speed {
        #[arg(long, default_value = "llama")]
        model: String,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 256)]
        prompt_tokens: usize,
        /// Tokens to generate (EOS is ignored).
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Write a family's tiny random model (tests, reference scripts): a GGUF
    /// file or a Hugging Face folder.
    Tiny {
        /// llama, qwen2, qwen3, gemma2, gemma3 or phi3.
        #[arg(long)]
        family: String,
        /// gguf or hf.
        #[arg(long, default_value = "gguf")]
        format: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The .gguf file or the folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Stock Candle (candle-transformers' quantized Llama) against our engine on
    /// the same prompts: logit distance, and whether its logits change in a batch.
    Contrast {
        #[arg(long, default_value = "llama")]
        model: String,
        /// Prompt length in tokens (each built-in prompt's tokens, repeated).
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
        /// Write the report as JSON to this file too.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[cfg(not(feature = "contrast"))]
fn contrast(_model: &str, _prompt_tokens: usize, _out: Option<PathBuf>) -> Result<i32> {
    Err(infer_eval::Error::Usage(
        "bench contrast: this binary was built without the `contrast` feature (stock Candle); build with `cargo build --release --features contrast`".into(),
    )
    .into())
}

/// The contrast table (see `infer_eval::contrast`), on the built-in prompts.
#[cfg(feature = "contrast")]
fn contrast(model: &str, prompt_tokens: usize, out: Option<PathBuf>) -> Result<i32> {
    let path = infer_eval::fetch::resolve(model, &mut |s| eprintln!("infer-eval: {s}"))?;
    let texts: Vec<String> = infer_eval::prompts::builtin()
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    let dev = infer_eval::device::open()?;
    let r = infer_eval::contrast::run(&path, &texts, prompt_tokens, &dev)?;
    println!(
        "contrast on {}: {} prompts of {} tokens, batch of {}",
        r.device,
        r.prompts.len(),
        r.prompts.first().map_or(0, |p| p.tokens),
        r.batch
    );
    println!(
        "logits at the last prompt position, of {} each; bits differ = how many of them",
        r.vocab
    );
    println!("prompt | stock vs ours: max |diff|, same argmax | stock prefill vs token-by-token: bits differ, max |diff| | stock alone vs batch: bits differ, max |diff| | ours on device vs CPU: bits differ | ours alone vs batch: bits differ");
    for p in &r.prompts {
        println!(
            "{} | {:.4e}, {} | {}, {:.4e} | {}, {:.4e} | {} | {}",
            p.prompt,
            p.stock_vs_ours_max_abs,
            p.stock_vs_ours_same_argmax,
            p.stock_chunk_bits_differ,
            p.stock_chunk_max_abs,
            p.stock_batch_bits_differ,
            p.stock_batch_max_abs,
            p.ours_device_vs_cpu_bits_differ
                .map_or("- (device is the CPU)".to_string(), |n| n.to_string()),
            p.ours_batch_bits_differ
        );
    }
    if let Some(o) = out {
        infer_eval::fsio::write_atomic(&o, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    Ok(0)
}

fn tiny(family: &str, format: &str, seed: u64, out: &std::path::Path) -> Result<i32> {
    use infer_eval::bench::tiny_family;
    let f = tiny_family::FAMILIES
        .iter()
        .copied()
        .find(|f| f.name() == family)
        .ok_or_else(|| {
            infer_eval::Error::Usage(format!(
                "--family '{family}': expected one of {}",
                tiny_family::FAMILIES
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    match format {
        "gguf" => {
            tiny_family::write_gguf_model(out, f, seed)?;
        }
        "hf" => {
            tiny_family::write_hf(out, f, seed).map_err(|e| infer_eval::Error::io(out, e))?;
        }
        other => {
            return Err(infer_eval::Error::Usage(format!(
                "--format '{other}': expected gguf or hf"
            ))
            .into())
        }
    }
    println!("{}", out.display());
    Ok(0)
}

/// Prefill and decode tokens/s for one run.
fn speed(model: &str, prompt_tokens: usize, gen_tokens: usize, threads: usize) -> Result<i32> {
    use infer_eval::engine::{generate, GenOptions, Request};
    let m = super::load(model)?;
    // A fixed, text-like prompt: the token ids of a repeated sentence.
    let unit = m.tokenizer.encode(
        "The quick brown fox jumps over the lazy dog while the sun sets slowly in the west. ",
        false,
    )?;
    let prompt: Vec<u32> = unit.iter().copied().cycle().take(prompt_tokens).collect();
    let opts = GenOptions {
        sampling: infer_eval::sampling::SamplingParams {
            max_tokens: gen_tokens,
            ..Default::default()
        },
        ..Default::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let req = [Request {
        id: "speed".into(),
        prompt_ids: prompt,
    }];
    let o = pool
        .install(|| generate(&m.model, &[], &req, &opts, |_| {}))?
        .remove(0);
    let decode_s: f64 = o.token_times_s.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "engine": "infer-eval",
            "threads": threads,
            "prompt_tokens": prompt_tokens,
            "gen_tokens": o.output_ids.len(),
            "prefill_tok_s": prompt_tokens as f64 / o.ttft_s,
            "decode_tok_s": o.token_times_s.len() as f64 / decode_s,
            "isa": m.model.isa.name(),
            "device": infer_eval::device::describe().0,
            "max_rss_kb": std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
                s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            }),
        })
    );
    Ok(0)
}

const HEADER: &str = "# Bit-exactness regression cases: `infer-eval bench bitexact` (or
# `cargo bench --bench bitexact`) re-runs each and compares digests.
# digest: sha256 over the sequences' output-id digests; logits_digest: over
# their logits digests. Changing any expected digest needs a new
# DETERMINISM_VERSION and GOLDEN_FINGERPRINTS entry in src/lib.rs.

";

pub fn bench(cmd: BenchCmd) -> Result<i32> {
    let (golden, filter, update, json) = match cmd {
        BenchCmd::Bitexact {
            golden,
            filter,
            update,
            json,
        } => (golden, filter, update, json),
        BenchCmd::Speed {
            model,
            prompt_tokens,
            gen_tokens,
            threads,
        } => return speed(&model, prompt_tokens, gen_tokens, threads),
        BenchCmd::Contrast {
            model,
            prompt_tokens,
            out,
        } => return contrast(&model, prompt_tokens, out),
        BenchCmd::Tiny {
            family,
            format,
            seed,
            out,
        } => return tiny(&family, &format, seed, &out),
    };
    let mut g = bench::read_golden(&golden)?;
    let results = bench::run_table(&mut g, filter.as_deref(), update, &mut std::io::stdout())?;
    if let Some(j) = json {
        infer_eval::fsio::write_atomic(&j, serde_json::to_string_pretty(&results)?.as_bytes())?;
    }
    let diffs = results.iter().filter(|r| !r.matched).count();
    if update {
        g.determinism_version = infer_eval::DETERMINISM_VERSION;
        infer_eval::fsio::write_atomic(
            &golden,
            format!("{HEADER}{}", toml::to_string(&g)?).as_bytes(),
        )?;
        println!(
            "updated {}; fingerprint {}",
            golden.display(),
            bench::fingerprint(&g)
        );
        return Ok(0);
    }
    println!(
        "{}",
        if diffs == 0 {
            "all MATCH".to_string()
        } else {
            format!("{diffs} DIFF")
        }
    );
    Ok(if diffs == 0 {
        0
    } else {
        infer_eval::error::exit::MISMATCH
    })
}
