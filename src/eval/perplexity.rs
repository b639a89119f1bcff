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
    RollingWindows::new(tokens, prefix, max_seq_len, context_len).collect()
}

/// `rolling_windows` one window at a time: a long document's windows are
/// made as they are scored, never all held at once.
pub struct RollingWindows<'a> {
    tokens: &'a [u32],
    prefix: u32,
    max_seq_len: usize,
    pred_len: usize,
    /// Tokens predicted by the windows made so far.
    predicted: usize,
}

impl<'a> RollingWindows<'a> {
    pub fn new(tokens: &'a [u32], prefix: u32, max_seq_len: usize, context_len: usize) -> Self {
        assert!(1 <= context_len && context_len <= max_seq_len);
        RollingWindows {
            tokens,
            prefix,
            max_seq_len,
            pred_len: max_seq_len - context_len + 1,
            predicted: 0,
        }
    }

    /// How many windows the document has in all.
    pub fn total(&self) -> usize {
        let n = self.tokens.len();
        let first = self.max_seq_len.min(n);
        if n == 0 {
            0
        } else {
            1 + (n - first).div_ceil(self.pred_len)
        }
    }
}

impl Iterator for RollingWindows<'_> {
    type Item = LoglikRequest;

    fn next(&mut self) -> Option<LoglikRequest> {
        let tokens = self.tokens;
        if self.predicted >= tokens.len() {
            return None;
        }
        let disjoint = |a: Vec<u32>, b: Vec<u32>| {
            let keep = a.len() - (b.len() - 1);
            LoglikRequest {
                context: a[..keep].to_vec(),
                continuation: b,
            }
        };
        let max = self.max_seq_len;
        if self.predicted == 0 {
            let first = max.min(tokens.len());
            let mut a = vec![self.prefix];
            a.extend_from_slice(&tokens[..first - 1]);
            self.predicted = first;
            return Some(disjoint(a, tokens[..first].to_vec()));
        }
        let n = (tokens.len() - self.predicted).min(self.pred_len);
        let end = self.predicted + n;
        self.predicted = end;
        Some(disjoint(
            tokens[end - max - 1..end - 1].to_vec(),
            tokens[end - n..end].to_vec(),
        ))
    }
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

    /// The document's windows (`prefix` starts the first), one at a time.
    pub fn windows<'a>(&self, tokens: &'a [u32], prefix: u32) -> RollingWindows<'a> {
        RollingWindows::new(tokens, prefix, self.context, self.context - self.stride + 1)
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

/// Largest document read (a file, or one line of a .jsonl file): a longer
/// text is refused before it is held, rather than tokenised whole.
/// (Tokenising takes about 150-200 bytes of memory per input byte, so 4 MiB
/// stays under about 1 GB.)
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// The documents of text files, read one at a time: a .jsonl file holds one
/// document per line (the string field `field` of each object), any other
/// file is one document (UTF-8). An empty text file, or files that hold no
/// document at all, are errors.
pub fn file_documents(
    files: &[std::path::PathBuf],
    field: &str,
) -> impl Iterator<Item = Result<Document>> {
    FileDocuments {
        files: files.to_vec(),
        field: field.to_string(),
        at: 0,
        jsonl: None,
        yielded: 0,
        failed: false,
    }
}

struct FileDocuments {
    files: Vec<std::path::PathBuf>,
    field: String,
    at: usize,
    /// The .jsonl file being read: its path, reader and last line number.
    jsonl: Option<(std::path::PathBuf, std::io::BufReader<std::fs::File>, usize)>,
    yielded: usize,
    failed: bool,
}

