//! The service desk's vocabulary: how an inbox routes its conversations,
//! where an agent stands, and the desk's view of one conversation (a
//! ticket): its status, who owns it, its priority and its place in the
//! waiting queue.

use super::conversation::ConversationKey;
use super::party::PartyId;

/// Whether an agent takes new conversations. Set by the agent; a session
/// ending makes an agent with no other session offline.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Availability {
    /// Takes new conversations, up to its capacity.
    Online,
    /// Keeps its conversations but takes no new ones.
    Away,
    /// Takes none; its open conversations go back to the queue.
    #[default]
    Offline,
}

impl Availability {
    /// Stable number stored in the database.
    pub const fn as_i64(self) -> i64 {
        match self {
            Availability::Online => 1,
            Availability::Away => 2,
            Availability::Offline => 3,
        }
    }

    /// The availability for a stored number.
    pub const fn from_i64(value: i64) -> Option<Self> {
        Some(match value {
            1 => Availability::Online,
            2 => Availability::Away,
            3 => Availability::Offline,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Availability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "online" => Availability::Online,
            "away" => Availability::Away,
            "offline" => Availability::Offline,
            other => {
                return Err(format!(
                    "unknown availability `{other}` (online, away or offline)"
                ));
            }
        })
    }
}

/// How an inbox hands its new conversations to agents.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Routing {
    /// Nobody is assigned automatically; agents take or are given
    /// conversations by hand. Every agent of the inbox still sees them.
    Manual,
    /// The next online agent with room, in turn.
    #[default]
    RoundRobin,
    /// The online agent with the fewest open conversations (ties: the one
    /// assigned least recently).
    Balanced,
}

impl std::str::FromStr for Routing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "manual" => Routing::Manual,
            "round-robin" => Routing::RoundRobin,
            "balanced" => Routing::Balanced,
            other => {
                return Err(format!(
                    "unknown routing `{other}` (manual, round-robin or balanced)"
                ));
            }
        })
    }
}

/// How an inbox's desk works: set by its operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskSettings {
    /// How new conversations reach agents.
    pub routing: Routing,
    /// Most open conversations an agent holds at once, unless the agent's
    /// own capacity says otherwise; `None`: no limit.
    pub capacity: Option<u32>,
    /// A customer message this long after a resolve reopens the
    /// conversation; later, it starts a new conversation linked to the
    /// old one.
    pub reopen_window_ms: i64,
    /// An assignee that has not answered a waiting customer within this
    /// long loses the conversation to the queue; `None`: never.
    pub answer_timeout_ms: Option<i64>,
    /// A bot that owns every new conversation first, until it hands off.
    pub first_responder: Option<PartyId>,
    /// An agent whose last connection ended keeps its open conversations
    /// this long, so that a dropped connection or a server restart
    /// reshuffles nothing; after it they go back to the queue. 0: at once.
    pub offline_grace_ms: i64,
    /// The satisfaction survey the inbox asks on every resolution; `None`:
    /// none.
    pub csat: Option<Csat>,
    /// What the inbox answers a customer who writes while it is closed, once
    /// per closed period and conversation; `{{opens}}` becomes when it
    /// opens. `None`: nothing; empty: the default words.
    pub out_of_hours_reply: Option<String>,
}

/// A satisfaction survey: a rating question the inbox sends into a
/// conversation each time it is resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Csat {
    /// Its scale (a device's customer is asked thumbs up or down, which its
    /// buttons show).
    pub scale: CsatScale,
    /// What it asks; empty: the scale's own words.
    pub text: String,
}

/// A survey's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsatScale {
    /// 1 to 5 stars.
    Stars,
    /// 0 to 10.
    Nps,
    /// Thumbs up or down.
    Thumbs,
}

impl std::str::FromStr for CsatScale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "stars" => Ok(Self::Stars),
            "nps" => Ok(Self::Nps),
            "thumbs" => Ok(Self::Thumbs),
            other => Err(format!("{other:?} is none of stars, nps, thumbs")),
        }
    }
}

