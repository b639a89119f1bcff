//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4).
//! A handful of counters, gauges and fixed-bucket histograms: written here
//! in a few lines rather than pulling in a metrics registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Histogram bucket bounds: seconds for latencies, sequences for batches.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            inner: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    pub fn observe(&self, v: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (b, c) in self.bounds.iter().zip(g.0.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        g.1 += v;
        g.2 += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&g.0) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", g.2);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", g.1, g.2);
    }
}

pub struct Metrics {
    /// (path, status) -> requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub queue_depth: AtomicU64,
    pub running: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_full: AtomicU64,
    pub failed_steps: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub prefix_misses: AtomicU64,
    pub prefix_reused_tokens: AtomicU64,
    pub prefix_bytes: AtomicU64,
    pub ttft: Histogram,
    pub inter_token: Histogram,
    batch: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            running: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            failed_steps: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            prefix_misses: AtomicU64::new(0),
            prefix_reused_tokens: AtomicU64::new(0),
            prefix_bytes: AtomicU64::new(0),
            ttft: Histogram::new(LATENCY_BUCKETS),
            inter_token: Histogram::new(LATENCY_BUCKETS),
            batch: Histogram::new(BATCH_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, path: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((path.to_string(), status)).or_insert(0) += 1;
    }

    pub fn observe_batch(&self, n: usize) {
        self.batch.observe(n as f64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP infer_eval_requests_total HTTP requests answered, by path and status.\n# TYPE infer_eval_requests_total counter"
        );
        for ((path, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "infer_eval_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}"
            );
        }
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "infer_eval_prompt_tokens_total",
            "counter",
            "Prompt tokens of accepted choices.",
            g(&self.prompt_tokens),
        );
        one(
            "infer_eval_generated_tokens_total",
            "counter",
            "Tokens generated.",
            g(&self.generated_tokens),
        );
        one(
            "infer_eval_queue_depth",
            "gauge",
            "Sequences waiting for a place in the batch.",
            g(&self.queue_depth),
        );
        one(
            "infer_eval_running_sequences",
            "gauge",
            "Sequences in the running batch.",
            g(&self.running),
        );
        one(
            "infer_eval_cancelled_total",
            "counter",
            "Sequences freed because their client went away.",
            g(&self.cancelled),
        );
        one(
            "infer_eval_rejected_queue_full_total",
            "counter",
            "Requests answered 429 (queue full).",
            g(&self.rejected_full),
        );
        one(
            "infer_eval_failed_steps_total",
            "counter",
            "Forward steps that failed (their sequences got errors).",
            g(&self.failed_steps),
        );
        one(
            "infer_eval_prefix_cache_hits_total",
            "counter",
            "Sequences that started from cached KV.",
            g(&self.prefix_hits),
        );
        one(
            "infer_eval_prefix_cache_misses_total",
            "counter",
            "Sequences with no usable cached prefix.",
            g(&self.prefix_misses),
        );
        one(
            "infer_eval_prefix_cache_reused_tokens_total",
            "counter",
            "Prompt tokens taken from the prefix cache.",
            g(&self.prefix_reused_tokens),
        );
        one(
            "infer_eval_prefix_cache_bytes",
            "gauge",
            "Bytes held by the prefix cache.",
            g(&self.prefix_bytes),
        );
        self.ttft.write(
            &mut out,
            "infer_eval_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first token.",
        );
        self.inter_token.write(
            &mut out,
            "infer_eval_inter_token_seconds",
            "Seconds between consecutive tokens of a choice.",
        );
        self.batch.write(
            &mut out,
            "infer_eval_batch_sequences",
            "Sequences per forward step (batch occupancy).",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.count_request("/v1/completions", 200);
        m.ttft.observe(0.02);
        m.ttft.observe(3.0);
        let t = m.render();
        assert!(t.contains("infer_eval_requests_total{path=\"/v1/completions\",status=\"200\"} 1"));
        assert!(t.contains("infer_eval_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
        assert!(t.contains("infer_eval_time_to_first_token_seconds_bucket{le=\"5\"} 2"));
        assert!(t.contains("infer_eval_time_to_first_token_seconds_count 2"));
    }
}
