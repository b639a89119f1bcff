//! `infer-eval baseline record|check|ls`.

use anyhow::{Context, Result};
use infer_eval::baseline::{self, Entry, Key, Recorded, Store};
use infer_eval::eval::proof;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum BaselineCmd {
    /// Store every sample of a finished run folder.
    Record { run_dir: PathBuf },
    /// Compare a finished run folder with the store: MATCH, DIFF or MISSING per sample (exit 6 on any DIFF).
    Check { run_dir: PathBuf },
    /// List what the store holds, by determinism version and model.
    Ls,
}

fn keyed(dir: &Path) -> Result<Vec<(Key, Entry, String)>> {
    let proof::Proven {
        manifest: m,
        config: cfg,
        samples,
        ..
    } = proof::check_run_folder(dir)?;
    Ok(samples
        .into_iter()
        .map(|s| {
            let key = Key {
                determinism_version: m.determinism_version,
                model_sha256: m.model.sha256.clone(),
                tokenizer_sha256: m.tokenizer_sha256.clone(),
                prompt_hash: s.prompt_hash.clone(),
                params_hash: s.params_hash.clone(),
                // A run with several seeds: the seed each sample drew with.
                seed: s.seed.unwrap_or(cfg.sampling.seed),
            };
            let entry = Entry {
                output_ids: s.output_ids.clone(),
                digest: s.digest.clone(),
                logits_digest: s.logits_digest.clone(),
                logprobs: s.choice_logliks.clone().unwrap_or(s.logprobs.clone()),
                run: dir.display().to_string(),
                created_at: infer_eval::record::utc_timestamp(),
            };
            (key, entry, s.id)
        })
        .collect())
}

pub fn baseline(cmd: BaselineCmd, store: Option<PathBuf>) -> Result<i32> {
    let path = store.unwrap_or_else(baseline::default_path);
    let mut st = Store::open(&path)?;
    match cmd {
        BaselineCmd::Record { run_dir } => {
            let rows =
                keyed(&run_dir).with_context(|| format!("reading run {}", run_dir.display()))?;
            let entries: Vec<(Key, Entry)> = rows
                .iter()
                .map(|(k, e, _)| (k.clone(), e.clone()))
                .collect();
            let res = st.record(&entries)?;
            let count = |r: Recorded| res.iter().filter(|x| **x == r).count();
            println!(
                "{}: {} new, {} already stored with the same digest, {} conflicting",
                st.path().display(),
                count(Recorded::New),
                count(Recorded::Same),
                count(Recorded::Conflict)
            );
            for ((_, _, id), r) in rows.iter().zip(&res) {
                if *r == Recorded::Conflict {
                    println!(
                        "  CONFLICT {id}: the store holds another output for the same key (kept)"
                    );
                }
            }
            Ok(if count(Recorded::Conflict) > 0 {
                infer_eval::error::exit::MISMATCH
            } else {
                0
            })
        }
        BaselineCmd::Check { run_dir } => {
            let rows =
                keyed(&run_dir).with_context(|| format!("reading run {}", run_dir.display()))?;
            let (mut matched, mut diff, mut missing) = (0, 0, 0);
            for (k, e, id) in &rows {
                match st.get(k)? {
                    Some(b) if b.digest == e.digest && b.logits_digest == e.logits_digest => {
                        matched += 1
                    }
                    Some(b) => {
                        diff += 1;
                        let p = b
                            .output_ids
                            .iter()
                            .zip(&e.output_ids)
                            .take_while(|(x, y)| x == y)
                            .count();
                        println!(
                            "DIFF {id}: first differs at output token {p} (baseline from {}, {})",
                            b.run, b.created_at
                        );
                    }
                    None => missing += 1,
                }
            }
            println!(
                "{matched} MATCH, {diff} DIFF, {missing} MISSING of {} samples (store {})",
                rows.len(),
                st.path().display()
            );
            Ok(if diff > 0 || matched == 0 {
                infer_eval::error::exit::MISMATCH
            } else {
                0
            })
        }
        BaselineCmd::Ls => {
            println!(
                "{:<12} {:<66} {:>8} {:>5}  newest",
                "determinism", "model sha256", "entries", "runs"
            );
            for (v, m, n, r, t) in st.summary()? {
                println!("{v:<12} {m:<66} {n:>8} {r:>5}  {t}");
            }
            Ok(0)
        }
    }
}
