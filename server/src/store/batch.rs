//! A batch of the engine's writes sorted into rows per table, for the SQL
//! backends: every value converted before the database is touched, so a
//! bad one costs nothing, and updates of one row coalesced as if the
//! writes had run one by one (a watermark and a peer's committed cursor
//! keep their maximum).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::columns::{event_kind, seq_to_db};
use super::{StoreResult, body};
use crate::model::{
    DeskEntry, EventRef, InboxClaim, ReceiptKind, StoredSeat, StoredTicket, Undelivered, Write,
};

/// A conversation row.
pub(crate) struct ConversationRow<'a> {
    pub(crate) key: i64,
    pub(crate) id: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) created_by: i64,
    pub(crate) created_at_ms: i64,
}

/// A party row.
pub(crate) struct PartyRow<'a> {
    pub(crate) id: i64,
    pub(crate) address: &'a str,
    pub(crate) kind: i64,
    pub(crate) display_name: &'a str,
    pub(crate) password_hash: Option<&'a str>,
    pub(crate) created_at_ms: i64,
}

/// A message row.
pub(crate) struct MessageRow<'a> {
    pub(crate) key: i64,
    pub(crate) seq: i64,
    pub(crate) sender: i64,
    pub(crate) client_msg_id: &'a str,
    pub(crate) sent_at_ms: i64,
    pub(crate) body: Vec<u8>,
}

/// A `tickets` row.
pub(crate) struct TicketRow<'a> {
    pub(crate) key: i64,
    pub(crate) inbox: i64,
    pub(crate) status: i64,
    pub(crate) status_at_ms: Option<i64>,
    pub(crate) owner_kind: i64,
    pub(crate) owner: Option<i64>,
    pub(crate) priority: i64,
    pub(crate) last_dseq: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) state: &'a str,
}

impl<'a> TicketRow<'a> {
    fn new(ticket: &'a StoredTicket) -> StoreResult<Self> {
        let (status, status_at_ms) = ticket.status.as_i64();
        let (owner_kind, owner) = ticket.owner.as_i64();
        Ok(Self {
            key: ticket.key,
            inbox: ticket.inbox,
            status,
            status_at_ms,
            owner_kind,
            owner,
            priority: ticket.priority.as_i64(),
            last_dseq: seq_to_db(ticket.last_dseq)?,
            updated_at_ms: ticket.updated_at_ms,
            state: &ticket.state,
        })
    }
}

/// A `seats` row.
pub(crate) struct SeatRow {
    pub(crate) inbox: i64,
    pub(crate) agent: i64,
    pub(crate) availability: i64,
    pub(crate) capacity: Option<i64>,
    pub(crate) last_assigned_ms: i64,
}

impl SeatRow {
    fn new(seat: &StoredSeat) -> Self {
        Self {
            inbox: seat.inbox,
            agent: seat.agent,
            availability: seat.availability.as_i64(),
            capacity: seat.capacity.map(i64::from),
            last_assigned_ms: seat.last_assigned_ms,
        }
    }
}

/// A `desk_entries` row.
pub(crate) struct DeskEntryRow<'a> {
    pub(crate) key: i64,
    pub(crate) dseq: i64,
    pub(crate) inbox: i64,
    pub(crate) at_ms: i64,
    pub(crate) actor: Option<i64>,
    pub(crate) client_note_id: &'a str,
    pub(crate) payload: &'a [u8],
}

impl<'a> DeskEntryRow<'a> {
    fn new(entry: &'a DeskEntry) -> StoreResult<Self> {
        Ok(Self {
            key: entry.key,
            dseq: seq_to_db(entry.dseq)?,
            inbox: entry.inbox,
            at_ms: entry.at_ms,
            actor: entry.actor,
            client_note_id: &entry.client_note_id,
            payload: &entry.payload,
        })
    }
}

