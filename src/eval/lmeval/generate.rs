//! lm-eval's `generate_until`, as lm-evaluation-harness 0.4 runs it through
//! an OpenAI-compatible server: generation settings from the task
//! (`generation_kwargs.until`, `max_gen_toks`; greedy), the response cut at
//! the first stop string, then each `filter_list` pipeline (`regex`,
//! `take_first`, `lowercase`, `uppercase`, `remove_whitespace`) and
//! `exact_match` with its options, per pipeline.

use super::render::Target;
use super::task::{Filter, Metric, OutputType, Task};
use crate::error::{Error, Result};
use crate::eval::sample::Filtered;

/// lm-eval's `DEFAULT_MAX_GEN_TOKS` (and `local-completions`'s default).
pub const DEFAULT_MAX_GEN_TOKS: usize = 256;

/// Tokens one `local-completions` loglikelihood_rolling window scores:
/// `get_rolling_token_windows(max_seq_len = self.max_length - 1)` with
/// `self.max_length = max_length - 1`; none below max_length 3.
pub fn rolling_window(max_length: usize) -> Option<usize> {
    max_length.checked_sub(2).filter(|&w| w >= 1)
}

/// lm-eval's default regex filter pattern (GSM8K's answer line).
const DEFAULT_PATTERN: &str = r"#### (\-?[0-9\.\,]+)";

#[derive(Debug, Clone)]
enum Step {
    Regex {
        re: regex::Regex,
        group_select: i64,
        fallback: String,
    },
    TakeFirst,
    Lowercase,
    Uppercase,
    RemoveWhitespace,
}

/// A named filter pipeline (`filter_list` entry; "none" is lm-eval's default).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    steps: Vec<Step>,
}

/// `exact_match`'s options (`metric_list`).
#[derive(Debug, Clone, Default)]
pub struct ExactMatch {
    ignore_case: bool,
    ignore_punctuation: bool,
    ignore_numbers: bool,
    regexes_to_ignore: Vec<regex::Regex>,
}

/// A `generate_until` task's settings and scoring.
#[derive(Debug, Clone)]
pub struct GenTask {
    /// `until`, then the tokenizer's EOS text when it is not among them (as
    /// lm-eval's `handle_stop_sequences` sends them).
    pub stops: Vec<String>,
    pub max_gen_toks: usize,
    /// What `local-completions` asks the server for.
    sampling: crate::sampling::SamplingParams,
    pub pipelines: Vec<Pipeline>,
    metric: ExactMatch,
    /// The first document's target was a list: every target is a list of
    /// acceptable answers (lm-eval's `multiple_target`).
    pub multiple_target: bool,
}

/// Python's `str.strip()`: Unicode whitespace and the separators \x1c-\x1f.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

fn regex(pattern: &str, what: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| {
        // The regex crate's message draws a caret under the pattern; its last line says what.
        let e = e.to_string();
        let why = e.lines().last().unwrap_or("").trim_start_matches("error: ");
        format!("{what}: {pattern:?} is not a regular expression this reader supports: {why}")
    })
}

impl Pipeline {
    pub(super) fn from_filter(i: usize, f: &Filter) -> std::result::Result<Self, String> {
        let mut steps = Vec::new();
        for (j, s) in f.filter.iter().enumerate() {
            let what = format!("filter_list.{i}.filter.{j}");
            steps.push(match s.function.as_str() {
                "regex" => Step::Regex {
                    re: regex(s.regex_pattern.as_deref().unwrap_or(DEFAULT_PATTERN), &format!("key '{what}.regex_pattern'"))?,
                    group_select: s.group_select.unwrap_or(0),
                    fallback: s.fallback.clone().unwrap_or_else(|| "[invalid]".into()),
                },
                "take_first" => Step::TakeFirst,
                "lowercase" => Step::Lowercase,
                "uppercase" => Step::Uppercase,
                "remove_whitespace" => Step::RemoveWhitespace,
                other => {
                    return Err(format!(
                        "key '{what}.function': '{other}' is not supported (regex, take_first, lowercase, uppercase, remove_whitespace)"
                    ))
                }
            });
        }
        Ok(Pipeline {
            name: f.name.clone(),
            steps,
        })
    }

    /// The filtered answer of one response (lm-eval runs a list of one
    /// response per document through the steps; `take_first` unwraps it).
    pub fn apply(&self, response: &str) -> std::result::Result<String, String> {
        let mut r = response.to_string();
        for s in &self.steps {
            r = match s {
                Step::Regex {
                    re,
                    group_select,
                    fallback,
                } => regex_filter(re, *group_select, fallback, &r)?,
                Step::TakeFirst => r,
                Step::Lowercase => r.to_lowercase(),
                Step::Uppercase => r.to_uppercase(),
                Step::RemoveWhitespace => py_strip(&r).to_string(),
            };
        }
        Ok(r)
    }
}

