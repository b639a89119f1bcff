//! Prefill GEMM for the integer formats (Q4_0, Q4_1, Q5_0, Q8_0): several
//! rows of x against a task's weight rows, with exactly the operations of
//! `qdot::dot` (docs/DETERMINISM.md §3b), so every output has the same bits
//! as the one-row kernel.
//!
//! A task's rows are first repacked, 8 rows to a group, into the layout the
//! register tile wants: for each block b and canonical lane l (elements
//! 4l..4l+3), the 4 weight integers of each of the 8 rows side by side (32
//! bytes, one register), and the 8 rows' scales as f32. A register then holds
//! lane l of 8 different outputs, so:
//!
//! - one broadcast of 4 activation bytes serves 8 rows, and one product of
//!   the rows' `d_w` with the token's `d_x` serves all 8 lanes of a block;
//! - the weights are unpacked once per call, not once per token;
//! - the integer lane sums need no sign trick: Q4_0 and Q5_0 weights are
//!   stored unsigned (q, not q - 8) and the offset comes back exactly as
//!   `-8 * sum(x)` (`-16` for Q5_0), summed once per token and added in
//!   integers; Q8_0 runs x + 128 against the signed weights and takes back
//!   `128 * sum(w)`, summed once per row. Integer sums are exact, so each
//!   lane's `isum_l` is the same integer as `qdot`'s;
//! - the canonical tree (l += l + 4, l += l + 2, 0 + 1) is three vector adds
//!   across the 8 lane registers, giving 8 rows' outputs at once.
//!
//! Each output still gets `acc_l = fma(d_w * d_x, float(isum_l), acc_l)` in
//! block order and the same tree, so the bits do not change; only how many
//! outputs share an instruction does.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::qdot::Q8Row;
use super::quant::WeightFormat;

/// Rows per repacked group: the 8 lanes of a 256-bit register.
pub const GROUP: usize = 8;

/// The format as a const-generic code: 0 Q4_0, 1 Q4_1, 2 Q8_0, 3 Q5_0.
pub fn code(fmt: WeightFormat) -> u8 {
    match fmt {
        WeightFormat::Q4_0 => 0,
        WeightFormat::Q4_1 => 1,
        WeightFormat::Q5_0 => 3,
        _ => 2,
    }
}

/// What the tile needs of one quantised activation row beyond `Q8Row`.
pub struct XPrep {
    /// Q4_0, Q5_0: per 4-element lane, -offset * sum of its q (the integer
    /// that turns sum(q_w * q_x) into sum((q_w - offset) * q_x)).
    corr: Vec<i32>,
    /// Q8_0: q + 128 as unsigned bytes.
    xu: Vec<u8>,
}

/// The per-row extras of `x` for format `fmt`.
pub fn prepare(fmt: WeightFormat, x: &Q8Row) -> XPrep {
    let offset = match fmt {
        WeightFormat::Q4_0 => 8,
        WeightFormat::Q5_0 => 16,
        _ => 0,
    };
    let corr = if offset != 0 {
        x.q.chunks_exact(4)
            .map(|c| -offset * c.iter().map(|&v| v as i32).sum::<i32>())
            .collect()
    } else {
        Vec::new()
    };
    let xu = if fmt == WeightFormat::Q8_0 {
        x.q.iter().map(|&v| (v as u8) ^ 0x80).collect()
    } else {
        Vec::new()
    };
    XPrep { corr, xu }
}

/// A task's weight rows in groups of 8 (see the module comment).
pub struct Packed {
    groups: usize,
    nb: usize,
    /// [group][block][lane][row][4] bytes.
    w: Vec<u8>,
    /// [group][block][row] d_w.
    dw: Vec<f32>,
    /// [group][block][row] m_w (Q4_1).
    mw: Vec<f32>,
    /// [group][block][lane][row] -128 * sum of the lane's w (Q8_0).
    cw: Vec<i32>,
}

