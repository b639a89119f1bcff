//! DVC-tracked inputs with a real `dvc` (PyPI dvc 3.67.1, pinned in
//! tests/interop/dvc-requirements.txt) in a temporary git + DVC repo: the
//! md5 a run records equals the one `dvc add` wrote, a changed file is
//! refused (or with --allow-data-drift recorded), and a directory tracked
//! as a whole gets DVC's own `.dir` md5.

mod common;
use common::{ok as run_ok, said};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn git(root: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .current_dir(root)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args),
    )
}

fn dvc(bin: &Path, root: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new(bin.join("dvc"))
            .current_dir(root)
            .env("DVC_NO_ANALYTICS", "1")
            .args(args),
    )
}

/// The md5 in a `.dvc` file's first out, as DVC wrote it.
fn dvc_md5(dvc_file: &Path) -> String {
    let t = std::fs::read_to_string(dvc_file).unwrap();
    t.lines()
        .find_map(|l| l.trim().trim_start_matches("- ").strip_prefix("md5: "))
        .unwrap_or_else(|| panic!("no md5 in {t}"))
        .trim()
        .to_string()
}

fn eval(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .args([
            "eval",
            "experiment=smoke",
            "task=multiple_choice",
            "run.limit=2",
        ])
        .args(extra)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn manifest(out: &Output) -> Value {
    let s = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(
        s.lines()
            .find_map(|l| l.strip_prefix("run folder "))
            .unwrap_or_else(|| panic!("no run folder in {s}")),
    );
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn sha256(p: &Path) -> String {
    infer_eval::formats::sha256_file(p).unwrap()
}

#[test]
fn dvc_tracked_data_is_recorded_checked_and_hashed_as_dvc_does() {
    let bin = common::venv::venv("dvc", "tests/interop/dvc-requirements.txt");
    let p = common::project();
    let root = p.path();
    git(root, &["init", "-q"]);
    dvc(&bin, root, &["init", "-q"]);
    let data = "data/multiple_choice.jsonl";
    dvc(&bin, root, &["add", "-q", data]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "data under DVC"]);
    let head = git(root, &["rev-parse", "HEAD"]).trim().to_string();

    // The recorded md5 is DVC's, with the repo revision.
    let out = eval(root, &[]);
    assert!(out.status.success(), "{}", said(&out));
    let m = manifest(&out);
    let rec = m["dvc"].as_array().expect("a dvc section")[0].clone();
    let want = dvc_md5(&root.join("data/multiple_choice.jsonl.dvc"));
    assert_eq!(rec["file"], data);
    assert_eq!(rec["md5"], want.as_str());
    assert_eq!(rec["actual_md5"], want.as_str());
    assert_eq!(rec["matches"], true);
    assert_eq!(rec["tracked_by"], "data/multiple_choice.jsonl.dvc");
    assert_eq!(rec["repo_rev"], head.as_str());

    // Change the file (and its sha256 pin, so that only DVC sees the change).
    let path = root.join(data);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(
        br#"{"id": "extra", "question": "2+2?", "choices": ["4", "5"], "answer": 0}"#,
    );
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();
    let pin = format!("task.datasets.0.sha256={}", sha256(&path));
    let refused = eval(root, &[&pin]);
    assert_eq!(refused.status.code(), Some(3), "{}", said(&refused));
    let msg = said(&refused);
    assert!(
        msg.contains("DVC md5") && msg.contains("multiple_choice.jsonl.dvc") && msg.contains(&want),
        "{msg}"
    );
    let drifted = eval(root, &[&pin, "--allow-data-drift"]);
    assert!(drifted.status.success(), "{}", said(&drifted));
    let m = manifest(&drifted);
    assert_eq!(m["dvc"][0]["matches"], false);
    assert_eq!(m["dvc"][0]["md5"], want.as_str());
    let drift = m["data_drift"].as_array().unwrap();
    assert!(
        drift
            .iter()
            .any(|d| d["expected"] == format!("dvc-md5:{want}").as_str()),
        "{drift:?}"
    );
    // `dvc add` again records the new bytes: the run passes once more.
    dvc(&bin, root, &["add", "-q", data]);
    assert!(eval(root, &[&pin]).status.success());

    // A folder tracked as a whole: the dataset inside it gets DVC's .dir md5.
    let dir = root.join("suite");
    std::fs::create_dir_all(dir.join("mc")).unwrap();
    std::fs::create_dir_all(dir.join("ünï")).unwrap();
    std::fs::copy(&path, dir.join("mc/items.jsonl")).unwrap();
    std::fs::write(dir.join("ünï/é.txt"), "non-ASCII names\n").unwrap();
    std::fs::write(dir.join("README"), "a folder DVC tracks as one\n").unwrap();
    std::fs::write(dir.join("mc-notes.txt"), "sorts between mc/ and others\n").unwrap();
    dvc(&bin, root, &["add", "-q", "suite"]);
    let want_dir = dvc_md5(&root.join("suite.dvc"));
    assert!(want_dir.ends_with(".dir"), "{want_dir}");
    let out = eval(
        root,
        &[
            "task.datasets.0.path=suite/mc/items.jsonl",
            &format!(
                "task.datasets.0.sha256={}",
                sha256(&dir.join("mc/items.jsonl"))
            ),
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    let m = manifest(&out);
    let rec = &m["dvc"][0];
    assert_eq!(rec["kind"], "directory");
    assert_eq!(rec["out_path"], "suite");
    assert_eq!(
        rec["actual_md5"],
        want_dir.as_str(),
        "our .dir md5 against DVC's"
    );
    assert_eq!(rec["matches"], true);
    assert_eq!(rec["nfiles"], 4);
    // A file added to the folder changes its .dir md5: refused.
    std::fs::write(dir.join("late.txt"), "added after dvc add\n").unwrap();
    let refused = eval(
        root,
        &[
            "task.datasets.0.path=suite/mc/items.jsonl",
            &format!(
                "task.datasets.0.sha256={}",
                sha256(&dir.join("mc/items.jsonl"))
            ),
        ],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", said(&refused));
    assert!(said(&refused).contains("suite.dvc"), "{}", said(&refused));
}

#[test]
fn the_example_dvc_pipeline_runs_an_eval_as_its_stage() {
    let bin = common::venv::venv("dvc", "tests/interop/dvc-requirements.txt");
    let p = common::project();
    let root = p.path();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dvc/dvc.yaml"),
        root.join("dvc.yaml"),
    )
    .unwrap();
    git(root, &["init", "-q"]);
    dvc(&bin, root, &["init", "-q"]);
    // `dvc repro` runs the stage's command: infer-eval on PATH.
    let exe = Path::new(env!("CARGO_BIN_EXE_infer-eval"));
    let path = format!(
        "{}:{}:{}",
        exe.parent().unwrap().display(),
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(bin.join("dvc"))
        .current_dir(root)
        .args(["repro"])
        .env("DVC_NO_ANALYTICS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "dvc repro: {}", said(&out));
    let run = root.join("runs/smoke");
    assert!(run.join("manifest.json").is_file() && !run.join("INCOMPLETE").exists());
    // dvc.lock holds the run folder as an output; its .dir md5 is the one
    // infer-eval computes for a tracked folder.
    let lock = std::fs::read_to_string(root.join("dvc.lock")).unwrap();
    let md5 = lock
        .split("path: runs/smoke")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.trim().strip_prefix("md5: ")))
        .unwrap_or_else(|| panic!("no runs/smoke out in {lock}"))
        .to_string();
    assert_eq!(infer_eval::record::dvc::dir_md5(&run).unwrap(), md5);
    // Nothing changed: DVC sees the stage as up to date.
    let st = Command::new(bin.join("dvc"))
        .current_dir(root)
        .args(["status"])
        .env("DVC_NO_ANALYTICS", "1")
        .output()
        .unwrap();
    assert!(said(&st).contains("up to date"), "{}", said(&st));
}
