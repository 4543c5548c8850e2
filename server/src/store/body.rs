//! How message bodies are stored: as an encoded `kanal.v1.Body`, the same
//! bytes a client sent, so the stored format is the documented one. The
//! QUIC link renders bodies with the same conversions.

use kanal_proto::pb;
use prost::Message as _;

use super::{StoreError, StoreResult};
use crate::model::{Body, Wire};

/// `body` as the protocol's message.
pub(crate) fn to_pb(body: &Body) -> pb::Body {
    let kind = match body {
        Body::Text(text) => pb::body::Kind::Text(text.clone()),
        Body::Prompt { text, replies } => pb::body::Kind::Prompt(pb::Prompt {
            text: text.clone(),
            replies: replies.clone(),
        }),
        Body::DeviceReport { text, diagnostics } => {
            pb::body::Kind::DeviceReport(pb::DeviceReport {
                text: text.clone(),
                diagnostics: diagnostics
                    .iter()
                    .map(|(key, value)| pb::Diagnostic {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
        }
        Body::Question(question) => pb::body::Kind::Question(question.0.clone()),
        Body::Answer(answer) => pb::body::Kind::Answer(answer.0.clone()),
    };
    pb::Body { kind: Some(kind) }
}

/// The protocol's message as a body, if it has a kind.
pub(crate) fn from_pb(body: pb::Body) -> Option<Body> {
    Some(match body.kind? {
        pb::body::Kind::Text(text) => Body::Text(text),
        pb::body::Kind::Prompt(prompt) => Body::Prompt {
            text: prompt.text,
            replies: prompt.replies,
        },
        pb::body::Kind::DeviceReport(report) => Body::DeviceReport {
            text: report.text,
            diagnostics: report
                .diagnostics
                .into_iter()
                .map(|d| (d.key, d.value))
                .collect(),
        },
        pb::body::Kind::Question(question) => Body::Question(Wire(question)),
        pb::body::Kind::Answer(answer) => Body::Answer(Wire(answer)),
    })
}

/// The stored bytes of `body`.
pub(crate) fn encode(body: &Body) -> Vec<u8> {
    to_pb(body).encode_to_vec()
}

/// The body stored as `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> StoreResult<Body> {
    let corrupt = |what: String| StoreError::Corrupt(format!("message body: {what}"));
    let body = pb::Body::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    from_pb(body).ok_or_else(|| corrupt("no kind".into()))
}
