//! `infer-eval serve` on the default model (SmolLM2), through a real HTTP
//! client: answers under concurrent load (streaming, sampling, cancelled
//! clients, a warm and a cold prompt cache) equal those of the same request
//! sent alone to an idle server and those of the CLI; lm-eval's
//! log-likelihood requests equal `infer-eval eval`'s; bad input, a full
//! queue, a client that goes away and SIGTERM.

mod common;

use common::server::{post, stream, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const FEWSHOT: &str = "Q: What is the capital of Italy?\nA: Rome\nQ: What is the capital of Spain?\nA: Madrid\nQ: What is the capital of Japan?\nA: Tokyo\nQ: What is the capital of Egypt?\nA: Cairo\n";

fn ids(s: &Server, text: &str) -> Vec<u64> {
    let (c, v) = s.post(
        "/tokenize",
        &json!({"prompt": text, "add_special_tokens": false}),
    );
    assert_eq!(c, 200, "{v}");
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// The requests of the load test: (path, body, streamed).
fn requests(s: &Server) -> Vec<(&'static str, Value, bool)> {
    let c = "/v1/completions";
    let lm = |ctx: &str, cont: &str| {
        // lm-eval's loglikelihood request: context + continuation ids, echo, max_tokens 1.
        let mut p = ids(s, ctx);
        p.extend(ids(s, &format!("{ctx}{cont}"))[ids(s, ctx).len()..].iter());
        json!({"model": "llama", "prompt": [p], "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": true})
    };
    vec![
        (
            c,
            json!({"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}),
            false,
        ),
        (
            c,
            json!({"prompt": "def fibonacci(n):", "max_tokens": 20, "temperature": 0}),
            false,
        ),
        (
            c,
            json!({"prompt": "Once upon a time, in a land far away,", "max_tokens": 16, "temperature": 0}),
            true,
        ),
        (
            c,
            json!({"prompt": "1, 2, 3, 4,", "max_tokens": 8, "temperature": 0, "logprobs": 3}),
            false,
        ),
        (
            c,
            json!({"prompt": "Water boils at", "max_tokens": 10, "temperature": 0, "stop": ["\n", "."]}),
            false,
        ),
        (
            c,
            json!({"prompt": "Ünïcödé and emoji 🎉 are", "max_tokens": 9, "temperature": 0}),
            false,
        ),
        (
            c,
            json!({"prompt": "The best way to learn is", "max_tokens": 14, "temperature": 0.9, "top_p": 0.95, "seed": 11}),
            false,
        ),
        (
            c,
            json!({"prompt": "My favourite colour is", "max_tokens": 12, "temperature": 0.8, "top_k": 40, "seed": 12}),
            true,
        ),
        (
            c,
            json!({"prompt": "In the morning I", "max_tokens": 12, "temperature": 1.0, "min_p": 0.05, "seed": 13, "logprobs": 2}),
            false,
        ),
        (
            c,
            json!({"prompt": "Rain rain go away,", "max_tokens": 12, "temperature": 0.7, "repetition_penalty": 1.2, "seed": 14}),
            false,
        ),
        (
            c,
            json!({"prompt": format!("{FEWSHOT}Q: What is the capital of France?\nA:"), "max_tokens": 6, "temperature": 0, "stop": ["\n"]}),
            false,
        ),
        (
            c,
            json!({"prompt": format!("{FEWSHOT}Q: What is the capital of Kenya?\nA:"), "max_tokens": 6, "temperature": 0, "stop": ["\n"]}),
            true,
        ),
        (
            c,
            lm("Question: What is the largest planet?\nAnswer:", " Jupiter"),
            false,
        ),
        (
            c,
            lm("Question: What is the largest planet?\nAnswer:", " Mars"),
            false,
        ),
        (
            c,
            json!({"prompt": ["Roses are red,", "Violets are", "Sugar is sweet"], "max_tokens": 7, "temperature": 0.7, "seed": 5}),
            false,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}], "max_tokens": 10, "temperature": 0, "logprobs": true, "top_logprobs": 3}),
            false,
        ),
        (
            c,
            json!({"prompt": "A haiku about the sea:", "max_tokens": 15, "temperature": 0, "stream_options": {"include_usage": true}}),
            true,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Tell me a joke."}], "max_tokens": 12, "temperature": 0.9, "seed": 99}),
            true,
        ),
    ]
}

