//! Structured messages on the way in (PROTOCOL.md §14): a question must
//! follow its kind's rules, and an answer must fit the question it names,
//! which the server looks up in the conversation (a question never
//! changes once stored, so the check holds whenever the answer is
//! ordered). The server then writes the answer's words.

use kanal_proto::address::ConversationId;
use kanal_proto::pb;
use kanal_proto::question::answer_text;

use super::requests::visible_key;
use crate::model::{Body, Party, Refusal, RefusalCode, Wire};
use crate::node::Node;
use crate::store::StoreError;

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(RefusalCode::InvalidAnswer, message)
}

/// The answer as the server stores it: checked against the question at
/// its `question_seq` in conversation `id`, its text the answer's words.
/// `NOT_FOUND` unless `party` sees the conversation, then
/// `INVALID_ANSWER` for a seq that names no question, a question of
/// `party`'s own, or a value the question does not allow.
pub(super) async fn answered(
    node: &Node,
    party: &Party,
    id: &ConversationId,
    answer: Wire<pb::Answer>,
) -> Result<Wire<pb::Answer>, Refusal> {
    let Wire(mut answer) = answer;
    let key = visible_key(node, id, party.id).await?;
    let seq = answer.question_seq;
    let (messages, _) = node
        .store
        .history(key, seq.saturating_add(1), 1)
        .await
        .map_err(|e: StoreError| Refusal::internal(e.to_string()))?;
    let Some(message) = messages.into_iter().find(|m| m.seq == seq) else {
        return Err(invalid(format!("{id} has no message #{seq}")));
    };
    let Body::Question(Wire(question)) = &message.body else {
        return Err(invalid(format!("message #{seq} of {id} is not a question")));
    };
    if message.sender == party.address {
        return Err(invalid(format!(
            "message #{seq} is {}'s own question",
            party.address
        )));
    }
    answer.text = answer_text(question, &answer).map_err(|e| invalid(e.0))?;
    Ok(Wire(answer))
}
