//! A JSON tree as flat `a.b.c = value` pairs (MLflow params and tags).

use serde_json::Value;

pub type Flat = Vec<(String, String)>;

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

fn walk(prefix: &str, v: &Value, out: &mut Flat) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| walk(&key(k), x, out)),
        // A list of scalars is one value; a list of objects, one key per index.
        Value::Array(a) => match a.iter().map(scalar).collect::<Option<Vec<_>>>() {
            Some(items) => out.push((prefix.to_string(), items.join(", "))),
            None => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(&key(&i.to_string()), x, out)),
        },
        other => out.push((prefix.to_string(), scalar(other).unwrap_or_default())),
    }
}

/// Leaves in key order of the tree (objects are sorted maps).
pub fn flatten(v: &Value) -> Flat {
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_objects_and_lists_flatten() {
        let v = serde_json::json!({"run": {"threads": null, "limit": 2}, "tags": ["a", "b"],
                                   "ds": [{"name": "x"}, {"name": "y"}], "name": "smoke"});
        let f = super::flatten(&v);
        let get = |k: &str| f.iter().find(|(a, _)| a == k).map(|(_, b)| b.as_str());
        assert_eq!(get("run.threads"), Some("null"));
        assert_eq!(get("run.limit"), Some("2"));
        assert_eq!(get("tags"), Some("a, b"));
        assert_eq!(get("ds.1.name"), Some("y"));
        assert_eq!(get("name"), Some("smoke"));
    }
}
