//! A tiny deterministic random number generator (SplitMix64), so the rule mixes are the same on
//! every run and every machine without a dependency.

/// SplitMix64 (Steele, Lea and Flood): 64 bits of state, good enough to draw rules from.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`); the bias of the multiply-shift reduction is negligible here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a slice of length `len` (`len > 0`).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// True with probability `percent`/100.
    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A seed for one (mix, size, run): fixed, so every run of the harness draws the same rules.
pub(crate) fn seed(parts: &[u64]) -> u64 {
    let mut r = Rng::new(0x6775_6573_746e_6574); // "guestnet"
    let mut s = r.next_u64();
    for p in parts {
        r = Rng::new(s ^ p);
        s = r.next_u64();
    }
    s
}
