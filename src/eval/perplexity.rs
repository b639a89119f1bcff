//! Perplexity of documents, as lm-evaluation-harness's
//! `loglikelihood_rolling` computes it: each document's tokens are cut into
//! rolling windows (lm-eval's `get_rolling_token_windows` then
//! `make_disjoint_window`), every token is predicted exactly once, and the
//! log-likelihoods are summed per document in window order (f64).
//!
//! A window feeds at most `context` tokens to the model and scores `stride`
//! new ones (the first window scores `context` tokens after the prefix
//! token). `stride == context` is lm-eval's own choice (`context_len = 1`:
//! the windows do not overlap); a smaller stride gives each scored token
//! more preceding text, as `context − stride` tokens are re-read.
//!
//! Word and byte counts are lm-eval's: `len(re.split(r"\s+", doc))` words
//! (Python's `\s`, so a leading or trailing whitespace run counts an empty
//! word) and the UTF-8 length in bytes.

use crate::engine::{self, LoglikRequest};
use crate::error::{Error, Result};
use crate::model::transformer::Transformer;
use serde::{Deserialize, Serialize};

/// lm-eval's `get_rolling_token_windows(tokens, prefix, max_seq_len,
/// context_len)` followed by `make_disjoint_window`: (context,
/// continuation) pairs whose continuations partition `tokens` in order.
pub fn rolling_windows(
    tokens: &[u32],
    prefix: u32,
    max_seq_len: usize,
    context_len: usize,
) -> Vec<LoglikRequest> {
    assert!(1 <= context_len && context_len <= max_seq_len);
    let mut out = Vec::new();
    if tokens.is_empty() {
        return out;
    }
    let disjoint = |a: Vec<u32>, b: Vec<u32>| {
        let keep = a.len() - (b.len() - 1);
        LoglikRequest {
            context: a[..keep].to_vec(),
            continuation: b,
        }
    };
    let pred_len = max_seq_len - context_len + 1;
    let first = max_seq_len.min(tokens.len());
    let mut a = vec![prefix];
    a.extend_from_slice(&tokens[..first - 1]);
    out.push(disjoint(a, tokens[..first].to_vec()));
    let mut predicted = first;
    while predicted < tokens.len() {
        let n = (tokens.len() - predicted).min(pred_len);
        let end = predicted + n;
        out.push(disjoint(
            tokens[end - max_seq_len - 1..end - 1].to_vec(),
            tokens[end - n..end].to_vec(),
        ));
        predicted += n;
    }
    out
}

/// Python's `str.isspace` for one character (what `re`'s `\s` matches in
/// a str pattern): Unicode White_Space plus the separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `len(re.split(r"\s+", text))`.
pub fn word_count(text: &str) -> usize {
    let mut runs = 0;
    let mut in_run = false;
    for c in text.chars() {
        let s = py_space(c);
        if s && !in_run {
            runs += 1;
        }
        in_run = s;
    }
    runs + 1
}

/// Window shape: tokens fed per window and tokens newly scored per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windowing {
    pub context: usize,
    pub stride: usize,
}

impl Windowing {
    /// Checked against the model's positions.
    pub fn new(context: usize, stride: usize, model_positions: usize) -> Result<Windowing> {
        if context < 2 {
            return Err(Error::Usage(format!(
                "--context {context}: a window needs at least 2 tokens"
            )));
        }
        if context > model_positions {
            return Err(Error::Usage(format!(
                "--context {context}: the model has {model_positions} positions"
            )));
        }
        if stride == 0 || stride > context {
            return Err(Error::Usage(format!(
                "--stride {stride}: must be between 1 and the context ({context})"
            )));
        }
        Ok(Windowing { context, stride })
    }

    /// The document's windows (`prefix` starts the first).
    pub fn windows(&self, tokens: &[u32], prefix: u32) -> Vec<LoglikRequest> {
        rolling_windows(tokens, prefix, self.context, self.context - self.stride + 1)
    }
}

/// One document's log-likelihood and counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocPerplexity {
    pub name: String,
    pub loglik: f64,
    pub tokens: usize,
    pub words: usize,
    pub bytes: usize,
    pub windows: usize,
}

/// Totals over documents, with lm-eval's aggregations (weighted by words,
/// bytes or tokens over all documents, not a mean of per-document values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub loglik: f64,
    pub tokens: usize,
    pub words: usize,
    pub bytes: usize,
    pub windows: usize,
    pub token_perplexity: f64,
    pub word_perplexity: f64,
    pub byte_perplexity: f64,
    pub bits_per_byte: f64,
}

pub fn totals(docs: &[DocPerplexity]) -> Totals {
    let mut t = Totals {
        loglik: 0.0,
        tokens: 0,
        words: 0,
        bytes: 0,
        windows: 0,
        token_perplexity: f64::NAN,
        word_perplexity: f64::NAN,
        byte_perplexity: f64::NAN,
        bits_per_byte: f64::NAN,
    };
    for d in docs {
        t.loglik += d.loglik;
        t.tokens += d.tokens;
        t.words += d.words;
        t.bytes += d.bytes;
        t.windows += d.windows;
    }
    let per = |n: usize| -t.loglik / n as f64;
    if t.tokens > 0 {
        t.token_perplexity = per(t.tokens).exp();
    }
    t.word_perplexity = per(t.words).exp();
    if t.bytes > 0 {
        t.byte_perplexity = per(t.bytes).exp();
        t.bits_per_byte = per(t.bytes) / std::f64::consts::LN_2;
    }
    t
}

