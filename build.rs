//! Records the build environment for run manifests: rustc version, git
//! commit and whether the tree was dirty.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INFER_EVAL_RUSTC={version}");
    // A build without .git (the Dockerfile's) is told the commit and
    // whether the tree was dirty by INFER_EVAL_BUILD_GIT_SHA / _DIRTY.
    let given = |k: &str| {
        println!("cargo:rerun-if-env-changed={k}");
        std::env::var(k).ok().filter(|v| !v.trim().is_empty())
    };
    let sha = given("INFER_EVAL_BUILD_GIT_SHA")
        .or_else(|| run("git", &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INFER_EVAL_GIT_SHA={sha}");
    let dirty = match given("INFER_EVAL_BUILD_GIT_DIRTY") {
        Some(d) => d,
        None => match run("git", &["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) => (!s.is_empty()).to_string(),
            None => "unknown".into(),
        },
    };
    println!("cargo:rustc-env=INFER_EVAL_GIT_DIRTY={dirty}");
    for p in [".git/HEAD", ".git/index", ".git/refs/heads"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
