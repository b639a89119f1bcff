//! `infer-eval perplexity`: token, word and byte perplexity and bits per
//! byte of text files, with lm-eval's rolling windows
//! (`infer_eval::eval::perplexity`).

use anyhow::Result;
use infer_eval::eval::perplexity::{self, Document, Windowing};
use infer_eval::Error;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// Model: a manifest name, a .gguf file or a model folder.
    #[arg(long, default_value = "llama")]
    pub model: String,
    /// Text files: a .jsonl file holds one document per line (the string
    /// field --field of each object); any other file is one document (UTF-8).
    #[arg(required_unless_present = "lm_eval_task")]
    pub files: Vec<PathBuf>,
    /// Instead: an lm-evaluation-harness loglikelihood_rolling task (a YAML
    /// file, or a name under --include-path): each document's doc_to_target,
    /// tokenized as lm-eval's remote tokenizer does, windowed as lm-eval's
    /// local-completions model (default context 2046: max_length 2048 - 2).
    #[arg(
        long = "lm-eval-task",
        value_name = "FILE|NAME",
        conflicts_with = "files"
    )]
    pub lm_eval_task: Option<String>,
    /// Folders searched for --lm-eval-task names.
    #[arg(long, value_name = "DIR", requires = "lm_eval_task")]
    pub include_path: Vec<PathBuf>,
    /// With --lm-eval-task: the first N documents (lm_eval --limit N).
    #[arg(long, requires = "lm_eval_task")]
    pub limit: Option<usize>,
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

/// The files' hashes (read streaming, before the model loads; a missing
/// file or a folder is refused here).
fn file_hashes(a: &PerplexityArgs) -> Result<Vec<serde_json::Value>> {
    a.files
        .iter()
        .map(|f| {
            // (A folder, FIFO or device is named here, not read.)
            infer_eval::fsio::regular_size(f)?;
            Ok(serde_json::json!({
                "path": f.display().to_string(),
                "sha256": infer_eval::formats::sha256_file(f)?,
            }))
        })
        .collect()
}

/// The documents of an lm-eval rolling task, and the files it read.
fn task_documents(
    a: &PerplexityArgs,
    arg: &str,
) -> Result<(Vec<Document>, Vec<serde_json::Value>)> {
    let file = if std::path::Path::new(arg).is_file() {
        PathBuf::from(arg)
    } else if a.include_path.is_empty() {
        return Err(Error::Input(format!(
            "--lm-eval-task {arg}: no such file (a task name needs --include-path DIR)"
        ))
        .into());
    } else {
        infer_eval::eval::lmeval::task::find_by_name(arg, &a.include_path)?
    };
    let cwd = std::env::current_dir()?;
    let t = infer_eval::eval::lmeval::rolling::documents(&file, &cwd, a.limit)?;
    let files = t
        .files
        .iter()
        .map(|p| {
            Ok(serde_json::json!({
                "path": p.display().to_string(),
                "sha256": infer_eval::formats::sha256_file(p)?,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "infer-eval: lm-eval task {}: {} documents",
        t.name,
        t.documents.len()
    );
    Ok((t.documents, files))
}

pub fn perplexity(a: PerplexityArgs) -> Result<i32> {
    // Text files are read one document at a time while they are scored;
    // a task's documents come from its dataset, already read.
    let (docs, files): (
        Box<dyn Iterator<Item = infer_eval::Result<Document>> + Send>,
        _,
    ) = match &a.lm_eval_task {
        Some(t) => {
            let (d, f) = task_documents(&a, t)?;
            (Box::new(d.into_iter().map(Ok)), f)
        }
        None => (
            Box::new(perplexity::file_documents(&a.files, &a.field)),
            file_hashes(&a)?,
        ),
    };
    let m = super::load(&a.model)?;
    let positions = m.model.config.max_position_embeddings;
    use infer_eval::eval::config::API_MAX_LENGTH;
    use infer_eval::eval::lmeval::generate::rolling_window;
    let default_context = if a.lm_eval_task.is_some() {
        rolling_window(API_MAX_LENGTH).expect("2048 leaves a window")
    } else {
        2048
    };
    let context = a.context.unwrap_or(positions.min(default_context));
    let w = Windowing::new(context, a.stride.unwrap_or(context), positions)?;
    let threads = a
        .threads
        .map_or_else(infer_eval::generation::cores, |t| t as usize);
    super::warn_oversubscribed(threads);
    let prefix = infer_eval::eval::lmeval::prefix_token(&m.tokenizer);
    let tok = &m.tokenizer;
    // As lm-eval's tok_encode: no BOS/EOS added; a text file is taken
    // literally, a task's text as the remote tokenizer (/tokenize) reads it.
    let parse_special = a.lm_eval_task.is_some();
    let encode = |s: &str| tok.encode_with(s, false, parse_special);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut progress = |docs: usize, windows: usize| {
        if last.elapsed().as_secs_f64() >= 2.0 {
            last = Instant::now();
            let s = t0.elapsed().as_secs_f64();
            eprintln!(
                "infer-eval: perplexity: {docs} document(s), {windows} windows, {:.1} windows/s",
                windows as f64 / s.max(1e-9)
            );
        }
    };
    let scored = pool.install(|| {
        perplexity::score(
            &m.model,
            docs,
            &encode,
            prefix,
            w,
            a.batch_size as usize,
            a.prefill_chunk as usize,
            &mut progress,
        )
    })?;
    let per_doc = scored.documents;
    let digest = scored.windows_sha256;
    let t = perplexity::totals(&per_doc);
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
    if let Some(task) = &a.lm_eval_task {
        println!(
            "lm-eval {task}: word_perplexity {}, byte_perplexity {}, bits_per_byte {}",
            t.word_perplexity, t.byte_perplexity, t.bits_per_byte
        );
    }
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
        infer_eval::fsio::write_json(out, &report)?;
        eprintln!("infer-eval: report written to {}", out.display());
    }
    Ok(0)
}
