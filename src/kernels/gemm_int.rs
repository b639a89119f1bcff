//! Integer-format matrix products (Q4_0, Q4_1, Q8_0) over weights
//! interleaved 8 rows to a group, for decode and prefill alike, with exactly
//! the operations of `qdot::dot` (docs/DETERMINISM.md §3b) on every output,
//! so the bits are those of the one-row kernel.
//!
//! The interleaved layout ("x8") has the same size as the GGUF one. For
//! each group of 8 rows and each 32-element block: the 8 rows' `d` (f16),
//! for Q4_1 their 8 `m`, then the quants in 32-byte chunks, chunk c holding
//! bytes 4c..4c+3 of each row's quants side by side. For Q4 a chunk is
//! canonical lanes c (low nibbles) and c + 4 (high nibbles) of the 8 rows;
//! for Q8_0 chunk c is lane c. Model loading repacks matrices to it once
//! (`pack`); a matrix kept in the GGUF layout (a head tied to the
//! embedding) is repacked per task when several rows of x make it pay.
//!
//! A register then holds lane l of 8 outputs, so:
//!
//! - one broadcast of 4 activation bytes serves 8 rows, and one product of
//!   the rows' `d_w` with the token's `d_x` serves all 8 lanes of a block;
//! - Q4 weights need no sign trick: they go in as the unsigned nibbles q
//!   and Q4_0's `- 8` comes back exactly as `-8 * sum(x)` per lane, summed
//!   once per token and added in integers (Q8_0 keeps the sign trick);
//! - the canonical tree (l += l + 4, l += l + 2, 0 + 1) is three vector adds
//!   across the 8 lane registers, giving 8 rows' outputs at once.
//!
//! Each output still gets `acc_l = fma(d_w * d_x, float(isum_l), acc_l)` in
//! block order, then the same tree; only how many outputs share an
//! instruction changes. Prefill runs 3 tokens per pass with AVX-512's 32
//! registers (24 accumulators), decode and AVX2 one.

use super::qdot::{self, Q8Row};
use super::quant::WeightFormat;

/// Rows per interleaved group: the 8 lanes of a 256-bit register.
pub const GROUP: usize = 8;

/// Whether `rows` rows of `fmt` can be held interleaved.
pub fn packable(fmt: WeightFormat, rows: usize) -> bool {
    matches!(
        fmt,
        WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q8_0
    ) && rows % GROUP == 0
}

/// Bytes before the quants in a group's block: the 8 d (and 8 m).
fn head_bytes(fmt: WeightFormat) -> usize {
    if fmt == WeightFormat::Q4_1 {
        32
    } else {
        16
    }
}

/// Where a GGUF block's quants start.
fn quant_offset(fmt: WeightFormat) -> usize {
    if fmt == WeightFormat::Q4_1 {
        4
    } else {
        2
    }
}

/// One group of the interleaved layout (all its blocks, into `dst`, which
/// starts zeroed) from the GGUF rows `g * 8..` of `w_rows`; rows past the
/// end are zero rows (scale 0), whose outputs are never written.
fn pack_group(fmt: WeightFormat, w_rows: &[u8], rb: usize, g: usize, dst: &mut [u8]) {
    let sb = GROUP * fmt.block_bytes();
    for (r, row) in w_rows
        .chunks_exact(rb)
        .skip(g * GROUP)
        .take(GROUP)
        .enumerate()
    {
        for (b, d) in dst.chunks_exact_mut(sb).enumerate() {
            pack_block(fmt, r, &row[b * fmt.block_bytes()..], d);
        }
    }
}

/// Row r of a group's block b, from the GGUF block at the start of `blk`.
fn pack_block(fmt: WeightFormat, r: usize, blk: &[u8], dst: &mut [u8]) {
    let bb = fmt.block_bytes();
    let (hb, qo) = (head_bytes(fmt), quant_offset(fmt));
    dst[2 * r..2 * r + 2].copy_from_slice(&blk[0..2]);
    if fmt == WeightFormat::Q4_1 {
        dst[16 + 2 * r..18 + 2 * r].copy_from_slice(&blk[2..4]);
    }
    for c in 0..(bb - qo) / 4 {
        let at = hb + (c * GROUP + r) * 4;
        dst[at..at + 4].copy_from_slice(&blk[qo + 4 * c..qo + 4 * c + 4]);
    }
}

