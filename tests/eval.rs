//! Evaluation runs end to end on the default model (SmolLM2), in a copy of
//! the project's configs, data and prompts: verify, hashes, resume, diff.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{copy_dir, ie_in as cmd, project};

fn ok(o: Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "failed ({:?}): {out}\n{err}", o.status);
    out
}

fn field<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' in {out}"))
        .trim()
}

/// Run an eval; returns (run folder, run digest).
fn eval(root: &Path, overrides: &[&str]) -> (PathBuf, String) {
    let out = ok(cmd(root, &[&["eval"], overrides].concat())
        .output()
        .unwrap());
    (
        PathBuf::from(field(&out, "run folder ")),
        field(&out, "run digest ").to_string(),
    )
}

const SMALL: [&str; 3] = ["experiment=smoke", "run.limit=2", "sampling.max_tokens=6"];

#[test]
fn a_recorded_run_verifies_across_threads_and_batch_sizes() {
    let p = project();
    let (dir, digest) = eval(
        p.path(),
        &[&SMALL[..], &["run.threads=2", "run.batch_size=4"]].concat(),
    );
    for f in [
        "config.yaml",
        "overrides.yaml",
        "samples.jsonl",
        "metrics.json",
        "manifest.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(!dir.join("INCOMPLETE").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["run_digest"], digest.as_str());
    assert_eq!(
        m["model"]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(m["datasets"].as_array().unwrap().len(), 4);
    assert!(
        m["environment"]["cpu_model"].is_string()
            && m["environment"]["rustc"]
                .as_str()
                .unwrap()
                .starts_with("rustc")
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["ttft_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(metrics["datasets"]["capitals"]["accuracy"]["ci_high"].is_number());
    let d = dir.to_str().unwrap();
    for extra in [&[][..], &["--threads", "1", "--batch-size", "3"][..]] {
        let out = ok(cmd(p.path(), &[&["verify", d], extra].concat())
            .output()
            .unwrap());
        assert_eq!(
            field(&out, "MATCH ").split(' ').next().unwrap(),
            digest,
            "{out}"
        );
        // The re-run used the recorded settings, or those asked for.
        let used = if extra.is_empty() {
            "threads 2, batch size 4)"
        } else {
            "threads 1, batch size 3)"
        };
        assert!(out.contains(used), "{out}");
    }
}

#[test]
fn edited_data_or_template_is_caught_by_its_hash() {
    let p = project();
    let (dir, _) = eval(p.path(), &SMALL);
    let data = p.path().join("data/capitals.jsonl");
    let original = std::fs::read(&data).unwrap();
    std::fs::write(&data, [&original[..], b"{\"id\": \"cap-x\", \"question\": \"What is the capital of Peru?\", \"answer\": \"Lima\"}\n"].concat()).unwrap();
    let o = cmd(p.path(), &[&["eval"], &SMALL[..]].concat())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("capitals.jsonl") && err.contains("sha256 mismatch"),
        "{err}"
    );
    // Allowed drift runs and is recorded.
    let (drift_dir, _) = eval(p.path(), &[&SMALL[..], &["--allow-data-drift"]].concat());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(drift_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["data_drift"][0]["file"], "data/capitals.jsonl");
    // verify of the first run names the changed file.
    let o = cmd(p.path(), &["verify", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(
        out.contains("MISMATCH") && out.contains("capitals.jsonl changed"),
        "{out}"
    );
    std::fs::write(&data, original).unwrap();
    // An edited prompt template, likewise.
    let tpl = p.path().join("prompts/qa_v1.txt");
    let t = std::fs::read_to_string(&tpl).unwrap();
    std::fs::write(&tpl, t.replace("single word", "one word")).unwrap();
    let o = cmd(p.path(), &[&["eval"], &SMALL[..]].concat())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("qa_v1.txt") && err.contains("sha256 mismatch"),
        "{err}"
    );
}

#[test]
fn a_killed_run_resumes_to_the_same_digest() {
    let p = project();
    let args = [
        "experiment=smoke",
        "run.limit=3",
        "run.batch_size=1",
        "sampling.max_tokens=6",
    ];
    let (_, want) = eval(p.path(), &args);
    // Kill the run after k finished samples, resume (and kill again), until it finishes.
    for kills in [vec![2usize], vec![4, 9]] {
        let mut child = cmd(p.path(), &[&["eval"], &args[..]].concat())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut dir: Option<PathBuf> = None;
        for (round, k) in kills.iter().enumerate() {
            let start = std::time::Instant::now();
            loop {
                if dir.is_none() {
                    dir = std::fs::read_dir(p.path().join("outputs"))
                        .ok()
                        .and_then(|days| {
                            days.flatten()
                                .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
                                .map(|e| e.path())
                                .find(|e| {
                                    e.join("INCOMPLETE").exists()
                                        && !e
                                            .file_name()
                                            .unwrap()
                                            .to_string_lossy()
                                            .starts_with('.')
                                })
                        });
                }
                let n = dir
                    .as_ref()
                    .map(|d| {
                        std::fs::read_to_string(d.join("samples.jsonl"))
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .unwrap_or(0);
                if n >= *k {
                    break;
                }
                assert!(start.elapsed().as_secs() < 300, "run did not progress");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let d = dir.clone().unwrap();
            assert!(
                d.join("INCOMPLETE").exists(),
                "a killed run stays marked incomplete"
            );
            if round + 1 < kills.len() {
                child = cmd(p.path(), &["eval", "--resume", d.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
            }
        }
        let d = dir.unwrap();
        let out = ok(cmd(p.path(), &["eval", "--resume", d.to_str().unwrap()])
            .output()
            .unwrap());
        assert_eq!(field(&out, "run digest "), want, "after kills at {kills:?}");
        assert!(!d.join("INCOMPLETE").exists());
    }
}

#[test]
fn diff_flags_a_changed_sample_and_not_a_rerun() {
    let p = project();
    let (a, _) = eval(p.path(), &SMALL);
    let (b, _) = eval(p.path(), &SMALL);
    let out = ok(cmd(
        p.path(),
        &["diff", a.to_str().unwrap(), b.to_str().unwrap()],
    )
    .output()
    .unwrap());
    assert!(
        out.contains("(identical)") && out.contains("outputs: 0 samples differ"),
        "{out}"
    );
    assert!(!out.contains(": significant"), "{out}");
    assert!(out.contains("within noise"), "{out}");
    // A copy of B in which one generation sample changed its third token and its score.
    let c = p.path().join("outputs/changed");
    copy_dir(&b, &c);
    let samples = std::fs::read_to_string(c.join("samples.jsonl")).unwrap();
    let mut lines: Vec<serde_json::Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let s = lines
        .iter_mut()
        .find(|s| s["output_ids"].as_array().is_some_and(|o| o.len() >= 3))
        .unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    s["output_ids"][2] = serde_json::json!(12345);
    s["score"] = serde_json::json!(1.0 - s["score"].as_f64().unwrap());
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(c.join("samples.jsonl"), text).unwrap();
    // As altered, diff refuses it (the folder no longer proves itself) ...
    let o = cmd(
        p.path(),
        &["diff", a.to_str().unwrap(), c.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("samples.jsonl: line") && err.contains("field 'digest'"),
        "{err}"
    );
    // ... and once forged consistent again, diff says what changed.
    common::forge::reseal(&c);
    let out = ok(cmd(
        p.path(),
        &["diff", a.to_str().unwrap(), c.to_str().unwrap()],
    )
    .output()
    .unwrap());
    assert!(out.contains("outputs: 1 samples differ"), "{out}");
    assert!(
        out.contains(&format!("{id}, output token 2")) && out.contains("now 12345"),
        "{out}"
    );
    // One changed score out of two pairs is not significant.
    assert!(!out.contains(": significant"), "{out}");
}

#[test]
fn config_errors_name_the_key() {
    let p = project();
    let o = cmd(
        p.path(),
        &["eval", "experiment=smoke", "sampling.temprature=0.5"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("unknown key 'sampling.temprature'")
            && err.contains("temperature"),
        "{err}"
    );
    let o = cmd(p.path(), &["eval", "task=nope"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("no option 'nope' in config group 'task'")
            && err.contains("suite"),
        "{err}"
    );
    assert!(
        !p.path().join("outputs").exists(),
        "failed configs create no run folder"
    );
}

/// Finding 12 of issue 11: `--resume` refuses a folder whose recorded
/// fingerprint (binary, determinism version, model, tokenizer, config, data)
/// is not the current one, and samples computed from other prompt tokens or
/// parameters; with nothing changed it resumes to the same digest.
#[test]
fn resume_refuses_another_model_version_or_samples() {
    let p = project();
    let t = common::tiny_model(common::Dtype::F32, 51);
    let model = format!("model.name={}", t.dir.path().display());
    let args = [
        "task=capitals",
        "run.limit=3",
        "sampling.max_tokens=3",
        &model,
    ];
    let (dir, digest) = eval(p.path(), &args);
    let d = dir.to_str().unwrap();
    let interrupt = || std::fs::write(dir.join("INCOMPLETE"), "").unwrap();
    let resume = || cmd(p.path(), &["eval", "--resume", d]).output().unwrap();
    let refused = |what: &str| {
        let o = resume();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(
            err.contains("cannot resume") || err.contains("not this run's samples"),
            "{err}"
        );
        assert!(err.contains(what), "should name {what}: {err}");
    };

    // Unchanged: resumes (nothing left to compute) to the same digest.
    interrupt();
    assert_eq!(field(&ok(resume()), "run digest "), digest);

    // Another determinism version recorded.
    interrupt();
    let fp = dir.join("fingerprint.json");
    let orig = std::fs::read_to_string(&fp).unwrap();
    let v = infer_eval::DETERMINISM_VERSION;
    std::fs::write(
        &fp,
        orig.replace(
            &format!("\"determinism_version\": {v}"),
            &format!("\"determinism_version\": {}", v - 1),
        ),
    )
    .unwrap();
    refused("determinism_version");
    // Another binary.
    let mut f: serde_json::Value = serde_json::from_str(&orig).unwrap();
    f["binary_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&fp, f.to_string()).unwrap();
    refused("binary_sha256");
    std::fs::write(&fp, &orig).unwrap();

    // Samples computed from other parameters, appended to this folder.
    let samples = dir.join("samples.jsonl");
    let text = std::fs::read_to_string(&samples).unwrap();
    let mut first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["params_hash"] = serde_json::json!("f".repeat(64));
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&samples, format!("{first}\n{}\n", rest.join("\n"))).unwrap();
    refused("not this run's samples");
    std::fs::write(&samples, &text).unwrap();

    // Another model in the same folder (same path, other weights).
    let _ = common::write_tiny_model(t.dir.path(), common::Dtype::F32, 52).unwrap();
    refused("model_sha256");
}

/// Evaluation as a library: an `Experiment` opened and executed in-process
/// gives the run folder and digest the CLI gives for the same overrides,
/// and opening it again into its own folder finds it complete.
#[test]
fn the_library_experiment_equals_the_cli_run() {
    use infer_eval::eval::experiment::*;
    let p = project();
    let (_, cli_digest) = eval(p.path(), &SMALL);
    let outputs = p.path().join("library-outputs");
    let spec = ExperimentSpec {
        config_dir: p.path().join("configs"),
        source: Source::Compose {
            overrides: SMALL.iter().map(|s| s.to_string()).collect(),
            lm_eval: LmEvalTasks::default(),
        },
        destination: Destination::Outputs(Some(outputs.clone())),
        shard_flags: (None, None),
        cache: infer_eval::eval::sample::CacheMode::Off,
        store: None,
        allow_data_drift: false,
    };
    let load = |name: &str| {
        let path = infer_eval::fetch::resolve(name, &mut |_| {})?;
        infer_eval::loader::load(&path, &candle_core::Device::Cpu)
    };
    let Opened::Ready(exp) = Experiment::open(&spec, |_| None, load).unwrap() else {
        panic!("a new run folder was expected");
    };
    assert!(exp.dir.starts_with(&outputs) && !exp.resumed);
    let mut seen = 0;
    let out = exp.execute(|done| seen = done).unwrap();
    assert_eq!(out.digest, cli_digest);
    assert!(seen > 0);
    let again = ExperimentSpec {
        destination: Destination::RunDir(out.dir.clone()),
        ..spec
    };
    match Experiment::open(&again, |_| None, load).unwrap() {
        Opened::Complete { dir, run_digest } => {
            assert_eq!((dir, run_digest), (out.dir, cli_digest));
        }
        Opened::Ready(_) => panic!("the finished folder was not recognised"),
    }
}
