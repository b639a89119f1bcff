//! An lm-eval task's documents from local files, as the Hugging Face
//! `datasets` loaders read them: `json` (JSON Lines or a JSON array of
//! objects), `csv` (a header row; a column whose every value is an
//! integer, or a number, is typed as one, as pandas infers it), `parquet`
//! and `arrow` (eval/lmeval/arrow.rs); and a Hub dataset from the datasets
//! cache (eval/lmeval/hfcache.rs).

use super::task::Task;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub type Doc = Map<String, Value>;

/// The formats read from local files (`dataset_path` with `data_files`).
const PACKAGED: [&str; 4] = ["json", "csv", "parquet", "arrow"];

/// Split name -> the files that make it, resolved against `base`; with no
/// `data_files`, a Hub dataset name is looked up in the datasets cache.
pub fn data_files(t: &Task, base: &Path, origin: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let kw = t.dataset_kwargs.clone().unwrap_or_default();
    let Some(df) = kw.get("data_files") else {
        if PACKAGED.contains(&t.dataset_path.as_str()) {
            return Err(Error::bad_file(
                origin,
                format!(
                    "dataset_path '{}' with no dataset_kwargs.data_files: name the files to read",
                    t.dataset_path
                ),
            ));
        }
        let mut splits = vec![(super::task::eval_split(t), true)];
        for s in [&t.validation_split, &t.training_split, &t.fewshot_split]
            .into_iter()
            .flatten()
        {
            splits.push((s.as_str(), false));
        }
        if let Some(s) = t.fewshot_config.as_ref().and_then(|f| f.split.as_deref()) {
            splits.push((s, false));
        }
        return super::hfcache::data_files(t, &splits, origin);
    };
    let list = |v: &Value, key: &str| -> Result<Vec<PathBuf>> {
        let names: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str().ok_or_else(|| {
                        Error::bad_file(origin, format!("key '{key}': expected file names"))
                    })
                })
                .collect::<Result<_>>()?,
            _ => {
                return Err(Error::bad_file(
                    origin,
                    format!("key '{key}': expected a file name or a list of them"),
                ))
            }
        };
        Ok(names.iter().map(|n| base.join(n)).collect())
    };
    let mut out = BTreeMap::new();
    match df {
        Value::Object(m) => {
            for (split, v) in m {
                out.insert(
                    split.clone(),
                    list(v, &format!("dataset_kwargs.data_files.{split}"))?,
                );
            }
        }
        // Without split names, `datasets` calls it all "train".
        other => {
            out.insert(
                "train".to_string(),
                list(other, "dataset_kwargs.data_files")?,
            );
        }
    }
    for files in out.values() {
        for f in files {
            if !f.is_file() {
                return Err(Error::bad_file(
                    origin,
                    format!("data file {} does not exist", f.display()),
                ));
            }
        }
    }
    Ok(out)
}

/// Read one file as `dataset_path` names it (json, csv, parquet, arrow: an
/// Arrow IPC stream), or, for a Hub dataset name (its files came from the
/// datasets cache), as the file's extension says.
pub fn read_file(dataset_path: &str, path: &Path, bytes: &[u8]) -> Result<Vec<Doc>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let format = if PACKAGED.contains(&dataset_path) {
        dataset_path
    } else {
        match ext {
            "jsonl" => "json",
            other => other,
        }
    };
    match format {
        "parquet" => return super::arrow::read_parquet(path, bytes),
        "arrow" => return super::arrow::read_ipc_stream(path, bytes),
        _ => {}
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::bad_file(path, format!("not valid UTF-8 (byte {})", e.valid_up_to()))
    })?;
    match format {
        "json" => read_json(path, text),
        "csv" => read_csv(path, text),
        other => Err(Error::bad_file(
            path,
            format!("dataset_path '{dataset_path}' ({other}): infer-eval reads json, csv, parquet and arrow data files"),
        )),
    }
}

fn read_json(path: &Path, text: &str) -> Result<Vec<Doc>> {
    let t = text.trim_start();
    if t.starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(t)
            .map_err(|e| Error::bad_file(path, format!("invalid JSON: {e}")))?;
        return v
            .into_iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Object(m) => Ok(m),
                _ => Err(Error::bad_file(
                    path,
                    format!("item {i} is not a JSON object"),
                )),
            })
            .collect();
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => out.push(m),
            Ok(_) => {
                return Err(Error::bad_file(
                    path,
                    format!("line {}: not a JSON object", n + 1),
                ))
            }
            Err(e) => {
                return Err(Error::bad_file(
                    path,
                    format!("line {}: invalid JSON: {e}", n + 1),
                ))
            }
        }
    }
    Ok(out)
}

fn read_csv(path: &Path, text: &str) -> Result<Vec<Doc>> {
    let mut rd = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let bad = |e: csv::Error| Error::bad_file(path, format!("CSV: {e}"));
    let header: Vec<String> = rd
        .headers()
        .map_err(bad)?
        .iter()
        .map(String::from)
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in rd.records() {
        let r = r.map_err(bad)?;
        rows.push(r.iter().map(String::from).collect());
    }
    // Per column: int if every non-empty value is one, else float, else text.
    let kinds: Vec<u8> = (0..header.len())
        .map(|c| {
            let vals = rows.iter().map(|r| r[c].as_str()).filter(|v| !v.is_empty());
            if vals.clone().all(|v| v.parse::<i64>().is_ok()) {
                0
            } else if vals.clone().all(|v| v.parse::<f64>().is_ok()) {
                1
            } else {
                2
            }
        })
        .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            header
                .iter()
                .zip(r)
                .zip(&kinds)
                .map(|((h, v), k)| {
                    let val = match (k, v.is_empty()) {
                        (0 | 1, true) => Value::Null,
                        (0, false) => Value::from(v.parse::<i64>().unwrap()),
                        (1, false) => serde_json::Number::from_f64(v.parse::<f64>().unwrap())
                            .map(Value::Number)
                            .unwrap_or(Value::Null),
                        _ => Value::String(v),
                    };
                    (h.clone(), val)
                })
                .collect()
        })
        .collect())
}

/// Give every document of a split every column (absent ones null), as a
/// `datasets` table has.
pub fn unify(docs: &mut [Doc]) {
    let keys: std::collections::BTreeSet<String> =
        docs.iter().flat_map(|d| d.keys().cloned()).collect();
    for d in docs {
        for k in &keys {
            d.entry(k.clone()).or_insert(Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_typed_as_pandas_would() {
        let d = read_csv(Path::new("x.csv"), "q,label,w\nhi,1,0.5\n\"a, b\",2,\n").unwrap();
        assert_eq!(d[0]["label"], Value::from(1));
        assert_eq!(d[1]["q"], Value::from("a, b"));
        assert_eq!(d[0]["w"], Value::from(0.5));
        assert_eq!(d[1]["w"], Value::Null);
    }

    #[test]
    fn json_array_and_lines() {
        let a = read_json(Path::new("a.json"), r#"[{"x": 1}, {"x": 2}]"#).unwrap();
        let b = read_json(Path::new("b.jsonl"), "{\"x\": 1}\n\n{\"x\": 2}\n").unwrap();
        assert_eq!(a, b);
        let e = read_json(Path::new("c.jsonl"), "{\"x\": 1}\n[1]\n").unwrap_err();
        assert!(e.to_string().contains("c.jsonl: line 2"), "{e}");
    }
}