/// Repack `w_rows` (whole rows of k columns in `fmt`); a last partial group
/// is padded with zero rows whose outputs are never written.
pub fn pack(fmt: WeightFormat, w_rows: &[u8], k: usize) -> Packed {
    let rb = fmt.row_bytes(k).expect("checked at load");
    let nr = w_rows.len() / rb;
    let nb = k / 32;
    let groups = nr.div_ceil(GROUP);
    let mut p = Packed {
        groups,
        nb,
        w: vec![0; groups * nb * 8 * GROUP * 4],
        dw: vec![0.0; groups * nb * GROUP],
        mw: if fmt == WeightFormat::Q4_1 {
            vec![0.0; groups * nb * GROUP]
        } else {
            Vec::new()
        },
        cw: if fmt == WeightFormat::Q8_0 {
            vec![0; groups * nb * 8 * GROUP]
        } else {
            Vec::new()
        },
    };
    let bb = fmt.block_bytes();
    let f16 = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    for (r, row) in w_rows.chunks_exact(rb).enumerate() {
        let (g, rr) = (r / GROUP, r % GROUP);
        for (b, blk) in row.chunks_exact(bb).enumerate() {
            let gb = g * nb + b;
            p.dw[gb * GROUP + rr] = f16(blk, 0);
            // lane l's 4 bytes for this row
            let dst = |l: usize| ((gb * 8 + l) * GROUP + rr) * 4;
            match fmt {
                WeightFormat::Q8_0 => {
                    for l in 0..8 {
                        let q = &blk[2 + 4 * l..6 + 4 * l];
                        p.w[dst(l)..dst(l) + 4].copy_from_slice(q);
                        let sum: i32 = q.iter().map(|&v| v as i8 as i32).sum();
                        p.cw[(gb * 8 + l) * GROUP + rr] = -128 * sum;
                    }
                }
                WeightFormat::Q5_0 => {
                    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                    for j in 0..16 {
                        let lo = (blk[6 + j] & 0xF) | (((qh >> j) & 1) << 4) as u8;
                        let hi = (blk[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                        p.w[dst(j / 4) + j % 4] = lo;
                        p.w[dst(j / 4 + 4) + j % 4] = hi;
                    }
                }
                _ => {
                    // Q4_0 (stored q; the -8 comes back through XPrep) and Q4_1
                    let off = if fmt == WeightFormat::Q4_1 {
                        p.mw[gb * GROUP + rr] = f16(blk, 2);
                        4
                    } else {
                        2
                    };
                    for l in 0..4 {
                        let q = u32::from_le_bytes(
                            blk[off + 4 * l..off + 4 * l + 4].try_into().unwrap(),
                        );
                        let (lo, hi) = (q & 0x0F0F_0F0F, (q >> 4) & 0x0F0F_0F0F);
                        p.w[dst(l)..dst(l) + 4].copy_from_slice(&lo.to_le_bytes());
                        p.w[dst(l + 4)..dst(l + 4) + 4].copy_from_slice(&hi.to_le_bytes());
                    }
                }
            }
        }
    }
    p
}

#[inline(always)]
unsafe fn bcast_i32(p: *const u8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// The 8 exact lane-l sums of one block for 8 rows against one token.
/// AVX2: maddubs (no saturation: |q_w| <= 31 against |x| <= 127, or for
/// Q8_0 the sign trick with |w| <= 128) and madd; VNNI: one dpbusd.
#[inline(always)]
unsafe fn lane_sums<const FMT: u8, const VNNI: bool>(
    w: __m256i,
    w_abs: __m256i,
    cw: __m256i,
    xq: *const u8,
    xu: *const u8,
    corr: *const i32,
) -> __m256i {
    if FMT == 2 {
        if VNNI {
            // sum((x + 128) * w) - 128 * sum(w)
            _mm256_dpbusd_epi32(cw, bcast_i32(xu), w)
        } else {
            let sx = _mm256_sign_epi8(bcast_i32(xq), w);
            _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, sx), _mm256_set1_epi16(1))
        }
    } else {
        let init = if FMT == 1 {
            _mm256_setzero_si256()
        } else {
            _mm256_set1_epi32(*corr)
        };
        if VNNI {
            _mm256_dpbusd_epi32(init, w, bcast_i32(xq))
        } else {
            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(w, bcast_i32(xq)), _mm256_set1_epi16(1));
            if FMT == 1 {
                s
            } else {
                _mm256_add_epi32(s, init)
            }
        }
    }
}

