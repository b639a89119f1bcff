//! y = x W^T for a weight matrix W of `n` rows stored in any `WeightFormat`.
//!
//! Every output y[t][r] is `dot(dequant(W[r]), x[t])` in the canonical order
//! (for Q4_0, Q4_1 and Q8_0: the integer block product of `qdot`), computed
//! whole by one thread: parallelism is over blocks of output rows
//! only, so neither the thread count nor the number of rows of x (batch size,
//! prefill chunking) can change a bit.

use super::dot::{accumulate, tree};
use super::gemm_int;
use super::multiversion;
use super::pool;
use super::qdot::{self, Q8Row};
use super::quant::{dequantize_row, WeightFormat};
use super::Isa;
use crate::numerics::LANES;

/// Output rows one task computes with several rows of x; fixed, so work
/// splitting never depends on the thread count (and would not change bits
/// even if it did: each output is one whole dot, whoever computes it).
const ROWS_PER_TASK: usize = 16;

/// Rows per task of the integer tile with several rows of x: 8 groups,
/// whose weights stay in L2 while each 3-token tile of x (in L1) meets them.
const TILE_ROWS_PER_TASK: usize = 64;

/// With one row of x (decode) a task takes about this many weight bytes
/// (at least `ROWS_PER_TASK` rows): the weights stream from memory then, and
/// longer runs of consecutive rows keep the hardware prefetcher going.
const DECODE_TASK_BYTES: usize = 32 << 10;

/// From this many rows of x, integer weights are repacked per task for the
/// register tile of `gemm_int` (the repack costs about one row's work).
const GEMM_MIN_ROWS: usize = 2;

multiversion! {
    /// Rows `r0..r0 + rows_out.len()/m` of W against all m rows of x, written
    /// transposed: rows_out[(r - r0) * m + t].
    pub fn rows_kernel(
        fmt: WeightFormat,
        w_rows: &[u8],
        x: &[f32],
        m: usize,
        k: usize,
        rows_out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let rb = w_rows.len() / (rows_out.len() / m);
        for (row, out) in w_rows.chunks_exact(rb).zip(rows_out.chunks_exact_mut(m)) {
            dequantize_row(fmt, row, scratch);
            for (t, o) in out.iter_mut().enumerate() {
                let mut acc = [0f32; LANES];
                accumulate(&mut acc, scratch, &x[t * k..t * k + k]);
                *o = tree(acc);
            }
        }
    }
}

/// The AVX2 twin of `rows_kernel`: same dequantised values, same lane
/// order, each dot whole. With one row of x, K-quant weights go straight into
/// the dot (Q4_K on AVX-512: two rows at a time by nibble lookup); with more,
/// the task's rows are dequantised into `scratch` (one row of k per weight
/// row) and taken against x three rows at a time, so those three stay in L1
/// while the weight rows pass (on AVX-512: the 2 x 3 tile of `gemm_f32`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and AVX-512 F and VL if `avx512`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_kernel_avx2(
    avx512: bool,
    fmt: WeightFormat,
    w_rows: &[u8],
    x: &[f32],
    m: usize,
    k: usize,
    rows_out: &mut [f32],
    scratch: &mut [f32],
) {
    use super::{avx2, avx2_float, gemm_f32};
    let nr = rows_out.len() / m;
    let rb = w_rows.len() / nr;
    if m == 1 && avx512 && fmt == WeightFormat::Q4K {
        for (i, out) in rows_out.chunks_mut(2).enumerate() {
            let w = &w_rows[2 * i * rb..];
            match out {
                [a, b] => [*a, *b] = gemm_f32::q4k_dots([&w[..rb], &w[rb..2 * rb]], x),
                [a] => [*a] = gemm_f32::q4k_dots([&w[..rb]], x),
                _ => unreachable!("chunks of 1 or 2"),
            }
        }
        return;
    }
    if m == 1 {
        for (row, out) in w_rows.chunks_exact(rb).zip(rows_out.iter_mut()) {
            avx2::prefetch_ahead(row);
            *out = match avx2_float::dequantized_dot(fmt, row, x) {
                Some(v) => v,
                None => {
                    avx2_float::dequantize_row(fmt, row, &mut scratch[..k]);
                    avx2::dot(&scratch[..k], x)
                }
            };
        }
        return;
    }
    for (row, dq) in w_rows.chunks_exact(rb).zip(scratch.chunks_exact_mut(k)) {
        avx2::prefetch_ahead(row);
        avx2_float::dequantize_row(fmt, row, dq);
    }
    if avx512 && k % 32 == 0 {
        return gemm_f32::rows(&scratch[..nr * k], x, m, k, rows_out);
    }
    let xr = |t: usize| &x[t * k..t * k + k];
    let mut t = 0;
    while t < m {
        let g = (m - t).min(3);
        for (r, wr) in scratch[..nr * k].chunks_exact(k).enumerate() {
            let o = &mut rows_out[r * m + t..r * m + t + g];
            match g {
                3 => o.copy_from_slice(&avx2_float::dots::<3>(wr, [xr(t), xr(t + 1), xr(t + 2)])),
                2 => o.copy_from_slice(&avx2_float::dots::<2>(wr, [xr(t), xr(t + 1)])),
                _ => o[0] = avx2::dot(wr, xr(t)),
            }
        }
        t += g;
    }
}

