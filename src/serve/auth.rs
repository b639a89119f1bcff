//! API keys for `serve`: with any key set, every route but `/health` (and
//! `/metrics` where it is public) needs `Authorization: Bearer KEY`. Keys
//! are compared in constant time (`subtle`, the RustCrypto crate for it) and
//! never logged, echoed or put in an error.

use crate::error::{Error, Result};
use std::path::Path;
use subtle::ConstantTimeEq;

/// The keys a server accepts, and whether `/metrics` needs one.
#[derive(Clone, Default)]
pub struct Auth {
    keys: Vec<Vec<u8>>,
    metrics_public: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A key that is not one of the server's.
    Invalid,
}

impl Auth {
    /// `keys` from the command line and the environment (each named by
    /// `origin` in errors), then those of `file`.
    pub fn new(keys: &[(String, &str)], file: Option<&Path>, metrics_public: bool) -> Result<Auth> {
        let mut out = Vec::new();
        for (k, origin) in keys {
            out.push(check_key(k, origin)?);
        }
        if let Some(p) = file {
            out.extend(read_key_file(p)?);
        }
        out.sort();
        out.dedup();
        Ok(Auth {
            keys: out,
            metrics_public,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a request for `path` with this `Authorization` header value
    /// may pass.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> std::result::Result<(), Refusal> {
        if self.keys.is_empty() || path == "/health" || (self.metrics_public && path == "/metrics")
        {
            return Ok(());
        }
        let token = authorization.and_then(bearer).ok_or(Refusal::Missing)?;
        // Every key is compared, whatever matched before: the time taken
        // says nothing of which key, or how much of one, matched.
        let mut ok = subtle::Choice::from(0u8);
        for k in &self.keys {
            ok |= k.as_slice().ct_eq(token);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }
}

/// The token of `Bearer TOKEN` (the scheme's case ignored, as RFC 9110 says).
fn bearer(h: &[u8]) -> Option<&[u8]> {
    let h = h.trim_ascii();
    if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(h[7..].trim_ascii()).filter(|t| !t.is_empty())
}

/// A key as a client can send it in a header: visible ASCII, no spaces.
fn check_key(k: &str, origin: &str) -> Result<Vec<u8>> {
    if k.is_empty() {
        return Err(Error::Input(format!("{origin}: an API key is empty")));
    }
    if let Some(c) = k.chars().find(|c| !c.is_ascii_graphic()) {
        let what = if c.is_whitespace() {
            "a space or other whitespace".to_string()
        } else {
            format!("the character U+{:04X}", c as u32)
        };
        return Err(Error::Input(format!(
            "{origin}: an API key holds {what}; keys are visible ASCII characters (the key is not shown)"
        )));
    }
    Ok(k.as_bytes().to_vec())
}

/// One key per line; blank lines and lines starting with `#` are skipped.
fn read_key_file(p: &Path) -> Result<Vec<Vec<u8>>> {
    if p.is_dir() {
        return Err(Error::bad_file(p, "is a folder, not a file of API keys"));
    }
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        keys.push(check_key(l, &format!("{}: line {}", p.display(), i + 1))?);
    }
    if keys.is_empty() {
        return Err(Error::bad_file(
            p,
            "holds no API key (one per line; # starts a comment)",
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(keys: &[&str], metrics_public: bool) -> Auth {
        let k: Vec<(String, &str)> = keys.iter().map(|k| (k.to_string(), "--api-key")).collect();
        Auth::new(&k, None, metrics_public).unwrap()
    }

    #[test]
    fn keys_guard_every_route_but_health() {
        let a = auth(&["sk-one", "sk-two"], false);
        assert!(a.enabled());
        assert_eq!(a.check("/health", None), Ok(()));
        assert_eq!(a.check("/v1/models", None), Err(Refusal::Missing));
        assert_eq!(a.check("/metrics", None), Err(Refusal::Missing));
        assert_eq!(a.check("/v1/completions", Some(b"Bearer sk-two")), Ok(()));
        assert_eq!(a.check("/v1/completions", Some(b"bearer  sk-one ")), Ok(()));
        for bad in [
            &b"Bearer sk-on"[..],
            b"Bearer sk-one2",
            b"Bearer ",
            b"Basic sk-one",
            b"sk-one",
        ] {
            let want = if bad.starts_with(b"Bearer sk") {
                Refusal::Invalid
            } else {
                Refusal::Missing
            };
            assert_eq!(a.check("/v1/completions", Some(bad)), Err(want), "{bad:?}");
        }
        let public = auth(&["sk-one"], true);
        assert_eq!(public.check("/metrics", None), Ok(()));
        assert_eq!(public.check("/tokenize", None), Err(Refusal::Missing));
        let open = auth(&[], false);
        assert!(!open.enabled());
        assert_eq!(open.check("/v1/completions", None), Ok(()));
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        for (k, says) in [("", "empty"), ("sk one", "whitespace"), ("sk-é", "U+00E9")] {
            let e = Auth::new(&[(k.to_string(), "INFER_EVAL_API_KEY")], None, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("INFER_EVAL_API_KEY") && e.contains(says), "{e}");
            assert!(k.is_empty() || !e.contains(k), "{e}");
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("keys");
        std::fs::write(&f, "# team keys\n\nsk-a\n  sk-b  \n").unwrap();
        let a = Auth::new(&[], Some(&f), false).unwrap();
        assert_eq!(a.check("/v1/models", Some(b"Bearer sk-b")), Ok(()));
        std::fs::write(&f, "sk-a\nsk secret\n").unwrap();
        let e = Auth::new(&[], Some(&f), false).unwrap_err().to_string();
        assert!(e.contains("keys: line 2") && !e.contains("secret"), "{e}");
        std::fs::write(&f, "# nothing\n").unwrap();
        let e = Auth::new(&[], Some(&f), false).unwrap_err().to_string();
        assert!(e.contains("holds no API key"), "{e}");
        let e = Auth::new(&[], Some(&d.path().join("none")), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none"), "{e}");
    }
}