impl Default for DeskSettings {
    fn default() -> Self {
        Self {
            routing: Routing::RoundRobin,
            capacity: None,
            reopen_window_ms: 7 * 24 * 3600 * 1000,
            answer_timeout_ms: None,
            first_responder: None,
            offline_grace_ms: 2 * 60 * 1000,
            csat: None,
            out_of_hours_reply: None,
        }
    }
}

/// Where a conversation of an inbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// Waiting on the desk.
    Open,
    /// Waiting on the customer: a customer message reopens it.
    Pending,
    /// Set aside until a time (or a customer message), then open again.
    Snoozed {
        /// When it opens again, ms since the Unix epoch.
        until_ms: i64,
    },
    /// Done; a customer message inside the reopen window reopens it.
    Resolved {
        /// When, ms since the Unix epoch.
        at_ms: i64,
    },
}

impl Status {
    /// Whether the conversation is resolved.
    pub const fn is_resolved(self) -> bool {
        matches!(self, Status::Resolved { .. })
    }

    /// Whether it occupies its assignee's capacity: open and pending
    /// conversations do; snoozed and resolved ones do not.
    pub const fn holds_a_seat(self) -> bool {
        matches!(self, Status::Open | Status::Pending)
    }

    /// The status's name, as the protocol and the CLI spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Snoozed { .. } => "snoozed",
            Status::Resolved { .. } => "resolved",
        }
    }
}

/// Who owns a conversation of an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Owner {
    /// Nobody: with automatic routing it waits in the queue.
    Nobody,
    /// An agent answers it.
    Agent(PartyId),
    /// A bot answers it, until it hands off to the agents.
    Bot(PartyId),
}

impl Owner {
    /// The owning agent, if an agent owns it.
    pub const fn agent(self) -> Option<PartyId> {
        match self {
            Owner::Agent(agent) => Some(agent),
            _ => None,
        }
    }

    /// The owning agent or bot, if anyone owns it.
    pub const fn party(self) -> Option<PartyId> {
        match self {
            Owner::Agent(id) | Owner::Bot(id) => Some(id),
            Owner::Nobody => None,
        }
    }
}

/// Urgency, lowest first; the queue serves higher priorities first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Priority {
    /// Whenever there is time.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before normal conversations.
    High,
    /// Before everything else.
    Urgent,
}

impl Priority {
    /// Stable number stored in the database.
    pub const fn as_i64(self) -> i64 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    /// The priority for a stored number.
    pub const fn from_i64(value: i64) -> Option<Self> {
        Some(match value {
            0 => Priority::Low,
            1 => Priority::Normal,
            2 => Priority::High,
            3 => Priority::Urgent,
            _ => return None,
        })
    }

    /// One step more urgent (urgent stays urgent).
    pub const fn raised(self) -> Self {
        match self {
            Priority::Low => Priority::Normal,
            Priority::Normal => Priority::High,
            Priority::High | Priority::Urgent => Priority::Urgent,
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            other => {
                return Err(format!(
                    "unknown priority `{other}` (low, normal, high or urgent)"
                ));
            }
        })
    }
}

/// The desk's view of one conversation of an inbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ticket {
    /// The conversation.
    pub key: ConversationKey,
    /// The inbox whose desk it is on.
    pub inbox: PartyId,
    /// Where it stands.
    pub status: Status,
    /// Who owns it.
    pub owner: Owner,
    /// Only members of this team may be given it (after a transfer to a
    /// team); `None`: any agent of the inbox.
    pub team: Option<String>,
    /// Its urgency.
    pub priority: Priority,
    /// Since when it waits in the queue (set while nobody owns it and
    /// routing is automatic), ms since the Unix epoch.
    pub queued_at_ms: Option<i64>,
    /// Since when the customer waits for an answer: their first message
    /// after the desk's last one, ms since the Unix epoch.
    pub waiting_since_ms: Option<i64>,
    /// When the owner got it, ms since the Unix epoch.
    pub assigned_at_ms: Option<i64>,
    /// Agents that let it wait past the answer timeout: it goes to someone
    /// else first.
    pub passed_over: Vec<PartyId>,
    /// The resolved conversation this one continues, if a customer wrote
    /// after the reopen window.
    pub continues: Option<ConversationKey>,
    /// Its labels, sorted.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Ticket {
    /// A new, open, unowned ticket for conversation `key` of `inbox`.
    pub fn new(key: ConversationKey, inbox: PartyId) -> Self {
        Self {
            key,
            inbox,
            status: Status::Open,
            owner: Owner::Nobody,
            team: None,
            priority: Priority::Normal,
            queued_at_ms: None,
            waiting_since_ms: None,
            assigned_at_ms: None,
            passed_over: Vec::new(),
            continues: None,
            labels: Vec::new(),
        }
    }
}