#[allow(clippy::too_many_arguments)]
fn rows(
    isa: Isa,
    fmt: WeightFormat,
    w_rows: &[u8],
    x: &[f32],
    m: usize,
    k: usize,
    rows_out: &mut [f32],
    scratch: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: matmul checked that the CPU has the ISA (avx2, fma, f16c at
        // least; AVX-512 F and VL for Isa::Avx512).
        return unsafe {
            rows_kernel_avx2(isa == Isa::Avx512, fmt, w_rows, x, m, k, rows_out, scratch)
        };
    }
    rows_kernel(
        Isa::Scalar,
        fmt,
        w_rows,
        x,
        m,
        k,
        rows_out,
        &mut scratch[..k],
    )
}

/// Integer-format rows (Q4_0, Q4_1, Q5_0, Q8_0) against quantised rows of x.
fn rows_int(isa: Isa, fmt: WeightFormat, w_rows: &[u8], xs: &[Q8Row], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let code = match fmt {
            WeightFormat::Q4_0 => 0,
            WeightFormat::Q4_1 => 1,
            WeightFormat::Q5_0 => 3,
            _ => 2,
        };
        match isa {
            // SAFETY: matmul checked that the CPU has the ISA's features.
            Isa::Avx512 => return unsafe { super::avx2::rows_int_vnni(code, w_rows, xs, k, out) },
            Isa::Avx2 => return unsafe { super::avx2::rows_int(code, w_rows, xs, k, out) },
            Isa::Scalar => {}
        }
    }
    qdot::rows(fmt, w_rows, xs, k, out)
}

/// out[t * n + r] = dot(dequant(W[r]), x[t * k ..]) for t < m, r < n, with
/// the code of `isa` (the same bits on every ISA). W in the GGUF layout.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u8],
    fmt: WeightFormat,
    n: usize,
    out: &mut [f32],
) {
    matmul_layout(isa, x, m, k, w, fmt, n, false, out)
}

/// `matmul` with W in the interleaved layout of `gemm_int` (`gemm_int::pack`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_interleaved(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u8],
    fmt: WeightFormat,
    n: usize,
    out: &mut [f32],
) {
    assert!(
        gemm_int::packable(fmt, n),
        "{n} rows of {} are not interleaved",
        fmt.name()
    );
    matmul_layout(isa, x, m, k, w, fmt, n, true, out)
}

