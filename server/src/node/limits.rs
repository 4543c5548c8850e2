//! Limits on what a source address, an account or everyone together can
//! make the server do: token buckets by key, refilled over time, bounded in
//! how many keys they remember. The operator sets the registration and send
//! rates ([`Policy`]); the login limits are fixed.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{PartyId, Refusal, RefusalCode};

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

/// Who may register: the operator's choice (`registration` in
/// `kanald.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone who can reach the server (the default: customers sign up
    /// themselves).
    #[default]
    Open,
    /// Whoever has an invite code from the operator (`kanald invite add`).
    Invite,
    /// Only the operator creates accounts (`kanald user add`).
    Closed,
}

impl Registration {
    /// The name `kanald.toml` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Invite => "invite",
            Self::Closed => "closed",
        }
    }
}

/// What a node lets clients do, and how fast. A rate or maximum of 0 means
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Who may register.
    pub registration: Registration,
    /// Registrations one source address (IPv6: its /64) may make per hour,
    /// all at once or spread out.
    pub registrations_per_hour_per_source: u32,
    /// Registrations all sources together may make per hour.
    pub registrations_per_hour: u32,
    /// Sends (and new conversations) one party may make per second,
    /// sustained.
    pub sends_per_second_per_party: u32,
    /// Sends one party may make at once, above the sustained rate.
    pub send_burst_per_party: u32,
    /// Connections one source address (IPv6: its /64) may hold at once.
    pub max_connections_per_source: u32,
    /// Connections one account may hold at once.
    pub max_connections_per_account: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            registration: Registration::Open,
            registrations_per_hour_per_source: 20,
            registrations_per_hour: 3_600,
            sends_per_second_per_party: 50,
            send_burst_per_party: 200,
            max_connections_per_source: 1_000,
            max_connections_per_account: 32,
        }
    }
}

/// The limits of one node.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Failed logins by source address (IPv6 by its /64).
    pub(crate) failed_by_source: Buckets<IpAddr>,
    /// Failed logins by account address.
    pub(crate) failed_by_account: Buckets<String>,
    /// Registrations by source address.
    registrations_by_source: Option<Buckets<IpAddr>>,
    /// Registrations of everyone together.
    registrations: Option<Buckets<()>>,
    /// Sends by party.
    sends: Option<Buckets<PartyId>>,
    /// Connections held, by source address.
    connections_by_source: Occupancy<IpAddr>,
    /// Connections held, by account.
    connections_by_account: Occupancy<PartyId>,
}

impl Limits {
    /// The limits `policy` sets, every bucket full.
    pub(crate) fn new(policy: &Policy) -> Self {
        Self {
            failed_by_source: Buckets::new(SOURCE_FAILURES, SOURCE_REFILL),
            failed_by_account: Buckets::new(ACCOUNT_FAILURES, ACCOUNT_REFILL),
            registrations_by_source: hourly(policy.registrations_per_hour_per_source),
            registrations: hourly(policy.registrations_per_hour),
            connections_by_source: Occupancy::new(policy.max_connections_per_source),
            connections_by_account: Occupancy::new(policy.max_connections_per_account),
            sends: (policy.sends_per_second_per_party > 0).then(|| {
                Buckets::new(
                    f64::from(policy.send_burst_per_party.max(1)),
                    Duration::from_secs(1) / policy.sends_per_second_per_party,
                )
            }),
        }
    }

    /// Counts a registration attempt from `source`, or says how long until
    /// one is allowed. A source's refusal takes nothing from everyone's
    /// budget.
    pub(crate) fn register(&self, source: IpAddr) -> Result<(), Refusal> {
        let source = source_key(source);
        let refuse = |wait| Refusal::rate_limited("too many registrations", wait);
        if let Some(by_source) = &self.registrations_by_source {
            by_source.check(&source).map_err(refuse)?;
        }
        if let Some(everyone) = &self.registrations {
            everyone.try_take(&()).map_err(refuse)?;
        }
        if let Some(by_source) = &self.registrations_by_source {
            by_source.take(&source);
        }
        Ok(())
    }

    /// Counts a send (or a new conversation) of `party`, or says how long
    /// until one is allowed.
    pub(crate) fn send(&self, party: PartyId) -> Result<(), Refusal> {
        match &self.sends {
            Some(sends) => sends
                .try_take(&party)
                .map_err(|wait| Refusal::rate_limited("sending too fast", wait)),
            None => Ok(()),
        }
    }
    /// A seat for one more connection from `source`, or the refusal once the
    /// source holds its most.
    pub(crate) fn connect_from(&self, source: IpAddr) -> Result<Seat<IpAddr>, Refusal> {
        self.connections_by_source
            .take(source_key(source))
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::RateLimited,
                    "too many connections from this address; close some first",
                )
            })
    }

    /// A seat for one more connection of `party`, or the refusal once the
    /// account holds its most.
    pub(crate) fn connect_as(&self, party: PartyId) -> Result<Seat<PartyId>, Refusal> {
        self.connections_by_account.take(party).ok_or_else(|| {
            Refusal::new(
                RefusalCode::RateLimited,
                "too many connections of this account; close some first",
            )
        })
    }
}

