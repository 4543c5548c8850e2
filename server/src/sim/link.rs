//! A simulated network path: it loses, delays, duplicates and (by random
//! delays) reorders what it carries, decided by a seeded generator so that
//! every run of a test is the same run.

/// How a link misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Conditions {
    /// Probability that a packet is lost, 0.0–1.0.
    pub loss: f64,
    /// Probability that a delivered packet arrives twice, 0.0–1.0.
    pub duplicate: f64,
    /// Shortest one-way delay, ms of virtual time.
    pub min_delay_ms: i64,
    /// Longest one-way delay, ms; packets sent close together with
    /// different delays arrive out of order.
    pub max_delay_ms: i64,
}

impl Conditions {
    /// A perfect link: 1 ms, nothing lost, doubled or reordered.
    pub(crate) const PERFECT: Self = Self {
        loss: 0.0,
        duplicate: 0.0,
        min_delay_ms: 1,
        max_delay_ms: 1,
    };
}

/// A deterministic pseudo-random generator (xorshift64*): tests need
/// repeatable runs, not unpredictability.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value but 0 gives a good stream).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        // 53 bits of randomness as a fraction in [0, 1).
        let fraction = (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
        fraction < p
    }

    /// A value in `low..=high`.
    pub(crate) fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        let span = u64::try_from(high - low)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        low + i64::try_from(self.next_u64() % span).unwrap_or(0)
    }
}

/// The arrival times of one packet sent at `now` over a link in
/// `conditions`: none when it is lost, two when it is doubled.
pub(crate) fn arrivals(conditions: &Conditions, rng: &mut Rng, now: i64) -> Vec<i64> {
    if rng.chance(conditions.loss) {
        return Vec::new();
    }
    let mut times = vec![now + rng.between(conditions.min_delay_ms, conditions.max_delay_ms)];
    if rng.chance(conditions.duplicate) {
        times.push(now + rng.between(conditions.min_delay_ms, conditions.max_delay_ms));
    }
    times
}
