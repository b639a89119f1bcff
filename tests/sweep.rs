//! `eval --multirun` in Hydra's grammar, in a copy of the project: every
//! combination is an ordinary run folder <sweep dir>/<n>/ in Hydra's job
//! order, a failing point is reported and does not stop the others, and
//! two sweeps of the same grammar give the same folders and run digests.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn sweep(root: &Path, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "eval",
            "--multirun",
            "task=capitals",
            "sampling=sampled",
            "run.limit=3",
            "run.bootstrap=100",
            "sampling.seed=7,8",
            "model=llama,no_such_model",
        ])
        .arg("--sweep-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_sweep_runs_every_combination_reports_failures_and_repeats_to_the_bit() {
    let proj = common::project();
    let (a, b) = (proj.path().join("sweep-a"), proj.path().join("sweep-b"));
    let out = sweep(proj.path(), &a);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // Two points fail (the model option does not exist): the sweep exits
    // non-zero after running the other two, naming the failures.
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("2 of 4 sweep point(s) failed"), "{stderr}");
    let s = summary(&a);
    let pts = s["points"].as_array().unwrap();
    let combos: Vec<(String, String)> = pts
        .iter()
        .map(|p| {
            let o: Vec<&str> = p["overrides"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            (o[4].to_string(), o[5].to_string())
        })
        .collect();
    let want = [
        ("sampling.seed=7", "model=llama"),
        ("sampling.seed=7", "model=no_such_model"),
        ("sampling.seed=8", "model=llama"),
        ("sampling.seed=8", "model=no_such_model"),
    ];
    assert_eq!(
        combos,
        want.iter()
            .map(|(x, y)| (x.to_string(), y.to_string()))
            .collect::<Vec<_>>()
    );
    for (n, p) in pts.iter().enumerate() {
        let failed = n % 2 == 1;
        assert_eq!(p["status"], if failed { "failed" } else { "ok" }, "{p}");
        if failed {
            assert!(
                p["error"].as_str().unwrap().contains("no_such_model"),
                "{p}"
            );
            continue;
        }
        let run = a.join(n.to_string());
        let cfg = std::fs::read_to_string(run.join("config.yaml")).unwrap();
        assert!(cfg.contains(&format!("seed: {}", 7 + n / 2)), "{cfg}");
        assert!(!run.join("INCOMPLETE").exists());
        assert_eq!(p["datasets"]["capitals"]["n"], 3);
        assert!(stdout.contains(p["run_digest"].as_str().unwrap()));
    }
    assert!(stdout.contains("FAILED"), "{stdout}");

    // The same sweep again, elsewhere: the same folders and digests.
    let out = sweep(proj.path(), &b);
    assert!(!out.status.success());
    let t = summary(&b);
    for (p, q) in pts.iter().zip(t["points"].as_array().unwrap()) {
        assert_eq!(p["overrides"], q["overrides"]);
        assert_eq!(p["status"], q["status"]);
        assert_eq!(p["run_digest"], q["run_digest"]);
    }
    // The run digest covers token ids: each point's logits and
    // log-probabilities repeat too.
    for n in [0, 2] {
        common::assert_same_run_bits(&a.join(n.to_string()), &b.join(n.to_string()));
    }
    // The two seeds draw differently (a sweep over seeds that ignored the
    // seed would repeat one run).
    let (d7, s7) = common::run_bits(&a.join("0"));
    let (d8, s8) = common::run_bits(&a.join("2"));
    assert_ne!(d7, d8, "seeds 7 and 8 gave the same run digest");
    assert!(
        s7.iter()
            .zip(&s8)
            .any(|(x, y)| x["output_ids"] != y["output_ids"]),
        "seeds 7 and 8 drew the same tokens for every sample"
    );
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), names(&b));

    // A sweep point is an ordinary run: verify re-runs it to MATCH.
    let v = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj.path())
        .arg("verify")
        .arg(a.join("2"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success() && text.contains("MATCH"), "{text}");

    // Bad grammar is a usage error before anything runs.
    let o = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(proj.path())
        .args(["eval", "--multirun", "sampling.seed=glob(*)"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("glob() is not supported"));
}

fn eval(root: &Path, args: &[&str]) -> (std::path::PathBuf, Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .env("HF_HUB_OFFLINE", "1")
        .args(["eval", "task=capitals", "sampling=sampled", "run.limit=4"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run folder "))
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    (dir, out)
}

fn ok(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    s
}

#[test]
fn several_seeds_in_one_run_equal_one_run_per_seed_and_verify() {
    let proj = common::project();
    let root = proj.path();
    let (multi, o) = eval(root, &["+run.seeds=[7,8,9]", "run.batch_size=4"]);
    let text = ok(&o);
    assert!(text.contains("across 3 seeds"), "{text}");
    let all = common::samples(&multi);
    assert_eq!(all.len(), 12);
    let m: Value =
        serde_json::from_slice(&std::fs::read(multi.join("metrics.json")).unwrap()).unwrap();
    let c = &m["datasets"]["capitals"];
    let per: Vec<f64> = ["7", "8", "9"]
        .iter()
        .map(|s| c["per_seed"][s]["mean"].as_f64().unwrap())
        .collect();
    let mean = per.iter().sum::<f64>() / 3.0;
    assert!((c["across_seeds"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert_eq!(c["across_seeds"]["seeds"], 3);

    // Each seed's samples are the bits of a one-seed run with that seed,
    // computed alone and in other batches.
    for seed in [7u64, 9] {
        let (one, o) = eval(
            root,
            &[&format!("sampling.seed={seed}"), "run.batch_size=3"],
        );
        ok(&o);
        let single = common::samples(&one);
        assert_eq!(single.len(), 4);
        for s in &single {
            let id = format!("{}@seed={seed}", s["id"].as_str().unwrap());
            let twin = all
                .iter()
                .find(|x| x["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} not in the multi-seed run"));
            assert_eq!(twin["seed"], seed);
            assert_eq!(twin["output_ids"], s["output_ids"], "{id}");
            assert_eq!(twin["digest"], s["digest"], "{id}");
            assert_eq!(twin["logits_digest"], s["logits_digest"], "{id}");
        }
    }

    // run.num_seeds from sampling.seed gives the same samples.
    let (k, o) = eval(root, &["sampling.seed=7", "+run.num_seeds=3"]);
    let t = ok(&o);
    let digest = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("run digest "))
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&t), digest(&text));
    assert_eq!(common::samples(&k).len(), 12);

    // verify re-draws every seed: MATCH.
    let v = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .args(["verify", "--batch-size", "5"])
        .arg(&multi)
        .output()
        .unwrap();
    let said = ok(&v);
    assert!(said.contains("MATCH"), "{said}");
    assert!(
        said.contains(", batch size 5)"),
        "the re-run used --batch-size 5: {said}"
    );

    // diff compares seed by seed.
    let (other, o) = eval(root, &["+run.seeds=[7,8,10]"]);
    ok(&o);
    let d = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .arg("diff")
        .arg(&multi)
        .arg(&other)
        .output()
        .unwrap();
    let dt = String::from_utf8_lossy(&d.stdout);
    assert!(
        dt.contains("capitals@seed=7") && dt.contains("capitals@seed=8"),
        "{dt}"
    );
    assert!(!dt.contains("capitals@seed=10"), "{dt}");

    // Seeds that cannot change anything, or listed twice, are refused.
    for (args, says) in [
        (vec!["+run.seeds=[7,7]"], "listed twice"),
        (
            vec!["sampling=greedy", "+run.seeds=[1,2]"],
            "every seed would give the same outputs",
        ),
        (vec!["+run.seeds=[1]", "+run.num_seeds=2"], "not both"),
    ] {
        let (_, o) = eval(root, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    }
}
