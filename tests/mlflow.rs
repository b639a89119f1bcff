//! `export mlflow` against a real MLflow server (PyPI mlflow 3.17.2, pinned in
//! tests/interop/mlflow-requirements.txt) started here on 127.0.0.1 with a
//! SQLite backend and --serve-artifacts, stopped by its process group: the
//! run is read back through the REST API (params, metrics, tags, artifacts
//! byte for byte, dataset inputs), a second export finds it, and an
//! unreachable or refusing server is an error that leaves the folder as it was.

mod common;
use common::said;

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct MlflowServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl MlflowServer {
    fn start() -> Self {
        let bin = common::venv::venv("mlflow", "tests/interop/mlflow-requirements.txt");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(bin.join("mlflow"))
            .current_dir(dir.path())
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--backend-store-uri",
                "sqlite:///mlflow.db",
                "--serve-artifacts",
            ])
            .args(["--artifacts-destination", "./mlartifacts", "--workers", "1"])
            // Without it a job runner and huey consumers outlive the server.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let s = MlflowServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&format!("{}/health", s.url)).call() {
                if r.into_string().unwrap_or_default().trim() == "OK" {
                    eprintln!("mlflow server up in {:.1} s", t0.elapsed().as_secs_f64());
                    return s;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "mlflow server did not answer /health in 120 s: {}",
                std::fs::read_to_string(s._dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn get(&self, path: &str) -> Value {
        let r = ureq::get(&format!("{}/api/2.0/mlflow/{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let r = ureq::post(&format!("{}/api/2.0/mlflow/{path}", self.url))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let pg = self.child.id() as i32;
        // The server and its uvicorn worker: the whole process group.
        unsafe { libc::kill(-pg, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(-pg, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = common::ie_in(root, args);
    c.env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME");
    c
}

/// Every file of a folder with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

fn tag<'a>(run: &'a Value, key: &str) -> &'a str {
    run["data"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .unwrap_or_else(|| panic!("no tag {key}"))
}

#[test]
fn a_run_exported_to_a_real_mlflow_server_reads_back_and_exports_once() {
    let p = common::project();
    let root = p.path();
    let server = MlflowServer::start();
    let run_dir = root.join("runs/smoke-a");
    let out = cmd(
        root,
        &[
            "eval",
            "experiment=smoke",
            "run.limit=2",
            "sampling.max_tokens=6",
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--mlflow",
            "--tracking-uri",
            &server.url,
            "--experiment",
            "interop test",
        ],
    )
    .env(
        "INFER_EVAL_IMAGE",
        "registry.example/infer-eval@sha256:0123abcd",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap();
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("metrics.json")).unwrap()).unwrap();
    let digest = manifest["run_digest"].as_str().unwrap();

    let exp = server.get("experiments/get-by-name?experiment_name=interop%20test");
    let exp_id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let search = || {
        server.post(
            "runs/search",
            serde_json::json!({"experiment_ids": [exp_id]}),
        )
    };
    let runs = search()["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["info"]["run_name"], "smoke-a");
    assert_eq!(run["info"]["status"], "FINISHED");
    let run_id = run["info"]["run_id"].as_str().unwrap();

    // Params: the resolved config, flattened.
    let params: std::collections::BTreeMap<String, String> = run["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().into(),
                p["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(params["run.limit"], "2");
    assert_eq!(params["model.name"], "llama");
    assert_eq!(params["task.datasets.3.path"], "data/multiple_choice.jsonl");
    assert_eq!(params["sampling.max_tokens"], "6");

    // Metrics with their intervals and latency percentiles.
    let metric = |k: &str| -> f64 {
        run["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == k)
            .unwrap_or_else(|| panic!("no metric {k}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        metric("macro_accuracy"),
        metrics["macro_accuracy"].as_f64().unwrap()
    );
    let mc = &metrics["datasets"]["multiple_choice"];
    assert_eq!(
        metric("multiple_choice/accuracy"),
        mc["accuracy"]["mean"].as_f64().unwrap()
    );
    assert_eq!(
        metric("multiple_choice/accuracy.ci_high"),
        mc["accuracy"]["ci_high"].as_f64().unwrap()
    );
    assert_eq!(
        metric("multiple_choice/accuracy_norm.ci_low"),
        mc["accuracy_norm"]["ci_low"].as_f64().unwrap()
    );
    assert_eq!(
        metric("ttft_ms.p99"),
        metrics["ttft_ms"]["p99"].as_f64().unwrap()
    );

    // Tags: the manifest's facts.
    assert_eq!(tag(run, "infer_eval.run_digest"), digest);
    assert_eq!(
        tag(run, "infer_eval.model.sha256"),
        manifest["model"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        tag(run, "infer_eval.tokenizer_sha256"),
        manifest["tokenizer_sha256"].as_str().unwrap()
    );
    assert_eq!(
        tag(run, "infer_eval.determinism_version"),
        manifest["determinism_version"].to_string()
    );
    assert_eq!(
        tag(run, "mlflow.source.git.commit"),
        manifest["environment"]["git_sha"].as_str().unwrap()
    );
    assert_eq!(
        tag(run, "infer_eval.environment.cpu_model"),
        manifest["environment"]["cpu_model"].as_str().unwrap()
    );
    assert_eq!(
        tag(run, "infer_eval.environment.isa"),
        manifest["environment"]["isa"].as_str().unwrap()
    );
    assert_eq!(
        tag(run, "mlflow.docker.image.uri"),
        "registry.example/infer-eval@sha256:0123abcd"
    );
    assert_eq!(tag(run, "infer_eval.environment.image.pinned"), "true");

    // Artifacts: every file of the folder, byte for byte.
    let listed = server.get(&format!("artifacts/list?run_id={run_id}"));
    let names: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let local = snapshot(&run_dir);
    assert_eq!(names.len(), local.len(), "{names:?}");
    let root_uri = listed["root_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("mlflow-artifacts:/")
        .unwrap();
    for (path, bytes) in &local {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            names.contains(&name),
            "{name} not among the artifacts {names:?}"
        );
        let r = ureq::get(&format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}",
            server.url,
            root_uri.trim_start_matches('/')
        ))
        .call()
        .unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
        assert!(
            got == *bytes,
            "artifact {name}: bytes differ from the run folder's"
        );
    }

    // Dataset inputs with their digests.
    let got = server.get(&format!("runs/get?run_id={run_id}"));
    let inputs = got["run"]["inputs"]["dataset_inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 4);
    for d in manifest["datasets"].as_array().unwrap() {
        let i = inputs
            .iter()
            .find(|i| i["dataset"]["name"] == d["name"])
            .unwrap_or_else(|| panic!("no input {}", d["name"]));
        let sha = d["sha256"].as_str().unwrap();
        assert_eq!(i["dataset"]["digest"].as_str().unwrap(), &sha[..32]);
        let profile: Value =
            serde_json::from_str(i["dataset"]["profile"].as_str().unwrap()).unwrap();
        assert_eq!(profile["sha256"], sha);
    }

    // A second export finds the run by its digest tag: still one run.
    let before = snapshot(&run_dir);
    let again = cmd(root, &["export", "mlflow", run_dir.to_str().unwrap()])
        .env("MLFLOW_TRACKING_URI", &server.url)
        .env("MLFLOW_EXPERIMENT_NAME", "interop test")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", said(&again));
    assert!(
        said(&again).contains(&format!("mlflow run {run_id} (already there)")),
        "{}",
        said(&again)
    );
    assert_eq!(search()["runs"].as_array().unwrap().len(), 1);

    // A server that refuses (no MLflow API under this prefix) and one that
    // is not there: clear errors, the folder untouched.
    let refused = cmd(
        root,
        &[
            "export",
            "mlflow",
            run_dir.to_str().unwrap(),
            "--tracking-uri",
        ],
    )
    .arg(format!("{}/no-such-prefix", server.url))
    .output()
    .unwrap();
    assert!(!refused.status.success());
    assert!(said(&refused).contains("HTTP 404"), "{}", said(&refused));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = cmd(
        root,
        &[
            "export",
            "mlflow",
            run_dir.to_str().unwrap(),
            "--tracking-uri",
        ],
    )
    .arg(format!("http://127.0.0.1:{dead}"))
    .output()
    .unwrap();
    assert_eq!(unreachable.status.code(), Some(1), "{}", said(&unreachable));
    assert!(
        said(&unreachable).contains("cannot reach the server"),
        "{}",
        said(&unreachable)
    );
    assert!(snapshot(&run_dir) == before, "the run folder changed");
    // No server given at all: a usage error before any run starts.
    let none = cmd(root, &["eval", "experiment=smoke", "--mlflow"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", said(&none));
    assert!(
        said(&none).contains("MLFLOW_TRACKING_URI"),
        "{}",
        said(&none)
    );
}
