//! Python venvs for the real third-party tools tests drive (clients, MLflow,
//! DVC): one per requirements file under the cargo target's tmp folder,
//! installed once and reused while the pinned requirements are the same.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The venv's bin folder for `requirements` (a path relative to the repo).
pub fn venv(name: &str, requirements: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let req = Path::new(env!("CARGO_MANIFEST_DIR")).join(requirements);
    let want = infer_eval::formats::sha256_file(&req).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-venv"));
    let bin = dir.join("bin");
    let marker = dir.join("installed.sha256");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(want.as_str()) {
        return bin;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "python3 -m venv failed (Debian: apt-get install python3-venv)"
    );
    eprintln!("installing {requirements} into {}", dir.display());
    let out = Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&req)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install -r {requirements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&marker, &want).unwrap();
    bin
}
