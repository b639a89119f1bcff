//! Evaluation inputs that must neither crash, hang, exhaust memory nor
//! half-write (issue 30, items 2-4): each is refused while the run is
//! planned, with the exit code docs/ERRORS.md gives, naming the key, file or
//! item, and leaves no run folder; or it is accepted as documented.

mod common;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{ie_in as cmd, said};

/// The task config `name` over data/<name>.jsonl pinned to `sha`; `rest`
/// holds the dataset's other keys (one per line).
fn task_yaml(root: &Path, name: &str, sha: &str, rest: &[&str]) {
    let rest: String = rest.iter().map(|k| format!("    {k}\n")).collect();
    std::fs::write(
        root.join(format!("configs/task/{name}.yaml")),
        format!(
            "name: {name}\ndatasets:\n  - name: {name}\n    path: data/{name}.jsonl\n    sha256: {sha}\n{rest}"
        ),
    )
    .unwrap();
}

/// A generate task `name` over `rows` (JSON lines), pinned by its hash.
fn task(root: &Path, name: &str, rows: &[u8], scorer: &str) {
    std::fs::write(root.join(format!("data/{name}.jsonl")), rows).unwrap();
    let sha = hex::encode(Sha256::digest(rows));
    let scorer = format!("scorer: {scorer}");
    task_yaml(
        root,
        name,
        &sha,
        &["kind: generate", &scorer, "max_tokens: 4"],
    );
}

/// A sha256 that pins nothing (the data is refused before it is hashed).
const NO_SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Run `eval ARGS` into outputs/; it must be refused with `code`, saying
/// every one of `says`, within `secs`, and leave no run folder.
fn refused(root: &Path, what: &str, args: &[&str], code: i32, says: &[&str], secs: f64) {
    let out = root.join("outputs");
    let _ = std::fs::remove_dir_all(&out);
    let mut all = vec!["eval", "--outputs", "outputs"];
    all.extend(args);
    let t = Instant::now();
    let o = cmd(root, &all).output().unwrap();
    let took = t.elapsed().as_secs_f64();
    let s = said(&o);
    assert_eq!(o.status.code(), Some(code), "{what}: {s}");
    for w in says {
        assert!(s.contains(w), "{what}: should say {w:?}: {s}");
    }
    assert!(!s.contains("panicked"), "{what}: {s}");
    assert!(took < secs, "{what}: took {took:.1} s");
    let folders = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(folders, 0, "{what}: a refused run leaves no folder");
}

#[test]
fn bad_config_values_are_refused_naming_the_key_before_anything_is_written() {
    let p = common::project();
    let root = p.path();
    let deep = format!(
        "run.batch_size={}{}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "huge bootstrap",
            vec!["run.bootstrap=1000000000"],
            &["key 'run.bootstrap'", "0..=100000"],
        ),
        (
            "huge threads",
            vec!["run.threads=100000"],
            &["key 'run.threads'"],
        ),
        ("limit 0", vec!["run.limit=0"], &["key 'run.limit'"]),
        ("negative limit", vec!["run.limit=-1"], &["run.limit"]),
        (
            "huge batch",
            vec!["run.batch_size=1000000"],
            &["key 'run.batch_size'"],
        ),
        (
            "max_tokens 0",
            vec!["sampling.max_tokens=0"],
            &["key 'sampling.max_tokens'"],
        ),
        (
            "NaN temperature",
            vec!["sampling.temperature=.nan"],
            &["temperature"],
        ),
        (
            "infinite top_p",
            vec!["sampling.top_p=.inf"],
            &["key 'sampling.top_p'"],
        ),
        (
            "NaN min_p",
            vec!["sampling.min_p=.nan"],
            &["key 'sampling.min_p'", ".nan"],
        ),
        (
            "a billion seeds",
            vec!["+run.num_seeds=1000000000", "sampling=sampled"],
            &["key 'run.num_seeds'"],
        ),
        (
            "unknown too_long",
            vec!["run.too_long=maybe"],
            &["run.too_long"],
        ),
        (
            "deep override",
            vec![deep.as_str()],
            &["run.batch_size", "bytes in all"],
        ),
    ];
    for (what, args, says) in cases {
        refused(root, what, &args, 3, says, 10.0);
    }
    // A config file nested 200,000 deep is refused at once.
    std::fs::write(
        root.join("configs/experiment/deep.yaml"),
        format!("name: {}{}\n", "[".repeat(200_000), "]".repeat(200_000)),
    )
    .unwrap();
    refused(
        root,
        "deep experiment file",
        &["experiment=deep"],
        3,
        &["deep.yaml", "nested 200001 deep"],
        5.0,
    );
}

