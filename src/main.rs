//! The infer-eval command line. Library errors become one-line messages here.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

mod cli;
use infer_eval::engine::{self, GenOptions, Request};
use infer_eval::error::exit;
use infer_eval::record::{GenerationRecord, ModelRecord, RunOptions, SequenceRecord};
use infer_eval::sampling::SamplingParams;
use infer_eval::{device, fetch, kernels, model, prompts};
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
    #[arg(long, global = true, env = "INFER_EVAL_DEVICE", default_value = "cpu")]
    device: String,
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
    /// Print a model's configuration and tokenizer facts.
    Info {
        #[arg(long, default_value = "llama")]
        model: String,
    },
    /// Print the token ids of a text.
    Tokenize {
        #[arg(long, default_value = "llama")]
        model: String,
        /// Match special tokens such as <|im_start|> written in the text.
        #[arg(long)]
        special: bool,
        text: String,
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
    /// Worker threads (output bits do not depend on it).
    #[arg(long)]
    threads: Option<usize>,
    /// Sequences run together (output bits do not depend on it).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Prompt tokens per forward call (output bits do not depend on it).
    #[arg(long, default_value_t = 512)]
    prefill_chunk: usize,
    /// Write a JSON record of the run to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Wrap each prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Kernel instruction set: scalar, avx2 or avx512 (default: the best available; same bits).
    #[arg(long, env = "INFER_EVAL_ISA")]
    isa: Option<String>,
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

/// The error and its causes on one line, leaving out a cause whose text the
/// message before it already holds (library errors quote their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

fn log(msg: &str) {
    eprintln!("infer-eval: {msg}");
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    device::select(device::DeviceSpec::parse(&cli.device)?)?;
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
            text,
        }) => {
            let loaded = load(&model)?;
            println!("{:?}", loaded.tokenizer.encode(&text, special)?);
            Ok(())
        }
        Some(Command::Eval(a)) => cli::eval::eval(a),
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
        None => run(cli.run),
    }
}

fn load(name: &str) -> Result<model::LoadedModel> {
    let path = fetch::resolve(name, &mut |s| log(s))?;
    Ok(model::load(&path, &infer_eval::device::open()?)?)
}

fn run(a: RunArgs) -> Result<()> {
    if let Some(isa) = &a.isa {
        let i = kernels::Isa::parse(isa).ok_or_else(|| {
            infer_eval::Error::Input(format!("--isa '{isa}': expected scalar, avx2 or avx512"))
        })?;
        kernels::set_isa(i).map_err(infer_eval::Error::Input)?;
    }
    let sampling = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        max_tokens: a.max_tokens,
    };
    sampling.validate().map_err(infer_eval::Error::Input)?;
    if a.batch_size == 0 || a.prefill_chunk == 0 {
        return Err(infer_eval::Error::Input(
            "--batch-size and --prefill-chunk must be at least 1".into(),
        )
        .into());
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        return Err(infer_eval::Error::Input("--threads must be at least 1".into()).into());
    }
    let prompts = match (&a.prompt, &a.prompts) {
        (Some(p), _) => vec![prompts::Prompt {
            id: "0".into(),
            prompt: p.clone(),
        }],
        (None, Some(f)) => prompts::read_jsonl(f)?,
        (None, None) => prompts::builtin(),
    };
    let loaded = load(&a.model)?;
    let tok = &loaded.tokenizer;
    let mut requests = Vec::with_capacity(prompts.len());
    for p in &prompts {
        requests.push(Request {
            id: p.id.clone(),
            prompt_ids: tok.encode_prompt(&p.prompt, a.chat)?,
        });
    }
    let opts = GenOptions {
        sampling: sampling.clone(),
        batch_size: a.batch_size,
        prefill_chunk: a.prefill_chunk,
        keep_logits: false,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    let total = (requests.len() * a.max_tokens) as u64;
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
    let t0 = std::time::Instant::now();
    let outs = pool.install(|| {
        engine::generate(&loaded.model, &tok.eos, &requests, &opts, |n| {
            bar.set_position(n as u64)
        })
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();

    let mut seqs = Vec::with_capacity(outs.len());
    for (o, p) in outs.iter().zip(&prompts) {
        let text = tok.decode(&o.output_ids)?;
        println!("--- [{}] {}", o.id, p.prompt.replace('\n', "\\n"));
        println!("{text}");
        seqs.push(SequenceRecord {
            id: o.id.clone(),
            prompt: p.prompt.clone(),
            prompt_ids: o.prompt_ids.clone(),
            output_ids: o.output_ids.clone(),
            text,
            digest: engine::ids_digest(&o.output_ids),
            logits_digest: o.logits_digest.clone(),
            stop: serde_json::to_value(o.stop)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
        });
    }
    let digest = engine::combine_digests(seqs.iter().map(|s| s.digest.as_str()));
    let logits_digest = engine::combine_digests(seqs.iter().map(|s| s.logits_digest.as_str()));
    let n_tok: usize = outs.iter().map(|o| o.output_ids.len()).sum();
    eprintln!(
        "infer-eval: {} sequences, {} tokens in {:.2}s ({:.1} tok/s), {}; digest {} logits {}",
        seqs.len(),
        n_tok,
        secs,
        n_tok as f64 / secs,
        match device::selected() {
            device::DeviceSpec::Cpu => format!("{threads} threads, isa {}", kernels::isa().name()),
            d => d.name(),
        },
        digest,
        logits_digest
    );
    if let Some(out) = &a.out {
        let rec = GenerationRecord {
            infer_eval_version: env!("CARGO_PKG_VERSION").into(),
            determinism_version: infer_eval::DETERMINISM_VERSION,
            model: ModelRecord {
                name: a.model.clone(),
                path: loaded.info.path.display().to_string(),
                format: loaded.info.format.into(),
                sha256: loaded.info.sha256.clone(),
            },
            tokenizer_sha256: tok.sha256.clone(),
            sampling,
            options: RunOptions {
                threads,
                batch_size: a.batch_size,
                prefill_chunk: a.prefill_chunk,
                isa: kernels::isa().name().into(),
                chat: a.chat,
            },
            sequences: seqs,
            digest,
        };
        infer_eval::record::write_json(out, &rec)?;
    }
    Ok(())
}
