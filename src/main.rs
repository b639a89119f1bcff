//! The infer-eval command line. Library errors become one-line messages here.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

mod cli;
use cli::{load, log, one_line, warn_oversubscribed, LOAD_OPTIONS};
use infer_eval::error::exit;
use infer_eval::generation::{GenerationJob, PromptSource};
use infer_eval::sampling::SamplingParams;
use infer_eval::{device, fetch, kernels, loader};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Deterministic, bit-reproducible inference for open-weight language models.
///
/// With no subcommand, generates text: `infer-eval --model llama --seed 42`
/// runs a small built-in prompt set on the default model (fetched if needed).
#[derive(Parser)]
#[command(name = "infer-eval", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    /// Device: cpu, cuda or cuda:N (the cuda feature; same bits as the CPU).
    #[arg(long, global = true, env = "INFER_EVAL_DEVICE", default_value = "cpu",
          value_parser = parse_device)]
    device: device::DeviceSpec,
    /// CPU kernel instruction set: scalar, avx2 or avx512 (AVX2 float code
    /// with VNNI integer sums); default the best available. Same bits on each.
    #[arg(long, global = true, env = "INFER_EVAL_ISA", value_parser = parse_isa)]
    isa: Option<kernels::Isa>,
    /// Load a model file that holds tensors this architecture does not use
    /// (they are listed in the record) instead of refusing it.
    #[arg(long, global = true)]
    allow_extra_tensors: bool,
}

fn parse_device(s: &str) -> Result<device::DeviceSpec, String> {
    device::DeviceSpec::parse(s).map_err(|_| "expected cpu, cuda or cuda:N".to_string())
}

