//! A sequence inside the engine core (`core`): its state between forward
//! calls, and how one sequence takes the KV of prompt tokens it shares
//! with another.

use super::prefix::{common_prefix, reusable, PosInfo, PROMPT_TOP};
use super::spec::{SeqId, SeqSpec};
use crate::kernels::softmax::log_softmax_top;
use crate::model::attention::KvCache;
use sha2::{Digest, Sha256};

/// A sequence the engine holds.
pub(super) struct Seq {
    pub(super) id: SeqId,
    pub(super) spec: SeqSpec,
    pub(super) cache: Option<KvCache>,
    /// Tokens whose KV is in the cache.
    pub(super) fed: usize,
    /// Prompt tokens whose KV came from the prefix cache or another sequence.
    pub(super) cached: usize,
    /// Waiting for this running sequence to feed the first `.1` prompt
    /// tokens both share, to copy their KV (and logprob rows) instead of
    /// computing them (`share`).
    pub(super) leader: Option<(SeqId, usize)>,
    pub(super) out: Vec<u32>,
    /// Logprob rows of prompt positions `info_from()..` (position p
    /// predicts token p+1), as far as computed.
    pub(super) prompt_info: Vec<PosInfo>,
    pub(super) hasher: Sha256,
    /// The token to feed next (just sampled).
    pub(super) next: Option<u32>,
    pub(super) logprobs: Vec<f64>,
    pub(super) step_logits: Vec<Vec<f32>>,
    pub(super) admitted: std::time::Instant,
    pub(super) t_last: std::time::Instant,
    pub(super) ttft: f64,
    pub(super) times: Vec<f64>,
}

impl Seq {
    pub(super) fn new(id: SeqId, spec: SeqSpec) -> Self {
        let now = std::time::Instant::now();
        Seq {
            id,
            spec,
            cache: None,
            fed: 0,
            cached: 0,
            leader: None,
            out: Vec::new(),
            prompt_info: Vec::new(),
            hasher: Sha256::new(),
            next: None,
            logprobs: Vec::new(),
            step_logits: Vec::new(),
            admitted: now,
            t_last: now,
            ttft: 0.0,
            times: Vec::new(),
        }
    }

    /// Prompt tokens to feed: all of them, but the last when no token is
    /// sampled after it (its logits would predict nothing).
    pub(super) fn target(&self) -> usize {
        let n = self.spec.prompt.len();
        if self.spec.sampling.max_tokens == 0 {
            n - 1
        } else {
            n
        }
    }

    /// The first position whose logprob row is wanted (it predicts prompt
    /// token `from`).
    pub(super) fn info_from(&self) -> Option<usize> {
        self.spec.prompt_logprobs.map(|p| p.from - 1)
    }

    /// Alternatives kept per logprob row: as many as the prefix cache can
    /// answer an `echo` with when rows start at the first position (the
    /// cache keeps only those), else what the sequence asked for.
    pub(super) fn kept_top(&self) -> usize {
        match self.spec.prompt_logprobs {
            Some(p) if p.from == 1 => PROMPT_TOP.max(p.top),
            Some(p) => p.top,
            None => 0,
        }
    }
}

/// The largest value of a finite logits row.
pub(super) fn row_max(row: &[f32]) -> f32 {
    row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// A prompt position's row: the log-probability of the token that follows,
/// whether it is a greedy choice, and the `keep` most likely tokens.
pub(super) fn pos_info(isa: crate::kernels::Isa, row: &[f32], next: u32, keep: usize) -> PosInfo {
    let (logprob, top) = log_softmax_top(isa, row, next as usize, keep);
    PosInfo {
        logprob,
        top,
        greedy: row[next as usize] >= row_max(row),
    }
}

/// A running sequence may lead one that shares at least this many prompt
/// tokens with it (or half of what it has to feed): waiting for fewer would
/// cost the follower more time than the copy saves.
pub(super) const MIN_WAIT_SHARE: usize = 16;

/// Prompt tokens `s` can take from `r` once `r` has fed them: their common
/// prefix, less what `s` must compute itself for its logprob rows (a row
/// is `r`'s too only while the token it predicts is shared), at most
/// `limit` and what `r` feeds at all.
pub(super) fn share(s: &Seq, r: &Seq, limit: usize) -> usize {
    let m = common_prefix(&s.spec.prompt, &r.spec.prompt);
    // The leader computes every row from its first wanted one on.
    let rows = r
        .info_from()
        .filter(|_| r.kept_top() >= s.kept_top())
        .map(|l0| (l0, usize::MAX));
    reusable(m, s.info_from(), rows).min(limit).min(r.target())
}

/// If `leader` has fed the tokens `f` waits for, copy their KV (and the
/// logprob rows `f` needs) into `f` and end the wait; the tokens copied.
pub(super) fn copy_shared(leader: &Seq, f: &mut Seq) -> usize {
    let Some((_, n)) = f.leader else { return 0 };
    if leader.fed < n {
        return 0;
    }
    let from = leader.cache.as_ref().expect("running sequence has a cache");
    let cache = f.cache.as_mut().expect("admitted sequence has a cache");
    f.leader = None;
    // The first `fed` positions (a prefix-cache hit) are copied again:
    // the same bits.
    let had = cache.len;
    cache.len = 0;
    if cache.copy_prefix_from(from, n).is_err() {
        // Cannot happen (the leader holds n positions, the cache has room
        // for the prompt); compute them instead.
        cache.len = had;
        return 0;
    }
    if let (Some(f0), Some(l0)) = (f.info_from(), leader.info_from()) {
        // Rows f0 .. n, from the leader's rows l0 ..; the follower's own
        // rows (from a prefix-cache hit) cover f0 .. fed already.
        let have = f0 + f.prompt_info.len();
        if n > have {
            f.prompt_info
                .extend_from_slice(&leader.prompt_info[have - l0..n - l0]);
        }
    }
    let copied = n - f.fed;
    f.cached = n;
    f.fed = n;
    copied
}