/// `rows` GGUF rows of k columns (`packable`) in the interleaved layout.
pub fn pack(fmt: WeightFormat, w: &[u8], rows: usize, k: usize) -> Vec<u8> {
    assert!(packable(fmt, rows), "{} rows of {}", rows, fmt.name());
    let rb = fmt.row_bytes(k).expect("checked at load");
    assert_eq!(w.len(), rows * rb);
    let mut out = vec![0u8; w.len()];
    // Groups are independent: repacked in parallel (at load, once).
    super::pool::for_each_chunk_mut(&mut out, GROUP * rb, |g, dst| {
        pack_group(fmt, w, rb, g, dst)
    });
    out
}

/// Row `r` of an interleaved matrix back in the GGUF layout.
pub fn unpack_row(fmt: WeightFormat, w: &[u8], k: usize, r: usize) -> Vec<u8> {
    let (bb, nb) = (fmt.block_bytes(), k / 32);
    let (hb, qo) = (head_bytes(fmt), quant_offset(fmt));
    let (g, rr) = (r / GROUP, r % GROUP);
    let mut row = vec![0u8; nb * bb];
    for b in 0..nb {
        let src = &w[(g * nb + b) * GROUP * bb..][..GROUP * bb];
        let blk = &mut row[b * bb..b * bb + bb];
        blk[0..2].copy_from_slice(&src[2 * rr..2 * rr + 2]);
        if fmt == WeightFormat::Q4_1 {
            blk[2..4].copy_from_slice(&src[16 + 2 * rr..18 + 2 * rr]);
        }
        for c in 0..(bb - qo) / 4 {
            let at = hb + (c * GROUP + rr) * 4;
            blk[qo + 4 * c..qo + 4 * c + 4].copy_from_slice(&src[at..at + 4]);
        }
    }
    row
}

/// Task rows in the GGUF layout, interleaved for the tile: a last partial
/// group is padded with zero rows (scale 0), whose outputs are not written.
pub fn pack_padded(fmt: WeightFormat, w_rows: &[u8], k: usize) -> Vec<u8> {
    let rb = fmt.row_bytes(k).expect("checked at load");
    let groups = (w_rows.len() / rb).div_ceil(GROUP);
    let mut out = vec![0u8; groups * GROUP * rb];
    for (g, dst) in out.chunks_exact_mut(GROUP * rb).enumerate() {
        pack_group(fmt, w_rows, rb, g, dst);
    }
    out
}

/// Q4_0's per-token integers: -8 * the sum of each 4-element lane of q.
pub fn lane_offsets(fmt: WeightFormat, x: &Q8Row) -> Vec<i32> {
    if fmt != WeightFormat::Q4_0 {
        return Vec::new();
    }
    x.q.chunks_exact(4)
        .map(|c| -8 * c.iter().map(|&v| v as i32).sum::<i32>())
        .collect()
}

