//! The fuzz targets' bodies (fuzz/bodies.rs) on their seeds and on a fixed,
//! seeded set of mutations of each: truncations, byte flips, boundary
//! integers written over every aligned word, inserted, deleted and repeated
//! ranges. Any panic fails the test, and the input is written under
//! target/tmp/fuzz-replay/ to be replayed with `cargo fuzz run <target> FILE`.
//! Locally gathered corpora (fuzz/corpus, fuzz/artifacts) are replayed too.
//! Time-bounded coverage-guided fuzzing is `scripts/fuzz-smoke.sh`, outside CI.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// splitmix64: a fixed stream of mutation choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Integers at the edges of the sizes, counts and offsets a reader checks.
const BOUNDARY: [u64; 8] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, u64::MAX];

fn mutations(seed: &[u8], random: usize, salt: u64) -> Vec<Vec<u8>> {
    let mut out = vec![seed.to_vec(), Vec::new()];
    let step = (seed.len() / 64).max(1);
    out.extend((0..seed.len()).step_by(step).map(|n| seed[..n].to_vec()));
    // Every aligned word set to each boundary value, as u32 and as u64.
    for at in (0..seed.len()).step_by(4 * step) {
        for v in BOUNDARY {
            for width in [4usize, 8] {
                if at + width <= seed.len() {
                    let mut m = seed.to_vec();
                    m[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    out.push(m);
                }
            }
        }
    }
    let mut rng = Rng(salt ^ seed.len() as u64);
    for _ in 0..random {
        let mut m = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = m.len();
            match rng.below(6) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    m[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    m[i] = BOUNDARY[rng.below(BOUNDARY.len())] as u8;
                }
                2 => {
                    let i = rng.below(len + 1);
                    const BYTES: &[u8] = b"\0\n\"{}[]:,-9e\\\xff";
                    m.insert(i, BYTES[rng.below(BYTES.len())]);
                }
                3 if len > 1 => {
                    let i = rng.below(len);
                    let j = (i + 1 + rng.below(16)).min(len);
                    m.drain(i..j);
                }
                4 if len > 1 => {
                    let i = rng.below(len);
                    let j = (i + 1 + rng.below(32)).min(len);
                    let piece = m[i..j].to_vec();
                    let at = rng.below(len + 1);
                    m.splice(at..at, piece);
                }
                _ if len >= 8 => {
                    let i = rng.below(len - 7);
                    m[i..i + 8].copy_from_slice(&BOUNDARY[rng.below(BOUNDARY.len())].to_le_bytes());
                }
                _ => m.push(rng.next() as u8),
            }
        }
        out.push(m);
    }
    out
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Runs `target` on every input; a panic's input is saved and named.
fn replay(target: &str, inputs: &[Vec<u8>]) {
    let body = bodies::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .expect("a known target")
        .1;
    let mut failed = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let dir = root().join("target/tmp/fuzz-replay");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{target}-{i}.bin"));
            std::fs::write(&path, input).unwrap();
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs panicked:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
    eprintln!("{target}: {} inputs, no panic", inputs.len());
}

/// The seeds of a target: fuzz/seeds/<target> and the given ones, then any
/// local corpus and crash artifacts.
fn seeds(target: &str, given: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut s = files_in(&root().join("fuzz/seeds").join(target));
    s.extend(given);
    let mut local = files_in(&root().join("fuzz/corpus").join(target));
    local.extend(files_in(&root().join("fuzz/artifacts").join(target)));
    (s, local)
}

fn run(target: &str, given: Vec<Vec<u8>>, random: usize) {
    let (seeds, local) = seeds(target, given);
    assert!(!seeds.is_empty(), "{target} has seeds");
    let mut inputs = local;
    for (k, s) in seeds.iter().enumerate() {
        inputs.extend(mutations(s, random, 0x5EED ^ k as u64));
    }
    replay(target, &inputs);
}

#[test]
fn gguf_reader() {
    let seed = std::fs::read(root().join("fuzz/seeds/gguf/tiny.gguf")).unwrap();
    // The seed itself parses, so the mutations reach past the header.
    let g = infer_eval::formats::gguf::GgufFile::from_bytes(Path::new("tiny.gguf"), seed)
        .expect("the seed is a valid GGUF");
    assert!(!g.tensors.is_empty());
    run("gguf", Vec::new(), 30000);
}

