//! Config composition and overrides: a fuzzed experiment file, group file
//! and override list, against a real config tree.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

fn tree() -> &'static PathBuf {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &T.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for group in ["experiment", "model", "sampling", "task", "prompt"] {
            std::fs::create_dir_all(d.path().join(group)).unwrap();
            for e in std::fs::read_dir(src.join(group)).unwrap().flatten() {
                std::fs::copy(e.path(), d.path().join(group).join(e.file_name())).unwrap();
            }
        }
        let p = d.path().to_path_buf();
        (d, p)
    })
    .1
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let experiment = parts.next().unwrap_or("");
    let sampling = parts.next().unwrap_or("");
    let overrides: Vec<String> = parts.next().unwrap_or("").split('\n').filter(|s| !s.is_empty()).map(String::from).collect();
    let dir = tree();
    std::fs::write(dir.join("experiment/fuzz.yaml"), experiment).unwrap();
    std::fs::write(dir.join("sampling/fuzz.yaml"), sampling).unwrap();
    let mut args = vec!["experiment=fuzz".to_string()];
    if data.len() % 2 == 0 {
        args.push("sampling=fuzz".into());
    }
    args.extend(overrides);
    if let Ok(c) = infer_eval::eval::config::compose(dir, &args) {
        let _ = infer_eval::eval::config::to_yaml(&c.tree);
    }
});
