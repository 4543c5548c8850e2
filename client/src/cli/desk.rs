//! `kanal desk …`: an agent works the service desk from the command line
//! (PROTOCOL.md §15): lists and reads tickets, takes, assigns and
//! transfers them, sets status, priority and labels, writes internal notes,
//! reads the desk log and says whether it takes new conversations.

use crate::{Client, TicketFilter, pb};
use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::output::{self, clock, priority_name, ticket_status, timestamp};

/// The desk's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeskCommand {
    /// List tickets, most recently changed first (default: every unresolved
    /// ticket of every inbox you answer for)
    Tickets {
        /// Only this inbox's tickets (`local@domain`)
        #[arg(long)]
        inbox: Option<String>,
        /// Only tickets in this status (repeatable; `all` for every status)
        #[arg(long, value_enum)]
        status: Vec<StatusFilter>,
        /// Only tickets this agent owns (`me` for yourself)
        #[arg(long, conflicts_with = "unowned")]
        owner: Option<String>,
        /// Only tickets nobody owns: the queue
        #[arg(long)]
        unowned: bool,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many first
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Show one conversation's ticket
    Ticket {
        /// The conversation id
        conversation: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Give a conversation to an agent of its inbox (`me` to take it)
    Assign {
        /// The conversation id
        conversation: String,
        /// The agent's address, or `me`
        agent: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Put a conversation back in its desk's queue
    Unassign {
        /// The conversation id
        conversation: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Send a conversation to a team's queue
    Transfer {
        /// The conversation id
        conversation: String,
        /// The team's name, as the operator configured it
        team: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Set a ticket's status (`snoozed` needs --until)
    Status {
        /// The conversation id
        conversation: String,
        /// The new status
        #[arg(value_enum)]
        status: Status,
        /// Snooze until this time (`2026-12-08T09:00Z`) or for this long
        /// (`2h`, `3 days`); at most 366 days ahead
        #[arg(long, required_if_eq("status", "snoozed"))]
        until: Option<String>,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Set a ticket's priority
    Priority {
        /// The conversation id
        conversation: String,
        /// The new priority
        #[arg(value_enum)]
        priority: Priority,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Add and remove a ticket's labels
    Label {
        /// The conversation id
        conversation: String,
        /// Labels to add
        #[arg(long)]
        add: Vec<String>,
        /// Labels to remove
        #[arg(long)]
        remove: Vec<String>,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Write an internal note: the inbox's agents see it, the customer never does
    Note {
        /// The conversation id
        conversation: String,
        /// The note; several words are joined with spaces
        #[arg(required = true)]
        text: Vec<String>,
        /// An id of your own for the note: the same id again stores nothing
        /// (default: a fresh random one)
        #[arg(long)]
        id: Option<String>,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Print a conversation's desk log (notes and desk events), oldest first
    Log {
        /// The conversation id
        conversation: String,
        /// Only entries before this dseq (0: up to the newest)
        #[arg(long, default_value_t = 0)]
        before: u64,
        /// At most this many (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Say whether you take new conversations, at every inbox you answer
    /// for; lasts while any of your sessions stays connected (use
    /// `kanal listen --away` to listen without taking conversations)
    Availability {
        /// online, away (keeps your conversations, takes no new ones) or
        /// offline (gives your open conversations back to the queue)
        #[arg(value_enum)]
        availability: Availability,
    },
    /// Show a contact: its conversations with your inboxes (with their
    /// tickets) and the devices it owns with theirs
    Contact {
        /// The contact's address
        address: String,
        /// At most this many conversations each (1-500)
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// List the canned responses of your inboxes
    Canned {
        /// Only this inbox's (`local@domain`)
        #[arg(long)]
        inbox: Option<String>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Send a canned response, its placeholders filled in
    Reply {
        /// The conversation id
        conversation: String,
        /// The canned response's name
        name: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Report the desk's figures over a period: tickets opened, assigned
    /// and resolved, first-response and resolution times, SLA hits and
    /// CSAT, per inbox and per agent, and the backlog now
    Report(super::report::ReportArgs),
    /// Hand a conversation from the inbox's bot to the agents' queue
    HandOff {
        /// The conversation id
        conversation: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

/// A status to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StatusFilter {
    Open,
    Pending,
    Snoozed,
    Resolved,
    /// Every status, resolved too.
    All,
}

/// A status to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Status {
    Open,
    Pending,
    Snoozed,
    Resolved,
}

/// A priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// An agent's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Availability {
    Online,
    Away,
    Offline,
}

impl From<Availability> for pb::Availability {
    fn from(availability: Availability) -> Self {
        match availability {
            Availability::Online => pb::Availability::Online,
            Availability::Away => pb::Availability::Away,
            Availability::Offline => pb::Availability::Offline,
        }
    }
}

/// Runs one desk command on a connected client.
pub(crate) async fn run(client: &Client, command: DeskCommand) -> anyhow::Result<()> {
    let me = client.party().address;
    let agent = |name: String| if name == "me" { me.clone() } else { name };
    match command {
        DeskCommand::Tickets {
            inbox,
            status,
            owner,
            unowned,
            limit,
            offset,
            json,
        } => {
            let filter = TicketFilter {
                inbox: inbox.unwrap_or_default(),
                statuses: statuses(&status),
                owner: owner.map(agent).unwrap_or_default(),
                unowned,
                limit,
                offset,
            };
            let list = client.tickets(&filter).await.context("listing tickets")?;
            for ticket in &list.tickets {
                if json {
                    print_json(&ticket_json(ticket))?;
                } else {
                    print_line(&ticket_line(ticket))?;
                }
            }
            if list.has_more && !json {
                eprintln!("(more: --offset {})", offset as usize + list.tickets.len());
            }
            Ok(())
        }
        DeskCommand::Ticket { conversation, json } => show(
            client.ticket(&conversation).await,
            "reading the ticket of",
            &conversation,
            json,
        ),
        DeskCommand::Assign {
            conversation,
            agent: to,
            json,
        } => show(
            client.assign(&conversation, &agent(to)).await,
            "assigning",
            &conversation,
            json,
        ),
        DeskCommand::Unassign { conversation, json } => show(
            client.unassign(&conversation).await,
            "unassigning",
            &conversation,
            json,
        ),
        DeskCommand::Transfer {
            conversation,
            team,
            json,
        } => show(
            client.transfer(&conversation, &team).await,
            "transferring",
            &conversation,
            json,
        ),
        DeskCommand::Status {
            conversation,
            status,
            until,
            json,
        } => {
            let ticket = match (status, until) {
                (Status::Snoozed, Some(until)) => {
                    client.snooze(&conversation, snooze_until(&until)?).await
                }
                (Status::Snoozed, None) => bail!("snoozing needs --until"),
                (_, Some(_)) => bail!("--until is for `snoozed` only"),
                (status, None) => {
                    let status = match status {
                        Status::Open => pb::TicketStatus::Open,
                        Status::Pending => pb::TicketStatus::Pending,
                        Status::Resolved | Status::Snoozed => pb::TicketStatus::Resolved,
                    };
                    client.set_status(&conversation, status).await
                }
            };
            show(ticket, "setting the status of", &conversation, json)
        }
        DeskCommand::Priority {
            conversation,
            priority,
            json,
        } => {
            let priority = match priority {
                Priority::Low => pb::Priority::Low,
                Priority::Normal => pb::Priority::Normal,
                Priority::High => pb::Priority::High,
                Priority::Urgent => pb::Priority::Urgent,
            };
            show(
                client.set_priority(&conversation, priority).await,
                "setting the priority of",
                &conversation,
                json,
            )
        }
        DeskCommand::Label {
            conversation,
            add,
            remove,
            json,
        } => {
            if add.is_empty() && remove.is_empty() {
                bail!("nothing to change: give --add or --remove");
            }
            let add: Vec<&str> = add.iter().map(String::as_str).collect();
            let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
            show(
                client.set_labels(&conversation, &add, &remove).await,
                "labelling",
                &conversation,
                json,
            )
        }
        DeskCommand::Note {
            conversation,
            text,
            id,
            json,
        } => {
            let text = text.join(" ");
            let added = match id {
                Some(id) => client.add_note_with_id(&conversation, &id, &text).await,
                None => client.add_note(&conversation, &text).await,
            }
            .with_context(|| format!("adding a note to {conversation}"))?;
            if json {
                print_json(&json!({
                    "type": "note_added",
                    "conversation": added.conversation,
                    "dseq": added.dseq,
                    "at_ms": added.at_ms,
                    "duplicate": added.duplicate,
                }))
            } else {
                let again = if added.duplicate {
                    " (already there)"
                } else {
                    ""
                };
                print_line(&format!(
                    "{} desk #{}{again}",
                    added.conversation, added.dseq
                ))
            }
        }
        DeskCommand::Log {
            conversation,
            before,
            limit,
            json,
        } => {
            let page = client
                .desk_history(&conversation, before, limit)
                .await
                .with_context(|| format!("reading the desk log of {conversation}"))?;
            for entry in &page.events {
                if json {
                    print_json(&output::desk_json(entry, None))?;
                } else {
                    print_line(&format!(
                        "{} {}",
                        clock(entry.at_ms),
                        output::desk_line(entry)
                    ))?;
                }
            }
            if page.has_more && !json {
                let oldest = page.events.first().map_or(0, |e| e.dseq);
                eprintln!("(older entries: --before {oldest})");
            }
            Ok(())
        }
        DeskCommand::Availability { availability } => {
            client
                .set_availability(availability.into())
                .await
                .context("setting the availability")?;
            Ok(())
        }
        DeskCommand::Contact {
            address,
            limit,
            json,
        } => {
            let profile = client
                .contact(&address, limit)
                .await
                .with_context(|| format!("reading the contact {address}"))?;
            print_contact(&profile, json)
        }
        DeskCommand::Report(args) => super::report::run(client, args).await,
        DeskCommand::Canned { inbox, json } => {
            let responses = client
                .canned(inbox.as_deref().unwrap_or_default())
                .await
                .context("listing canned responses")?;
            for r in &responses {
                if json {
                    print_json(&json!({
                        "type": "canned",
                        "inbox": r.inbox,
                        "name": r.name,
                        "text": r.text,
                    }))?;
                } else {
                    print_line(&format!("{} {}: {}", r.inbox, r.name, r.text))?;
                }
            }
            Ok(())
        }
        DeskCommand::Reply {
            conversation,
            name,
            json,
        } => {
            let sent = reply(client, &conversation, &name).await?;
            super::commands::print_sent(&sent, json)
        }
        DeskCommand::HandOff { conversation, json } => show(
            client.hand_off(&conversation).await,
            "handing off",
            &conversation,
            json,
        ),
    }
}

/// `desk reply`: canned response `name` of the conversation's inbox, with
/// the customer's, the agent's and the inbox's names filled in, sent.
async fn reply(client: &Client, conversation: &str, name: &str) -> anyhow::Result<pb::Sent> {
    use crate::canned::{Fill, fill, name_of};
    let ticket = client
        .ticket(conversation)
        .await
        .with_context(|| format!("reading the ticket of {conversation}"))?;
    let responses = client
        .canned(&ticket.inbox)
        .await
        .context("listing canned responses")?;
    let Some(canned) = responses.iter().find(|r| r.name == name) else {
        bail!("{} has no canned response {name}", ticket.inbox);
    };
    let seen = client
        .conversation(conversation)
        .await
        .with_context(|| format!("reading {conversation}"))?;
    let me = client.party();
    let contact = seen
        .members
        .iter()
        .find(|p| p.address != ticket.inbox && p.address != me.address)
        .cloned()
        .unwrap_or_default();
    let text = fill(
        &canned.text,
        &Fill {
            contact_name: name_of(&contact),
            agent_name: name_of(&me),
            inbox_address: &ticket.inbox,
        },
    )
    .map_err(|e| anyhow::anyhow!("canned response {name}: {e}"))?;
    client
        .send_text(conversation, &text)
        .await
        .with_context(|| format!("sending to {conversation}"))
}

/// The statuses a `tickets --status …` list asks for: empty for the
/// server's default (every unresolved one).
fn statuses(filters: &[StatusFilter]) -> Vec<pb::TicketStatus> {
    if filters.contains(&StatusFilter::All) {
        return vec![
            pb::TicketStatus::Open,
            pb::TicketStatus::Pending,
            pb::TicketStatus::Snoozed,
            pb::TicketStatus::Resolved,
        ];
    }
    filters
        .iter()
        .map(|filter| match filter {
            StatusFilter::Open => pb::TicketStatus::Open,
            StatusFilter::Pending => pb::TicketStatus::Pending,
            StatusFilter::Snoozed => pb::TicketStatus::Snoozed,
            StatusFilter::Resolved | StatusFilter::All => pb::TicketStatus::Resolved,
        })
        .collect()
}

/// The end of a snooze, in Unix milliseconds: a timestamp
/// (`2026-12-08T09:00Z`) or a span from now (`2h`, `3 days`, `PT90M`).
fn snooze_until(text: &str) -> anyhow::Result<i64> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let span: jiff::Span = text.parse().with_context(|| {
        format!("--until {text:?} is neither a time (2026-12-08T09:00Z) nor a span (2h, 3 days)")
    })?;
    let now = jiff::Timestamp::now();
    // Days as calendar days in UTC: exactly 24 hours each.
    let end = now
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_add(span)
        .with_context(|| format!("--until {text:?} is too far ahead"))?
        .timestamp();
    if end <= now {
        bail!("--until {text:?} must lie ahead");
    }
    Ok(end.as_millisecond())
}

/// Prints a changed or read ticket, or says what failed.
fn show(
    ticket: Result<pb::Ticket, crate::ClientError>,
    doing: &str,
    conversation: &str,
    json: bool,
) -> anyhow::Result<()> {
    let ticket = ticket.with_context(|| format!("{doing} {conversation}"))?;
    if json {
        print_json(&ticket_json(&ticket))
    } else {
        print_line(&ticket_line(&ticket))
    }
}

/// A contact's profile: the party, then one line (or JSON object) per
/// conversation, its devices' after it.
fn print_contact(profile: &pb::Contact, json: bool) -> anyhow::Result<()> {
    let party = profile.party.clone().unwrap_or_default();
    let line = |owner: &str, c: &pb::ContactConversation| -> String {
        let conversation = c.conversation.clone().unwrap_or_default();
        let ticket = c
            .ticket
            .as_ref()
            .map_or_else(String::new, |t| format!(" — {}", ticket_line(t)));
        format!(
            "  {owner}{}{ticket}",
            output::conversation_line(&conversation)
        )
    };
    if json {
        let conversations = |list: &[pb::ContactConversation]| -> Vec<Value> {
            list.iter()
                .map(|c| {
                    json!({
                        "conversation": c.conversation.as_ref().map(|v| output::conversation_json(v, None)),
                        "ticket": c.ticket.as_ref().map(ticket_json),
                    })
                })
                .collect()
        };
        return print_json(&json!({
            "type": "contact",
            "address": party.address,
            "display_name": party.display_name,
            "conversations": conversations(&profile.conversations),
            "devices": profile.devices.iter().map(|d| json!({
                "address": d.party.as_ref().map(|p| p.address.clone()),
                "serial": d.serial,
                "model": d.model,
                "conversations": conversations(&d.conversations),
            })).collect::<Vec<_>>(),
            "has_more": profile.has_more,
        }));
    }
    let name = if party.display_name.is_empty() {
        String::new()
    } else {
        format!(" ({})", party.display_name)
    };
    print_line(&format!("{}{name}", party.address))?;
    for conversation in &profile.conversations {
        print_line(&line("", conversation))?;
    }
    for device in &profile.devices {
        print_line(&format!("  device {} ({})", device.serial, device.model))?;
        for conversation in &device.conversations {
            print_line(&line("  ", conversation))?;
        }
    }
    if profile.has_more {
        eprintln!("(more conversations: --limit)");
    }
    Ok(())
}

/// A ticket on one line, for people.
pub(crate) fn ticket_line(ticket: &pb::Ticket) -> String {
    let owner = match (ticket.owner.as_str(), ticket.owner_is_bot) {
        ("", _) => "unowned".to_owned(),
        (owner, true) => format!("bot {owner}"),
        (owner, false) => owner.to_owned(),
    };
    let mut line = format!(
        "{} {} {} {} ({})",
        ticket.conversation,
        ticket_status(ticket.status),
        priority_name(ticket.priority),
        owner,
        ticket.inbox
    );
    if ticket.snoozed_until_ms != 0 {
        line.push_str(&format!(" until {}", timestamp(ticket.snoozed_until_ms)));
    }
    if !ticket.team.is_empty() {
        line.push_str(&format!(" team {}", ticket.team));
    }
    if !ticket.labels.is_empty() {
        line.push_str(&format!(" [{}]", ticket.labels.join(", ")));
    }
    if ticket.sla_due_ms != 0 {
        line.push_str(&format!(" SLA due {}", timestamp(ticket.sla_due_ms)));
    }
    if !ticket.continues.is_empty() {
        line.push_str(&format!(" continues {}", ticket.continues));
    }
    line
}

/// A ticket as JSON: the protobuf message's fields, enums by name.
pub(crate) fn ticket_json(ticket: &pb::Ticket) -> Value {
    json!({
        "type": "ticket",
        "conversation": ticket.conversation,
        "inbox": ticket.inbox,
        "status": ticket_status(ticket.status),
        "snoozed_until_ms": ticket.snoozed_until_ms,
        "resolved_at_ms": ticket.resolved_at_ms,
        "owner": ticket.owner,
        "owner_is_bot": ticket.owner_is_bot,
        "team": ticket.team,
        "priority": priority_name(ticket.priority),
        "labels": ticket.labels,
        "waiting_since_ms": ticket.waiting_since_ms,
        "queued_at_ms": ticket.queued_at_ms,
        "continues": ticket.continues,
        "last_dseq": ticket.last_dseq,
        "sla_due_ms": ticket.sla_due_ms,
    })
}

fn print_line(line: &str) -> anyhow::Result<()> {
    super::commands::print_line(line)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    super::commands::print_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snooze_ends_at_a_time_or_after_a_span() {
        assert_eq!(
            snooze_until("2026-12-08T09:00:00Z").expect("a time"),
            1_796_720_400_000
        );
        let now = jiff::Timestamp::now().as_millisecond();
        let in_two_hours = snooze_until("2h").expect("a span");
        assert!(
            (in_two_hours - now - 7_200_000).abs() < 60_000,
            "{in_two_hours}"
        );
        assert!(snooze_until("3 days").is_ok());
        assert!(snooze_until("-1h").is_err(), "behind now");
        assert!(snooze_until("tomorrowish").is_err());
    }

    #[test]
    fn all_lists_every_status_and_nothing_asks_for_the_default() {
        assert!(statuses(&[]).is_empty());
        assert_eq!(statuses(&[StatusFilter::Open, StatusFilter::All]).len(), 4);
        assert_eq!(
            statuses(&[StatusFilter::Resolved]),
            [pb::TicketStatus::Resolved]
        );
    }

    #[test]
    fn a_ticket_line_names_what_matters() {
        let ticket = pb::Ticket {
            conversation: "localhost/abc".into(),
            inbox: "support@localhost".into(),
            status: pb::TicketStatus::Open as i32,
            owner: "alice@localhost".into(),
            priority: pb::Priority::High as i32,
            labels: vec!["billing".into(), "vip".into()],
            team: "tier2".into(),
            ..Default::default()
        };
        assert_eq!(
            ticket_line(&ticket),
            "localhost/abc open high alice@localhost (support@localhost) team tier2 [billing, vip]"
        );
        let json = ticket_json(&ticket);
        assert_eq!(json["status"], "open");
        assert_eq!(json["labels"], json!(["billing", "vip"]));
    }
}
