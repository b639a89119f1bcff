//! A forger, for tests: rewrite an altered run folder so that it proves
//! itself again (each sample's digest from its outputs, the plan, metrics,
//! run digest and file hashes recomputed). It shows what a run folder does
//! not prove (it is not a signature: whoever can write the folder can do
//! this), and it gives `diff`, `report` and `verify` folders that differ
//! from a re-run yet pass the offline check, to test what they say then.

use infer_eval::eval::{config, manifest, metrics, plan, proof, run, sample};
use sha2::{Digest, Sha256};
use std::path::Path;

fn write_pretty<T: serde::Serialize>(path: &Path, v: &T) {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

pub fn reseal(dir: &Path) {
    let text = std::fs::read_to_string(dir.join(proof::SAMPLES)).unwrap();
    let mut samples: Vec<sample::SampleRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out = String::new();
    for s in &mut samples {
        s.digest = proof::expected_digest(s);
        out.push_str(&serde_json::to_string(s).unwrap());
        out.push('\n');
    }
    std::fs::write(dir.join(proof::SAMPLES), out).unwrap();
    let plan = plan::Plan {
        samples: samples
            .iter()
            .map(|s| plan::Planned {
                id: s.id.clone(),
                prompt_hash: s.prompt_hash.clone(),
            })
            .collect(),
        skipped: plan::Plan::read(dir).map(|p| p.skipped).unwrap_or_default(),
    };
    write_pretty(&dir.join(plan::PLAN), &plan);
    let (cfg, _) = config::load_resolved(&dir.join("config.yaml")).unwrap();
    write_pretty(&dir.join(proof::METRICS), &metrics::metrics(&cfg, &samples));
    let mpath = dir.join(proof::MANIFEST);
    let mut m: manifest::Manifest =
        serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.n_samples = samples.len();
    m.run_digest = run::run_digest(&samples);
    m.config_sha256 = hex::encode(Sha256::digest(
        std::fs::read(dir.join("config.yaml")).unwrap(),
    ));
    m.files = proof::hash_files(dir).unwrap();
    write_pretty(&mpath, &m);
}
