//! `infer-eval bench bitexact`: the regression table.

use anyhow::Result;
use infer_eval::bench;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Re-run every bit-exactness case and compare digests (exit 6 on any DIFF).
    Bitexact {
        /// The golden file.
        #[arg(long, default_value = "tests/golden/bitexact.toml")]
        golden: PathBuf,
        /// Only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Rewrite the expected digests with the actual ones (with a new determinism version only).
        #[arg(long)]
        update: bool,
    },
}

const HEADER: &str = "# Bit-exactness regression cases: `infer-eval bench bitexact` (or
# `cargo bench --bench bitexact`) re-runs each and compares digests.
# digest: sha256 over the sequences' output-id digests; logits_digest: over
# their logits digests. Changing any expected digest needs a new
# DETERMINISM_VERSION and GOLDEN_FINGERPRINTS entry in src/lib.rs.

";

pub fn bench(cmd: BenchCmd) -> Result<i32> {
    let BenchCmd::Bitexact {
        golden,
        filter,
        update,
    } = cmd;
    let mut g = bench::read_golden(&golden)?;
    let diffs = bench::run_table(&mut g, filter.as_deref(), update, &mut std::io::stdout())?;
    if update {
        g.determinism_version = infer_eval::DETERMINISM_VERSION;
        infer_eval::record::write_atomic(
            &golden,
            format!("{HEADER}{}", toml::to_string(&g)?).as_bytes(),
        )?;
        println!(
            "updated {}; fingerprint {}",
            golden.display(),
            bench::fingerprint(&g)
        );
        return Ok(0);
    }
    println!(
        "{}",
        if diffs == 0 {
            "all MATCH".to_string()
        } else {
            format!("{diffs} DIFF")
        }
    );
    Ok(if diffs == 0 {
        0
    } else {
        infer_eval::error::exit::MISMATCH
    })
}