/// Group `g` of `p` against tokens t0..t0 + T; out[t][row] for the 8 rows.
#[inline(always)]
unsafe fn tile<const T: usize, const FMT: u8, const VNNI: bool>(
    p: &Packed,
    g: usize,
    xs: &[Q8Row],
    xp: &[XPrep],
    t0: usize,
) -> [__m256; T] {
    let nb = p.nb;
    let mut acc = [[_mm256_setzero_ps(); T]; 8];
    let mut acc_m = [_mm256_setzero_ps(); T];
    let xq: [*const u8; T] = std::array::from_fn(|t| xs[t0 + t].q.as_ptr() as *const u8);
    let xd: [*const f32; T] = std::array::from_fn(|t| xs[t0 + t].d.as_ptr());
    let xsum: [*const f32; T] = std::array::from_fn(|t| xs[t0 + t].s.as_ptr());
    let xu: [*const u8; T] = std::array::from_fn(|t| xp[t0 + t].xu.as_ptr());
    let corr: [*const i32; T] = std::array::from_fn(|t| xp[t0 + t].corr.as_ptr());
    let wp = p.w.as_ptr();
    for b in 0..nb {
        let gb = g * nb + b;
        let dw = _mm256_loadu_ps(p.dw.as_ptr().add(gb * GROUP));
        // (No closures here: they would not inherit the target features,
        // and every intrinsic in them would become a call.)
        let mut scale = [dw; T];
        for t in 0..T {
            scale[t] = _mm256_mul_ps(dw, _mm256_set1_ps(*xd[t].add(b)));
        }
        if FMT == 1 {
            let mw = _mm256_loadu_ps(p.mw.as_ptr().add(gb * GROUP));
            for t in 0..T {
                acc_m[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*xsum[t].add(b)), acc_m[t]);
            }
        }
        for l in 0..8 {
            let w = _mm256_loadu_si256(wp.add((gb * 8 + l) * GROUP * 4) as *const __m256i);
            let (w_abs, cw) = if FMT == 2 {
                if VNNI {
                    (
                        w,
                        _mm256_loadu_si256(
                            p.cw.as_ptr().add((gb * 8 + l) * GROUP) as *const __m256i
                        ),
                    )
                } else {
                    (_mm256_abs_epi8(w), w)
                }
            } else {
                (w, w)
            };
            let e = b * 32 + 4 * l;
            for t in 0..T {
                let isum = lane_sums::<FMT, VNNI>(
                    w,
                    w_abs,
                    cw,
                    xq[t].add(e),
                    xu[t].wrapping_add(e),
                    corr[t].wrapping_add(b * 8 + l),
                );
                acc[l][t] = _mm256_fmadd_ps(scale[t], _mm256_cvtepi32_ps(isum), acc[l][t]);
            }
        }
    }
    let mut ys = [_mm256_setzero_ps(); T];
    for t in 0..T {
        let v0 = _mm256_add_ps(acc[0][t], acc[4][t]);
        let v1 = _mm256_add_ps(acc[1][t], acc[5][t]);
        let v2 = _mm256_add_ps(acc[2][t], acc[6][t]);
        let v3 = _mm256_add_ps(acc[3][t], acc[7][t]);
        let y = _mm256_add_ps(_mm256_add_ps(v0, v2), _mm256_add_ps(v1, v3));
        ys[t] = if FMT == 1 {
            _mm256_add_ps(y, acc_m[t])
        } else {
            y
        };
    }
    ys
}

/// Write a tile's outputs: out[r * m + t] for the group's real rows.
#[inline(always)]
unsafe fn store<const T: usize>(
    ys: [__m256; T],
    rows: usize,
    m: usize,
    t0: usize,
    out: &mut [f32],
) {
    for (t, y) in ys.iter().enumerate() {
        let mut v = [0f32; 8];
        _mm256_storeu_ps(v.as_mut_ptr(), *y);
        for (r, &val) in v.iter().enumerate().take(rows) {
            out[r * m + t0 + t] = val;
        }
    }
}

#[inline(always)]
unsafe fn run<const FMT: u8, const VNNI: bool>(
    p: &Packed,
    nr: usize,
    xs: &[Q8Row],
    xp: &[XPrep],
    out: &mut [f32],
) {
    let m = xs.len();
    // Three tokens' 24 accumulators need AVX-512's 32 registers; AVX2 has 16.
    let tt = if VNNI { 3 } else { 1 };
    for g in 0..p.groups {
        let rows = (nr - g * GROUP).min(GROUP);
        let o = &mut out[g * GROUP * m..];
        let mut t0 = 0;
        while t0 < m {
            let left = (m - t0).min(tt);
            match left {
                3 => store(tile::<3, FMT, VNNI>(p, g, xs, xp, t0), rows, m, t0, o),
                2 => store(tile::<2, FMT, VNNI>(p, g, xs, xp, t0), rows, m, t0, o),
                _ => store(tile::<1, FMT, VNNI>(p, g, xs, xp, t0), rows, m, t0, o),
            }
            t0 += left;
        }
    }
}

#[inline(always)]
unsafe fn dispatch<const VNNI: bool>(
    fmt: WeightFormat,
    p: &Packed,
    nr: usize,
    xs: &[Q8Row],
    xp: &[XPrep],
    out: &mut [f32],
) {
    match code(fmt) {
        0 => run::<0, VNNI>(p, nr, xs, xp, out),
        1 => run::<1, VNNI>(p, nr, xs, xp, out),
        3 => run::<3, VNNI>(p, nr, xs, xp, out),
        _ => run::<2, VNNI>(p, nr, xs, xp, out),
    }
}

/// `nr` packed rows against every row of x: out[r * m + t], the same bits
/// as `qdot::rows`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows_avx2(
    fmt: WeightFormat,
    p: &Packed,
    nr: usize,
    xs: &[Q8Row],
    xp: &[XPrep],
    out: &mut [f32],
) {
    dispatch::<false>(fmt, p, nr, xs, xp, out)
}

/// `rows_avx2` with VNNI lane sums and a 3-token tile in 32 registers.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn rows_vnni(
    fmt: WeightFormat,
    p: &Packed,
    nr: usize,
    xs: &[Q8Row],
    xp: &[XPrep],
    out: &mut [f32],
) {
    dispatch::<true>(fmt, p, nr, xs, xp, out)
}
