//! Quick replies on a device (DEVICES.md §9): which labels a message
//! offers a device, and what the device's pick of one means. A prompt
//! offers its replies; a structured question (PROTOCOL.md §14) offers its
//! choices when they fit a device (at most 4, each at most 32 bytes), and
//! a thumbs rating offers its two ends. A pick of a question's label is
//! stored as the answer to that question; anything else the device says
//! is ordinary text.

use kanal_proto::device::limits::{MAX_QUICK_REPLIES, MAX_QUICK_REPLY};
use kanal_proto::pb;
use kanal_proto::pb::{RatingScale, answer, question};
use kanal_proto::question::answer_text;

use crate::model::{Body, Wire};

/// What a thumbs rating offers a device whose labels do not fit.
const THUMBS: [&str; 2] = ["Yes", "No"];

/// The labels `body` offers a device, in the order a pick's index counts.
pub(super) fn offered(body: &Body) -> heapless::Vec<&str, MAX_QUICK_REPLIES> {
    let fits = |labels: &[&str]| {
        labels.len() <= MAX_QUICK_REPLIES
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.len() <= MAX_QUICK_REPLY)
    };
    let labels: Vec<&str> = match body {
        Body::Prompt { replies, .. } => replies.iter().map(String::as_str).collect(),
        Body::Question(Wire(q)) => match &q.kind {
            Some(question::Kind::Rating(rating)) if is_thumbs(rating) => {
                let ends = [rating.high_label.as_str(), rating.low_label.as_str()];
                if fits(&ends) {
                    ends.to_vec()
                } else {
                    THUMBS.to_vec()
                }
            }
            _ => q.choices().iter().map(|c| c.label.as_str()).collect(),
        },
        _ => Vec::new(),
    };
    if !fits(&labels) && !matches!(body, Body::Prompt { .. }) {
        return heapless::Vec::new();
    }
    labels.into_iter().take(MAX_QUICK_REPLIES).collect()
}

fn is_thumbs(rating: &pb::Rating) -> bool {
    rating.scale == RatingScale::Thumbs as i32
}

/// The answer a device's pick of label `index` of question `body` (message
/// `question_seq` of its conversation) makes; `None` if `body` is no
/// question or the pick is none it offered.
pub(super) fn picked(body: &Body, question_seq: u64, index: u8) -> Option<Body> {
    let Body::Question(Wire(q)) = body else {
        return None;
    };
    if offered(body).len() <= usize::from(index) {
        return None;
    }
    let value = match &q.kind {
        Some(question::Kind::Rating(_)) => answer::Value::Rating(pb::RatingAnswer {
            // High end first: index 0 is thumbs up.
            score: u32::from(index == 0),
            comment: String::new(),
        }),
        _ => answer::Value::Choice(q.choices().get(usize::from(index))?.id.clone()),
    };
    let mut answer = pb::Answer {
        question_seq,
        text: String::new(),
        value: Some(value),
    };
    answer.text = answer_text(q, &answer).ok()?;
    Some(Body::Answer(Wire(answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(kind: question::Kind) -> Body {
        Body::Question(Wire(pb::Question {
            text: "Still leaking?".into(),
            kind: Some(kind),
        }))
    }

    fn buttons(labels: &[&str]) -> Body {
        question(question::Kind::Buttons(pb::Choices {
            choices: labels
                .iter()
                .enumerate()
                .map(|(i, l)| pb::Choice {
                    id: format!("c{i}"),
                    label: (*l).into(),
                    description: String::new(),
                })
                .collect(),
        }))
    }

    #[test]
    fn choices_that_fit_a_device_are_offered_and_a_pick_answers() {
        let body = buttons(&["Yes", "No"]);
        assert_eq!(offered(&body).as_slice(), ["Yes", "No"]);
        let Some(Body::Answer(Wire(answer))) = picked(&body, 4, 1) else {
            panic!("an answer");
        };
        assert_eq!(answer.question_seq, 4);
        assert_eq!(answer.value, Some(answer::Value::Choice("c1".into())));
        assert_eq!(answer.text, "No");
        assert_eq!(picked(&body, 4, 2), None, "not offered");
        assert_eq!(picked(&Body::Text("hi".into()), 4, 0), None);
    }

    #[test]
    fn what_does_not_fit_a_device_is_text_only() {
        assert!(offered(&buttons(&["a", "b", "c", "d", "e"])).is_empty());
        let long = "x".repeat(MAX_QUICK_REPLY + 1);
        assert!(offered(&buttons(&["ok", &long])).is_empty());
        let stars = question(question::Kind::Rating(pb::Rating {
            scale: RatingScale::Stars as i32,
            ..pb::Rating::default()
        }));
        assert!(offered(&stars).is_empty());
    }

    #[test]
    fn a_thumbs_rating_offers_its_ends_high_first() {
        let body = question(question::Kind::Rating(pb::Rating {
            scale: RatingScale::Thumbs as i32,
            low_label: "Not really".into(),
            high_label: "Yes, thanks".into(),
            comment: false,
        }));
        assert_eq!(offered(&body).as_slice(), ["Yes, thanks", "Not really"]);
        let Some(Body::Answer(Wire(answer))) = picked(&body, 9, 0) else {
            panic!("an answer");
        };
        assert_eq!(answer.text, "thumbs up");
    }
}
