//! Which node orders which conversations.
//!
//! A conversation's home is the first local inbox among its members, or
//! else the party that started it; its slot is a hash of its home into
//! [`SLOTS`]. So every conversation of one inbox is ordered by one node,
//! which alone appends to that inbox's log. Each node leases a fair share
//! of the slots (all slots over the nodes that reported themselves
//! lately), renews its leases every [`LEASE_EVERY`], and takes over slots
//! whose lease ran out: a node that died loses its slots within twice
//! [`LEASE`] (a slot not renewed for a whole lease is an orphan any node
//! takes), and the slots spread again once the others count it out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kanal_proto::address::ConversationId;

use super::UP_WITHIN;
use crate::core::engine::Command;
use crate::model::{Party, PartyId, PartyKind, SLOTS, SlotLease};
use crate::node::Node;
use crate::node::writer::now_ms;
use crate::store::{Store, StoreResult};

/// How long a lease runs unless renewed.
pub(crate) const LEASE: Duration = Duration::from_secs(5);

/// How often a node renews its leases and reads everyone's.
pub(crate) const LEASE_EVERY: Duration = Duration::from_secs(1);

/// Conversation homes remembered (a home never changes) before the memory
/// is cleared.
const MAX_HOMES: usize = 100_000;

/// The slot map as last read, and the homes of conversations seen.
pub(super) struct Slots {
    domain: String,
    owners: RwLock<Vec<Option<i64>>>,
    homes: Mutex<HashMap<ConversationId, PartyId>>,
}

impl Slots {
    pub(super) fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            owners: RwLock::new(vec![None; SLOTS as usize]),
            homes: Mutex::new(HashMap::new()),
        }
    }

    /// The holder of every slot, as last read.
    pub(super) fn owners(&self) -> Vec<Option<i64>> {
        self.owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node holding `slot`'s lease, as last read.
    pub(super) fn owner(&self, slot: u32) -> Option<i64> {
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        owners.get(slot as usize).copied().flatten()
    }

    fn set(&self, leases: &[SlotLease]) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        for lease in leases {
            if let Some(owner) = owners.get_mut(lease.slot as usize) {
                *owner = lease.owner;
            }
        }
    }

    /// The slot of the conversation `command` writes to, if it writes to
    /// one (`None` for a command any node orders, like a new party).
    pub(super) async fn slot_of(
        &self,
        store: &dyn Store,
        command: &Command,
    ) -> StoreResult<Option<u32>> {
        let home = match command {
            Command::AddParty(_) => return Ok(None),
            Command::AddInboxAgent { inbox, .. }
            | Command::SetAvailability { inbox, .. }
            | Command::SetCapacity { inbox, .. }
            | Command::ConfigureDesk { inbox, .. } => inbox.id,
            // A node ticks the desks it holds, of the slots it orders.
            Command::DeskTick => return Ok(None),
            // Federation runs on one node (FEDERATION.md §9).
            Command::Federated { .. } | Command::Undelivered { .. } | Command::Replay { .. } => {
                return Ok(None);
            }
            Command::CreateConversation { by, to, .. } => {
                home(&self.domain, std::iter::once(by).chain(to))
            }
            Command::Send { conversation, .. }
            | Command::MarkReceipt { conversation, .. }
            | Command::Desk { conversation, .. } => {
                let known = self
                    .homes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(conversation)
                    .copied();
                match known {
                    Some(home) => home,
                    None => {
                        let Some(record) = store.load_conversation(conversation).await? else {
                            return Ok(None);
                        };
                        let home = home(&self.domain, record.members.iter());
                        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
                        if homes.len() >= MAX_HOMES {
                            homes.clear();
                        }
                        homes.insert(conversation.clone(), home);
                        home
                    }
                }
            }
        };
        Ok(Some(slot(home)))
    }
}

/// The home of a conversation of `members` (its starter first).
fn home<'p>(domain: &str, mut members: impl Iterator<Item = &'p Party> + Clone) -> PartyId {
    let starter = members.clone().next().map_or(0, |p| p.id);
    members
        .find(|p| p.kind == PartyKind::Inbox && p.is_local(domain))
        .map_or(starter, |inbox| inbox.id)
}

/// The slot of a home: its id mixed (Fibonacci hashing), top bits.
pub(crate) fn slot(home: PartyId) -> u32 {
    let mixed = u64::from_ne_bytes(home.to_ne_bytes()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as u32
}

/// Renews this node's leases and reads everyone's, every [`LEASE_EVERY`].
pub(super) async fn lease(node: Arc<Node>, slots: Arc<Slots>, me: i64) {
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    let up_within = i64::try_from(UP_WITHIN.as_millis()).unwrap_or(i64::MAX);
    let mut every = tokio::time::interval(LEASE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = 0;
    loop {
        every.tick().await;
        let now = now_ms();
        let live = match node.store.nodes().await {
            Ok(nodes) => nodes
                .iter()
                .filter(|n| n.id == me || now - n.seen_at_ms <= up_within)
                .count()
                .max(1),
            Err(e) => {
                tracing::warn!(error = %e, "reading the nodes failed; leases kept as they are");
                continue;
            }
        };
        let fair = SLOTS.div_ceil(u32::try_from(live).unwrap_or(SLOTS));
        match node.store.lease_slots(me, fair, lease_ms, now).await {
            Ok(leases) => {
                let mine = leases.iter().filter(|l| l.owner == Some(me)).count();
                if mine != held {
                    tracing::info!(
                        slots = mine,
                        of = SLOTS,
                        nodes = live,
                        "slots this node orders"
                    );
                    held = mine;
                }
                slots.set(&leases);
            }
            Err(e) => tracing::warn!(error = %e, "renewing slot leases failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_and_stay() {
        let mut counts = vec![0u32; SLOTS as usize];
        for home in 1..=6400 {
            let s = slot(home);
            assert!(s < SLOTS);
            counts[s as usize] += 1;
            assert_eq!(slot(home), s, "a home's slot never changes");
        }
        assert!(
            counts.iter().all(|&n| (50..=150).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn an_inbox_is_home_to_its_conversations() {
        let party = |id, local: &str, kind| Party {
            id,
            address: format!("{local}@kanal.test").parse().expect("address"),
            kind,
            display_name: String::new(),
        };
        let carla = party(1, "carla", PartyKind::User);
        let support = party(2, "support", PartyKind::Inbox);
        let ann = party(3, "ann", PartyKind::Agent);
        assert_eq!(home("kanal.test", [&carla, &support].into_iter()), 2);
        assert_eq!(home("kanal.test", [&ann, &carla].into_iter()), 3);
        assert_eq!(home("elsewhere.test", [&carla, &support].into_iter()), 1);
    }
}
