//! SentencePiece BPE as llama.cpp runs it for GGUF files whose
//! `tokenizer.ggml.model` is `llama` (Llama 2, Mistral, Gemma, Phi-3):
//! the text (spaces already escaped to U+2581) is split into UTF-8
//! characters, and the adjacent pair whose concatenation is a vocabulary
//! token of the highest score is merged, ties to the leftmost, until no
//! pair is a token; a symbol that is not a token becomes its bytes'
//! `<0xXX>` tokens. Reference: llama.cpp `src/llama-vocab.cpp`
//! (`llm_tokenizer_spm_session`), summarised in ../shared/ARCHITECTURES.md §4.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The vocabulary: piece text -> id, and each id's score.
pub struct SpmVocab {
    pub ids: HashMap<String, u32>,
    pub scores: Vec<f32>,
    /// Token of each byte, `<0xXX>` (else the one-byte piece), if any.
    pub byte_tokens: [Option<u32>; 256],
}

impl SpmVocab {
    pub fn new(pieces: &[String], scores: Vec<f32>) -> Self {
        let mut ids = HashMap::with_capacity(pieces.len());
        for (i, p) in pieces.iter().enumerate() {
            // The last id of a duplicated piece wins, as in llama.cpp's map.
            ids.insert(p.clone(), i as u32);
        }
        let byte_tokens = std::array::from_fn(|b| {
            ids.get(&format!("<0x{b:02X}>"))
                .or_else(|| {
                    std::str::from_utf8(&[b as u8])
                        .ok()
                        .and_then(|s| ids.get(s))
                })
                .copied()
        });
        SpmVocab {
            ids,
            scores,
            byte_tokens,
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and `right` (adjacent when queued).
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// The heap's greatest: the highest score, then the smallest left index
    /// (llama.cpp's `llm_bigram_spm::comparator`, as sentencepiece).
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Byte length of the UTF-8 sequence that starts with `b` (1 for a stray
/// continuation byte), as llama.cpp's `unicode_len_utf8`.
fn utf8_len(b: u8) -> usize {
    const LEN: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LEN[(b >> 4) as usize]
}

/// Append the ids of `text` (one raw fragment, spaces already U+2581) to
/// `out`. An error names a byte that has no token.
pub fn encode(v: &SpmVocab, text: &str, out: &mut Vec<u32>) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::new();
    let mut offs = 0;
    while offs < bytes.len() {
        let len = utf8_len(bytes[offs]).min(bytes.len() - offs);
        let i = symbols.len();
        symbols.push(Symbol {
            start: offs,
            len,
            prev: i.checked_sub(1),
            next: (offs + len < bytes.len()).then_some(i + 1),
        });
        offs += len;
    }
    let mut heap = BinaryHeap::new();
    let mut rev_merge: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for i in 1..symbols.len() {
        try_add(
            v,
            bytes,
            &symbols,
            &mut heap,
            &mut rev_merge,
            Some(i - 1),
            Some(i),
        );
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Stale: one side was merged into something else since.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        let (prev, next) = (symbols[b.left].prev, symbols[b.left].next);
        try_add(
            v,
            bytes,
            &symbols,
            &mut heap,
            &mut rev_merge,
            prev,
            Some(b.left),
        );
        try_add(
            v,
            bytes,
            &symbols,
            &mut heap,
            &mut rev_merge,
            Some(b.left),
            next,
        );
    }
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(s) = i {
        resegment(v, bytes, &symbols, &rev_merge, s, out)?;
        i = symbols[s].next;
    }
    Ok(())
}

/// Queue the merge of symbols `left` and `right` if their text is a token.
fn try_add<'a>(
    v: &SpmVocab,
    bytes: &'a [u8],
    symbols: &[Symbol],
    heap: &mut BinaryHeap<Bigram>,
    rev_merge: &mut HashMap<&'a [u8], (usize, usize)>,
    left: Option<usize>,
    right: Option<usize>,
) {
    let (Some(l), Some(r)) = (left, right) else {
        return;
    };
    let start = symbols[l].start;
    let text = &bytes[start..start + symbols[l].len + symbols[r].len];
    let Some(&id) = std::str::from_utf8(text).ok().and_then(|t| v.ids.get(t)) else {
        return;
    };
    let Some(&score) = v.scores.get(id as usize) else {
        return;
    };
    heap.push(Bigram {
        left: l,
        right: r,
        score,
        size: text.len(),
    });
    rev_merge.insert(text, (l, r));
}

/// The ids of symbol `s`: its token, else the two symbols it was merged
/// from, else its bytes.
fn resegment(
    v: &SpmVocab,
    bytes: &[u8],
    symbols: &[Symbol],
    rev_merge: &HashMap<&[u8], (usize, usize)>,
    s: usize,
    out: &mut Vec<u32>,
) -> Result<(), String> {
    let sym = symbols[s];
    let text = &bytes[sym.start..sym.start + sym.len];
    if let Some(&id) = std::str::from_utf8(text).ok().and_then(|t| v.ids.get(t)) {
        out.push(id);
        return Ok(());
    }
    if let Some(&(a, b)) = rev_merge.get(text) {
        resegment(v, bytes, symbols, rev_merge, a, out)?;
        return resegment(v, bytes, symbols, rev_merge, b, out);
    }
    for &byte in text {
        out.push(v.byte_tokens[byte as usize].ok_or_else(|| {
            format!("byte 0x{byte:02X} has no token (no <0x{byte:02X}> in the vocabulary)")
        })?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[(&str, f32)]) -> SpmVocab {
        let p: Vec<String> = pieces.iter().map(|(s, _)| s.to_string()).collect();
        SpmVocab::new(&p, pieces.iter().map(|(_, s)| *s).collect())
    }

    fn ids(v: &SpmVocab, t: &str) -> Vec<u32> {
        let mut out = Vec::new();
        encode(v, t, &mut out).unwrap();
        out
    }

    /// Merges go by score, not by position or length: "abc" with "ab"
    /// scored below "bc" gives a | bc.
    #[test]
    fn highest_score_merges_first() {
        let v = vocab(&[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -5.0),
            ("bc", -2.0),
            ("abc", -3.0),
        ]);
        // bc (-2) first; then a + bc = abc is a token (-3): merged.
        assert_eq!(ids(&v, "abc"), vec![5]);
        let v = vocab(&[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -5.0),
            ("bc", -2.0),
        ]);
        assert_eq!(ids(&v, "abc"), vec![0, 4]);
        let v = vocab(&[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -1.0),
            ("bc", -2.0),
        ]);
        assert_eq!(ids(&v, "abc"), vec![3, 2]);
    }

    /// Equal scores: the leftmost pair first ("aaa" -> aa | a).
    #[test]
    fn ties_go_to_the_left() {
        let v = vocab(&[("a", -1.0), ("aa", -1.0)]);
        assert_eq!(ids(&v, "aaa"), vec![1, 0]);
        assert_eq!(ids(&v, "aaaa"), vec![1, 1]);
    }

    /// Characters not in the vocabulary become <0xXX> tokens of their
    /// UTF-8 bytes; a byte with no token is an error.
    #[test]
    fn byte_fallback() {
        let mut pieces: Vec<(String, f32)> = vec![("a".into(), 0.0)];
        for b in 0..=255u32 {
            pieces.push((format!("<0x{b:02X}>"), 0.0));
        }
        let p: Vec<String> = pieces.iter().map(|x| x.0.clone()).collect();
        let v = SpmVocab::new(&p, vec![0.0; p.len()]);
        // é = C3 A9
        assert_eq!(ids(&v, "aé"), vec![0, 1 + 0xC3, 1 + 0xA9]);
        let v = vocab(&[("a", 0.0)]);
        let mut out = Vec::new();
        assert!(encode(&v, "ab", &mut out).unwrap_err().contains("0x62"));
    }
}
