//! What the engine does for and with other servers (FEDERATION.md §4): a
//! conversation is ordered by its host alone. A change a local member makes
//! to a conversation hosted elsewhere is queued for its host as a
//! submission; a change the host orders is queued for the server of every
//! remote member, and applied there in the host's seq order. Each queued
//! transaction is a row of the outbox toward that server, committed with the
//! change it carries, numbered in that server's contiguous sequence.

use kanal_proto::address::{Address, ConversationId};

use super::{Command, Engine, Need, Reply, not_found};
use crate::core::audience::Audience;
use crate::core::federation::wire;
use crate::model::{
    Body, ConversationRecord, Member, NewParty, OutboxRow, Party, PartyKind, Refusal, RefusalCode,
    Replicated, Sent, Submitted, Transaction, Write,
};

use super::Applied;

impl Engine {
    /// What applying transaction `transaction` from `origin` needs.
    pub(super) fn federated_needs(&self, transaction: &Transaction, needs: &mut Vec<Need>) {
        let conversation = transaction.conversation();
        let loaded = self.conversations.get(conversation);
        if loaded.is_none() {
            needs.push(Need::Conversation(conversation.clone()));
        }
        let mut addresses: Vec<&Address> = Vec::new();
        match transaction {
            Transaction::Submit { sender, what, .. } => {
                addresses.push(sender);
                if let Submitted::Create { to, .. } = what {
                    addresses.extend(to);
                }
            }
            Transaction::Replicate { what, .. } => match what {
                Replicated::Created { members, .. } => {
                    addresses.extend(members.iter().map(|m| &m.address));
                }
                Replicated::Posted { sender, .. } => addresses.push(sender),
                Replicated::Watermark { party, .. } => addresses.push(party),
            },
        }
        let mut missing = false;
        for address in &addresses {
            let server = address.domain();
            if server != self.domain && !self.outbox_heads.contains_key(server) {
                needs.push(Need::OutboxHead(server.to_owned()));
            }
        }
        for address in addresses {
            if !self.parties.contains_key(address) {
                needs.push(Need::Party(address.clone()));
                missing = true;
            }
        }
        if self.ids_low() {
            needs.push(Need::Ids);
        }
        if missing {
            return;
        }
        if let Some((party, kind)) = watermark_of(transaction)
            && let (Some(state), Some(Some(party))) = (loaded, self.parties.get(party))
            && !state.watermarks.contains_key(&(party.id, kind))
        {
            needs.push(Need::Watermark {
                conversation: conversation.clone(),
                party: party.id,
                kind,
            });
        }
        if let (
            Some(state),
            Transaction::Replicate {
                what:
                    Replicated::Posted {
                        sender,
                        client_msg_id,
                        ..
                    },
                ..
            },
        ) = (loaded, transaction)
            && sender.domain() == self.domain
            && let Some(Some(party)) = self.parties.get(sender)
        {
            let wanted = (state.record.key, party.id, client_msg_id.clone());
            if !self.submissions.contains_key(&wanted) {
                needs.push(Need::Submission {
                    key: wanted.0,
                    sender: wanted.1,
                    client_msg_id: wanted.2,
                });
            }
        }
        match loaded {
            Some(state) => {
                self.conversation_needs(state, needs);
                self.desk_needs(&state.record.members, Some(state.record.key), needs);
            }
            None => {
                // A conversation it creates: its audience, of the parties
                // known (new remote parties have empty logs).
                let members: Vec<Party> = self.known_members(transaction);
                self.audience_needs(&members, needs);
                self.desk_needs(&members, None, needs);
            }
        }
    }

    /// The parties of the cache a transaction names, in order.
    fn known_members(&self, transaction: &Transaction) -> Vec<Party> {
        let addresses: Vec<&Address> = match transaction {
            Transaction::Submit {
                sender,
                what: Submitted::Create { to, .. },
                ..
            } => std::iter::once(sender).chain(to).collect(),
            Transaction::Replicate {
                what: Replicated::Created { members, .. },
                ..
            } => members.iter().map(|m| &m.address).collect(),
            _ => Vec::new(),
        };
        addresses
            .into_iter()
            .filter_map(|a| self.parties.get(a).cloned().flatten())
            .collect()
    }