/// An `undelivered` row.
pub(crate) struct UndeliveredRow<'a> {
    pub(crate) peer: &'a str,
    pub(crate) seq: i64,
    pub(crate) refused: i64,
    pub(crate) reason: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) enqueued_at_ms: i64,
    pub(crate) failed_at_ms: i64,
    pub(crate) party: Option<i64>,
    pub(crate) event_seq: Option<i64>,
    pub(crate) key: Option<i64>,
    pub(crate) notice: Option<Vec<u8>>,
    pub(crate) replayed_as: Option<i64>,
}

impl<'a> UndeliveredRow<'a> {
    fn new(undelivered: &'a Undelivered) -> StoreResult<Self> {
        let told = undelivered.told.as_ref();
        Ok(Self {
            peer: &undelivered.peer,
            seq: seq_to_db(undelivered.seq)?,
            refused: i64::from(undelivered.refused),
            reason: &undelivered.reason,
            payload: &undelivered.payload,
            enqueued_at_ms: undelivered.enqueued_at_ms,
            failed_at_ms: undelivered.failed_at_ms,
            party: told.map(|t| t.party),
            event_seq: told.map(|t| seq_to_db(t.event_seq)).transpose()?,
            key: told.map(|t| t.key),
            notice: told.map(|t| t.failure.encode().to_vec()),
            replayed_as: undelivered.replayed_as.map(seq_to_db).transpose()?,
        })
    }
}

/// Rows of an upserted table, the last write of each row winning (one
/// statement cannot update a row twice).
pub(crate) struct Upserts<K, T> {
    at: HashMap<K, usize>,
    pub(crate) rows: Vec<T>,
}

