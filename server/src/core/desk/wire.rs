//! The desk log's stored form: each entry is stored as the encoded
//! `kanal.v1.DeskEvent` every agent's client receives, as message bodies
//! are stored as the encoded `kanal.v1.Body`. The format is the documented
//! one, and replaying an entry is handing out its bytes.

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;
use prost::Message as _;

use crate::model::{
    CsatScale, DeskChange, Owner, Priority, RequeueReason, SlaEvent, Status, Target,
};

/// What one entry of a desk log says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// A change of the ticket.
    Change(&'a DeskChange),
    /// An internal note.
    Note(&'a str),
    /// The ticket's labels are now these.
    Labels(&'a [String]),
    /// It was transferred to this team.
    Team(&'a str),
    /// The conversation continues this one.
    Continues(&'a ConversationId),
    /// The customer rated a resolution.
    Rating(&'a pb::DeskRating),
}

/// The stored bytes of entry `dseq` of `conversation`'s desk log, made at
/// `at_ms` by `actor` (`None`: the desk); `address` names an owner.
pub(crate) fn encode(
    conversation: &ConversationId,
    dseq: u64,
    at_ms: i64,
    actor: Option<&Address>,
    entry: Entry<'_>,
    address: impl Fn(crate::model::PartyId) -> Option<Address>,
) -> Bytes {
    use pb::desk_event::Kind;
    let kind = match entry {
        Entry::Note(text) => Kind::Note(text.to_owned()),
        Entry::Labels(labels) => Kind::Labels(pb::DeskLabels {
            labels: labels.to_vec(),
        }),
        Entry::Team(team) => Kind::Team(team.to_owned()),
        Entry::Continues(old) => Kind::Continues(old.to_string()),
        Entry::Rating(rating) => Kind::Rating(rating.clone()),
        Entry::Change(DeskChange::Queued { reason }) => Kind::Queued(pb::DeskQueued {
            reason: reason.map_or(pb::QueueReason::Unspecified, queue_reason) as i32,
        }),
        Entry::Change(DeskChange::Assigned { owner, .. }) => {
            let (owner, bot) = match *owner {
                Owner::Nobody => (String::new(), false),
                Owner::Agent(id) => (
                    address(id).map(|a| a.to_string()).unwrap_or_default(),
                    false,
                ),
                Owner::Bot(id) => (address(id).map(|a| a.to_string()).unwrap_or_default(), true),
            };
            Kind::Assigned(pb::DeskAssigned { owner, bot })
        }
        Entry::Change(DeskChange::Status { from, to, .. }) => Kind::Status(pb::DeskStatus {
            from: ticket_status(*from) as i32,
            to: ticket_status(*to) as i32,
            snoozed_until_ms: match to {
                Status::Snoozed { until_ms } => *until_ms,
                _ => 0,
            },
        }),
        Entry::Change(DeskChange::Priority { to, .. }) => Kind::Priority(priority(*to) as i32),
        Entry::Change(DeskChange::Sla { event, .. }) => Kind::Sla(sla(*event)),
    };
    pb::DeskEvent {
        conversation: conversation.to_string(),
        dseq,
        at_ms,
        actor: actor.map(ToString::to_string).unwrap_or_default(),
        kind: Some(kind),
    }
    .encode_to_vec()
    .into()
}

/// A status on the wire.
pub(crate) fn ticket_status(status: Status) -> pb::TicketStatus {
    match status {
        Status::Open => pb::TicketStatus::Open,
        Status::Pending => pb::TicketStatus::Pending,
        Status::Snoozed { .. } => pb::TicketStatus::Snoozed,
        Status::Resolved { .. } => pb::TicketStatus::Resolved,
    }
}

/// A priority on the wire.
pub(crate) fn priority(priority: Priority) -> pb::Priority {
    match priority {
        Priority::Low => pb::Priority::Low,
        Priority::Normal => pb::Priority::Normal,
        Priority::High => pb::Priority::High,
        Priority::Urgent => pb::Priority::Urgent,
    }
}

/// A target on the wire.
pub(crate) fn target(target: Target) -> pb::SlaTarget {
    match target {
        Target::FirstResponse => pb::SlaTarget::FirstResponse,
        Target::NextResponse => pb::SlaTarget::NextResponse,
        Target::Resolution => pb::SlaTarget::Resolution,
    }
}

/// A survey's scale on the wire.
pub(crate) fn rating_scale(scale: CsatScale) -> pb::RatingScale {
    match scale {
        CsatScale::Stars => pb::RatingScale::Stars,
        CsatScale::Nps => pb::RatingScale::Nps,
        CsatScale::Thumbs => pb::RatingScale::Thumbs,
    }
}

fn queue_reason(reason: RequeueReason) -> pb::QueueReason {
    match reason {
        RequeueReason::OwnerOffline => pb::QueueReason::OwnerOffline,
        RequeueReason::NoAnswer => pb::QueueReason::NoAnswer,
        RequeueReason::HandOff => pb::QueueReason::HandOff,
        RequeueReason::Transfer => pb::QueueReason::Transfer,
        RequeueReason::OwnerLeft => pb::QueueReason::OwnerLeft,
    }
}

fn sla(event: SlaEvent) -> pb::DeskSla {
    let (t, alert, in_time, business_ms, started_at_ms) = match event {
        SlaEvent::Warning(t) => (t, pb::SlaAlert::Warning, false, 0, 0),
        SlaEvent::Breach(t) => (t, pb::SlaAlert::Breach, false, 0, 0),
        SlaEvent::Met {
            target,
            in_time,
            used_ms,
            started_ms,
        } => (target, pb::SlaAlert::Met, in_time, used_ms, started_ms),
    };
    pb::DeskSla {
        target: target(t) as i32,
        alert: alert as i32,
        in_time,
        business_ms,
        started_at_ms,
    }
}
