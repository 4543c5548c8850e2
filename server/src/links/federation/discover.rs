//! Where a peer without a configured address listens (FEDERATION.md §2):
//! its DNS SRV records `_kanal._udp.DOMAIN`, tried in priority order and,
//! within a priority, in a random order weighted as RFC 2782 says; each
//! target's A/AAAA addresses with the record's port. A domain without
//! such a record is tried at its own addresses, port 7449. The resolver
//! (hickory) caches answers for their TTL.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

/// The SRV service and protocol labels of Kanal's federation endpoint.
pub(crate) const SRV_PREFIX: &str = "_kanal._udp";

/// Longest a "no such record" answer is believed: no longer than the
/// longest delivery backoff, so a record the operator adds is found by
/// the next retry at the latest.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(300);

/// Finds peers in DNS.
pub(super) struct Discovery {
    /// The resolver, or why none could be made (then every lookup says so).
    resolver: Result<TokioResolver, String>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("ready", &self.resolver.is_ok())
            .finish()
    }
}

/// One SRV record: where a peer offers its federation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    priority: u16,
    weight: u16,
    port: u16,
    host: Name,
}

impl Discovery {
    /// Asks `nameserver` (UDP, then TCP for long answers), or the system's
    /// resolvers (`/etc/resolv.conf`) without one.
    pub(super) fn new(nameserver: Option<SocketAddr>) -> Self {
        let builder = match nameserver {
            Some(address) => {
                let mut server = NameServerConfig::udp_and_tcp(address.ip());
                for connection in &mut server.connections {
                    connection.port = address.port();
                }
                Ok(TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                ))
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("the system's DNS configuration cannot be read: {e}")),
        };
        let resolver = builder.and_then(|mut builder| {
            builder.options_mut().negative_max_ttl = Some(NEGATIVE_MAX_TTL);
            builder.build().map_err(|e| format!("no DNS resolver: {e}"))
        });
        if let Err(why) = &resolver {
            tracing::warn!("federation: peers cannot be found by DNS: {why}");
        }
        Self { resolver }
    }

    /// The addresses to try for `domain`, in order.
    pub(super) async fn locate(&self, domain: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        let service = format!("{SRV_PREFIX}.{domain}");
        let name = fqdn(&service)?;
        let targets = match resolver.srv_lookup(name).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(Target {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        host: srv.target.clone(),
                    }),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(format!("DNS SRV {service}: {e}")),
        };
        if targets.is_empty() {
            // No record: the domain itself, on the default port.
            let addresses = addresses(
                resolver,
                &fqdn(domain)?,
                kanal_proto::DEFAULT_FEDERATION_PORT,
            )
            .await
            .map_err(|why| format!("no DNS SRV record {service}, and {why}"))?;
            return Ok(addresses);
        }
        if let [only] = targets.as_slice()
            && only.host.is_root()
        {
            return Err(format!(
                "{domain} has no federation endpoint (DNS SRV {service} targets `.`)"
            ));
        }
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for target in order(targets, &mut rand::random::<u64>) {
            match addresses(resolver, &target.host, target.port).await {
                Ok(addresses) => found.extend(addresses),
                Err(why) => failures.push(why),
            }
        }
        if found.is_empty() {
            return Err(format!(
                "DNS SRV {service}: no target has an address: {}",
                failures.join("; ")
            ));
        }
        Ok(found)
    }
}

/// `name` as a fully qualified DNS name (no search list applies).
fn fqdn(name: &str) -> Result<Name, String> {
    let mut fqdn = Name::from_ascii(name).map_err(|e| format!("`{name}` is no DNS name: {e}"))?;
    fqdn.set_fqdn(true);
    Ok(fqdn)
}

/// The A/AAAA addresses of `host`, each with `port`.
async fn addresses(
    resolver: &TokioResolver,
    host: &Name,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let lookup = resolver
        .lookup_ip(host.clone())
        .await
        .map_err(|e| format!("{host} has no address: {e}"))?;
    let found: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if found.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok(found)
}

/// The order to try SRV targets in (RFC 2782): lowest priority first;
/// within a priority, each next one drawn at random with a chance in
/// proportion to its weight (those of weight 0 first in line, so they are
/// drawn rarely while others remain). `random` draws the numbers.
fn order(mut targets: Vec<Target>, random: &mut impl FnMut() -> u64) -> Vec<Target> {
    targets.sort_by_key(|t| (t.priority, t.weight != 0));
    let mut ordered = Vec::with_capacity(targets.len());
    while !targets.is_empty() {
        let priority = targets[0].priority;
        let end = targets.partition_point(|t| t.priority == priority);
        let mut group: Vec<Target> = targets.drain(..end).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|t| u64::from(t.weight)).sum();
            let draw = random() % (total + 1);
            let mut running = 0;
            let index = group
                .iter()
                .position(|t| {
                    running += u64::from(t.weight);
                    running >= draw
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(priority: u16, weight: u16, host: &str) -> Target {
        Target {
            priority,
            weight,
            port: 7449,
            host: fqdn(host).expect("name"),
        }
    }

    fn hosts(targets: &[Target]) -> Vec<String> {
        targets.iter().map(|t| t.host.to_string()).collect()
    }

    #[test]
    fn lower_priorities_come_first_whatever_the_weights() {
        let targets = vec![
            target(20, 100, "c.example"),
            target(10, 0, "a.example"),
            target(30, 1, "d.example"),
            target(10, 0, "b.example"),
        ];
        let mut zero = || 0;
        let ordered = order(targets, &mut zero);
        assert_eq!(ordered[0].priority, 10);
        assert_eq!(ordered[1].priority, 10);
        assert_eq!(hosts(&ordered[2..]), ["c.example.", "d.example."]);
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let targets = vec![
            target(10, 3, "heavy.example"),
            target(10, 1, "light.example"),
        ];
        let mut first = std::collections::HashMap::<String, u32>::new();
        // Every draw from 0 to 4 once: the running sums are 3, then 4;
        // draws 0 to 3 pick the heavy one, 4 the light one.
        let mut draws = 0..;
        for _ in 0..5 {
            let draw = draws.next().expect("draws");
            let mut random = std::iter::once(draw).chain(std::iter::repeat(0));
            let ordered = order(targets.clone(), &mut || random.next().expect("endless"));
            assert_eq!(ordered.len(), 2);
            *first.entry(ordered[0].host.to_string()).or_default() += 1;
        }
        assert_eq!(first.get("heavy.example."), Some(&4));
        assert_eq!(first.get("light.example."), Some(&1));
    }

    #[test]
    fn a_weight_of_zero_is_drawn_only_by_a_zero() {
        let targets = vec![
            target(10, 5, "weighted.example"),
            target(10, 0, "zero.example"),
        ];
        let mut zero = || 0;
        assert_eq!(
            hosts(&order(targets.clone(), &mut zero)),
            ["zero.example.", "weighted.example."]
        );
        let mut one = || 1;
        assert_eq!(
            hosts(&order(targets, &mut one)),
            ["weighted.example.", "zero.example."]
        );
    }
}
