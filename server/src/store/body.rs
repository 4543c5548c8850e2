//! How message bodies are stored: as an encoded `kanal.v1.Body`, the same
//! bytes a client sent, so the stored format is the documented one.

use kanal_proto::pb;
use prost::Message as _;

use super::{StoreError, StoreResult};
use crate::model::Body;

/// The stored bytes of `body`.
pub(crate) fn encode(body: &Body) -> Vec<u8> {
    let kind = match body {
        Body::Text(text) => pb::body::Kind::Text(text.clone()),
    };
    pb::Body { kind: Some(kind) }.encode_to_vec()
}

/// The body stored as `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> StoreResult<Body> {
    let corrupt = |what: String| StoreError::Corrupt(format!("message body: {what}"));
    match pb::Body::decode(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .kind
    {
        Some(pb::body::Kind::Text(text)) => Ok(Body::Text(text)),
        None => Err(corrupt("no kind".into())),
    }
}