/// What must not change: per choice, the digests, the text and the logprobs.
fn answer(s: &Server, path: &str, body: &Value, streamed: bool) -> Vec<String> {
    if !streamed {
        let (code, v) = s.post(path, body);
        assert_eq!(code, 200, "{path} {body}: {v}");
        return v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let e = &c["infer_eval"];
                let text = c.get("text").unwrap_or(&c["message"]["content"]);
                format!(
                    "{} {} {} {}",
                    e["digest"], e["logits_digest"], text, c["logprobs"]
                )
            })
            .collect();
    }
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (events, done) = stream(&s.url(path), &body, None);
    assert!(done, "{path}: the stream ended without [DONE]");
    let mut by_choice: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for ev in &events {
        for c in ev["choices"].as_array().unwrap() {
            let e = by_choice.entry(c["index"].as_u64().unwrap()).or_default();
            let piece = c.get("text").or_else(|| c["delta"].get("content"));
            e.0.push_str(piece.and_then(Value::as_str).unwrap_or_default());
            if c["finish_reason"].is_string() {
                e.1 = format!(
                    "{} {}",
                    c["infer_eval"]["digest"], c["infer_eval"]["logits_digest"]
                );
            }
        }
    }
    if body.get("stream_options").is_some() {
        let last = events.last().unwrap();
        assert!(
            last["choices"].as_array().unwrap().is_empty()
                && last["usage"]["completion_tokens"].as_u64().unwrap() > 0
        );
    }
    by_choice
        .into_values()
        .map(|(text, d)| format!("{d} {text:?}"))
        .collect()
}

