//! Hydra-style composable configs. An experiment file (configs/experiment/)
//! has a `defaults` list picking one option per group (configs/<group>/); the
//! command line adds `group=option`, `a.b.c=value` (existing keys) and
//! `+a.b=value` (new keys). The resolved config is typed and saved with the run.

use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

mod schema;
mod validate;
pub use schema::*;
use validate::checks;
pub use validate::validate;

/// The outcome of composition.
pub struct Composed {
    pub config: EvalConfig,
    /// The resolved tree, as saved to config.yaml.
    pub tree: Value,
    pub experiment: String,
    pub overrides: Vec<String>,
}

fn read_yaml(path: &Path) -> Result<Value> {
    let v: Value = crate::formats::yaml::read(path)?;
    Ok(if v.is_null() {
        Value::Object(Map::new())
    } else {
        v
    })
}

fn options(dir: &Path) -> String {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.join(", ")
}

fn option_file(config_dir: &Path, group: &str, option: &str) -> Result<PathBuf> {
    let p = config_dir.join(group).join(format!("{option}.yaml"));
    if option.contains('/') || option.contains("..") || !p.is_file() {
        return Err(Error::Input(format!(
            "no option '{option}' in config group '{group}' ({} has: {})",
            config_dir.join(group).display(),
            options(&config_dir.join(group))
        )));
    }
    Ok(p)
}

/// Deserialize `v` as T, naming the file and the key path on error.
fn typed<T: for<'de> Deserialize<'de>>(v: &Value, origin: &str, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix, path.as_str()) {
            ("", p) => p.to_string(),
            (pre, ".") => pre.to_string(),
            (pre, p) => format!("{pre}.{p}"),
        };
        Error::Input(format!(
            "{}: key '{key}': {}",
            crate::error::cut(origin, 160),
            crate::error::cut(&e.inner().to_string(), 300)
        ))
    })
}

fn deep_merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

/// An override's value, read as YAML (`3`, `0.5`, `true`, `null`, `[a, b]`),
/// except where the key already holds a string: then the text is kept as it
/// is, so `model.name=1.0` or a hex digest of only digits stays a string.
/// `null` (or `~`) is null everywhere.
fn parse_value(raw: &str, current: Option<&Value>) -> Value {
    // `null` or `~` unsets an optional key, whatever it holds.
    if matches!(raw.trim(), "null" | "~") {
        return Value::Null;
    }
    if matches!(current, Some(Value::String(_))) {
        return Value::String(raw.to_string());
    }
    // (Too deep or too long to read as YAML: kept as text, which the typed
    // check then names by its key.)
    if crate::formats::yaml::check(raw).is_err() {
        return Value::String(raw.to_string());
    }
    // (A NaN or infinity, which JSON values cannot hold, is kept as text too.)
    match serde_norway::from_str::<serde_norway::Value>(raw) {
        Ok(v) if crate::formats::yaml::non_finite(&v, "").is_none() => {
            serde_norway::from_value::<Value>(v).unwrap_or_else(|_| Value::String(raw.to_string()))
        }
        _ => Value::String(raw.to_string()),
    }
}

/// Set `parts[depth..]` below `node` to the parsed `raw` value. A numeric
/// part indexes a list (`task.datasets.0.sha256`).
fn set_path(
    node: &mut Value,
    parts: &[&str],
    depth: usize,
    add: bool,
    key: &str,
    raw: &str,
) -> Result<()> {
    let here = parts[..depth].join(".");
    let p = parts[depth];
    let last = depth + 1 == parts.len();
    // (Echoed in errors: a long value is cut to a readable length.)
    let shown = crate::error::cut(raw, 120);
    if let Value::Array(items) = node {
        let n = items.len();
        let slot = p
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .ok_or_else(|| Error::Input(format!("override '{key}={shown}': '{here}' is a list of {n}; '{p}' is not an index in it")))?;
        if last {
            *slot = parse_value(raw, Some(slot));
            return Ok(());
        }
        return set_path(slot, parts, depth + 1, add, key, raw);
    }
    let obj = node.as_object_mut().ok_or_else(|| {
        Error::Input(format!(
            "override '{key}={shown}': '{here}' is not a mapping"
        ))
    })?;
    if last {
        return match (obj.contains_key(p), add) {
            (true, true) => Err(Error::Input(format!(
                "override '+{key}={shown}': key '{key}' already exists; drop the '+'"
            ))),
            (false, false) => {
                let mut known: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
                known.sort();
                Err(Error::Input(format!(
                    "override '{key}={shown}': unknown key '{key}' (known here: {}); use '+{key}=...' to add one",
                    known.join(", ")
                )))
            }
            _ => {
                let v = parse_value(raw, obj.get(p));
                obj.insert(p.to_string(), v);
                Ok(())
            }
        };
    }
    if !obj.contains_key(p) {
        if !add {
            return Err(Error::Input(format!(
                "override '{key}={shown}': unknown key '{}'",
                parts[..=depth].join(".")
            )));
        }
        obj.insert(p.to_string(), Value::Object(Map::new()));
    }
    set_path(obj.get_mut(p).unwrap(), parts, depth + 1, add, key, raw)
}

