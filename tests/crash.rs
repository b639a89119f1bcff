//! Crash safety: an eval run killed with SIGKILL at random moments, resumed
//! each time, ends with the digest of an uninterrupted run, and the baseline
//! store it was writing passes PRAGMA integrity_check.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = common::ie_in(root, args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn incomplete_run(outputs: &Path) -> Option<PathBuf> {
    let days = std::fs::read_dir(outputs).ok()?;
    days.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .find(|p| {
            p.join("INCOMPLETE").exists()
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
}

/// Whole sample lines in `run`/samples.jsonl.
fn samples_in(run: &Path) -> usize {
    std::fs::read(run.join("samples.jsonl"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

fn digest_of(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    s.lines()
        .find_map(|l| l.strip_prefix("run digest "))
        .unwrap_or_else(|| panic!("no digest in {s}"))
        .trim()
        .to_string()
}

#[test]
fn killed_at_random_moments_and_resumed_gives_the_same_digest() {
    common::smollm2_path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let outputs = tmp.path().join("outputs");
    let store = tmp.path().join("store.sqlite");
    let (o, s) = (outputs.to_str().unwrap(), store.to_str().unwrap());
    let base = [
        "eval",
        "experiment=smoke",
        "run.limit=3",
        "run.batch_size=1",
        "sampling.max_tokens=6",
    ];
    let args = [&base[..], &["--outputs", o]].concat();
    let clean_start = Instant::now();
    let clean = cmd(
        root,
        &[
            &base[..],
            &["--outputs", tmp.path().join("clean").to_str().unwrap()],
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let want = digest_of(&clean.stdout);
    // Kill moments fall inside the first 80% of an uninterrupted run (start-up
    // included), so they land mid-run however fast the engine has become.
    let clean_ms = clean_start.elapsed().as_millis() as u64;
    let window = (clean_ms * 4 / 5).saturating_sub(20).max(1);

    // Random kill moments, from a seed printed for reproduction.
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        });
    eprintln!("CRASH_SEED={seed}, uninterrupted run {clean_ms} ms");
    let mut state = seed | 1;
    let mut next_ms = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        20 + state % window
    };
    let cached = ["--cache", "write", "--store", s];
    let mut kills = 0;
    // Resumes that started from a folder already holding samples: a kill
    // during start-up, before the folder exists, resumes nothing.
    let mut resumes_with_samples = 0;
    let start = Instant::now();
    let final_out = loop {
        assert!(start.elapsed() < Duration::from_secs(600), "did not finish");
        let mut child = match incomplete_run(&outputs) {
            Some(d) => {
                if samples_in(&d) > 0 {
                    resumes_with_samples += 1;
                }
                cmd(
                    root,
                    &[&["eval", "--resume", d.to_str().unwrap()], &cached[..]].concat(),
                )
                .spawn()
                .unwrap()
            }
            None => cmd(root, &[&args[..], &cached[..]].concat())
                .spawn()
                .unwrap(),
        };
        if kills < 5 {
            let wait = Duration::from_millis(next_ms());
            let t = Instant::now();
            // The first kill falls at random (start-up included); after it,
            // while no resume has started from a folder holding samples, a
            // kill waits for a sample on disk, so one resume keeps samples.
            let targeted = kills >= 1 && resumes_with_samples == 0;
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let due = if targeted {
                    incomplete_run(&outputs).is_some_and(|d| samples_in(&d) > 0)
                } else {
                    t.elapsed() >= wait
                };
                if due {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        break out;
    };
    eprintln!("killed {kills} times; {resumes_with_samples} resume(s) started from a folder holding samples");
    assert!(kills >= 1, "at least one kill landed mid-run");
    assert!(
        resumes_with_samples >= 1,
        "no resume started from a folder holding samples (seed {seed})"
    );
    assert_eq!(
        digest_of(&final_out.stdout),
        want,
        "resumed digest (seed {seed})"
    );
    assert!(incomplete_run(&outputs).is_none());
    let st = infer_eval::baseline::Store::open(&store).unwrap();
    assert_eq!(st.integrity_check().unwrap(), "ok");
    // Every sample of the run is in the store (it is recorded before its
    // line is appended), once: 4 datasets x 3 items.
    assert!(final_out.status.success());
    assert_eq!(st.count().unwrap(), 12, "the store holds each sample once");
}
