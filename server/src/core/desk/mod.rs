//! The service desk's sans-IO logic: each inbox's tickets, its agents'
//! seats, its waiting queue, its routing and its timers, and the business
//! hours its SLA clock counts in. The engine holds one [`InboxDesk`] per
//! inbox it has touched and feeds it what happens in the inbox's
//! conversations; what the desk changes, the engine stores and tells.

mod closed;
pub(crate) mod hours;
mod inbox;
mod queue;
pub(crate) mod report;
mod seats;
mod sla;
mod stored;
mod survey;
pub(crate) mod wire;

pub(crate) use closed::closed_reply;
pub(crate) use inbox::{Arrival, Changes, DeskError, InboxDesk};
pub(crate) use seats::Seat;
pub(crate) use stored::{AskedSurvey, DeskConfig, TicketState};
pub(crate) use survey::survey;
pub(crate) use wire::Entry;
