//! The service desk's requests (PROTOCOL.md §15): changes go to the
//! engine as [`Command::Desk`], ordered with the conversation's messages;
//! listings and the desk log are read from the store.

use std::collections::HashMap;

use kanal_proto::address::Address;
use kanal_proto::{limits, pb};
use prost::Message as _;

use super::render;
use super::requests::{
    Answer, RESPONSE_BUDGET, answer, fitting, internal, local_host, page, parse_conversation,
    submit, visible_key,
};
use crate::core::desk::TicketState;
use crate::core::engine::{Command, DeskRequest};
use crate::model::{
    Availability, Owner, Party, PartyId, Priority, Refusal, RefusalCode, Status, StoredTicket,
    TicketFilter, TicketView,
};
use crate::node::Node;

/// Submits `request` of `party` on the conversation named `conversation`.
pub(super) async fn change(
    node: &Node,
    party: &Party,
    conversation: &str,
    request: DeskRequest,
) -> Answer {
    let id = parse_conversation(conversation)?;
    local_host(node, &id)?;
    submit(
        node,
        Command::Desk {
            by: party.clone(),
            conversation: id,
            request,
        },
    )
    .await
}

pub(super) async fn assign(node: &Node, party: &Party, assign: pb::Assign) -> Answer {
    let agent = match assign.agent.as_str() {
        "" => None,
        text => Some(known_party(node, text).await?),
    };
    change(
        node,
        party,
        &assign.conversation,
        DeskRequest::Assign(agent),
    )
    .await
}

pub(super) async fn transfer(node: &Node, party: &Party, transfer: pb::Transfer) -> Answer {
    if transfer.team.is_empty() || transfer.team.len() > limits::MAX_LABEL {
        return Err(bad(format!(
            "team must be 1 to {} bytes",
            limits::MAX_LABEL
        )));
    }
    change(
        node,
        party,
        &transfer.conversation,
        DeskRequest::Transfer(transfer.team),
    )
    .await
}

pub(super) async fn set_status(node: &Node, party: &Party, set: pb::SetStatus) -> Answer {
    let status = match pb::TicketStatus::try_from(set.status) {
        Ok(pb::TicketStatus::Open) => Status::Open,
        Ok(pb::TicketStatus::Pending) => Status::Pending,
        Ok(pb::TicketStatus::Snoozed) => Status::Snoozed {
            until_ms: set.snooze_until_ms,
        },
        // Stamped with the engine's time.
        Ok(pb::TicketStatus::Resolved) => Status::Resolved { at_ms: 0 },
        _ => return Err(bad("status must be OPEN, PENDING, SNOOZED or RESOLVED")),
    };
    change(node, party, &set.conversation, DeskRequest::Status(status)).await
}

pub(super) async fn set_priority(node: &Node, party: &Party, set: pb::SetPriority) -> Answer {
    let priority = match pb::Priority::try_from(set.priority) {
        Ok(pb::Priority::Low) => Priority::Low,
        Ok(pb::Priority::Normal) => Priority::Normal,
        Ok(pb::Priority::High) => Priority::High,
        Ok(pb::Priority::Urgent) => Priority::Urgent,
        _ => return Err(bad("priority must be LOW, NORMAL, HIGH or URGENT")),
    };
    change(
        node,
        party,
        &set.conversation,
        DeskRequest::Priority(priority),
    )
    .await
}

pub(super) async fn set_labels(node: &Node, party: &Party, set: pb::SetLabels) -> Answer {
    if set.add.len() + set.remove.len() > 2 * limits::MAX_LABELS {
        return Err(bad(format!(
            "at most {} labels to add and {0} to remove",
            limits::MAX_LABELS
        )));
    }
    for label in set.add.iter().chain(&set.remove) {
        check_label(label)?;
    }
    change(
        node,
        party,
        &set.conversation,
        DeskRequest::Labels {
            add: set.add,
            remove: set.remove,
        },
    )
    .await
}

pub(super) async fn add_note(node: &Node, party: &Party, note: pb::AddNote) -> Answer {
    if note.client_note_id.is_empty() || note.client_note_id.len() > limits::MAX_CLIENT_MSG_ID {
        return Err(bad(format!(
            "client_note_id must be 1 to {} bytes",
            limits::MAX_CLIENT_MSG_ID
        )));
    }
    if note.text.trim().is_empty() {
        return Err(bad("a note needs text"));
    }
    if note.text.len() > limits::MAX_NOTE {
        return Err(Refusal::new(
            RefusalCode::TooLarge,
            format!("a note is at most {} bytes", limits::MAX_NOTE),
        ));
    }
    node.limits.send(party.id)?;
    change(
        node,
        party,
        &note.conversation,
        DeskRequest::Note {
            client_note_id: note.client_note_id,
            text: note.text,
        },
    )
    .await
}

