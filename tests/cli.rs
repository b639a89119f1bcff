//! The command line: its JSON record, and one-line errors for bad input.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn infer_eval(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failure: non-zero exit, one error line naming `file` and `problem`, no panic.
fn assert_clean_error(args: &[&str], file: &str, problem: &str) {
    let (code, _, err) = infer_eval(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("infer-eval: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one error line, got {err:?}"
    );
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains(file),
        "{args:?}: error should name {file}: {err}"
    );
    assert!(
        lines[0].contains(problem),
        "{args:?}: error should say {problem:?}: {err}"
    );
}

#[test]
fn record_fields_and_digests() {
    let t = tiny_model(Dtype::F32, 21);
    let dir = t.dir.path().to_str().unwrap();
    let out1 = t.dir.path().join("a.json");
    let out2 = t.dir.path().join("b.json");
    let prompts = t.dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"w1 w2 w3\", \"id\": \"x\"}\n{\"prompt\": \"w9 w8\"}\n\n{\"prompt\": \"w4\", \"id\": 7}\n").unwrap();
    let p = prompts.to_str().unwrap();
    let base = [
        "--model",
        dir,
        "--prompts",
        p,
        "--max-tokens",
        "5",
        "--temperature",
        "0.8",
        "--seed",
        "3",
    ];
    let (c1, _, e1) = infer_eval(
        &[
            &base[..],
            &["--threads", "1", "--out", out1.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(c1, 0, "{e1}");
    let (c2, _, e2) = infer_eval(
        &[
            &base[..],
            &[
                "--threads",
                "3",
                "--batch-size",
                "3",
                "--prefill-chunk",
                "2",
                "--out",
                out2.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(c2, 0, "{e2}");
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&out1).unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&out2).unwrap()).unwrap();
    assert_eq!(
        a["sequences"], b["sequences"],
        "sequences must not depend on threads, batch or chunking"
    );
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(a["tokenizer_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(a["sampling"]["seed"], 3);
    let seqs = a["sequences"].as_array().unwrap();
    assert_eq!(
        seqs.iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["x", "1", "7"]
    );
    let mut run_hash = sha2::Sha256::default();
    for s in seqs {
        use sha2::Digest;
        let ids: Vec<u32> = s["output_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids.len(), 5);
        let mut h = sha2::Sha256::new();
        ids.iter().for_each(|i| h.update(i.to_le_bytes()));
        assert_eq!(s["digest"].as_str().unwrap(), hex::encode(h.finalize()));
        run_hash.update(s["digest"].as_str().unwrap().as_bytes());
        assert!(s["prompt_ids"].as_array().unwrap().len() >= 1);
        assert!(s["text"].is_string());
    }
    use sha2::Digest;
    assert_eq!(
        a["digest"].as_str().unwrap(),
        hex::encode(run_hash.finalize())
    );
}

fn write(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn broken_gguf_files() {
    let real = std::fs::read(smollm2_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, len, problem) in [
        ("cut-header.gguf", 3usize, "missing GGUF magic"),
        ("cut-counts.gguf", 12, "truncated"),
        ("cut-metadata.gguf", 5000, "past the end of the file"),
        (
            "cut-tensors.gguf",
            1_000_000,
            "extends past the end of the file",
        ),
        (
            "cut-last-byte.gguf",
            real.len() - 1,
            "extends past the end of the file",
        ),
    ] {
        let p = write(&dir.path().join(name), &real[..len]);
        assert_clean_error(
            &["--model", &p, "--prompt", "hi", "--max-tokens", "1"],
            name,
            problem,
        );
    }
    let mut s = 12345u64;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 56) as u8
        })
        .collect();
    let p = write(&dir.path().join("noise.gguf"), &noise);
    assert_clean_error(
        &["--model", &p, "--prompt", "hi"],
        "noise.gguf",
        "not a valid GGUF file",
    );
    // A GGUF header claiming 2^60 metadata entries must fail before allocating.
    let mut huge = b"GGUF".to_vec();
    huge.extend(3u32.to_le_bytes());
    huge.extend(1u64.to_le_bytes());
    huge.extend((1u64 << 60).to_le_bytes());
    let p = write(&dir.path().join("huge.gguf"), &huge);
    assert_clean_error(
        &["--model", &p, "--prompt", "hi"],
        "huge.gguf",
        "past the end of the file",
    );
}

#[test]
fn safetensors_header_that_lies_about_offsets() {
    let t = tiny_model(Dtype::F32, 22);
    let st = t.dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Point the first tensor's end far past the data.
    let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[0,99999999", 1);
    assert_ne!(lied, header);
    let mut h = lied.into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    std::fs::write(&st, out).unwrap();
    assert_clean_error(
        &["--model", t.dir.path().to_str().unwrap(), "--prompt", "w1"],
        "model.safetensors",
        "invalid safetensors",
    );
}

#[test]
fn config_with_a_field_missing() {
    let t = tiny_model(Dtype::F32, 23);
    let mut cfg = config_json();
    cfg.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(t.dir.path().join("config.json"), cfg.to_string()).unwrap();
    assert_clean_error(
        &["--model", t.dir.path().to_str().unwrap(), "--prompt", "w1"],
        "config.json",
        "missing field `hidden_size`",
    );
}

#[test]
fn unknown_model_name() {
    assert_clean_error(
        &["--model", "no-such-model", "--prompt", "hi"],
        "no-such-model",
        "unknown model",
    );
}

#[test]
fn bad_prompt_files() {
    let t = tiny_model(Dtype::F32, 24);
    let m = t.dir.path().to_str().unwrap();
    for (name, content, problem) in [
        ("empty.jsonl", &b""[..], "no prompts"),
        (
            "badjson.jsonl",
            b"{\"prompt\": \"w1\"}\n{oops\n",
            "line 2: invalid JSON",
        ),
        (
            "noprompt.jsonl",
            b"{\"id\": 1}\n",
            "missing field \"prompt\"",
        ),
        (
            "dup.jsonl",
            b"{\"prompt\": \"w1\", \"id\": \"a\"}\n{\"prompt\": \"w2\", \"id\": \"a\"}\n",
            "duplicate id",
        ),
        (
            "latin1.jsonl",
            b"{\"prompt\": \"caf\xe9\"}\n",
            "not valid UTF-8",
        ),
    ] {
        let p = write(&t.dir.path().join(name), content);
        assert_clean_error(&["--model", m, "--prompts", &p], name, problem);
    }
}

#[test]
fn device_flag_errors() {
    // A bad flag value is a usage error (exit 2), as docs/ERRORS.md says.
    let (code, _, err) = infer_eval(&["--device", "tpu", "--max-tokens", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("'tpu'") && err.contains("--device") && err.contains("cuda:N"),
        "{err}"
    );
    // A CPU-only build names the way to a CUDA one instead of failing obscurely.
    #[cfg(not(feature = "cuda"))]
    {
        let t = tiny_model(Dtype::F32, 3);
        let dir = t.dir.path().to_str().unwrap();
        let (code, _, err) =
            infer_eval(&["--model", dir, "--device", "cuda:1", "--max-tokens", "1"]);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("built without CUDA") && err.contains("build-cuda.sh"),
            "{err}"
        );
        let (code, _, err) = infer_eval(&["bench", "speed", "--device", "cuda"]);
        assert_eq!(code, 3, "{err}");
    }
}

/// Finding 10 of issue 11: with `--allow-extra-tensors` a file with an
/// unused tensor loads, says so, records it, and computes what the file
/// without it computes (the tensor really is ignored).
#[test]
fn extra_tensors_load_only_when_allowed_and_are_recorded() {
    let t = tiny_model(Dtype::F32, 41);
    let extra = t.dir.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(t.dir.path().join(f), extra.join(f)).unwrap();
    }
    let mut w = t.weights.clone();
    w.insert(
        "model.layers.0.self_attn.k_proj.bias".into(),
        (vec![KV_HEADS * HEAD_DIM], vec![1.0; KV_HEADS * HEAD_DIM]),
    );
    write_safetensors(&extra.join("model.safetensors"), &w, Dtype::F32).unwrap();
    let plain = t.dir.path().to_str().unwrap();
    let extra = extra.to_str().unwrap();
    let gen = ["--prompt", "w1 w2", "--max-tokens", "4"];
    let (code, _, err) = infer_eval(&[&["--model", extra][..], &gen].concat());
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("k_proj.bias"), "{err}");
    let (code, out_plain, _) = infer_eval(&[&["--model", plain][..], &gen].concat());
    assert_eq!(code, 0);
    let (code, out_extra, err) =
        infer_eval(&[&["--model", extra, "--allow-extra-tensors"][..], &gen].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("ignoring 1 tensor") && err.contains("k_proj.bias"),
        "{err}"
    );
    assert_eq!(out_plain, out_extra);
    let (code, info, _) = infer_eval(&["info", "--model", extra, "--allow-extra-tensors"]);
    assert_eq!(code, 0);
    assert!(
        info.contains("\"ignored_tensors\"") && info.contains("k_proj.bias"),
        "{info}"
    );
}

/// Finding 11 of issue 11: the fingerprint of a Hugging Face folder covers
/// every file that changes the outputs, not only the weights.
#[test]
fn hf_fingerprint_covers_config_and_tokenizer_files() {
    let t = tiny_model(Dtype::F32, 42);
    let d = t.dir.path();
    let sha = || {
        infer_eval::loader::load(d, &candle_core::Device::Cpu)
            .unwrap()
            .info
            .sha256
    };
    let base = sha();
    let mut cfg = config_json();
    cfg["rope_theta"] = serde_json::json!(50000.0);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let theta = sha();
    assert_ne!(
        base, theta,
        "config.json (rope_theta) must change the fingerprint"
    );
    std::fs::write(d.join("generation_config.json"), "{\"eos_token_id\": 2}").unwrap();
    let gen = sha();
    assert_ne!(
        theta, gen,
        "generation_config.json must change the fingerprint"
    );
    std::fs::write(
        d.join("tokenizer_config.json"),
        "{\"chat_template\": \"{{ messages[0].content }}\"}",
    )
    .unwrap();
    assert_ne!(
        gen,
        sha(),
        "tokenizer_config.json must change the fingerprint"
    );
}

/// Finding 17 of issue 11: a record renamed into place is followed by an
/// fsync of its folder, or a crash can lose the rename. Watched with strace.
#[test]
fn records_fsync_their_folder_after_the_rename() {
    let t = tiny_model(Dtype::F32, 43);
    let out = t.dir.path().join("rec.json");
    let log = t.dir.path().join("strace.log");
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=rename,renameat,renameat2,openat,fsync",
            "-o",
        ])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_infer-eval"))
        .args([
            "--model",
            t.dir.path().to_str().unwrap(),
            "--prompt",
            "w1",
            "--max-tokens",
            "2",
            "--out",
        ])
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("strace is needed for this test (Debian package strace; .ci/run installs it)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let trace = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let name = out.to_str().unwrap();
    let at = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains(&format!("\"{name}\"")))
        .unwrap_or_else(|| panic!("no rename onto {name} in:\n{trace}"));
    let dir = t.dir.path().to_str().unwrap();
    // After the rename: the folder opened (O_DIRECTORY or plain read), then fsync of that descriptor.
    let open = lines[at..]
        .iter()
        .find(|l| l.contains("openat") && l.contains(&format!("\"{dir}\"")))
        .unwrap_or_else(|| panic!("the folder is not opened after the rename:\n{trace}"));
    let fd = open.rsplit('=').next().unwrap().trim();
    assert!(
        lines[at..]
            .iter()
            .any(|l| l.contains(&format!("fsync({fd})"))),
        "no fsync({fd}) of the folder after the rename:\n{trace}"
    );
}
