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
        let ok = o.digest == c.digest && o.logits_digest == c.logits_digest;
        report.push(format!("{}: {}", c.name, if ok { "MATCH" } else { "DIFF" }));
    }
    eprintln!("{}", report.join("\n"));
    assert!(report.iter().all(|r| r.ends_with("MATCH")), "{report:#?}");
}

#[test]
fn batching_and_chunking_cases_agree() {
    let g = golden();
    let a = g.cases.iter().find(|c| c.name == "smollm2-greedy").unwrap();
    let b = g
        .cases
        .iter()
        .find(|c| c.name == "smollm2-greedy-batched")
        .unwrap();
    assert_eq!((b.batch_size, b.prefill_chunk), (3, 3));
    assert_eq!((&a.digest, &a.logits_digest), (&b.digest, &b.logits_digest));
    assert_eq!(a.logprobs_digest, b.logprobs_digest);
    // Log-likelihoods: batched and chunked in 3-token steps, the same bits.
    let a = g.cases.iter().find(|c| c.name == "smollm2-loglik").unwrap();
    let b = g
        .cases
        .iter()
        .find(|c| c.name == "smollm2-loglik-batched")
        .unwrap();
    assert_eq!((b.batch_size, b.prefill_chunk), (5, 3));
    assert!(!a.continuations.is_empty() && a.continuations == b.continuations);
    assert_eq!(
        (&a.digest, &a.logprobs_digest),
        (&b.digest, &b.logprobs_digest)
    );
}
