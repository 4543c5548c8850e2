//! `GetContact` (PROTOCOL.md §15.6): what an agent's desk knows of a
//! contact: its conversations with the inboxes the agent answers for,
//! with their tickets, and the devices it owns with theirs. Conversations
//! with anyone else (a customer's private chats) are never shown.

use kanal_proto::pb;

use super::desk::{Names, known_party, view};
use super::render;
use super::requests::{Answer, fitting, internal, page};
use crate::model::{Party, PartyId, Refusal, RefusalCode};
use crate::node::Node;

/// Most conversations of one party read to find those with the caller's
/// inboxes: a contact with more conversations elsewhere shows
/// `has_more`.
const SCAN_LIMIT: u32 = 5_000;

/// Room for a profile in one response.
const PROFILE_BUDGET: usize = kanal_proto::limits::MAX_RESPONSE_FRAME - 4096;

pub(super) async fn contact(node: &Node, caller: &Party, get: pb::GetContact) -> Answer {
    let mine = node
        .store
        .agent_inboxes(caller.id)
        .await
        .map_err(internal)?;
    if mine.is_empty() {
        return Err(Refusal::new(
            RefusalCode::NotAnAgent,
            format!("{} answers for no inbox", caller.address),
        ));
    }
    let contact = known_party(node, &get.contact).await?;
    let limit = page(get.limit) as usize;
    let mut names = Names::default();
    let mut has_more = false;
    let mut devices = Vec::new();
    let owned = node.store.devices_of(contact.id).await.map_err(internal)?;
    for device in &owned {
        let Some(party) = node
            .store
            .party_by_id(device.party)
            .await
            .map_err(internal)?
        else {
            continue;
        };
        let (theirs, more) =
            with_inboxes(node, caller, device.party, &mine, limit, &[], &mut names).await?;
        has_more |= more;
        devices.push(pb::ContactDevice {
            party: Some(render::party(&party)),
            serial: device.serial.clone(),
            model: device.model.clone(),
            conversations: theirs,
        });
    }
    // The owner sees its devices' conversations too: they are listed
    // with the device.
    let shown: Vec<String> = devices
        .iter()
        .flat_map(|d| &d.conversations)
        .filter_map(|c| c.conversation.as_ref().map(|v| v.id.clone()))
        .collect();
    let (mut conversations, more) =
        with_inboxes(node, caller, contact.id, &mine, limit, &shown, &mut names).await?;
    has_more |= more;
    let keep = fitting(conversations.iter(), PROFILE_BUDGET / 2);
    if keep < conversations.len() {
        conversations.truncate(keep);
        has_more = true;
    }
    Ok(pb::response::Kind::Contact(pb::Contact {
        party: Some(render::party(&contact)),
        conversations,
        devices,
        has_more,
    }))
}

/// Up to `limit` of `who`'s conversations with one of `inboxes`, but not
/// those in `except`, most recently active first, as `caller` sees them,
/// with their tickets; and whether there are more.
async fn with_inboxes(
    node: &Node,
    caller: &Party,
    who: PartyId,
    inboxes: &[PartyId],
    limit: usize,
    except: &[String],
    names: &mut Names,
) -> Result<(Vec<pb::ContactConversation>, bool), Refusal> {
    let mut found = Vec::new();
    let mut offset = 0;
    while offset < SCAN_LIMIT {
        let (views, more) = node
            .store
            .conversations_of(who, kanal_proto::limits::MAX_PAGE, offset)
            .await
            .map_err(internal)?;
        offset += views.len() as u32;
        for theirs in views {
            if !theirs.members.iter().any(|m| inboxes.contains(&m.id))
                || except.iter().any(|id| *id == theirs.id.to_string())
            {
                continue;
            }
            if found.len() == limit {
                return Ok((found, true));
            }
            let Some(key) = node
                .store
                .conversation_key(&theirs.id)
                .await
                .map_err(internal)?
            else {
                continue;
            };
            let Some(seen) = node
                .store
                .conversation_view(key, caller.id)
                .await
                .map_err(internal)?
            else {
                continue;
            };
            let ticket = match node.store.ticket(key).await.map_err(internal)? {
                Some(stored) => Some(render::ticket(&view(node, &stored, names).await?)),
                None => None,
            };
            found.push(pb::ContactConversation {
                conversation: Some(render::conversation(&seen)),
                ticket,
            });
        }
        if !more {
            return Ok((found, false));
        }
    }
    Ok((found, true))
}
