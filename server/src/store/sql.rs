//! The [`Store`] of the SQL backends (SQLite and PostgreSQL), written once:
//! reads run the shared statements of `reads` on the backend's [`Reader`];
//! what each backend does its own way (writing, backing up) is its
//! [`SqlBackend`].

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kanal_proto::address::{Address, ConversationId};

use super::reads::{self, Reader};
use super::{SEVERAL_NODES, Store, StoreError, StoreResult};
use crate::model::{
    Committed, ConversationKey, ConversationRecord, ConversationView, Counters, Device, Event,
    InboxHead, Invite, LogHead, Message, NewDevice, NewInvite, NodeStatus, OutboxRow, Party,
    PartyId, PeerRecord, ReceiptKind, Session, SlotLease, StoredSend, Undelivered, Write,
};
use crate::model::{DeskEntry, StoredDesk, StoredTicket, TicketFilter};

/// An SQL backend: its pool for reads, and its writes. Each method is the
/// [`Store`] method of the same name.
#[async_trait]
pub(crate) trait SqlBackend: Send + Sync + 'static {
    /// The backend's pool for reads.
    type Reader: Reader;

    /// The connections this store reads on: clients' reads, or on the
    /// writer's own store ([`Store::for_writer`]) the writer's loads.
    fn reader(&self) -> &Self::Reader;

    /// [`Store::for_writer`].
    fn for_writer(&self) -> Option<Arc<dyn Store>>;

    /// [`Store::create_session`].
    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        client: &str,
    ) -> StoreResult<Session>;

    /// [`Store::ack_session`].
    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()>;

    /// [`Store::create_invite`].
    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite>;

    /// [`Store::take_invite`].
    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool>;

    /// [`Store::return_invite`].
    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()>;

    /// [`Store::revoke_invite`].
    async fn revoke_invite(&self, id: i64) -> StoreResult<bool>;

    /// [`Store::add_device`].
    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device>;

    /// [`Store::revoke_device`].
    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool>;

    /// [`Store::link_device`].
    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool>;

    /// [`Store::advance_initiations`].
    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>>;

    /// [`Store::commit`].
    async fn commit(&self, batch: Vec<Write>) -> StoreResult<Committed>;

    /// [`Store::counters`].
    async fn counters(&self) -> StoreResult<Counters>;

    /// [`Store::inbox_head`].
    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead>;

    /// [`Store::use_alone`].
    async fn use_alone(&self) -> StoreResult<()> {
        Ok(())
    }

    /// [`Store::use_with_others`].
    async fn use_with_others(&self) -> StoreResult<()> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// [`Store::stop_using`].
    async fn stop_using(&self) {}

    /// [`Store::report_node`].
    async fn report_node(&self, _status: &NodeStatus) -> StoreResult<()> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// [`Store::nodes`].
    async fn nodes(&self) -> StoreResult<Vec<NodeStatus>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// [`Store::slots`].
    async fn slots(&self, _now_ms: i64) -> StoreResult<Vec<SlotLease>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// [`Store::lease_slots`].
    async fn lease_slots(
        &self,
        _node: i64,
        _fair: u32,
        _lease_ms: i64,
        _now_ms: i64,
    ) -> StoreResult<Vec<SlotLease>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// [`Store::backup`].
    async fn backup(&self, to: &Path) -> StoreResult<()>;

    /// [`Store::put_peer`].
    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()>;

    /// [`Store::remove_peer`].
    async fn remove_peer(&self, domain: &str) -> StoreResult<bool>;

    /// [`Store::ack_outbox`].
    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()>;
}

#[async_trait]
impl<B: SqlBackend> Store for B {
    fn for_writer(&self) -> Option<Arc<dyn Store>> {
        SqlBackend::for_writer(self)
    }

    async fn party_by_address(&self, address: &Address) -> StoreResult<Option<Party>> {
        reads::party_by_address(self.reader(), address).await
    }

