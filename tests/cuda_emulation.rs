//! The CUDA kernels (kernels/*.cu) against the CPU kernels, bit for bit,
//! without a GPU: tests/cuda_emulator builds them with g++ over a small CUDA
//! shim (one thread per lane, shuffles through a barrier, the same IEEE
//! operations) and runs each with the launch shapes of src/ops/cuda.rs.
//! What this cannot see (the GPU's own instructions for fma, rint and the f16
//! conversions) is checked on a GPU by scripts/gpu-check.sh.

use infer_eval::kernels::{
    attention::{attention, AttnShape},
    dot::dot,
    elementwise, matmul, norm,
    quant::WeightFormat,
    rope::{self, RopeLayout},
    Isa,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn harness() -> &'static PathBuf {
    static H: OnceLock<PathBuf> = OnceLock::new();
    H.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-emulator-harness");
        let status = Command::new("g++")
            .args([
                "-std=c++20",
                "-O2",
                "-ffp-contract=off",
                "-mf16c",
                "-mfma",
                "-pthread",
            ])
            .arg("-I")
            .arg(root.join("kernels"))
            .arg(root.join("tests/cuda_emulator/harness.cpp"))
            .arg("-o")
            .arg(&out)
            .status()
            .expect("g++ (C++20) is needed to emulate the CUDA kernels");
        assert!(
            status.success(),
            "the CUDA kernels did not build for emulation"
        );
        out
    })
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run(args: &[String], input: &[u8]) -> Vec<f32> {
    let mut child = Command::new(harness())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "harness {args:?} failed");
    out.stdout
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn assert_bits(cuda: &[f32], cpu: &[f32], what: &str) {
    assert_eq!(cuda.len(), cpu.len(), "{what}: lengths");
    let diff = cuda
        .iter()
        .zip(cpu)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = diff {
        panic!(
            "{what}: CUDA kernel differs from the CPU at {i}: {:e} vs {:e}",
            cuda[i], cpu[i]
        );
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn f32(&mut self, scale: f32) -> f32 {
        (self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0) * scale
    }
    fn floats(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(scale)).collect()
    }
    /// Random weight bytes with finite f16 fields (the high exponent bits of
    /// every 2-byte word cleared), as the loader guarantees.
    fn weights(&mut self, n: usize) -> Vec<u8> {
        let mut w: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
        for c in w.chunks_mut(2) {
            if c.len() == 2 {
                c[1] &= 0x3b;
            }
        }
        w
    }
}

const FORMATS: [(WeightFormat, i32); 9] = [
    (WeightFormat::F32, 0),
    (WeightFormat::F16, 1),
    (WeightFormat::BF16, 2),
    (WeightFormat::Q4_0, 3),
    (WeightFormat::Q4_1, 4),
    (WeightFormat::Q8_0, 5),
    (WeightFormat::Q4K, 6),
    (WeightFormat::Q6K, 7),
    (WeightFormat::Q5_0, 8),
];

#[test]
fn matmul_and_gather_match_the_cpu_on_every_format() {
    let mut r = Rng(11);
    let (n, k) = (37, 512);
    for (fmt, id) in FORMATS {
        let rb = fmt.row_bytes(k).unwrap();
        let w = if fmt == WeightFormat::F32 {
            bytes_of(&r.floats(n * k, 1.0))
        } else {
            r.weights(n * rb)
        };
        for m in [1usize, 3] {
            let mut x = r.floats(m * k, 2.0);
            if m == 3 {
                // Edge blocks of the activation quantisation: an infinity, a
                // NaN, and a tiny amax (127/amax overflows) beside zeros;
                // outputs are then NaN or exact zeros, and must still match.
                x[40] = f32::INFINITY;
                x[2 * k + 100] = f32::NAN;
                for v in &mut x[k + 64..k + 96] {
                    *v = 0.0;
                }
                x[k + 70] = 1e-39;
            }
            let mut cpu = vec![0f32; m * n];
            matmul::matmul(Isa::Scalar, &x, m, k, &w, fmt, n, &mut cpu);
            if m == 3 {
                // Finding 8 of issue 11: a non-finite activation is never
                // quantised away: its rows' outputs are all non-finite in
                // every format (NaN for the integer ones, inf or NaN otherwise).
                for t in [0, 2] {
                    assert!(
                        cpu[t * n..(t + 1) * n].iter().all(|v| !v.is_finite()),
                        "{}: row {t} holds a non-finite activation but gives finite outputs",
                        fmt.name()
                    );
                }
            }
            let mut input = w.clone();
            input.extend(bytes_of(&x));
            let args = [
                "matmul",
                &id.to_string(),
                &m.to_string(),
                &n.to_string(),
                &k.to_string(),
            ];
            let cuda = run(&args.map(String::from), &input);
            assert_bits(&cuda, &cpu, &format!("matmul {} with {m} rows", fmt.name()));
        }
        let ids: Vec<u32> = vec![0, 36, 5, 5, 17];
        let mut cpu = vec![0f32; ids.len() * k];
        matmul::gather_rows(&w, fmt, k, &ids, &mut cpu);
        let mut input = w.clone();
        input.extend(ids.iter().flat_map(|i| i.to_le_bytes()));
        let args = [
            "gather",
            &id.to_string(),
            &n.to_string(),
            &k.to_string(),
            "5",
        ];
        let cuda = run(&args.map(String::from), &input);
        assert_bits(&cuda, &cpu, &format!("gather {}", fmt.name()));
    }
}

