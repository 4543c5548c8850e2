//! Kanal's own vocabulary: parties, conversations, message bodies, events,
//! refusals, and the rows the engine asks the store to write. No protobuf:
//! each link renders these in its own wire format.

mod body_limits;
mod cluster;
mod conversation;
mod desk;
mod device;
mod event;
mod federation;
mod invite;
mod party;
mod peer;
mod refusal;
pub(crate) mod text;
mod write;

pub use cluster::{NodeStatus, SLOTS, SlotLease};
pub use conversation::{
    Body, ConversationKey, ConversationRecord, ConversationView, Message, Sent, StoredSend, Wire,
};
pub use desk::{
    Actor, Availability, Csat, CsatScale, DeskChange, DeskEntry, DeskSettings, Owner, Priority,
    RequeueReason, Routing, SlaEvent, Status, StoredDesk, StoredSeat, StoredTicket, Target, Ticket,
    TicketFilter, TicketView,
};
pub use device::{Device, NewDevice};
pub use event::{
    DeliveryFailure, DeskRecord, Event, EventRef, InboxHead, LogHead, Receipt, ReceiptKind,
};
pub use federation::{FailureNotice, Member, Replicated, Submitted, Transaction, Undelivered};
pub use invite::{Invite, NewInvite};
pub use party::{NewParty, Party, PartyId, PartyKind, Session};
pub use peer::PeerRecord;
pub use refusal::{Refusal, RefusalCode};
pub use write::{Committed, Counters, InboxClaim, OutboxRow, Write};