/// lm-eval's `RegexFilter` on one response: Python's `re.findall` (the
/// whole match without groups, group 1 with one, the first non-empty group
/// with several), the `group_select`-th match (negative from the end),
/// stripped; `fallback` when nothing matches.
fn regex_filter(
    re: &regex::Regex,
    group_select: i64,
    fallback: &str,
    resp: &str,
) -> std::result::Result<String, String> {
    let groups = re.captures_len() - 1;
    let found: Vec<Option<String>> = re
        .captures_iter(resp)
        .map(|c| match groups {
            0 => Some(c[0].to_string()),
            1 => Some(c.get(1).map_or("", |m| m.as_str()).to_string()),
            _ => (1..=groups)
                .filter_map(|g| c.get(g))
                .map(|m| m.as_str())
                .find(|s| !s.is_empty())
                .map(String::from),
        })
        .collect();
    if found.is_empty() {
        return Ok(fallback.to_string());
    }
    let n = found.len() as i64;
    let at = if group_select < 0 {
        n + group_select
    } else {
        group_select
    };
    if !(0..n).contains(&at) {
        return Err(format!(
            "regex filter {:?}: group_select {group_select} but the response has {n} match(es) (lm-eval raises IndexError here)",
            re.as_str()
        ));
    }
    Ok(match &found[at as usize] {
        Some(m) => py_strip(m).to_string(),
        None => py_strip(fallback).to_string(),
    })
}

impl ExactMatch {
    pub(super) fn from_metric(i: usize, m: &Metric) -> std::result::Result<Self, String> {
        Ok(ExactMatch {
            ignore_case: m.ignore_case,
            ignore_punctuation: m.ignore_punctuation,
            ignore_numbers: m.ignore_numbers,
            regexes_to_ignore: m
                .regexes_to_ignore
                .iter()
                .map(|r| regex(r, &format!("key 'metric_list.{i}.regexes_to_ignore'")))
                .collect::<std::result::Result<_, _>>()?,
        })
    }

    fn normal(&self, s: &str) -> String {
        let mut s = s.to_string();
        for re in &self.regexes_to_ignore {
            s = re.replace_all(&s, "").into_owned();
        }
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.ignore_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        if self.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        // numpy's fixed-width strings drop trailing NULs before comparing.
        s.trim_end_matches('\0').to_string()
    }

    /// lm-eval's `exact_match_hf_evaluate` of one prediction.
    pub fn score(&self, prediction: &str, reference: &str) -> bool {
        self.normal(prediction) == self.normal(reference)
    }
}

impl GenTask {
    /// The settings of a `generate_until` task; `eos` is the EOS token's
    /// text (the remote tokenizer's `eos_token`), `first_target` the first
    /// evaluated document's target.
    pub fn from_task(
        t: &Task,
        eos: Option<&str>,
        first_target: &Target,
    ) -> std::result::Result<Self, String> {
        debug_assert_eq!(t.output_type, OutputType::GenerateUntil);
        let g = t.generation_kwargs.clone().unwrap_or_default();
        let mut stops = until(t)?;
        if let Some(e) = eos.filter(|e| !stops.iter().any(|s| s == e)) {
            stops.push(e.to_string());
        }
        let pipelines = if t.filter_list.is_empty() {
            vec![Pipeline {
                name: "none".into(),
                steps: vec![Step::TakeFirst],
            }]
        } else {
            t.filter_list
                .iter()
                .enumerate()
                .map(|(i, f)| Pipeline::from_filter(i, f))
                .collect::<std::result::Result<_, _>>()?
        };
        let metric = match t
            .metric_list
            .iter()
            .enumerate()
            .find(|(_, m)| m.metric == "exact_match")
        {
            Some((i, m)) => ExactMatch::from_metric(i, m)?,
            None => ExactMatch::default(),
        };
        let max_gen_toks = g.max_gen_toks.unwrap_or(DEFAULT_MAX_GEN_TOKS);
        Ok(GenTask {
            stops,
            max_gen_toks,
            sampling: sampling(&g, max_gen_toks)?,
            pipelines,
            metric,
            multiple_target: matches!(first_target, Target::List(_)),
        })
    }