fn safetensors_seed() -> Vec<u8> {
    let header = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}}"#;
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header);
    f.extend((0..22u8).collect::<Vec<_>>());
    f
}

#[test]
fn safetensors_index() {
    let seed = safetensors_seed();
    let index =
        infer_eval::formats::safetensors::index_safetensors(&seed, Path::new("seed.safetensors"))
            .expect("the seed is valid");
    assert_eq!(index.len(), 2);
    run("safetensors", vec![seed], 30000);
}

#[test]
fn gguf_tokenizer() {
    let vocab = "<s>\n</s>\nh\ne\nl\no\nw\nr\nd\n\u{120}\n1\n2\n3\nhe\nll\nhell\nhello\n\u{120}w\n\u{120}wor\nld";
    let merges = "h e\nl l\nhe ll\nhell o\n\u{120} w\n\u{120}w o\nr l";
    let seeds = [
        "hello world 123",
        "<s>hello</s> wor\u{0301}ld\n\t  12\u{1F600}",
        "",
    ]
    .iter()
    .map(|text| format!("{vocab}\0{merges}\0{text}").into_bytes())
    .collect();
    run("gguf_tokenizer", seeds, 5000);
}

#[test]
fn config_composition() {
    let configs = root().join("configs");
    let sampled = std::fs::read_to_string(configs.join("sampling/sampled.yaml")).unwrap();
    let mut seeds = Vec::new();
    for e in ["default", "smoke"] {
        let experiment =
            std::fs::read_to_string(configs.join(format!("experiment/{e}.yaml"))).unwrap();
        for overrides in [
            "",
            "sampling.seed=7\nrun.workers=2",
            "+run.seeds=[1,2]\ntask=capitals\n~sampling.top_k",
        ] {
            seeds.push(format!("{experiment}\0{sampled}\0{overrides}").into_bytes());
        }
    }
    run("config", seeds, 1000);
}

#[test]
fn dataset_readers() {
    let mut seeds = Vec::new();
    for d in ["capitals", "multiple_choice", "arithmetic", "reasoning"] {
        let text = std::fs::read_to_string(root().join(format!("data/{d}.jsonl"))).unwrap();
        let head: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        seeds.push(head.into_bytes());
    }
    seeds.push(b"Q: {question} and {answer}\nA: {{literal}}".to_vec());
    run("dataset", seeds, 5000);
}

#[test]
fn lmeval_task_files() {
    let dir = root().join("tests/clients/lm_eval");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    let docs = "{\"question\": \"What is 2+2?\", \"answer\": \"4\", \"choices\": [\"3\", \"4\"]}\n{\"q\": 1}";
    let mut seeds: Vec<Vec<u8>> = names
        .iter()
        .map(|p| {
            let t = std::fs::read_to_string(p).unwrap();
            format!("{t}\0task: base\n\0{docs}").into_bytes()
        })
        .collect();
    // Hostile ones: nested loops, deep nesting, an include chain.
    let looped =
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    seeds.push(
        format!("task: fuzz\ndataset_path: json\noutput_type: generate_until\ndoc_to_text: \"{looped}\"\ndoc_to_target: answer\n\0\0{docs}")
            .into_bytes(),
    );
    seeds.push(format!("task: fuzz\nx: {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes());
    seeds.push(
        format!("include: base.yaml\ntask: fuzz\n\0include: task.yaml\ndoc_to_text: q\n\0{docs}")
            .into_bytes(),
    );
    // The nested loops end (fuel), refused with an error, at once.
    let t = std::time::Instant::now();
    let fields = infer_eval::eval::lmeval::render::Fields::new();
    let doc = serde_json::Map::new();
    let e = fields
        .text(&serde_json::json!(looped), &doc, "doc_to_text")
        .unwrap_err();
    assert!(e.to_string().contains("fuel"), "{e}");
    assert!(t.elapsed().as_secs() < 20);
    run("lmeval_task", seeds, 200);
}