#[test]
fn answers_under_load_equal_answers_alone_with_the_prompt_cache_cold_and_warm() {
    let model = common::smollm2_path();
    // Alone on an idle server, one sequence per step, no prompt cache.
    let idle = Server::start(&model, &["--max-batch", "1", "--prompt-cache-mib", "0"]);
    let reqs = requests(&idle);
    let alone: Vec<Vec<String>> = reqs
        .iter()
        .map(|(p, b, st)| answer(&idle, p, b, *st))
        .collect();
    drop(idle);

    let busy = Server::start(&model, &["--max-batch", "16"]);
    for round in ["cold", "warm"] {
        let got: Vec<Vec<String>> = std::thread::scope(|sc| {
            let busy = &busy;
            // Clients that go away midway, beside the others.
            for k in 0..3 {
                sc.spawn(move || {
                    let body = json!({"prompt": format!("Count slowly from {k}:"), "max_tokens": 400, "ignore_eos": true, "temperature": 0, "stream": true});
                    let (ev, done) = stream(&busy.url("/v1/completions"), &body, Some(3 + k));
                    assert!(!done && ev.len() == 3 + k);
                });
            }
            let hs: Vec<_> = reqs
                .iter()
                .map(|(p, b, st)| sc.spawn(move || answer(busy, p, b, *st)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (a, b)) in alone.iter().zip(&got).enumerate() {
            assert_eq!(
                a, b,
                "{round}: request {i} ({}) differs under load",
                reqs[i].1
            );
        }
    }
    // It did batch, reuse prefixes and free the cancelled sequences.
    let steps = busy.metric("infer_eval_batch_sequences_count");
    let seqs = busy.metric("infer_eval_batch_sequences_sum");
    assert!(seqs / steps > 1.5, "mean batch {:.2}", seqs / steps);
    assert!(busy.metric("infer_eval_prefix_cache_hits_total") >= 10.0);
    busy.wait_metric("infer_eval_running_sequences", 30, |v| v == 0.0);
    assert!(busy.metric("infer_eval_cancelled_total") >= 6.0);
}

#[test]
fn served_answers_equal_the_cli_and_lm_eval_logliks_equal_eval() {
    let model = common::smollm2_path();
    let s = Server::start(&model, &[]);
    // The CLI, the same prompt and seed: prompt id "0" is choice 0.
    for (args, body) in [
        (
            vec!["--max-tokens", "12"],
            json!({"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}),
        ),
        (
            vec![
                "--max-tokens",
                "12",
                "--temperature",
                "0.9",
                "--top-p",
                "0.95",
                "--seed",
                "11",
            ],
            json!({"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0.9, "top_p": 0.95, "seed": 11}),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec.json");
        let out = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
            .args([
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                "The capital of France is",
                "--threads",
                "1",
                "--out",
            ])
            .arg(&rec)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        let (code, v) = s.post("/v1/completions", &body);
        assert_eq!(code, 200);
        let e = &v["choices"][0]["infer_eval"];
        assert_eq!(e["digest"], r["sequences"][0]["digest"], "{args:?}");
        assert_eq!(
            e["logits_digest"], r["sequences"][0]["logits_digest"],
            "{args:?}"
        );
        assert_eq!(v["choices"][0]["text"], r["sequences"][0]["text"]);
    }

    // lm-eval's multiple-choice requests (lm_eval/models/openai_completions.py
    // and api_models.py at 4e7e0d47f: token-id prompts context+continuation,
    // echo, logprobs 1, max_tokens 1; score = sum of token_logprobs[ctxlen:-1],
    // greedy iff each equals the max of its top_logprobs dict) against the
    // per-item log-likelihoods of `infer-eval eval` on data/multiple_choice.jsonl.
    let proj = common::project();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj.path())
        .args([
            "eval",
            "task=multiple_choice",
            "run.limit=6",
            "run.threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run folder "))
        .unwrap();
    let samples = std::fs::read_to_string(Path::new(dir).join("samples.jsonl")).unwrap();
    let items: Vec<Value> = std::fs::read_to_string(repo.join("data/multiple_choice.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut compared = 0;
    let mut greedy_tokens = 0;
    for line in samples.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let id = rec["id"]
            .as_str()
            .unwrap()
            .trim_start_matches("multiple_choice/");
        let item = items.iter().find(|i| i["id"] == id).unwrap();
        let ctx = format!("Question: {}\nAnswer:", item["question"].as_str().unwrap());
        let ctx_ids = ids(&s, &ctx);
        let prompts: Vec<Vec<u64>> = item["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ids(&s, &format!("{ctx} {}", c.as_str().unwrap())))
            .collect();
        let body = json!({"model": "llama", "prompt": prompts, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": true});
        let (code, v) = s.post("/v1/completions", &body);
        assert_eq!(code, 200, "{v}");
        let mut choices = v["choices"].as_array().unwrap().clone();
        choices.sort_by_key(|c| c["index"].as_u64());
        for (k, c) in choices.iter().enumerate() {
            let lp = c["logprobs"]["token_logprobs"].as_array().unwrap();
            let tops = c["logprobs"]["top_logprobs"].as_array().unwrap();
            assert_eq!(lp.len(), prompts[k].len() + 1);
            assert!(lp[0].is_null());
            let n = ctx_ids.len();
            let ll: f64 = lp[n..lp.len() - 1]
                .iter()
                .map(|x| x.as_f64().unwrap())
                .sum();
            let want = rec["choice_logliks"][k].as_f64().unwrap();
            assert_eq!(
                ll.to_bits(),
                want.to_bits(),
                "{id} choice {k}: served {ll}, eval {want}"
            );
            // The greedy check (lm-eval's is_greedy): where the chosen token is
            // the top entry, the two floats are the same bits; elsewhere the
            // chosen token's is not above the top one.
            let toks = c["logprobs"]["tokens"].as_array().unwrap();
            for ((x, t), tok) in lp[n..lp.len() - 1]
                .iter()
                .zip(&tops[n..tops.len() - 1])
                .zip(&toks[n..toks.len() - 1])
            {
                let x = x.as_f64().unwrap();
                let t = t.as_object().unwrap();
                assert_eq!(t.len(), 1, "logprobs 1: one top entry");
                let (top_tok, top) = t.iter().next().unwrap();
                let top = top.as_f64().unwrap();
                if top_tok == tok.as_str().unwrap() {
                    assert_eq!(
                        x.to_bits(),
                        top.to_bits(),
                        "{id} choice {k}: greedy token {top_tok:?}: token_logprobs {x}, top_logprobs {top}"
                    );
                    greedy_tokens += 1;
                } else {
                    assert!(
                        x <= top,
                        "{id} choice {k}: {tok} {x} above the top {top_tok:?} {top}"
                    );
                }
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 6 * 4);
    assert!(
        greedy_tokens > 0,
        "no continuation token was the greedy one"
    );
}

#[test]
fn bad_requests_get_400_naming_the_field_and_a_served_log_verifies() {
    let model = common::smollm2_path();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("served.jsonl");
    let s = Server::start(&model, &["--log", log.to_str().unwrap()]);
    let url = s.url("/v1/completions");
    let long = "word ".repeat(9000);
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", "{\"prompt\": \"x\",".into(), "body"),
        ("not an object", "[1, 2]".into(), "body"),
        ("no prompt", json!({"max_tokens": 3}).to_string(), "prompt"),
        (
            "prompt of the wrong type",
            json!({"prompt": 5}).to_string(),
            "prompt",
        ),
        (
            "temperature of the wrong type",
            json!({"prompt": "x", "temperature": "hot"}).to_string(),
            "temperature",
        ),
        (
            "negative temperature",
            json!({"prompt": "x", "temperature": -1}).to_string(),
            "temperature",
        ),
        (
            "top_p out of range",
            json!({"prompt": "x", "top_p": 0}).to_string(),
            "top_p",
        ),
        (
            "max_tokens negative",
            json!({"prompt": "x", "max_tokens": -2}).to_string(),
            "max_tokens",
        ),
        (
            "prompt longer than the context",
            json!({"prompt": long}).to_string(),
            "prompt",
        ),
        (
            "token id out of the vocabulary",
            json!({"prompt": [1, 2, 999999]}).to_string(),
            "prompt",
        ),
        (
            "second prompt's token id",
            json!({"prompt": [[1, 2], [3, -1]]}).to_string(),
            "prompt[1]",
        ),
        (
            "n above 64",
            json!({"prompt": "x", "n": 65}).to_string(),
            "n",
        ),
        (
            "logprobs too many",
            json!({"prompt": "x", "logprobs": 50}).to_string(),
            "logprobs",
        ),
        (
            "stop of the wrong type",
            json!({"prompt": "x", "stop": 7}).to_string(),
            "stop",
        ),
        (
            "seed negative",
            json!({"prompt": "x", "seed": -5}).to_string(),
            "seed",
        ),
        (
            "stream not a bool",
            json!({"prompt": "x", "stream": "yes"}).to_string(),
            "stream",
        ),
    ];
    for (what, body, param) in &cases {
        let (code, v) = post(&url, body);
        assert_eq!(code, 400, "{what}: {v}");
        let e = &v["error"];
        assert_eq!(e["param"], *param, "{what}: {v}");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().len() > 10, "{what}: {v}");
    }
    let chat = s.url("/v1/chat/completions");
    let (code, v) = post(&chat, &json!({"messages": [{"content": "hi"}]}).to_string());
    assert!(
        code == 400 && v["error"]["param"] == "messages[0].role",
        "{v}"
    );
    let (code, v) = post(&chat, &json!({"messages": "hi"}).to_string());
    assert!(code == 400 && v["error"]["param"] == "messages", "{v}");
    let (code, v) = post(
        &s.url("/detokenize"),
        &json!({"tokens": [1, 9999999]}).to_string(),
    );
    assert!(code == 400 && v["error"]["param"] == "tokens", "{v}");
    let (code, v) = post(&s.url("/v1/nothing"), "{}");
    assert!(code == 404 && v["error"].is_object());
    // Unknown fields are ignored; /v1/models, /health, /tokenizer_info, /detokenize answer.
    let (code, v) = s.post(
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 3, "best_of_luck": {"x": 1}, "user": "u"}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["system_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("fp_ie"));
    let (_, models) = s.get("/v1/models");
    assert!(models.contains("\"id\":\"") && models.contains("\"object\":\"list\""));
    let (c, h) = s.get("/health");
    assert!(c == 200 && h.contains("ok"));
    let (_, info) = s.get("/tokenizer_info");
    let info: Value = serde_json::from_str(&info).unwrap();
    let eos = info["eos_token"].as_str().unwrap();
    let (_, t) = s.post(
        "/tokenize",
        &json!({"prompt": eos, "add_special_tokens": false}),
    );
    assert_eq!(
        t["tokens"],
        json!([2]),
        "EOS string {eos} tokenizes to its id"
    );
    let (_, d) = s.post("/detokenize", &json!({"tokens": ids(&s, "Hello world")}));
    assert_eq!(d["prompt"], "Hello world");

    // More traffic for the log, then verify --served re-runs it: MATCH.
    for b in [
        json!({"prompt": ["Two plus two is", "The sky is"], "max_tokens": 5, "temperature": 0.8, "seed": 3}),
        json!({"prompt": "Hi", "max_tokens": 0, "echo": true, "logprobs": 2}),
    ] {
        assert_eq!(s.post("/v1/completions", &b).0, 200);
    }
    assert_eq!(
        s.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        )
        .0,
        200
    );
    let (events, done) = stream(
        &s.url("/v1/completions"),
        &json!({"prompt": "Streams", "max_tokens": 4, "stream": true, "seed": 8}),
        None,
    );
    assert!(done && !events.is_empty());
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    let verify = |f: &Path| {
        Command::new(env!("CARGO_BIN_EXE_infer-eval"))
            .args(["verify", "--model", model.to_str().unwrap(), "--served"])
            .arg(f)
            .output()
            .unwrap()
    };
    let out = verify(&log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("MATCH: 5 requests, 6 choices"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A changed digest is found and named.
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[2]["choices"][0]["logits_digest"] = json!("0".repeat(64));
    let bad = dir.path().join("tampered.jsonl");
    std::fs::write(
        &bad,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let out = verify(&bad);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(
        stdout.contains("line 3, choice 0: logits_digest"),
        "{stdout}"
    );
}

#[test]
fn a_full_queue_answers_429_a_gone_client_is_freed_and_sigterm_finishes_running_work() {
    let model = common::smollm2_path();
    let mut s = Server::start(&model, &["--max-batch", "1", "--max-queue", "1"]);
    let long = json!({"prompt": "Count:", "max_tokens": 60, "ignore_eos": true, "temperature": 0});
    std::thread::scope(|sc| {
        let s = &s;
        // One runs and streams, one waits: the queue is full. The streamed
        // one asks for far more tokens than socket buffers hold in the time
        // the test takes, so only a server that notices the client leave
        // frees its place before it would have finished.
        let mut first = long.clone();
        first["stream"] = json!(true);
        first["max_tokens"] = json!(4000);
        let (leave, told) = std::sync::mpsc::channel::<()>();
        let gone = sc.spawn(move || {
            let mut body = common::server::open_stream(&s.url("/v1/completions"), &first);
            let got = common::server::read_events(&mut body, Some(4));
            told.recv().unwrap();
            got // the connection closes here
        });
        s.wait_metric("infer_eval_running_sequences", 60, |v| v >= 1.0);
        let waiting = sc.spawn(move || s.post("/v1/completions", &long));
        s.wait_metric("infer_eval_queue_depth", 60, |v| v >= 1.0);
        let r = common::server::agent()
            .post(&s.url("/v1/completions"))
            .send_string(&json!({"prompt": "x", "max_tokens": 2}).to_string());
        match r {
            Err(ureq::Error::Status(429, resp)) => {
                assert_eq!(resp.header("retry-after"), Some("1"));
                let v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
                assert_eq!(v["error"]["type"], "rate_limit_error");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // The streaming client goes away after 4 events: its sequence is freed
        // and the waiting request runs to the end.
        assert_eq!(s.metric("infer_eval_cancelled_total"), 0.0);
        leave.send(()).unwrap();
        let (ev, done) = gone.join().unwrap();
        assert!(!done && ev.len() == 4);
        s.wait_metric("infer_eval_cancelled_total", 60, |v| v == 1.0);
        let (code, v) = waiting.join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 60);
        // Freed, not finished: 4000 tokens were never all generated.
        let generated = s.metric("infer_eval_generated_tokens_total");
        assert!(generated < 4000.0, "{generated} tokens generated");
    });
    // A request with more prompts than the whole limit (2) still runs on an idle server.
    let (code, v) = s.post(
        "/v1/completions",
        &json!({"prompt": ["a", "b", "c"], "max_tokens": 2}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    // SIGTERM while a request runs: it is answered in full, then the server exits 0.
    std::thread::scope(|sc| {
        let url = s.url("/v1/completions");
        let running = sc.spawn(move || {
            post(
                &url,
                &json!({"prompt": "Count:", "max_tokens": 40, "ignore_eos": true}).to_string(),
            )
        });
        s.wait_metric("infer_eval_running_sequences", 60, |v| v >= 1.0);
        let status = s.terminate(60);
        assert!(status.success(), "{status:?}");
        let (code, v) = running.join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 40);
    });
    // The signal came while the request ran: the server said so.
    let log = s.wait_log("stopped", 10);
    assert!(
        log.contains("stopping: no new requests; finishing 1 running"),
        "{log}"
    );
    assert!(
        common::server::agent()
            .get(&s.url("/health"))
            .call()
            .is_err(),
        "still listening after exit"
    );
}
