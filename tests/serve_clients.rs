//! Real clients against `infer-eval serve`: the `openai` Python client and
//! lm-evaluation-harness (`lm_eval --model local-completions` with the remote
//! tokenizer), from PyPI in a venv this test creates (pinned:
//! tests/clients/requirements.txt). lm-eval's per-item log-likelihoods and
//! acc / acc_norm must equal those `infer-eval eval` computes itself.

mod common;

use common::server::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The clients' venv (made once per requirements file, then reused).
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        common::venv::venv("clients", "tests/clients/requirements.txt").join("python")
    })
}

#[test]
fn the_openai_python_client_reads_completions_chat_streams_and_errors() {
    let py = python();
    let s = Server::start(&common::smollm2_path(), &[]);
    let out = Command::new(py)
        .arg(repo().join("tests/clients/openai_client.py"))
        .arg(s.url("/v1"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["errors"], 3);
    assert!(seen["echo_tokens"].as_u64().unwrap() > 6);
    eprintln!("openai client saw {seen}");
}

/// lm-eval's tasks in tests/clients: ie_multiple_choice (our built-in
/// multiple_choice task written as lm-eval YAML), ie_planets_fewshot (an
/// `include`d base, a description, 3-shot from the test split itself) and
/// ie_planets_csv (CSV data, letters as choices, first_n 2-shot from train).
const LM_TASKS: [&str; 3] = ["ie_multiple_choice", "ie_planets_fewshot", "ie_planets_csv"];

#[test]
fn lm_eval_through_the_server_scores_as_infer_eval_eval_does() {
    const LIMIT: usize = 10;
    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    lm_eval(
        &s,
        &LM_TASKS.join(","),
        "",
        Some(LIMIT),
        &lm_out,
        work.path(),
    );
    drop(s);
    let read = |prefix: &str| read_prefixed(&lm_out, prefix);
    let results: Value = serde_json::from_str(&read("results_")).unwrap();

    // infer-eval's own evaluation of the same items, in a copy of the
    // project: the built-in task, and the three lm-eval task files run
    // natively (data paths relative to the project, as lm-eval reads them).
    let proj = project_with(&["tests/clients"]);
    let builtin = native(proj.path(), &["task=multiple_choice"], LIMIT);
    let mut args = vec!["--include-path", "tests/clients"];
    for t in LM_TASKS {
        args.extend(["--lm-eval-task", t]);
    }
    let from_yaml = native(proj.path(), &args, LIMIT);

    for task in LM_TASKS {
        let lm_samples: Vec<Value> = read(&format!("samples_{task}_"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lm_samples.len(), LIMIT, "{task}");
        let r = &results["results"][task];
        same_choices(&lm_samples, r, &from_yaml, task, &|lm| {
            lm["doc_id"].to_string()
        });
        if task == "ie_multiple_choice" {
            same_choices(&lm_samples, r, &builtin, "multiple_choice", &|lm| {
                lm["doc"]["id"].as_str().unwrap().to_string()
            });
        }
        eprintln!(
            "{task}: lm-eval through serve = infer-eval eval on {LIMIT} items: acc {}, acc_norm {}",
            r["acc,none"], r["acc_norm,none"]
        );
    }

    // The few-shot examples are recorded: 3 per item, never the item itself,
    // and the CSV task's are the first two training rows for every item.
    for s in &from_yaml.samples {
        let id = s["id"].as_str().unwrap();
        let shots: Vec<(String, u64)> = s["fewshot"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["split"].as_str().unwrap().to_string(),
                            f["index"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (task, index) = id.split_once('/').unwrap();
        match task {
            "ie_multiple_choice" => assert!(shots.is_empty(), "{id}"),
            "ie_planets_fewshot" => {
                assert_eq!(shots.len(), 3, "{id}");
                assert!(
                    shots
                        .iter()
                        .all(|(sp, i)| sp == "test" && i.to_string() != index),
                    "{id}: {shots:?}"
                );
            }
            _ => assert_eq!(
                shots,
                [("train".to_string(), 0), ("train".to_string(), 1)],
                "{id}"
            ),
        }
    }
    // A re-run of the native lm-eval run draws the same examples: MATCH.
    assert_verifies(proj.path(), &from_yaml.dir);
}

/// generate_until task files (tests/clients/lm_eval/ie_*_gen.yaml) and a
/// loglikelihood one (ie_arithmetic_ll.yaml, whose log-likelihoods,
/// is_greedy, acc and perplexity are compared bit for bit): lm-eval
/// through the server (token-id prompts, `stop` = until + the EOS text,
/// temperature 0) and `infer-eval eval` natively build the same prompts
/// (sha256 of the context, few-shot included), generate the same text, and
/// give every filter pipeline the same answer and exact_match, per item and
/// in aggregate.
#[test]
fn lm_eval_generate_until_and_loglikelihood_through_the_server_equal_infer_eval_eval() {
    const LIMIT: usize = 10;
    const TASKS: [&str; 2] = ["ie_arithmetic_gen", "ie_capitals_gen"];
    let all = [&TASKS[..], &["ie_arithmetic_ll"]].concat();
    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    lm_eval(&s, &all.join(","), "", Some(LIMIT), &lm_out, work.path());
    drop(s);
    let results: Value = serde_json::from_str(&read_prefixed(&lm_out, "results_")).unwrap();
    let proj = project_with(&["tests/clients"]);
    let mut args = vec!["--include-path", "tests/clients"];
    for t in &all {
        args.extend(["--lm-eval-task", t]);
    }
    let run = native(proj.path(), &args, LIMIT);
    let mut filters_seen = 0;
    for task in TASKS {
        let lm_samples: Vec<Value> = read_prefixed(&lm_out, &format!("samples_{task}_"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for lm in &lm_samples {
            let id = format!("{task}/{}", lm["doc_id"]);
            let mine = run
                .samples
                .iter()
                .find(|o| o["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} not in infer-eval's samples"));
            assert_eq!(
                lm["prompt_hash"], mine["prompt_sha256"],
                "{id}: the context"
            );
            assert_eq!(lm["resps"][0][0], mine["text"], "{id}: the generated text");
            let filter = lm["filter"].as_str().unwrap();
            let f = mine["filtered"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["filter"] == filter)
                .unwrap_or_else(|| panic!("{id}: no filter {filter} in {mine}"));
            assert_eq!(lm["filtered_resps"][0], f["answer"], "{id} {filter}");
            assert_eq!(lm["exact_match"], f["exact_match"], "{id} {filter}");
            filters_seen += 1;
        }
        let m = &run.metrics["datasets"][task]["lm_eval"];
        let r = &results["results"][task];
        let names: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert!(!names.is_empty(), "{task}: {m}");
        for name in names {
            assert_eq!(
                r[name].as_f64().unwrap(),
                m[name]["mean"].as_f64().unwrap(),
                "{task} {name}"
            );
            eprintln!(
                "{task}: {name} {} (lm-eval through serve = infer-eval eval)",
                r[name]
            );
        }
    }
    // 10 items x (3 pipelines + 1).
    assert_eq!(filters_seen, LIMIT * 4);

    // loglikelihood: (ll, is_greedy) per document, acc and perplexity.
    let ll_task = "ie_arithmetic_ll";
    let lm_samples: Vec<Value> = read_prefixed(&lm_out, &format!("samples_{ll_task}_"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lm_samples.len(), LIMIT);
    for lm in &lm_samples {
        let id = format!("{ll_task}/{}", lm["doc_id"]);
        let mine = run.samples.iter().find(|o| o["id"] == id.as_str()).unwrap();
        assert_eq!(
            lm["prompt_hash"], mine["prompt_sha256"],
            "{id}: the context"
        );
        let served: f64 = lm["filtered_resps"][0][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let ours = mine["choice_logliks"][0].as_f64().unwrap();
        assert_eq!(
            served.to_bits(),
            ours.to_bits(),
            "{id}: lm-eval {served}, infer-eval {ours}"
        );
        assert_eq!(
            lm["acc"].as_f64().unwrap(),
            mine["score"].as_f64().unwrap(),
            "{id} acc (is_greedy)"
        );
    }
    let m = &run.metrics["datasets"][ll_task]["lm_eval"];
    for name in ["acc,none", "perplexity,none"] {
        let theirs = results["results"][ll_task][name].as_f64().unwrap();
        assert_eq!(
            theirs.to_bits(),
            m[name]["mean"].as_f64().unwrap().to_bits(),
            "{ll_task} {name}"
        );
        eprintln!("{ll_task}: {name} {theirs} (lm-eval through serve = infer-eval eval)");
    }
    let greedy = run
        .samples
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with(ll_task) && s["score"] == 1.0)
        .count();
    assert!(
        greedy > 0 && greedy < LIMIT,
        "both greedy and not among the items: {greedy}"
    );
    // A re-run generates the same: MATCH.
    assert_verifies(proj.path(), &run.dir);
}

/// `infer-eval verify DIR` in `proj` says MATCH.
fn assert_verifies(proj: &Path, dir: &Path) {
    let v = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj)
        .arg("verify")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("MATCH"),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

/// lm-eval's samples `lm` and results `r` of a multiple-choice task, and
/// infer-eval's run of `dataset` (item ids `<dataset>/<id_of(sample)>`): per
/// item the choices' log-likelihoods are equal bit for bit, acc and
/// acc_norm are equal, and so are their means.
fn same_choices(
    lm: &[Value],
    r: &Value,
    run: &Native,
    dataset: &str,
    id_of: &dyn Fn(&Value) -> String,
) {
    for l in lm {
        let id = format!("{dataset}/{}", id_of(l));
        let mine = run.sample(&id);
        let served: Vec<f64> = l["filtered_resps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().parse().unwrap())
            .collect();
        let want: Vec<f64> = f64s(&mine["choice_logliks"]);
        assert_eq!(served.len(), want.len(), "{id}");
        for (k, (a, b)) in served.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{id} choice {k}: lm-eval via serve {a}, infer-eval eval {b}"
            );
        }
        for (theirs, ours) in [("acc", "score"), ("acc_norm", "score_norm")] {
            assert_eq!(l[theirs].as_f64(), mine[ours].as_f64(), "{id} {theirs}");
        }
    }
    let m = &run.metrics["datasets"][dataset];
    for (theirs, ours) in [("acc,none", "accuracy"), ("acc_norm,none", "accuracy_norm")] {
        assert_eq!(
            r[theirs].as_f64().unwrap(),
            m[ours]["mean"].as_f64().unwrap(),
            "{dataset} {theirs}"
        );
    }
}

/// `lm_eval --model local-completions` against `server` (remote
/// tokenizer), its samples logged under `out`.
fn lm_eval(
    server: &Server,
    tasks: &str,
    model_args: &str,
    limit: Option<usize>,
    out: &Path,
    work: &Path,
) {
    let mut c = Command::new(python().parent().unwrap().join("lm_eval"));
    c.current_dir(repo())
        .args(["--include_path", "tests/clients"]);
    run_lm_eval(c, server, tasks, model_args, limit, out, work);
}

fn run_lm_eval(
    mut c: Command,
    server: &Server,
    tasks: &str,
    model_args: &str,
    limit: Option<usize>,
    out: &Path,
    work: &Path,
) {
    let base = server.url("/v1/completions");
    c.env("HF_HOME", work.join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .args(["--model", "local-completions", "--model_args"])
        .arg(format!(
            "model=llama,base_url={base},tokenizer_backend=remote,num_concurrent=4,max_retries=1{model_args}"
        ))
        .args(["--tasks", tasks, "--log_samples"])
        .arg("--output_path")
        .arg(out);
    if let Some(n) = limit {
        c.arg("--limit").arg(n.to_string());
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "lm_eval: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The file under `dir` whose name starts with `prefix`.
fn read_prefixed(dir: &Path, prefix: &str) -> String {
    let files = walk(dir);
    let f = files
        .iter()
        .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {files:?}"));
    std::fs::read_to_string(f).unwrap()
}

/// Columnar data (tests/clients/columnar, made by its make_data.py with
/// pyarrow and datasets): a task over a Parquet file, and one naming a Hub
/// dataset that lm-eval (datasets, offline) and `infer-eval eval` both find
/// in the same Hugging Face datasets cache, its test split in five Arrow
/// shards. Per item the log-likelihoods are equal bit for bit, and so are
/// acc and acc_norm; the native run verifies to MATCH.
#[test]
fn lm_eval_reads_parquet_and_the_datasets_cache_as_infer_eval_eval_does() {
    const LIMIT: usize = 8;
    const TASKS: [&str; 2] = ["ie_planets_parquet", "ie_planets_hub"];
    let proj = common::project();
    let p = proj.path();
    common::copy_dir(&repo().join("tests/clients/columnar"), &p.join("columnar"));
    let made = Command::new(python())
        .arg("columnar/make_data.py")
        .arg("data/multiple_choice.jsonl")
        .arg(".")
        .current_dir(p)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let cache = p.join("hf/datasets");

    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    let mut c = Command::new(python().parent().unwrap().join("lm_eval"));
    c.current_dir(p)
        .env("HF_DATASETS_CACHE", &cache)
        .args(["--include_path", "columnar"]);
    run_lm_eval(
        c,
        &s,
        &TASKS.join(","),
        "",
        Some(LIMIT),
        &lm_out,
        work.path(),
    );
    drop(s);
    let results: Value = serde_json::from_str(&read_prefixed(&lm_out, "results_")).unwrap();

    let mut c = Command::new(env!("CARGO_BIN_EXE_infer-eval"));
    c.env("HF_DATASETS_CACHE", &cache);
    let run = native_with(
        c,
        p,
        &[
            "--include-path",
            "columnar",
            "--lm-eval-task",
            TASKS[0],
            "--lm-eval-task",
            TASKS[1],
        ],
        LIMIT,
    );
    for task in TASKS {
        let lm: Vec<Value> = read_prefixed(&lm_out, &format!("samples_{task}_"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lm.len(), LIMIT, "{task}");
        let r = &results["results"][task];
        same_choices(&lm, r, &run, task, &|l| l["doc_id"].to_string());
        eprintln!(
            "{task}: lm-eval through serve = infer-eval eval on {LIMIT} items: acc {}, acc_norm {}",
            r["acc,none"], r["acc_norm,none"]
        );
    }
    assert_verifies(p, &run.dir);
}

/// Sampled generate_until (tests/clients/lm_eval/ie_arithmetic_sampled.yaml:
/// temperature 1, top_p 0.95, top_k 50): lm-eval through the server and
/// `infer-eval eval` draw the same text for every item (the server keys a
/// one-prompt request's draws as eval keys a sampled lm-eval task's), some
/// of them other than the greedy text, and the run verifies.
#[test]
fn lm_eval_sampled_generate_until_through_the_server_equals_infer_eval_eval() {
    const LIMIT: usize = 10;
    let tasks = ["ie_arithmetic_gen", "ie_arithmetic_sampled"];
    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    lm_eval(&s, &tasks.join(","), "", Some(LIMIT), &lm_out, work.path());
    drop(s);
    let proj = project_with(&["tests/clients"]);
    let mut args = vec!["--include-path", "tests/clients"];
    for t in tasks {
        args.extend(["--lm-eval-task", t]);
    }
    let run = native(proj.path(), &args, LIMIT);
    let samples: Vec<Value> = read_prefixed(&lm_out, "samples_ie_arithmetic_sampled_")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), LIMIT * 3, "10 items x 3 pipelines");
    let mut other_than_greedy = 0;
    for l in &samples {
        let doc = &l["doc_id"];
        let mine = run.sample(&format!("ie_arithmetic_sampled/{doc}"));
        assert_eq!(
            l["resps"][0][0], mine["text"],
            "item {doc}: the sampled text"
        );
        let greedy = run.sample(&format!("ie_arithmetic_gen/{doc}"));
        other_than_greedy += (greedy["text"] != mine["text"]) as usize;
    }
    assert!(
        other_than_greedy > 0,
        "every sampled text equals the greedy one: sampling had no effect"
    );
    assert_verifies(proj.path(), &run.dir);

    // Several seeds: `+run.seeds=[1234,7]` gives, per seed, what lm_eval
    // gives with `--model_args seed=S`.
    let s = Server::start(&common::smollm2_path(), &[]);
    let lm7 = work.path().join("lm-eval-seed7");
    let task = "ie_arithmetic_sampled";
    lm_eval(&s, task, ",seed=7", Some(LIMIT), &lm7, work.path());
    drop(s);
    let seeds = native(
        proj.path(),
        &[
            "--include-path",
            "tests/clients",
            "--lm-eval-task",
            task,
            "+run.seeds=[1234,7]",
        ],
        LIMIT,
    );
    assert_eq!(seeds.samples.len(), LIMIT * 2);
    let mut seeds_differ = 0;
    for (dir, seed) in [(&lm_out, 1234), (&lm7, 7)] {
        for l in read_prefixed(dir, &format!("samples_{task}_")).lines() {
            let l: Value = serde_json::from_str(l).unwrap();
            let doc = &l["doc_id"];
            let mine = seeds.sample(&format!("{task}/{doc}@seed={seed}"));
            assert_eq!(l["resps"][0][0], mine["text"], "item {doc}, seed {seed}");
            let other = seeds.sample(&format!("{task}/{doc}@seed={}", 1241 - seed));
            seeds_differ += (other["text"] != mine["text"]) as usize;
        }
    }
    assert!(seeds_differ > 0, "seeds 1234 and 7 drew the same texts");
    assert!(seeds.metrics["datasets"][task]["across_seeds"].is_object());
    assert_verifies(proj.path(), &seeds.dir);
}

/// lm-eval's `max_length` (here 32, so a request feeds at most 31 tokens)
/// cuts long requests: lm_eval through the server and `infer-eval eval
/// --max-length 32` left-truncate a 3-shot multiple-choice context, a
/// loglikelihood context and a generation context (to 31 - max_gen_toks)
/// alike: the same log-likelihoods to the bit, the same generated text.
#[test]
fn lm_eval_cuts_long_requests_to_max_length_as_infer_eval_eval_does() {
    const LIMIT: usize = 4;
    let tasks = [
        "ie_planets_fewshot",
        "ie_arithmetic_ll",
        "ie_arithmetic_gen",
    ];
    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    let all = tasks.join(",");
    lm_eval(
        &s,
        &all,
        ",max_length=32",
        Some(LIMIT),
        &lm_out,
        work.path(),
    );
    drop(s);
    let results: Value = serde_json::from_str(&read_prefixed(&lm_out, "results_")).unwrap();
    let proj = project_with(&["tests/clients"]);
    let mut args = vec!["--include-path", "tests/clients", "--max-length", "32"];
    for t in tasks {
        args.extend(["--lm-eval-task", t]);
    }
    let run = native(proj.path(), &args, LIMIT);
    let lm = |task: &str| -> Vec<Value> {
        read_prefixed(&lm_out, &format!("samples_{task}_"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mine = |id: &str| run.sample(id);
    // Multiple choice and loglikelihood: contexts cut (a 3-shot context
    // with a description is far longer than 31 tokens), the same bits.
    for task in ["ie_planets_fewshot", "ie_arithmetic_ll"] {
        let samples = lm(task);
        assert_eq!(samples.len(), LIMIT, "{task}");
        if task == "ie_planets_fewshot" {
            same_choices(&samples, &results["results"][task], &run, task, &|l| {
                l["doc_id"].to_string()
            });
        }
        for l in &samples {
            let m = mine(&format!("{task}/{}", l["doc_id"]));
            let n = m["prompt_ids"].as_array().unwrap().len();
            assert!(n < 31, "{task}: a context of {n} tokens was not cut");
            let served: f64 = l["filtered_resps"][0][0].as_str().unwrap().parse().unwrap();
            let ours = m["choice_logliks"][0].as_f64().unwrap();
            assert_eq!(served.to_bits(), ours.to_bits(), "{task}: {l}");
        }
    }
    // generate_until: the last 31 - 10 tokens of the context.
    let task = "ie_arithmetic_gen";
    for l in &lm(task) {
        let m = mine(&format!("{task}/{}", l["doc_id"]));
        assert_eq!(m["prompt_ids"].as_array().unwrap().len(), 21, "{task}");
        assert_eq!(l["resps"][0][0], m["text"], "{task}: the generated text");
    }
    assert_verifies(proj.path(), &run.dir);
}

/// A loglikelihood_rolling task (tests/clients/lm_eval/ie_rolling.yaml):
/// lm-eval through the server (max_length 40, so windows of 38 tokens and
/// a document of two), `infer-eval perplexity --lm-eval-task` and
/// `infer-eval eval --lm-eval-task --max-length 40` give the same
/// per-document log-likelihoods and word counts, and the same word and
/// byte perplexity and bits per byte, to the bit.
#[test]
fn lm_eval_rolling_perplexity_through_the_server_equals_infer_eval_perplexity_and_eval() {
    let s = Server::start(&common::smollm2_path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    lm_eval(
        &s,
        "ie_rolling",
        ",max_length=40",
        None,
        &lm_out,
        work.path(),
    );
    drop(s);
    let results: Value = serde_json::from_str(&read_prefixed(&lm_out, "results_")).unwrap();
    let r = &results["results"]["ie_rolling"];
    let report = work.path().join("ppl.json");
    let o = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(repo())
        .args(["perplexity", "--include-path", "tests/clients"])
        .args(["--lm-eval-task", "ie_rolling", "--context", "38", "--out"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let lm_samples: Vec<Value> = read_prefixed(&lm_out, "samples_ie_rolling_")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let docs = ours["documents"].as_array().unwrap();
    assert_eq!(lm_samples.len(), docs.len());
    assert!(docs.iter().any(|d| d["windows"].as_u64().unwrap() > 1));
    for lm in &lm_samples {
        let d = &docs[lm["doc_id"].as_u64().unwrap() as usize];
        let (ll, words) = (&lm["word_perplexity"][0], &lm["word_perplexity"][1]);
        assert_eq!(
            ll.as_f64().unwrap().to_bits(),
            d["loglik"].as_f64().unwrap().to_bits(),
            "{lm}"
        );
        assert_eq!(words, &d["words"]);
    }
    for (theirs, mine) in [
        ("word_perplexity,none", "word_perplexity"),
        ("byte_perplexity,none", "byte_perplexity"),
        ("bits_per_byte,none", "bits_per_byte"),
    ] {
        let (a, b) = (
            r[theirs].as_f64().unwrap(),
            ours["totals"][mine].as_f64().unwrap(),
        );
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{mine}: lm-eval {a}, infer-eval {b}"
        );
    }
    eprintln!(
        "ie_rolling: lm-eval through serve = infer-eval perplexity: word_perplexity {}, byte_perplexity {}, bits_per_byte {}",
        r["word_perplexity,none"], r["byte_perplexity,none"], r["bits_per_byte,none"]
    );
    // `infer-eval eval` runs the same task into a run folder, given
    // lm-eval's max_length: per document the same windows and summed
    // log-likelihood, the same aggregates, and the run verifies.
    let proj = project_with(&["tests/clients", "tests/golden/perplexity"]);
    let args = [
        "--include-path",
        "tests/clients",
        "--lm-eval-task",
        "ie_rolling",
        "--max-length",
        "40",
    ];
    let run = native(proj.path(), &args, 1000);
    assert_eq!(run.samples.len(), lm_samples.len());
    for lm in &lm_samples {
        let i = lm["doc_id"].as_u64().unwrap() as usize;
        let id = format!("ie_rolling/{i}");
        let mine = run.sample(&id);
        let windows: Vec<f64> = f64s(&mine["choice_logliks"]);
        assert_eq!(windows.len() as u64, docs[i]["windows"].as_u64().unwrap());
        let sum = windows.iter().fold(0.0, |a, b| a + b);
        let theirs = lm["word_perplexity"][0].as_f64().unwrap();
        assert_eq!(
            sum.to_bits(),
            theirs.to_bits(),
            "{id}: eval {sum}, lm-eval {theirs}"
        );
    }
    let m = &run.metrics["datasets"]["ie_rolling"];
    for metric in [
        "word_perplexity,none",
        "byte_perplexity,none",
        "bits_per_byte,none",
    ] {
        let (a, b) = (
            r[metric].as_f64().unwrap(),
            m["lm_eval"][metric]["mean"].as_f64().unwrap(),
        );
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{metric}: lm-eval {a}, infer-eval eval {b}"
        );
    }
    assert_eq!(
        m["perplexity"]["words"], ours["totals"]["words"],
        "eval's totals are perplexity's"
    );
    assert_verifies(proj.path(), &run.dir);
    // `diff` shows a perplexity task's figures, not an accuracy.
    let d = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj.path())
        .arg("diff")
        .args([&run.dir, &run.dir])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(d.status.success(), "{text}");
    assert!(
        text.contains("ie_rolling") && text.contains("perplexity A -> B: word"),
        "{text}"
    );
    assert!(
        !text.contains("McNemar"),
        "no accuracy pairs for a perplexity task: {text}"
    );

    // An empty document has no windows and counts as lm-eval counts it
    // (one word, no bytes), in eval as in `infer-eval perplexity`.
    let p = proj.path();
    std::fs::write(
        p.join("empty.jsonl"),
        "{\"text\": \"\"}\n{\"text\": \"Some words here.\"}\n",
    )
    .unwrap();
    let yaml = std::fs::read_to_string(repo().join("tests/clients/lm_eval/ie_rolling.yaml"))
        .unwrap()
        .replace("tests/golden/perplexity/docs.jsonl", "empty.jsonl")
        .replace("task: ie_rolling", "task: ie_empty");
    std::fs::write(p.join("ie_empty.yaml"), yaml).unwrap();
    let run = native(p, &["--lm-eval-task", "ie_empty.yaml"], 10);
    assert_eq!(
        run.sample("ie_empty/0")["choice_logliks"],
        serde_json::json!([])
    );
    let report = p.join("empty.json");
    let o = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(p)
        .args(["perplexity", "--lm-eval-task", "ie_empty.yaml", "--out"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mine = &run.metrics["datasets"]["ie_empty"]["perplexity"];
    for k in [
        "loglik",
        "tokens",
        "words",
        "bytes",
        "windows",
        "word_perplexity",
    ] {
        assert_eq!(mine[k], theirs["totals"][k], "{k}");
    }
    assert_eq!(mine["words"], 4, "the empty document is one word");
}

/// A copy of the project with the repository's folders `subs` as well
/// (task files read data relative to it, as lm-eval reads them).
fn project_with(subs: &[&str]) -> tempfile::TempDir {
    let proj = common::project();
    for sub in subs {
        common::copy_dir(&repo().join(sub), &proj.path().join(sub));
    }
    proj
}

struct Native {
    dir: PathBuf,
    samples: Vec<Value>,
    metrics: Value,
}

impl Native {
    /// The record of sample `id`.
    fn sample(&self, id: &str) -> &Value {
        self.samples
            .iter()
            .find(|o| o["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in infer-eval's samples"))
    }
}

/// A JSON array of numbers.
fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// `infer-eval eval ARGS run.limit=LIMIT` in `proj`: its run folder's
/// samples and metrics.
fn native(proj: &Path, args: &[&str], limit: usize) -> Native {
    native_with(
        Command::new(env!("CARGO_BIN_EXE_infer-eval")),
        proj,
        args,
        limit,
    )
}

fn native_with(mut c: Command, proj: &Path, args: &[&str], limit: usize) -> Native {
    let out = c
        .current_dir(proj)
        .arg("eval")
        .args(args)
        .arg("run.threads=1")
        .arg(format!("run.limit={limit}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eval {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("run folder "))
            .unwrap(),
    );
    let dir = if dir.is_absolute() {
        dir
    } else {
        proj.join(dir)
    };
    let samples = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let metrics =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    Native {
        dir,
        samples,
        metrics,
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
