//! `infer-eval report RUN_DIR [RUN_B] [--out FILE]`.

use anyhow::Result;
use infer_eval::eval::compare::{diff_data, RunData};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A finished run folder.
    pub run_dir: PathBuf,
    /// A second run folder: the page adds the paired comparison (as `diff`).
    pub run_b: Option<PathBuf>,
    /// The HTML file to write (default: report.html in RUN_DIR).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Write the report of `a` (against `b`) to `out`, atomically.
pub fn write_report(a: &RunData, b: Option<&RunData>, out: &Path) -> Result<()> {
    let diff = b.map(|b| diff_data(a, b));
    let html = infer_eval::report::render(a, b.zip(diff.as_ref()))?;
    infer_eval::fsio::write_atomic(out, html.as_bytes())?;
    println!("report {}", out.display());
    Ok(())
}

pub fn report(a: ReportArgs) -> Result<()> {
    let run_a = RunData::read(&a.run_dir)?;
    let run_b = a.run_b.as_deref().map(RunData::read).transpose()?;
    let out = a.out.unwrap_or_else(|| a.run_dir.join("report.html"));
    write_report(&run_a, run_b.as_ref(), &out)
}
