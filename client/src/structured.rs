//! Structured messages (PROTOCOL.md §14): building questions, asking them
//! and answering them. The server checks a question against its kind's
//! rules and an answer against its question, and writes the answer's words
//! (`Answer.text`) itself.
//!
//! ```no_run
//! # async fn demo(client: kanal_client::Client, conversation: &str) -> Result<(), kanal_client::ClientError> {
//! use kanal_client::structured::{self, Scale};
//!
//! let asked = client
//!     .ask(conversation, structured::buttons("Is it still leaking?", &["Yes", "No"]))
//!     .await?;
//! let survey = structured::rating("How did we do?", Scale::Stars, true);
//! client.ask(conversation, survey).await?;
//! # let _ = asked;
//! # Ok(())
//! # }
//! ```

use kanal_proto::pb;
use kanal_proto::pb::{answer, question};

use crate::client::{Client, new_client_msg_id};
use crate::error::ClientError;

/// A rating's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 1 to 5 stars.
    Stars,
    /// 0 to 10.
    Nps,
    /// 0 (down) or 1 (up).
    Thumbs,
}

impl From<Scale> for pb::RatingScale {
    fn from(scale: Scale) -> Self {
        match scale {
            Scale::Stars => pb::RatingScale::Stars,
            Scale::Nps => pb::RatingScale::Nps,
            Scale::Thumbs => pb::RatingScale::Thumbs,
        }
    }
}

/// Choices labelled `labels`, with ids `1`, `2`, … in order.
pub fn choices(labels: &[&str]) -> Vec<pb::Choice> {
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| pb::Choice {
            id: (i + 1).to_string(),
            label: (*label).to_owned(),
            description: String::new(),
        })
        .collect()
}

/// A question answered by one tap on one of `labels`, which a client hides
/// once it is answered.
pub fn quick_replies(text: &str, labels: &[&str]) -> pb::Question {
    pb::Question {
        text: text.to_owned(),
        kind: Some(question::Kind::QuickReplies(pb::Choices {
            choices: choices(labels),
        })),
    }
}

/// A question with a button for each of `labels`, which stay on the message.
pub fn buttons(text: &str, labels: &[&str]) -> pb::Question {
    pb::Question {
        text: text.to_owned(),
        kind: Some(question::Kind::Buttons(pb::Choices {
            choices: choices(labels),
        })),
    }
}

/// A question with a list of `sections` (title, rows) behind `button`;
/// the rows' ids are `1`, `2`, … across all sections.
pub fn list(text: &str, button: &str, sections: &[(&str, &[&str])]) -> pb::Question {
    let mut next = 0;
    let sections = sections
        .iter()
        .map(|(title, rows)| pb::ChoiceSection {
            title: (*title).to_owned(),
            choices: rows
                .iter()
                .map(|label| {
                    next += 1;
                    pb::Choice {
                        id: next.to_string(),
                        label: (*label).to_owned(),
                        description: String::new(),
                    }
                })
                .collect(),
        })
        .collect();
    pb::Question {
        text: text.to_owned(),
        kind: Some(question::Kind::List(pb::ChoiceList {
            button: button.to_owned(),
            sections,
        })),
    }
}

/// A form of `fields`, submitted with `submit`.
pub fn form(text: &str, fields: Vec<pb::FormField>, submit: &str) -> pb::Question {
    pb::Question {
        text: text.to_owned(),
        kind: Some(question::Kind::Form(pb::Form {
            fields,
            submit: submit.to_owned(),
        })),
    }
}

/// A form field `id` labelled `label`.
pub fn field(id: &str, label: &str, kind: pb::FieldKind, required: bool) -> pb::FormField {
    pb::FormField {
        id: id.to_owned(),
        label: label.to_owned(),
        kind: kind as i32,
        required,
        hint: String::new(),
        options: Vec::new(),
    }
}

/// A rating on `scale`, inviting a comment if `comment`.
pub fn rating(text: &str, scale: Scale, comment: bool) -> pb::Question {
    pb::Question {
        text: text.to_owned(),
        kind: Some(question::Kind::Rating(pb::Rating {
            scale: pb::RatingScale::from(scale) as i32,
            low_label: String::new(),
            high_label: String::new(),
            comment,
        })),
    }
}

/// The answer choosing choice `id`.
pub fn choose(id: &str) -> answer::Value {
    answer::Value::Choice(id.to_owned())
}

/// The answer filling form fields `(id, value)`.
pub fn fill(fields: &[(&str, &str)]) -> answer::Value {
    answer::Value::Form(pb::FormAnswer {
        fields: fields
            .iter()
            .map(|(id, value)| pb::FieldAnswer {
                id: (*id).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
    })
}

/// The answer giving `score`, with `comment` (empty for none).
pub fn score(score: u32, comment: &str) -> answer::Value {
    answer::Value::Rating(pb::RatingAnswer {
        score,
        comment: comment.to_owned(),
    })
}

impl Client {
    /// Sends `question` (with a fresh random `client_msg_id`).
    pub async fn ask(
        &self,
        conversation: &str,
        question: pb::Question,
    ) -> Result<pb::Sent, ClientError> {
        let body = pb::Body {
            kind: Some(pb::body::Kind::Question(question)),
        };
        self.send(conversation, &new_client_msg_id(), body).await
    }

    /// Answers the question at `question_seq` of the conversation with
    /// `value` (see [`choose`], [`fill`], [`score`]); the server refuses
    /// one that does not fit with `INVALID_ANSWER`.
    pub async fn answer(
        &self,
        conversation: &str,
        question_seq: u64,
        value: answer::Value,
    ) -> Result<pb::Sent, ClientError> {
        let body = pb::Body {
            kind: Some(pb::body::Kind::Answer(pb::Answer {
                question_seq,
                text: String::new(),
                value: Some(value),
            })),
        };
        self.send(conversation, &new_client_msg_id(), body).await
    }
}
