//! `bench contrast` on the CPU (feature `contrast`): stock Candle against our
//! engine on SmolLM2. CI runs it with `cargo test --release --features contrast`.
#![cfg(feature = "contrast")]

mod common;

use common::*;

/// Our engine gives the same bits alone and in a batch (a second route to
/// the batching property), and stock Candle is a sane comparison: close
/// logits, and the same top token wherever our top-2 gap is not a near-tie.
/// On the CPU there is no device-vs-CPU comparison to make, and the report
/// says so instead of comparing a result with its own copy.
#[test]
fn contrast_with_stock_candle() {
    let texts: Vec<String> = infer_eval::prompts::builtin()
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    let r = infer_eval::contrast::run(&smollm2_path(), &texts, 12, &candle_core::Device::Cpu)
        .expect("contrast run");
    assert_eq!(r.prompts.len(), texts.len());
    for p in &r.prompts {
        assert_eq!(p.tokens, 12);
        assert_eq!(p.ours_batch_bits_differ, 0, "{p:?}");
        assert_eq!(p.ours_device_vs_cpu_bits_differ, None, "{p:?}");
        assert!(
            p.stock_vs_ours_max_abs.is_finite() && p.stock_vs_ours_max_abs < 3.0,
            "{p:?}"
        );
        assert!(
            p.stock_vs_ours_max_abs > 0.0,
            "stock Candle and ours should not agree to the bit: {p:?}"
        );
        assert!(
            p.stock_vs_ours_same_argmax || p.ours_top2_gap < 2.0 * p.stock_vs_ours_max_abs,
            "stock Candle picks another top token although ours leads by {}: {p:?}",
            p.ours_top2_gap
        );
    }
    let agree = r
        .prompts
        .iter()
        .filter(|p| p.stock_vs_ours_same_argmax)
        .count();
    eprintln!(
        "stock Candle and ours agree on the top token for {agree} of {} prompts",
        r.prompts.len()
    );
    assert!(agree * 2 > r.prompts.len(), "{:?}", r.prompts);
    let e = infer_eval::contrast::run(&smollm2_path(), &texts, 0, &candle_core::Device::Cpu);
    assert!(e.is_err());
}
