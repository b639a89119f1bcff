//! `infer-eval report`: one self-contained HTML page (inline CSS and SVG,
//! no script, nothing fetched) for a run, or for two runs with the paired
//! comparison `diff` computes. A layer above `eval`: it reads run data.

pub mod charts;

use crate::error::{Error, Result};
use crate::eval::compare::{FirstDifference, RunData, RunDiff};
use crate::record::flat::flatten;
use charts::IntervalSeries;
use std::fmt::Write;

/// `<`, `>`, `&` and quotes as entities.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px;word-break:break-all}
tr.differs td{background:#fff3cd}.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:8px 0}
figcaption{font-size:12px;color:#555;max-width:740px}.badge{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600}
.same{background:#d4edda;color:#155724}.differ{background:#f8d7da;color:#721c24}.a{color:#1f77b4}.b{color:#ff7f0e}";

fn figure(id: &str, svg: &str, caption: &str) -> String {
    format!(
        "<figure class=\"chart\" id=\"{id}\">{svg}<figcaption>{}</figcaption></figure>\n",
        escape(caption)
    )
}

fn chart(r: std::result::Result<String, String>) -> Result<String> {
    r.map_err(Error::Input)
}

fn summary(out: &mut String, runs: &[&RunData]) {
    out.push_str("<table><tr><th></th>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            out,
            "<th class=\"{}\">run {}</th>",
            ["a", "b"][i],
            ["A", "B"][i]
        );
        let _ = r;
    }
    out.push_str("</tr>");
    type Row = (&'static str, fn(&RunData) -> String);
    let rows: [Row; 8] = [
        ("folder", |r| r.label.clone()),
        ("run name", |r| r.manifest.run_name.clone()),
        ("run digest", |r| r.manifest.run_digest.clone()),
        ("model", |r| {
            format!(
                "{} ({}, sha256 {})",
                r.manifest.model.name, r.manifest.model.format, r.manifest.model.sha256
            )
        }),
        ("samples", |r| r.manifest.n_samples.to_string()),
        ("determinism version", |r| {
            r.manifest.determinism_version.to_string()
        }),
        ("infer-eval", |r| {
            format!(
                "{} ({})",
                r.manifest.infer_eval_version, r.manifest.environment.git_sha
            )
        }),
        ("config sha256", |r| r.manifest.config_sha256.clone()),
    ];
    for (name, f) in rows {
        let vals: Vec<String> = runs.iter().map(|r| f(r)).collect();
        let differs = vals.windows(2).any(|w| w[0] != w[1]);
        let _ = write!(
            out,
            "<tr{}><th>{name}</th>",
            if differs { " class=\"differs\"" } else { "" }
        );
        for v in vals {
            let _ = write!(out, "<td><code>{}</code></td>", escape(&v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

fn ci(e: &crate::eval::score::Estimate) -> String {
    format!("{:.3} [{:.3}, {:.3}]", e.mean, e.ci_low, e.ci_high)
}

/// Perplexity tasks (lm-eval loglikelihood_rolling): their figures per run.
fn perplexity(out: &mut String, runs: &[&RunData]) {
    let mut rows = String::new();
    let labels = ["run A", "run B"];
    for (i, r) in runs.iter().enumerate() {
        for (n, d) in &r.metrics.datasets {
            if let Some(p) = &d.perplexity {
                let _ = write!(
                    rows,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.5}</td><td class=\"num\">{:.5}</td></tr>",
                    escape(n), labels[i], d.accuracy.n, p.tokens, p.token_perplexity, p.word_perplexity, p.byte_perplexity, p.bits_per_byte
                );
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    out.push_str("<h2>Perplexity per task</h2>\n<table><tr><th>task</th><th>run</th><th>documents</th><th>tokens</th><th>token perplexity</th><th>word perplexity</th><th>byte perplexity</th><th>bits per byte</th></tr>");
    out.push_str(&rows);
    out.push_str("</table>\n");
}

fn accuracy(out: &mut String, runs: &[&RunData]) -> Result<()> {
    perplexity(out, runs);
    // Perplexity tasks have no accuracy to show.
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        for (k, d) in &r.metrics.datasets {
            if d.perplexity.is_none() && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let labels = ["run A", "run B"];
    let series: Vec<IntervalSeries> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| IntervalSeries {
            label: labels[i],
            rows: names
                .iter()
                .map(|n| {
                    r.metrics
                        .datasets
                        .get(n)
                        .map(|d| (d.accuracy.mean, d.accuracy.ci_low, d.accuracy.ci_high))
                })
                .collect(),
        })
        .collect();
    out.push_str("<h2>Accuracy per task</h2>\n");
    out.push_str(&figure(
        "accuracy",
        &chart(charts::intervals("Accuracy per task", &names, &series))?,
        "Mean accuracy per task with its 95% percentile-bootstrap interval (fixed-key resampling, so the interval is reproducible).",
    ));
    out.push_str("<table><tr><th>task</th><th>kind</th>");
    for l in &labels[..runs.len()] {
        let _ = write!(
            out,
            "<th>n ({l})</th><th>accuracy [95% CI] ({l})</th><th>acc_norm ({l})</th>"
        );
    }
    out.push_str("</tr>");
    for n in &names {
        let kind = runs
            .iter()
            .find_map(|r| r.metrics.datasets.get(n))
            .map(|d| {
                serde_json::to_value(d.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", escape(n), escape(&kind));
        for r in runs {
            match r.metrics.datasets.get(n) {
                Some(d) => {
                    let _ = write!(
                        out,
                        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                        d.accuracy.n,
                        ci(&d.accuracy),
                        d.accuracy_norm.as_ref().map(ci).unwrap_or_else(|| "-".into())
                    );
                }
                None => out.push_str("<td>-</td><td>-</td><td>-</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
    Ok(())
}

fn latency(out: &mut String, runs: &[&RunData]) -> Result<()> {
    out.push_str("<h2>Latency</h2>\n<div class=\"figs\">\n");
    let labels = ["run A", "run B"];
    let ttft: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            r.samples
                .iter()
                .filter(|s| !s.cached)
                .map(|s| s.latency.ttft_ms)
                .collect()
        })
        .collect();
    let tok: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            r.samples
                .iter()
                .filter(|s| !s.cached)
                .flat_map(|s| s.latency.token_ms.iter().copied())
                .collect()
        })
        .collect();
    let series = |v: &[Vec<f64>]| -> Vec<(&str, Vec<f64>)> {
        labels.iter().copied().zip(v.iter().cloned()).collect()
    };
    for (id, title, data) in [
        ("ttft", "Time to first token (ms)", series(&ttft)),
        ("per-token", "Time per output token (ms)", series(&tok)),
    ] {
        let refs: Vec<(&str, &[f64])> = data.iter().map(|(l, v)| (*l, v.as_slice())).collect();
        out.push_str(&figure(
            id,
            &chart(charts::histogram(
                title,
                "milliseconds",
                &refs,
                charts::Binning::Equal(24),
            ))?,
            &format!(
                "{title}: {}",
                data.iter()
                    .map(|(l, v)| format!("{l} {} values", v.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out.push_str("</div>\n<table><tr><th>percentile</th>");
    for l in &labels[..runs.len()] {
        let _ = write!(out, "<th>TTFT ms ({l})</th><th>per token ms ({l})</th>");
    }
    out.push_str("</tr>");
    for (q, f) in [
        (
            "p50",
            (|p: &crate::eval::score::Percentiles| p.p50) as fn(&_) -> f64,
        ),
        ("p90", |p| p.p90),
        ("p95", |p| p.p95),
        ("p99", |p| p.p99),
    ] {
        let _ = write!(out, "<tr><th>{q}</th>");
        for r in runs {
            let _ = write!(
                out,
                "<td class=\"num\">{:.2}</td><td class=\"num\">{:.2}</td>",
                f(&r.metrics.ttft_ms),
                f(&r.metrics.tpot_ms)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
    let _ = writeln!(
        out,
        "<p>{}</p>",
        runs.iter()
            .zip(labels)
            .map(|(r, l)| format!(
                "{l}: {:.2} samples/s, {:.1} tokens/s",
                r.metrics.samples_per_s, r.metrics.tokens_per_s
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

fn environment(out: &mut String, runs: &[&RunData]) {
    out.push_str("<h2>Environment</h2>\n<table><tr><th>field</th>");
    for l in &["run A", "run B"][..runs.len()] {
        let _ = write!(out, "<th>{l}</th>");
    }
    out.push_str("</tr>");
    let flats: Vec<Vec<(String, String)>> = runs
        .iter()
        .map(|r| flatten(&serde_json::to_value(&r.manifest.environment).expect("serializes")))
        .collect();
    let mut keys: Vec<&String> = flats.iter().flatten().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let vals: Vec<String> = flats
            .iter()
            .map(|f| {
                f.iter()
                    .find(|(a, _)| a == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "(absent)".into())
            })
            .collect();
        let differs = vals.windows(2).any(|w| w[0] != w[1]);
        let _ = write!(
            out,
            "<tr{}><th>{}</th>",
            if differs { " class=\"differs\"" } else { "" },
            escape(k)
        );
        for v in vals {
            let _ = write!(out, "<td><code>{}</code></td>", escape(&v));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

/// The paired comparison of two runs.
fn comparison(out: &mut String, d: &RunDiff) -> Result<()> {
    out.push_str("<h2>Comparison (B against A)</h2>\n");
    let same = d.digest_a == d.digest_b;
    let _ = writeln!(
        out,
        "<p><span class=\"badge {}\">{}</span> {} samples differ, {} only in A, {} only in B; {} config keys and {} environment fields differ.</p>",
        if same { "same" } else { "differ" },
        if same { "run digests identical" } else { "run digests differ" },
        d.changed_samples.len(),
        d.only_in_a.len(),
        d.only_in_b.len(),
        d.config.len(),
        d.environment.len()
    );
    out.push_str("<table><tr><th>task</th><th>pairs</th><th>A</th><th>B</th><th>B &minus; A [95% CI]</th><th>right in A only</th><th>right in B only</th><th>McNemar exact p</th><th>verdict</th></tr>");
    for m in &d.metrics {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:+.3} [{:+.3}, {:+.3}]</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td>{}</td></tr>",
            escape(&m.dataset), m.n_pairs, m.a, m.b, m.b - m.a, m.delta.ci_low, m.delta.ci_high, m.a_only, m.b_only, m.p_value,
            if m.significant() { "significant (p &lt; 0.05)" } else { "within noise" }
        );
    }
    out.push_str("</table>\n");
    if !d.config.is_empty() {
        out.push_str("<h3>Config differences</h3><table><tr><th>key</th><th>A</th><th>B</th></tr>");
        for (k, a, b) in &d.config {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                escape(k),
                escape(a),
                escape(b)
            );
        }
        out.push_str("</table>\n");
    }
    let positions: Vec<f64> = d
        .changed_samples
        .iter()
        .filter_map(|(_, f)| match f {
            Some(FirstDifference::Token {
                position: Some(p), ..
            }) => Some(*p as f64),
            _ => None,
        })
        .collect();
    let loglik = d
        .changed_samples
        .iter()
        .filter(|(_, f)| matches!(f, Some(FirstDifference::Loglik { .. })))
        .count();
    out.push_str(&figure(
        "divergence",
        &chart(charts::histogram(
            "Where outputs first diverge",
            "output token position of the first differing token",
            &[("generated samples", &positions)],
            charts::Binning::Integers,
        ))?,
        &format!(
            "{} generated samples whose tokens differ, by the position of the first differing token; {loglik} multiple-choice samples whose log-likelihoods differ.",
            positions.len()
        ),
    ));
    if !d.changed_samples.is_empty() {
        const SHOWN: usize = 500;
        let _ = write!(
            out,
            "<h3>Changed samples{}</h3><table><tr><th>sample</th><th>first divergence position</th><th>first difference</th></tr>",
            if d.changed_samples.len() > SHOWN { format!(" (first {SHOWN} of {})", d.changed_samples.len()) } else { String::new() }
        );
        for (id, f) in d.changed_samples.iter().take(SHOWN) {
            let pos = match f {
                Some(FirstDifference::Token {
                    position: Some(p), ..
                }) => p.to_string(),
                Some(FirstDifference::Token { position: None, .. }) => "(logits only)".into(),
                Some(FirstDifference::Loglik { choice, .. }) => format!("choice {choice}"),
                _ => "-".into(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(id),
                escape(&pos),
                escape(&f.as_ref().map(|f| f.to_string()).unwrap_or_default())
            );
        }
        out.push_str("</table>\n");
    }
    Ok(())
}

/// The report page for run `a`, and with `b` the comparison of the two.
pub fn render(a: &RunData, b: Option<(&RunData, &RunDiff)>) -> Result<String> {
    let mut runs = vec![a];
    if let Some((r, _)) = b {
        runs.push(r);
    }
    let mut out = String::new();
    let title = match b {
        None => format!("infer-eval report: {}", a.manifest.run_name),
        Some(_) => format!(
            "infer-eval report: {} against {}",
            a.manifest.run_name, runs[1].manifest.run_name
        ),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    summary(&mut out, &runs);
    if let Some((_, d)) = b {
        comparison(&mut out, d)?;
    }
    accuracy(&mut out, &runs)?;
    latency(&mut out, &runs)?;
    environment(&mut out, &runs);
    let _ = write!(
        out,
        "<p style=\"font-size:12px;color:#777\">Written by infer-eval {} (determinism version {}). Everything on this page is in this one file.</p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        crate::DETERMINISM_VERSION
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_is_escaped() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