/// Portable: interleaved rows `nr` (a task's groups) against every row of x,
/// out[r * m + t], by way of the GGUF layout and `qdot::dot`.
pub fn rows_portable(
    fmt: WeightFormat,
    w: &[u8],
    nr: usize,
    xs: &[Q8Row],
    k: usize,
    out: &mut [f32],
) {
    let m = xs.len();
    for r in 0..nr {
        let row = unpack_row(fmt, w, k, r);
        for (t, x) in xs.iter().enumerate() {
            out[r * m + t] = qdot::dot(fmt, &row, x);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{rows_avx2, rows_vnni};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{head_bytes, Q8Row, WeightFormat, GROUP};
    use std::arch::x86_64::*;

    /// Prefetch distance for decode, which streams the weights from memory.
    const PREFETCH_BYTES: usize = 8192;

    #[inline(always)]
    unsafe fn bcast_i32(p: *const u8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }

    /// The 8 exact lane sums of one block for 8 rows against one token's 4
    /// bytes at `xq`. Q4 (FMT 0, 1): unsigned nibbles w against signed
    /// x, plus `init` (Q4_0's offset); maddubs cannot saturate (15 * 127 * 2).
    /// Q8_0 (FMT 2): |w| against x with w's signs (|w| <= 128: no saturation either).
    #[inline(always)]
    unsafe fn lane_sums<const FMT: u8, const VNNI: bool>(
        w: __m256i,
        w_abs: __m256i,
        init: __m256i,
        xq: *const u8,
    ) -> __m256i {
        let x = bcast_i32(xq);
        let (a, b) = if FMT == 2 {
            (w_abs, _mm256_sign_epi8(x, w))
        } else {
            (w, x)
        };
        if VNNI {
            _mm256_dpbusd_epi32(init, a, b)
        } else {
            _mm256_add_epi32(
                _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)),
                init,
            )
        }
    }

    /// Canonical lane l of one block for the 8 rows of a group: the weights
    /// (and, for Q8_0's sign trick, their magnitudes).
    struct Lane {
        l: usize,
        w: __m256i,
        w_abs: __m256i,
    }

    impl Lane {
        /// acc_l = fma(d_w * d_x, float(isum_l), acc_l) for each of T tokens.
        #[inline(always)]
        unsafe fn accumulate<const T: usize, const FMT: u8, const VNNI: bool>(
            &self,
            b: usize,
            xq: &[*const u8; T],
            off: &[*const i32; T],
            scale: &[__m256; T],
            acc: &mut [__m256; T],
        ) {
            let e = b * 32 + 4 * self.l;
            for t in 0..T {
                let init = if FMT == 0 {
                    _mm256_set1_epi32(*off[t].add(b * 8 + self.l))
                } else {
                    _mm256_setzero_si256()
                };
                let isum = lane_sums::<FMT, VNNI>(self.w, self.w_abs, init, xq[t].add(e));
                acc[t] = _mm256_fmadd_ps(scale[t], _mm256_cvtepi32_ps(isum), acc[t]);
            }
        }
    }

    /// Group at `gp` (nb blocks of 8 rows) against tokens t0..t0 + T: the
    /// 8 rows' outputs for each token. FMT: 0 Q4_0, 1 Q4_1, 2 Q8_0.
    #[inline(always)]
    unsafe fn tile<const T: usize, const FMT: u8, const VNNI: bool>(
        gp: *const u8,
        (b0, b1): (usize, usize),
        xs: &[Q8Row],
        offs: &[Vec<i32>],
        t0: usize,
        st: &mut State,
    ) {
        let fmt = [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0][FMT as usize];
        let sb = GROUP * fmt.block_bytes();
        let hb = head_bytes(fmt);
        let mut acc = [[_mm256_setzero_ps(); T]; 8];
        let mut acc_m = [_mm256_setzero_ps(); T];
        for t in 0..T {
            for l in 0..8 {
                acc[l][t] = st[l][t];
            }
            acc_m[t] = st[8][t];
        }
        // (No closures over intrinsics here: a closure does not inherit the
        // target features, and each intrinsic in it would become a call.)
        let mut xq = [std::ptr::null::<u8>(); T];
        let mut xd = [std::ptr::null::<f32>(); T];
        let mut xsum = [std::ptr::null::<f32>(); T];
        let mut off = [std::ptr::null::<i32>(); T];
        for t in 0..T {
            xq[t] = xs[t0 + t].q.as_ptr() as *const u8;
            xd[t] = xs[t0 + t].d.as_ptr();
            xsum[t] = xs[t0 + t].s.as_ptr();
            off[t] = offs.get(t0 + t).map_or(std::ptr::null(), |o| o.as_ptr());
        }
        let low = _mm256_set1_epi8(0x0F);
        for b in b0..b1 {
            let p = gp.add(b * sb);
            if T == 1 {
                for line in (0..sb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + line) as *const i8);
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let mut scale = [dw; T];
            for t in 0..T {
                scale[t] = _mm256_mul_ps(dw, _mm256_set1_ps(*xd[t].add(b)));
            }
            if FMT == 1 {
                let mw = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
                for t in 0..T {
                    acc_m[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*xsum[t].add(b)), acc_m[t]);
                }
            }
            let q = p.add(hb);
            let chunks = if FMT == 2 { 8 } else { 4 };
            for c in 0..chunks {
                let v = _mm256_loadu_si256(q.add(32 * c) as *const __m256i);
                if FMT == 2 {
                    // Q8_0: chunk c is lane c.
                    let lane = Lane {
                        l: c,
                        w: v,
                        w_abs: _mm256_abs_epi8(v),
                    };
                    lane.accumulate::<T, FMT, VNNI>(b, &xq, &off, &scale, &mut acc[c]);
                } else {
                    // Q4: chunk c is lanes c (low nibbles) and c + 4 (high).
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                    let lane = Lane {
                        l: c,
                        w: lo,
                        w_abs: lo,
                    };
                    lane.accumulate::<T, FMT, VNNI>(b, &xq, &off, &scale, &mut acc[c]);
                    let lane = Lane {
                        l: c + 4,
                        w: hi,
                        w_abs: hi,
                    };
                    lane.accumulate::<T, FMT, VNNI>(b, &xq, &off, &scale, &mut acc[c + 4]);
                }
            }
        }
        for t in 0..T {
            for l in 0..8 {
                st[l][t] = acc[l][t];
            }
            st[8][t] = acc_m[t];
        }
    }

    /// A group's accumulators for up to 3 tokens between column passes:
    /// lanes 0..8, then Q4_1's m term.
    type State = [[__m256; 3]; 9];

    #[inline(always)]
    unsafe fn zero_state() -> State {
        [[_mm256_setzero_ps(); 3]; 9]
    }

    /// Blocks per column pass with several rows of x: 3 tokens' quants and
    /// offsets (12 KiB) stay in L1 however long the rows are; each output's
    /// blocks still go in order, the accumulators carried between passes.
    const PASS_BLOCKS: usize = 32;

    /// The canonical tree of each token's 8 lane registers (8 rows' outputs),
    /// plus Q4_1's m term.
    #[inline(always)]
    unsafe fn finish<const FMT: u8>(st: &State, t: usize) -> __m256 {
        let a = |l: usize| st[l][t];
        let v0 = _mm256_add_ps(a(0), a(4));
        let v1 = _mm256_add_ps(a(1), a(5));
        let v2 = _mm256_add_ps(a(2), a(6));
        let v3 = _mm256_add_ps(a(3), a(7));
        let y = _mm256_add_ps(_mm256_add_ps(v0, v2), _mm256_add_ps(v1, v3));
        if FMT == 1 {
            _mm256_add_ps(y, st[8][t])
        } else {
            y
        }
    }

    /// Write token t's outputs of group g: out[t][g * 8 + r] for its first `rows` rows.
    #[inline(always)]
    unsafe fn store(y: __m256, g: usize, rows: usize, t: usize, out: &mut [&mut [f32]]) {
        let o = &mut out[t][g * GROUP..g * GROUP + rows];
        if rows == GROUP {
            _mm256_storeu_ps(o.as_mut_ptr(), y);
        } else {
            let mut v = [0f32; GROUP];
            _mm256_storeu_ps(v.as_mut_ptr(), y);
            o.copy_from_slice(&v[..rows]);
        }
    }

    #[inline(always)]
    unsafe fn run<const FMT: u8, const VNNI: bool>(
        w: &[u8],
        nr: usize,
        xs: &[Q8Row],
        offs: &[Vec<i32>],
        k: usize,
        out: &mut [&mut [f32]],
    ) {
        let fmt = [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0][FMT as usize];
        let (m, nb) = (xs.len(), k / 32);
        let gb = nb * GROUP * fmt.block_bytes();
        assert!(
            w.len() >= nr.div_ceil(GROUP) * gb,
            "interleaved weight bytes"
        );
        let groups = nr.div_ceil(GROUP);
        if m == 1 {
            // Decode: one pass, the state on the stack (kept in registers).
            for g in 0..groups {
                let mut s = zero_state();
                tile::<1, FMT, VNNI>(w.as_ptr().add(g * gb), (0, nb), xs, offs, 0, &mut s);
                store(finish::<FMT>(&s, 0), g, (nr - g * GROUP).min(GROUP), 0, out);
            }
            return;
        }
        // Three tokens' 24 accumulators need AVX-512's 32 registers.
        let tt = if VNNI { 3 } else { 1 };
        // Tokens outer, groups inner: a tile's activations stay in L1 while
        // the task's groups (in L2) pass, PASS_BLOCKS blocks at a time.
        let mut st: Vec<State> = vec![zero_state(); groups];
        let mut t0 = 0;
        while t0 < m {
            let left = (m - t0).min(tt);
            st.fill(zero_state());
            let mut b0 = 0;
            while b0 < nb {
                let blocks = (b0, (b0 + PASS_BLOCKS).min(nb));
                for (g, s) in st.iter_mut().enumerate() {
                    let gp = w.as_ptr().add(g * gb);
                    match left {
                        3 => tile::<3, FMT, VNNI>(gp, blocks, xs, offs, t0, s),
                        2 => tile::<2, FMT, VNNI>(gp, blocks, xs, offs, t0, s),
                        _ => tile::<1, FMT, VNNI>(gp, blocks, xs, offs, t0, s),
                    }
                }
                b0 += PASS_BLOCKS;
            }
            for (g, s) in st.iter().enumerate() {
                let rows = (nr - g * GROUP).min(GROUP);
                for t in 0..left {
                    store(finish::<FMT>(s, t), g, rows, t0 + t, out);
                }
            }
            t0 += left;
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dispatch<const VNNI: bool>(
        fmt: WeightFormat,
        w: &[u8],
        nr: usize,
        xs: &[Q8Row],
        offs: &[Vec<i32>],
        k: usize,
        out: &mut [&mut [f32]],
    ) {
        match fmt {
            WeightFormat::Q4_0 => run::<0, VNNI>(w, nr, xs, offs, k, out),
            WeightFormat::Q4_1 => run::<1, VNNI>(w, nr, xs, offs, k, out),
            WeightFormat::Q8_0 => run::<2, VNNI>(w, nr, xs, offs, k, out),
            _ => panic!("{} is not interleaved", fmt.name()),
        }
    }

    /// `nr` interleaved rows (whole groups in `w`) against every row of x:
    /// out[t][r] (one slice per row of x), the same bits as `qdot::dot` on each. `offs`: Q4_0's
    /// `lane_offsets` of each row of x.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_avx2(
        fmt: WeightFormat,
        w: &[u8],
        nr: usize,
        xs: &[Q8Row],
        offs: &[Vec<i32>],
        k: usize,
        out: &mut [&mut [f32]],
    ) {
        dispatch::<false>(fmt, w, nr, xs, offs, k, out)
    }

    /// `rows_avx2` with VNNI lane sums and a 3-token tile in 32 registers.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn rows_vnni(
        fmt: WeightFormat,
        w: &[u8],
        nr: usize,
        xs: &[Q8Row],
        offs: &[Vec<i32>],
        k: usize,
        out: &mut [&mut [f32]],
    ) {
        dispatch::<true>(fmt, w, nr, xs, offs, k, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_gives_each_row_back() {
        let k = 96;
        for fmt in [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0] {
            let rb = fmt.row_bytes(k).unwrap();
            let w: Vec<u8> = (0..16 * rb).map(|i| (i * 131 % 251) as u8).collect();
            let p = pack(fmt, &w, 16, k);
            assert_eq!(p.len(), w.len());
            assert_ne!(p, w);
            for r in 0..16 {
                assert_eq!(
                    unpack_row(fmt, &p, k, r),
                    &w[r * rb..(r + 1) * rb],
                    "{} row {r}",
                    fmt.name()
                );
            }
            assert_eq!(pack_padded(fmt, &w, k), p);
        }
        assert!(!packable(WeightFormat::Q5_0, 16) && !packable(WeightFormat::Q4_0, 12));
    }
}
