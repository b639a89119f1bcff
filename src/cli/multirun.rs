//! `infer-eval eval --multirun`: every combination of the sweeping
//! overrides (`infer_eval::eval::sweep`) is an ordinary run, written into
//! `<sweep dir>/<n>/` with `--run-dir` semantics (so re-running the same
//! sweep into the same folder finishes unfinished points and skips finished
//! ones). A point that fails is recorded and the others still run; the
//! summary table is printed and written to `<sweep dir>/summary.json`.

use super::eval::{run_experiment, EvalArgs};
use anyhow::{bail, Result};
use infer_eval::eval::experiment::{project_root, Destination, ExperimentSpec, Source};
use infer_eval::eval::{proof, sweep};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One sweep point's outcome.
struct Point {
    num: usize,
    overrides: Vec<String>,
    outcome: std::result::Result<Value, String>,
}

/// Metrics and digest of a finished point's run folder.
fn read_point(dir: &Path) -> Result<Value> {
    let p = proof::check_run_folder(dir)?;
    let (m, digest) = (p.metrics, p.manifest.run_digest);
    let datasets: serde_json::Map<String, Value> = m
        .datasets
        .iter()
        .map(|(name, d)| {
            // A perplexity task has perplexities, not an accuracy.
            let v = match &d.perplexity {
                Some(p) => json!({
                    "n": d.accuracy.n,
                    "token_perplexity": p.token_perplexity,
                    "word_perplexity": p.word_perplexity,
                    "byte_perplexity": p.byte_perplexity,
                    "bits_per_byte": p.bits_per_byte,
                }),
                None => {
                    let mut v = json!({
                        "n": d.accuracy.n,
                        "accuracy": d.accuracy.mean,
                        "ci_95": [d.accuracy.ci_low, d.accuracy.ci_high],
                        "accuracy_norm": d.accuracy_norm.as_ref().map(|e| e.mean),
                    });
                    if !d.lm_eval.is_empty() {
                        let lm = d.lm_eval.iter().map(|(k, e)| (k.clone(), json!(e.mean)));
                        v["lm_eval"] = Value::Object(lm.collect());
                    }
                    v
                }
            };
            (name.clone(), v)
        })
        .collect();
    Ok(json!({
        "macro_accuracy": m.macro_accuracy,
        "datasets": datasets,
        "run_digest": digest,
    }))
}

pub fn multirun(a: EvalArgs) -> Result<()> {
    let root = project_root(&a.config_dir)?;
    let mlflow = a.mlflow.then(|| a.mlflow_server.target()).transpose()?;
    // Each point is the library's Experiment with the point's overrides,
    // into <sweep dir>/<n>/ with --run-dir semantics.
    let base = a.spec();
    let lm_eval = match &base.source {
        Source::Compose { lm_eval, .. } => lm_eval.clone(),
        Source::Resume(_) => unreachable!("--multirun conflicts with --resume"),
    };
    let points = sweep::expand(&a.overrides)?;
    let keys = sweep::sweeping_keys(&a.overrides)?;
    let dir = match &a.sweep_dir {
        Some(d) => d.clone(),
        None => {
            let (date, time) = infer_eval::record::utc_now();
            root.join("multirun").join(date).join(time)
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| infer_eval::Error::io(&dir, e))?;
    eprintln!(
        "infer-eval: multirun of {} point(s) over {} into {}",
        points.len(),
        if keys.is_empty() {
            "no sweeping key".to_string()
        } else {
            keys.join(", ")
        },
        dir.display()
    );
    let total = points.len();
    let mut done: Vec<Point> = Vec::new();
    for (num, overrides) in points.into_iter().enumerate() {
        let run_dir = dir.join(num.to_string());
        eprintln!(
            "infer-eval: sweep point {}/{total} (#{num}): {}",
            num + 1,
            overrides.join(" ")
        );
        let spec = ExperimentSpec {
            source: Source::Compose {
                overrides: overrides.clone(),
                lm_eval: lm_eval.clone(),
            },
            destination: Destination::RunDir(run_dir.clone()),
            ..base.clone()
        };
        let outcome = run_experiment(&spec, mlflow.as_ref())
            .and_then(|()| read_point(&run_dir))
            .map_err(|e| format!("{e:#}"));
        if let Err(e) = &outcome {
            eprintln!("infer-eval: #{num} failed: {e}");
        }
        done.push(Point {
            num,
            overrides,
            outcome,
        });
    }
    let failed = done.iter().filter(|p| p.outcome.is_err()).count();
    print_table(&done, &keys);
    let summary = json!({
        "sweep_dir": dir.display().to_string(),
        "overrides": a.overrides,
        "sweeping": keys,
        "points": done.iter().map(|p| {
            let mut v = json!({
                "num": p.num,
                "run_dir": p.num.to_string(),
                "overrides": p.overrides,
            });
            match &p.outcome {
                Ok(r) => {
                    v["status"] = "ok".into();
                    for (k, x) in r.as_object().unwrap() {
                        v[k] = x.clone();
                    }
                }
                Err(e) => {
                    v["status"] = "failed".into();
                    v["error"] = e.clone().into();
                }
            }
            v
        }).collect::<Vec<_>>(),
        "failed": failed,
    });
    let path: PathBuf = dir.join("summary.json");
    infer_eval::fsio::write_json(&path, &summary)?;
    println!("sweep summary {}", path.display());
    if failed > 0 {
        bail!(
            "{failed} of {} sweep point(s) failed (see {})",
            done.len(),
            path.display()
        );
    }
    Ok(())
}

/// The table: each point's sweeping overrides (all of them are in
/// summary.json), status, accuracies and run digest.
fn print_table(done: &[Point], keys: &[String]) {
    println!();
    println!(
        "{:>3}  {:<32} {:<7} {:>9}  {:<44} {}",
        "#", "sweep", "status", "macro acc", "accuracy [95% CI] per dataset", "run digest"
    );
    for p in done {
        let o = p
            .overrides
            .iter()
            .filter(|o| {
                let k = o.split('=').next().unwrap_or("").trim_start_matches('+');
                keys.iter().any(|x| x.trim_start_matches('+') == k)
            })
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        match &p.outcome {
            Ok(r) => {
                let per: Vec<String> = r["datasets"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(n, d)| match d["word_perplexity"].as_f64() {
                        Some(w) => format!("{n} word perplexity {w:.3}"),
                        None => format!(
                            "{n} {:.3} [{:.3}, {:.3}]",
                            d["accuracy"].as_f64().unwrap_or(f64::NAN),
                            d["ci_95"][0].as_f64().unwrap_or(f64::NAN),
                            d["ci_95"][1].as_f64().unwrap_or(f64::NAN)
                        ),
                    })
                    .collect();
                println!(
                    "{:>3}  {:<32} {:<7} {:>9.3}  {:<44} {}",
                    p.num,
                    o,
                    "ok",
                    r["macro_accuracy"].as_f64().unwrap_or(f64::NAN),
                    per.join("; "),
                    r["run_digest"].as_str().unwrap_or("")
                );
            }
            Err(e) => {
                let first = e.lines().next().unwrap_or("");
                println!(
                    "{:>3}  {:<32} {:<7} {:>9}  {first}",
                    p.num, o, "FAILED", "-"
                );
            }
        }
    }
}
