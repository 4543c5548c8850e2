//! `ListCanned` (PROTOCOL.md §15.7): the canned responses the operator
//! wrote for the desks of the inboxes the caller answers for.

use kanal_proto::pb;

use super::desk::inboxes_of;
use super::requests::{Answer, internal};
use crate::core::desk::DeskConfig;
use crate::model::{Party, Refusal};
use crate::node::Node;

pub(super) async fn list(node: &Node, caller: &Party, list: pb::ListCanned) -> Answer {
    let inboxes = inboxes_of(node, caller, &list.inbox).await?;
    let mut responses = Vec::new();
    for inbox in inboxes {
        let Some(json) = node.store.desk(inbox).await.map_err(internal)?.settings else {
            continue;
        };
        let config = DeskConfig::from_json(&json).map_err(|e| {
            tracing::error!(inbox, error = %e, "a desk's stored settings do not read back");
            Refusal::internal("the server failed; retry later")
        })?;
        let Some(party) = node.store.party_by_id(inbox).await.map_err(internal)? else {
            continue;
        };
        responses.extend(
            config
                .canned
                .into_iter()
                .map(|(name, text)| pb::CannedResponse {
                    inbox: party.address.to_string(),
                    name,
                    text,
                }),
        );
    }
    Ok(pb::response::Kind::CannedList(pb::CannedList { responses }))
}
