//! The Kubernetes and Ray launch recipes, run as written: each index of
//! examples/kubernetes/eval-indexed-job.yaml runs its container's args with
//! the Job's environment (JOB_COMPLETION_INDEX, INFER_EVAL_SHARD_COUNT) and
//! merge-job.yaml merges them; examples/ray/run_sharded.py runs the shards
//! as Ray tasks (a real local Ray, PyPI ray pinned in
//! tests/interop/ray-requirements.txt). Both merged digests must equal the
//! single-machine run's.

mod common;
use common::ok;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_infer-eval"))
}

fn digest(dir: &Path) -> String {
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["run_digest"].as_str().unwrap().to_string()
}

fn single(root: &Path, overrides: &[&str]) -> String {
    let dir = root.join("single");
    ok(Command::new(exe())
        .current_dir(root)
        .arg("eval")
        .args(overrides)
        .arg("--run-dir")
        .arg(&dir)
        .env("HF_HUB_OFFLINE", "1"));
    digest(&dir)
}

fn yaml(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(name);
    serde_norway::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_kubernetes_indexed_job_and_its_merge_reach_the_single_run_digest() {
    let p = common::project();
    let root = p.path();
    let job = yaml("eval-indexed-job.yaml");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let n = job["spec"]["completions"].as_u64().unwrap() as usize;
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    let count = env
        .iter()
        .find(|(k, _)| k == "INFER_EVAL_SHARD_COUNT")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        count,
        n.to_string(),
        "INFER_EVAL_SHARD_COUNT must equal completions"
    );
    let args = strings(&c["args"]);
    assert_eq!(args[0], "eval");
    // The volume /cache is a folder here; the overrides are the manifest's.
    let cache = root.join("cache");
    let overrides: Vec<&str> = args[1..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let want = single(root, &overrides);
    for i in 0..n {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("$(JOB_COMPLETION_INDEX)", &i.to_string())
                    .replace("/cache", &cache.display().to_string())
            })
            .collect();
        let mut cmd = Command::new(exe());
        cmd.current_dir(root)
            .args(&args)
            .env("HF_HUB_OFFLINE", "1")
            .env("JOB_COMPLETION_INDEX", i.to_string());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = ok(&mut cmd);
        assert!(
            out.contains(&format!("shard {i} of {n} (kubernetes)")),
            "{out}"
        );
    }
    let merge = yaml("merge-job.yaml");
    let mc = &merge["spec"]["template"]["spec"]["containers"][0];
    let mut cmd_line = strings(&mc["command"]);
    cmd_line.extend(
        strings(&mc["args"])
            .into_iter()
            .map(|a| a.replace("/cache", &cache.display().to_string())),
    );
    let path = format!(
        "{}:{}",
        exe().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ok(Command::new(&cmd_line[0])
        .args(&cmd_line[1..])
        .current_dir(root)
        .env("PATH", path));
    assert_eq!(digest(&cache.join("merged")), want);
    // The run digest covers token ids; the logits and log-probabilities too.
    common::assert_same_run_bits(&root.join("single"), &cache.join("merged"));
}

#[test]
fn the_ray_script_runs_shards_as_ray_tasks_and_merges_to_the_single_run_digest() {
    let bin = common::venv::venv("ray", "tests/interop/ray-requirements.txt");
    let p = common::project();
    let root = p.path();
    let overrides = ["experiment=smoke", "run.limit=3", "sampling.max_tokens=6"];
    let want = single(root, &overrides);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ray/run_sharded.py");
    let work = root.join("ray-shards");
    let out = ok(Command::new(bin.join("python"))
        .arg(&script)
        .args(["--shards", "3", "--num-cpus", "2", "--work"])
        .arg(&work)
        .arg("--infer-eval")
        .arg(exe())
        .arg("--")
        .args(overrides)
        .current_dir(root)
        .env("HF_HUB_OFFLINE", "1")
        // Ray 2.60 turns token auth on by default; a local test cluster opts out.
        .env("RAY_AUTH_MODE", "disabled")
        .env("RAY_USAGE_STATS_ENABLED", "0"));
    assert!(out.contains(&format!("run digest {want}")), "{out}");
    assert_eq!(digest(&work.join("merged")), want);
    common::assert_same_run_bits(&root.join("single"), &work.join("merged"));
    assert_eq!(out.matches("ran on node").count(), 3, "{out}");
}
