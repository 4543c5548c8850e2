//! The input of the `request_stream` target: the bytes to write on one
//! request stream, either raw or built from `Request`s whose conversation
//! ids and addresses may name things that exist on the server.
//!
//! The first byte picks the mode: bit 0 set means structured (the rest is
//! read by `arbitrary`), clear means raw; bit 1 set means the client resets
//! its side after writing instead of finishing it. In raw bytes,
//! [`PLACEHOLDERS`] stand for the real conversation ids (same length, so
//! frame lengths stay right), which lets hand-written seeds reach them.

use arbitrary::{Arbitrary, Unstructured};
use kanal_proto::{frame, pb};

/// Conversation ids a raw input may use for the real ones, in order.
pub const PLACEHOLDERS: [&str; 2] = [
    "localhost/zzzzzzzzzzzzzzzzzzz0",
    "localhost/zzzzzzzzzzzzzzzzzzz1",
];

/// What exists on the server for inputs to name.
#[derive(Debug, Clone)]
pub struct Known {
    /// Conversation ids (as many as [`PLACEHOLDERS`]).
    pub conversations: Vec<String>,
    /// Party addresses.
    pub parties: Vec<String>,
}

/// One request stream's worth of input.
#[derive(Debug)]
pub struct StreamInput {
    /// The bytes to write.
    pub bytes: Vec<u8>,
    /// Reset the stream after writing instead of finishing it.
    pub reset: bool,
}

impl StreamInput {
    /// Reads a fuzz input.
    pub fn new(data: &[u8], known: &Known) -> Self {
        let Some((&mode, rest)) = data.split_first() else {
            return Self {
                bytes: Vec::new(),
                reset: false,
            };
        };
        let reset = mode & 2 != 0;
        let bytes = if mode & 1 == 0 {
            substitute(rest, known)
        } else {
            let chunks =
                Vec::<Chunk>::arbitrary_take_rest(Unstructured::new(rest)).unwrap_or_default();
            let mut bytes = Vec::new();
            for chunk in chunks {
                match chunk {
                    Chunk::Request(request) => {
                        frame::encode(&request.build(known), &mut bytes);
                    }
                    Chunk::Raw(raw) => bytes.extend_from_slice(&raw),
                }
            }
            bytes
        };
        Self { bytes, reset }
    }
}

/// Replaces each placeholder with the real conversation id.
fn substitute(raw: &[u8], known: &Known) -> Vec<u8> {
    let mut bytes = raw.to_vec();
    for (placeholder, real) in PLACEHOLDERS.iter().zip(&known.conversations) {
        let (from, to) = (placeholder.as_bytes(), real.as_bytes());
        debug_assert_eq!(from.len(), to.len());
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from) {
            let start = at + found;
            bytes[start..start + to.len()].copy_from_slice(to);
            at = start + to.len();
        }
    }
    bytes
}

/// A piece of the stream.
#[derive(Debug, Arbitrary)]
enum Chunk {
    Request(Request),
    Raw(Vec<u8>),
}

/// A `Request` with fields that may name real things.
#[derive(Debug, Arbitrary)]
struct Request {
    id: u64,
    kind: Option<Kind>,
}

#[derive(Debug, Arbitrary)]
enum Kind {
    Create {
        to: Vec<Name>,
        subject: String,
    },
    Send {
        conversation: Name,
        client_msg_id: String,
        text: Option<String>,
    },
    History {
        conversation: Name,
        before_seq: u64,
        limit: u32,
    },
    List {
        limit: u32,
        offset: u32,
    },
    Get {
        conversation: Name,
    },
    Mark {
        conversation: Name,
        kind: i32,
        up_to_seq: u64,
    },
}

/// A conversation id or address: a real one by index, or any text.
#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Text(String),
}

impl Name {
    fn resolve(self, known: &[String]) -> String {
        match self {
            Name::Known(i) if !known.is_empty() => known[usize::from(i) % known.len()].clone(),
            Name::Known(_) => String::new(),
            Name::Text(text) => text,
        }
    }
}

impl Request {
    fn build(self, known: &Known) -> pb::Request {
        use pb::request::Kind as K;
        let conv = |name: Name| name.resolve(&known.conversations);
        let kind = self.kind.map(|kind| match kind {
            Kind::Create { to, subject } => K::CreateConversation(pb::CreateConversation {
                to: to.into_iter().map(|n| n.resolve(&known.parties)).collect(),
                subject,
            }),
            Kind::Send {
                conversation,
                client_msg_id,
                text,
            } => K::Send(pb::Send {
                conversation: conv(conversation),
                client_msg_id,
                body: text.map(|text| pb::Body {
                    kind: Some(pb::body::Kind::Text(text)),
                }),
            }),
            Kind::History {
                conversation,
                before_seq,
                limit,
            } => K::History(pb::History {
                conversation: conv(conversation),
                before_seq,
                limit,
            }),
            Kind::List { limit, offset } => {
                K::ListConversations(pb::ListConversations { limit, offset })
            }
            Kind::Get { conversation } => K::GetConversation(pb::GetConversation {
                conversation: conv(conversation),
            }),
            Kind::Mark {
                conversation,
                kind,
                up_to_seq,
            } => K::MarkReceipt(pb::MarkReceipt {
                conversation: conv(conversation),
                kind,
                up_to_seq,
            }),
        });
        pb::Request { id: self.id, kind }
    }
}
