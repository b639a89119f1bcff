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
            "isa": infer_eval::kernels::isa().name(),
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
    let (golden, filter, update) = match cmd {
        BenchCmd::Bitexact {
            golden,
            filter,
            update,
        } => (golden, filter, update),
        BenchCmd::Speed {
            model,
            prompt_tokens,
            gen_tokens,
            threads,
        } => return speed(&model, prompt_tokens, gen_tokens, threads),
    };
    let mut g = bench::read_golden(&golden)?;
    let diffs = bench::run_table(&mut g, filter.as_deref(), update, &mut std::io::stdout())?;
    if update {
        g.determinism_version = infer_eval::DETERMINISM_VERSION;
        infer_eval::record::write_atomic(
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
