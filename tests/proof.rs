//! Run folders that prove themselves (docs/DETERMINISM.md, "What a run
//! folder proves"): an altered folder is refused by every command that reads
//! it, naming the file, line and field; `--resume` keeps only samples that
//! prove themselves; the baseline store refuses to serve an altered entry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ie_in as cmd, said};

fn field(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' in {out}"))
        .trim()
        .to_string()
}

const SMALL: [&str; 4] = [
    "experiment=smoke",
    "run.limit=2",
    "sampling.max_tokens=6",
    "--run-dir",
];

fn eval_into(root: &Path, dir: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["eval"];
    args.extend(SMALL);
    args.push(dir.to_str().unwrap());
    args.extend(extra);
    let o = cmd(root, &args).output().unwrap();
    assert!(o.status.success(), "{}", said(&o));
    let out = said(&o);
    (field(&out, "run digest "), out)
}

fn lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(dir: &Path, v: &[serde_json::Value]) {
    let text: String = v.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("samples.jsonl"), text).unwrap();
}

/// The first generated sample's line index.
fn generated(v: &[serde_json::Value]) -> usize {
    v.iter()
        .position(|s| s["output_ids"].as_array().is_some_and(|o| !o.is_empty()))
        .expect("a generated sample")
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

type Alter = fn(&Path);

/// Ways to alter a finished run folder, and what the refusal must name.
fn alterations() -> Vec<(&'static str, Alter, &'static str)> {
    vec![
        (
            "output ids and text edited, digest kept",
            |d| {
                let mut v = lines(d);
                let i = generated(&v);
                let t = v[i]["output_ids"][0].as_u64().unwrap();
                v[i]["output_ids"][0] = serde_json::json!(t + 1);
                v[i]["text"] = serde_json::json!("edited");
                write_lines(d, &v);
            },
            "field 'digest'",
        ),
        (
            "text and score edited",
            |d| {
                let mut v = lines(d);
                let i = generated(&v);
                let s = v[i]["score"].as_f64().unwrap();
                v[i]["score"] = serde_json::json!(1.0 - s);
                v[i]["text"] = serde_json::json!("edited");
                write_lines(d, &v);
            },
            "metrics.json: field",
        ),
        (
            "text edited alone",
            |d| {
                let mut v = lines(d);
                let i = generated(&v);
                v[i]["text"] = serde_json::json!("edited");
                write_lines(d, &v);
            },
            "samples.jsonl: does not match the manifest",
        ),
        (
            "last sample removed",
            |d| {
                let mut v = lines(d);
                v.pop();
                write_lines(d, &v);
            },
            "samples where the run's plan",
        ),
        (
            "samples.jsonl cut short",
            |d| {
                let p = d.join("samples.jsonl");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 40]).unwrap();
            },
            "cut short",
        ),
        (
            "two samples swapped",
            |d| {
                let mut v = lines(d);
                v.swap(0, 1);
                write_lines(d, &v);
            },
            "samples.jsonl: line 1: field 'id'",
        ),
        (
            "metrics.json value changed",
            |d| {
                edit_json(&d.join("metrics.json"), |m| {
                    m["macro_accuracy"] = serde_json::json!(0.999)
                })
            },
            "metrics.json: field 'macro_accuracy'",
        ),
        (
            "metrics.json not JSON",
            |d| std::fs::write(d.join("metrics.json"), "{\"datasets\": ").unwrap(),
            "metrics.json: not a metrics file",
        ),
        (
            "run digest in the manifest changed",
            |d| {
                edit_json(&d.join("manifest.json"), |m| {
                    m["run_digest"] = serde_json::json!("0".repeat(64))
                })
            },
            "manifest.json: field 'run_digest'",
        ),
        (
            "config.yaml edited",
            |d| {
                let p = d.join("config.yaml");
                let t = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, t.replace("bootstrap: 1000", "bootstrap: 999")).unwrap();
            },
            "field 'config_sha256'",
        ),
        (
            "overrides.yaml edited",
            |d| std::fs::write(d.join("overrides.yaml"), "- run.limit=3\n").unwrap(),
            "overrides.yaml: does not match the manifest",
        ),
        (
            "model hash in the manifest changed",
            |d| {
                edit_json(&d.join("manifest.json"), |m| {
                    m["model"]["sha256"] = serde_json::json!("0".repeat(64))
                })
            },
            "manifest.json: field 'model.sha256'",
        ),
        (
            "file hashes removed from the manifest",
            |d| {
                edit_json(&d.join("manifest.json"), |m| {
                    m.as_object_mut().unwrap().remove("files");
                })
            },
            "field 'files': records no file hashes",
        ),
        (
            "plan.json removed",
            |d| std::fs::remove_file(d.join("plan.json")).unwrap(),
            "plan.json",
        ),
        (
            // Named, not read: a FIFO would block a reader for ever.
            "samples.jsonl replaced by a FIFO",
            |d| {
                let p = d.join("samples.jsonl");
                std::fs::remove_file(&p).unwrap();
                let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
                assert!(ok, "mkfifo");
            },
            "samples.jsonl: is not a regular file",
        ),
        (
            "metrics.json a link to /dev/zero",
            |d| {
                let p = d.join("metrics.json");
                std::fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            },
            "metrics.json: is not a regular file",
        ),
    ]
}

