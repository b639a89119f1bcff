//! A real `infer-eval serve` on 127.0.0.1 (a free port it picks itself),
//! stopped by its own process id; a real HTTP client (ureq) beside it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    /// Everything the server wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// `infer-eval serve --model M --port 0 --threads 2 ARGS`; waits for its startup line.
    pub fn start(model: &std::path::Path, args: &[&str]) -> Server {
        Server::start_env(model, args, &[])
    }

    /// `start` with environment variables; INFER_EVAL_API_KEY only where
    /// `env` sets it.
    pub fn start_env(model: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
            .args(["serve", "--port", "0", "--threads", "2", "--model"])
            .arg(model)
            .args(args)
            .env_remove("INFER_EVAL_API_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start infer-eval serve");
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if let Some(at) = line.find("listening on http://") {
                    let addr = line[at + "listening on ".len()..]
                        .split(' ')
                        .next()
                        .unwrap()
                        .to_string();
                    let _ = tx.send(addr);
                }
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        Server { child, base, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait (at most `secs`) for the process to exit.
    pub fn terminate(&mut self, secs: u64) -> ExitStatus {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed().as_secs() < secs,
                "server did not exit {secs} s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        post(&self.url(path), &body.to_string())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        match agent().get(&self.url(path)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// A value of /metrics (a line `name value`).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
            .parse()
            .unwrap()
    }

    /// Waits until metric `name` satisfies `cond`; fails (rather than
    /// hangs) after `secs` seconds, with the value last seen.
    pub fn wait_metric(&self, name: &str, secs: u64, cond: impl Fn(f64) -> bool) {
        let t0 = Instant::now();
        loop {
            let v = self.metric(name);
            if cond(v) {
                return;
            }
            assert!(
                t0.elapsed().as_secs() < secs,
                "{name} is still {v} after {secs} s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server's stderr holds `text`; fails after `secs` seconds.
    pub fn wait_log(&self, text: &str, secs: u64) -> String {
        let t0 = Instant::now();
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.contains(text) {
                return log;
            }
            assert!(
                t0.elapsed().as_secs() < secs,
                "no '{text}' in the server's log after {secs} s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build()
}

/// POST a raw body; (status, JSON body). Error statuses are returned too.
pub fn post(url: &str, body: &str) -> (u16, Value) {
    let r = agent()
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(body);
    let (code, text) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("POST {url}: {e}"),
    };
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}")),
    )
}

/// A streamed request's SSE events (the JSON of each `data:` line before
/// [DONE]); with `stop_after`, the connection is dropped after that many.
pub fn stream(url: &str, body: &Value, stop_after: Option<usize>) -> (Vec<Value>, bool) {
    read_events(&mut open_stream(url, body), stop_after)
}

/// A streamed request's body, unread.
pub fn open_stream(url: &str, body: &Value) -> BufReader<Box<dyn Read + Send + Sync>> {
    let r = agent()
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    BufReader::new(r.into_reader())
}

/// Events until [DONE] (true) or the end of the body or `stop_after` events (false).
pub fn read_events(reader: &mut impl BufRead, stop_after: Option<usize>) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            return (events, false);
        }
        let Some(data) = line.trim_end().strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            return (events, true);
        }
        events.push(serde_json::from_str(data).unwrap());
        if stop_after.is_some_and(|n| events.len() >= n) {
            return (events, false);
        }
    }
}

/// `infer-eval verify --threads 2 --served LOG` (the model named in the log).
pub fn verify_served(log: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .args(["verify", "--threads", "2", "--served"])
        .arg(log)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}