fn parse_isa(s: &str) -> Result<kernels::Isa, String> {
    kernels::parse_isa(s, "ISA")
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a model named by a manifest in models/ without running it; prints its path.
    Fetch {
        /// Manifest name (e.g. llama).
        model: String,
    },
    /// Evaluate: compose configs/ (experiment=NAME, group=option, a.b=value,
    /// +a.b=value), run the tasks, and record a run folder under outputs/.
    /// With no arguments, the built-in suite on the default model.
    Eval(cli::eval::EvalArgs),
    /// An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions,
    /// /v1/models, /tokenize, /detokenize, /tokenizer_info, /health, /metrics)
    /// whose answers do not depend on load, batching or the prompt cache.
    Serve(cli::serve::ServeArgs),
    /// Re-run a recorded run from its folder and compare every sample's bits;
    /// prints MATCH and the digest, or the first difference (exit code 6).
    Verify(cli::eval::VerifyArgs),
    /// The baseline store: record a run's outputs, check a run against them, list.
    Baseline {
        #[command(subcommand)]
        cmd: cli::baseline::BaselineCmd,
        /// Store path (default: the user cache folder's infer-eval/baselines.sqlite).
        #[arg(long, global = true)]
        store: Option<PathBuf>,
    },
    /// Benchmarks: `bench bitexact` re-runs the bit-exactness regression cases.
    Bench {
        #[command(subcommand)]
        cmd: cli::bench::BenchCmd,
    },
    /// Compare two run folders: config, environment, outputs, metrics.
    Diff { run_a: PathBuf, run_b: PathBuf },
    /// One self-contained HTML page of a run (accuracy with intervals,
    /// latency histograms, environment), or of two runs with their paired
    /// comparison and where outputs first diverge.
    Report(cli::report::ReportArgs),
    /// Join shard run folders (`eval --shard-index I --shard-count N`, or
    /// Slurm/Kubernetes array tasks) into one run folder whose samples,
    /// metrics and run digest are those of the unsharded run.
    Merge {
        /// The shards' run folders (each exactly once).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The merged run folder (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Send finished run folders to a tracking server (`export mlflow`).
    Export {
        #[command(subcommand)]
        cmd: cli::export::ExportCmd,
    },
    /// Trace the forward pass of one prompt: the sha256 (with --values, the
    /// f32 values) of every named intermediate at every position; or, with
    /// --compare A B, name the first op, layer and position that differ.
    Trace(cli::trace::TraceArgs),
    /// Perplexity of text files (token, word, byte; bits per byte) with
    /// lm-eval's rolling windows; the context and stride are reported.
    Perplexity(cli::perplexity::PerplexityArgs),
    /// Print a model's configuration and tokenizer facts.
    Info {
        #[arg(long, default_value = "llama")]
        model: String,
    },
    /// Print the token ids of a text (reads only the tokenizer: a
    /// vocab-only GGUF is enough).
    Tokenize {
        #[arg(long, default_value = "llama")]
        model: String,
        /// Match special tokens such as <|im_start|> written in the text.
        #[arg(long)]
        special: bool,
        /// Leave out BOS/EOS even where the model's metadata adds them.
        #[arg(long)]
        no_bos: bool,
        /// Print JSON: {"ids": [...], "pieces": [...]}.
        #[arg(long)]
        json: bool,
        /// Or: read the text from this file ('-': standard input), byte for byte.
        #[arg(long, value_name = "FILE", conflicts_with = "text")]
        file: Option<PathBuf>,
        /// The text (or --file).
        #[arg(required_unless_present = "file")]
        text: Option<String>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Model: a manifest name (llama), a .gguf file, or a Hugging Face model folder.
    #[arg(long, default_value = "llama")]
    model: String,
    /// Seed of the sampling RNG (draws depend only on seed, prompt id and step).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// One prompt.
    #[arg(long, conflicts_with = "prompts")]
    prompt: Option<String>,
    /// A JSONL file of prompts: {"prompt": "...", "id": "..."} per line.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Maximum new tokens per sequence.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens less likely than min-p times the most likely (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Penalise tokens already in the sequence (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Worker threads, default the number of cores (output bits do not depend on it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    threads: Option<u64>,
    /// Sequences run together (output bits do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Prompt tokens per forward call (output bits do not depend on it).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    prefill_chunk: u64,
    /// Write a JSON record of the run to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Wrap each prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
}

/// Keep freed activation buffers in the heap instead of returning them to the
/// OS: every forward step allocates outputs of the same sizes again (logits
/// alone are 192 KiB), and fresh pages from mmap cost a page fault each.
fn keep_heap_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // Safety: plain glibc tuning calls, made before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn main() {
    keep_heap_pages();
    if let Err(e) = real_main() {
        eprintln!("error: {}", one_line(&e));
        let code = e
            .chain()
            .find_map(|c| c.downcast_ref::<infer_eval::Error>())
            .map(|e| e.exit_code())
            .unwrap_or(exit::ERROR);
        std::process::exit(code);
    }
}

/// A text argument read from a file, or from standard input for '-'.
fn read_text_arg(f: &std::path::Path) -> Result<String> {
    let max = infer_eval::eval::perplexity::MAX_DOCUMENT_BYTES as u64;
    if f.as_os_str() != "-" {
        return Ok(infer_eval::fsio::read_regular_text(f, max)?);
    }
    let bytes = {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), max + 1), &mut b)
            .map_err(|e| infer_eval::Error::io("<standard input>", e))?;
        if b.len() as u64 > max {
            return Err(infer_eval::Error::Input(format!(
                "standard input: more than {max} bytes; at most {max} are tokenised"
            ))
            .into());
        }
        b
    };
    String::from_utf8(bytes).map_err(|e| {
        infer_eval::Error::bad_file(
            f,
            format!(
                "not UTF-8 text (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
        .into()
    })
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    kernels::fp_env::check().map_err(infer_eval::Error::Input)?;
    if let Some(isa) = cli.isa {
        kernels::set_default_isa(isa).map_err(infer_eval::Error::Usage)?;
    }
    LOAD_OPTIONS
        .set(infer_eval::model::LoadOptions {
            allow_extra_tensors: cli.allow_extra_tensors,
        })
        .expect("set once");
    device::select(cli.device)?;
    match cli.command {
        Some(Command::Fetch { model }) => {
            let m = fetch::manifest(&model).ok_or_else(|| infer_eval::Error::UnknownModel {
                name: model.clone(),
                known: fetch::manifest_names().join(", "),
            })?;
            let p = fetch::fetch(&m, &mut |s| log(s))?;
            println!("{}", p.display());
            Ok(())
        }
        Some(Command::Info { model }) => {
            let loaded = load(&model)?;
            println!("{}", serde_json::to_string_pretty(&loaded.info)?);
            let t = &loaded.tokenizer;
            println!(
                "tokenizer: {} tokens, bos {:?}, eos {:?}, add_bos {}, sha256 {}",
                t.vocab_size, t.bos, t.eos, t.add_bos, t.sha256
            );
            Ok(())
        }
        Some(Command::Tokenize {
            model,
            special,
            no_bos,
            json,
            file,
            text,
        }) => {
            let text = match (text, file) {
                (Some(t), _) => t,
                (None, Some(f)) => read_text_arg(&f)?,
                (None, None) => unreachable!("clap: text or --file"),
            };
            let path = fetch::resolve(&model, &mut |s| log(s))?;
            let tok = loader::load_tokenizer(&path)?;
            let ids = tok.encode_with(&text, !no_bos, special)?;
            if json {
                let pieces: Vec<Option<String>> = ids.iter().map(|&i| tok.token_text(i)).collect();
                println!(
                    "{}",
                    serde_json::json!({"ids": ids, "pieces": pieces, "tokenizer": tok.kind()})
                );
            } else {
                println!("{ids:?}");
            }
            Ok(())
        }
        Some(Command::Eval(a)) if a.multirun => cli::multirun::multirun(a),
        Some(Command::Eval(a)) => cli::eval::eval(a),
        Some(Command::Serve(a)) => cli::serve::serve(a),
        Some(Command::Verify(a)) => {
            let code = cli::eval::verify(a)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::Baseline { cmd, store }) => {
            let code = cli::baseline::baseline(cmd, store)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::Bench { cmd }) => {
            let code = cli::bench::bench(cmd)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::Diff { run_a, run_b }) => cli::eval::diff(&run_a, &run_b),
        Some(Command::Export { cmd }) => cli::export::export(cmd),
        Some(Command::Report(a)) => cli::report::report(a),
        Some(Command::Merge { shards, out }) => cli::eval::merge(&shards, &out),
        Some(Command::Trace(a)) => {
            let code = cli::trace::trace(a)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Some(Command::Perplexity(a)) => cli::perplexity::perplexity(a).map(|_| ()),
        None => run(cli.run),
    }
}

fn run(a: RunArgs) -> Result<()> {
    let job = GenerationJob {
        model_name: a.model.clone(),
        sampling: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repetition_penalty: a.repetition_penalty,
            seed: a.seed,
            max_tokens: a.max_tokens,
            ..Default::default()
        },
        threads: infer_eval::generation::threads_or_cores(a.threads.map(|t| t as usize)),
        batch_size: a.batch_size as usize,
        prefill_chunk: a.prefill_chunk as usize,
        chat: a.chat,
    };
    job.validate()?;
    warn_oversubscribed(job.threads);
    let source = match (&a.prompt, &a.prompts) {
        (Some(p), _) => PromptSource::One(p.clone()),
        (None, Some(f)) => PromptSource::File(f.clone()),
        (None, None) => PromptSource::Builtin,
    };
    let prompts = source.read()?;
    let loaded = load(&a.model)?;
    let total = (prompts.len() * a.max_tokens) as u64;
    let bar = if std::io::stderr().is_terminal() && total > 0 {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tokens [{elapsed}<{eta}, {per_sec}]",
        )
        .unwrap(),
    );
    let done = job.run(&loaded, &prompts, |n, _| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    let rec = &done.record;
    for s in &rec.sequences {
        println!("--- [{}] {}", s.id, s.prompt.replace('\n', "\\n"));
        println!("{}", s.text);
    }
    eprintln!(
        "infer-eval: {} sequences, {} tokens in {:.2}s ({:.1} tok/s), {}; digest {} logits {}",
        rec.sequences.len(),
        done.tokens,
        done.seconds,
        done.tokens as f64 / done.seconds,
        match device::selected() {
            device::DeviceSpec::Cpu => format!("{} threads, isa {}", job.threads, rec.options.isa),
            d => d.name(),
        },
        rec.digest,
        done.logits_digest
    );
    if let Some(out) = &a.out {
        infer_eval::fsio::write_json(out, rec)?;
    }
    Ok(())
}
