//! An lm-evaluation-harness task file (YAML): the commonly used subset,
//! read with its `include`s (the including file's keys win), typed, and
//! refused with the file and key where it asks for what is not supported.

use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Keys this reader understands (the rest of a task file is refused by name,
/// except the informational keys in `IGNORED`).
const KNOWN: &[&str] = &[
    "task",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "output_type",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "description",
    "target_delimiter",
    "fewshot_delimiter",
    "num_fewshot",
    "fewshot_config",
    "generation_kwargs",
    "metric_list",
    "filter_list",
];
/// Keys that do not change what is computed.
const IGNORED: &[&str] = &[
    "tag",
    "group",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "task_alias",
    "dataset_revision",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    MultipleChoice,
    GenerateUntil,
    Loglikelihood,
    LoglikelihoodRolling,
}

impl OutputType {
    /// The name a task file gives it.
    pub fn name(self) -> &'static str {
        match self {
            OutputType::MultipleChoice => "multiple_choice",
            OutputType::GenerateUntil => "generate_until",
            OutputType::Loglikelihood => "loglikelihood",
            OutputType::LoglikelihoodRolling => "loglikelihood_rolling",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FewshotConfig {
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub metric: String,
    #[serde(default)]
    pub aggregation: Option<String>,
    #[serde(default)]
    pub higher_is_better: Option<bool>,
    #[serde(default)]
    pub ignore_case: bool,
    #[serde(default)]
    pub ignore_punctuation: bool,
    #[serde(default)]
    pub ignore_numbers: bool,
    #[serde(default)]
    pub regexes_to_ignore: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FilterStep {
    pub function: String,
    #[serde(default)]
    pub regex_pattern: Option<String>,
    #[serde(default)]
    pub group_select: Option<i64>,
    #[serde(default)]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub name: String,
    pub filter: Vec<FilterStep>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GenerationKwargs {
    #[serde(default)]
    pub until: Option<Value>,
    #[serde(default)]
    pub max_gen_toks: Option<usize>,
    /// Read and ignored, as `local-completions` ignores it (it pops it from
    /// the request): `temperature` alone decides whether it samples.
    #[serde(default)]
    pub do_sample: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Sent to the server as they are (`local-completions` passes the
    /// remaining generation_kwargs through).
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub min_p: Option<f64>,
}

/// The typed task (after includes).
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub task: String,
    pub dataset_path: String,
    #[serde(default)]
    pub dataset_name: Option<String>,
    #[serde(default)]
    pub dataset_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    pub training_split: Option<String>,
    #[serde(default)]
    pub validation_split: Option<String>,
    #[serde(default)]
    pub test_split: Option<String>,
    #[serde(default)]
    pub fewshot_split: Option<String>,
    #[serde(default = "generate_until")]
    pub output_type: OutputType,
    #[serde(default)]
    pub doc_to_text: Option<Value>,
    #[serde(default)]
    pub doc_to_target: Option<Value>,
    #[serde(default)]
    pub doc_to_choice: Option<Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "space")]
    pub target_delimiter: String,
    #[serde(default = "blank_line")]
    pub fewshot_delimiter: String,
    #[serde(default)]
    pub num_fewshot: Option<usize>,
    #[serde(default)]
    pub fewshot_config: Option<FewshotConfig>,
    #[serde(default)]
    pub generation_kwargs: Option<GenerationKwargs>,
    #[serde(default)]
    pub metric_list: Vec<Metric>,
    #[serde(default)]
    pub filter_list: Vec<Filter>,
}

fn generate_until() -> OutputType {
    OutputType::GenerateUntil
}
fn space() -> String {
    " ".into()
}
fn blank_line() -> String {
    "\n\n".into()
}

/// A task file as read: the typed task and every file it was built from
/// (itself first, then its includes).
pub struct Loaded {
    pub task: Task,
    pub files: Vec<PathBuf>,
}

fn read_map(path: &Path) -> Result<Map<String, Value>> {
    let text = crate::fsio::read_regular_text(path, crate::formats::yaml::MAX_BYTES as u64)?;
    if let Some(line) = text
        .lines()
        .position(|l| l.contains("!function"))
        .map(|n| n + 1)
    {
        return Err(Error::bad_file(
            path,
            format!("line {line}: `!function` (Python code in the task) is not supported; write the field as a Jinja template"),
        ));
    }
    let v: Value = crate::formats::yaml::parse(path, &text)?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::bad_file(path, "a task file must be a YAML mapping")),
    }
}

/// Read `path` and its `include` chain (paths relative to the including
/// file), checked as a task file; `lmeval::load_task` also checks what
/// generation needs of it.
pub(super) fn read(path: &Path) -> Result<Loaded> {
    let mut files = Vec::new();
    let merged = load_map(path, &mut files, 0)?;
    for k in merged.keys() {
        if !KNOWN.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()) {
            return Err(Error::bad_file(
                path,
                format!(
                    "key '{k}' is not supported by infer-eval's lm-eval task reader (supported: {})",
                    KNOWN.join(", ")
                ),
            ));
        }
    }
    let mut m = merged;
    m.retain(|k, _| KNOWN.contains(&k.as_str()));
    let task: Task = serde_path_to_error::deserialize(Value::Object(m))
        .map_err(|e| Error::bad_file(path, format!("key '{}': {}", e.path(), e.inner())))?;
    validate(&task).map_err(|m| Error::bad_file(path, m))?;
    Ok(Loaded { task, files })
}

