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

/// A 400 naming `param`.
fn refused(s: &Server, body: &Value, param: &str) {
    let (code, v) = s.post("/v1/completions", body);
    assert_eq!(code, 400, "{body}: {v}");
    assert_eq!(v["error"]["param"], param, "{body}: {v}");
}

/// `verify --served LOG`, which must succeed: what it printed.
fn verify_log(log: &std::path::Path) -> String {
    let o = common::server::verify_served(log);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
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
    assert_eq!(
        blp["token_logprobs"][0].as_f64().unwrap().to_bits(),
        top0[1].1.to_bits()
    );
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
    let unpen = complete(
        &s,
        json!({"prompt": rep, "max_tokens": 16, "temperature": 0}),
    );
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
        (
            json!({"prompt": "x", "presence_penalty": 3}),
            "presence_penalty",
        ),
        (
            json!({"prompt": "x", "frequency_penalty": -2.5}),
            "frequency_penalty",
        ),
        (
            json!({"prompt": "x", "logit_bias": {"5": 101}}),
            "logit_bias.5",
        ),
        (
            json!({"prompt": "x", "logit_bias": {"99999999": 1}}),
            "logit_bias.99999999",
        ),
        (
            json!({"prompt": "x", "logit_bias": {"a": 1}}),
            "logit_bias.a",
        ),
        (json!({"prompt": "x", "logit_bias": [1]}), "logit_bias"),
    ] {
        refused(&s, &body, param);
    }
    drop(s);

    // The served log re-runs to the same digests (the parameters are read
    // again from each logged request).
    assert!(verify_log(&log).contains("MATCH: 5 requests"));
}

/// The text and summed token log-probability of choice `i` of `v`.
fn text_and_sum(v: &Value, i: usize) -> (String, f64) {
    let c = &v["choices"][i];
    let sum = c["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    (c["text"].as_str().unwrap().to_string(), sum)
}

#[test]
fn n_choices_each_equal_their_draw_alone_and_best_of_returns_the_most_likely() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("served.jsonl");
    let s = Server::start(&common::smollm2_path(), &["--log", log.to_str().unwrap()]);
    let prompt = "My favourite animal is";
    let base =
        json!({"prompt": prompt, "max_tokens": 8, "temperature": 1.0, "seed": 7, "logprobs": 0});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // Draw j alone: the same prompt with seed 7 + j.
    let alone: Vec<(String, f64)> = (0..4)
        .map(|j| text_and_sum(&complete(&s, with(json!({"seed": 7 + j}))), 0))
        .collect();
    let distinct: std::collections::HashSet<&String> = alone.iter().map(|a| &a.0).collect();
    assert!(distinct.len() >= 3, "seeds 7..10 drew {alone:?}");

    // n = 3: choice j is draw j, index j, its seed reported.
    let v = complete(&s, with(json!({"n": 3})));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (j, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], j);
        assert_eq!(c["infer_eval"]["seed"], 7 + j as u64);
        assert_eq!(text_and_sum(&v, j), alone[j], "choice {j}");
    }
    let three: std::collections::HashSet<String> = (0..3).map(|j| text_and_sum(&v, j).0).collect();
    assert_eq!(three.len(), 3, "n = 3 gave the same text twice: {v}");
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let one = complete(&s, base.clone());
    assert_eq!(
        prompt_tokens,
        one["usage"]["prompt_tokens"].as_u64().unwrap(),
        "a prompt counts once"
    );

    // Two prompts, n = 2: index = prompt * n + j; draw j of prompt i is
    // prompt i of the same list (keyed by its place, §7) with seed + j.
    let both = json!([prompt, "The sky is"]);
    let v = complete(&s, with(json!({"prompt": both, "n": 2})));
    assert_eq!(v["choices"].as_array().unwrap().len(), 4);
    assert_eq!(text_and_sum(&v, 1), alone[1]);
    let seed8 = complete(&s, with(json!({"prompt": both, "seed": 8})));
    assert_eq!(text_and_sum(&v, 3), text_and_sum(&seed8, 1));

    // Streamed, n = 2: each index's text is its draw's.
    let (events, done) = common::server::stream(
        &s.url("/v1/completions"),
        &with(json!({"n": 2, "stream": true, "logprobs": null})),
        None,
    );
    assert!(done);
    for j in 0..2 {
        let text: String = events
            .iter()
            .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["index"] == j)
            .map(|c| c["text"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(text, alone[j].0, "streamed choice {j}");
    }

    // best_of 4, n 2: the two draws of highest summed log-probability (the
    // earlier on a tie), in that order.
    let v = complete(&s, with(json!({"n": 2, "best_of": 4})));
    let mut ranked: Vec<usize> = (0..4).collect();
    ranked.sort_by(|&a, &b| alone[b].1.total_cmp(&alone[a].1));
    let got: Vec<(String, f64)> = (0..2).map(|i| text_and_sum(&v, i)).collect();
    assert_eq!(
        got,
        vec![alone[ranked[0]].clone(), alone[ranked[1]].clone()]
    );
    assert_eq!(v["choices"][1]["index"], 1);
    let all_tokens: u64 = (0..4)
        .map(|j| {
            complete(&s, with(json!({"seed": 7 + j})))["usage"]["completion_tokens"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        v["usage"]["completion_tokens"], all_tokens,
        "every draw's tokens count"
    );

    for (body, param) in [
        (with(json!({"n": 0})), "n"),
        (with(json!({"n": 65})), "n"),
        (with(json!({"n": 3, "best_of": 2})), "best_of"),
        (
            with(json!({"n": 1, "best_of": 2, "stream": true})),
            "best_of",
        ),
    ] {
        refused(&s, &body, param);
    }
    drop(s);
    // The log (every draw, best_of's unreturned ones too) re-runs to MATCH.
    assert!(verify_log(&log).contains("MATCH"));
}