impl<K, T> Default for Upserts<K, T> {
    fn default() -> Self {
        Self {
            at: HashMap::new(),
            rows: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, T> Upserts<K, T> {
    /// Adds `row` under `key`, replacing an earlier row of the batch.
    fn put(&mut self, key: K, row: T) {
        match self.at.entry(key) {
            Entry::Occupied(at) => self.rows[*at.get()] = row,
            Entry::Vacant(at) => {
                at.insert(self.rows.len());
                self.rows.push(row);
            }
        }
    }
}

/// An event row.
pub(crate) struct EventRow {
    pub(crate) party: i64,
    pub(crate) seq: i64,
    pub(crate) key: i64,
    pub(crate) kind: i64,
    pub(crate) ref_seq: i64,
    pub(crate) actor: Option<i64>,
    pub(crate) at_ms: i64,
}

impl EventRow {
    /// The row of event `seq` of `log` (a party's or an inbox's).
    pub(crate) fn new(
        log: i64,
        seq: u64,
        key: i64,
        what: EventRef,
        at_ms: i64,
    ) -> StoreResult<Self> {
        let (kind, ref_seq, actor) = match what {
            EventRef::Message { seq } => (event_kind::MESSAGE, seq_to_db(seq)?, None),
            EventRef::ConversationAdded { last_seq } => {
                (event_kind::CONVERSATION_ADDED, seq_to_db(last_seq)?, None)
            }
            EventRef::Desk { dseq } => (event_kind::DESK, seq_to_db(dseq)?, None),
            EventRef::DeliveryFailed { seq } => {
                (event_kind::DELIVERY_FAILED, seq_to_db(seq)?, None)
            }
            EventRef::Receipt { party, kind, up_to } => {
                let kind = match kind {
                    ReceiptKind::Delivered => event_kind::DELIVERED,
                    ReceiptKind::Read => event_kind::READ,
                };
                (kind, seq_to_db(up_to)?, Some(party))
            }
        };
        Ok(Self {
            party: log,
            seq: seq_to_db(seq)?,
            key,
            kind,
            ref_seq,
            actor,
            at_ms,
        })
    }
}

/// A batch sorted by table.
#[derive(Default)]
pub(crate) struct Rows<'a> {
    pub(crate) parties: Vec<PartyRow<'a>>,
    /// (inbox, agent)
    pub(crate) inbox_agents: Vec<(i64, i64)>,
    pub(crate) conversations: Vec<ConversationRow<'a>>,
    /// (key, party, position)
    pub(crate) members: Vec<(i64, i64, i64)>,
    pub(crate) messages: Vec<MessageRow<'a>>,
    pub(crate) events: Vec<EventRow>,
    /// Rows of inbox logs (`party` is the inbox, `seq` its iseq).
    pub(crate) inbox_events: Vec<EventRow>,
    /// (party, seq, inbox, iseq)
    pub(crate) spans: Vec<(i64, i64, i64, i64)>,
    /// (key, party, kind, up_to), one per watermark.
    pub(crate) watermarks: Vec<(i64, i64, i64, i64)>,
    /// (peer, seq, payload, enqueued_at_ms)
    pub(crate) outbox: Vec<(&'a str, i64, &'a [u8], i64)>,
    /// (peer, up_to, at_ms), one per peer: the committed cursor of each
    /// peer the batch applied transactions from, and when.
    pub(crate) peer_committed: Vec<(&'a str, i64, i64)>,
    /// Transactions given up.
    pub(crate) undelivered: Vec<UndeliveredRow<'a>>,
    /// (key, sender, client_msg_id): messages submitted to other hosts.
    pub(crate) submitted: Vec<(i64, i64, &'a str)>,
    /// (peer, seq, as_seq): undelivered transactions queued again.
    pub(crate) replayed: Vec<(&'a str, i64, i64)>,
    /// What the batch assumed of party logs: (party, seq of the last row
    /// before the batch, whether the batch's rows of that log may move
    /// after another node's). Only a store several nodes write checks them.
    pub(crate) log_claims: Vec<(i64, i64, bool)>,
    /// What the batch assumed of inbox logs.
    pub(crate) inbox_claims: Vec<InboxClaim>,
    /// Tickets, by conversation key.
    pub(crate) tickets: Upserts<i64, TicketRow<'a>>,
    /// Seats, by (inbox, agent).
    pub(crate) seats: Upserts<(i64, i64), SeatRow>,
    /// (inbox, settings), by inbox.
    pub(crate) desk_settings: Upserts<i64, (i64, &'a str)>,
    pub(crate) desk_entries: Vec<DeskEntryRow<'a>>,
}

impl<'a> Rows<'a> {
    /// Moves the events of each log in `rebased` up by its count of seqs
    /// (another node appended to the log first; see `Write::LogClaim`).
    pub(crate) fn rebase(&mut self, rebased: &[(i64, u64)]) -> StoreResult<()> {
        for (party, by) in rebased {
            let by = seq_to_db(*by)?;
            for event in self.events.iter_mut().filter(|e| e.party == *party) {
                event.seq += by;
            }
        }
        Ok(())
    }

    /// Sorts a batch into rows per table, coalescing updates of one row.
    pub(crate) fn sort(batch: &'a [Write]) -> StoreResult<Self> {
        let mut rows = Rows::default();
        let mut watermark_at: HashMap<(i64, i64, i64), usize> = HashMap::new();
        let mut peer_committed_at: HashMap<&str, usize> = HashMap::new();
        for write in batch {
            match write {
                Write::NewParty {
                    id,
                    party,
                    created_at_ms,
                } => rows.parties.push(PartyRow {
                    id: *id,
                    address: party.address.as_str(),
                    kind: party.kind.as_i64(),
                    display_name: &party.display_name,
                    password_hash: party.password_hash.as_deref(),
                    created_at_ms: *created_at_ms,
                }),
                Write::InboxAgent { inbox, agent } => rows.inbox_agents.push((*inbox, *agent)),
                Write::Outbox(row) => {
                    rows.outbox.push((
                        row.peer.as_str(),
                        seq_to_db(row.seq)?,
                        &row.payload[..],
                        row.enqueued_at_ms,
                    ));
                }
                Write::PeerCommitted { peer, up_to, at_ms } => {
                    let up_to = seq_to_db(*up_to)?;
                    match peer_committed_at.entry(peer.as_str()) {
                        Entry::Occupied(at) => {
                            let row = &mut rows.peer_committed[*at.get()];
                            row.1 = row.1.max(up_to);
                            row.2 = row.2.max(*at_ms);
                        }
                        Entry::Vacant(at) => {
                            at.insert(rows.peer_committed.len());
                            rows.peer_committed.push((peer.as_str(), up_to, *at_ms));
                        }
                    }
                }
                Write::Undelivered(undelivered) => {
                    rows.undelivered.push(UndeliveredRow::new(undelivered)?);
                }
                Write::Submitted {
                    key,
                    sender,
                    client_msg_id,
                } => rows.submitted.push((*key, *sender, client_msg_id.as_str())),
                Write::Replayed { peer, seq, as_seq } => {
                    rows.replayed
                        .push((peer.as_str(), seq_to_db(*seq)?, seq_to_db(*as_seq)?));
                }
                Write::NewConversation {
                    key,
                    id,
                    subject,
                    created_by,
                    created_at_ms,
                    members,
                } => {
                    rows.conversations.push(ConversationRow {
                        key: *key,
                        id: id.as_str(),
                        subject,
                        created_by: *created_by,
                        created_at_ms: *created_at_ms,
                    });
                    for (position, party) in (1..).zip(members) {
                        rows.members.push((*key, *party, position));
                    }
                }
                Write::Message {
                    key,
                    seq,
                    sender,
                    client_msg_id,
                    sent_at_ms,
                    body,
                } => rows.messages.push(MessageRow {
                    key: *key,
                    seq: seq_to_db(*seq)?,
                    sender: *sender,
                    client_msg_id,
                    sent_at_ms: *sent_at_ms,
                    body: body::encode(body),
                }),
                Write::Event {
                    party,
                    seq,
                    key,
                    what,
                    at_ms,
                } => rows
                    .events
                    .push(EventRow::new(*party, *seq, *key, *what, *at_ms)?),
                Write::InboxEvent {
                    inbox,
                    iseq,
                    key,
                    what,
                    at_ms,
                } => rows
                    .inbox_events
                    .push(EventRow::new(*inbox, *iseq, *key, *what, *at_ms)?),
                Write::Span {
                    party,
                    seq,
                    inbox,
                    iseq,
                } => rows
                    .spans
                    .push((*party, seq_to_db(*seq)?, *inbox, seq_to_db(*iseq)?)),
                Write::LogClaim {
                    party,
                    was,
                    rebasable,
                    ..
                } => {
                    rows.log_claims.push((*party, seq_to_db(*was)?, *rebasable));
                }
                Write::InboxClaim(claim) => rows.inbox_claims.push(*claim),
                Write::Ticket(ticket) => rows.tickets.put(ticket.key, TicketRow::new(ticket)?),
                Write::Seat(seat) => rows.seats.put((seat.inbox, seat.agent), SeatRow::new(seat)),
                Write::DeskSettings { inbox, settings } => {
                    rows.desk_settings.put(*inbox, (*inbox, settings.as_str()));
                }
                Write::DeskEntry(entry) => rows.desk_entries.push(DeskEntryRow::new(entry)?),
                Write::Watermark {
                    key,
                    party,
                    kind,
                    up_to,
                } => {
                    let up_to = seq_to_db(*up_to)?;
                    match watermark_at.entry((*key, *party, kind.as_i64())) {
                        Entry::Occupied(at) => {
                            let row = &mut rows.watermarks[*at.get()];
                            row.3 = row.3.max(up_to);
                        }
                        Entry::Vacant(at) => {
                            at.insert(rows.watermarks.len());
                            rows.watermarks.push((*key, *party, kind.as_i64(), up_to));
                        }
                    }
                }
            }
        }
        Ok(rows)
    }
}