    async fn party_by_id(&self, id: PartyId) -> StoreResult<Option<Party>> {
        reads::party_by_id(self.reader(), id).await
    }

    async fn password_hash(&self, id: PartyId) -> StoreResult<Option<String>> {
        reads::password_hash(self.reader(), id).await
    }

    async fn inbox_agents(&self, inbox: PartyId) -> StoreResult<Vec<PartyId>> {
        reads::inbox_agents(self.reader(), inbox).await
    }

    async fn agent_inboxes(&self, agent: PartyId) -> StoreResult<Vec<PartyId>> {
        reads::agent_inboxes(self.reader(), agent).await
    }

    async fn parties(&self) -> StoreResult<Vec<Party>> {
        reads::parties(self.reader()).await
    }

    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        client: &str,
    ) -> StoreResult<Session> {
        SqlBackend::create_session(self, party, token_hash, client).await
    }

    async fn session_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<Session>> {
        reads::session_by_token_hash(self.reader(), token_hash).await
    }

    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()> {
        SqlBackend::ack_session(self, session, seq).await
    }

    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite> {
        SqlBackend::create_invite(self, invite, now_ms).await
    }

    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
        SqlBackend::take_invite(self, code_hash, now_ms).await
    }

    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()> {
        SqlBackend::return_invite(self, code_hash).await
    }

    async fn invites(&self, now_ms: i64) -> StoreResult<Vec<Invite>> {
        reads::invites(self.reader(), now_ms).await
    }

    async fn revoke_invite(&self, id: i64) -> StoreResult<bool> {
        SqlBackend::revoke_invite(self, id).await
    }

    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
        SqlBackend::add_device(self, device, now_ms).await
    }

    async fn devices(&self) -> StoreResult<Vec<Device>> {
        reads::devices(self.reader()).await
    }

    async fn devices_of(&self, owner: PartyId) -> StoreResult<Vec<Device>> {
        reads::devices_of(self.reader(), owner).await
    }

    async fn device_by_key(&self, key: [u8; 32]) -> StoreResult<Option<Device>> {
        reads::device_by_key(self.reader(), key).await
    }

    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool> {
        SqlBackend::revoke_device(self, serial, now_ms).await
    }

    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool> {
        SqlBackend::link_device(self, serial, owner).await
    }

    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>> {
        SqlBackend::advance_initiations(self, batch).await
    }

    async fn commit(&self, batch: Vec<Write>) -> StoreResult<Committed> {
        SqlBackend::commit(self, batch).await
    }

    async fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        reads::load_conversation(self.reader(), id).await
    }

    async fn counters(&self) -> StoreResult<Counters> {
        SqlBackend::counters(self).await
    }

    async fn watermark(
        &self,
        key: ConversationKey,
        party: PartyId,
        kind: ReceiptKind,
    ) -> StoreResult<u64> {
        reads::watermark(self.reader(), key, party, kind).await
    }

    async fn log_head(&self, party: PartyId) -> StoreResult<LogHead> {
        reads::log_head(self.reader(), party).await
    }

    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead> {
        SqlBackend::inbox_head(self, inbox).await
    }

    async fn find_send(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredSend>> {
        reads::find_send(self.reader(), key, sender, client_msg_id).await
    }

    async fn find_sends(
        &self,
        wanted: &[(ConversationKey, PartyId, String)],
    ) -> StoreResult<Vec<((ConversationKey, PartyId, String), StoredSend)>> {
        self.reader().find_sends(wanted).await
    }

    async fn desk(&self, inbox: PartyId) -> StoreResult<StoredDesk> {
        reads::desk(self.reader(), inbox).await
    }

    async fn ticket(&self, key: ConversationKey) -> StoreResult<Option<StoredTicket>> {
        reads::ticket(self.reader(), key).await
    }

    async fn tickets(
        &self,
        filter: &TicketFilter,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<StoredTicket>, bool)> {
        reads::tickets(self.reader(), filter, limit, offset).await
    }

    async fn desk_entries(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<DeskEntry>, bool)> {
        reads::desk_entries(self.reader(), key, before, limit).await
    }

    async fn inbox_desk_entries(
        &self,
        inbox: PartyId,
        period: (i64, i64),
        after: Option<(i64, ConversationKey, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<DeskEntry>> {
        reads::inbox_desk_entries(self.reader(), inbox, period, after, limit).await
    }

    async fn find_note(
        &self,
        key: ConversationKey,
        actor: PartyId,
        client_note_id: &str,
    ) -> StoreResult<Option<(u64, i64)>> {
        reads::find_note(self.reader(), key, actor, client_note_id).await
    }

    async fn can_see(&self, key: ConversationKey, party: PartyId) -> StoreResult<bool> {
        reads::can_see(self.reader(), key, party).await
    }

    async fn history(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<Message>, bool)> {
        reads::history(self.reader(), key, before, limit).await
    }

    async fn events_since(
        &self,
        party: PartyId,
        since: u64,
        limit: u32,
        max_body_bytes: usize,
    ) -> StoreResult<Vec<(u64, Event)>> {
        reads::events_since(self.reader(), party, since, limit, max_body_bytes).await
    }

    async fn conversations_of(
        &self,
        party: PartyId,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<ConversationView>, bool)> {
        reads::conversations_of(self.reader(), party, limit, offset).await
    }

    async fn conversation_view(
        &self,
        key: ConversationKey,
        viewer: PartyId,
    ) -> StoreResult<Option<ConversationView>> {
        reads::conversation_view(self.reader(), key, viewer).await
    }

    async fn backup(&self, to: &Path) -> StoreResult<()> {
        SqlBackend::backup(self, to).await
    }

    async fn outbox(&self, peer: &str, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        reads::outbox(self.reader(), peer, after, limit).await
    }

    async fn peers(&self) -> StoreResult<Vec<PeerRecord>> {
        reads::peers(self.reader()).await
    }

    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()> {
        SqlBackend::put_peer(self, peer).await
    }

    async fn remove_peer(&self, domain: &str) -> StoreResult<bool> {
        SqlBackend::remove_peer(self, domain).await
    }

    async fn outbox_head(&self, peer: &str) -> StoreResult<u64> {
        reads::outbox_head(self.reader(), peer).await
    }

    async fn outbox_acked(&self, peer: &str) -> StoreResult<u64> {
        reads::outbox_acked(self.reader(), peer).await
    }

    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()> {
        SqlBackend::ack_outbox(self, peer, up_to).await
    }

    async fn peer_committed(&self, peer: &str) -> StoreResult<u64> {
        reads::peer_committed(self.reader(), peer).await
    }

    async fn outbox_peers(&self) -> StoreResult<Vec<String>> {
        reads::outbox_peers(self.reader()).await
    }

    async fn peers_committed_since(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        reads::peers_committed_since(self.reader(), since_ms, limit).await
    }

    async fn submitted(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<bool> {
        reads::submitted(self.reader(), key, sender, client_msg_id).await
    }

    async fn undelivered(&self, peer: &str) -> StoreResult<Vec<Undelivered>> {
        reads::undelivered(self.reader(), peer).await
    }

    async fn report_node(&self, status: &NodeStatus) -> StoreResult<()> {
        SqlBackend::report_node(self, status).await
    }

    async fn use_alone(&self) -> StoreResult<()> {
        SqlBackend::use_alone(self).await
    }

    async fn use_with_others(&self) -> StoreResult<()> {
        SqlBackend::use_with_others(self).await
    }

    async fn stop_using(&self) {
        SqlBackend::stop_using(self).await;
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeStatus>> {
        SqlBackend::nodes(self).await
    }

    async fn lease_slots(
        &self,
        node: i64,
        fair: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<SlotLease>> {
        SqlBackend::lease_slots(self, node, fair, lease_ms, now_ms).await
    }

    async fn slots(&self, now_ms: i64) -> StoreResult<Vec<SlotLease>> {
        SqlBackend::slots(self, now_ms).await
    }
}
