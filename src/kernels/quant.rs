//! Weight storage formats and their canonical dequantisation to f32
//! (docs/DETERMINISM.md §3). Each formula is fixed operation by operation so
//! that a fused kernel on any backend reproduces the same f32 weights.

use half::{bf16, f16};

/// How a weight matrix is stored: row-major rows of `cols` elements, each row
/// a whole number of blocks. Numbers are GGML type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum WeightFormat {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

impl WeightFormat {
    pub fn from_ggml_type(t: u32) -> Option<Self> {
        Some(match t {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    /// Bytes of a row of `cols` elements, or None if `cols` is not a whole
    /// number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        (cols % self.block_elems() == 0).then(|| cols / self.block_elems() * self.block_bytes())
    }
}

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline(always)]
pub(crate) fn k4_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantise one row. `row.len()` must be `fmt.row_bytes(out.len())`.
#[inline(always)]
pub fn dequantize_row(fmt: WeightFormat, row: &[u8], out: &mut [f32]) {
    let be = fmt.block_elems();
    let bb = fmt.block_bytes();
    debug_assert_eq!(Some(row.len()), fmt.row_bytes(out.len()));
    match fmt {
        WeightFormat::F32 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        WeightFormat::F16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        WeightFormat::BF16 => {
            for (o, c) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        // w = d * (q - 8)
        WeightFormat::Q4_0 => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let d = f16_at(blk, 0);
                let qs = &blk[2..18];
                for j in 0..16 {
                    o[j] = d * ((qs[j] & 0xF) as i32 - 8) as f32;
                    o[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
                }
            }
        }
        // w = (d * q) + m, two roundings
        WeightFormat::Q4_1 => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let d = f16_at(blk, 0);
                let m = f16_at(blk, 2);
                let qs = &blk[4..20];
                for j in 0..16 {
                    o[j] = d * (qs[j] & 0xF) as f32 + m;
                    o[j + 16] = d * (qs[j] >> 4) as f32 + m;
                }
            }
        }
        // w = d * (q - 16), q = low nibble | bit j of qh << 4
        WeightFormat::Q5_0 => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let d = f16_at(blk, 0);
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let qs = &blk[6..22];
                for j in 0..16 {
                    let lo = (qs[j] & 0xF) as i32 | (((qh >> j) & 1) << 4) as i32;
                    let hi = (qs[j] >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32;
                    o[j] = d * (lo - 16) as f32;
                    o[j + 16] = d * (hi - 16) as f32;
                }
            }
        }
        // w = d * q
        WeightFormat::Q8_0 => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let d = f16_at(blk, 0);
                for j in 0..32 {
                    o[j] = d * (blk[2 + j] as i8) as f32;
                }
            }
        }
        // w = (d * sc) * q - (dmin * m), per 32-element sub-block
        WeightFormat::Q4K => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let d = f16_at(blk, 0);
                let dmin = f16_at(blk, 2);
                let scales = &blk[4..16];
                let qs = &blk[16..144];
                for g in 0..4 {
                    let q = &qs[g * 32..g * 32 + 32];
                    let (sc1, m1) = k4_scale_min(2 * g, scales);
                    let (sc2, m2) = k4_scale_min(2 * g + 1, scales);
                    let (d1, mm1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, mm2) = (d * sc2 as f32, dmin * m2 as f32);
                    let y = &mut o[g * 64..g * 64 + 64];
                    for l in 0..32 {
                        y[l] = d1 * (q[l] & 0xF) as f32 - mm1;
                        y[l + 32] = d2 * (q[l] >> 4) as f32 - mm2;
                    }
                }
            }
        }
        // w = (d * sc) * q, q in [-32, 31]
        WeightFormat::Q6K => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
                let ql_all = &blk[0..128];
                let qh_all = &blk[128..192];
                let sc_all = &blk[192..208];
                let d = f16_at(blk, 208);
                for half in 0..2 {
                    let ql = &ql_all[half * 64..half * 64 + 64];
                    let qh = &qh_all[half * 32..half * 32 + 32];
                    let sc = &sc_all[half * 8..half * 8 + 8];
                    let y = &mut o[half * 128..half * 128 + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

/// Index of the first block (or element, for F32/F16/BF16) that holds a NaN
/// or an infinity, checking every scale of quantised blocks: their integer
/// parts are always finite, so a finite scale gives finite weights.
pub fn first_non_finite(fmt: WeightFormat, data: &[u8]) -> Option<usize> {
    use rayon::prelude::*;
    let bb = fmt.block_bytes();
    // Byte offsets of the f16 scales within a block.
    let scales: &[usize] = match fmt {
        WeightFormat::Q4_0 | WeightFormat::Q5_0 | WeightFormat::Q8_0 => &[0],
        WeightFormat::Q4_1 | WeightFormat::Q4K => &[0, 2],
        WeightFormat::Q6K => &[208],
        _ => &[],
    };
    let bad = |blk: &[u8]| -> bool {
        match fmt {
            WeightFormat::F32 => !f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]).is_finite(),
            WeightFormat::F16 => !f16::from_le_bytes([blk[0], blk[1]]).is_finite(),
            WeightFormat::BF16 => !bf16::from_le_bytes([blk[0], blk[1]]).is_finite(),
            _ => scales.iter().any(|&o| !f16_at(blk, o).is_finite()),
        }
    };
    const GROUP: usize = 4096;
    data.par_chunks(bb * GROUP)
        .enumerate()
        .find_map_first(|(g, chunk)| chunk.chunks_exact(bb).position(bad).map(|i| g * GROUP + i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_by_hand() {
        // d = 0.5, m = -1.0, nibbles: low = j % 16, high = 15 - j % 16
        let mut blk = Vec::new();
        blk.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        blk.extend_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        for j in 0..16u8 {
            blk.push(j | ((15 - j) << 4));
        }
        let mut out = [0f32; 32];
        dequantize_row(WeightFormat::Q4_1, &blk, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q8_0_and_q4_0_by_hand() {
        let mut blk = f16::from_f32(0.25).to_le_bytes().to_vec();
        blk.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let mut out = [0f32; 32];
        dequantize_row(WeightFormat::Q8_0, &blk, &mut out);
        for j in 0..32 {
            assert_eq!(out[j], 0.25 * (j as f32 - 16.0));
        }
        let mut blk = f16::from_f32(2.0).to_le_bytes().to_vec();
        blk.extend((0..16u8).map(|j| j | (j << 4)));
        dequantize_row(WeightFormat::Q4_0, &blk, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(out[j + 16], 2.0 * (j as f32 - 8.0));
        }
    }

    #[test]
    fn non_finite_scales_and_values_are_found() {
        let mut q = vec![0u8; 20 * 3];
        assert_eq!(first_non_finite(WeightFormat::Q4_1, &q), None);
        q[40 + 2..40 + 4].copy_from_slice(&f16::NAN.to_le_bytes());
        assert_eq!(first_non_finite(WeightFormat::Q4_1, &q), Some(2));
        let f: Vec<u8> = [1.0f32, 2.0, f32::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(WeightFormat::F32, &f), Some(2));
    }

    #[test]
    fn row_bytes() {
        assert_eq!(WeightFormat::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(WeightFormat::Q4K.row_bytes(576), None);
        assert_eq!(WeightFormat::Q6K.row_bytes(512), Some(420));
    }
}
