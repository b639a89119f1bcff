//! API keys on `infer-eval serve`: the real openai Python client with the
//! key (answered) and with a wrong one (AuthenticationError), lm-eval with
//! OPENAI_API_KEY and auth_token (its remote tokenizer); raw requests
//! without a key, with a wrong one, to /health and /metrics; keys from
//! --api-key, --api-key-file and INFER_EVAL_API_KEY; --metrics-public; bad
//! key files refused before the model loads; keys never in the log; the
//! warning for a non-loopback address without a key.

mod common;

use common::server::{agent, Server};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// GET or POST `path` with an optional Authorization header: (status,
/// body, WWW-Authenticate).
fn call(s: &Server, path: &str, auth: Option<&str>) -> (u16, String, Option<String>) {
    let req = if path.starts_with("/v1/completions") {
        agent().post(&s.url(path))
    } else {
        agent().get(&s.url(path))
    };
    let req = match auth {
        Some(a) => req.set("Authorization", a),
        None => req,
    };
    let r = if path.starts_with("/v1/completions") {
        req.set("Content-Type", "application/json")
            .send_string(r#"{"prompt": "Hi", "max_tokens": 2, "temperature": 0}"#)
    } else {
        req.call()
    };
    let (code, resp) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("{path}: {e}"),
    };
    let www = resp.header("www-authenticate").map(String::from);
    (code, resp.into_string().unwrap(), www)
}