/// A document to score: its name (for the report) and text.
pub struct Document {
    pub name: String,
    pub text: String,
}

/// Score `docs` (tokenized by `encode`, windows started by `prefix`),
/// `batch_size` windows per forward call. `progress(done, total)` is called
/// after each batch, counted in windows. The per-window log-likelihoods are
/// returned too, in order (their bits are the engine's contract: they do
/// not depend on threads, batch or chunking).
#[allow(clippy::too_many_arguments)]
pub fn score(
    model: &Transformer,
    docs: &[Document],
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    prefix: u32,
    w: Windowing,
    batch_size: usize,
    prefill_chunk: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<DocPerplexity>, Vec<f64>)> {
    let mut all: Vec<LoglikRequest> = Vec::new();
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let ids = encode(&d.text)?;
        let ws = w.windows(&ids, prefix);
        out.push(DocPerplexity {
            name: d.name.clone(),
            loglik: 0.0,
            tokens: ids.len(),
            words: word_count(&d.text),
            bytes: d.text.len(),
            windows: ws.len(),
        });
        all.extend(ws);
    }
    let total = all.len();
    let mut lls = Vec::with_capacity(total);
    progress(0, total);
    for chunk in all.chunks(batch_size.max(1)) {
        let o = engine::loglikelihoods(model, chunk, batch_size.max(1), prefill_chunk)?;
        lls.extend(o.into_iter().map(|o| o.loglik));
        progress(lls.len(), total);
    }
    let mut at = 0;
    for d in &mut out {
        for &ll in &lls[at..at + d.windows] {
            d.loglik += ll;
        }
        at += d.windows;
    }
    Ok((out, lls))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lm-eval's docstring example of `get_rolling_token_windows`
    /// (lm_eval/utils.py), made disjoint.
    #[test]
    fn windows_are_lm_evals() {
        let toks: Vec<u32> = (0..10).collect();
        let pairs = |context_len| -> Vec<(Vec<u32>, Vec<u32>)> {
            rolling_windows(&toks, 100, 4, context_len)
                .into_iter()
                .map(|r| (r.context, r.continuation))
                .collect()
        };
        // Before make_disjoint_window: ([100,0,1,2],[0,1,2,3]),
        // ([2,3,4,5],[4,5,6]), ([5,6,7,8],[7,8,9]) (checked with lm_eval 0.4.13).
        let want2 = [
            (vec![100], vec![0, 1, 2, 3]),
            (vec![2, 3], vec![4, 5, 6]),
            (vec![5, 6], vec![7, 8, 9]),
        ];
        assert_eq!(pairs(2), want2);
        // context_len 1 (lm-eval's models): disjoint chunks.
        let want1 = [
            (vec![100], vec![0, 1, 2, 3]),
            (vec![3], vec![4, 5, 6, 7]),
            (vec![5, 6, 7], vec![8, 9]),
        ];
        assert_eq!(pairs(1), want1);
        assert!(rolling_windows(&[], 1, 4, 1).is_empty());
        // Every token is predicted once, each window feeds <= max_seq_len.
        for (n, c) in [(1usize, 1usize), (7, 3), (33, 5), (64, 8)] {
            let t: Vec<u32> = (0..n as u32).collect();
            let w = rolling_windows(&t, 999, 8, c);
            let flat: Vec<u32> = w.iter().flat_map(|r| r.continuation.clone()).collect();
            assert_eq!(flat, t);
            assert!(w
                .iter()
                .all(|r| r.context.len() + r.continuation.len() - 1 <= 8));
        }
    }

    #[test]
    fn words_are_re_split_on_python_whitespace() {
        assert_eq!(word_count(""), 1);
        assert_eq!(word_count("a b  c"), 3);
        assert_eq!(word_count(" a\tb\n"), 4);
        assert_eq!(word_count("a\u{1f}b\u{a0}c"), 3);
        assert_eq!(word_count("a\u{200b}b"), 1);
    }

    #[test]
    fn totals_weight_by_counts() {
        let d = |ll, tokens, words, bytes| DocPerplexity {
            name: String::new(),
            loglik: ll,
            tokens,
            words,
            bytes,
            windows: 1,
        };
        let t = totals(&[d(-10.0, 5, 2, 8), d(-20.0, 5, 3, 12)]);
        assert_eq!(t.token_perplexity, (30.0f64 / 10.0).exp());
        assert_eq!(t.word_perplexity, (30.0f64 / 5.0).exp());
        assert_eq!(t.bits_per_byte, 30.0 / 20.0 / std::f64::consts::LN_2);
        assert!(Windowing::new(8, 9, 100).is_err());
        assert!(Windowing::new(101, 1, 100).is_err());
    }
}
