//! The bit-exactness regression suite (tests/golden/bitexact.toml): every
//! case reproduces its digests, and golden digests only change together
//! with the determinism version.

use infer_eval::bench;
use std::path::Path;

fn golden() -> bench::Golden {
    bench::read_golden(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bitexact.toml"))
        .unwrap()
}

#[test]
fn golden_digests_change_only_with_the_determinism_version() {
    let g = golden();
    assert_eq!(
        g.determinism_version,
        infer_eval::DETERMINISM_VERSION,
        "golden file and DETERMINISM_VERSION disagree"
    );
    let fps = infer_eval::GOLDEN_FINGERPRINTS;
    let versions: Vec<u32> = fps.iter().map(|f| f.0).collect();
    assert_eq!(
        versions,
        (1..=infer_eval::DETERMINISM_VERSION).collect::<Vec<_>>(),
        "one fingerprint per version, in order"
    );
    let mut seen = std::collections::HashSet::new();
    assert!(
        fps.iter().all(|f| seen.insert(f.1)),
        "a new version must come with new digests, and old fingerprints stay"
    );
    let current = fps.last().unwrap().1;
    assert_eq!(
        bench::fingerprint(&g),
        current,
        "golden digests changed: bump DETERMINISM_VERSION, add its GOLDEN_FINGERPRINTS entry and say why"
    );
    let names: std::collections::HashSet<_> = g.cases.iter().map(|c| &c.name).collect();
    assert_eq!(names.len(), g.cases.len(), "case names are unique");
}

#[test]
fn every_case_matches_its_golden_digests() {
    let g = golden();
    let tmp = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for c in &g.cases {
        let o = bench::run_case(c, tmp.path(), &mut |s| eprintln!("{s}")).unwrap();
        // The log-likelihood cases carry their bits in logprobs_digest only
        // (digest is the continuations' ids, logits_digest empty), and the
        // generation cases their log-probabilities of the drawn tokens.
        let parts = [
            ("tokens", o.digest == c.digest),
            ("logits", o.logits_digest == c.logits_digest),
            ("logprobs", o.logprobs_digest == c.logprobs_digest),
        ];
        let diff: Vec<&str> = parts.iter().filter(|p| !p.1).map(|p| p.0).collect();
        report.push(if diff.is_empty() {
            format!("{}: MATCH", c.name)
        } else {
            format!("{}: DIFF ({})", c.name, diff.join(", "))
        });
    }
    eprintln!("{}", report.join("\n"));
    assert!(report.iter().all(|r| r.ends_with("MATCH")), "{report:#?}");
    assert!(
        g.cases.iter().any(|c| !c.continuations.is_empty()),
        "the suite holds log-likelihood cases"
    );
}

/// Runs `case` with another batch size and prefill chunk; the engine, not
/// the golden file, has to give the same bits.
fn run_as(
    case: &bench::Case,
    batch_size: usize,
    prefill_chunk: usize,
    dir: &Path,
) -> bench::Outcome {
    let mut c = case.clone();
    c.batch_size = batch_size;
    c.prefill_chunk = prefill_chunk;
    bench::run_case(&c, dir, &mut |s| eprintln!("{s}")).unwrap()
}

#[test]
fn batching_and_chunking_give_the_same_bits_when_run() {
    let g = golden();
    let tmp = tempfile::tempdir().unwrap();
    let case = |name: &str| g.cases.iter().find(|c| c.name == name).unwrap();
    // Generation: three prompts of different lengths, decoded together.
    let a = case("smollm2-greedy");
    assert!(a.prompts.len() >= 2 && a.max_tokens > 1);
    let solo = run_as(a, 1, 512, tmp.path());
    for (bs, chunk) in [(3, 3), (2, 1), (4, 7)] {
        let o = run_as(a, bs, chunk, tmp.path());
        assert_eq!(
            (&o.digest, &o.logits_digest, &o.logprobs_digest),
            (&solo.digest, &solo.logits_digest, &solo.logprobs_digest),
            "smollm2-greedy at batch {bs}, chunk {chunk}"
        );
    }
    // Log-likelihoods: batched and chunked, the same bits.
    let a = case("smollm2-loglik");
    assert!(!a.continuations.is_empty());
    let solo = run_as(a, 1, 512, tmp.path());
    assert!(!solo.logprobs_digest.is_empty());
    for (bs, chunk) in [(5, 3), (2, 1), (3, 8)] {
        let o = run_as(a, bs, chunk, tmp.path());
        assert_eq!(
            (&o.digest, &o.logprobs_digest),
            (&solo.digest, &solo.logprobs_digest),
            "smollm2-loglik at batch {bs}, chunk {chunk}"
        );
    }
    // The golden file's batched twins hold the same digests as their solo
    // cases (each of which every_case_matches_its_golden_digests runs).
    for (solo, batched) in [
        ("smollm2-greedy", "smollm2-greedy-batched"),
        ("smollm2-loglik", "smollm2-loglik-batched"),
    ] {
        let (a, b) = (case(solo), case(batched));
        assert!(b.batch_size > 1 && b.prefill_chunk < 8, "{batched}");
        assert_eq!(
            (&a.digest, &a.logits_digest, &a.logprobs_digest),
            (&b.digest, &b.logits_digest, &b.logprobs_digest),
            "{batched}"
        );
    }
}