fn assert_refused(s: &Server, path: &str, auth: Option<&str>, says: &str) {
    let (code, body, www) = call(s, path, auth);
    assert_eq!(code, 401, "{path} with {auth:?}: {body}");
    assert_eq!(www.as_deref(), Some("Bearer"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key", "{body}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(says),
        "{body}"
    );
    for secret in ["sk-first", "sk-from-file", "sk-from-env", "sk-wrong"] {
        assert!(!body.contains(secret), "{body}");
    }
}

#[test]
fn api_keys_guard_every_route_but_health_and_the_openai_client_sees_401() {
    let model = common::smollm2_path();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.txt");
    std::fs::write(&file, "# the team's keys\n\nsk-from-file\n").unwrap();
    let s = Server::start_env(
        &model,
        &[
            "--api-key",
            "sk-first",
            "--api-key-file",
            file.to_str().unwrap(),
        ],
        &[("INFER_EVAL_API_KEY", "sk-from-env")],
    );
    // No key: only /health answers.
    assert_eq!(call(&s, "/health", None).0, 200);
    for path in [
        "/v1/models",
        "/v1/completions",
        "/metrics",
        "/tokenizer_info",
        "/no/such/route",
    ] {
        assert_refused(&s, path, None, "no API key given");
    }
    assert_refused(&s, "/v1/models", Some("Bearer sk-wrong"), "not valid");
    assert_refused(&s, "/v1/models", Some("Basic sk-first"), "no API key given");
    assert_refused(&s, "/v1/models", Some("Bearer sk-firs"), "not valid");
    // Each key, from each source, is accepted (the scheme in any case).
    for key in [
        "Bearer sk-first",
        "bearer sk-from-file",
        "BEARER sk-from-env",
    ] {
        let (code, body, _) = call(&s, "/v1/completions", Some(key));
        assert_eq!(code, 200, "{key}: {body}");
    }
    let (code, metrics, _) = call(&s, "/metrics", Some("Bearer sk-first"));
    assert_eq!(code, 200);
    assert!(
        metrics.contains("infer_eval_requests_total{path=\"other\",status=\"401\"} 1"),
        "an unknown path is counted as 'other': {metrics}"
    );

    // The real openai client: answered with a key, AuthenticationError without.
    let py = common::venv::venv("clients", "tests/clients/requirements.txt").join("python");
    let o = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openai_auth.py"))
        .arg(s.url("/v1"))
        .arg("sk-from-file")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["refused"], 1, "{seen}");
    assert!(seen["chat_chunks"].as_u64().unwrap() >= 2, "{seen}");

    // lm-evaluation-harness: OPENAI_API_KEY for the completions, auth_token
    // for its remote tokenizer (/tokenizer_info, /tokenize).
    let work = tempfile::tempdir().unwrap();
    let (_, before, _) = call(&s, "/metrics", Some("Bearer sk-first"));
    let o = Command::new(py.parent().unwrap().join("lm_eval"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HF_HOME", work.path().join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("OPENAI_API_KEY", "sk-from-env")
        .args([
            "--include_path",
            "tests/clients",
            "--model",
            "local-completions",
        ])
        .arg("--model_args")
        .arg(format!(
            "model=llama,base_url={},tokenizer_backend=remote,auth_token=sk-first,max_retries=1",
            s.url("/v1/completions")
        ))
        .args(["--tasks", "ie_multiple_choice", "--limit", "2"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lm_eval with keys: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (_, after, _) = call(&s, "/metrics", Some("Bearer sk-first"));
    let refusals = |m: &str| -> Vec<String> {
        m.lines()
            .filter(|l| l.contains("status=\"401\""))
            .map(String::from)
            .collect()
    };
    assert_eq!(refusals(&before), refusals(&after), "lm_eval was refused");
    let answered = |m: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(
                    "infer_eval_requests_total{path=\"/v1/completions\",status=\"200\"} ",
                )
            })
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    assert!(answered(&after) > answered(&before), "{after}");

    let log = s.log.lock().unwrap().clone();
    for secret in ["sk-first", "sk-from-file", "sk-from-env"] {
        assert!(!log.contains(secret), "the server logged a key: {log}");
    }
    drop(s);

    // --metrics-public: /metrics for a scraper, the rest still guarded.
    let s = Server::start(&model, &["--api-key", "sk-first", "--metrics-public"]);
    assert_eq!(call(&s, "/metrics", None).0, 200);
    assert_refused(&s, "/v1/models", None, "no API key given");
}

#[test]
fn bad_keys_are_refused_before_the_model_loads_and_open_addresses_warn() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.txt");
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_infer-eval"))
            .args(["serve", "--port", "0", "--model", "no-such-model"])
            .args(args)
            .env_remove("INFER_EVAL_API_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let f = file.to_str().unwrap();
    std::fs::write(&file, "sk-ok\nsk secret key\n").unwrap();
    /// Arguments, environment, and what the error says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            &["--api-key-file", f],
            &[],
            "keys.txt: line 2: an API key holds a space",
        ),
        (&["--api-key", ""], &[], "--api-key: an API key is empty"),
        (
            &[],
            &[("INFER_EVAL_API_KEY", "")],
            "INFER_EVAL_API_KEY: an API key is empty",
        ),
        (
            &["--api-key-file", "/no/such/keys.txt"],
            &[],
            "/no/such/keys.txt",
        ),
        (
            &["--api-key-file", dir.path().to_str().unwrap()],
            &[],
            "is a folder, not a file of API keys",
        ),
    ];
    for (args, env, says) in cases {
        let o = serve(args, env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: expected '{says}' in {err}");
        assert!(
            !err.contains("secret") && !err.contains("panicked"),
            "{err}"
        );
        assert!(
            !err.contains("no-such-model"),
            "refused before the model: {err}"
        );
    }
    std::fs::write(&file, "# only a comment\n").unwrap();
    let o = serve(&["--api-key-file", f], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no API key"));

    // Every address, no key: a warning (the model is missing, so it stops
    // right after; nothing listens).
    let o = serve(&["--host", "0.0.0.0"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: listening on 0.0.0.0 without an API key"),
        "{err}"
    );
    let o = serve(&["--host", "127.0.0.1"], &[]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("without an API key"));
    let o = serve(&["--host", "0.0.0.0", "--api-key", "sk-ok"], &[]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("without an API key"));
}
