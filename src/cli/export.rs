//! `infer-eval export mlflow RUN_DIR...`, and the export `eval --mlflow` does.

use anyhow::{Context, Result};
use infer_eval::export::mlflow;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum ExportCmd {
    /// Export finished run folders to an MLflow tracking server over its REST
    /// API: params (the resolved config), metrics with intervals and latency
    /// percentiles, a tag per manifest fact, the folder's files as
    /// artifacts, the datasets as inputs. A run already exported is found
    /// by its run-digest tag and not created again.
    Mlflow {
        /// Finished run folders.
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        #[command(flatten)]
        server: MlflowArgs,
    },
}

#[derive(clap::Args, Clone)]
pub struct MlflowArgs {
    /// The tracking server, http(s)://host:port (the server must run with --serve-artifacts).
    #[arg(long = "tracking-uri", env = "MLFLOW_TRACKING_URI")]
    pub tracking_uri: Option<String>,
    /// The experiment the runs go in (created if missing).
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "infer-eval")]
    pub experiment: String,
}

impl MlflowArgs {
    pub fn target(&self) -> Result<mlflow::Target> {
        let uri = self.tracking_uri.as_deref().ok_or_else(|| {
            infer_eval::Error::Usage(
                "no MLflow server: pass --tracking-uri http://host:port or set MLFLOW_TRACKING_URI"
                    .into(),
            )
        })?;
        Ok(mlflow::Target::new(uri, &self.experiment)?)
    }
}

/// Export one run folder, printing what happened.
pub fn export_one(target: &mlflow::Target, dir: &Path) -> Result<mlflow::Exported> {
    let e = mlflow::export(target, dir, |m| eprintln!("infer-eval: mlflow: {m}"))
        .with_context(|| format!("exporting {} to MLflow", dir.display()))?;
    println!(
        "mlflow run {} ({}) {}",
        e.run_id,
        if e.created {
            "exported"
        } else {
            "already there"
        },
        e.url
    );
    Ok(e)
}

pub fn export(cmd: ExportCmd) -> Result<()> {
    match cmd {
        ExportCmd::Mlflow { run_dirs, server } => {
            let target = server.target()?;
            // Every folder is tried; the failures are listed at the end.
            let mut failed = Vec::new();
            for d in &run_dirs {
                if let Err(e) = export_one(&target, d) {
                    // (One folder's error is printed once, at the end.)
                    if run_dirs.len() > 1 {
                        eprintln!("error: {}", super::one_line(&e));
                    }
                    failed.push((d.display().to_string(), e));
                }
            }
            match failed.len() {
                0 => Ok(()),
                1 if run_dirs.len() == 1 => Err(failed.pop().expect("one").1),
                n => {
                    let (_, first) = failed.swap_remove(0);
                    Err(first.context(format!(
                        "{n} of {} run folders were not exported (each error is above)",
                        run_dirs.len()
                    )))
                }
            }
        }
    }
}