    /// Applies transaction `seq` from `origin`. Whatever it does, and also
    /// when it is refused for good, the transaction is consumed in the same
    /// commit: it is applied once, however often the peer sends it.
    pub(super) fn federated(
        &mut self,
        now_ms: i64,
        origin: &str,
        seq: u64,
        transaction: Option<&Transaction>,
        applied: &mut Applied,
    ) -> Reply {
        let Some(&committed) = self.peer_committed.get(origin) else {
            return Reply::Refused(Refusal::internal(format!(
                "the cursor of {origin} could not be loaded"
            )));
        };
        if seq <= committed {
            // Consumed before, by this commit or an earlier one: the link
            // offered it again (a connection that ended while it was being
            // applied). Nothing changes; it is acknowledged.
            return Reply::Done;
        }
        if seq > committed + 1 {
            // One before it was not consumed (its commit failed, or was
            // refused for now): nothing after it may be, or it would be
            // skipped for good. The peer sends both again.
            return Reply::Refused(Refusal::internal(format!(
                "transaction {seq} of {origin} came before {} was committed",
                committed + 1
            )));
        }
        let reply = match transaction {
            None => Reply::Done,
            Some(transaction) => match self.check_origin(origin, transaction) {
                Err(refusal) => Reply::Refused(refusal),
                Ok(()) => self.apply_transaction(now_ms, transaction, applied),
            },
        };
        if matches!(&reply, Reply::Refused(r) if r.code == RefusalCode::Internal) {
            // Nothing is consumed: the peer sends it again.
            applied.writes.clear();
            applied.published.clear();
        } else {
            self.peer_committed.insert(origin.to_owned(), seq);
            applied.writes.push(Write::PeerCommitted {
                peer: origin.to_owned(),
                up_to: seq,
                at_ms: now_ms,
            });
        }
        reply
    }

    /// A server speaks only for its own parties, and orders only the
    /// conversations it hosts.
    fn check_origin(&self, origin: &str, transaction: &Transaction) -> Result<(), Refusal> {
        match transaction {
            Transaction::Submit {
                conversation,
                sender,
                ..
            } => {
                if sender.domain() != origin {
                    return Err(forged(format!("{origin} submits for {sender}")));
                }
                if conversation.host() != self.domain {
                    return Err(forged(format!(
                        "{origin} submits to {conversation}, which this server does not host"
                    )));
                }
            }
            Transaction::Replicate { conversation, .. } => {
                if conversation.host() != origin {
                    return Err(forged(format!(
                        "{origin} replicates {conversation}, which it does not host"
                    )));
                }
            }
        }
        Ok(())
    }

    fn apply_transaction(
        &mut self,
        now_ms: i64,
        transaction: &Transaction,
        applied: &mut Applied,
    ) -> Reply {
        match transaction {
            Transaction::Submit {
                conversation,
                sender,
                what: Submitted::Create { subject, to },
            } => {
                if let Some(state) = self.conversations.get(conversation) {
                    // A submission repeated after its host forgot the peer's
                    // sequence (a restored backup): the same start is done.
                    return if state.record.members.first().map(|m| &m.address) == Some(sender) {
                        Reply::Done
                    } else {
                        Reply::Refused(Refusal::new(
                            RefusalCode::BadRequest,
                            format!("{conversation} exists already"),
                        ))
                    };
                }
                if let Err(refused) = self.check_parties(std::iter::once(sender).chain(to)) {
                    return refused;
                }
                let mut members = Vec::with_capacity(to.len() + 1);
                for address in std::iter::once(sender).chain(to) {
                    match self.party_for(now_ms, address, None, applied) {
                        Ok(party) => members.push(party),
                        Err(refused) => return refused,
                    }
                }
                let by = members.remove(0);
                self.create_with_id(
                    now_ms,
                    &by,
                    &members,
                    subject,
                    conversation.clone(),
                    None,
                    applied,
                )
            }
            Transaction::Submit {
                conversation,
                sender,
                what:
                    Submitted::Post {
                        client_msg_id,
                        body,
                    },
            } => {
                let Some(Some(by)) = self.parties.get(sender).cloned() else {
                    return not_found(conversation);
                };
                self.send(now_ms, &by, conversation, client_msg_id, body, 0, applied)
            }
            Transaction::Submit {
                conversation,
                sender,
                what: Submitted::Watermark { kind, up_to },
            } => {
                let Some(Some(by)) = self.parties.get(sender).cloned() else {
                    return not_found(conversation);
                };
                self.mark(now_ms, &by, conversation, *kind, *up_to, applied)
            }
            Transaction::Replicate {
                conversation,
                what: Replicated::Watermark { party, kind, up_to },
            } => self.replica_watermark(now_ms, conversation, party, *kind, *up_to, applied),
            Transaction::Replicate {
                conversation,
                what:
                    Replicated::Created {
                        subject,
                        created_at_ms,
                        members,
                    },
            } => self.replica_created(
                now_ms,
                conversation,
                subject,
                *created_at_ms,
                members,
                applied,
            ),
            Transaction::Replicate {
                conversation,
                what:
                    Replicated::Posted {
                        seq,
                        sender,
                        client_msg_id,
                        sent_at_ms,
                        body,
                    },
            } => self.replica_posted(
                conversation,
                *seq,
                sender,
                client_msg_id,
                *sent_at_ms,
                body,
                applied,
            ),
        }
    }