/// The next line of `r` (without its newline), refused past `cap` bytes
/// before more of it is held; None at the end.
fn read_line_capped(
    r: &mut impl std::io::BufRead,
    cap: usize,
) -> std::io::Result<Option<std::result::Result<Vec<u8>, ()>>> {
    use std::io::BufRead as _;
    let mut buf = Vec::new();
    let n = std::io::Read::take(r.by_ref(), cap as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > cap {
        return Ok(Some(Err(())));
    }
    Ok(Some(Ok(buf)))
}

impl FileDocuments {
    fn next_doc(&mut self) -> Result<Option<Document>> {
        loop {
            if let Some((path, r, line)) = &mut self.jsonl {
                let next =
                    read_line_capped(r, MAX_DOCUMENT_BYTES).map_err(|e| Error::io(&*path, e))?;
                *line += 1;
                let at = format!("{}:{}", path.display(), line);
                let bytes = match next {
                    None => {
                        self.jsonl = None;
                        continue;
                    }
                    Some(Err(())) => {
                        return Err(Error::Input(format!(
                        "{at}: a line longer than {MAX_DOCUMENT_BYTES} bytes; split the document"
                    )))
                    }
                    Some(Ok(b)) => b,
                };
                let line_text = std::str::from_utf8(&bytes)
                    .map_err(|e| Error::Input(format!("{at}: not UTF-8 text ({e})")))?;
                let line_text = if *line == 1 {
                    line_text.strip_prefix('\u{feff}').unwrap_or(line_text)
                } else {
                    line_text
                };
                if line_text.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(line_text)
                    .map_err(|e| Error::Input(format!("{at}: not JSON ({e})")))?;
                let t = v.get(&self.field).and_then(|t| t.as_str()).ok_or_else(|| {
                    Error::Input(format!("{at}: no string field '{}'", self.field))
                })?;
                return Ok(Some(Document {
                    name: at,
                    text: t.to_string(),
                }));
            }
            let Some(f) = self.files.get(self.at).cloned() else {
                return Ok(None);
            };
            self.at += 1;
            // (A folder, FIFO or device is named here, not read.)
            let size = crate::fsio::regular_size(&f)?;
            if f.extension().is_some_and(|e| e == "jsonl") {
                let file = std::fs::File::open(&f).map_err(|e| Error::io(&f, e))?;
                self.jsonl = Some((f, std::io::BufReader::new(file), 0));
                continue;
            }
            if size > MAX_DOCUMENT_BYTES as u64 {
                return Err(Error::bad_file(
                    &f,
                    format!(
                        "{size} bytes in one document; at most {MAX_DOCUMENT_BYTES} are read (write it as a .jsonl of documents)"
                    ),
                ));
            }
            let text = crate::fsio::read_regular_text(&f, MAX_DOCUMENT_BYTES as u64)?;
            if text.trim().is_empty() {
                return Err(Error::Input(format!(
                    "{}: empty: no text to score",
                    f.display()
                )));
            }
            return Ok(Some(Document {
                name: f.display().to_string(),
                text,
            }));
        }
    }
}

impl Iterator for FileDocuments {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Result<Document>> {
        if self.failed {
            return None;
        }
        let r = match self.next_doc() {
            Ok(Some(d)) => Ok(d),
            Ok(None) if self.yielded == 0 => Err(Error::Input(
                "perplexity: the files hold no documents".into(),
            )),
            Ok(None) => return None,
            Err(e) => Err(e),
        };
        match &r {
            Ok(_) => self.yielded += 1,
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// What `score` gives: each document's figures, and the sha256 of every
/// window's log-likelihood bits (LE f64) in order.
pub struct Scored {
    pub documents: Vec<DocPerplexity>,
    pub windows_sha256: String,
}

/// Score the documents `docs` yields, one at a time (tokenized by `encode`,
/// windows started by `prefix`), `batch_size` windows per forward call, so
/// memory holds one document and one batch of windows, never the whole
/// input. `progress(documents done, windows done)` is called after each
/// batch. The windows' log-likelihoods are summed per document in window
/// order (their bits are the engine's contract: they do not depend on
/// threads, batch or chunking).
#[allow(clippy::too_many_arguments)]
pub fn score(
    model: &Transformer,
    docs: impl Iterator<Item = Result<Document>>,
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    prefix: u32,
    w: Windowing,
    batch_size: usize,
    prefill_chunk: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Scored> {
    use sha2::Digest;
    let batch = batch_size.max(1);
    let mut out = Vec::new();
    let mut digest = sha2::Sha256::new();
    let mut windows_done = 0;
    progress(0, 0);
    for d in docs {
        let d = d?;
        let ids = encode(&d.text)?;
        let mut ws = w.windows(&ids, prefix);
        let mut doc = DocPerplexity {
            name: d.name,
            loglik: 0.0,
            tokens: ids.len(),
            words: word_count(&d.text),
            bytes: d.text.len(),
            windows: ws.total(),
        };
        drop(d.text);
        loop {
            let chunk: Vec<LoglikRequest> = ws.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            let o = engine::loglikelihoods(model, &chunk, batch, prefill_chunk)?;
            for ll in o.iter().map(|o| o.loglik) {
                doc.loglik += ll;
                digest.update(ll.to_bits().to_le_bytes());
            }
            windows_done += chunk.len();
            progress(out.len(), windows_done);
        }
        out.push(doc);
        progress(out.len(), windows_done);
    }
    Ok(Scored {
        documents: out,
        windows_sha256: hex::encode(digest.finalize()),
    })
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
        for (n, c) in [(0usize, 1usize), (1, 1), (4, 1), (5, 1), (10, 2), (33, 5)] {
            let t: Vec<u32> = (0..n as u32).collect();
            let it = RollingWindows::new(&t, 9, 4, c.min(4));
            assert_eq!(
                it.total(),
                rolling_windows(&t, 9, 4, c.min(4)).len(),
                "{n} {c}"
            );
        }
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
