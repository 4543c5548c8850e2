//! The driver around the core: the single writer that orders every change
//! and commits it in groups, the hub that fans committed events out to live
//! sessions, and what every link shares (accounts, the audience of a stored
//! conversation).

pub(crate) mod accounts;
pub(crate) mod auth;
pub(crate) mod cluster;
pub(crate) mod devices;
pub mod directory;
pub(crate) mod federation;
pub(crate) mod hub;
pub(crate) mod limits;
pub(crate) mod presence;
pub(crate) mod sequencer;
pub(crate) mod writer;

use std::sync::Arc;

use kanal_proto::address::ConversationId;

use crate::core::audience::Audience;
use crate::model::ConversationRecord;
use crate::store::{Store, StoreResult};
use hub::Hub;
use writer::WriterHandle;

/// One running server node: what every link and every connection shares.
pub struct Node {
    /// The domain this server answers for.
    pub domain: String,
    /// Who may register, and how fast clients may go.
    pub policy: limits::Policy,
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// The single writer: every change goes through it.
    pub writer: WriterHandle,
    /// Live fan-out.
    pub hub: Arc<Hub>,
    /// What sources and accounts may still attempt.
    pub(crate) limits: limits::Limits,
    /// Registered devices, by key.
    pub(crate) devices: devices::DeviceRegistry,
    /// Agents with a session open here.
    pub(crate) presence: presence::Presence,
    /// Configured peers, and what wakes delivery toward them.
    pub(crate) federation: federation::Federation,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node on `store`: its writer (which ends once the node and
    /// every clone of its writer handle are dropped) and its hub.
    pub async fn start(
        domain: String,
        policy: limits::Policy,
        store: Arc<dyn Store>,
        commit_window: std::time::Duration,
    ) -> StoreResult<(Arc<Node>, tokio::task::JoinHandle<()>)> {
        let hub = Arc::new(Hub::default());
        let writer_store = store.for_writer().unwrap_or_else(|| store.clone());
        let federation = federation::Federation::default();
        federation.peers.reload(store.as_ref()).await?;
        let (writer, task) = writer::spawn(
            writer_store,
            hub.clone(),
            domain.clone(),
            federation.outbox.clone(),
            commit_window,
        )
        .await?;
        let devices = devices::DeviceRegistry::default();
        devices.reload(store.as_ref()).await?;
        let node = Node {
            domain,
            policy,
            store,
            writer,
            hub,
            limits: limits::Limits::new(&policy),
            devices,
            presence: presence::Presence::default(),
            federation,
        };
        Ok((Arc::new(node), task))
    }

    /// What this node's writer has done since it started: batches
    /// committed, and batches applied again because another node wrote
    /// first.
    pub fn ordering(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        let stats = &self.writer.stats;
        (
            stats.batches.load(Ordering::Relaxed),
            stats.conflicts.load(Ordering::Relaxed),
        )
    }

    /// A stored conversation and its audience by the one rule, read from
    /// the store (for links that act outside the writer, like typing).
    pub async fn audience(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<(ConversationRecord, Audience)>> {
        let Some(record) = self.store.load_conversation(id).await? else {
            return Ok(None);
        };
        let mut agents = Vec::new();
        for inbox in Audience::inboxes(&self.domain, &record.members) {
            agents.push((inbox, self.store.inbox_agents(inbox).await?));
        }
        let audience = Audience::of(&self.domain, &record.members, |inbox| {
            agents
                .iter()
                .find(|(id, _)| *id == inbox)
                .map_or(&[], |(_, agents)| agents.as_slice())
        });
        Ok(Some((record, audience)))
    }
}