pub(super) async fn set_availability(
    node: &Node,
    party: &Party,
    set: pb::SetAvailability,
) -> Answer {
    let availability = match pb::Availability::try_from(set.availability) {
        Ok(pb::Availability::Online) => Availability::Online,
        Ok(pb::Availability::Away) => Availability::Away,
        Ok(pb::Availability::Offline) => Availability::Offline,
        _ => return Err(bad("availability must be ONLINE, AWAY or OFFLINE")),
    };
    let inboxes = node.store.agent_inboxes(party.id).await.map_err(internal)?;
    if inboxes.is_empty() {
        return Err(Refusal::new(
            RefusalCode::NotAnAgent,
            format!("{} answers for no inbox", party.address),
        ));
    }
    set_availability_at(node, party, &inboxes, availability).await?;
    Ok(pb::response::Kind::Done(pb::Done {}))
}

/// Sets `agent`'s availability at each of `inboxes`.
pub(crate) async fn set_availability_at(
    node: &Node,
    agent: &Party,
    inboxes: &[PartyId],
    availability: Availability,
) -> Result<(), Refusal> {
    for &inbox in inboxes {
        let Some(inbox) = node.store.party_by_id(inbox).await.map_err(internal)? else {
            continue;
        };
        let command = Command::SetAvailability {
            agent: agent.clone(),
            inbox,
            availability,
        };
        answer(node.writer.submit(command).await)?;
    }
    Ok(())
}

/// The inboxes a desk listing covers: the one named (`inbox`, an address
/// `party` answers for) or, for an empty name, every inbox `party`
/// answers for; `NOT_AN_AGENT` when that is none.
pub(super) async fn inboxes_of(
    node: &Node,
    party: &Party,
    inbox: &str,
) -> Result<Vec<PartyId>, Refusal> {
    let mine = node.store.agent_inboxes(party.id).await.map_err(internal)?;
    let inboxes = match inbox {
        "" => mine,
        text => {
            let inbox = known_party(node, text).await?;
            if !mine.contains(&inbox.id) {
                return Err(Refusal::new(
                    RefusalCode::NotAnAgent,
                    format!("{} does not answer for {}", party.address, inbox.address),
                ));
            }
            vec![inbox.id]
        }
    };
    if inboxes.is_empty() {
        return Err(Refusal::new(
            RefusalCode::NotAnAgent,
            format!("{} answers for no inbox", party.address),
        ));
    }
    Ok(inboxes)
}

pub(super) async fn list(node: &Node, party: &Party, list: pb::ListTickets) -> Answer {
    let inboxes = inboxes_of(node, party, &list.inbox).await?;
    let mut statuses = Vec::new();
    for status in &list.statuses {
        statuses.push(match pb::TicketStatus::try_from(*status) {
            Ok(pb::TicketStatus::Open) => Status::Open.as_i64().0,
            Ok(pb::TicketStatus::Pending) => Status::Pending.as_i64().0,
            Ok(pb::TicketStatus::Snoozed) => Status::Snoozed { until_ms: 0 }.as_i64().0,
            Ok(pb::TicketStatus::Resolved) => Status::Resolved { at_ms: 0 }.as_i64().0,
            _ => return Err(bad("statuses must be OPEN, PENDING, SNOOZED or RESOLVED")),
        });
    }
    let owner = match list.owner.as_str() {
        "" => None,
        text => Some(known_party(node, text).await?.id),
    };
    let filter = TicketFilter {
        inboxes,
        statuses,
        owner,
        unowned: list.unowned && owner.is_none(),
    };
    let (stored, mut has_more) = node
        .store
        .tickets(&filter, page(list.limit), list.offset)
        .await
        .map_err(internal)?;
    let mut names = Names::default();
    let mut tickets = Vec::with_capacity(stored.len());
    for ticket in &stored {
        tickets.push(render::ticket(&view(node, ticket, &mut names).await?));
    }
    let keep = fitting(tickets.iter(), RESPONSE_BUDGET);
    if keep < tickets.len() {
        tickets.truncate(keep);
        has_more = true;
    }
    Ok(pb::response::Kind::TicketList(pb::TicketList {
        tickets,
        has_more,
    }))
}

