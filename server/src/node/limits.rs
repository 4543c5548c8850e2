//! Limits on what a source address or an account can make the server do:
//! token buckets by key, refilled over time, bounded in how many keys they
//! remember.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Failed logins a source address may make at once, then one per
/// [`SOURCE_REFILL`].
pub(crate) const SOURCE_FAILURES: f64 = 20.0;
/// How long a source address waits for one more failed login.
pub(crate) const SOURCE_REFILL: Duration = Duration::from_secs(3);
/// Failed logins an account may see at once, then one per [`ACCOUNT_REFILL`].
pub(crate) const ACCOUNT_FAILURES: f64 = 10.0;
/// How long an account waits for one more failed login.
pub(crate) const ACCOUNT_REFILL: Duration = Duration::from_secs(10);

/// Keys a set of buckets remembers; past it, full buckets (those that would
/// allow everything anyway) are forgotten first.
const MAX_KEYS: usize = 100_000;

/// The limits of one node.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Failed logins by source address (IPv6 by its /64).
    pub(crate) failed_by_source: Buckets<IpAddr>,
    /// Failed logins by account address.
    pub(crate) failed_by_account: Buckets<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            failed_by_source: Buckets::new(SOURCE_FAILURES, SOURCE_REFILL),
            failed_by_account: Buckets::new(ACCOUNT_FAILURES, ACCOUNT_REFILL),
        }
    }
}

/// The key a source address is limited under: an IPv6 address by its /64
/// (one subscriber's network), an IPv4-mapped one as IPv4.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Token buckets by key. See the module docs.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    capacity: f64,
    refill: Duration,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Buckets of `capacity` tokens, each refilled one per `refill`.
    pub(crate) fn new(capacity: f64, refill: Duration) -> Self {
        Self {
            capacity,
            refill,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` if `key` has a token left (none is taken), or how long until it
    /// has one.
    pub(crate) fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let buckets = self.lock();
        let Some(&(tokens, at)) = buckets.get(key) else {
            return Ok(());
        };
        let tokens = self.refilled(tokens, at, now);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - tokens))
        }
    }

    /// Takes a token from `key`'s bucket (down to zero).
    pub(crate) fn take(&self, key: &K) {
        let now = Instant::now();
        let mut buckets = self.lock();
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, (tokens, at)| self.refilled(*tokens, *at, now) < self.capacity);
            if buckets.len() >= MAX_KEYS {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.capacity, now));
        *tokens = (self.refilled(*tokens, *at, now) - 1.0).max(0.0);
        *at = now;
    }

    fn refilled(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        let earned = now.duration_since(at).as_secs_f64() / self.refill.as_secs_f64();
        (tokens + earned).min(self.capacity)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (f64, Instant)>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_empties_and_refills_over_time() {
        let buckets = Buckets::new(3.0, Duration::from_secs(2));
        for _ in 0..3 {
            assert_eq!(buckets.check(&"k"), Ok(()));
            buckets.take(&"k");
        }
        assert_eq!(buckets.check(&"k"), Err(Duration::from_secs(2)));
        assert_eq!(buckets.check(&"other"), Ok(()), "keys are apart");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(buckets.check(&"k"), Err(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(buckets.check(&"k"), Ok(()));
    }

    #[test]
    fn ipv6_sources_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            source_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
    }
}
