//! Python's `random.Random(seed).sample(...)` (MT19937, CPython's seeding
//! and `_randbelow`), so the few-shot examples lm-evaluation-harness's
//! default sampler draws are drawn here too, in the same order.

/// CPython's Mersenne Twister.
pub struct PyRandom {
    mt: [u32; 624],
    idx: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        let mut r = PyRandom {
            mt: [0; 624],
            idx: 624,
        };
        // init_by_array with the seed's 32-bit words, least significant first.
        let mut key = vec![seed as u32];
        if seed >> 32 != 0 {
            key.push((seed >> 32) as u32);
        }
        r.init_genrand(19_650_218);
        let n = 624usize;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..n.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..n - 1 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.idx = 624;
    }

    fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for 1 <= k <= 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)`: uniform in [0, n), by rejection on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        assert!(n <= u32::MAX as usize, "population too large for this port");
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: k distinct indices below n, in draw order.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample larger than population");
        let mut setsize = 21usize;
        if k > 5 {
            // 4 ** ceil(log(k * 3, 4)), as CPython computes it in floats.
            setsize += 4usize.pow(((k * 3) as f64).log(4.0).ceil() as u32);
        }
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            (0..k)
                .map(|i| {
                    let j = self.randbelow(n - i);
                    let v = pool[j];
                    pool[j] = pool[n - i - 1];
                    v
                })
                .collect()
        } else {
            let mut seen = std::collections::HashSet::new();
            (0..k)
                .map(|_| {
                    let mut j = self.randbelow(n);
                    while !seen.insert(j) {
                        j = self.randbelow(n);
                    }
                    j
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PyRandom;

    /// Values printed by CPython 3.11:
    /// `r = random.Random(1234); [r.getrandbits(32) for _ in range(3)]`,
    /// `random.Random(1234).sample(range(10), 4)`,
    /// `random.Random(1234).sample(range(100), 7)` and
    /// `random.Random(2**40 + 5).sample(range(1000), 3)`.
    #[test]
    fn matches_cpython() {
        let mut r = PyRandom::new(1234);
        let bits: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
        assert_eq!(bits, GETRANDBITS_1234);
        assert_eq!(PyRandom::new(1234).sample(10, 4), SAMPLE_10_4);
        assert_eq!(PyRandom::new(1234).sample(100, 7), SAMPLE_100_7);
        assert_eq!(PyRandom::new((1 << 40) + 5).sample(1000, 3), SAMPLE_BIG);
    }

    const GETRANDBITS_1234: [u32; 3] = [4150886329, 3342196574, 1892932127];
    const SAMPLE_10_4: [usize; 4] = [7, 1, 0, 9];
    const SAMPLE_100_7: [usize; 7] = [99, 56, 14, 0, 11, 74, 4];
    const SAMPLE_BIG: [usize; 3] = [516, 529, 275];
}
