//! `cargo bench --bench kernels`: our kernels and end-to-end prefill and
//! decode on SmolLM2, as a table (median of repeated runs). For the
//! comparison with llama.cpp see benches/vs_llamacpp.py.

use infer_eval::engine::{self, GenOptions, Request};
use infer_eval::kernels::{self, attention::AttnShape, quant::WeightFormat};
use infer_eval::sampling::SamplingParams;
use std::time::Instant;

fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[reps / 2]
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 56) as u8) & 0xbf // keep f16 scales finite
        })
        .collect()
}

fn floats(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect()
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let isa = kernels::default_isa().expect("INFER_EVAL_ISA");
    println!("isa {}, {threads} threads", isa.name());
    println!("{:<34} {:>12} {:>12}", "kernel", "median us", "GFLOP/s");
    let row = |name: String, us: f64, flops: f64| {
        println!("{name:<34} {us:>12.1} {:>12.2}", flops / us / 1e3)
    };
    for (fmt, n, k) in [
        (WeightFormat::F32, 576, 576),
        (WeightFormat::Q4_1, 1536, 576),
        (WeightFormat::Q8_0, 1536, 576),
        // The output head: far beyond the caches, so memory speed shows.
        (WeightFormat::Q4_1, 49152, 576),
        (WeightFormat::Q8_0, 49152, 576),
        (WeightFormat::Q4K, 1536, 512),
        (WeightFormat::Q6K, 1536, 512),
        // Gemma 3 270M: Q5_0 where rows of 640 cannot hold K-quant blocks,
        // Q4_K / Q6_K attention output and down projections, the Q8_0
        // 262,144-row tied head.
        (WeightFormat::Q5_0, 2048, 640),
        (WeightFormat::Q4K, 640, 1024),
        (WeightFormat::Q6K, 640, 2048),
        (WeightFormat::Q8_0, 262144, 640),
    ] {
        let w = bytes(fmt.row_bytes(k).unwrap() * n, 1);
        for m in [1usize, 64] {
            let x = floats(m * k);
            let mut out = vec![0f32; m * n];
            let us = median_us(9, || {
                kernels::matmul::matmul(isa, &x, m, k, &w, fmt, n, &mut out)
            });
            row(
                format!("matmul {} {n}x{k}, {m} rows", fmt.name()),
                us,
                2.0 * (m * n * k) as f64,
            );
        }
    }
    let (nh, nkv, hd, pos) = (9, 3, 64, 512);
    let q = floats(nh * hd);
    let kv = floats(pos * nkv * hd);
    let mut o = vec![0f32; nh * hd];
    let us = median_us(9, || {
        kernels::attention::attention(
            isa,
            &q,
            &kv,
            &kv,
            pos - 1,
            AttnShape::causal(nh, nkv, hd),
            &mut o,
        )
    });
    row(
        format!("attention 9 heads, {pos} positions"),
        us,
        4.0 * (nh * hd * pos) as f64,
    );
    let x = floats(64 * 576);
    let w = floats(576);
    let mut y = vec![0f32; 64 * 576];
    let us = median_us(9, || kernels::norm::rms_norm(isa, &x, &w, 1e-5, &mut y));
    row("rmsnorm 64 x 576".into(), us, 3.0 * 64.0 * 576.0);
    let l = floats(49152);
    let us = median_us(9, || {
        std::hint::black_box(kernels::softmax::log_softmax_at(isa, &l, &[7]));
    });
    row("log-softmax 49152".into(), us, 3.0 * 49152.0);

    let path =
        infer_eval::fetch::resolve("llama", &mut |s| eprintln!("{s}")).expect("default model");
    let m = infer_eval::loader::load(&path, &candle_core::Device::Cpu).expect("load");
    let prompt: Vec<u32> = (0..256).map(|i| 100 + (i * 37 % 5000) as u32).collect();
    println!(
        "\n{:<34} {:>12} {:>12}",
        "end to end (SmolLM2 Q4_1)", "prefill t/s", "decode t/s"
    );
    for t in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap();
        let mut pre = Vec::new();
        let mut dec = Vec::new();
        for _ in 0..3 {
            let opts = GenOptions {
                sampling: SamplingParams {
                    max_tokens: 64,
                    ..Default::default()
                },
                ..Default::default()
            };
            let req = [Request {
                id: "b".into(),
                prompt_ids: prompt.clone(),
            }];
            let o = pool
                .install(|| engine::generate(&m.model, &[], &req, &opts, |_| {}).unwrap())
                .remove(0);
            pre.push(prompt.len() as f64 / o.ttft_s);
            dec.push(o.token_times_s.len() as f64 / o.token_times_s.iter().sum::<f64>());
        }
        pre.sort_by(|a, b| a.total_cmp(b));
        dec.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:<34} {:>12.1} {:>12.1}",
            format!("256-token prompt, {t} thread(s)"),
            pre[1],
            dec[1]
        );
    }
}