    /// The answers a document accepts, as lm-eval's `process_results` makes
    /// them from `doc_to_target` (and `doc_to_choice`).
    pub fn golds(
        &self,
        target: &Target,
        choices: Option<&[String]>,
    ) -> std::result::Result<Vec<String>, String> {
        Ok(match (target, choices) {
            (Target::Index(i), Some(c)) => vec![c
                .get(*i)
                .cloned()
                .ok_or_else(|| format!("target index {i} but {} choices", c.len()))?],
            (Target::Text(s), Some(_)) => {
                return Err(format!(
                    "doc_to_choice is set, so the target must be an index, not {s:?}"
                ))
            }
            (Target::List(l), _) if self.multiple_target => l.clone(),
            // Python's list(str): one target per character.
            (Target::Text(s), None) if self.multiple_target => {
                s.chars().map(String::from).collect()
            }
            (Target::Index(i), None) if !self.multiple_target => vec![i.to_string()],
            (Target::Text(s), None) => vec![s.clone()],
            (Target::List(_), _) | (Target::Index(_), None) => {
                return Err(
                    "the target's type (a list or not) differs from the first document's".into(),
                )
            }
        })
    }

    /// Every pipeline's answer and exact_match for `response` (the text
    /// before the first stop string): 1 when any gold matches.
    pub fn score(
        &self,
        response: &str,
        golds: &[String],
    ) -> std::result::Result<Vec<Filtered>, String> {
        self.pipelines
            .iter()
            .map(|p| {
                let answer = p.apply(response)?;
                let hit = golds.iter().any(|g| self.metric.score(&answer, g));
                Ok(Filtered {
                    filter: p.name.clone(),
                    answer,
                    exact_match: hit as u8 as f64,
                })
            })
            .collect()
    }
}

/// `local-completions`' seed (its `seed` model argument's default), sent
/// with every request.
pub const API_SEED: u64 = 1234;

/// The sampling `local-completions` asks `infer-eval serve` for:
/// `temperature` (0, greedy, where absent; `do_sample` is not sent),
/// `top_p`, `top_k` and `min_p` as given, its seed 1234, at most
/// `max_tokens` tokens. Values the server would refuse are refused here.
pub fn sampling(
    g: &super::task::GenerationKwargs,
    max_tokens: usize,
) -> std::result::Result<crate::sampling::SamplingParams, String> {
    let top_k = match g.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => {
            return Err(format!(
                "key 'generation_kwargs.top_k': must be >= 0 (or -1: off), got {k}"
            ))
        }
    };
    let s = crate::sampling::SamplingParams {
        temperature: g.temperature.unwrap_or(0.0) as f32,
        top_k,
        top_p: g.top_p.unwrap_or(1.0) as f32,
        min_p: g.min_p.unwrap_or(0.0) as f32,
        repetition_penalty: 1.0,
        seed: API_SEED,
        max_tokens,
        ..Default::default()
    };
    s.validate()
        .map_err(|m| format!("key 'generation_kwargs': {m}"))?;
    Ok(s)
}

impl GenTask {
    /// What `local-completions` asks for (`sampling`).
    pub fn sampling(&self) -> crate::sampling::SamplingParams {
        self.sampling.clone()
    }

    /// Sampled (temperature > 0): each request's draws are keyed as the
    /// server keys a one-prompt request's, choice "0" (`local-completions`
    /// sends one prompt per request at its default batch size 1).
    pub fn sampled(&self) -> bool {
        self.sampling.temperature > 0.0
    }

    /// sha256 of what decides a generation besides its prompt: the
    /// sampling, the EOS ids and the stop strings (a baseline-store key part).
    pub fn params_hash(&self, eos: &[u32]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"lm-eval generate_until\0");
        h.update(serde_json::to_vec(&self.sampling()).expect("serializes"));
        h.update(serde_json::to_vec(&(eos, &self.stops)).expect("serializes"));
        hex::encode(h.finalize())
    }
}

/// Per pipeline, `exact_match,<filter>` as lm-eval names it: the values
/// of the samples, in order.
pub fn by_filter<'a>(
    rows: impl Iterator<Item = &'a [Filtered]>,
) -> std::collections::BTreeMap<String, Vec<f64>> {
    let mut out: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in rows {
        for f in r {
            out.entry(format!("exact_match,{}", f.filter))
                .or_default()
                .push(f.exact_match);
        }
    }
    out
}

/// `generation_kwargs.until` (a string or a list of them); lm-eval's
/// default is `[fewshot_delimiter]`.
fn until(t: &Task) -> std::result::Result<Vec<String>, String> {
    let Some(u) = t.generation_kwargs.as_ref().and_then(|g| g.until.clone()) else {
        return Ok(vec![t.fewshot_delimiter.clone()]);
    };
    match u {
        serde_json::Value::String(s) => Ok(vec![s]),
        serde_json::Value::Array(a) => a
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!(
                    "key 'generation_kwargs.until': expected strings, got {other}"
                )),
            })
            .collect(),
        other => Err(format!(
            "key 'generation_kwargs.until': expected a string or a list of strings, got {other}"
        )),
    }
}

