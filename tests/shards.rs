//! Sharded evaluation: shards chosen by flags, by Slurm array variables and
//! by a Kubernetes Indexed Job's index, with batch sizes that differ per
//! shard, merge to the single-machine run's samples, metrics and digest; a
//! missing, doubled or foreign shard is refused; a shard SIGKILLed and run
//! again resumes to the same digest.

mod common;
use common::said;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONFIG: [&str; 3] = ["experiment=smoke", "run.limit=3", "sampling.max_tokens=6"];

fn ie(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_infer-eval"));
    c.current_dir(root).env("HF_HUB_OFFLINE", "1");
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "INFER_EVAL_SHARD_COUNT",
    ] {
        c.env_remove(k);
    }
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", said(&o));
    said(&o)
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Everything of a run that must not depend on sharding.
fn outcome(dir: &Path) -> (String, Vec<(String, String)>, Value) {
    let m = json(&dir.join("manifest.json"));
    let ids = common::samples(dir)
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let metrics = json(&dir.join("metrics.json"));
    let acc = serde_json::json!({"datasets": metrics["datasets"], "macro": metrics["macro_accuracy"],
                                 "n": metrics["n_samples"], "tokens": metrics["generated_tokens"]});
    (m["run_digest"].as_str().unwrap().to_string(), ids, acc)
}

fn shard_cmd(root: &Path, dir: &Path, extra: &[&str]) -> Command {
    let mut c = ie(root);
    c.arg("eval")
        .args(CONFIG)
        .args(extra)
        .arg("--run-dir")
        .arg(dir);
    c
}

#[test]
fn shards_from_flags_slurm_and_kubernetes_merge_to_the_single_machine_run() {
    let p = common::project();
    let root = p.path();
    let single = root.join("single");
    ok(&mut shard_cmd(root, &single, &["run.batch_size=4"]));
    let want = outcome(&single);
    assert_eq!(want.1.len(), 12);
    for n in [1usize, 3, 7] {
        let mut dirs = Vec::new();
        for i in 0..n {
            let dir = root.join(format!("shards-{n}/{i}"));
            let batch = format!("run.batch_size={}", 1 + i % 3);
            let mut c = shard_cmd(root, &dir, &[&batch]);
            match n {
                1 => {
                    c.args(["--shard-index", "0", "--shard-count", "1"]);
                }
                // A Slurm array --array=1-5:2 (tasks 1, 3, 5).
                3 => {
                    c.env("SLURM_ARRAY_TASK_ID", (1 + 2 * i).to_string())
                        .env("SLURM_ARRAY_TASK_MIN", "1")
                        .env("SLURM_ARRAY_TASK_STEP", "2")
                        .env("SLURM_ARRAY_TASK_COUNT", "3");
                }
                _ => {
                    c.env("JOB_COMPLETION_INDEX", i.to_string())
                        .env("INFER_EVAL_SHARD_COUNT", n.to_string());
                }
            }
            let out = ok(&mut c);
            assert!(out.contains(&format!("shard {i} of {n}")), "{out}");
            let m = json(&dir.join("manifest.json"));
            assert_eq!(m["shard"]["index"], i);
            assert_eq!(m["shard"]["count"], n);
            assert_eq!(m["shard"]["total_samples"], 12);
            dirs.push(dir);
        }
        // Given in another order than their indexes.
        dirs.reverse();
        let merged = root.join(format!("merged-{n}"));
        let out = ok(ie(root).arg("merge").args(&dirs).arg("--out").arg(&merged));
        assert!(out.contains(&format!("run digest {}", want.0)), "{out}");
        let got = outcome(&merged);
        assert_eq!(got.0, want.0, "N = {n}: run digest");
        assert_eq!(got.1, want.1, "N = {n}: samples in order");
        // Logits and log-probabilities too, which the run digest leaves out.
        common::assert_same_run_bits(&single, &merged);
        assert_eq!(
            got.2, want.2,
            "N = {n}: metrics recomputed from all samples"
        );
        let m = json(&merged.join("manifest.json"));
        assert_eq!(m["shards"].as_array().unwrap().len(), n);
        assert!(m["shards"][0]["environment"]["cpu_model"].is_string());
        assert!(m.get("shard").is_none());
        // The merged folder is an ordinary run: verify re-runs it unsharded.
        let v = ok(ie(root).arg("verify").arg(&merged));
        assert!(v.contains(&format!("MATCH {}", want.0)), "{v}");
    }
    // A shard verifies as that shard.
    let v = ok(ie(root).arg("verify").arg(root.join("shards-3/1")));
    assert!(v.contains("MATCH"), "{v}");

    // Refusals, each naming what is wrong; no output folder is left.
    let s3: Vec<PathBuf> = (0..3).map(|i| root.join(format!("shards-3/{i}"))).collect();
    let refused = |dirs: &[PathBuf], what: &str| {
        let out = root.join("refused");
        let o = ie(root)
            .arg("merge")
            .args(dirs)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{}", said(&o));
        assert!(
            said(&o).contains(what),
            "expected '{what}' in: {}",
            said(&o)
        );
        assert!(!out.exists());
    };
    refused(
        &s3[..2],
        "missing shard(s) 2 of 3: samples 2, 5, 8, 11 (4 of 12)",
    );
    refused(
        &[s3[0].clone(), s3[1].clone(), s3[2].clone(), s3[1].clone()],
        "shard 1 of 3 given twice",
    );
    let other = root.join("other");
    ok(ie(root)
        .arg("eval")
        .args(["experiment=smoke", "run.limit=3", "sampling.max_tokens=7"])
        .args(["--shard-index", "2", "--shard-count", "3", "--run-dir"])
        .arg(&other));
    refused(
        &[s3[0].clone(), s3[1].clone(), other],
        "not a shard of the same run",
    );
    refused(
        &[s3[0].clone(), s3[1].clone(), root.join("shards-7/2")],
        "shard count: 3",
    );
}

#[test]
fn a_shard_killed_mid_run_and_run_again_resumes_to_the_same_digest() {
    let p = common::project();
    let root = p.path();
    let single = root.join("single");
    ok(&mut shard_cmd(root, &single, &[]));
    let want = outcome(&single).0;
    let dirs: Vec<PathBuf> = (0..2).map(|i| root.join(format!("s/{i}"))).collect();
    let cmd = |i: usize| {
        let mut c = shard_cmd(root, &dirs[i], &["run.batch_size=1"]);
        c.args(["--shard-index", &i.to_string(), "--shard-count", "2"]);
        c
    };
    // Kill shard 1 once its first samples are on disk.
    let mut child = cmd(1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let samples_path = dirs[1].join("samples.jsonl");
    let t0 = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(&samples_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard finished before it could be killed"
        );
        assert!(t0.elapsed().as_secs() < 120, "no sample written in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let kept = common::samples(&dirs[1]).len();
    assert!(
        dirs[1].join("INCOMPLETE").exists() && kept < 6,
        "killed mid-run ({kept} of 6 samples)"
    );
    // The retry is the same command (as a Slurm requeue or a pod retry runs it).
    let out = ok(&mut cmd(1));
    assert!(out.contains("resuming"), "{out}");
    assert!(json(&dirs[1].join("manifest.json"))["resumed"] == true);
    ok(&mut cmd(0));
    // Running a finished shard again does nothing.
    let again = ok(&mut cmd(0));
    assert!(again.contains("already complete"), "{again}");
    let merged = root.join("merged");
    ok(ie(root).arg("merge").args(&dirs).arg("--out").arg(&merged));
    assert_eq!(outcome(&merged).0, want);
}