    /// Refuses, before anything is written, a start naming a party of this
    /// server that does not exist, or a party that could not be looked up.
    fn check_parties<'a>(
        &self,
        mut addresses: impl Iterator<Item = &'a Address>,
    ) -> Result<(), Reply> {
        addresses.try_for_each(|address| match self.parties.get(address) {
            None => Err(Reply::Refused(Refusal::internal(
                "the directory could not be read",
            ))),
            Some(None) if address.domain() == self.domain => Err(Reply::Refused(Refusal::new(
                RefusalCode::NotFound,
                format!("no party {address}"),
            ))),
            Some(_) => Ok(()),
        })
    }

    /// The party at `address`: one of this server's, or a remote party,
    /// recorded here the first time a conversation names it.
    fn party_for(
        &mut self,
        now_ms: i64,
        address: &Address,
        as_member: Option<&Member>,
        applied: &mut Applied,
    ) -> Result<Party, Reply> {
        match self.parties.get(address) {
            Some(Some(party)) => Ok(party.clone()),
            None => Err(Reply::Refused(Refusal::internal(
                "the directory could not be read",
            ))),
            Some(None) if address.domain() == self.domain => Err(Reply::Refused(Refusal::new(
                RefusalCode::NotFound,
                format!("no party {address}"),
            ))),
            Some(None) => {
                let new = NewParty {
                    address: address.clone(),
                    kind: as_member.map_or(PartyKind::User, |m| m.kind),
                    display_name: as_member
                        .map_or_else(|| address.local().to_owned(), |m| m.display_name.clone()),
                    password_hash: None,
                };
                match self.add_party(now_ms, &new, applied) {
                    Reply::Party(party) => Ok(party),
                    other => Err(other),
                }
            }
        }
    }

    /// A conversation another server hosts, as it told this one.
    fn replica_created(
        &mut self,
        now_ms: i64,
        conversation: &ConversationId,
        subject: &str,
        created_at_ms: i64,
        members: &[Member],
        applied: &mut Applied,
    ) -> Reply {
        if self.conversations.contains_key(conversation) {
            // A local member started it: the replica exists since.
            return Reply::Done;
        }
        if !members.iter().any(|m| m.address.domain() == self.domain) {
            return Reply::Refused(Refusal::new(
                RefusalCode::NotFound,
                format!("{conversation} has no member on this server"),
            ));
        }
        if let Err(refused) = self.check_parties(members.iter().map(|m| &m.address)) {
            return refused;
        }
        // Numbered before any party is recorded: a refusal writes nothing.
        let key = match self.take_key() {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let mut parties = Vec::with_capacity(members.len());
        for member in members {
            match self.party_for(now_ms, &member.address, Some(member), applied) {
                Ok(party) => parties.push(party),
                Err(refused) => return refused,
            }
        }
        let record = ConversationRecord {
            key,
            id: conversation.clone(),
            subject: subject.to_owned(),
            created_at_ms,
            last_seq: 0,
            last_activity_ms: created_at_ms,
            members: parties,
        };
        let audience = self.audience(&record.members);
        self.start_conversation(now_ms, record, &audience, applied);
        Reply::Done
    }

    /// A message its host ordered at `seq`.
    #[expect(clippy::too_many_arguments, reason = "a message's whole content")]
    fn replica_posted(
        &mut self,
        conversation: &ConversationId,
        seq: u64,
        sender: &Address,
        client_msg_id: &str,
        sent_at_ms: i64,
        body: &Body,
        applied: &mut Applied,
    ) -> Reply {
        let Some((state, audience)) = self.loaded(conversation) else {
            return not_found(conversation);
        };
        let last = state.record.last_seq;
        let key = state.record.key;
        let member = state
            .record
            .members
            .iter()
            .find(|m| &m.address == sender)
            .cloned();
        let by = match member {
            Some(by) => by,
            // An agent of the host's answers through its inbox: the host
            // speaks for its own parties.
            None if sender.domain() == conversation.host() => {
                match self.party_for(sent_at_ms, sender, None, applied) {
                    Ok(party) => party,
                    Err(refused) => return refused,
                }
            }
            None => {
                return Reply::Refused(Refusal::new(
                    RefusalCode::NotFound,
                    format!("{sender} is not a member of {conversation}"),
                ));
            }
        };
        if seq <= last {
            return Reply::Done;
        }
        if sender.domain() == self.domain {
            // The host speaks for its own parties, never for this server's.
            match self
                .submissions
                .get(&(key, by.id, client_msg_id.to_owned()))
            {
                // Used once: a repeat of this seq is applied already.
                Some(true) => {
                    self.submissions
                        .remove(&(key, by.id, client_msg_id.to_owned()));
                }
                Some(false) => {
                    return Reply::Refused(forged(format!(
                        "{} replicates a message of {sender} ({client_msg_id:?}) that was never submitted from here",
                        conversation.host()
                    )));
                }
                None => {
                    return Reply::Refused(Refusal::internal("the submissions could not be read"));
                }
            }
        }
        if seq != last + 1 {
            return Reply::Refused(Refusal::new(
                RefusalCode::OutOfOrder,
                format!("{conversation} is at seq {last} here; {seq} is not the next"),
            ));
        }
        match self.append(
            sent_at_ms,
            key,
            conversation,
            &audience,
            &by,
            client_msg_id,
            body,
            applied,
        ) {
            Some(_) => Reply::Done,
            None => not_found(conversation),
        }
    }

    /// A member's watermark its host ordered. An agent of the host's
    /// answers through its inbox, so need not be a member here.
    fn replica_watermark(
        &mut self,
        now_ms: i64,
        conversation: &ConversationId,
        party: &Address,
        kind: crate::model::ReceiptKind,
        up_to: u64,
        applied: &mut Applied,
    ) -> Reply {
        let Some((state, audience)) = self.loaded(conversation) else {
            return not_found(conversation);
        };
        let key = state.record.key;
        let last = state.record.last_seq;
        let member = state
            .record
            .members
            .iter()
            .find(|m| &m.address == party)
            .cloned();
        let by = match member {
            Some(by) => by,
            None if party.domain() == conversation.host() => {
                match self.party_for(now_ms, party, None, applied) {
                    Ok(party) => party,
                    Err(refused) => return refused,
                }
            }
            None => {
                return Reply::Refused(Refusal::new(
                    RefusalCode::NotFound,
                    format!("{party} is not a member of {conversation}"),
                ));
            }
        };
        // The host orders a watermark after the messages it covers.
        if up_to > last {
            return Reply::Refused(Refusal::new(
                RefusalCode::OutOfOrder,
                format!("{conversation} is at seq {last} here; a watermark at {up_to} is ahead"),
            ));
        }
        self.raise(
            now_ms,
            key,
            conversation,
            &audience,
            &by,
            kind,
            up_to,
            applied,
        );
        Reply::Done
    }

    /// Whether the outbox toward every server `audience` reaches is loaded:
    /// a change it must carry can then be numbered.
    pub(super) fn outboxes_loaded(&self, audience: &Audience) -> bool {
        audience
            .servers()
            .iter()
            .all(|s| self.outbox_heads.contains_key(s))
    }

    /// Queues `transaction` toward `server`, in the same commit; its seq
    /// in that server's sequence.
    pub(super) fn queue(
        &mut self,
        now_ms: i64,
        server: &str,
        transaction: &Transaction,
        applied: &mut Applied,
    ) -> u64 {
        let head = self.outbox_heads.entry(server.to_owned()).or_default();
        *head += 1;
        let seq = *head;
        applied.writes.push(Write::Outbox(OutboxRow {
            peer: server.to_owned(),
            seq,
            payload: wire::encode(seq, transaction),
            enqueued_at_ms: now_ms,
        }));
        seq
    }

    /// Queues `what` toward the server of every remote member of a
    /// conversation this server hosts.
    pub(super) fn replicate(
        &mut self,
        now_ms: i64,
        conversation: &ConversationId,
        audience: &Audience,
        what: Replicated,
        applied: &mut Applied,
    ) {
        if conversation.host() != self.domain || audience.servers().is_empty() {
            return;
        }
        let transaction = Transaction::Replicate {
            conversation: conversation.clone(),
            what,
        };
        for server in audience.servers().to_vec() {
            self.queue(now_ms, &server, &transaction, applied);
        }
    }

    /// A local member's message to a conversation hosted elsewhere: queued
    /// for its host, which orders it and sends it back with its seq.
    #[expect(clippy::too_many_arguments, reason = "a message's whole content")]
    pub(super) fn submit_post(
        &mut self,
        now_ms: i64,
        by: &Party,
        key: crate::model::ConversationKey,
        conversation: &ConversationId,
        client_msg_id: &str,
        body: &Body,
        applied: &mut Applied,
    ) -> Reply {
        let host = conversation.host().to_owned();
        if !self.outbox_heads.contains_key(&host) {
            return Reply::Refused(Refusal::internal("the outbox could not be read"));
        }
        let transaction = Transaction::Submit {
            conversation: conversation.clone(),
            sender: by.address.clone(),
            what: Submitted::Post {
                client_msg_id: client_msg_id.to_owned(),
                body: body.clone(),
            },
        };
        self.queue(now_ms, &host, &transaction, applied);
        applied.writes.push(Write::Submitted {
            key,
            sender: by.id,
            client_msg_id: client_msg_id.to_owned(),
        });
        self.submissions
            .insert((key, by.id, client_msg_id.to_owned()), true);
        Reply::Sent(Sent {
            conversation: conversation.clone(),
            seq: 0,
            sent_at_ms: now_ms,
            duplicate: false,
            relayed: true,
        })
    }

    /// The members of a conversation as its host tells the other servers.
    pub(super) fn members_of(record: &ConversationRecord) -> Vec<Member> {
        record
            .members
            .iter()
            .map(|m| Member {
                address: m.address.clone(),
                kind: m.kind,
                display_name: m.display_name.clone(),
            })
            .collect()
    }

    /// Supplies whether a message was submitted from here.
    pub(crate) fn load_submission(
        &mut self,
        key: crate::model::ConversationKey,
        sender: crate::model::PartyId,
        client_msg_id: String,
        submitted: bool,
    ) {
        self.submissions
            .entry((key, sender, client_msg_id))
            .or_insert(submitted);
    }

    /// Supplies the highest outbox seq toward `peer`.
    pub(crate) fn load_outbox_head(&mut self, peer: String, head: u64) {
        let cached = self.outbox_heads.entry(peer).or_default();
        *cached = (*cached).max(head);
    }

    /// The store's cursor of `peer`: its transactions up to `up_to` are
    /// consumed.
    pub(crate) fn load_peer_committed(&mut self, peer: String, up_to: u64) {
        let cached = self.peer_committed.entry(peer).or_default();
        *cached = (*cached).max(up_to);
    }
}

/// Whose watermark of which kind a transaction raises, if it does.
fn watermark_of(transaction: &Transaction) -> Option<(&Address, crate::model::ReceiptKind)> {
    match transaction {
        Transaction::Submit {
            sender,
            what: Submitted::Watermark { kind, .. },
            ..
        } => Some((sender, *kind)),
        Transaction::Replicate {
            what: Replicated::Watermark { party, kind, .. },
            ..
        } => Some((party, *kind)),
        _ => None,
    }
}

/// The Command a received transaction becomes.
pub(crate) fn command(origin: &str, seq: u64, transaction: Option<Transaction>) -> Command {
    Command::Federated {
        origin: origin.to_owned(),
        seq,
        transaction: transaction.map(Box::new),
    }
}

fn forged(message: String) -> Refusal {
    Refusal::new(RefusalCode::ForgedOrigin, message)
}
