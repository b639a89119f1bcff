//! `cargo bench --bench bitexact`: the regression table (as
//! `infer-eval bench bitexact`); exits non-zero on any DIFF.

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bitexact.toml");
    let mut g = infer_eval::bench::read_golden(&path).unwrap_or_else(|e| panic!("{e}"));
    let diffs = infer_eval::bench::run_table(&mut g, None, false, &mut std::io::stdout())
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|r| !r.matched)
        .count();
    if diffs > 0 {
        eprintln!("{diffs} DIFF");
        std::process::exit(2);
    }
}
