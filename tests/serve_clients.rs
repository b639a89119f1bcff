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

#[test]
fn lm_eval_through_the_server_scores_as_infer_eval_eval_does() {
    const LIMIT: usize = 12;
    let py = python();
    let model = common::smollm2_path();
    let s = Server::start(&model, &[]);
    let work = tempfile::tempdir().unwrap();
    let lm_out = work.path().join("lm-eval");
    let base = s.url("/v1/completions");
    let out = Command::new(py.parent().unwrap().join("lm_eval"))
        .current_dir(repo())
        .env("HF_HOME", work.path().join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .args(["--model", "local-completions", "--model_args"])
        .arg(format!(
            "model=llama,base_url={base},tokenizer_backend=remote,num_concurrent=4,max_retries=1"
        ))
        .args([
            "--tasks",
            "ie_multiple_choice",
            "--include_path",
            "tests/clients",
            "--log_samples",
        ])
        .arg("--limit")
        .arg(LIMIT.to_string())
        .arg("--output_path")
        .arg(&lm_out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lm_eval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<PathBuf> = walk(&lm_out);
    let read = |prefix: &str| {
        let f = files
            .iter()
            .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* in {files:?}"));
        std::fs::read_to_string(f).unwrap()
    };
    let results: Value = serde_json::from_str(&read("results_")).unwrap();
    let lm_samples: Vec<Value> = read("samples_")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lm_samples.len(), LIMIT);

    // infer-eval's own evaluation of the same items, in a copy of the project.
    let proj = common::project();
    let out = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj.path())
        .args(["eval", "task=multiple_choice", "run.threads=1"])
        .arg(format!("run.limit={LIMIT}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("run folder "))
            .unwrap(),
    );
    let ours: Vec<Value> = std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for lm in &lm_samples {
        let id = lm["doc"]["id"].as_str().unwrap();
        let mine = ours
            .iter()
            .find(|o| o["id"] == format!("multiple_choice/{id}"))
            .unwrap_or_else(|| panic!("{id} not in infer-eval's samples"));
        let served: Vec<f64> = lm["filtered_resps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().parse().unwrap())
            .collect();
        let want: Vec<f64> = mine["choice_logliks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(served.len(), want.len(), "{id}");
        for (k, (a, b)) in served.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{id} choice {k}: lm-eval via serve {a}, infer-eval eval {b}"
            );
        }
        assert_eq!(
            lm["acc"].as_f64().unwrap(),
            mine["score"].as_f64().unwrap(),
            "{id} acc"
        );
        assert_eq!(
            lm["acc_norm"].as_f64().unwrap(),
            mine["score_norm"].as_f64().unwrap(),
            "{id} acc_norm"
        );
    }
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    let r = &results["results"]["ie_multiple_choice"];
    let m = &metrics["datasets"]["multiple_choice"];
    assert_eq!(
        r["acc,none"].as_f64().unwrap(),
        m["accuracy"]["mean"].as_f64().unwrap()
    );
    assert_eq!(
        r["acc_norm,none"].as_f64().unwrap(),
        m["accuracy_norm"]["mean"].as_f64().unwrap()
    );
    eprintln!(
        "lm-eval through serve = infer-eval eval on {LIMIT} items: acc {}, acc_norm {}",
        r["acc,none"], r["acc_norm,none"]
    );
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
