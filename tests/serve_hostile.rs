//! Broken and hostile clients against a real `infer-eval serve`, over raw
//! sockets on 127.0.0.1: headers sent a line at a time (slowloris) and a
//! body trickled a byte at a time are closed within their timeouts while a
//! real request is answered; idle sockets over the connection cap delay a
//! client but do not refuse it; an oversized body is 413 (declared or
//! streamed); a 200,000-deep JSON array, invalid UTF-8, a token-id prompt
//! longer than the context and an enormous max_tokens are answered, each
//! naming its field, and the server stays up.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(s: &Server) -> TcpStream {
    let addr = s.base.trim_start_matches("http://").to_string();
    let t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t
}

/// Reads until the server closes the connection (or 30 s pass): what it
/// sent. A reset counts as a close.
fn read_to_close(t: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading: {e} after {}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A raw request: its status line's code and its JSON body.
fn raw(s: &Server, head: &str, body: &[u8]) -> (u16, Value) {
    let mut t = connect(s);
    t.write_all(head.as_bytes()).unwrap();
    let _ = t.write_all(body);
    let text = read_to_close(&mut t);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (code, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn post_head(len: usize) -> String {
    format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

fn assert_names(code: u16, v: &Value, want: u16, param: &str) {
    assert_eq!(code, want, "{v}");
    assert_eq!(v["error"]["param"], param, "{v}");
    assert!(
        !v["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
}

#[test]
fn slow_and_trickling_clients_are_closed_while_real_requests_are_answered() {
    let s = Server::start(
        &common::smollm2_path(),
        &[
            "--header-timeout-s",
            "2",
            "--body-timeout-s",
            "2",
            "--max-connections",
            "4",
        ],
    );
    let real = json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0});
    std::thread::scope(|sc| {
        // Slowloris: a header line every 300 ms, never the blank line.
        let slow = sc.spawn(|| {
            let mut t = connect(&s);
            let t0 = Instant::now();
            t.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            let mut lines = 0;
            while t0.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(300));
                if t.write_all(format!("X-Slow-{lines}: y\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
                lines += 1;
                let mut probe = [0u8; 1];
                t.set_nonblocking(true).unwrap();
                let r = t.read(&mut probe);
                t.set_nonblocking(false).unwrap();
                match r {
                    Ok(0) => break,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    _ => break,
                }
            }
            t0.elapsed()
        });
        // A body promised as 1000 bytes, sent one byte every 300 ms.
        let trickle = sc.spawn(|| {
            let mut t = connect(&s);
            let t0 = Instant::now();
            t.write_all(post_head(1000).as_bytes()).unwrap();
            let writer = t.try_clone().unwrap();
            let w = std::thread::spawn(move || {
                let mut writer = writer;
                for _ in 0..60 {
                    std::thread::sleep(Duration::from_millis(300));
                    if writer.write_all(b" ").is_err() {
                        break;
                    }
                }
            });
            let got = read_to_close(&mut t);
            let took = t0.elapsed();
            drop(t);
            let _ = w.join();
            (got, took)
        });
        // Meanwhile a real request is answered.
        std::thread::sleep(Duration::from_millis(500));
        let (code, v) = s.post("/v1/completions", &real);
        assert_eq!(code, 200, "{v}");
        let took = slow.join().unwrap();
        assert!(
            took < Duration::from_secs(6),
            "the slowloris client was held {took:?}"
        );
        let (got, took) = trickle.join().unwrap();
        assert!(
            took < Duration::from_secs(6),
            "the trickled body was read for {took:?}"
        );
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("--body-timeout-s"), "{got}");
    });
    // Idle sockets fill the 4 places: a client waits for one to time out,
    // and is answered.
    let idle: Vec<TcpStream> = (0..4).map(|_| connect(&s)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let (code, v) = s.post("/v1/completions", &real);
    assert_eq!(code, 200, "{v}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "answered in {:?} beside 4 idle connections with a cap of 4: the cap did not hold",
        t0.elapsed()
    );
    for mut t in idle {
        read_to_close(&mut t);
    }
    assert_eq!(s.post("/v1/completions", &real).0, 200);
}

#[test]
fn oversized_deep_invalid_and_huge_requests_are_refused_by_field() {
    let s = Server::start(&common::smollm2_path(), &["--max-body-mib", "1"]);
    // Declared over the limit: 413 before a byte of it is read.
    let (code, v) = raw(&s, &post_head(2 << 20), b"");
    assert_names(code, &v, 413, "body");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1.0 MiB"),
        "{v}"
    );
    // Streamed over the limit (chunked, no length given).
    let mut t = connect(&s);
    t.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    let chunk = vec![b' '; 64 << 10];
    for _ in 0..24 {
        if t.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || t.write_all(&chunk).is_err()
            || t.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let got = read_to_close(&mut t);
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");

    // 200,000 nested arrays: a 400, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let (code, v) = raw(&s, &post_head(deep.len()), deep.as_bytes());
    assert_names(code, &v, 400, "body");
    // Invalid UTF-8 in a string.
    let bad = b"{\"prompt\": \"caf\xe9 \xff\", \"max_tokens\": 2}";
    let (code, v) = raw(&s, &post_head(bad.len()), bad);
    assert_names(code, &v, 400, "body");
    // A token-id prompt longer than the context: refused by name.
    let ids: Vec<u32> = (0..9000).map(|i| 100 + i % 500).collect();
    let (code, v) = s.post("/v1/completions", &json!({"prompt": ids, "max_tokens": 1}));
    assert_names(code, &v, 400, "prompt");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    // max_tokens far past the context: accepted and bounded by the context
    // (caches grow with the tokens made, nothing is allocated for the
    // budget); the client reads 3 tokens and leaves.
    let (events, done) = common::server::stream(
        &s.url("/v1/completions"),
        &json!({"prompt": "Hi", "max_tokens": 1_000_000_000_000u64, "temperature": 0, "ignore_eos": true, "stream": true}),
        Some(3),
    );
    assert!(!done && events.len() == 3);
    let (code, v) = s.post(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": -1}),
    );
    assert_names(code, &v, 400, "max_tokens");
    // Still serving.
    let (code, v) = s.post(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}),
    );
    assert_eq!(code, 200, "{v}");
}
