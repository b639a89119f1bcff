//! The OpenAI sampling parameters `serve` takes beyond the basics, on the
//! real model: `logit_bias` banning the greedy token gives the second
//! choice at that step; `presence_penalty` and `frequency_penalty`
//! choose, at every step, what the served raw top-20 log-probabilities
//! minus the penalties worked by hand choose; values out of range are 400s
//! naming the field; and a served log of such requests verifies.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::collections::HashMap;

fn complete(s: &Server, body: Value) -> Value {
    let (code, v) = s.post("/v1/completions", &body);
    assert_eq!(code, 200, "{body}: {v}");
    v
}

/// The id of the first token of `text`, by the server's own tokenizer.
fn first_id(s: &Server, text: &str) -> u64 {
    let (code, v) = s.post(
        "/tokenize",
        &json!({"prompt": text, "add_special_tokens": false}),
    );
    assert_eq!(code, 200, "{v}");
    v["tokens"][0].as_u64().unwrap()
}

#[test]
fn logit_bias_and_penalties_change_the_choice_as_worked_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("served.jsonl");
    let s = Server::start(&common::smollm2_path(), &["--log", log.to_str().unwrap()]);
    let prompt = "The capital of France is";

    // Greedy, with the top 2 of each step.
    let plain = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2}),
    );
    let lp = &plain["choices"][0]["logprobs"];
    let first = lp["tokens"][0].as_str().unwrap().to_string();
    let top0: Vec<(String, f64)> = {
        let mut v: Vec<(String, f64)> = lp["top_logprobs"][0]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    };
    assert_eq!(top0[0].0, first);
    // Ban the greedy first token: the first token becomes the second best.
    let id = first_id(&s, &first);
    let banned = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2,
               "logit_bias": {id.to_string(): -100}}),
    );
    let blp = &banned["choices"][0]["logprobs"];
    assert_eq!(blp["tokens"][0], top0[1].0.as_str(), "{banned}");
    assert_ne!(banned["choices"][0]["text"], plain["choices"][0]["text"]);
    // Reported log-probabilities are the model's own (raw) ones.
    assert_eq!(blp["token_logprobs"][0].as_f64().unwrap().to_bits(), top0[1].1.to_bits());
    // A bias of 0 changes nothing, bit for bit.
    let zero = complete(
        &s,
        json!({"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 2,
               "logit_bias": {id.to_string(): 0}}),
    );
    assert_eq!(
        zero["choices"][0]["infer_eval"]["logits_digest"],
        plain["choices"][0]["infer_eval"]["logits_digest"]
    );

    // Penalties: at each step the chosen token maximises the served raw
    // log-probability minus (count * frequency + presence) over the tokens
    // the output holds so far (log-probabilities and logits differ by one
    // constant per step, so the argmax is the same).
    let (presence, frequency) = (0.8, 0.6);
    let rep = "one two one two one two one two";
    let pen = complete(
        &s,
        json!({"prompt": rep, "max_tokens": 16, "temperature": 0, "logprobs": 20,
               "presence_penalty": presence, "frequency_penalty": frequency}),
    );
    let unpen = complete(&s, json!({"prompt": rep, "max_tokens": 16, "temperature": 0}));
    assert_ne!(
        pen["choices"][0]["text"], unpen["choices"][0]["text"],
        "the penalties changed nothing"
    );
    let plp = &pen["choices"][0]["logprobs"];
    let mut counts: HashMap<String, u32> = HashMap::new();
    for (step, tok) in plp["tokens"].as_array().unwrap().iter().enumerate() {
        let tok = tok.as_str().unwrap();
        let score = |t: &str, lp: f64| {
            let c = counts.get(t).copied().unwrap_or(0);
            if c == 0 {
                lp
            } else {
                lp - (c as f64 * frequency + presence)
            }
        };
        let top = plp["top_logprobs"][step].as_object().unwrap();
        let best = top
            .iter()
            .map(|(t, x)| score(t, x.as_f64().unwrap()))
            .fold(f64::NEG_INFINITY, f64::max);
        let chosen = score(tok, plp["token_logprobs"][step].as_f64().unwrap());
        assert!(
            chosen >= best - 1e-4,
            "step {step}: chose {tok:?} (penalised {chosen}) where {best} was available: {pen}"
        );
        *counts.entry(tok.to_string()).or_default() += 1;
    }

    // Out of range or malformed: 400 naming the field.
    for (body, param) in [
        (json!({"prompt": "x", "presence_penalty": 3}), "presence_penalty"),
        (json!({"prompt": "x", "frequency_penalty": -2.5}), "frequency_penalty"),
        (json!({"prompt": "x", "logit_bias": {"5": 101}}), "logit_bias.5"),
        (json!({"prompt": "x", "logit_bias": {"99999999": 1}}), "logit_bias.99999999"),
        (json!({"prompt": "x", "logit_bias": {"a": 1}}), "logit_bias.a"),
        (json!({"prompt": "x", "logit_bias": [1]}), "logit_bias"),
    ] {
        let (code, v) = s.post("/v1/completions", &body);
        assert_eq!(code, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    drop(s);

    // The served log re-runs to the same digests (the parameters are read
    // again from each logged request).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .args(["verify", "--threads", "2", "--served"])
        .arg(&log)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("MATCH: 5 requests"), "{out}");
}