/// A context's tokens as `local-completions` sends them: the last
/// `max_length - 1 - max_gen_toks` (lm-eval keeps one of `max_length` for
/// generation; Python's `x[-n:]`).
pub fn left_truncate(ids: Vec<u32>, max_gen_toks: usize, max_length: usize) -> Result<Vec<u32>> {
    let keep = max_length as i64 - 1 - max_gen_toks as i64;
    if keep <= 0 {
        return Err(Error::Input(format!(
            "max_gen_toks {max_gen_toks} leaves no room for the context in lm-eval's max_length {max_length} (less 1)"
        )));
    }
    let keep = keep as usize;
    Ok(if ids.len() > keep {
        ids[ids.len() - keep..].to_vec()
    } else {
        ids
    })
}

/// What a task file asks of generation, checked when it is loaded: each
/// `exact_match` metric's options, each filter pipeline, the generation
/// settings.
pub fn check_task(t: &Task) -> std::result::Result<(), String> {
    for (i, m) in t.metric_list.iter().enumerate() {
        if m.metric == "exact_match" {
            ExactMatch::from_metric(i, m)?;
        }
    }
    for (i, f) in t.filter_list.iter().enumerate() {
        Pipeline::from_filter(i, f)?;
    }
    if let Some(g) = &t.generation_kwargs {
        sampling(g, 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::config::API_MAX_LENGTH;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    #[test]
    fn regex_filter_is_findall_then_select() {
        // Values checked with Python 3.11 (lm-eval's RegexFilter).
        let one = re(r"(-?[0-9]+)");
        assert_eq!(
            regex_filter(&one, 0, "[invalid]", "a 12 b -3").unwrap(),
            "12"
        );
        assert_eq!(
            regex_filter(&one, -1, "[invalid]", "a 12 b -3").unwrap(),
            "-3"
        );
        assert_eq!(
            regex_filter(&one, 0, "[invalid]", "none").unwrap(),
            "[invalid]"
        );
        assert!(regex_filter(&one, 2, "[invalid]", "1 2").is_err());
        // No group: the whole match, stripped.
        assert_eq!(
            regex_filter(&re(r" [a-z]+ "), 0, "x", "1 ab 2").unwrap(),
            "ab"
        );
        // Several groups: the first non-empty one; none: the fallback, stripped.
        let two = re(r"(-?[$0-9.,]{2,})|(-?[0-9]+)");
        assert_eq!(
            regex_filter(&two, -1, "[invalid]", "so 7 then 1,000").unwrap(),
            "1,000"
        );
        assert_eq!(
            regex_filter(&two, 0, "[invalid]", "so 7 then").unwrap(),
            "7"
        );
        let empty = re(r"(x?)(y?)");
        assert_eq!(regex_filter(&empty, 0, " fb ", "zzz").unwrap(), "fb");
    }

    #[test]
    fn exact_match_options_are_lm_evals() {
        let plain = ExactMatch::default();
        assert!(plain.score("Paris", "Paris"));
        assert!(!plain.score(" Paris", "Paris"));
        let m = ExactMatch {
            ignore_case: true,
            ignore_punctuation: true,
            ignore_numbers: false,
            regexes_to_ignore: vec![re(","), re(r"\$")],
        };
        assert!(m.score("$1,000.", "1000"));
        assert!(m.score("PARIS!", "paris"));
        assert!(!m.score("paris france", "paris"));
        let n = ExactMatch {
            ignore_numbers: true,
            ..ExactMatch::default()
        };
        assert!(n.score("abc123", "abc"));
    }

    #[test]
    fn pipelines_run_in_order() {
        let p = Pipeline {
            name: "p".into(),
            steps: vec![
                Step::Lowercase,
                Step::Regex {
                    re: re(r"answer: (\w+)"),
                    group_select: 0,
                    fallback: "?".into(),
                },
                Step::TakeFirst,
            ],
        };
        assert_eq!(p.apply("The ANSWER: Yes").unwrap(), "yes");
        let w = Pipeline {
            name: "w".into(),
            steps: vec![Step::RemoveWhitespace, Step::Uppercase],
        };
        assert_eq!(w.apply("\x1c ok \n").unwrap(), "OK");
    }

    #[test]
    fn truncation_keeps_the_end() {
        let ids: Vec<u32> = (0..2000).collect();
        let t = left_truncate(ids, 256, API_MAX_LENGTH).unwrap();
        // lm-eval 0.4.13: self.max_length = 2048 - 1; x[-(2047 - 256):].
        assert_eq!(t.len(), 1791);
        assert_eq!(t[0], 209);
        assert_eq!(left_truncate(vec![1, 2, 3], 1, 4).unwrap(), [2, 3]);
        assert!(left_truncate(vec![1], 2048, API_MAX_LENGTH).is_err());
    }
}
