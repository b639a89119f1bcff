//! YAML as infer-eval reads it (configs, lm-eval task files, DVC files),
//! bounded before it is parsed: a file over `MAX_BYTES` or nested deeper
//! than `MAX_DEPTH` is refused at once, instead of after a parser has
//! walked (or recursed through) it. A leading UTF-8 byte-order mark is
//! accepted.

use crate::error::{Error, Result};
use std::path::Path;

/// Deepest nesting accepted (a config is about 4 deep, lm-eval tasks 6).
pub const MAX_DEPTH: usize = 64;
/// Largest YAML file accepted.
pub const MAX_BYTES: usize = 16 << 20;

/// An upper estimate of the nesting depth of a YAML text, in one pass:
/// block indentation levels, compact `- - ` entries and open flow brackets
/// (outside quotes) on each line. It may count deeper than a parser would
/// (brackets in a block scalar), never shallower for block and flow nesting.
pub fn nesting_depth(text: &str) -> usize {
    let (mut flow, mut max) = (0usize, 0usize);
    let mut indents: Vec<usize> = Vec::new();
    for line in text.lines() {
        let body = line.trim_start_matches([' ', '\t']);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if flow == 0 {
            let ind = line.len() - body.len();
            while indents.last().is_some_and(|&t| t >= ind) {
                indents.pop();
            }
            indents.push(ind);
        }
        let mut rest = body;
        let mut dashes = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        let base = indents.len() + dashes;
        max = max.max(base + flow);
        let mut quote: Option<char> = None;
        // A quote opens a quoted scalar only where a scalar starts.
        let mut prev = ' ';
        for c in rest.chars() {
            let starts = matches!(prev, ' ' | '[' | '{' | ',' | ':');
            prev = c;
            match (quote, c) {
                (None, '\'' | '"') if starts => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '[' | '{') => {
                    flow += 1;
                    max = max.max(base + flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    max
}

/// Parse `text` (read from `path`) as YAML into `T`, within the bounds. A
/// NaN or infinite number (`.nan`, `.inf`) is refused naming its key: read
/// into JSON values it would become null, and an optional setting would
/// silently take its default.
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check(text).map_err(|m| Error::bad_file(path, m))?;
    let v: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| Error::bad_file(path, format!("invalid YAML: {e}")))?;
    if let Some(key) = non_finite(&v, "") {
        return Err(Error::bad_file(
            path,
            format!("key '{key}': not a finite number (NaN and infinities are refused)"),
        ));
    }
    serde_norway::from_value(v).map_err(|e| Error::bad_file(path, format!("invalid YAML: {e}")))
}

/// The path (`a.b.0`) of the first NaN or infinite number in `v`.
pub fn non_finite(v: &serde_norway::Value, at: &str) -> Option<String> {
    use serde_norway::Value as V;
    let join = |k: String| {
        if at.is_empty() {
            k
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        V::Number(n) => n.as_f64().filter(|f| !f.is_finite()).map(|_| {
            if at.is_empty() {
                ".".into()
            } else {
                at.to_string()
            }
        }),
        V::Sequence(s) => s
            .iter()
            .enumerate()
            .find_map(|(i, x)| non_finite(x, &join(i.to_string()))),
        V::Mapping(m) => m.iter().find_map(|(k, x)| {
            let k = match k {
                V::String(s) => s.clone(),
                other => serde_norway::to_string(other)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
            };
            non_finite(x, &join(k))
        }),
        V::Tagged(t) => non_finite(&t.value, at),
        _ => None,
    }
}

/// Whether `text` is within the bounds; the error says which it is over.
pub fn check(text: &str) -> std::result::Result<(), String> {
    if text.len() > MAX_BYTES {
        return Err(format!(
            "{} bytes of YAML; at most {MAX_BYTES} are read",
            text.len()
        ));
    }
    let d = nesting_depth(text);
    if d > MAX_DEPTH {
        return Err(format!(
            "YAML nested {d} deep; at most {MAX_DEPTH} levels are read"
        ));
    }
    Ok(())
}

/// Read a YAML file (a regular file, within the bounds) and parse it.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    parse(
        path,
        &crate::fsio::read_regular_text(path, MAX_BYTES as u64)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_blocks_compact_entries_and_flow() {
        assert_eq!(nesting_depth("a: 1\nb: 2\n"), 1);
        assert_eq!(nesting_depth("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(nesting_depth("- - - x\n"), 4);
        assert_eq!(nesting_depth("a: [[1, 2], {b: 'x[[['}]\n"), 3);
        assert_eq!(nesting_depth("a: \"{{q}}\"\n# [[[[\n"), 1);
        // An apostrophe inside a plain scalar does not hide what follows.
        assert_eq!(nesting_depth("a: [x'y, [[[1]]]]\n"), 5);
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let t = std::time::Instant::now();
        let e = parse::<serde_json::Value>(Path::new("d.yaml"), &deep).unwrap_err();
        assert!(e.to_string().contains("nested 200001 deep"), "{e}");
        assert!(t.elapsed().as_secs_f64() < 5.0);
        let v: serde_json::Value = parse(Path::new("b.yaml"), "\u{feff}a: 1\n").unwrap();
        assert_eq!(v["a"], 1);
        for t in [
            "g:\n  temperature: .nan\n",
            "g: {temperature: -.inf}\n",
            "g:\n  - 1\n  - {temperature: .NaN}\n",
        ] {
            let e = parse::<serde_json::Value>(Path::new("n.yaml"), t)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("'g.") && e.contains("temperature") && e.contains("not a finite number"),
                "{e}"
            );
        }
    }
}