#[test]
fn norm_rope_and_elementwise_match_the_cpu() {
    let mut r = Rng(12);
    let (rows, n) = (5, 576);
    let x = r.floats(rows * n, 3.0);
    let w = r.floats(n, 1.5);
    let mut cpu = vec![0f32; x.len()];
    norm::rms_norm(Isa::Scalar, &x, &w, 1e-5, &mut cpu);
    let mut input = bytes_of(&x);
    input.extend(bytes_of(&w));
    let cuda = run(&["rms_norm", "5", "576", "1e-5"].map(String::from), &input);
    assert_bits(&cuda, &cpu, "rms_norm");

    let (hd, heads, pos0, table) = (64, 3, 7, 16);
    // Full rotation, and partial (the first 32 of 64 dimensions, as Phi-style
    // models do), on both pair layouts; an attention factor on the tables.
    for rd in [64usize, 32] {
        let freqs = rope::inv_freqs(rd, 10000.0, None, None);
        let (cos, sin) = rope::tables(&freqs, table, if rd == 32 { 1.19 } else { 1.0 });
        for (layout, inter) in [(RopeLayout::Interleaved, "1"), (RopeLayout::Half, "0")] {
            let x = r.floats(rows * heads * hd, 2.0);
            let mut cpu = x.clone();
            rope::apply(
                Isa::Scalar,
                &mut cpu,
                hd,
                rd,
                layout,
                &cos,
                &sin,
                pos0,
                heads * hd,
            );
            let mut input = bytes_of(&x);
            input.extend(bytes_of(&cos));
            input.extend(bytes_of(&sin));
            let args = [
                "rope",
                "5",
                &(heads * hd).to_string(),
                "64",
                &rd.to_string(),
                inter,
                "7",
                "16",
            ];
            let cuda = run(&args.map(String::from), &input);
            assert_bits(&cuda, &cpu, &format!("rope {layout:?}, {rd} of {hd} dims"));
        }
    }

    let mut a = r.floats(1000, 20.0);
    a[3] = 100.0;
    a[4] = -100.0;
    a[5] = 0.0;
    a[6] = -0.0;
    a[7] = 0.3; // tanh's polynomial range
    a[8] = -0.49;
    let b = r.floats(1000, 5.0);
    let mut input = bytes_of(&a);
    input.extend(bytes_of(&b));
    let mut cpu = vec![0f32; 1000];
    elementwise::swiglu(Isa::Scalar, &a, &b, &mut cpu);
    assert_bits(
        &run(&["swiglu", "1000"].map(String::from), &input),
        &cpu,
        "swiglu",
    );
    elementwise::geglu(Isa::Scalar, &a, &b, &mut cpu);
    assert_bits(
        &run(&["geglu", "1000"].map(String::from), &input),
        &cpu,
        "geglu",
    );
    elementwise::add(&a, &b, &mut cpu);
    assert_bits(
        &run(&["add", "1000"].map(String::from), &input),
        &cpu,
        "add",
    );
    elementwise::scale(&a, 25.298_221, &mut cpu);
    assert_bits(
        &run(
            &["scale", "1000", "25.298221"].map(String::from),
            &bytes_of(&a),
        ),
        &cpu,
        "scale",
    );
    elementwise::softcap(Isa::Scalar, &a, 30.0, &mut cpu);
    assert_bits(
        &run(&["softcap", "1000", "30"].map(String::from), &bytes_of(&a)),
        &cpu,
        "softcap",
    );
    let bias = r.floats(40, 1.0);
    let mut cpu = vec![0f32; 1000];
    elementwise::add_bias(&a, &bias, &mut cpu);
    let mut input = bytes_of(&a);
    input.extend(bytes_of(&bias));
    assert_bits(
        &run(&["add_bias", "25", "40"].map(String::from), &input),
        &cpu,
        "add_bias",
    );
}

