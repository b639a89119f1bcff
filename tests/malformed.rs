//! Hostile input, table-driven: every case ends with one clear error line
//! naming the file and the problem, a documented exit code, and no panic.
//! Exit codes (docs/ERRORS.md, src/error.rs): 2 usage, 3 invalid input, 5 resource.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An independent walk over a GGUF file: the byte offsets of its sections
/// and of each tensor's info and data.
struct Layout {
    kv_start: usize,
    infos_start: usize,
    data_start: usize,
    /// (name, offset of the info record, ggml type, offset of the data)
    tensors: Vec<(String, usize, u32, usize)>,
}

fn walk(b: &[u8]) -> Layout {
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
    fn skip_value(b: &[u8], p: &mut usize, ty: u32) {
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
        match ty {
            0 | 1 | 7 => *p += 1,
            2 | 3 => *p += 2,
            4 | 5 | 6 => *p += 4,
            10 | 11 | 12 => *p += 8,
            8 => *p += 8 + u64_at(*p),
            9 => {
                let it = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
                let n = u64_at(*p + 4);
                *p += 12;
                for _ in 0..n {
                    skip_value(b, p, it);
                }
            }
            _ => panic!("type {ty}"),
        }
    }
    let n_tensors = u64_at(8);
    let n_kv = u64_at(16);
    let mut p = 24;
    for _ in 0..n_kv {
        p += 8 + u64_at(p);
        let ty = u32_at(p);
        p += 4;
        skip_value(b, &mut p, ty);
    }
    let infos_start = p;
    let mut raw = Vec::new();
    for _ in 0..n_tensors {
        let at = p;
        let n = u64_at(p);
        let name = String::from_utf8(b[p + 8..p + 8 + n].to_vec()).unwrap();
        p += 8 + n;
        let nd = u32_at(p) as usize;
        p += 4 + 8 * nd;
        let ty = u32_at(p);
        let off = u64_at(p + 4);
        p += 12;
        raw.push((name, at, ty, off));
    }
    let data_start = p.div_ceil(32) * 32;
    Layout {
        kv_start: 24,
        infos_start,
        data_start,
        tensors: raw
            .into_iter()
            .map(|(n, a, t, o)| (n, a, t, data_start + o))
            .collect(),
    }
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Substrings the one error line must contain.
    says: Vec<String>,
}

fn case(name: &'static str, args: &[&str], code: i32, says: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        code,
        says: says.iter().map(|s| s.to_string()).collect(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn check(c: &Case) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .args(&c.args)
        .envs(c.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("infer-eval: ") && !l.trim().is_empty())
        .collect();
    let problems = [
        (o.status.code() != Some(c.code))
            .then(|| format!("exit {:?}, expected {}", o.status.code(), c.code)),
        err.contains("panicked").then(|| "panicked".to_string()),
        (c.code != 2 && lines.len() != 1).then(|| format!("{} error lines", lines.len())),
        c.says
            .iter()
            .find(|s| !err.contains(s.as_str()))
            .map(|s| format!("does not say {s:?}")),
    ];
    let p: Vec<String> = problems.into_iter().flatten().collect();
    if p.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {} -- stderr: {err}", c.name, p.join(", ")))
    }
}

