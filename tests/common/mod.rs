//! Shared test helpers: a tiny random Llama written as a Hugging Face folder
//! (config.json, model.safetensors, tokenizer.json), an independent f64
//! reference forward pass (families.rs), and helpers to run generation
//! under a thread pool.
#![allow(dead_code)]

pub mod families;
pub mod forge;
pub mod server;
pub mod venv;

use infer_eval::engine::{self, GenOptions, Request, SeqOutput};
use infer_eval::loader::{self, LoadedModel};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use infer_eval::bench::tiny::*;

pub struct Tiny {
    pub dir: tempfile::TempDir,
    /// Every tensor's values as stored (after rounding to the dtype), row-major.
    pub weights: Weights,
}

pub fn tiny_model(dtype: Dtype, seed: u64) -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_tiny_model(dir.path(), dtype, seed).unwrap();
    Tiny { dir, weights }
}

pub fn load(path: &Path) -> LoadedModel {
    loader::load(path, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

pub fn run(m: &LoadedModel, reqs: &[Request], opts: &GenOptions, threads: usize) -> Vec<SeqOutput> {
    run_counted(m, reqs, opts, threads).0
}

/// `run`, and how many kernel worker threads the run started beside the
/// calling one (so a test can show that `threads` really ran).
pub fn run_counted(
    m: &LoadedModel,
    reqs: &[Request],
    opts: &GenOptions,
    threads: usize,
) -> (Vec<SeqOutput>, usize) {
    pool(threads).install(|| {
        let out = engine::generate(&m.model, &m.tokenizer.eos, reqs, opts, |_| {}).unwrap();
        (out, infer_eval::kernels::pool::workers())
    })
}

/// Logits at every position of `ids`, in one forward call on 2 threads.
pub fn all_logits(m: &LoadedModel, ids: &[u32]) -> Vec<Vec<f32>> {
    use infer_eval::model::transformer::{Logits, SeqStep};
    let mut cache = m.model.new_cache(ids.len()).unwrap();
    let out = pool(2).install(|| {
        m.model
            .forward(&mut [SeqStep {
                tokens: ids,
                cache: &mut cache,
                logits: Logits::All,
            }])
            .unwrap()
    });
    out[0].as_ref().unwrap().to_vec2().unwrap()
}

/// Greedy decoding of `max_tokens`, one sequence at a time, keeping logits.
pub fn greedy(max_tokens: usize) -> GenOptions {
    GenOptions {
        sampling: infer_eval::sampling::SamplingParams {
            max_tokens,
            ..Default::default()
        },
        batch_size: 1,
        prefill_chunk: 512,
        keep_logits: true,
    }
}

/// Bits of every step's logits, for exact comparison.
pub fn logit_bits(o: &SeqOutput) -> Vec<Vec<u32>> {
    o.step_logits
        .iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

pub fn assert_same_bits(a: &[SeqOutput], b: &[SeqOutput], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: sequence count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.id, y.id);
        assert!(!x.step_logits.is_empty(), "{what}: run with keep_logits");
        assert_eq!(x.output_ids, y.output_ids, "{what}: tokens of {}", x.id);
        assert!(
            logit_bits(x) == logit_bits(y),
            "{what}: logits bits of {} differ",
            x.id
        );
        assert_eq!(
            x.logits_digest, y.logits_digest,
            "{what}: logits digest of {}",
            x.id
        );
    }
}

/// The default model (SmolLM2 GGUF), fetched into the cache if needed.
pub fn smollm2_path() -> PathBuf {
    infer_eval::fetch::resolve("llama", &mut |s| eprintln!("{s}"))
        .expect("fetch the default model (SmolLM2)")
}

/// A tokenizer against llama.cpp's ids for every case of `reference`
/// (scripts/make_spm_reference.py: `cases`, each with its `text` and the
/// ids for every add_special x parse_special); every differing list is
/// reported. Returns how many lists were compared.
pub fn compare_token_ids(
    tok: &infer_eval::tokenizer::Tokenizer,
    reference: &serde_json::Value,
    what: &str,
) -> usize {
    let mut n = 0;
    let mut bad = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        for add in [false, true] {
            for special in [false, true] {
                let key = format!("add_special={add},parse_special={special}");
                let want = json_ids(&case[&key]);
                let got = tok.encode_with(text, add, special).unwrap();
                if got != want {
                    bad.push(format!(
                        "{text:?} ({key}): ours {got:?}, llama.cpp {want:?}"
                    ));
                }
                n += 1;
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {n} differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    n
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// tests/golden/`name`, parsed.
pub fn golden_json(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// One prompt of a llama.cpp greedy reference, run greedily here.
pub struct GreedyVsLlamacpp {
    pub prompt: String,
    /// llama.cpp's continuation.
    pub want: Vec<u32>,
    pub out: SeqOutput,
    /// How many leading tokens of ours equal llama.cpp's.
    pub agree: usize,
    /// The largest |ours - llama.cpp's| over llama.cpp's first-step top-5 logits.
    pub first_step_diff: f64,
}

/// Run `case` (its `prompt`, `prompt_ids` and `output_ids` from llama.cpp)
/// greedily on 2 threads: asserts the prompt ids are llama.cpp's, and
/// compares the first-step logits with `first_top5` ([id, logit] pairs).
pub fn greedy_vs_llamacpp(
    m: &LoadedModel,
    case: &serde_json::Value,
    first_top5: &serde_json::Value,
) -> GreedyVsLlamacpp {
    let prompt = case["prompt"].as_str().unwrap().to_string();
    let want = json_ids(&case["output_ids"]);
    let prompt_ids = m.tokenizer.encode(&prompt, false).unwrap();
    assert_eq!(
        prompt_ids,
        json_ids(&case["prompt_ids"]),
        "prompt ids of {prompt:?}"
    );
    let req = Request {
        id: "0".into(),
        prompt_ids,
    };
    let out = run(m, &[req], &greedy(want.len()), 2).remove(0);
    let mut first_step_diff = 0f64;
    for pair in first_top5.as_array().unwrap() {
        let (id, theirs) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_f64().unwrap(),
        );
        first_step_diff = first_step_diff.max((out.step_logits[0][id] as f64 - theirs).abs());
    }
    let agree = out
        .output_ids
        .iter()
        .zip(&want)
        .take_while(|(a, b)| a == b)
        .count();
    GreedyVsLlamacpp {
        prompt,
        want,
        out,
        agree,
        first_step_diff,
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

/// A scratch project: configs/, data/, prompts/ copied from the repository.
pub fn project() -> tempfile::TempDir {
    smollm2_path(); // fetch once, before any child process needs it
    let d = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["configs", "data", "prompts"] {
        copy_dir(&repo.join(sub), &d.path().join(sub));
    }
    d
}

/// `infer-eval eval ARGS` in `root`, then `verify` of its run folder, which
/// must say MATCH: the folder.
#[allow(dead_code)]
pub fn eval_verified(root: &Path, args: &[&str]) -> PathBuf {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .env("HF_HUB_OFFLINE", "1")
        .arg("eval")
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "eval {args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = root.join(
        out.lines()
            .find_map(|l| l.strip_prefix("run folder "))
            .unwrap(),
    );
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .arg("verify")
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && said.contains("MATCH"),
        "verify {}: {said}{}",
        dir.display(),
        String::from_utf8_lossy(&v.stderr)
    );
    dir
}

/// A run folder's bits: its run digest and, per sample in order, its id and
/// everything computed for it (token ids and their digest, logits digest,
/// log-probabilities, choice log-likelihoods). The run digest covers the
/// samples' token digests only (docs/DETERMINISM.md §8), so a test that
/// claims two runs are the same compares these.
pub fn run_bits(dir: &Path) -> (String, Vec<serde_json::Value>) {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
    };
    let m: serde_json::Value = serde_json::from_str(&read("manifest.json")).unwrap();
    let samples: Vec<serde_json::Value> = read("samples.jsonl")
        .lines()
        .map(|l| {
            let s: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::json!({
                "id": s["id"], "output_ids": s["output_ids"], "digest": s["digest"],
                "logits_digest": s["logits_digest"], "logprobs": s["logprobs"],
                "choice_logliks": s["choice_logliks"],
            })
        })
        .collect();
    assert!(!samples.is_empty(), "{}: no samples", dir.display());
    let run = m["run_digest"].as_str().unwrap().to_string();
    (run, samples)
}

/// `run_bits` of both folders are equal; on a difference, names the first
/// sample and field that differ.
pub fn assert_same_run_bits(a: &Path, b: &Path) {
    let (ra, sa) = run_bits(a);
    let (rb, sb) = run_bits(b);
    assert_eq!(
        sa.len(),
        sb.len(),
        "{} and {}: sample count",
        a.display(),
        b.display()
    );
    for (x, y) in sa.iter().zip(&sb) {
        for (k, v) in x.as_object().unwrap() {
            assert_eq!(
                v,
                &y[k],
                "{} and {}: sample {} differs in {k}",
                a.display(),
                b.display(),
                x["id"]
            );
        }
    }
    assert_eq!(ra, rb, "{} and {}: run digest", a.display(), b.display());
}

/// Under CI (the `CI` variable set, as CI sets it), true; elsewhere false.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A test whose real part cannot run here. Under CI, which installs what
/// every test needs, that is a failure (a skip would pass unseen: cargo
/// hides a passing test's output); elsewhere the test prints SKIPPED with
/// the reason and returns.
pub fn skip_or_fail(test: &str, why: &str) {
    if under_ci() {
        panic!("{test}: its real part cannot run, and CI must run it: {why}");
    }
    println!("SKIPPED: {test}: {why}");
    eprintln!("SKIPPED: {test}: {why}");
}

/// `infer-eval ARGS` run in `root`, offline.
pub fn ie_in(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_infer-eval"));
    c.current_dir(root).args(args).env("HF_HUB_OFFLINE", "1");
    c
}

/// Run `c` to its end: exit code, standard output, standard error.
pub fn outcome(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Run `c`, which must succeed; what it said.
pub fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", said(&o));
    said(&o)
}

/// A run folder's samples.jsonl, one JSON value per line.
pub fn samples(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A finished command's standard output and error, together.
pub fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
