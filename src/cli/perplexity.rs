//! `infer-eval perplexity`: token, word and byte perplexity and bits per
//! byte of text files, with lm-eval's rolling windows
//! (`infer_eval::eval::perplexity`).

use anyhow::{Context, Result};
use infer_eval::eval::perplexity::{self, Document, Windowing};
use infer_eval::Error;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// Model: a manifest name, a .gguf file or a model folder.
    #[arg(long, default_value = "llama")]
    pub model: String,
    /// Text files: a .jsonl file holds one document per line (the string
    /// field --field of each object); any other file is one document (UTF-8).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The .jsonl field holding a document's text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Tokens fed to the model per window (default: the model's context,
    /// at most 2048).
    #[arg(long)]
    pub context: Option<usize>,
    /// Tokens newly scored per window (default: the context, so windows do
    /// not overlap, as lm-eval's `loglikelihood_rolling`).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Worker threads (the bits do not depend on it; default: the cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub threads: Option<u64>,
    /// Windows per forward call (the bits do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Prompt tokens per forward call (the bits do not depend on it).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub prefill_chunk: u64,
    /// Also write the report as JSON here (atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn documents(a: &PerplexityArgs) -> Result<(Vec<Document>, Vec<serde_json::Value>)> {
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for f in &a.files {
        let bytes = std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
        files.push(serde_json::json!({
            "path": f.display().to_string(),
            "sha256": hex::encode(Sha256::digest(&bytes)),
        }));
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::Input(format!("{}: not UTF-8 text ({e})", f.display())))?;
        if f.extension().is_some_and(|e| e == "jsonl") {
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let at = || format!("{}:{}", f.display(), n + 1);
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| Error::Input(format!("{}: not JSON ({e})", at())))?;
                let t = v.get(&a.field).and_then(|t| t.as_str()).ok_or_else(|| {
                    Error::Input(format!("{}: no string field '{}'", at(), a.field))
                })?;
                docs.push(Document {
                    name: at(),
                    text: t.to_string(),
                });
            }
        } else {
            docs.push(Document {
                name: f.display().to_string(),
                text,
            });
        }
    }
    if docs.is_empty() {
        return Err(Error::Input("perplexity: the files hold no documents".into()).into());
    }
    Ok((docs, files))
}

pub fn perplexity(a: PerplexityArgs) -> Result<i32> {
    let (docs, files) = documents(&a)?;
    let m = super::load(&a.model)?;
    let positions = m.model.config.max_position_embeddings;
    let context = a.context.unwrap_or(positions.min(2048));
    let w = Windowing::new(context, a.stride.unwrap_or(context), positions)?;
    let threads = a
        .threads
        .map_or_else(infer_eval::generation::cores, |t| t as usize);
    crate::warn_oversubscribed(threads);
    let prefix = infer_eval::eval::lmeval::prefix_token(&m.tokenizer);
    let tok = &m.tokenizer;
    // As lm-eval's tok_encode: no BOS/EOS added, text taken literally.
    let encode = |s: &str| tok.encode_with(s, false, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if done == total || last.elapsed().as_secs_f64() >= 2.0 {
            last = Instant::now();
            let s = t0.elapsed().as_secs_f64();
            let eta = if done > 0 {
                format!(", ETA {:.0} s", s / done as f64 * (total - done) as f64)
            } else {
                String::new()
            };
            eprintln!(
                "infer-eval: perplexity: {done}/{total} windows, {:.1} windows/s{eta}",
                done as f64 / s.max(1e-9)
            );
        }
    };
    let (per_doc, lls) = pool.install(|| {
        perplexity::score(
            &m.model,
            &docs,
            &encode,
            prefix,
            w,
            a.batch_size as usize,
            a.prefill_chunk as usize,
            &mut progress,
        )
    })?;
    let t = perplexity::totals(&per_doc);
    let mut h = Sha256::new();
    for ll in &lls {
        h.update(ll.to_bits().to_le_bytes());
    }
    let digest = hex::encode(h.finalize());
    println!(
        "perplexity of {} document(s), {} tokens in {} windows (context {}, stride {}), model {} ({})",
        per_doc.len(),
        t.tokens,
        t.windows,
        w.context,
        w.stride,
        m.info.path.display(),
        &m.info.sha256[..12.min(m.info.sha256.len())]
    );
    println!("  token perplexity  {:.6}", t.token_perplexity);
    println!(
        "  word perplexity   {:.6}  ({} words)",
        t.word_perplexity, t.words
    );
    println!(
        "  byte perplexity   {:.6}  ({} bytes)",
        t.byte_perplexity, t.bytes
    );
    println!("  bits per byte     {:.6}", t.bits_per_byte);
    println!(
        "  log-likelihood    {} (windows' bits: sha256 {digest})",
        t.loglik
    );
    if let Some(out) = &a.out {
        let report = serde_json::json!({
            "model": {"path": m.info.path.display().to_string(), "sha256": m.info.sha256},
            "files": files,
            "context": w.context,
            "stride": w.stride,
            "prefix_token": prefix,
            "determinism_version": infer_eval::DETERMINISM_VERSION,
            "window_logliks_sha256": digest,
            "totals": t,
            "documents": per_doc,
        });
        infer_eval::record::write_json(out, &report)?;
        eprintln!("infer-eval: report written to {}", out.display());
    }
    Ok(0)
}
