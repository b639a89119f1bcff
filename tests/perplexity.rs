//! `infer-eval perplexity` against llama.cpp's log-probabilities on the same
//! GGUF (SmolLM2), windows and token ids (tests/golden/perplexity, made by
//! scripts/llamacpp_perplexity.py with llama-cpp-python): equal token ids,
//! window and word/byte counts, perplexities within 1%. Its bits do not
//! depend on threads, batch or prefill chunk; bad input is refused by name.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/perplexity")
}

fn ppl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(golden_dir())
        .arg("perplexity")
        .arg("--model")
        .arg(common::smollm2_path())
        .args(args)
        .output()
        .unwrap()
}

/// Run and read the JSON report.
fn report(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ppl.json");
    let o = ppl(&[args, &["--out", out.to_str().unwrap()]].concat());
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("token perplexity"), "{text}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// Token ids, window, word and byte counts equal llama.cpp's; each
/// document's log-likelihood within `doc_tol` (relative); with `ppl`, the
/// four perplexity figures within 1%.
fn check_against_llamacpp(
    golden: &str,
    files: &[&str],
    args: &[&str],
    doc_tol: f64,
    ppl: bool,
) -> Value {
    let g = common::golden_json(&format!("perplexity/{golden}"));
    let r = report(&[files, args].concat());
    assert_eq!(r["context"], g["context"]);
    assert_eq!(r["stride"], g["stride"]);
    assert_eq!(r["prefix_token"], g["prefix_token"]);
    let tok = infer_eval::loader::load_tokenizer(&common::smollm2_path()).unwrap();
    let docs = r["documents"].as_array().unwrap();
    let gdocs = g["documents"].as_array().unwrap();
    assert_eq!(docs.len(), gdocs.len());
    let texts: Vec<String> = files
        .iter()
        .flat_map(|f| read_docs(&golden_dir().join(f)))
        .collect();
    for ((d, gd), text) in docs.iter().zip(gdocs).zip(&texts) {
        let ids = tok.encode_with(text, false, false).unwrap();
        assert_eq!(ids, common::json_ids(&gd["token_ids"]), "{}", gd["name"]);
        assert_eq!(d["tokens"].as_u64().unwrap() as usize, ids.len());
        for k in ["windows", "words", "bytes"] {
            assert_eq!(d[k], gd[k], "{} {k}", gd["name"]);
        }
        let (a, b) = (
            d["loglik"].as_f64().unwrap(),
            gd["loglik"].as_f64().unwrap(),
        );
        eprintln!(
            "{}: loglik {a:.4}, llama.cpp {b:.4} ({:.2e})",
            gd["name"],
            (a - b).abs() / b.abs()
        );
        assert!(
            (a - b).abs() <= doc_tol * b.abs(),
            "{}: loglik {a} vs llama.cpp {b}",
            gd["name"]
        );
    }
    if !ppl {
        return r;
    }
    let t = &r["totals"];
    for k in [
        "token_perplexity",
        "word_perplexity",
        "byte_perplexity",
        "bits_per_byte",
    ] {
        let (a, b) = (t[k].as_f64().unwrap(), g[k].as_f64().unwrap());
        let rel = (a - b).abs() / b;
        eprintln!("{golden} {k}: infer-eval {a:.6}, llama.cpp {b:.6} (rel. diff {rel:.2e})");
        assert!(rel < 0.01, "{k}: infer-eval {a}, llama.cpp {b}");
    }
    r
}

/// The documents of a file as the CLI reads them.
fn read_docs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "jsonl") {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    } else {
        vec![text]
    }
}

#[test]
fn perplexity_agrees_with_llamacpp_and_its_bits_do_not_depend_on_threads_or_batch() {
    // Two documents, 645 tokens in overlapping windows.
    let files = ["declaration.txt", "gettysburg.txt"];
    let a = check_against_llamacpp(
        "smollm2_c128_s96.json",
        &files,
        &["--context", "128", "--stride", "96", "--threads", "1"],
        0.01,
        true,
    );
    // The same windows computed another way: 2 threads, 3 windows per
    // forward call, 7-token prefill chunks. Same bits.
    let b = report(&[
        files[0],
        files[1],
        "--context",
        "128",
        "--stride",
        "96",
        "--threads",
        "2",
        "--batch-size",
        "3",
        "--prefill-chunk",
        "7",
    ]);
    assert_eq!(a["window_logliks_sha256"], b["window_logliks_sha256"]);
    assert_eq!(
        a["totals"]["loglik"].as_f64().unwrap().to_bits(),
        b["totals"]["loglik"].as_f64().unwrap().to_bits()
    );
    // Several short documents (one per line), non-ASCII text, leading and
    // trailing whitespace, one longer than a window: ids and counts exact;
    // a few dozen tokens average llama.cpp's kernel differences less, so
    // each log-likelihood is held to 2%.
    check_against_llamacpp(
        "smollm2_docs_c32.json",
        &["docs.jsonl"],
        &["--context", "32"],
        0.02,
        false,
    );
}

#[test]
fn perplexity_refuses_bad_input_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n",
    )
    .unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9").unwrap();
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["declaration.txt", "--stride", "0"], "--stride 0"),
        (
            vec!["declaration.txt", "--context", "64", "--stride", "65"],
            "--stride 65",
        ),
        (vec!["declaration.txt", "--context", "1000000"], "positions"),
        (
            vec![bad.to_str().unwrap()],
            "bad.jsonl:2: no string field 'text'",
        ),
        (vec![latin1.to_str().unwrap()], "latin1.txt: not UTF-8"),
        (
            vec!["--lm-eval-task", "../../clients/ie_multiple_choice.yaml"],
            "output_type multiple_choice",
        ),
    ];
    for (args, want) in cases {
        let o = ppl(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: wanted '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = ppl(&["no-such-file.txt"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file.txt"));
}
