//! Exports of finished run folders to the tools teams already run
//! (MLflow tracking). A layer above `eval`: it reads run folders and never
//! writes them.

pub mod mlflow;
