//! The service desk as an agent's app uses it (PROTOCOL.md §15): tickets,
//! assigning and transferring, status, priority, labels, internal notes, the
//! desk log and the agent's availability.

use std::sync::PoisonError;

use kanal_proto::pb;
use kanal_proto::pb::{request, response};

use crate::client::{Client, new_client_msg_id};
use crate::error::ClientError;
use crate::request::unexpected;

/// Which tickets [`Client::tickets`] lists. The default: every unresolved
/// ticket of every inbox the caller answers for, 50 at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFilter {
    /// Only this inbox's tickets (an address); empty: every inbox.
    pub inbox: String,
    /// Only tickets in these states; empty: every state but `RESOLVED`.
    pub statuses: Vec<pb::TicketStatus>,
    /// Only tickets this agent (an address) owns.
    pub owner: String,
    /// Only tickets nobody owns (the queue).
    pub unowned: bool,
    /// At most this many (0: the server's default).
    pub limit: u32,
    /// Skip this many first.
    pub offset: u32,
}

impl TicketFilter {
    fn request(&self) -> request::Kind {
        request::Kind::ListTickets(pb::ListTickets {
            inbox: self.inbox.clone(),
            statuses: self.statuses.iter().map(|s| *s as i32).collect(),
            owner: self.owner.clone(),
            unowned: self.unowned,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

impl Client {
    /// The ticket of a conversation on a desk.
    pub async fn ticket(&self, conversation: &str) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::GetTicket(pb::GetTicket {
                conversation: conversation.to_owned(),
            }))
            .await?,
        )
    }

    /// The tickets `filter` selects, most recently changed first.
    pub async fn tickets(&self, filter: &TicketFilter) -> Result<pb::TicketList, ClientError> {
        match self.request(filter.request()).await? {
            response::Kind::TicketList(list) => Ok(list),
            other => Err(unexpected("TicketList", &other)),
        }
    }

    /// Gives the conversation to `agent` (an address of one of its inbox's
    /// agents), whatever that agent's availability and capacity.
    pub async fn assign(&self, conversation: &str, agent: &str) -> Result<pb::Ticket, ClientError> {
        self.assign_to(conversation, agent).await
    }

    /// Puts the conversation back in its desk's queue. Not repeated if the
    /// connection is lost meanwhile: the desk may have given it to someone
    /// else by then.
    pub async fn unassign(&self, conversation: &str) -> Result<pb::Ticket, ClientError> {
        self.assign_to(conversation, "").await
    }

    async fn assign_to(&self, conversation: &str, agent: &str) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::Assign(pb::Assign {
                conversation: conversation.to_owned(),
                agent: agent.to_owned(),
            }))
            .await?,
        )
    }

    /// Sends the conversation to `team`'s queue. Not repeated if the
    /// connection is lost meanwhile: a repeat would queue it again after
    /// the team has taken it.
    pub async fn transfer(
        &self,
        conversation: &str,
        team: &str,
    ) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::Transfer(pb::Transfer {
                conversation: conversation.to_owned(),
                team: team.to_owned(),
            }))
            .await?,
        )
    }

    /// Sets the ticket's status: open, pending or resolved (resolving is
    /// stamped with the server's time).
    pub async fn set_status(
        &self,
        conversation: &str,
        status: pb::TicketStatus,
    ) -> Result<pb::Ticket, ClientError> {
        self.status_request(conversation, status, 0).await
    }

    /// Snoozes the ticket until `until_ms` (Unix milliseconds, after now
    /// and at most 366 days ahead); a customer message ends it earlier.
    pub async fn snooze(
        &self,
        conversation: &str,
        until_ms: i64,
    ) -> Result<pb::Ticket, ClientError> {
        self.status_request(conversation, pb::TicketStatus::Snoozed, until_ms)
            .await
    }

    async fn status_request(
        &self,
        conversation: &str,
        status: pb::TicketStatus,
        snooze_until_ms: i64,
    ) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::SetStatus(pb::SetStatus {
                conversation: conversation.to_owned(),
                status: status as i32,
                snooze_until_ms,
            }))
            .await?,
        )
    }

    /// Sets the ticket's priority.
    pub async fn set_priority(
        &self,
        conversation: &str,
        priority: pb::Priority,
    ) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::SetPriority(pb::SetPriority {
                conversation: conversation.to_owned(),
                priority: priority as i32,
            }))
            .await?,
        )
    }

    /// Adds and removes labels (each 1–64 bytes; at most 32 on a ticket).
    pub async fn set_labels(
        &self,
        conversation: &str,
        add: &[&str],
        remove: &[&str],
    ) -> Result<pb::Ticket, ClientError> {
        let owned = |labels: &[&str]| labels.iter().map(|l| (*l).to_owned()).collect();
        ticket(
            self.request(request::Kind::SetLabels(pb::SetLabels {
                conversation: conversation.to_owned(),
                add: owned(add),
                remove: owned(remove),
            }))
            .await?,
        )
    }

    /// Adds an internal note, which the inbox's agents see and the customer
    /// never does, with a fresh random `client_note_id`.
    pub async fn add_note(
        &self,
        conversation: &str,
        text: &str,
    ) -> Result<pb::NoteAdded, ClientError> {
        self.add_note_with_id(conversation, &new_client_msg_id(), text)
            .await
    }

    /// Adds an internal note. The same `client_note_id` again returns the
    /// first note's `NoteAdded` (with `duplicate` set) and stores nothing,
    /// so a note retried after a lost connection is stored once.
    pub async fn add_note_with_id(
        &self,
        conversation: &str,
        client_note_id: &str,
        text: &str,
    ) -> Result<pb::NoteAdded, ClientError> {
        let kind = request::Kind::AddNote(pb::AddNote {
            conversation: conversation.to_owned(),
            client_note_id: client_note_id.to_owned(),
            text: text.to_owned(),
        });
        match self.request(kind).await? {
            response::Kind::NoteAdded(added) => Ok(added),
            other => Err(unexpected("NoteAdded", &other)),
        }
    }

    /// Up to `limit` desk-log entries older than `before_dseq` (0: the
    /// newest), oldest first.
    pub async fn desk_history(
        &self,
        conversation: &str,
        before_dseq: u64,
        limit: u32,
    ) -> Result<pb::DeskHistoryPage, ClientError> {
        let kind = request::Kind::DeskHistory(pb::DeskHistory {
            conversation: conversation.to_owned(),
            before_dseq,
            limit,
        });
        match self.request(kind).await? {
            response::Kind::DeskHistoryPage(page) => Ok(page),
            other => Err(unexpected("DeskHistoryPage", &other)),
        }
    }

    /// A contact's profile (an address): its conversations with the inboxes
    /// the caller answers for, with their tickets, and the devices it owns
    /// with theirs; up to `limit` conversations each (0: 50).
    pub async fn contact(&self, contact: &str, limit: u32) -> Result<pb::Contact, ClientError> {
        let kind = request::Kind::GetContact(pb::GetContact {
            contact: contact.to_owned(),
            limit,
        });
        match self.request(kind).await? {
            response::Kind::Contact(profile) => Ok(profile),
            other => Err(unexpected("Contact", &other)),
        }
    }

    /// The desk's figures over `from_ms..to_ms` (ms since the Unix epoch;
    /// `to_ms` 0: now, at most 366 days) for `inbox` (an address the
    /// caller answers for; empty: every inbox with a desk it answers for):
    /// first-response, next-response and resolution times, SLA hits,
    /// CSAT, per inbox and per agent, and each inbox's backlog now.
    pub async fn report(
        &self,
        inbox: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<pb::Report, ClientError> {
        let kind = request::Kind::GetReport(pb::GetReport {
            inbox: inbox.to_owned(),
            from_ms,
            to_ms,
        });
        match self.request(kind).await? {
            response::Kind::Report(report) => Ok(report),
            other => Err(unexpected("Report", &other)),
        }
    }

    /// Hands a conversation from the inbox's first-responder bot to the
    /// agents' queue. A repeat changes nothing.
    pub async fn hand_off(&self, conversation: &str) -> Result<pb::Ticket, ClientError> {
        ticket(
            self.request(request::Kind::HandOff(pb::HandOff {
                conversation: conversation.to_owned(),
            }))
            .await?,
        )
    }

    /// Sets whether the caller takes new conversations, at every inbox it
    /// answers for. The client remembers it and starts every later
    /// connection with it (`Hello.availability`), so that a reconnecting
    /// agent that is away is never online in between.
    pub async fn set_availability(
        &self,
        availability: pb::Availability,
    ) -> Result<(), ClientError> {
        *self
            .session()
            .availability
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(availability);
        let kind = request::Kind::SetAvailability(pb::SetAvailability {
            availability: availability as i32,
        });
        match self.request(kind).await? {
            response::Kind::Done(_) => Ok(()),
            other => Err(unexpected("Done", &other)),
        }
    }
}

fn ticket(kind: response::Kind) -> Result<pb::Ticket, ClientError> {
    match kind {
        response::Kind::Ticket(ticket) => Ok(ticket),
        other => Err(unexpected("Ticket", &other)),
    }
}
