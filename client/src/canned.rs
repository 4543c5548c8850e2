//! Canned responses (PROTOCOL.md §15.7): texts an inbox's operator wrote
//! for its agents, with placeholders the agent's app fills in before it
//! sends them.

use kanal_proto::pb;
use kanal_proto::pb::{request, response};

use crate::client::Client;
use crate::error::ClientError;
use crate::request::unexpected;

/// The placeholders a canned response may hold.
pub const PLACEHOLDERS: [&str; 3] = ["{{contact.name}}", "{{agent.name}}", "{{inbox.address}}"];

/// What the placeholders become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fill<'a> {
    /// The customer's name (its display name, else its address's local part).
    pub contact_name: &'a str,
    /// The sending agent's name.
    pub agent_name: &'a str,
    /// The inbox's address.
    pub inbox_address: &'a str,
}

/// `text` with its placeholders filled in; an error names a `{{…}}` that
/// is none of [`PLACEHOLDERS`].
pub fn fill(text: &str, with: &Fill<'_>) -> Result<String, String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let placeholder = &rest[start..start + end + 2];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "unknown placeholder {placeholder} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[start + end + 2..];
    }
    Ok(text
        .replace("{{contact.name}}", with.contact_name)
        .replace("{{agent.name}}", with.agent_name)
        .replace("{{inbox.address}}", with.inbox_address))
}

/// A party's name for people: its display name, else its local part.
pub fn name_of(party: &pb::Party) -> &str {
    if party.display_name.is_empty() {
        party.address.split('@').next().unwrap_or_default()
    } else {
        &party.display_name
    }
}

impl Client {
    /// The canned responses of `inbox` (an address; empty: every inbox the
    /// caller answers for).
    pub async fn canned(&self, inbox: &str) -> Result<Vec<pb::CannedResponse>, ClientError> {
        let kind = request::Kind::ListCanned(pb::ListCanned {
            inbox: inbox.to_owned(),
        });
        match self.request(kind).await? {
            response::Kind::CannedList(list) => Ok(list.responses),
            other => Err(unexpected("CannedList", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_named() {
        let with = Fill {
            contact_name: "Carla",
            agent_name: "Ann",
            inbox_address: "support@localhost",
        };
        assert_eq!(
            fill(
                "Hello {{contact.name}}, {{agent.name}} here ({{inbox.address}}).",
                &with
            ),
            Ok("Hello Carla, Ann here (support@localhost).".to_owned())
        );
        assert!(fill("Dear {{contact.title}}", &with).is_err());
        assert_eq!(fill("no {{ end", &with), Ok("no {{ end".to_owned()));
        let party = pb::Party {
            address: "dora@localhost".into(),
            ..pb::Party::default()
        };
        assert_eq!(name_of(&party), "dora");
    }
}