/// Set the existing value at `parts` to the string `raw`.
fn set_string(node: &mut Value, parts: &[&str], raw: &str) {
    let mut cur = node;
    for p in parts {
        let next = match cur {
            Value::Object(m) => m.get_mut(*p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    *cur = Value::String(raw.to_string());
}

/// Compose experiment + groups + overrides into a typed config.
pub fn compose(config_dir: &Path, args: &[String]) -> Result<Composed> {
    compose_for(config_dir, args, true)
}

/// `compose`; with `own_task` false the config's task is about to be
/// replaced (`eval --lm-eval-task`), so checks that depend on the task
/// wait for the caller's `validate` of the config with its new task.
pub fn compose_for(config_dir: &Path, args: &[String], own_task: bool) -> Result<Composed> {
    let mut experiment = "default".to_string();
    let mut group_choice: Vec<(String, String)> = Vec::new();
    let mut dotted: Vec<(bool, String, String)> = Vec::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| {
            Error::Input(format!(
                "override '{}' is not of the form key=value",
                crate::error::cut(a, 120)
            ))
        })?;
        let (add, k) = match k.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, k),
        };
        if k.is_empty() || k.split('.').any(|p| p.is_empty()) {
            return Err(Error::Input(format!(
                "override '{}': empty key",
                crate::error::cut(a, 120)
            )));
        }
        if k == "experiment" {
            experiment = v.to_string();
        } else if GROUPS.contains(&k) && !add {
            group_choice.push((k.to_string(), v.to_string()));
        } else {
            dotted.push((add, k.to_string(), v.to_string()));
        }
    }
    let exp_path = option_file(config_dir, "experiment", &experiment)?;
    let exp_origin = exp_path.display().to_string();
    let mut exp = read_yaml(&exp_path)?;
    let defaults = match exp.as_object_mut().and_then(|m| m.remove("defaults")) {
        Some(Value::Array(d)) => d,
        Some(_) => {
            return Err(Error::Input(format!(
                "{exp_origin}: key 'defaults': expected a list of group: option"
            )))
        }
        None => Vec::new(),
    };
    let mut choices: Vec<(String, String)> = Vec::new();
    for d in defaults {
        match d {
            Value::Object(m) if m.len() == 1 => {
                let (g, o) = m.into_iter().next().unwrap();
                if !GROUPS.contains(&g.as_str()) {
                    return Err(Error::Input(format!(
                        "{exp_origin}: key 'defaults.{g}': unknown group (groups: {})",
                        GROUPS.join(", ")
                    )));
                }
                let o = o.as_str().map(String::from).ok_or_else(|| {
                    Error::Input(format!(
                        "{exp_origin}: key 'defaults.{g}': option must be a name"
                    ))
                })?;
                choices.push((g, o));
            }
            Value::String(s) if s == "_self_" => {}
            other => {
                return Err(Error::Input(format!(
                    "{exp_origin}: key 'defaults': entry {other} is not 'group: option'"
                )))
            }
        }
    }
    for (g, o) in group_choice {
        match choices.iter_mut().find(|(cg, _)| *cg == g) {
            Some(c) => c.1 = o,
            None => choices.push((g, o)),
        }
    }
    let mut tree = Value::Object(Map::new());
    for (g, o) in &choices {
        let p = option_file(config_dir, g, o)?;
        let v = read_yaml(&p)?;
        // Check each group file on its own, so an error names its file.
        let origin = p.display().to_string();
        match g.as_str() {
            "model" => typed::<ModelConfig>(&v, &origin, g).map(|_| ())?,
            "sampling" => typed::<crate::sampling::SamplingParams>(&v, &origin, g).map(|_| ())?,
            "task" => typed::<TaskConfig>(&v, &origin, g).map(|_| ())?,
            _ => typed::<PromptConfig>(&v, &origin, g).map(|_| ())?,
        }
        tree.as_object_mut().unwrap().insert(g.clone(), v);
    }
    // The experiment's own keys sit on top of the group options.
    deep_merge(&mut tree, exp);
    let mut applied = Vec::new();
    for (add, key, raw) in &dotted {
        let parts: Vec<&str> = key.split('.').collect();
        set_path(&mut tree, &parts, 0, *add, key, raw)?;
        applied.push(format!("{}{key}={raw}", if *add { "+" } else { "" }));
    }
    let mut all_overrides: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("experiment="))
        .cloned()
        .collect();
    all_overrides.retain(|a| {
        applied.contains(a) || a.split_once('=').is_some_and(|(k, _)| GROUPS.contains(&k))
    });
    let origin = format!("{exp_origin} with overrides [{}]", args.join(" "));
    // A new key (+a.b=1.0) has no current value to go by: where the schema
    // wants a string there, the override's text is taken as one.
    for _ in 0..=dotted.len() {
        let path = match serde_path_to_error::deserialize::<_, EvalConfig>(tree.clone()) {
            Ok(_) => break,
            Err(e) if e.inner().to_string().contains("expected a string") => {
                // serde's "task.datasets[0].pattern" is our "task.datasets.0.pattern".
                e.path().to_string().replace('[', ".").replace(']', "")
            }
            Err(_) => break,
        };
        let Some((_, key, raw)) = dotted.iter().rev().find(|(_, k, _)| *k == path) else {
            break;
        };
        let parts: Vec<&str> = key.split('.').collect();
        set_string(&mut tree, &parts, raw);
    }
    let config: EvalConfig = typed(&tree, &origin, "")?;
    checks(&config, own_task).map_err(|m| Error::Input(format!("{origin}: {m}")))?;
    // The few-shot defaults written out, so the recorded config pins them.
    if let (Some(f), Some(task)) = (
        &config.task.fewshot,
        tree.get_mut("task").and_then(|t| t.as_object_mut()),
    ) {
        task.insert(
            "fewshot".into(),
            serde_json::to_value(f).expect("serializes"),
        );
    }
    Ok(Composed {
        config,
        tree,
        experiment,
        overrides: all_overrides,
    })
}