#[test]
fn malformed_inputs_give_one_clear_error_each() {
    let real = std::fs::read(smollm2_path()).unwrap();
    let l = walk(&real);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let gen = |p: String| {
        vec![
            "--model".to_string(),
            p,
            "--prompt".into(),
            "hi".into(),
            "--max-tokens".into(),
            "1".into(),
        ]
    };
    let mut cases = Vec::new();

    // A GGUF cut at each section boundary, and inside each section.
    let (q4_name, q4_info, _, q4_data) = l.tensors.iter().find(|t| t.2 == 3).cloned().unwrap();
    let cuts = [
        ("magic", 2, "missing GGUF magic"),
        ("version", 6, "truncated"),
        ("counts", 20, "truncated"),
        ("kv-start", l.kv_start, "truncated"),
        (
            "inside-kv",
            (l.kv_start + l.infos_start) / 2,
            "past the end of the file",
        ),
        ("infos-start", l.infos_start, "truncated"),
        (
            "inside-infos",
            (l.infos_start + l.data_start) / 2,
            "truncated",
        ),
        ("data-start", l.data_start, "past the end of the file"),
        (
            "inside-data",
            (l.data_start + real.len()) / 2,
            "past the end of the file",
        ),
        ("last-byte", real.len() - 1, "past the end of the file"),
    ];
    for (what, at, says) in cuts {
        let f = write(dir, &format!("cut-{what}.gguf"), &real[..at]);
        let mut c = case(
            "truncated GGUF",
            &[],
            3,
            &[&format!("cut-{what}.gguf"), says],
        );
        c.args = gen(f);
        cases.push(c);
    }
    // A tensor whose declared shape is far beyond the file.
    let mut huge = real.clone();
    let name_len = u64::from_le_bytes(huge[q4_info..q4_info + 8].try_into().unwrap()) as usize;
    let dims_at = q4_info + 8 + name_len + 4;
    huge[dims_at + 8..dims_at + 16].copy_from_slice(&(1u64 << 36).to_le_bytes());
    let mut c = case(
        "declared size beyond the file",
        &[],
        3,
        &["huge-dims.gguf", "past the end of the file"],
    );
    c.args = gen(write(dir, "huge-dims.gguf", &huge));
    cases.push(c);
    // A NaN scale inside a Q4_1 weight.
    let mut nan = real.clone();
    nan[q4_data + 20 * 5..q4_data + 20 * 5 + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let mut c = case(
        "NaN weight",
        &[],
        3,
        &["nan.gguf", &q4_name, "NaN or infinity"],
    );
    c.args = gen(write(dir, "nan.gguf", &nan));
    cases.push(c);
    // An unsupported tensor type.
    let mut wrong = real.clone();
    let nd = u32::from_le_bytes(wrong[dims_at - 4..dims_at].try_into().unwrap()) as usize;
    wrong[dims_at + 8 * nd..dims_at + 8 * nd + 4].copy_from_slice(&7u32.to_le_bytes());
    let mut c = case(
        "unsupported tensor type",
        &[],
        3,
        &["wrong-type.gguf", "GGML type 7", "does not support"],
    );
    c.args = gen(write(dir, "wrong-type.gguf", &wrong));
    cases.push(c);

    // Hugging Face folders: a wrong dtype, a vocabulary that disagrees with the embedding.
    let t = tiny_model(Dtype::F32, 31);
    let td = t.dir.path().to_str().unwrap().to_string();
    let bad_dtype = dir.join("bad-dtype");
    std::fs::create_dir_all(&bad_dtype).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(t.dir.path().join(f), bad_dtype.join(f)).unwrap();
    }
    let st = std::fs::read(t.dir.path().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(st[8..8 + n].to_vec()).unwrap().replacen(
        "\"dtype\":\"F32\"",
        "\"dtype\":\"I32\"",
        1,
    );
    std::fs::write(
        bad_dtype.join("model.safetensors"),
        [&st[..8], header.as_bytes(), &st[8 + n..]].concat(),
    )
    .unwrap();
    let mut c = case("wrong dtype", &[], 3, &["model.safetensors", "dtype I32"]);
    c.args = gen(bad_dtype.to_str().unwrap().into());
    cases.push(c);
    let vocab = dir.join("vocab");
    std::fs::create_dir_all(&vocab).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(t.dir.path().join(f), vocab.join(f)).unwrap();
    }
    let mut cfg = config_json();
    cfg["vocab_size"] = serde_json::json!(VOCAB / 2);
    std::fs::write(vocab.join("config.json"), cfg.to_string()).unwrap();
    let mut c = case(
        "vocabulary disagrees with the embedding",
        &[],
        3,
        &["tokenizer.json", "64 tokens", "vocab_size 32"],
    );
    c.args = gen(vocab.to_str().unwrap().into());
    cases.push(c);

    // Prompts: invalid UTF-8, an empty file, duplicate ids, longer than the context.
    let p = write(dir, "latin1.jsonl", b"{\"prompt\": \"caf\xe9\"}\n");
    cases.push(case(
        "invalid UTF-8 in a prompt file",
        &["--model", &td, "--prompts", &p],
        3,
        &["latin1.jsonl", "not valid UTF-8"],
    ));
    let p = write(dir, "empty.jsonl", b"");
    cases.push(case(
        "empty prompt file",
        &["--model", &td, "--prompts", &p],
        3,
        &["empty.jsonl", "no prompts"],
    ));
    let p = write(
        dir,
        "dup.jsonl",
        b"{\"prompt\": \"w1\", \"id\": 1}\n{\"prompt\": \"w2\", \"id\": 1}\n",
    );
    cases.push(case(
        "duplicate prompt ids",
        &["--model", &td, "--prompts", &p],
        3,
        &["dup.jsonl", "duplicate id \"1\""],
    ));
    let long = vec!["w1"; MAX_POS + 10].join(" ");
    cases.push(case(
        "prompt longer than the context",
        &["--model", &td, "--prompt", &long],
        5,
        &["266 tokens", "context is 256"],
    ));
    let mut c = case(
        "model larger than the memory limit",
        &["--model", &td, "--prompt", "w1"],
        5,
        &["needs about", "INFER_EVAL_MEMORY_LIMIT"],
    );
    c.env.push(("INFER_EVAL_MEMORY_LIMIT", "10K".into()));
    cases.push(c);
    // Bad flag values are usage errors (exit 2), wherever they come from
    // (finding 17 of issue 11: they exited 3; a bad INFER_EVAL_ISA was
    // silently replaced by detection for eval, verify and bench).
    cases.push(case(
        "bad flag value",
        &["--model", &td, "--top-p", "2"],
        2,
        &["top-p must be in (0, 1]"],
    ));
    cases.push(case(
        "zero threads",
        &["--model", &td, "--threads", "0"],
        2,
        &["--threads"],
    ));
    cases.push(case(
        "unknown ISA",
        &["--isa", "avx9", "--model", &td],
        2,
        &["avx9", "scalar, avx2 or avx512"],
    ));
    let mut c = case(
        "unknown ISA from the environment, for eval",
        &["eval", "--config-dir", "/nonexistent"],
        2,
        &["avx9", "scalar, avx2 or avx512"],
    );
    c.env.push(("INFER_EVAL_ISA", "avx9".into()));
    cases.push(c);

    // Finding 14: tokenizer and config files that are present but broken are
    // errors (EOS used to become empty and generation ran to the limit).
    let hf = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            std::fs::copy(t.dir.path().join(f), d.join(f)).unwrap();
        }
        edit(&d);
        d.to_str().unwrap().to_string()
    };
    let m = hf("broken-tc", &|d| {
        std::fs::write(d.join("tokenizer_config.json"), "{\"chat_template\": ").unwrap()
    });
    let mut c = case(
        "broken tokenizer_config.json",
        &[],
        3,
        &["tokenizer_config.json", "not valid JSON"],
    );
    c.args = gen(m);
    cases.push(c);
    let m = hf("no-eos", &|d| {
        let mut cfg = config_json();
        cfg.as_object_mut().unwrap().remove("eos_token_id");
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    });
    let mut c = case(
        "no EOS anywhere",
        &[],
        3,
        &["no-eos", "no end-of-sequence token"],
    );
    c.args = gen(m);
    cases.push(c);

    // Finding 10: a tensor the architecture does not use (a Qwen-style
    // attention bias in a checkpoint labelled llama) is refused by name.
    let m = hf("with-bias", &|d| {
        let mut w = t.weights.clone();
        w.insert(
            "model.layers.1.self_attn.q_proj.bias".into(),
            (vec![HEADS * HEAD_DIM], vec![0.5; HEADS * HEAD_DIM]),
        );
        write_safetensors(&d.join("model.safetensors"), &w, Dtype::F32).unwrap();
    });
    let mut c = case(
        "unused tensor",
        &[],
        3,
        &[
            "with-bias",
            "model.layers.1.self_attn.q_proj.bias",
            "--allow-extra-tensors",
        ],
    );
    c.args = gen(m);
    cases.push(c);

    // Finding 15: the KV cache counts against the memory limit (the
    // weights fit in 2 MiB; a cache for 100,000 positions does not).
    let m = hf("long-context", &|d| {
        let mut cfg = config_json();
        cfg["max_position_embeddings"] = serde_json::json!(131072);
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    });
    let mut c = case(
        "KV cache larger than the memory limit",
        &["--model", &m, "--prompt", "w1", "--max-tokens", "100000"],
        5,
        &["KV cache for 100001 positions", "INFER_EVAL_MEMORY_LIMIT"],
    );
    c.env.push(("INFER_EVAL_MEMORY_LIMIT", "2M".into()));
    cases.push(c);
    // A limit that does not parse is an error, not silently MemAvailable.
    let mut c = case(
        "malformed memory limit",
        &["--model", &td, "--prompt", "w1", "--max-tokens", "1"],
        2,
        &["INFER_EVAL_MEMORY_LIMIT '8X'"],
    );
    c.env.push(("INFER_EVAL_MEMORY_LIMIT", "8X".into()));
    cases.push(c);

    // Evaluation data: an empty dataset and duplicate sample ids (hashes updated by override).
    let proj = dir.join("proj");
    for sub in ["configs", "prompts", "data"] {
        copy(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(sub),
            &proj.join(sub),
        );
    }
    let cfgdir = proj.join("configs");
    for (file, content, says) in [
        ("empty.jsonl", &b""[..], "the dataset is empty"),
        ("dups.jsonl", &b"{\"id\": 1, \"question\": \"a?\", \"answer\": \"b\"}\n{\"id\": 1, \"question\": \"c?\", \"answer\": \"d\"}\n"[..], "duplicate id \"1\""),
        ("notjson.jsonl", &b"{\"id\": 1, \"question\": \"a?\"\n"[..], "line 1: invalid JSON"),
    ] {
        let path = proj.join("data").join(file);
        std::fs::write(&path, content).unwrap();
        let sha = infer_eval::formats::sha256_file(&path).unwrap();
        cases.push(case(
            "malformed dataset",
            &[
                "eval",
                "--config-dir",
                cfgdir.to_str().unwrap(),
                "task=capitals",
                &format!("task.datasets.0.path=data/{file}"),
                &format!("task.datasets.0.sha256={sha}"),
            ],
            3,
            &[file, says],
        ));
    }

    // Finding 17: a log-likelihood request past the context exits 5, as a
    // generation prompt past it does (it exited 3).
    let long_q = vec!["w1"; MAX_POS + 20].join(" ");
    let line =
        serde_json::json!({"id": 1, "question": long_q, "choices": ["w2", "w3"], "answer": 0});
    let path = proj.join("data").join("long_mc.jsonl");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let sha = infer_eval::formats::sha256_file(&path).unwrap();
    cases.push(case(
        "log-likelihood request past the context",
        &[
            "eval",
            "--config-dir",
            cfgdir.to_str().unwrap(),
            "task=multiple_choice",
            &format!("model.name={td}"),
            "task.datasets.0.path=data/long_mc.jsonl",
            &format!("task.datasets.0.sha256={sha}"),
            "--outputs",
            dir.join("outputs").to_str().unwrap(),
        ],
        5,
        // (Found while the run is planned: issue 30 item 2.)
        &[
            "long_mc.jsonl: item 'multiple_choice/1'",
            "context plus continuation",
            "context is 256 positions",
            "Nothing was written",
        ],
    ));

    // task.fewshot: more examples than the dataset has, an unpinned or
    // changed examples file, few-shot with chat prompts.
    let out = dir.join("outputs");
    let fewshot_cases: [(&str, &[&str], &[&str]); 4] = [
        ("few-shot n larger than the dataset", &["+task.fewshot.n=100"], &["task.fewshot.n is 100", "'capitals' has 99 other item(s)"]),
        (
            "few-shot file without sha256",
            &["+task.fewshot.n=2", "+task.fewshot.source=data/capitals.jsonl"],
            &["task.fewshot.sha256", "data/capitals.jsonl"],
        ),
        (
            "few-shot file changed",
            &[
                "+task.fewshot.n=2",
                "+task.fewshot.source=data/capitals.jsonl",
                "+task.fewshot.sha256=0000000000000000000000000000000000000000000000000000000000000000",
            ],
            &["capitals.jsonl", "sha256"],
        ),
        ("few-shot with a chat prompt", &["+task.fewshot.n=2", "prompt.chat=true"], &["task.fewshot", "prompt.chat"]),
    ];
    for (what, overrides, says) in fewshot_cases {
        let mut args = vec![
            "eval",
            "--config-dir",
            cfgdir.to_str().unwrap(),
            "task=capitals",
            "--outputs",
            out.to_str().unwrap(),
        ];
        args.extend(overrides);
        cases.push(case(what, &args, 3, says));
    }

    // lm-evaluation-harness task files: what is not supported or not there
    // is refused naming the task file and the key, file or document.
    let lm = dir.join("lm");
    std::fs::create_dir_all(&lm).unwrap();
    let data = proj.join("data").join("multiple_choice.jsonl");
    let base = format!(
        "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\noutput_type: multiple_choice\ndoc_to_choice: \"{{{{choices}}}}\"\ndoc_to_target: answer\n",
        data.display()
    );
    // A generate_until task over the capitals data.
    let gen = format!(
        "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\noutput_type: generate_until\ndoc_to_text: \"Q: {{{{question}}}}\\nA:\"\ndoc_to_target: answer\n",
        proj.join("data").join("capitals.jsonl").display()
    );
    let lm_cases: [(&str, String, &[&str]); 16] = [
        (
            "unknown key",
            format!("task: t\n{base}doc_to_text: q\nprocess_docs: x\n"),
            &["process_docs"],
        ),
        (
            "!function",
            format!("task: t\n{base}doc_to_text: !function utils.doc_to_text\n"),
            &["!function"],
        ),
        (
            "missing data file",
            format!(
                "task: t\n{}doc_to_text: q\n",
                base.replace("multiple_choice.jsonl", "nope.jsonl")
            ),
            &["nope.jsonl"],
        ),
        (
            "Hub dataset not in the datasets cache",
            "task: t\ndataset_path: nobody/absent-set\ndataset_name: cfg\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\n".to_string(),
            &["dataset 'nobody/absent-set' (config 'cfg') is not in the Hugging Face datasets cache", "nobody___absent-set"],
        ),
        (
            "parquet data file that is not Parquet",
            format!(
                "task: t\n{}doc_to_text: q\n",
                base.replace("dataset_path: json", "dataset_path: parquet")
            ),
            &["multiple_choice.jsonl: Parquet error"],
        ),
        (
            "loglikelihood with an index target",
            format!(
                "task: t\n{}doc_to_text: q\n",
                base.replace("output_type: multiple_choice", "output_type: loglikelihood")
            ),
            &["document 0", "loglikelihood target must be text"],
        ),
        (
            "loglikelihood_rolling with an index target",
            format!(
                "task: t\n{}",
                base.replace("output_type: multiple_choice", "output_type: loglikelihood_rolling")
            ),
            &["document 0", "loglikelihood_rolling target must be text"],
        ),
        (
            "negative generation temperature",
            format!("task: t\n{gen}generation_kwargs:\n  do_sample: true\n  temperature: -0.5\n"),
            &["key 'generation_kwargs'", "temperature must be >= 0"],
        ),
        (
            "unknown generation kwarg",
            format!("task: t\n{gen}generation_kwargs:\n  until: [\"\\n\"]\n  best_of: 2\n"),
            &["generation_kwargs", "best_of"],
        ),
        (
            "bad filter regex",
            format!("task: t\n{gen}filter_list:\n  - name: x\n    filter:\n      - function: regex\n        regex_pattern: \"(\"\n      - function: take_first\n"),
            &["filter_list.0.filter.0.regex_pattern"],
        ),
        (
            "unknown filter function",
            format!("task: t\n{gen}filter_list:\n  - name: x\n    filter:\n      - function: majority_vote\n"),
            &["majority_vote", "filter_list.0.filter.0.function"],
        ),
        (
            "missing include",
            format!("task: t\ninclude: _nope_yaml\n{base}doc_to_text: q\n"),
            &["_nope_yaml"],
        ),
        (
            "undefined column",
            format!("task: t\n{base}doc_to_text: \"{{{{nosuchcolumn}}}}\"\n"),
            &["nosuchcolumn", "document 0"],
        ),
        (
            "bad template",
            format!("task: t\n{base}doc_to_text: \"{{{{question | nosuchfilter}}}}\"\n"),
            &["nosuchfilter"],
        ),
        ("not a mapping", "- task: t\n".to_string(), &["mapping"]),
        (
            "target not a choice",
            format!(
                "task: t\n{}doc_to_text: q\n",
                base.replace("doc_to_target: answer", "doc_to_target: 7")
            ),
            &["test document 0", "index 7", "4 choices"],
        ),
    ];
    for (i, (what, yaml, says)) in lm_cases.into_iter().enumerate() {
        let f = lm.join(format!("task{i}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        let mut says = says.to_vec();
        let name = format!("task{i}.yaml");
        says.push(&name);
        cases.push(case(
            what,
            &[
                "eval",
                "--config-dir",
                cfgdir.to_str().unwrap(),
                "--lm-eval-task",
                f.to_str().unwrap(),
                "--outputs",
                dir.join("outputs").to_str().unwrap(),
            ],
            3,
            &says,
        ));
    }
    // Several seeds over a greedy lm-eval task: nothing would differ.
    let greedy = lm.join("greedy.yaml");
    std::fs::write(&greedy, format!("task: t\n{gen}")).unwrap();
    cases.push(case(
        "seeds over a greedy lm-eval task",
        &[
            "eval",
            "--config-dir",
            cfgdir.to_str().unwrap(),
            "--lm-eval-task",
            greedy.to_str().unwrap(),
            "+run.seeds=[1,2]",
            "--outputs",
            dir.join("outputs").to_str().unwrap(),
        ],
        3,
        &["key 'run.seeds'", "generation_kwargs.temperature is 0"],
    ));
    cases.push(case(
        "lm-eval task name not found",
        &[
            "eval",
            "--config-dir",
            cfgdir.to_str().unwrap(),
            "--include-path",
            lm.to_str().unwrap(),
            "--lm-eval-task",
            "no_such_task",
        ],
        3,
        &["no_such_task"],
    ));

    let failures: Vec<String> = cases.iter().filter_map(|c| check(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn copy(from: &Path, to: &PathBuf) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}