#[test]
fn attention_matches_the_cpu() {
    let mut r = Rng(13);
    for (hd, rows, pos0, softcap, window, prescaled) in [
        (64, 1, 20, None, None, false),
        (64, 4, 0, None, None, false),
        (40, 3, 9, None, None, false),
        (64, 3, 9, Some(50.0f32), None, true),
        (64, 4, 20, None, Some(5usize), true),
        (40, 2, 3, Some(2.0), Some(1), false),
    ] {
        let shape = AttnShape {
            scale: if prescaled {
                1.0
            } else {
                1.0 / (hd as f32).sqrt()
            },
            softcap,
            window,
            ..AttnShape::causal(6, 2, hd)
        };
        let cap = 32;
        let q = r.floats(rows * 6 * hd, 2.0);
        let k = r.floats(cap * 2 * hd, 2.0);
        let v = r.floats(cap * 2 * hd, 2.0);
        let mut cpu = vec![0f32; q.len()];
        attention(Isa::Scalar, &q, &k, &v, pos0, shape, &mut cpu);
        let mut input = bytes_of(&q);
        input.extend(bytes_of(&k));
        input.extend(bytes_of(&v));
        let args = [
            "attention".to_string(),
            rows.to_string(),
            "6".into(),
            "2".into(),
            hd.to_string(),
            pos0.to_string(),
            cap.to_string(),
            format!("{:e}", shape.scale),
            softcap.unwrap_or(0.0).to_string(),
            window.unwrap_or(0).to_string(),
        ];
        assert_bits(
            &run(&args, &input),
            &cpu,
            &format!(
                "attention hd {hd}, {rows} rows at {pos0}, softcap {softcap:?}, window {window:?}"
            ),
        );
    }
}

/// Finding 9 of issue 11: all-position logits of a 262k vocabulary over a
/// 512-token chunk launch more than 2^32 threads. The emulator runs the
/// blocks on either side of thread 2^31 and 2^32 (and the first and last)
/// of such a launch of `matmul_float` and checks each output they write
/// lands at its own index with the CPU's bits, and nothing else is written.
/// With 32-bit index arithmetic the warp index wraps negative there.
#[test]
fn matmul_indices_past_2_pow_32() {
    let (m, n, k) = (512usize, 263_144usize, 32usize);
    let threads = (m * n * 32) as u64;
    assert!(threads > 1 << 32);
    let per_block = 256u64;
    let last = threads.div_ceil(per_block) - 1;
    let blocks: Vec<u64> = vec![
        0,
        (1u64 << 31) / per_block - 1,
        (1u64 << 31) / per_block,
        (1u64 << 32) / per_block - 1,
        (1u64 << 32) / per_block,
        last,
    ];
    let w = |r: usize| -> Vec<f32> {
        (0..k)
            .map(|c| ((r % 251) as f32 - 125.0) / 64.0 + c as f32 / 32.0)
            .collect()
    };
    let x = |t: usize| -> Vec<f32> {
        (0..k)
            .map(|c| ((t % 13) as f32 - 6.0) / 8.0 + c as f32 / 64.0)
            .collect()
    };
    let mut want = Vec::new();
    for &b in &blocks {
        for warp in 0..per_block / 32 {
            let out = (b * (per_block / 32) + warp) as usize;
            if out < m * n {
                want.push(dot(&w(out % n), &x(out / n)));
            }
        }
    }
    let mut args = vec![
        "matmul_far".to_string(),
        m.to_string(),
        n.to_string(),
        k.to_string(),
    ];
    args.extend(blocks.iter().map(|b| b.to_string()));
    let got = run(&args, &[]);
    let (outs, stray) = got.split_at(got.len() - 1);
    assert_bits(
        outs,
        &want,
        "matmul_float outputs around threads 2^31 and 2^32",
    );
    assert_eq!(
        stray[0], 0.0,
        "outputs written at indices no listed block owns"
    );
}
