//! What any message body must keep to, whoever sent it and however it came
//! (a client's send, or a peer server's transaction): the limits of its
//! kind (PROTOCOL.md §5, §14).

use kanal_proto::device::limits::{MAX_QUICK_REPLIES, MAX_QUICK_REPLY};
use kanal_proto::limits;
use kanal_proto::question::ShapeError;

use super::conversation::Body;
use super::refusal::{Refusal, RefusalCode};

impl Body {
    /// Refuses a body that breaks its kind's limits: too much text, a
    /// prompt without replies or with too many, a question or an answer of
    /// the wrong shape. (Whether an answer fits its question, and who may
    /// send what, is for whoever takes the body.)
    pub fn check_limits(&self) -> Result<(), Refusal> {
        let text = self.text();
        if text.len() > limits::MAX_TEXT {
            return Err(Refusal::new(
                RefusalCode::TooLarge,
                format!("text of {} bytes exceeds {}", text.len(), limits::MAX_TEXT),
            ));
        }
        match self {
            Body::Text(_) | Body::DeviceReport { .. } => Ok(()),
            Body::Prompt { replies, .. } => {
                if replies.is_empty() || replies.len() > MAX_QUICK_REPLIES {
                    return Err(Refusal::new(
                        RefusalCode::BadRequest,
                        format!("a prompt offers 1 to {MAX_QUICK_REPLIES} replies"),
                    ));
                }
                match replies
                    .iter()
                    .find(|r| r.is_empty() || r.len() > MAX_QUICK_REPLY)
                {
                    Some(reply) => Err(Refusal::new(
                        RefusalCode::TooLarge,
                        format!(
                            "a reply label is 1 to {MAX_QUICK_REPLY} bytes, not {}",
                            reply.len()
                        ),
                    )),
                    None => Ok(()),
                }
            }
            Body::Question(question) => {
                kanal_proto::question::check_question(&question.0).map_err(shape)
            }
            Body::Answer(answer) => {
                kanal_proto::question::check_answer_shape(&answer.0).map_err(shape)
            }
        }
    }
}

fn shape(error: ShapeError) -> Refusal {
    match error {
        ShapeError::BadRequest(message) => Refusal::new(RefusalCode::BadRequest, message),
        ShapeError::TooLarge(message) => Refusal::new(RefusalCode::TooLarge, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_past_its_kinds_limits_is_refused_with_a_reason() {
        assert_eq!(Body::Text("fine".into()).check_limits(), Ok(()));
        let long = Body::Text("x".repeat(limits::MAX_TEXT + 1));
        let refused = long.check_limits().expect_err("too long");
        assert_eq!(refused.code, RefusalCode::TooLarge);
        assert!(refused.message.contains("exceeds"), "{}", refused.message);
        let no_replies = Body::Prompt {
            text: "pick".into(),
            replies: Vec::new(),
        };
        assert_eq!(
            no_replies.check_limits().map_err(|r| r.code),
            Err(RefusalCode::BadRequest)
        );
        let long_label = Body::Prompt {
            text: "pick".into(),
            replies: vec!["y".repeat(MAX_QUICK_REPLY + 1)],
        };
        assert_eq!(
            long_label.check_limits().map_err(|r| r.code),
            Err(RefusalCode::TooLarge)
        );
    }
}
