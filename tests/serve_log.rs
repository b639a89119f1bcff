//! The served-traffic log (`serve --log`) after `kill -9`: every line is
//! whole JSON and `verify --served` re-runs them to MATCH; a torn last line
//! (a server killed mid-write) is skipped by verify with a message, and cut
//! off by the next server that opens the log.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Every line parses; the file ends with a newline. How many lines.
fn whole_lines(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn last line: {text:?}"
    );
    for (i, l) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}: {l:?}", i + 1));
        assert!(v["choices"].is_array());
    }
    text.lines().count()
}

#[test]
fn a_log_killed_mid_traffic_holds_whole_lines_and_verifies() {
    let model = common::smollm2_path();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("served.jsonl");
    let l = log.to_str().unwrap();
    let s = Server::start(&model, &["--log", l]);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for k in 0..4 {
            let (s, answered) = (&s, &answered);
            sc.spawn(move || {
                for i in 0..50 {
                    let body = json!({"prompt": format!("Request {k}.{i}:"), "max_tokens": 3 + i % 4,
                                      "temperature": 0.8, "seed": i, "stream": i % 3 == 0});
                    let r = common::server::agent()
                        .post(&s.url("/v1/completions"))
                        .send_string(&body.to_string());
                    match r {
                        Ok(r) => {
                            let _ = r.into_string();
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(_) => return, // the server is gone
                    }
                }
            });
        }
        let t0 = Instant::now();
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 6 {
            assert!(t0.elapsed() < Duration::from_secs(120), "no answers");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL while requests run and are being logged.
        unsafe { libc::kill(s.pid(), libc::SIGKILL) };
    });
    drop(s);
    let n = whole_lines(&log);
    assert!(n >= 6, "{n} lines");
    let o = common::server::verify_served(&log);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(&format!("MATCH: {n} requests")),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A server killed in the middle of a write leaves a torn last line:
    // verify skips it, naming it.
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(br#"{"time": 1765000000, "id": "cmpl-17", "endpoint": "/v1/compl"#);
    std::fs::write(&log, &text).unwrap();
    let o = common::server::verify_served(&log);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success() && out.contains(&format!("MATCH: {n} requests")),
        "{out}{err}"
    );
    assert!(
        err.contains(&format!("line {}: an interrupted last line", n + 1)),
        "{err}"
    );
    // A torn line that is not the last is bad input, named by its line.
    let first_line = text.split(|&b| b == b'\n').next().unwrap().to_vec();
    let mut mid = text.clone();
    mid.push(b'\n');
    mid.extend_from_slice(&first_line);
    mid.push(b'\n');
    let torn_mid = dir.path().join("mid.jsonl");
    std::fs::write(&torn_mid, &mid).unwrap();
    let o = common::server::verify_served(&torn_mid);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("line {}", n + 1)));

    // The next server on the same log cuts the torn line off, says so, and
    // appends whole lines after the old ones.
    let s = Server::start(&model, &["--log", l]);
    assert!(
        s.log
            .lock()
            .unwrap()
            .contains("removed an interrupted last line (60 bytes)"),
        "{}",
        s.log.lock().unwrap()
    );
    let (code, v) = s.post(
        "/v1/completions",
        &json!({"prompt": "Again", "max_tokens": 2}),
    );
    assert_eq!(code, 200, "{v}");
    drop(s);
    assert_eq!(whole_lines(&log), n + 1);
    let o = common::server::verify_served(&log);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("MATCH: {} requests", n + 1)), "{out}");
}
