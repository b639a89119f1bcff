//! The baseline store through the CLI: record, check, ls, eval --cache,
//! determinism versions, concurrent writers, and foreign files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    common::ie_in(Path::new(env!("CARGO_MANIFEST_DIR")), &[])
}

fn run(args: &[&str]) -> (i32, String, String) {
    common::outcome(bin().args(args))
}

/// A small real eval run (SmolLM2, 2 items per dataset); returns (run folder, digest).
fn eval_run(outputs: &Path, extra: &[&str]) -> (PathBuf, String, String) {
    common::smollm2_path();
    let o = outputs.to_str().unwrap();
    let (code, out, err) = run(&[
        &[
            "eval",
            "experiment=smoke",
            "run.limit=2",
            "sampling.max_tokens=6",
            "--outputs",
            o,
        ],
        extra,
    ]
    .concat());
    assert_eq!(code, 0, "{out}\n{err}");
    let get = |p: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap()
            .trim()
            .to_string()
    };
    (PathBuf::from(get("run folder ")), get("run digest "), out)
}

#[test]
fn record_check_ls_and_versions() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("b.sqlite");
    let s = store.to_str().unwrap();
    let (dir, _, _) = eval_run(&d.path().join("out"), &[]);
    let r = dir.to_str().unwrap();
    let (code, out, err) = run(&["baseline", "record", r, "--store", s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("8 new, 0 already stored"), "{out}");
    let (_, out, _) = run(&["baseline", "record", r, "--store", s]);
    assert!(out.contains("0 new, 8 already stored"), "{out}");
    let (code, out, _) = run(&["baseline", "check", r, "--store", s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("8 MATCH, 0 DIFF, 0 MISSING"), "{out}");
    let (_, out, _) = run(&["baseline", "ls", "--store", s]);
    assert!(
        out.contains("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
            && out.contains(" 8 "),
        "{out}"
    );
    // A run under another determinism version finds nothing.
    let other = d.path().join("other-version");
    common::copy_dir(&dir, &other);
    let v = infer_eval::DETERMINISM_VERSION;
    for f in ["manifest.json", "fingerprint.json"] {
        let m = std::fs::read_to_string(other.join(f)).unwrap();
        std::fs::write(
            other.join(f),
            m.replace(
                &format!("\"determinism_version\": {v}"),
                "\"determinism_version\": 999",
            ),
        )
        .unwrap();
    }
    common::forge::reseal(&other);
    let (code, out, _) = run(&["baseline", "check", other.to_str().unwrap(), "--store", s]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("0 MATCH, 0 DIFF, 8 MISSING"), "{out}");
    // A tampered output is refused: the folder does not prove itself.
    let tampered = d.path().join("tampered");
    common::copy_dir(&dir, &tampered);
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let mut lines: Vec<serde_json::Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    match lines[0]["choice_logliks"].as_array_mut() {
        Some(ll) => ll[0] = serde_json::json!(ll[0].as_f64().unwrap() - 1.0),
        None => lines[0]["output_ids"][0] = serde_json::json!(7),
    }
    std::fs::write(
        tampered.join("samples.jsonl"),
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let t = tampered.to_str().unwrap();
    for verb in ["check", "record"] {
        let (code, _, err) = run(&["baseline", verb, t, "--store", s]);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("samples.jsonl: line 1") && err.contains("field 'digest'"),
            "{err}"
        );
    }
    // Forged consistent again (not a signature), it is a DIFF against the store.
    common::forge::reseal(&tampered);
    let (code, out, _) = run(&["baseline", "check", t, "--store", s]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("7 MATCH, 1 DIFF"), "{out}");
}

#[test]
fn eval_cache_serves_stored_outputs_with_the_same_digest() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("c.sqlite");
    let args = ["--cache", "read", "--store", s.to_str().unwrap()];
    let (_, first, _) = eval_run(&d.path().join("out"), &args);
    let (dir, second, out) = eval_run(&d.path().join("out"), &args);
    assert_eq!(first, second);
    assert!(out.contains("0 tokens generated"), "{out}");
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert_eq!(
        samples
            .lines()
            .filter(|l| l.contains("\"cached\":true"))
            .count(),
        8
    );
    let (_, off, _) = eval_run(&d.path().join("out"), &["--cache", "off"]);
    assert_eq!(first, off);
}

#[test]
fn two_processes_recording_at_once_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (dir, _, _) = eval_run(&d.path().join("out"), &[]);
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let template: Vec<serde_json::Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 writers x 5 runs x 200 samples, every key distinct.
    let mut lists = vec![Vec::new(), Vec::new()];
    for w in 0..2 {
        for r in 0..5 {
            let rd = d.path().join(format!("w{w}r{r}"));
            std::fs::create_dir_all(&rd).unwrap();
            common::copy_dir(&dir, &rd);
            let mut text = String::new();
            for i in 0..200 {
                let mut s = template[i % template.len()].clone();
                s["params_hash"] = serde_json::json!(format!("w{w}-r{r}-{i}"));
                s["id"] = serde_json::json!(format!("w{w}-r{r}-{i}"));
                text.push_str(&format!("{s}\n"));
            }
            std::fs::write(rd.join("samples.jsonl"), text).unwrap();
            // Made consistent, so `baseline record` takes it.
            common::forge::reseal(&rd);
            lists[w].push(rd.to_str().unwrap().to_string());
        }
    }
    let store = d.path().join("concurrent.sqlite");
    let spawned: Vec<_> = lists
        .iter()
        .map(|dirs| {
            let script = dirs
                .iter()
                .map(|r| {
                    format!(
                        "\"{}\" baseline record \"{r}\" --store \"{}\" || exit 1",
                        env!("CARGO_BIN_EXE_infer-eval"),
                        store.display()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in spawned {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let st = infer_eval::baseline::Store::open(&store).unwrap();
    assert_eq!(
        st.count().unwrap(),
        2000,
        "every record of both writers is there"
    );
    assert_eq!(st.integrity_check().unwrap(), "ok");
}

#[test]
fn a_corrupt_or_foreign_store_is_refused_and_kept() {
    let d = tempfile::tempdir().unwrap();
    let junk = d.path().join("junk.sqlite");
    let bytes: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&junk, &bytes).unwrap();
    let (code, _, err) = run(&["baseline", "ls", "--store", junk.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("junk.sqlite") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(std::fs::read(&junk).unwrap(), bytes, "never overwritten");
}
