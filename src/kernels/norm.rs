//! RMSNorm: y = w * (x * r), r = 1 / sqrt(dot(x, x) / n + eps).

use super::dot::dot;
use super::multiversion;

multiversion! {
    pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        let n = w.len();
        for (xr, yr) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mean = dot(xr, xr) / n as f32;
            let r = 1.0 / (mean + eps).sqrt();
            for i in 0..n {
                yr[i] = w[i] * (xr[i] * r);
            }
        }
    }
}
