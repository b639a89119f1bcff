//! The typed config: what an experiment, its groups and the command line
//! resolve to, as saved with a run (config.yaml).

use serde::{Deserialize, Serialize};

pub const GROUPS: [&str; 4] = ["model", "sampling", "task", "prompt"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    pub name: String,
    pub model: ModelConfig,
    pub sampling: crate::sampling::SamplingParams,
    pub task: TaskConfig,
    pub prompt: PromptConfig,
    pub run: RunConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A manifest name (models/*.toml), a .gguf file or a model folder.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    pub datasets: Vec<DatasetConfig>,
    /// Few-shot examples before each item's prompt (`eval::fewshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot: Option<FewshotConfig>,
}

/// `task.fewshot`: `n` examples per item, drawn by the counter-based RNG
/// from `seed` and the item's id (so a re-run, a shard or another batch
/// size draws the same ones), from the evaluated dataset itself (`self`,
/// the item left out) or from a file in the dataset's format, pinned by
/// `sha256`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FewshotConfig {
    pub n: usize,
    #[serde(default = "self_source")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default = "fewshot_seed")]
    pub seed: u64,
    /// After each example.
    #[serde(default = "blank_line")]
    pub delimiter: String,
    /// An example's text: `{field}`s of the example item, `{target}` its
    /// answer (generation) or correct choice (multiple choice).
    #[serde(default = "example_template")]
    pub example: String,
}

fn self_source() -> String {
    "self".into()
}
fn fewshot_seed() -> u64 {
    1234
}
fn blank_line() -> String {
    "\n\n".into()
}
fn example_template() -> String {
    "Question: {question}\nAnswer: {target}".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Generate,
    MultipleChoice,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    ExactMatch,
    Contains,
    Regex,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: String,
    /// JSONL, relative to the project root.
    pub path: String,
    pub sha256: String,
    pub kind: TaskKind,
    /// Generation tasks: how an output is scored.
    #[serde(default)]
    pub scorer: Option<Scorer>,
    /// Regex scorer: the first match (group 1 if present) is compared to the answer.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Generation tasks: overrides sampling.max_tokens.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Generation tasks: stop at the first token that contains a newline.
    #[serde(default)]
    pub stop_at_newline: bool,
    /// An lm-evaluation-harness task: `path` is its YAML file, and this
    /// pins what else it reads (`eval --lm-eval-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm_eval: Option<LmEvalSource>,
}

/// The files an lm-eval task reads besides its YAML, pinned, and the
/// few-shot choices (recorded so `verify` draws the same examples).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LmEvalSource {
    /// The task's `num_fewshot`, or the `--num-fewshot` given.
    pub num_fewshot: usize,
    /// lm-eval's `--fewshot_random_seed` (default 1234).
    pub fewshot_seed: u64,
    /// Files the task `include`s, in the order read.
    #[serde(default)]
    pub includes: Vec<TemplateRef>,
    /// Data files: split name, path (relative to the project root, or
    /// absolute), sha256.
    pub data: Vec<DataFile>,
    /// The task's `output_type` (multiple_choice where absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_type: Option<String>,
    /// lm-eval's `max_length` model argument: the most tokens one request
    /// feeds (2048, `local-completions`' default, where absent). Contexts
    /// are left-truncated to it and rolling windows sized by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

/// `local-completions`'s default `max_length` (it keeps one token of it
/// for generation: a request feeds at most `max_length - 1`).
pub const API_MAX_LENGTH: usize = 2048;

/// One message of `prompt.messages`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: String,
    pub content: String,
}

impl LmEvalSource {
    pub fn max_length(&self) -> usize {
        self.max_length.unwrap_or(API_MAX_LENGTH)
    }
}

impl DatasetConfig {
    /// An lm-eval `loglikelihood` task: one continuation per item, scored
    /// by its log-likelihood and whether greedy decoding produces it.
    pub fn is_lm_loglikelihood(&self) -> bool {
        self.lm_eval.as_ref().and_then(|l| l.output_type.as_deref()) == Some("loglikelihood")
    }

    /// An lm-eval `loglikelihood_rolling` task: one document per item, every
    /// token scored in rolling windows; reported as perplexities.
    pub fn is_lm_rolling(&self) -> bool {
        self.lm_eval.as_ref().and_then(|l| l.output_type.as_deref())
            == Some("loglikelihood_rolling")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub split: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// Template file, relative to the project root.
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    pub name: String,
    pub generate: TemplateRef,
    pub multiple_choice: TemplateRef,
    /// Put before each choice when scoring it as a continuation.
    #[serde(default = "space")]
    pub choice_prefix: String,
    /// Wrap rendered prompts in the model's chat template.
    #[serde(default)]
    pub chat: bool,
    /// Build the prompt as chat messages (role and a content template;
    /// `{prompt}` is the rendered prompt file), rendered by the model's chat
    /// template (see `eval::chat`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageTemplate>,
    /// A dataset field holding further turns ([{role, content}, ...]),
    /// appended after `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns_field: Option<String>,
}

fn space() -> String {
    " ".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "chunk")]
    pub prefill_chunk: usize,
    /// Worker threads; null: all cores. Bits do not depend on it.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Items per dataset; null: all.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Bootstrap resamples for confidence intervals.
    #[serde(default = "bootstrap")]
    pub bootstrap: usize,
    /// Sampled generation tasks run once per seed (`+run.seeds=[7,8,9]`);
    /// tasks that do not sample (greedy, multiple choice) run once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    /// Or K seeds from sampling.seed: seed, seed + 1, ..., seed + K - 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_seeds: Option<usize>,
    /// An item whose tokens do not fit the model's context: refuse the run
    /// before its folder is made (`error`), or leave it out and record it in
    /// plan.json as skipped (`skip`).
    #[serde(default, skip_serializing_if = "TooLong::is_error")]
    pub too_long: TooLong,
}

/// What a run does with an item that cannot fit the model's context.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TooLong {
    #[default]
    Error,
    Skip,
}

impl TooLong {
    fn is_error(&self) -> bool {
        *self == TooLong::Error
    }
}

impl EvalConfig {
    /// The seeds sampled tasks run with when several are asked for
    /// (`run.seeds` or `run.num_seeds`); None for one run per sample.
    pub fn seeds(&self) -> Option<Vec<u64>> {
        match (&self.run.seeds, self.run.num_seeds) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(k)) => Some(
                (0..k as u64)
                    .map(|i| self.sampling.seed.wrapping_add(i))
                    .collect(),
            ),
            (None, None) => None,
        }
    }

    /// Whether dataset `d`'s outputs depend on the sampling seed. An lm-eval
    /// generation task may (its file's `generation_kwargs.temperature`
    /// decides, known once the file is read: `run::prepare` checks it).
    pub fn samples_with_seed(&self, d: &DatasetConfig) -> bool {
        d.kind == TaskKind::Generate && (d.lm_eval.is_some() || self.sampling.temperature > 0.0)
    }
}

fn one() -> usize {
    1
}
fn chunk() -> usize {
    512
}
fn bootstrap() -> usize {
    1000
}
