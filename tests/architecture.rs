//! The module graph of src/lib.rs, checked on the sources: dependencies
//! point one way (finding 19 of issue 11: model and tokenizer used each
//! other). A `use crate::x` or `crate::x::` in a module that must not know
//! `x` fails here, with the file and line.

use std::path::Path;

/// (module path under src/, modules it must not use).
const RULES: &[(&str, &[&str])] = &[
    (
        "numerics",
        &[
            "kernels",
            "ops",
            "model",
            "tokenizer",
            "engine",
            "eval",
            "loader",
            "formats",
        ],
    ),
    (
        "kernels",
        &[
            "ops",
            "model",
            "tokenizer",
            "engine",
            "eval",
            "loader",
            "formats",
            "sampling",
        ],
    ),
    (
        "ops",
        &[
            "model",
            "tokenizer",
            "engine",
            "eval",
            "loader",
            "formats",
            "sampling",
        ],
    ),
    (
        "formats",
        &["model", "tokenizer", "engine", "eval", "loader", "ops"],
    ),
    (
        "model",
        &[
            "tokenizer",
            "engine",
            "eval",
            "loader",
            "sampling",
            "generation",
            "bench",
            "baseline",
            "serve",
        ],
    ),
    (
        "tokenizer",
        &["model", "engine", "eval", "loader", "ops", "kernels"],
    ),
    (
        "sampling",
        &["model", "tokenizer", "engine", "eval", "loader", "ops"],
    ),
    (
        "engine",
        &[
            "tokenizer",
            "eval",
            "loader",
            "generation",
            "bench",
            "baseline",
            "serve",
        ],
    ),
];

fn files(p: &Path) -> Vec<std::path::PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        v.extend(files(&e.path()));
    }
    v
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    let mut checked = 0;
    for (module, forbidden) in RULES {
        let root = src.join(module);
        assert!(root.exists(), "no src/{module}");
        for f in files(&root) {
            let text = std::fs::read_to_string(&f).unwrap();
            checked += 1;
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for m in *forbidden {
                    if code.contains(&format!("crate::{m}::"))
                        || code.contains(&format!("crate::{m};"))
                        || code.contains(&format!("crate::{m}}}"))
                        || code.contains(&format!("crate::{{{m}"))
                        || code.contains(&format!(" {m}::"))
                            && code.trim_start().starts_with("use crate::{")
                    {
                        bad.push(format!(
                            "{}:{}: {module} uses {m}: {}",
                            f.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "checked only {checked} files");
    assert!(
        bad.is_empty(),
        "dependencies against the graph of src/lib.rs:\n{}",
        bad.join("\n")
    );
}