/// Why a ticket went back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequeueReason {
    /// Its owner went offline.
    OwnerOffline,
    /// Its owner did not answer within the inbox's answer timeout.
    NoAnswer,
    /// Its bot handed it to the agents.
    HandOff,
    /// It was transferred to a team.
    Transfer,
    /// Its owner left the inbox.
    OwnerLeft,
}

/// Who made a desk change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Actor {
    /// The desk's own routing or timers.
    Desk,
    /// A party (agent, bot, customer, operator).
    Party(PartyId),
}

/// One of the three targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// The desk's first answer.
    FirstResponse,
    /// The desk's answer to a later customer message.
    NextResponse,
    /// Resolve.
    Resolution,
}

/// What the clock says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SlaEvent {
    /// A target will be breached in the policy's warning lead.
    Warning(Target),
    /// A target was breached.
    Breach(Target),
    /// A target was met; `in_time` unless it was breached first.
    Met {
        /// Which.
        target: Target,
        /// Whether before its breach.
        in_time: bool,
        /// Business ms it took.
        used_ms: i64,
        /// When the target started counting, ms since the Unix epoch (0:
        /// unknown, for a clock stored before this was kept).
        #[serde(default)]
        started_ms: i64,
    },
}

/// One change of a ticket, as the desk's system events tell it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeskChange {
    /// It waits in the queue.
    Queued {
        /// Why, if it was owned before.
        reason: Option<RequeueReason>,
    },
    /// Someone owns it now.
    Assigned {
        /// The new owner.
        owner: Owner,
        /// Who gave it (the desk's routing, or a party by hand).
        by: Actor,
    },
    /// Its status changed.
    Status {
        /// What it was.
        from: Status,
        /// What it is.
        to: Status,
        /// Who changed it.
        by: Actor,
    },
    /// Its SLA clock gave a warning, a breach, or met a target.
    Sla {
        /// What the clock said.
        event: SlaEvent,
        /// Who made it say so: the agent whose answer met a response
        /// target, who resolved; the desk for a timer.
        by: Actor,
    },
    /// Its priority changed.
    Priority {
        /// The new priority.
        to: Priority,
        /// Who changed it.
        by: Actor,
    },
}

impl Status {
    /// Stable number stored in the database, with the time it carries
    /// (snoozed until, resolved at).
    pub const fn as_i64(self) -> (i64, Option<i64>) {
        match self {
            Status::Open => (1, None),
            Status::Pending => (2, None),
            Status::Snoozed { until_ms } => (3, Some(until_ms)),
            Status::Resolved { at_ms } => (4, Some(at_ms)),
        }
    }

    /// The status for a stored number and time.
    pub const fn from_i64(code: i64, at_ms: Option<i64>) -> Option<Self> {
        Some(match (code, at_ms) {
            (1, _) => Status::Open,
            (2, _) => Status::Pending,
            (3, Some(until_ms)) => Status::Snoozed { until_ms },
            (4, Some(at_ms)) => Status::Resolved { at_ms },
            _ => return None,
        })
    }
}

impl Owner {
    /// Stable number stored in the database (0 nobody, 1 agent, 2 bot),
    /// with the owner's id.
    pub const fn as_i64(self) -> (i64, Option<PartyId>) {
        match self {
            Owner::Nobody => (0, None),
            Owner::Agent(agent) => (1, Some(agent)),
            Owner::Bot(bot) => (2, Some(bot)),
        }
    }

