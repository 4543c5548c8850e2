//! `GetReport` (PROTOCOL.md §15.8): what the desks of the caller's inboxes
//! did over a period, from their desk logs, and their backlog now.

use std::collections::HashMap;

use kanal_proto::{limits, pb};
use prost::Message as _;

use super::desk::inboxes_of;
use super::requests::{Answer, internal};
use crate::core::desk::report::{Backlog, Tally};
use crate::core::desk::{DeskConfig, TicketState};
use crate::model::{Party, PartyId, Refusal, RefusalCode};
use crate::node::Node;

/// Entries read from the store at a time.
const PAGE: u32 = 2_000;

pub(super) async fn report(node: &Node, caller: &Party, get: pb::GetReport) -> Answer {
    let to_ms = match get.to_ms {
        0 => crate::node::writer::now_ms(),
        to => to,
    };
    let from_ms = get.from_ms;
    if from_ms < 0 || from_ms >= to_ms {
        return Err(bad("from_ms must be at least 0 and before to_ms"));
    }
    if to_ms - from_ms > limits::MAX_REPORT_PERIOD_MS {
        return Err(bad("a report covers at most 366 days"));
    }
    let named = !get.inbox.is_empty();
    let mut inboxes = Vec::new();
    for inbox in inboxes_of(node, caller, &get.inbox).await? {
        match inbox_report(node, inbox, (from_ms, to_ms)).await? {
            Some(report) => inboxes.push(report),
            None if named => {
                return Err(Refusal::new(
                    RefusalCode::InvalidState,
                    format!("{} has no service desk", get.inbox),
                ));
            }
            None => {}
        }
    }
    if inboxes.is_empty() {
        return Err(Refusal::new(
            RefusalCode::InvalidState,
            format!("no inbox {} answers for has a service desk", caller.address),
        ));
    }
    Ok(pb::response::Kind::Report(pb::Report {
        from_ms,
        to_ms,
        inboxes,
    }))
}

/// `inbox`'s report over `period`; `None` if it has no desk.
async fn inbox_report(
    node: &Node,
    inbox: PartyId,
    period: (i64, i64),
) -> Result<Option<pb::InboxReport>, Refusal> {
    let stored = node.store.desk(inbox).await.map_err(internal)?;
    let Some(json) = &stored.settings else {
        return Ok(None);
    };
    let config = DeskConfig::from_json(json).map_err(|e| corrupt(inbox, &e))?;
    let Some(party) = node.store.party_by_id(inbox).await.map_err(internal)? else {
        return Ok(None);
    };
    let mut names = HashMap::new();
    let mut staff = node.store.inbox_agents(inbox).await.map_err(internal)?;
    staff.extend(config.settings.first_responder);
    let owners = stored.tickets.iter().filter_map(|t| t.owner.party());
    for id in staff.iter().copied().chain(owners) {
        if !names.contains_key(&id)
            && let Some(p) = node.store.party_by_id(id).await.map_err(internal)?
        {
            names.insert(id, p.address.to_string());
        }
    }
    let mut backlog = Backlog::default();
    for ticket in &stored.tickets {
        let state = TicketState::from_json(&ticket.state).map_err(|e| corrupt(inbox, &e))?;
        backlog.add(&state.ticket, |id| names.get(&id).cloned());
    }
    let mut tally = Tally::default();
    let mut read = 0;
    let mut after = None;
    let complete = loop {
        let page = node
            .store
            .inbox_desk_entries(inbox, period, after, PAGE)
            .await
            .map_err(internal)?;
        for entry in &page {
            match pb::DeskEvent::decode(entry.payload.clone()) {
                Ok(event) => tally.add(&event),
                Err(e) => {
                    tracing::warn!(inbox, key = entry.key, dseq = entry.dseq, error = %e,
                        "a stored desk entry does not decode; the report skips it");
                }
            }
        }
        read += page.len();
        after = page.last().map(|e| (e.at_ms, e.key, e.dseq));
        if page.len() < PAGE as usize {
            break true;
        }
        if read >= limits::MAX_REPORT_ENTRIES {
            break false;
        }
    };
    let agents = staff.iter().filter_map(|id| names.get(id).cloned());
    Ok(Some(tally.report(
        party.address.to_string(),
        agents,
        &config.sla,
        backlog,
        complete,
    )))
}

fn corrupt(inbox: PartyId, error: &str) -> Refusal {
    tracing::error!(inbox, error, "a desk's stored state does not read back");
    Refusal::internal("the server failed; retry later")
}

fn bad(message: &str) -> Refusal {
    Refusal::new(RefusalCode::BadRequest, message)
}