/// The resolved tree from a saved config.yaml.
pub fn load_resolved(path: &Path) -> Result<(EvalConfig, Value)> {
    let tree = read_yaml(path)?;
    let config: EvalConfig = typed(&tree, &path.display().to_string(), "")?;
    validate(&config).map_err(|m| Error::bad_file(path, m))?;
    Ok((config, tree))
}

pub fn to_yaml(v: &Value) -> String {
    serde_norway::to_string(v).expect("config serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, s: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("experiment/exp.yaml", "defaults:\n  - model: a\n  - sampling: greedy\n  - task: t\n  - prompt: p\nname: exp\nrun:\n  batch_size: 2\n");
        w("model/a.yaml", "name: model-a\n");
        w("model/b.yaml", "name: model-b\n");
        w("sampling/greedy.yaml", "temperature: 0.0\ntop_k: 0\ntop_p: 1.0\nmin_p: 0.0\nrepetition_penalty: 1.0\nseed: 42\nmax_tokens: 8\n");
        w("task/t.yaml", "name: t\ndatasets:\n  - name: d\n    path: data/d.jsonl\n    sha256: abc\n    kind: generate\n    scorer: contains\n");
        w("prompt/p.yaml", "name: p\ngenerate: {path: g.txt, sha256: x}\nmultiple_choice: {path: m.txt, sha256: y}\n");
        w("sampling/broken.yaml", "temperature: 0.0\ntop_k: 0\ntop_p: 1.0\nmin_p: 0.0\nrepetition_penalty: 1.0\nseed: 1\nmax_tokens: 8\nbogus: 1\n");
        d
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn composes_defaults_and_every_override_form() {
        let d = tree();
        let c = compose(d.path(), &args(&["experiment=exp"])).unwrap();
        assert_eq!(c.config.model.name, "model-a");
        assert_eq!(c.config.run.batch_size, 2);
        assert_eq!(c.config.run.prefill_chunk, 512);
        let c = compose(
            d.path(),
            &args(&[
                "experiment=exp",
                "model=b",
                "sampling.seed=7",
                "sampling.temperature=0.5",
                "+run.limit=3",
                "run.batch_size=4",
                "task.datasets.0.sha256=def",
            ]),
        )
        .unwrap();
        assert_eq!(c.config.model.name, "model-b");
        assert_eq!(c.config.sampling.seed, 7);
        assert_eq!(c.config.sampling.temperature, 0.5);
        assert_eq!(c.config.run.limit, Some(3));
        assert_eq!(c.config.run.batch_size, 4);
        assert_eq!(c.config.task.datasets[0].sha256, "def");
        assert_eq!(c.overrides.len(), 6);
        assert_eq!(c.tree["sampling"]["seed"], 7);
    }

    /// Finding 18 of issue 11: an override value that YAML reads as a
    /// number stays the text it was where the schema says string.
    #[test]
    fn string_keys_keep_the_override_text() {
        let d = tree();
        let c = compose(
            d.path(),
            &args(&[
                "experiment=exp",
                "model.name=1.0",
                "task.datasets.0.sha256=0123",
                "+task.datasets.0.pattern=1e3",
                "name=007",
            ]),
        )
        .unwrap();
        assert_eq!(c.config.model.name, "1.0");
        assert_eq!(c.config.task.datasets[0].sha256, "0123");
        assert_eq!(c.config.task.datasets[0].pattern.as_deref(), Some("1e3"));
        assert_eq!(c.config.name, "007");
        let c = compose(
            d.path(),
            &args(&[
                "experiment=exp",
                "+task.datasets.0.pattern=x",
                "task.datasets.0.pattern=null",
            ]),
        )
        .unwrap();
        assert_eq!(c.config.task.datasets[0].pattern, None);
        // Numbers stay numbers where the schema says number.
        let c = compose(d.path(), &args(&["experiment=exp", "sampling.top_p=0.5"])).unwrap();
        assert_eq!(c.config.sampling.top_p, 0.5);
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let d = tree();
        let e = |a: &[&str]| {
            compose(d.path(), &args(a))
                .err()
                .expect("should fail")
                .to_string()
        };
        let m = e(&["experiment=exp", "sampling.sede=7"]);
        assert!(
            m.contains("unknown key 'sampling.sede'") && m.contains("seed"),
            "{m}"
        );
        let m = e(&["experiment=exp", "sampling.temperature=hot"]);
        assert!(
            m.contains("sampling.temperature") && m.contains("exp.yaml"),
            "{m}"
        );
        let m = e(&["experiment=exp", "model=nope"]);
        assert!(m.contains("no option 'nope'") && m.contains("a, b"), "{m}");
        let m = e(&["experiment=exp", "sampling=broken"]);
        assert!(
            m.contains("broken.yaml") && m.contains("sampling.bogus"),
            "{m}"
        );
        let m = e(&["experiment=exp", "+sampling.seed=1"]);
        assert!(m.contains("already exists"), "{m}");
        let m = e(&["experiment=missing"]);
        assert!(
            m.contains("no option 'missing' in config group 'experiment'"),
            "{m}"
        );
        let m = e(&["experiment=exp", "novalue"]);
        assert!(m.contains("key=value"), "{m}");
        let m = e(&["experiment=exp", "task.datasets.3.name=x"]);
        assert!(m.contains("list of 1") && m.contains("'3'"), "{m}");
        let m = e(&["experiment=exp", "run.batch_size=0"]);
        assert!(m.contains("batch_size"), "{m}");
    }
}