#[allow(clippy::too_many_arguments)]
fn matmul_layout(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[u8],
    fmt: WeightFormat,
    n: usize,
    interleaved: bool,
    out: &mut [f32],
) {
    let rb = fmt.row_bytes(k).expect("row length checked at load");
    assert_eq!(w.len(), rb * n, "weight bytes");
    assert_eq!(x.len(), m * k, "input shape");
    assert_eq!(out.len(), m * n, "output shape");
    isa.assert_available();
    if m == 0 || n == 0 {
        return;
    }
    // Each task computes its rows of W against every row of x as [row][t]
    // and writes them to its columns of `out` ([t][row]).
    let xs: Vec<Q8Row> = if qdot::is_integer_format(fmt) {
        // Activations are quantised once per call (in parallel, 8 rows a
        // task); each row's result depends only on its own row.
        let mut xs = vec![
            Q8Row {
                d: Vec::new(),
                s: Vec::new(),
                q: Vec::new(),
            };
            m
        ];
        pool::for_each_chunk_mut(&mut xs, 8, |i, part| {
            for (j, r) in part.iter_mut().enumerate() {
                let t = i * 8 + j;
                *r = qdot::quantize_row(isa, &x[t * k..t * k + k]);
            }
        });
        xs
    } else {
        Vec::new()
    };
    // The interleaved tile: always for interleaved weights, and for GGUF
    // ones (repacked per task) from GEMM_MIN_ROWS rows of x.
    let tile = isa != Isa::Scalar
        && (interleaved || (m >= GEMM_MIN_ROWS && gemm_int::packable(fmt, gemm_int::GROUP)));
    let offs: Vec<Vec<i32>> = if tile {
        xs.iter().map(|x| gemm_int::lane_offsets(fmt, x)).collect()
    } else {
        Vec::new()
    };
    let rows_per_task = if m == 1 {
        (DECODE_TASK_BYTES / rb)
            .max(ROWS_PER_TASK)
            .next_multiple_of(gemm_int::GROUP)
    } else if tile {
        TILE_ROWS_PER_TASK
    } else {
        ROWS_PER_TASK
    };
    // The tile writes straight into the task's output columns, out[t][r].
    let tile_task = |i: usize, cols: &mut [&mut [f32]]| {
        let r0 = i * rows_per_task;
        let nr = cols[0].len();
        // The groups of interleaved rows r0.. start where row r0 would.
        let wr = &w[r0 * rb..(r0 + nr) * rb];
        let packed;
        let wt = if interleaved {
            wr
        } else {
            packed = gemm_int::pack_padded(fmt, wr, k);
            &packed[..]
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: matmul checked that the CPU has the ISA's features.
        unsafe {
            match isa {
                Isa::Avx512 => gemm_int::rows_vnni(fmt, wt, nr, &xs, &offs, k, cols),
                _ => gemm_int::rows_avx2(fmt, wt, nr, &xs, &offs, k, cols),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "the tile is x86 code ({} bytes, {} rows)",
            wt.len(),
            cols.len()
        )
    };
    // Everything else computes [row][t] and is transposed into place.
    let task = |i: usize, o: &mut [f32]| {
        let r0 = i * rows_per_task;
        let nr = o.len() / m;
        let wr = &w[r0 * rb..(r0 + nr) * rb];
        if interleaved {
            gemm_int::rows_portable(fmt, wr, nr, &xs, k, o)
        } else if qdot::is_integer_format(fmt) {
            rows_int(isa, fmt, wr, &xs, k, o)
        } else {
            // One dequantised row of k per weight row (see rows_kernel_avx2).
            let mut scratch = vec![0f32; if m == 1 { k } else { k * nr }];
            rows(isa, fmt, wr, x, m, k, o, &mut scratch)
        }
    };
    if m == 1 {
        if tile {
            pool::for_each_chunk_mut(out, rows_per_task, |i, o| tile_task(i, &mut [o]));
        } else {
            pool::for_each_chunk_mut(out, rows_per_task, task);
        }
        return;
    }
    pool::for_each_column_block_mut(out, n, rows_per_task, |i, cols| {
        if tile {
            return tile_task(i, cols);
        }
        let nr = cols[0].len();
        let mut o = vec![0f32; nr * m];
        task(i, &mut o);
        for (t, col) in cols.iter_mut().enumerate() {
            for (j, c) in col.iter_mut().enumerate() {
                *c = o[j * m + t];
            }
        }
    });
}

/// Dequantise selected rows (an embedding lookup): out[i] = dequant(W[ids[i]]).
pub fn gather_rows(w: &[u8], fmt: WeightFormat, k: usize, ids: &[u32], out: &mut [f32]) {
    let rb = fmt.row_bytes(k).expect("row length checked at load");
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(k)) {
        let id = id as usize;
        dequantize_row(fmt, &w[id * rb..id * rb + rb], o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dot::dot;

    /// Deterministic test data from a 64-bit LCG's top byte.
    struct Bytes(u64);

    impl Bytes {
        fn byte(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 56) as u8
        }

        /// Random weight bytes, with the high exponent bits of every 2-byte
        /// word cleared so that f16/f32 scales stay finite.
        fn weights(&mut self, len: usize) -> Vec<u8> {
            let mut w: Vec<u8> = (0..len).map(|_| self.byte()).collect();
            for c in w.chunks_mut(2) {
                c[1] &= 0x3b;
            }
            w
        }

        /// Activations in [-2, 2).
        fn x(&mut self, len: usize) -> Vec<f32> {
            (0..len)
                .map(|_| (self.byte() as f32 - 128.0) / 64.0)
                .collect()
        }
    }

    /// `matmul` equals the reference definition, bit for bit, on random
    /// weights of every format, for 1 to 7 rows of x, on every ISA.
    #[test]
    fn matmul_matches_reference_on_every_format_and_isa() {
        let mut rng = Bytes(77);
        let (n, k) = (37, 512);
        let formats = [
            WeightFormat::F32,
            WeightFormat::F16,
            WeightFormat::BF16,
            WeightFormat::Q4_0,
            WeightFormat::Q4_1,
            WeightFormat::Q5_0,
            WeightFormat::Q8_0,
            WeightFormat::Q4K,
            WeightFormat::Q6K,
        ];
        for fmt in formats {
            let rb = fmt.row_bytes(k).unwrap();
            let w = rng.weights(n * rb);
            for m in 1..=7 {
                let x = rng.x(m * k);
                let mut want = vec![0f32; m * n];
                let mut scratch = vec![0f32; k];
                for (r, row) in w.chunks_exact(rb).enumerate() {
                    dequantize_row(fmt, row, &mut scratch);
                    for t in 0..m {
                        let xt = &x[t * k..t * k + k];
                        want[t * n + r] = if qdot::is_integer_format(fmt) {
                            qdot::dot(fmt, row, &qdot::quantize_row(Isa::Scalar, xt))
                        } else {
                            dot(&scratch, xt)
                        };
                    }
                }
                for isa in Isa::under_test() {
                    let mut got = vec![0f32; m * n];
                    matmul(isa, &x, m, k, &w, fmt, n, &mut got);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{} on {} with {m} rows differs from the reference",
                        fmt.name(),
                        isa.name()
                    );
                }
            }
        }
        eprintln!(
            "matmul: compared {} with the scalar reference definition",
            Isa::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// Interleaved weights (`gemm_int::pack`, as loaded for the CPU) give
    /// the reference bits too, on every ISA, for 1 to 7 rows of x, with a
    /// NaN in one activation block (its outputs NaN, the others not).
    #[test]
    fn interleaved_matmul_matches_reference() {
        let mut rng = Bytes(5);
        let n = 48;
        // 2112 columns: 66 blocks, three column passes of the prefill tile.
        for (fmt, k) in [
            (WeightFormat::Q4_0, 320),
            (WeightFormat::Q4_1, 320),
            (WeightFormat::Q8_0, 320),
            (WeightFormat::Q4_0, 2112),
            (WeightFormat::Q4_1, 2112),
            (WeightFormat::Q8_0, 2112),
        ] {
            let rb = fmt.row_bytes(k).unwrap();
            let w = rng.weights(n * rb);
            let packed = gemm_int::pack(fmt, &w, n, k);
            for m in 1..=7 {
                let mut x = rng.x(m * k);
                if m == 5 {
                    x[3 * k + k - 40] = f32::NAN;
                }
                let mut want = vec![0f32; m * n];
                matmul(Isa::Scalar, &x, m, k, &w, fmt, n, &mut want);
                for isa in Isa::under_test() {
                    let mut got = vec![0f32; m * n];
                    matmul_interleaved(isa, &x, m, k, &packed, fmt, n, &mut got);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{} on {}, {m} rows, output {i}",
                            fmt.name(),
                            isa.name()
                        );
                    }
                }
                if m == 5 {
                    assert!(want[3 * n..4 * n].iter().all(|v| v.is_nan()));
                    assert!(want[..3 * n].iter().all(|v| v.is_finite()));
                }
            }
        }
    }

    /// The float tile carries its accumulators across column passes (k past
    /// gemm_f32's 1024): still `dot` of each row, bit for bit, on every ISA.
    #[test]
    fn long_rows_match_reference() {
        let mut rng = Bytes(11);
        for (fmt, k) in [
            (WeightFormat::Q4K, 1280),
            (WeightFormat::F16, 2080),
            (WeightFormat::Q6K, 2304),
        ] {
            let n = 5;
            let rb = fmt.row_bytes(k).unwrap();
            let w = rng.weights(n * rb);
            let m = 4;
            let x = rng.x(m * k);
            let mut want = vec![0f32; m * n];
            let mut row = vec![0f32; k];
            for (r, wr) in w.chunks_exact(rb).enumerate() {
                dequantize_row(fmt, wr, &mut row);
                for t in 0..m {
                    want[t * n + r] = dot(&row, &x[t * k..t * k + k]);
                }
            }
            for isa in Isa::under_test() {
                let mut got = vec![0f32; m * n];
                matmul(isa, &x, m, k, &w, fmt, n, &mut got);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{} k={k} on {}, output {i}",
                        fmt.name(),
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn rows_are_independent_of_batch() {
        let (n, k) = (37, 96);
        let mut s = 9u32;
        let mut r = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let wf: Vec<f32> = (0..n * k).map(|_| r()).collect();
        let w: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x: Vec<f32> = (0..5 * k).map(|_| r()).collect();
        let mut all = vec![0f32; 5 * n];
        let isa = Isa::detect();
        matmul(isa, &x, 5, k, &w, WeightFormat::F32, n, &mut all);
        for t in 0..5 {
            let mut one = vec![0f32; n];
            matmul(
                isa,
                &x[t * k..(t + 1) * k],
                1,
                k,
                &w,
                WeightFormat::F32,
                n,
                &mut one,
            );
            for j in 0..n {
                assert_eq!(one[j].to_bits(), all[t * n + j].to_bits());
                let want = dot(&wf[j * k..(j + 1) * k], &x[t * k..(t + 1) * k]);
                assert_eq!(one[j].to_bits(), want.to_bits());
            }
        }
    }
}