    /// The owner for a stored number and id.
    pub const fn from_i64(kind: i64, id: Option<PartyId>) -> Option<Self> {
        Some(match (kind, id) {
            (0, _) => Owner::Nobody,
            (1, Some(agent)) => Owner::Agent(agent),
            (2, Some(bot)) => Owner::Bot(bot),
            _ => return None,
        })
    }
}

/// A ticket as an agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketView {
    /// The conversation.
    #[serde(with = "super::text")]
    pub conversation: kanal_proto::address::ConversationId,
    /// The inbox whose desk it is on.
    #[serde(with = "super::text")]
    pub inbox: kanal_proto::address::Address,
    /// Where it stands.
    pub status: Status,
    /// Who owns it (an agent or the inbox's bot), if anyone.
    #[serde(with = "super::text::option")]
    pub owner: Option<kanal_proto::address::Address>,
    /// Whether the owner is the inbox's bot.
    pub owner_is_bot: bool,
    /// The team it is transferred to.
    pub team: Option<String>,
    /// Its urgency.
    pub priority: Priority,
    /// Its labels, sorted.
    pub labels: Vec<String>,
    /// Since when the customer waits for an answer.
    pub waiting_since_ms: Option<i64>,
    /// Since when it waits in the queue.
    pub queued_at_ms: Option<i64>,
    /// The conversation it continues.
    #[serde(with = "super::text::option")]
    pub continues: Option<kanal_proto::address::ConversationId>,
    /// The highest dseq of its desk log.
    pub last_dseq: u64,
    /// Its next SLA warning or breach, with the target.
    pub sla_due: Option<(i64, Target)>,
}

// --- as the store keeps it ------------------------------------------------------

/// A ticket as stored: typed columns for the store's listings, and the
/// desk's whole state of it (SLA clock, queue times, labels, ...) as the
/// engine wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTicket {
    /// The conversation.
    pub key: ConversationKey,
    /// The inbox whose desk it is on.
    pub inbox: PartyId,
    /// Where it stands.
    pub status: Status,
    /// Who owns it.
    pub owner: Owner,
    /// Its urgency.
    pub priority: Priority,
    /// The highest dseq of the conversation's desk log (0: empty).
    pub last_dseq: u64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// The engine's whole state of the ticket (JSON); opaque to the store.
    pub state: String,
}

/// An agent's seat at an inbox's desk, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSeat {
    /// The inbox.
    pub inbox: PartyId,
    /// The agent.
    pub agent: PartyId,
    /// Whether it takes new conversations.
    pub availability: Availability,
    /// Its own limit of open conversations (over the inbox's).
    pub capacity: Option<u32>,
    /// When it was last given a conversation, ms since the Unix epoch (0:
    /// never).
    pub last_assigned_ms: i64,
}

/// One entry of a conversation's desk log (a note or a system event), as
/// stored: only the agents of its inbox ever read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskEntry {
    /// The conversation.
    pub key: ConversationKey,
    /// Gapless per conversation, from 1.
    pub dseq: u64,
    /// The inbox whose desk it is on (reports read an inbox's entries).
    pub inbox: PartyId,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Who made it; `None`: the desk itself.
    pub actor: Option<PartyId>,
    /// For a note: its author's idempotency key (unique per conversation
    /// and author); empty for system events.
    pub client_note_id: String,
    /// The encoded `kanal.v1.DeskEvent`: the same bytes every agent's
    /// client receives.
    pub payload: bytes::Bytes,
}

/// What the store holds of one inbox's desk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredDesk {
    /// Its settings as the engine wrote them (JSON); `None`: never set.
    pub settings: Option<String>,
    /// Its agents' seats.
    pub seats: Vec<StoredSeat>,
    /// Its tickets that are not resolved.
    pub tickets: Vec<StoredTicket>,
}

/// Which tickets a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFilter {
    /// Tickets of these inboxes (none: no tickets).
    pub inboxes: Vec<PartyId>,
    /// Of these stored status numbers ([`Status::as_i64`]); empty: every
    /// status but resolved.
    pub statuses: Vec<i64>,
    /// Owned by this agent or bot.
    pub owner: Option<PartyId>,
    /// Owned by nobody. (Every condition must hold: with `owner` too, no
    /// ticket is wanted.)
    pub unowned: bool,
}