/// Counts of something held, by key, each at most a maximum (0: no
/// maximum). A [`Seat`] is one of them, given back when dropped.
#[derive(Debug)]
pub(crate) struct Occupancy<K: Hash + Eq> {
    max: u32,
    counts: Arc<Mutex<HashMap<K, u32>>>,
}

/// One held place of an [`Occupancy`].
#[derive(Debug)]
pub(crate) struct Seat<K: Hash + Eq> {
    key: Option<K>,
    counts: Arc<Mutex<HashMap<K, u32>>>,
}

impl<K: Hash + Eq + Clone> Occupancy<K> {
    fn new(max: u32) -> Self {
        Self {
            max,
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A seat for `key`, unless it holds its most already.
    pub(crate) fn take(&self, key: K) -> Option<Seat<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Seat {
            key: Some(key),
            counts: self.counts.clone(),
        })
    }

    /// How many seats `key` holds.
    #[cfg(test)]
    fn held(&self, key: &K) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq> Drop for Seat<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                // Forgotten at zero: the map holds only keys with seats.
                counts.remove(&key);
            }
        }
    }
}

/// Buckets allowing `n` an hour, all at once or spread out; `None` for 0.
fn hourly<K: Hash + Eq + Clone>(n: u32) -> Option<Buckets<K>> {
    (n > 0).then(|| Buckets::new(f64::from(n), Duration::from_secs(3600) / n))
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

    /// Takes a token from `key`'s bucket if it has one, or says how long
    /// until it has.
    pub(crate) fn try_take(&self, key: &K) -> Result<(), Duration> {
        // One lock for both steps: concurrent callers cannot both take
        // the last token.
        let now = Instant::now();
        let mut buckets = self.lock();
        if let Some(&(tokens, at)) = buckets.get(key) {
            let tokens = self.refilled(tokens, at, now);
            if tokens < 1.0 {
                return Err(self.refill.mul_f64(1.0 - tokens));
            }
        }
        self.take_locked(&mut buckets, key, now);
        Ok(())
    }

    /// Takes a token from `key`'s bucket (down to zero).
    pub(crate) fn take(&self, key: &K) {
        let now = Instant::now();
        let mut buckets = self.lock();
        self.take_locked(&mut buckets, key, now);
    }

    fn take_locked(&self, buckets: &mut HashMap<K, (f64, Instant)>, key: &K, now: Instant) {
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

    #[tokio::test(start_paused = true)]
    async fn registrations_are_limited_per_source_and_in_total() {
        let policy = Policy {
            registrations_per_hour_per_source: 2,
            registrations_per_hour: 3,
            ..Policy::default()
        };
        let limits = Limits::new(&policy);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(limits.register(a).is_ok());
        assert!(limits.register(a).is_ok());
        let refused = limits.register(a).expect_err("a's third in the hour");
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1800)));
        // a's refusal took nothing from the total: b gets the last one.
        assert!(limits.register(b).is_ok());
        assert!(limits.register(b).is_err(), "the hour's total is spent");
        tokio::time::advance(Duration::from_secs(1800)).await;
        assert!(limits.register(a).is_ok(), "half an hour refills one");
    }

    #[tokio::test(start_paused = true)]
    async fn sends_are_limited_per_party_with_a_burst() {
        let policy = Policy {
            sends_per_second_per_party: 10,
            send_burst_per_party: 3,
            ..Policy::default()
        };
        let limits = Limits::new(&policy);
        for _ in 0..3 {
            assert!(limits.send(1).is_ok());
        }
        let refused = limits.send(1).expect_err("past the burst");
        assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
        assert!(limits.send(2).is_ok(), "parties are apart");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limits.send(1).is_ok());
        let unlimited = Limits::new(&Policy {
            sends_per_second_per_party: 0,
            ..Policy::default()
        });
        for _ in 0..10_000 {
            assert!(unlimited.send(1).is_ok());
        }
    }

    #[test]
    fn seats_are_limited_and_given_back() {
        let seats = Occupancy::new(2);
        let a = seats.take("a").expect("first");
        let b = seats.take("a").expect("second");
        assert!(seats.take("a").is_none(), "a holds its most");
        assert!(seats.take("b").is_some(), "keys are apart");
        drop(a);
        assert_eq!(seats.held(&"a"), 1);
        let _c = seats.take("a").expect("a seat was given back");
        drop(b);
        let unlimited = Occupancy::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.take(1).expect("no maximum"))
            .collect();
        assert_eq!(unlimited.held(&1), 1000);
        drop(held);
        assert_eq!(unlimited.held(&1), 0);
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
