//! Few-shot examples for the built-in tasks (`task.fewshot`) on SmolLM2, in
//! a copy of the project: every sample's prompt is the text written out by
//! hand here from the data files and the examples its record names (their
//! sha256 too); the examples never include the item, are drawn per item (a
//! run with another limit and batch size draws the same ones and computes
//! the same bits), come from a pinned file when asked, change with the
//! seed, and a re-run verifies to MATCH.

mod common;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `eval ARGS` in `root`, verified: the run's samples by id.
fn eval(root: &Path, args: &[&str]) -> BTreeMap<String, Value> {
    let mut args = args.to_vec();
    args.push("run.threads=1");
    let dir = common::eval_verified(root, &args);
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|s| (s["id"].as_str().unwrap().to_string(), s))
        .collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An example as the default `task.fewshot.example` writes it, with the delimiter.
fn example(item: &Value) -> String {
    let target = match item["answer"].as_u64() {
        Some(i) => item["choices"][i as usize].as_str().unwrap().to_string(),
        None => item["answer"].as_str().unwrap().to_string(),
    };
    format!(
        "Question: {}\nAnswer: {target}\n\n",
        item["question"].as_str().unwrap()
    )
}

const GEN_PROMPT: &str =
    "Answer with one word or number.\n\n{fewshot}Question: {question}\nAnswer:";

#[test]
fn fewshot_prompts_are_drawn_per_item_recorded_and_verified() {
    let proj = common::project();
    let root = proj.path();
    std::fs::write(
        root.join("prompts/fewshot_gen.txt"),
        format!("{GEN_PROMPT}\n"),
    )
    .unwrap();
    let prompt_sha = format!("prompt.generate.sha256={}", sha(&format!("{GEN_PROMPT}\n")));
    let base = [
        "+task.fewshot.n=3",
        "prompt.generate.path=prompts/fewshot_gen.txt",
        prompt_sha.as_str(),
    ];
    let mut args = base.to_vec();
    args.extend(["task=suite", "run.limit=4", "run.batch_size=4"]);
    let run = eval(root, &args);
    assert_eq!(run.len(), 16);
    for (id, s) in &run {
        let (dataset, item_id) = id.split_once('/').unwrap();
        let data = lines(&root.join(format!("data/{dataset}.jsonl")));
        let me = data.iter().position(|d| d["id"] == item_id).unwrap();
        let shots = s["fewshot"].as_array().unwrap();
        assert_eq!(shots.len(), 3, "{id}");
        let mut text = String::new();
        let mut seen = Vec::new();
        for f in shots {
            assert_eq!(f["split"], "self", "{id}");
            let i = f["index"].as_u64().unwrap() as usize;
            assert_ne!(i, me, "{id}: the item is not its own example");
            assert!(!seen.contains(&i), "{id}: drawn twice");
            seen.push(i);
            let ex = example(&data[i]);
            assert_eq!(f["sha256"].as_str().unwrap(), sha(&ex), "{id}: example {i}");
            text.push_str(&ex);
        }
        let question = data[me]["question"].as_str().unwrap();
        let prompt = if dataset == "multiple_choice" {
            // prompts/mc_v1.txt has no {fewshot}: the examples come first.
            format!("{text}Question: {question}\nAnswer:")
        } else {
            GEN_PROMPT
                .replace("{fewshot}", &text)
                .replace("{question}", question)
        };
        assert_eq!(
            s["prompt_sha256"].as_str().unwrap(),
            sha(&prompt),
            "{id}: {prompt:?}"
        );
    }

    // Fewer items, one at a time: the same examples and the same bits.
    let mut args = base.to_vec();
    args.extend(["task=suite", "run.limit=2", "run.batch_size=1"]);
    let small = eval(root, &args);
    assert_eq!(small.len(), 8);
    for (id, s) in &small {
        for key in ["fewshot", "prompt_ids", "digest"] {
            assert_eq!(s[key], run[id][key], "{id} {key}");
        }
    }

    // Another seed draws other examples.
    let mut args = base.to_vec();
    args.extend(["task=suite", "run.limit=4", "+task.fewshot.seed=7"]);
    let other = eval(root, &args);
    let differ = other
        .iter()
        .filter(|(id, s)| s["fewshot"] != run[*id]["fewshot"])
        .count();
    assert!(
        differ >= 15,
        "only {differ} of 16 items drew other examples"
    );

    // From a pinned file: its three examples, in the order drawn.
    let shots: Vec<Value> = lines(&root.join("data/capitals.jsonl"))
        .into_iter()
        .rev()
        .take(3)
        .collect();
    let file: String = shots.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(root.join("data/capital_shots.jsonl"), &file).unwrap();
    let pin = format!("+task.fewshot.sha256={}", sha(&file));
    let mut args = base.to_vec();
    args.extend([
        "task=capitals",
        "run.limit=3",
        "+task.fewshot.source=data/capital_shots.jsonl",
        pin.as_str(),
    ]);
    let from_file = eval(root, &args);
    for (id, s) in &from_file {
        let mut got: Vec<u64> = s["fewshot"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["index"].as_u64().unwrap())
            .collect();
        for f in s["fewshot"].as_array().unwrap() {
            assert_eq!(f["split"], "data/capital_shots.jsonl");
            assert_eq!(
                f["sha256"].as_str().unwrap(),
                sha(&example(&shots[f["index"].as_u64().unwrap() as usize]))
            );
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2], "{id}");
    }
}