#[test]
fn an_item_that_cannot_fit_the_context_is_refused_or_skipped_before_the_folder_exists() {
    let p = common::project();
    let root = p.path();
    // A 5 MB line: refused by its length, without tokenising it.
    let huge = format!(
        "{{\"id\": \"huge\", \"question\": \"{}\", \"answer\": \"x\"}}\n",
        "word ".repeat(1_000_000)
    );
    let long = format!(
        "{{\"id\": \"long\", \"question\": \"{}\", \"answer\": \"x\"}}\n",
        "w ".repeat(9_000)
    );
    let short = "{\"id\": \"short\", \"question\": \"What is 2+2?\", \"answer\": \"4\"}\n";
    task(
        root,
        "huge",
        format!("{short}{huge}").as_bytes(),
        "contains",
    );
    task(
        root,
        "long",
        format!("{short}{long}").as_bytes(),
        "contains",
    );
    refused(
        root,
        "5 MB item",
        &["task=huge"],
        5,
        &["item 'huge/huge'", "not tokenised", "run.too_long=skip"],
        30.0,
    );
    refused(
        root,
        "item past the context",
        &["task=long"],
        5,
        &["item 'long/long'", "9", "context is 8192"],
        30.0,
    );

    // With run.too_long=skip: the rest runs, the item is listed as skipped,
    // and the folder proves itself and verifies.
    let dir = root.join("skipped");
    let o = cmd(
        root,
        &[
            "eval",
            "task=long",
            "run.too_long=skip",
            "--run-dir",
            "skipped",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    assert!(said(&o).contains("leaving out 1 item"), "{}", said(&o));
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["samples"].as_array().unwrap().len(), 1);
    assert_eq!(plan["skipped"][0]["id"], "long/long");
    let o = cmd(root, &["verify", "skipped"]).output().unwrap();
    assert!(
        o.status.success() && said(&o).contains("MATCH"),
        "{}",
        said(&o)
    );
}

#[test]
fn unclear_inputs_are_named_or_accepted() {
    let p = common::project();
    let root = p.path();
    // An empty answer under the contains scorer would score every output right.
    task(
        root,
        "empty_answer",
        b"{\"id\": \"a\", \"question\": \"Say hi\", \"answer\": \" \"}\n",
        "contains",
    );
    refused(
        root,
        "empty contains answer",
        &["task=empty_answer"],
        3,
        &["empty_answer.jsonl", "line 1", "\"answer\" is empty"],
        30.0,
    );
    // A folder where the data file should be.
    std::fs::create_dir_all(root.join("data/folder.jsonl")).unwrap();
    task_yaml(
        root,
        "folder",
        NO_SHA,
        &["kind: generate", "scorer: contains"],
    );
    refused(
        root,
        "folder as data",
        &["task=folder"],
        3,
        &["folder.jsonl", "is a folder"],
        30.0,
    );
    // A FIFO where the data file should be: named, not read (no hang).
    let fifo = root.join("data/fifo.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    task_yaml(
        root,
        "fifo",
        NO_SHA,
        &["kind: generate", "scorer: contains"],
    );
    refused(
        root,
        "FIFO as data",
        &["task=fifo"],
        3,
        &["fifo.jsonl", "not a regular file"],
        30.0,
    );
    // An item with more choices than are scored.
    let many: Vec<String> = (0..1025).map(|i| format!("c{i}")).collect();
    let line = serde_json::json!({"id": "m", "question": "Pick one", "choices": many, "answer": 0});
    let rows = format!("{line}\n");
    std::fs::write(root.join("data/many.jsonl"), &rows).unwrap();
    let sha = hex::encode(Sha256::digest(rows.as_bytes()));
    task_yaml(root, "many", &sha, &["kind: multiple_choice"]);
    refused(
        root,
        "1025 choices",
        &["task=many"],
        3,
        &["many.jsonl", "line 1", "1025 entries", "at most 1024"],
        30.0,
    );
    // --run-dir naming a file.
    std::fs::write(root.join("a-file"), "x").unwrap();
    let o = cmd(root, &["eval", "task=capitals", "--run-dir", "a-file"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", said(&o));
    assert!(
        said(&o).contains("a-file") && said(&o).contains("is not a folder"),
        "{}",
        said(&o)
    );
    // A byte-order mark before the first line is accepted.
    task(
        root,
        "bom",
        b"\xef\xbb\xbf{\"id\": \"a\", \"question\": \"What is 2+2?\", \"answer\": \"4\"}\n",
        "contains",
    );
    let o = cmd(root, &["eval", "task=bom", "--run-dir", "bom"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", said(&o));

    // verify's flags are usage errors (2); a bad fingerprint.json is bad input (3).
    let o = cmd(root, &["verify", "bom", "--threads", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", said(&o));
    let bad = root.join("bad-fingerprint");
    common::copy_dir(&root.join("bom"), &bad);
    std::fs::write(bad.join("fingerprint.json"), "{ not json").unwrap();
    for args in [
        vec!["verify", "bad-fingerprint"],
        vec!["verify", "--offline", "bad-fingerprint"],
    ] {
        let o = cmd(root, &args).output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", said(&o));
        assert!(said(&o).contains("fingerprint.json"), "{}", said(&o));
    }

    // Two include paths defining one lm-eval task name: both files named.
    let gen = format!(
        "task: twice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\noutput_type: generate_until\ndoc_to_text: \"Q: {{{{question}}}}\\nA:\"\ndoc_to_target: answer\n",
        root.join("data/capitals.jsonl").display()
    );
    let (a, b): (PathBuf, PathBuf) = (root.join("lm-a"), root.join("lm-b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("twice.yaml"), &gen).unwrap();
    }
    refused(
        root,
        "one task name in two include paths",
        &[
            "--include-path",
            "lm-a",
            "--include-path",
            "lm-b",
            "--lm-eval-task",
            "twice",
        ],
        3,
        &["lm-a/twice.yaml", "lm-b/twice.yaml"],
        30.0,
    );
    // Nested loops in a task template end (bounded work) with an error.
    let looped = gen.replace(
        "\"Q: {{question}}\\nA:\"",
        "\"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"",
    );
    std::fs::write(
        a.join("looped.yaml"),
        looped.replace("task: twice", "task: looped"),
    )
    .unwrap();
    refused(
        root,
        "nested loops",
        &["--lm-eval-task", "lm-a/looped.yaml", "run.limit=1"],
        3,
        &["looped.yaml", "fuel"],
        30.0,
    );
    // A filter asked for a huge width (fuel does not see it): refused.
    let wide = gen.replace(
        "\"Q: {{question}}\\nA:\"",
        "\"{{ question | indent(6000000000) }}\"",
    );
    assert!(wide.contains("indent"), "{wide}");
    std::fs::write(
        a.join("wide.yaml"),
        wide.replace("task: twice", "task: wide"),
    )
    .unwrap();
    refused(
        root,
        "indent(6e9)",
        &["--lm-eval-task", "lm-a/wide.yaml", "run.limit=1"],
        3,
        &["wide.yaml", "width or precision over 4096"],
        30.0,
    );
    // A NaN temperature in generation_kwargs.
    let nan = format!(
        "{}generation_kwargs:\n  do_sample: true\n  temperature: .nan\n",
        gen.replace("task: twice", "task: nan")
    );
    std::fs::write(a.join("nan.yaml"), nan).unwrap();
    refused(
        root,
        "NaN generation_kwargs",
        &["--lm-eval-task", "lm-a/nan.yaml"],
        3,
        &["generation_kwargs", "temperature"],
        30.0,
    );

    // tokenize reads a file or standard input as it reads its argument.
    let text = "Hello, world!\nSecond line.";
    std::fs::write(root.join("t.txt"), text).unwrap();
    let ids = |o: Output| {
        assert!(o.status.success(), "{}", said(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let direct = ids(cmd(root, &["tokenize", "--json", text]).output().unwrap());
    let file = ids(cmd(root, &["tokenize", "--json", "--file", "t.txt"])
        .output()
        .unwrap());
    let mut c = cmd(root, &["tokenize", "--json", "--file", "-"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let stdin = ids(child.wait_with_output().unwrap());
    assert!(direct.contains("\"ids\""));
    assert_eq!(direct, file);
    assert_eq!(direct, stdin);

    // perplexity: an empty text file is refused as an empty .jsonl is.
    std::fs::write(root.join("empty.txt"), "").unwrap();
    std::fs::write(root.join("empty.jsonl"), "\n").unwrap();
    for f in ["empty.txt", "empty.jsonl"] {
        let o = cmd(root, &["perplexity", f]).output().unwrap();
        assert_eq!(o.status.code(), Some(3), "{f}: {}", said(&o));
        assert!(
            said(&o).contains("empty") || said(&o).contains("no documents"),
            "{f}: {}",
            said(&o)
        );
    }
}
