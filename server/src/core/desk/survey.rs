//! The satisfaction survey a desk asks on every resolution: a rating
//! question (PROTOCOL.md §14) on the inbox's scale, in words that stand
//! alone for clients and devices that show text only.

use kanal_proto::pb;

use crate::model::{Body, CsatScale, Wire};

/// The survey on `scale`, asking `text` (empty: the scale's own words).
pub(crate) fn survey(scale: CsatScale, text: &str) -> Body {
    let (own, pb_scale, low, high) = match scale {
        CsatScale::Stars => (
            "How did we do? Rate this conversation from 1 (poor) to 5 (great).",
            pb::RatingScale::Stars,
            "poor",
            "great",
        ),
        CsatScale::Nps => (
            "How likely are you to recommend us, from 0 (not at all) to 10 (very)?",
            pb::RatingScale::Nps,
            "not at all",
            "very",
        ),
        CsatScale::Thumbs => (
            "Did we solve your problem?",
            pb::RatingScale::Thumbs,
            "No",
            "Yes",
        ),
    };
    let text = if text.trim().is_empty() { own } else { text };
    Body::Question(Wire(pb::Question {
        text: text.to_owned(),
        kind: Some(pb::question::Kind::Rating(pb::Rating {
            scale: pb_scale as i32,
            low_label: low.to_owned(),
            high_label: high.to_owned(),
            comment: scale != CsatScale::Thumbs,
        })),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_survey_is_a_valid_question_that_says_itself() {
        for scale in [CsatScale::Stars, CsatScale::Nps, CsatScale::Thumbs] {
            let Body::Question(Wire(question)) = survey(scale, "") else {
                panic!("a question");
            };
            assert_eq!(kanal_proto::question::check_question(&question), Ok(()));
            assert!(!question.text.is_empty());
        }
        let Body::Question(Wire(own)) = survey(CsatScale::Stars, "Wie war's?") else {
            panic!("a question");
        };
        assert_eq!(own.text, "Wie war's?");
    }
}