fn load_map(path: &Path, files: &mut Vec<PathBuf>, depth: usize) -> Result<Map<String, Value>> {
    if depth > 8 {
        return Err(Error::bad_file(
            path,
            "`include` nests more than 8 deep (a cycle?)",
        ));
    }
    files.push(path.to_path_buf());
    let mut m = read_map(path)?;
    let Some(inc) = m.remove("include") else {
        return Ok(m);
    };
    let Value::String(inc) = inc else {
        return Err(Error::bad_file(path, "key 'include': expected a file name"));
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&inc);
    if !base_path.exists() {
        return Err(Error::bad_file(
            path,
            format!("key 'include': {} does not exist", base_path.display()),
        ));
    }
    let mut base = load_map(&base_path, files, depth + 1)?;
    for (k, v) in m {
        base.insert(k, v);
    }
    Ok(base)
}

fn validate(t: &Task) -> std::result::Result<(), String> {
    if t.test_split.is_none() && t.validation_split.is_none() {
        return Err("needs 'test_split' or 'validation_split' (the documents to evaluate)".into());
    }
    match t.output_type {
        OutputType::MultipleChoice if t.doc_to_choice.is_none() => {
            return Err("key 'doc_to_choice': multiple_choice needs the choices".into())
        }
        OutputType::LoglikelihoodRolling => {}
        _ if t.doc_to_text.is_none() => {
            return Err("key 'doc_to_text': needed for this output_type".into())
        }
        _ => {}
    }
    if t.doc_to_target.is_none() {
        return Err("key 'doc_to_target': needed (the answer, or the text to score)".into());
    }
    if let Some(fc) = &t.fewshot_config {
        if let Some(s) = fc.sampler.as_deref() {
            if s != "default" && s != "first_n" {
                return Err(format!(
                    "key 'fewshot_config.sampler': '{s}' is not supported (default, first_n)"
                ));
            }
        }
    }
    let allowed: &[&str] = match t.output_type {
        OutputType::MultipleChoice => &["acc", "acc_norm"],
        OutputType::GenerateUntil => &["exact_match"],
        OutputType::Loglikelihood => &["acc", "perplexity"],
        OutputType::LoglikelihoodRolling => {
            &["word_perplexity", "byte_perplexity", "bits_per_byte"]
        }
    };
    for (i, m) in t.metric_list.iter().enumerate() {
        if !allowed.contains(&m.metric.as_str()) {
            return Err(format!(
                "key 'metric_list.{i}.metric': '{}' is not supported for this output_type (supported: {})",
                m.metric,
                allowed.join(", ")
            ));
        }
        if let Some(a) = m.aggregation.as_deref() {
            if !matches!(
                a,
                "mean" | "perplexity" | "weighted_perplexity" | "bits_per_byte"
            ) {
                return Err(format!(
                    "key 'metric_list.{i}.aggregation': '{a}' is not supported"
                ));
            }
        }
    }
    let mut names = Vec::new();
    for (i, f) in t.filter_list.iter().enumerate() {
        if names.contains(&&f.name) {
            return Err(format!(
                "key 'filter_list.{i}.name': '{}' names two pipelines",
                f.name
            ));
        }
        names.push(&f.name);
    }
    if !t.filter_list.is_empty() && t.output_type != OutputType::GenerateUntil {
        return Err("key 'filter_list': filters apply to generate_until tasks only here".into());
    }
    Ok(())
}

/// The `task:` name a file declares on a top-level line, read without
/// parsing the file (task lookup reads every file under the include paths).
fn declared_name(text: &str) -> Option<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().find_map(|l| {
        let v = l.strip_prefix("task:")?.trim();
        let v = v.split(" #").next().unwrap_or(v).trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Find the task named `name` among the `.yaml` files under `dirs`. Only a
/// file that declares the name is parsed; two that do are an error naming both.
pub fn find_by_name(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    let mut seen = Vec::new();
    let mut found: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let mut stack = vec![d.clone()];
        while let Some(dir) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let Ok(text) =
                        crate::fsio::read_regular_text(&p, crate::formats::yaml::MAX_BYTES as u64)
                    else {
                        continue;
                    };
                    let Some(t) = declared_name(&text) else {
                        continue;
                    };
                    if t == name {
                        // Parsed to be sure it is a task file that says so.
                        match read_map(&p)?.get("task") {
                            Some(Value::String(t)) if t == name => found.push(p),
                            _ => {}
                        }
                    } else {
                        seen.push(t);
                    }
                }
            }
        }
    }
    match found.len() {
        1 => return Ok(found.pop().expect("one")),
        0 => {}
        _ => {
            return Err(Error::Input(format!(
                "lm-eval task '{name}' is defined by {} files: {} (remove one, or keep the include paths apart)",
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )))
        }
    }
    seen.sort();
    Err(Error::Input(format!(
        "no lm-eval task '{name}' in the include paths {dirs:?} (tasks there: {})",
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    )))
}
/// The split evaluated: `test_split`, else `validation_split`.
pub fn eval_split(t: &Task) -> &str {
    t.test_split
        .as_deref()
        .or(t.validation_split.as_deref())
        .expect("validated")
}
