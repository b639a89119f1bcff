//! The prefix cache: KV caches of finished sequences, keyed by their token
//! ids, lent to new sequences that start with the same tokens. The KV of
//! position i depends only on tokens 0..=i, and prefill chunking does not
//! change bits, so a hit gives the same bits as a miss (a test compares
//! them). Bounded by bytes; the least recently used entry goes first.

use crate::model::attention::KvCache;

/// Alternatives kept per prompt position (the most a request may ask for).
pub const PROMPT_TOP: usize = 20;

/// A prompt position's logprob of the next prompt token and the most
/// likely tokens there, kept so a hit can answer `echo` with `logprobs`.
#[derive(Debug, Clone)]
pub struct PosInfo {
    pub logprob: f64,
    pub top: Vec<(u32, f64)>,
    /// The next token has the largest logit here (ties count).
    pub greedy: bool,
}

struct Entry {
    tokens: Vec<u32>,
    kv: KvCache,
    /// Per position p (predicting tokens[p+1]), when it was computed.
    info: Option<Vec<PosInfo>>,
    bytes: u64,
    used: u64,
}

/// Tokens two sequences start with alike.
pub(super) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Of `m` shared leading tokens, how many a sequence can take from another
/// (a cache entry, a running sequence): all of them when it wants no
/// logprob rows; when it wants rows from position `info_from`, the
/// positions before that, and past it only where the other has the rows
/// (`rows`: positions `from..until`, from at most `info_from`), and only
/// while the token a row predicts is shared too (position p's row is valid
/// while token p + 1 is).
pub(super) fn reusable(m: usize, info_from: Option<usize>, rows: Option<(usize, usize)>) -> usize {
    match (info_from, rows) {
        (None, _) => m,
        (Some(f0), Some((from, until))) if from <= f0 => {
            m.saturating_sub(1).min(until).max(m.min(f0))
        }
        (Some(f0), _) => m.min(f0),
    }
}

/// What a lookup lends: the first `reuse` positions of `kv` (and `info`).
pub struct Hit<'a> {
    pub kv: &'a KvCache,
    pub reuse: usize,
    pub info: &'a [PosInfo],
}

pub struct PrefixCache {
    limit: u64,
    held: u64,
    clock: u64,
    entries: Vec<Entry>,
    pub hits: u64,
    pub misses: u64,
    pub reused_tokens: u64,
}