pub(super) async fn history(node: &Node, party: &Party, history: pb::DeskHistory) -> Answer {
    let id = parse_conversation(&history.conversation)?;
    if history.before_dseq > limits::MAX_SEQ {
        return Err(bad(format!(
            "before_dseq must be at most {}",
            limits::MAX_SEQ
        )));
    }
    let key = visible_key(node, &id, party.id).await?;
    let ticket = node.store.ticket(key).await.map_err(internal)?;
    let Some(ticket) = ticket else {
        return Ok(pb::response::Kind::DeskHistoryPage(pb::DeskHistoryPage {
            events: Vec::new(),
            has_more: false,
        }));
    };
    let agents = node
        .store
        .inbox_agents(ticket.inbox)
        .await
        .map_err(internal)?;
    if !agents.contains(&party.id) {
        return Err(Refusal::new(
            RefusalCode::NotAnAgent,
            format!(
                "{} does not answer for this conversation's inbox",
                party.address
            ),
        ));
    }
    let (entries, mut has_more) = node
        .store
        .desk_entries(key, history.before_dseq, page(history.limit))
        .await
        .map_err(internal)?;
    let mut events: Vec<pb::DeskEvent> = entries
        .iter()
        .filter_map(|e| pb::DeskEvent::decode(&e.payload[..]).ok())
        .collect();
    let keep = fitting(events.iter().rev(), RESPONSE_BUDGET);
    if keep < events.len() {
        events.drain(..events.len() - keep);
        has_more = true;
    }
    Ok(pb::response::Kind::DeskHistoryPage(pb::DeskHistoryPage {
        events,
        has_more,
    }))
}

/// Addresses of parties by id, read once per listing.
#[derive(Default)]
pub(super) struct Names(HashMap<PartyId, Option<Address>>);

impl Names {
    pub(super) async fn get(
        &mut self,
        node: &Node,
        id: PartyId,
    ) -> Result<Option<Address>, Refusal> {
        if let Some(address) = self.0.get(&id) {
            return Ok(address.clone());
        }
        let address = node
            .store
            .party_by_id(id)
            .await
            .map_err(internal)?
            .map(|p| p.address);
        self.0.insert(id, address.clone());
        Ok(address)
    }
}

/// A stored ticket as an agent sees it.
pub(super) async fn view(
    node: &Node,
    stored: &StoredTicket,
    names: &mut Names,
) -> Result<TicketView, Refusal> {
    let corrupt = |what: String| {
        tracing::error!(key = stored.key, %what, "a stored ticket does not read back");
        Refusal::internal("the server failed; retry later")
    };
    let state = TicketState::from_json(&stored.state).map_err(corrupt)?;
    let conversation = state
        .conversation
        .parse()
        .map_err(|_| corrupt(format!("conversation id {}", state.conversation)))?;
    let inbox = names
        .get(node, stored.inbox)
        .await?
        .ok_or_else(|| corrupt(format!("inbox {}", stored.inbox)))?;
    let (owner, owner_is_bot) = match stored.owner {
        Owner::Nobody => (None, false),
        Owner::Agent(id) => (names.get(node, id).await?, false),
        Owner::Bot(id) => (names.get(node, id).await?, true),
    };
    let ticket = state.ticket;
    Ok(TicketView {
        conversation,
        inbox,
        status: ticket.status,
        owner,
        owner_is_bot,
        team: ticket.team,
        priority: ticket.priority,
        labels: ticket.labels,
        waiting_since_ms: ticket.waiting_since_ms,
        queued_at_ms: ticket.queued_at_ms,
        continues: state.continues.and_then(|c| c.parse().ok()),
        last_dseq: stored.last_dseq,
        sla_due: state.sla_due,
    })
}

/// The party with the address `text`, which must exist.
pub(super) async fn known_party(node: &Node, text: &str) -> Result<Party, Refusal> {
    let address: Address = text.parse().map_err(|e: kanal_proto::address::NameError| {
        Refusal::new(RefusalCode::InvalidAddress, e.to_string())
    })?;
    node.store
        .party_by_address(&address)
        .await
        .map_err(internal)?
        .ok_or_else(|| Refusal::new(RefusalCode::NotFound, format!("no party {address}")))
}

fn check_label(label: &str) -> Result<(), Refusal> {
    if label.is_empty() || label.len() > limits::MAX_LABEL || label.chars().any(char::is_control) {
        return Err(bad(format!(
            "a label is 1 to {} bytes without control characters",
            limits::MAX_LABEL
        )));
    }
    Ok(())
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(RefusalCode::BadRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked() {
        assert!(check_label("billing").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label(&"x".repeat(limits::MAX_LABEL + 1)).is_err());
        assert!(check_label("a\nb").is_err());
    }
}
