//! What the engine stores of a desk, in the forms it reads back: an
//! inbox's configuration and a ticket's whole state, as JSON the store
//! keeps without looking inside.

use std::collections::BTreeMap;

use super::hours::BusinessHours;
use super::sla::{SlaClock, SlaPolicy};
use crate::model::{CsatScale, DeskSettings, PartyId, Target, Ticket};

/// Everything an operator sets for one inbox's desk.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// Routing, capacity, reopen window, answer timeout, first responder.
    pub(crate) settings: DeskSettings,
    /// When the desk is open (the SLA clocks count in these hours).
    pub(crate) hours: BusinessHours,
    /// The SLA targets.
    pub(crate) sla: SlaPolicy,
    /// Teams by name, with their members.
    pub(crate) teams: BTreeMap<String, Vec<PartyId>>,
    /// Canned responses by name: texts with placeholders that agents fill
    /// in and send (PROTOCOL.md §15.7).
    pub(crate) canned: BTreeMap<String, String>,
}

impl DeskConfig {
    /// The configuration stored as `json`.
    pub(crate) fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("desk settings: {e}"))
    }

    /// The form the store keeps.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The desk's whole state of one ticket, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TicketState {
    /// The conversation's public id: timers render their entries without
    /// loading the conversation.
    pub(crate) conversation: String,
    /// The ticket.
    pub(crate) ticket: Ticket,
    /// Its SLA clock.
    pub(crate) clock: SlaClock,
    /// The conversation that continues this one (a customer wrote after
    /// the reopen window), where later messages go.
    #[serde(default)]
    pub(crate) continued_by: Option<String>,
    /// The resolved conversation this one continues.
    #[serde(default)]
    pub(crate) continues: Option<String>,
    /// Its next SLA warning or breach when it was stored, with the target.
    #[serde(default)]
    pub(crate) sla_due: Option<(i64, Target)>,
    /// Until when the customer has been told the inbox is closed: the
    /// opening the last out-of-hours reply named.
    #[serde(default)]
    pub(crate) closed_told_until: Option<i64>,
    /// The satisfaction survey its last resolution asked.
    #[serde(default)]
    pub(crate) survey: Option<AskedSurvey>,
}

/// A satisfaction survey the desk asked: an answer to it is the
/// customer's rating of that resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AskedSurvey {
    /// The question's seq in the conversation.
    pub(crate) seq: u64,
    /// The desk entry of the resolution it asks about.
    pub(crate) resolution_dseq: u64,
    /// Who resolved (`None`: the desk).
    pub(crate) resolved_by: Option<PartyId>,
    /// The scale it asked on.
    pub(crate) scale: CsatScale,
}

impl TicketState {
    /// The state stored as `json`.
    pub(crate) fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("ticket state: {e}"))
    }

    /// The form the store keeps.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
