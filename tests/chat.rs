//! Chat-format evaluation on SmolLM2 (its GGUF's ChatML template), in a
//! copy of the project: `prompt.messages` (a system message and the prompt
//! file as the user's turn) and `prompt.turns_field` (the turns of a
//! dialogue from the dataset). Each sample's prompt is the text the
//! template renders, written out by hand here: its sha256 is recorded and
//! its ids are that text's; a re-run verifies.

mod common;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

fn eval(root: &Path, args: &[&str]) -> std::path::PathBuf {
    common::eval_verified(root, args)
}

fn first_sample(dir: &Path) -> Value {
    let s = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    serde_json::from_str(s.lines().next().unwrap()).unwrap()
}

fn check(sample: &Value, text: &str) {
    let tok = infer_eval::loader::load_tokenizer(&common::smollm2_path()).unwrap();
    assert_eq!(
        sample["prompt_sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(text.as_bytes())),
        "the recorded prompt is not {text:?}"
    );
    let want = tok.encode(text, true).unwrap();
    assert_eq!(common::json_ids(&sample["prompt_ids"]), want);
    // <|im_start|> and <|im_end|> are single special tokens, not text.
    assert!(want.iter().filter(|&&t| t == 1).count() >= 3, "{want:?}");
}

#[test]
fn chat_messages_and_dataset_turns_render_through_the_models_template() {
    let proj = common::project();
    let root = proj.path();

    // A system message and the prompt file as the user's message.
    let dir = eval(
        root,
        &[
            "task=capitals",
            "run.limit=2",
            "+prompt.messages=[{role: system, content: 'Answer in one word.'}, {role: user, content: '{prompt}'}]",
        ],
    );
    let file = std::fs::read_to_string(root.join("prompts/qa_v1.txt")).unwrap();
    let user = file
        .trim_end_matches('\n')
        .replace("{question}", "What is the capital of France?");
    let text = format!(
        "<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    );
    check(&first_sample(&dir), &text);

    // A dialogue from the dataset: earlier turns and the question.
    let line = serde_json::json!({
        "id": "d1",
        "question": "And the capital of France?",
        "turns": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And the capital of France?"},
        ],
        "answer": "Paris",
    });
    std::fs::write(root.join("data/dialogues.jsonl"), format!("{line}\n")).unwrap();
    let sha = infer_eval::formats::sha256_file(&root.join("data/dialogues.jsonl")).unwrap();
    std::fs::write(
        root.join("configs/task/dialogues.yaml"),
        format!("name: dialogues\ndatasets:\n  - name: dialogues\n    path: data/dialogues.jsonl\n    sha256: {sha}\n    kind: generate\n    scorer: contains\n    max_tokens: 6\n"),
    )
    .unwrap();
    let dir = eval(
        root,
        &[
            "task=dialogues",
            "+prompt.messages=[{role: system, content: 'Be brief.'}]",
            "+prompt.turns_field=turns",
        ],
    );
    let text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    check(&first_sample(&dir), text);
}