impl PrefixCache {
    pub fn new(limit: u64) -> Self {
        PrefixCache {
            limit,
            held: 0,
            clock: 0,
            entries: Vec::new(),
            hits: 0,
            misses: 0,
            reused_tokens: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.held
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.held = 0;
    }

    /// The entry sharing the longest usable prefix with `prompt`, lending
    /// at most `limit` tokens (the caller leaves itself at least one to
    /// compute: its logits are needed). `info_from`: the positions from
    /// there on must come with their logprob rows (an entry without rows
    /// lends only the positions before it).
    pub fn lookup(
        &mut self,
        prompt: &[u32],
        info_from: Option<usize>,
        limit: usize,
    ) -> Option<Hit<'_>> {
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let m = common_prefix(&e.tokens, prompt);
            let rows = e.info.as_ref().map(|i| (0, i.len()));
            let reuse = reusable(m, info_from, rows).min(limit);
            if reuse > 0 && best.is_none_or(|(_, r)| reuse > r) {
                best = Some((i, reuse));
            }
        }
        let Some((i, reuse)) = best else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        self.reused_tokens += reuse as u64;
        self.clock += 1;
        let e = &mut self.entries[i];
        e.used = self.clock;
        Some(Hit {
            kv: &e.kv,
            reuse,
            info: e.info.as_deref().unwrap_or(&[]),
        })
    }

    /// Keep `kv` (holding `tokens`) unless it is larger than the whole
    /// budget; evict least recently used entries to make room. An entry
    /// that another one already covers is not kept twice.
    pub fn insert(&mut self, tokens: Vec<u32>, kv: KvCache, info: Option<Vec<PosInfo>>) {
        let bytes = kv.bytes();
        if bytes > self.limit || tokens.is_empty() {
            return;
        }
        let covers = |big: &Entry, t: &[u32], has_info: bool| {
            big.tokens.len() >= t.len()
                && big.tokens[..t.len()] == *t
                && (!has_info || big.info.as_ref().is_some_and(|i| i.len() + 1 >= t.len()))
        };
        if self
            .entries
            .iter()
            .any(|e| covers(e, &tokens, info.is_some()))
        {
            return;
        }
        // Entries the new one covers go.
        let new_info = info.as_ref().map_or(0, |i| i.len());
        self.entries.retain(|e| {
            let covered = tokens.len() >= e.tokens.len()
                && tokens[..e.tokens.len()] == e.tokens[..]
                && (e.info.is_none() || new_info + 1 >= e.tokens.len());
            !covered
        });
        self.held = self.entries.iter().map(|e| e.bytes).sum();
        while self.held + bytes > self.limit {
            let Some((i, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used) else {
                break;
            };
            self.held -= self.entries.swap_remove(i).bytes;
        }
        self.clock += 1;
        self.held += bytes;
        self.entries.push(Entry {
            tokens,
            kv,
            info,
            bytes,
            used: self.clock,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn kv(n: usize) -> KvCache {
        let mut c = KvCache::new(2, n, 4, &Device::Cpu).unwrap();
        c.len = n;
        c
    }

    #[test]
    fn longest_prefix_wins_and_one_token_is_left() {
        let mut p = PrefixCache::new(1 << 20);
        p.insert(vec![1, 2, 3], kv(3), None);
        p.insert(vec![1, 2, 9, 9, 9], kv(5), None);
        assert_eq!(p.lookup(&[1, 2, 9, 9, 9, 4], None, 5).unwrap().reuse, 5);
        assert_eq!(p.lookup(&[1, 2, 3], None, 2).unwrap().reuse, 2);
        assert_eq!(p.lookup(&[1, 2, 3, 4], None, 3).unwrap().reuse, 3);
        assert!(p.lookup(&[7, 1, 2], None, 2).is_none());
        // No logprob rows: no hit for a request that needs them from the start,
        assert!(p.lookup(&[1, 2, 3, 4], Some(0), 3).is_none());
        // but the positions before the first wanted row are lent.
        assert_eq!(p.lookup(&[1, 2, 3, 4], Some(2), 3).unwrap().reuse, 2);
    }

    #[test]
    fn logprob_hits_stop_one_short_of_the_shared_prefix() {
        let mut p = PrefixCache::new(1 << 20);
        let info = |n| {
            Some(
                (0..n)
                    .map(|_| PosInfo {
                        logprob: -1.0,
                        top: vec![],
                        greedy: false,
                    })
                    .collect(),
            )
        };
        p.insert(vec![1, 2, 3, 4], kv(4), info(3));
        // Shares 3 tokens: position 2 predicted token 4, not 7, so reuse 2.
        assert_eq!(p.lookup(&[1, 2, 3, 7, 8], Some(0), 4).unwrap().reuse, 2);
    }

    #[test]
    fn least_recently_used_goes_first_within_the_budget() {
        let one = kv(3).bytes();
        let mut p = PrefixCache::new(2 * one);
        p.insert(vec![1, 1, 1], kv(3), None);
        p.insert(vec![2, 2, 2], kv(3), None);
        assert!(p.lookup(&[1, 1, 1, 5], None, 3).is_some());
        p.insert(vec![3, 3, 3], kv(3), None);
        assert_eq!(p.len(), 2);
        assert!(p.bytes() <= 2 * one);
        assert!(
            p.lookup(&[2, 2, 2, 5], None, 3).is_none(),
            "2 was the oldest"
        );
        assert!(p.lookup(&[1, 1, 1, 5], None, 3).is_some());
        // Covered entries are not kept twice.
        p.insert(vec![1, 1], kv(2), None);
        assert_eq!(p.len(), 2);
    }
}
