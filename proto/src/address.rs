//! Names of things: party addresses (`local@domain`) and conversation ids
//! (`domain/opaque`), both carrying the domain of the server that owns them.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An address lacks its `@`.
    #[error("`{0}` is not an address of the form local@domain")]
    MissingAt(String),
    /// A conversation id lacks its `/`.
    #[error("`{0}` is not a conversation id of the form domain/id")]
    MissingSlash(String),
    /// The local part is empty, too long or has a character outside `a-z 0-9 . _ -`.
    #[error(
        "`{0}` is not a valid local part (1-64 of a-z 0-9 . _ -, starting with a letter or digit)"
    )]
    BadLocal(String),
    /// The domain is not a lowercase DNS name.
    #[error("`{0}` is not a valid domain")]
    BadDomain(String),
    /// The opaque part of a conversation id is empty, too long or not alphanumeric.
    #[error("`{0}` is not a valid conversation id part (1-64 of a-z 0-9)")]
    BadOpaque(String),
}

/// The address of a party: a user, agent, bot, inbox or device.
///
/// Always lowercase; parsing lowercases its input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    text: String,
    at: usize,
}

impl Address {
    /// Builds `local@domain` from its parts, validating both.
    pub fn new(local: &str, domain: &str) -> Result<Self, NameError> {
        format!("{local}@{domain}").parse()
    }

    /// The part before the `@`.
    pub fn local(&self) -> &str {
        &self.text[..self.at]
    }

    /// The domain of the server that hosts this party.
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Address {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let text = s.trim().to_ascii_lowercase();
        let at = text
            .rfind('@')
            .ok_or_else(|| NameError::MissingAt(s.into()))?;
        validate_local(&text[..at])?;
        validate_domain(&text[at + 1..])?;
        Ok(Self { text, at })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The id of a conversation: the host server's domain and an opaque part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId {
    text: String,
    slash: usize,
}

impl ConversationId {
    /// Builds `domain/opaque` from its parts, validating both.
    pub fn new(domain: &str, opaque: &str) -> Result<Self, NameError> {
        format!("{domain}/{opaque}").parse()
    }

    /// The domain of the server that hosts (orders) the conversation.
    pub fn host(&self) -> &str {
        &self.text[..self.slash]
    }

    /// The part the host chose.
    pub fn opaque(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ConversationId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let text = s.trim().to_ascii_lowercase();
        let slash = text
            .find('/')
            .ok_or_else(|| NameError::MissingSlash(s.into()))?;
        validate_domain(&text[..slash])?;
        let opaque = &text[slash + 1..];
        if opaque.is_empty()
            || opaque.len() > 64
            || !opaque
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(NameError::BadOpaque(opaque.into()));
        }
        Ok(Self { text, slash })
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks a local part: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_local(local: &str) -> Result<(), NameError> {
    let ok = !local.is_empty()
        && local.len() <= 64
        && local.as_bytes()[0].is_ascii_alphanumeric()
        && local.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::BadLocal(local.into()))
    }
}

/// Checks a domain: lowercase DNS labels of `a-z 0-9 -`, at most 253 bytes.
pub fn validate_domain(domain: &str) -> Result<(), NameError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::BadDomain(domain.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases_addresses() {
        let a: Address = " Support@ACME.example ".parse().expect("valid");
        assert_eq!(a.as_str(), "support@acme.example");
        assert_eq!(a.local(), "support");
        assert_eq!(a.domain(), "acme.example");
        assert_eq!(
            Address::new("bob", "localhost").expect("valid").to_string(),
            "bob@localhost"
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "bob",
            "@localhost",
            "bob@",
            "b b@localhost",
            ".bob@localhost",
            "bob@-x.example",
            "bob@a..b",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn conversation_ids_carry_their_host() {
        let c: ConversationId = "acme.example/3v0k4m".parse().expect("valid");
        assert_eq!(c.host(), "acme.example");
        assert_eq!(c.opaque(), "3v0k4m");
        for bad in ["acme.example", "acme.example/", "/abc", "acme.example/a-b"] {
            assert!(
                bad.parse::<ConversationId>().is_err(),
                "{bad} should be refused"
            );
        }
    }
}