#[test]
fn every_reader_refuses_a_folder_that_does_not_prove_itself() {
    let p = common::project();
    let root = p.path();
    let clean = root.join("outputs/clean");
    let (digest, _) = eval_into(root, &clean, &[]);
    let o = cmd(root, &["verify", "--offline", clean.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    assert!(said(&o).contains(&format!("PROVEN {}", clean.display())));
    assert!(said(&o).contains(&digest));
    let store = root.join("b.sqlite");
    let store = store.to_str().unwrap();
    let c = clean.to_str().unwrap();
    let alts = alterations();
    for (k, (what, alter, names)) in alts.iter().enumerate() {
        let bad = root.join(format!("outputs/altered-{k}"));
        common::copy_dir(&clean, &bad);
        alter(&bad);
        let b = bad.to_str().unwrap();
        let merged = root.join(format!("outputs/merged-{k}"));
        let readers: [Vec<&str>; 9] = [
            vec!["verify", "--offline", b],
            vec!["verify", b],
            vec!["diff", c, b],
            vec!["diff", b, c],
            vec!["report", b, "--out", "r.html"],
            vec!["baseline", "record", b, "--store", store],
            vec!["baseline", "check", b, "--store", store],
            vec!["merge", b, "--out", merged.to_str().unwrap()],
            vec![
                "export",
                "mlflow",
                b,
                "--tracking-uri",
                "http://127.0.0.1:9",
            ],
        ];
        for args in &readers {
            let o = cmd(root, args).output().unwrap();
            let s = said(&o);
            assert_eq!(o.status.code(), Some(3), "{what}: {args:?}: {s}");
            assert!(
                s.contains(names) && !s.contains("panicked"),
                "{what}: {args:?} should name '{names}': {s}"
            );
        }
        assert!(!merged.exists(), "{what}: merge wrote nothing");
        assert!(!root.join("r.html").exists(), "{what}: no report");
    }
    // The clean folder still proves itself, and re-runs to a MATCH.
    let o = cmd(root, &["verify", c]).output().unwrap();
    assert!(o.status.success(), "{}", said(&o));
    assert!(said(&o).contains(&format!("MATCH {digest}")));
}

/// An unfinished folder: the first `keep` samples of a finished one.
fn unfinished(from: &Path, to: &Path, keep: usize) {
    common::copy_dir(from, to);
    for f in ["manifest.json", "metrics.json"] {
        std::fs::remove_file(to.join(f)).unwrap();
    }
    std::fs::write(to.join("INCOMPLETE"), "").unwrap();
    let v = lines(from);
    write_lines(to, &v[..keep]);
}

#[test]
fn resume_keeps_samples_that_prove_themselves_and_refuses_the_rest() {
    let p = common::project();
    let root = p.path();
    let clean = root.join("outputs/clean");
    let (digest, _) = eval_into(root, &clean, &[]);
    let n = lines(&clean).len();
    let g = generated(&lines(&clean));
    assert!(n > g + 1);

    // Unaltered: resumes, computes the rest, and ends with the same bits.
    let r = root.join("outputs/resumed");
    unfinished(&clean, &r, g + 1);
    let o = cmd(root, &["eval", "--resume", r.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(field(&said(&o), "run digest "), digest);
    common::assert_same_run_bits(&clean, &r);

    type Tamper = fn(&mut serde_json::Value);
    let cases: [(&str, Tamper, &str); 5] = [
        (
            "output ids edited, digest kept",
            |s| s["output_ids"][0] = serde_json::json!(s["output_ids"][0].as_u64().unwrap() + 1),
            "field 'digest'",
        ),
        (
            "text edited",
            |s| s["text"] = serde_json::json!("edited"),
            "field 'text'",
        ),
        (
            "score edited",
            |s| s["score"] = serde_json::json!(1.0 - s["score"].as_f64().unwrap()),
            "field 'score'",
        ),
        (
            "output ids and a matching digest forged, text kept",
            |s| {
                let mut ids: Vec<u32> = common::json_ids(&s["output_ids"]);
                ids[0] += 1;
                s["output_ids"] = serde_json::json!(ids);
                s["digest"] = serde_json::json!(infer_eval::engine::ids_digest(&ids));
            },
            "field 'text'",
        ),
        (
            // (A changed value cannot be seen before the folder is finished
            // and hashed: no digest covers log-probabilities. A missing one can.)
            "a log-probability removed",
            |s| {
                s["logprobs"].as_array_mut().unwrap().pop();
            },
            "field 'logprobs'",
        ),
    ];
    // A finished folder marked unfinished again, with a log-probability
    // altered (no digest covers it): resuming would seal it as proven, so
    // the folder must prove itself whole first.
    let r = root.join("outputs/remarked");
    common::copy_dir(&clean, &r);
    let mut v = lines(&r);
    v[g]["logprobs"][0] = serde_json::json!(-0.5);
    write_lines(&r, &v);
    std::fs::write(r.join("INCOMPLETE"), "").unwrap();
    let o = cmd(root, &["eval", "--resume", r.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", said(&o));
    assert!(
        said(&o).contains("samples.jsonl: does not match the manifest"),
        "{}",
        said(&o)
    );
    for (k, (what, tamper, names)) in cases.iter().enumerate() {
        let r = root.join(format!("outputs/tampered-{k}"));
        unfinished(&clean, &r, g + 1);
        let mut v = lines(&r);
        tamper(&mut v[g]);
        write_lines(&r, &v);
        let before = std::fs::read(r.join("samples.jsonl")).unwrap();
        let o = cmd(root, &["eval", "--resume", r.to_str().unwrap()])
            .output()
            .unwrap();
        let s = said(&o);
        assert_eq!(o.status.code(), Some(3), "{what}: {s}");
        assert!(
            s.contains(&format!("samples.jsonl: line {}", g + 1)) && s.contains(names),
            "{what}: should name line {} and {names}: {s}",
            g + 1
        );
        assert_eq!(
            std::fs::read(r.join("samples.jsonl")).unwrap(),
            before,
            "{what}: the evidence is left as it was"
        );
        assert!(r.join("INCOMPLETE").exists() && !r.join("manifest.json").exists());
    }
}

#[test]
fn the_store_refuses_to_serve_an_altered_entry() {
    let p = common::project();
    let root = p.path();
    let store: PathBuf = root.join("c.sqlite");
    let s = store.to_str().unwrap();
    let (digest, _) = eval_into(
        root,
        &root.join("outputs/w"),
        &["--cache", "write", "--store", s],
    );
    let (again, out) = eval_into(
        root,
        &root.join("outputs/r"),
        &["--cache", "read", "--store", s],
    );
    assert_eq!(again, digest, "{out}");
    // Every stored output altered behind the store's back.
    let c = rusqlite::Connection::open(&store).unwrap();
    let n = c
        .execute(
            "UPDATE outputs SET output_ids = x'07000000', logprobs = x'000000000000f03f'",
            [],
        )
        .unwrap();
    assert!(n > 0);
    drop(c);
    let dir = root.join("outputs/altered");
    let mut args = vec!["eval"];
    args.extend(SMALL);
    args.extend([dir.to_str().unwrap(), "--cache", "read", "--store", s]);
    let o = cmd(root, &args).output().unwrap();
    let said = said(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    assert!(
        said.contains("c.sqlite") && said.contains("the store was altered"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert!(!dir.exists(), "refused before the run folder is made");
}

#[test]
fn a_folder_with_non_finite_metrics_proves_itself_and_a_shard_must_be_one() {
    let p = common::project();
    let root = p.path();
    // A rolling task over one empty document: its perplexities are NaN
    // (written as null), and the folder is still what the engine wrote.
    std::fs::write(root.join("empty.jsonl"), "{\"text\": \"\"}\n").unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(repo.join("tests/clients/lm_eval/ie_rolling.yaml"))
        .unwrap()
        .replace("tests/golden/perplexity/docs.jsonl", "empty.jsonl")
        .replace("task: ie_rolling", "task: ie_empty");
    std::fs::write(root.join("ie_empty.yaml"), yaml).unwrap();
    let o = cmd(
        root,
        &[
            "eval",
            "--lm-eval-task",
            "ie_empty.yaml",
            "--run-dir",
            "nan",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    let m = std::fs::read_to_string(root.join("nan/metrics.json")).unwrap();
    assert!(m.contains("null"), "a NaN figure: {m}");
    for args in [
        vec!["verify", "--offline", "nan"],
        vec!["diff", "nan", "nan"],
        vec!["verify", "nan"],
    ] {
        let o = cmd(root, &args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", said(&o));
    }

    // A shard whose manifest claims another place is refused, by merge too
    // (which would have indexed past its shards).
    let s0 = root.join("s0");
    let mut args = vec!["eval"];
    args.extend(SMALL);
    args.extend([
        s0.to_str().unwrap(),
        "--shard-index",
        "0",
        "--shard-count",
        "2",
    ]);
    let o = cmd(root, &args).output().unwrap();
    assert!(o.status.success(), "{}", said(&o));
    edit_json(&s0.join("manifest.json"), |m| {
        m["shard"]["index"] = serde_json::json!(5)
    });
    for args in [
        vec!["verify", "--offline", "s0"],
        vec!["merge", "s0", "--out", "merged"],
    ] {
        let o = cmd(root, &args).output().unwrap();
        let s = said(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {s}");
        assert!(
            s.contains("field 'shard'") && !s.contains("panicked"),
            "{s}"
        );
    }
}
