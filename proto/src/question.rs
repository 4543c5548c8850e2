//! Structured messages (PROTOCOL.md §14): the rules a question and an
//! answer follow, checked the same way by the server (which refuses what
//! breaks them) and by clients (which can check before they send), and the
//! words an answer says.

use crate::limits::{
    MAX_BUTTON, MAX_CHOICE_DESCRIPTION, MAX_CHOICE_ID, MAX_CHOICE_LABEL, MAX_CHOICES,
    MAX_FIELD_VALUE, MAX_FIELDS, MAX_LONG_VALUE, MAX_SECTIONS,
};
use crate::pb;
use crate::pb::{FieldKind, RatingScale, answer, question};

/// Why a question, or an answer on its own, breaks the rules: the error
/// code the server answers with is in the variant's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A field is missing, empty, repeated or of the wrong kind
    /// (`BAD_REQUEST`).
    #[error("{0}")]
    BadRequest(String),
    /// A field is over its limit (`TOO_LARGE`).
    #[error("{0}")]
    TooLarge(String),
}

/// Why an answer does not fit its question (`INVALID_ANSWER`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

fn bad(what: impl Into<String>) -> ShapeError {
    ShapeError::BadRequest(what.into())
}

fn invalid(what: impl Into<String>) -> AnswerError {
    AnswerError(what.into())
}

/// Refuses `text` longer than `max` bytes; with `required`, an empty one too.
fn text(what: &str, text: &str, max: usize, required: bool) -> Result<(), ShapeError> {
    if required && text.trim().is_empty() {
        return Err(bad(format!("{what} is empty")));
    }
    if text.len() > max {
        return Err(ShapeError::TooLarge(format!(
            "{what} is {} bytes, at most {max}",
            text.len()
        )));
    }
    Ok(())
}

/// Checks choices: each id 1-64 bytes and unique among `seen`, each label
/// 1-256 bytes, each description at most 1 024.
fn choices<'a>(
    what: &str,
    list: &'a [pb::Choice],
    seen: &mut Vec<&'a str>,
) -> Result<(), ShapeError> {
    for choice in list {
        if choice.id.is_empty() {
            return Err(bad(format!("a choice of the {what} has no id")));
        }
        text("a choice id", &choice.id, MAX_CHOICE_ID, true)?;
        if seen.contains(&choice.id.as_str()) {
            return Err(bad(format!("choice id {:?} is used twice", choice.id)));
        }
        seen.push(&choice.id);
        text("a choice label", &choice.label, MAX_CHOICE_LABEL, true)?;
        text(
            "a choice description",
            &choice.description,
            MAX_CHOICE_DESCRIPTION,
            false,
        )?;
    }
    if seen.len() > MAX_CHOICES {
        return Err(ShapeError::TooLarge(format!(
            "the {what} offers {} choices, at most {MAX_CHOICES}",
            seen.len()
        )));
    }
    Ok(())
}

/// Checks a question against PROTOCOL.md §14.1-§14.2 (its `text` is
/// checked with the body's, against `MAX_TEXT`).
pub fn check_question(q: &pb::Question) -> Result<(), ShapeError> {
    if q.text.trim().is_empty() {
        return Err(bad(
            "a question's text is empty: it must say the question on its own",
        ));
    }
    match &q.kind {
        None => Err(bad("a question has no kind")),
        Some(question::Kind::QuickReplies(c) | question::Kind::Buttons(c)) => {
            if c.choices.is_empty() {
                return Err(bad("a question offers no choice"));
            }
            choices("question", &c.choices, &mut Vec::new())
        }
        Some(question::Kind::List(list)) => {
            text("a list's button", &list.button, MAX_BUTTON, false)?;
            if list.sections.is_empty() || list.sections.len() > MAX_SECTIONS {
                return Err(bad(format!(
                    "a list has 1 to {MAX_SECTIONS} sections, not {}",
                    list.sections.len()
                )));
            }
            let mut seen = Vec::new();
            for section in &list.sections {
                text("a section title", &section.title, MAX_CHOICE_LABEL, false)?;
                if section.choices.is_empty() {
                    return Err(bad("a list section has no choice"));
                }
                choices("list", &section.choices, &mut seen)?;
            }
            Ok(())
        }
        Some(question::Kind::Form(form)) => {
            text("a form's submit label", &form.submit, MAX_BUTTON, false)?;
            if form.fields.is_empty() || form.fields.len() > MAX_FIELDS {
                return Err(bad(format!(
                    "a form has 1 to {MAX_FIELDS} fields, not {}",
                    form.fields.len()
                )));
            }
            let mut ids: Vec<&str> = Vec::new();
            for field in &form.fields {
                text("a field id", &field.id, MAX_CHOICE_ID, true)?;
                if ids.contains(&field.id.as_str()) {
                    return Err(bad(format!("field id {:?} is used twice", field.id)));
                }
                ids.push(&field.id);
                text("a field label", &field.label, MAX_CHOICE_LABEL, true)?;
                text("a field hint", &field.hint, MAX_CHOICE_LABEL, false)?;
                let kind = FieldKind::try_from(field.kind).unwrap_or(FieldKind::Unspecified);
                match kind {
                    FieldKind::Unspecified => {
                        return Err(bad(format!("field {:?} has no kind", field.id)));
                    }
                    FieldKind::Choice => {
                        if field.options.is_empty() {
                            return Err(bad(format!("choice field {:?} has no option", field.id)));
                        }
                        choices("field", &field.options, &mut Vec::new())?;
                    }
                    _ if !field.options.is_empty() => {
                        return Err(bad(format!(
                            "field {:?} has options but is no CHOICE field",
                            field.id
                        )));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Some(question::Kind::Rating(rating)) => {
            if scale_range(rating.scale).is_none() {
                return Err(bad("a rating has no scale"));
            }
            text("a rating's low label", &rating.low_label, MAX_BUTTON, false)?;
            text(
                "a rating's high label",
                &rating.high_label,
                MAX_BUTTON,
                false,
            )
        }
    }
}

/// The lowest and highest score of a scale; `None` for none.
fn scale_range(scale: i32) -> Option<(u32, u32)> {
    match RatingScale::try_from(scale).ok()? {
        RatingScale::Stars => Some((1, 5)),
        RatingScale::Nps => Some((0, 10)),
        RatingScale::Thumbs => Some((0, 1)),
        RatingScale::Unspecified => None,
    }
}

/// Checks what an answer can be checked for without its question: a value
/// is set and within its limits.
pub fn check_answer_shape(a: &pb::Answer) -> Result<(), ShapeError> {
    if a.question_seq == 0 {
        return Err(bad("an answer names no question (question_seq 0)"));
    }
    match &a.value {
        None => Err(bad("an answer has no value")),
        Some(answer::Value::Choice(id)) => text("an answer's choice", id, MAX_CHOICE_ID, true),
        Some(answer::Value::Form(form)) => {
            if form.fields.len() > MAX_FIELDS {
                return Err(ShapeError::TooLarge(format!(
                    "an answer fills {} fields, at most {MAX_FIELDS}",
                    form.fields.len()
                )));
            }
            for field in &form.fields {
                text("a field id", &field.id, MAX_CHOICE_ID, true)?;
                text("a field value", &field.value, MAX_LONG_VALUE, false)?;
            }
            Ok(())
        }
        Some(answer::Value::Rating(rating)) => {
            text("a rating's comment", &rating.comment, MAX_LONG_VALUE, false)
        }
    }
}

/// Checks that `a` answers `q` (PROTOCOL.md §14.3) and returns the words
/// the answer says, the server's `Answer.text`.
pub fn answer_text(q: &pb::Question, a: &pb::Answer) -> Result<String, AnswerError> {
    match (&q.kind, &a.value) {
        (
            Some(question::Kind::QuickReplies(c) | question::Kind::Buttons(c)),
            Some(answer::Value::Choice(id)),
        ) => chosen(&c.choices, id),
        (Some(question::Kind::List(list)), Some(answer::Value::Choice(id))) => {
            let all: Vec<pb::Choice> = list
                .sections
                .iter()
                .flat_map(|s| s.choices.iter().cloned())
                .collect();
            chosen(&all, id)
        }
        (Some(question::Kind::Form(form)), Some(answer::Value::Form(filled))) => {
            form_text(form, filled)
        }
        (Some(question::Kind::Rating(rating)), Some(answer::Value::Rating(given))) => {
            rating_text(rating, given)
        }
        (None, _) => Err(invalid("the question has no kind")),
        (_, None) => Err(invalid("the answer has no value")),
        _ => Err(invalid("the answer is not of the question's kind")),
    }
}

/// The label of choice `id`.
fn chosen(choices: &[pb::Choice], id: &str) -> Result<String, AnswerError> {
    choices
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.label.clone())
        .ok_or_else(|| invalid(format!("the question offers no choice {id:?}")))
}

fn rating_text(rating: &pb::Rating, given: &pb::RatingAnswer) -> Result<String, AnswerError> {
    let Some((low, high)) = scale_range(rating.scale) else {
        return Err(invalid("the question's rating has no scale"));
    };
    if given.score < low || given.score > high {
        return Err(invalid(format!(
            "a score of {} is off the scale {low} to {high}",
            given.score
        )));
    }
    if !rating.comment && !given.comment.is_empty() {
        return Err(invalid("the question invites no comment"));
    }
    let mut words = match RatingScale::try_from(rating.scale) {
        Ok(RatingScale::Thumbs) if given.score == 1 => "thumbs up".to_owned(),
        Ok(RatingScale::Thumbs) => "thumbs down".to_owned(),
        _ => format!("{}/{high}", given.score),
    };
    if !given.comment.trim().is_empty() {
        words.push('\n');
        words.push_str(given.comment.trim());
    }
    Ok(words)
}

fn form_text(form: &pb::Form, filled: &pb::FormAnswer) -> Result<String, AnswerError> {
    for (i, answer) in filled.fields.iter().enumerate() {
        if !form.fields.iter().any(|f| f.id == answer.id) {
            return Err(invalid(format!("the form has no field {:?}", answer.id)));
        }
        if filled.fields[..i].iter().any(|f| f.id == answer.id) {
            return Err(invalid(format!("field {:?} is filled twice", answer.id)));
        }
    }
    let mut lines = Vec::new();
    for field in &form.fields {
        let value = filled
            .fields
            .iter()
            .find(|f| f.id == field.id)
            .map(|f| f.value.as_str())
            .filter(|v| !v.trim().is_empty());
        let Some(value) = value else {
            if field.required {
                return Err(invalid(format!("required field {:?} is empty", field.id)));
            }
            continue;
        };
        let shown = field_value(field, value)?;
        lines.push(format!("{}: {shown}", field.label));
    }
    Ok(lines.join("\n"))
}

/// Checks `value` against its field's kind; returns it as the answer's
/// text shows it.
fn field_value(field: &pb::FormField, value: &str) -> Result<String, AnswerError> {
    let kind = FieldKind::try_from(field.kind).unwrap_or(FieldKind::Unspecified);
    let wrong = |what: &str| invalid(format!("field {:?} takes {what}, not {value:?}", field.id));
    let long = match kind {
        FieldKind::Multiline => MAX_LONG_VALUE,
        _ => MAX_FIELD_VALUE,
    };
    if value.len() > long {
        return Err(invalid(format!(
            "field {:?} takes at most {long} bytes",
            field.id
        )));
    }
    let one_line = || !value.contains(['\n', '\r']);
    match kind {
        FieldKind::Text if one_line() => Ok(value.to_owned()),
        FieldKind::Text => Err(wrong("one line")),
        FieldKind::Multiline => Ok(value.to_owned()),
        FieldKind::Number if is_number(value) => Ok(value.to_owned()),
        FieldKind::Number => Err(wrong("a number")),
        FieldKind::Email if is_email(value) => Ok(value.to_owned()),
        FieldKind::Email => Err(wrong("an e-mail address")),
        FieldKind::Phone if is_phone(value) => Ok(value.to_owned()),
        FieldKind::Phone => Err(wrong("a telephone number")),
        FieldKind::Date if is_date(value) => Ok(value.to_owned()),
        FieldKind::Date => Err(wrong("a date (YYYY-MM-DD)")),
        FieldKind::Choice => chosen(&field.options, value),
        FieldKind::Checkbox => match value {
            "true" => Ok("yes".to_owned()),
            "false" => Ok("no".to_owned()),
            _ => Err(wrong("true or false")),
        },
        FieldKind::Unspecified => Err(invalid(format!("field {:?} has no kind", field.id))),
    }
}

/// `-?digits(.digits)?`
fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && fraction.is_none_or(all_digits)
}

/// `local@domain`, each part non-empty, no spaces, one `@`, a dot in the
/// domain.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.contains(char::is_whitespace)
        && !domain.contains('@')
}

/// An optional `+`, then digits, spaces, dashes and parentheses, with 3 to
/// 20 digits.
fn is_phone(value: &str) -> bool {
    let rest = value.strip_prefix('+').unwrap_or(value);
    let digits = rest.bytes().filter(u8::is_ascii_digit).count();
    (3..=20).contains(&digits)
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'(' | b')'))
}

/// `YYYY-MM-DD`, a day that exists.
fn is_date(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = value.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

impl pb::Question {
    /// Every choice it offers, in order: quick replies, buttons, a list's
    /// rows; none for a form or a rating.
    pub fn choices(&self) -> Vec<&pb::Choice> {
        match &self.kind {
            Some(question::Kind::QuickReplies(c) | question::Kind::Buttons(c)) => {
                c.choices.iter().collect()
            }
            Some(question::Kind::List(list)) => {
                list.sections.iter().flat_map(|s| &s.choices).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(id: &str, label: &str) -> pb::Choice {
        pb::Choice {
            id: id.into(),
            label: label.into(),
            description: String::new(),
        }
    }

    fn buttons(labels: &[(&str, &str)]) -> pb::Question {
        pb::Question {
            text: "Is your washer still leaking?".into(),
            kind: Some(question::Kind::Buttons(pb::Choices {
                choices: labels.iter().map(|(id, l)| choice(id, l)).collect(),
            })),
        }
    }

    fn field(id: &str, kind: FieldKind, required: bool) -> pb::FormField {
        pb::FormField {
            id: id.into(),
            label: id.to_uppercase(),
            kind: kind as i32,
            required,
            hint: String::new(),
            options: Vec::new(),
        }
    }

    fn answer(value: answer::Value) -> pb::Answer {
        pb::Answer {
            question_seq: 3,
            text: String::new(),
            value: Some(value),
        }
    }

    #[test]
    fn a_choice_answer_says_its_label() {
        let q = buttons(&[("yes", "Yes"), ("no", "No, it stopped")]);
        assert_eq!(check_question(&q), Ok(()));
        let a = answer(answer::Value::Choice("no".into()));
        assert_eq!(check_answer_shape(&a), Ok(()));
        assert_eq!(answer_text(&q, &a).as_deref(), Ok("No, it stopped"));
        let wrong = answer(answer::Value::Choice("maybe".into()));
        assert!(answer_text(&q, &wrong).is_err());
        let rating = answer(answer::Value::Rating(pb::RatingAnswer {
            score: 1,
            comment: String::new(),
        }));
        assert!(
            answer_text(&q, &rating).is_err(),
            "not of the question's kind"
        );
    }

    #[test]
    fn generous_limits_are_limits_still() {
        let hundred: Vec<(String, String)> = (0..100)
            .map(|i| (format!("c{i}"), format!("Choice {i}")))
            .collect();
        let refs: Vec<(&str, &str)> = hundred
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(check_question(&buttons(&refs)), Ok(()), "100 buttons");
        let mut more = refs.clone();
        more.push(("c100", "One too many"));
        assert!(matches!(
            check_question(&buttons(&more)),
            Err(ShapeError::TooLarge(_))
        ));
        assert!(matches!(
            check_question(&buttons(&[("a", "A"), ("a", "B")])),
            Err(ShapeError::BadRequest(_))
        ));
        assert!(check_question(&buttons(&[])).is_err());
        let long = "x".repeat(MAX_CHOICE_LABEL + 1);
        assert!(matches!(
            check_question(&buttons(&[("a", &long)])),
            Err(ShapeError::TooLarge(_))
        ));
        let mut blank = buttons(&[("a", "A")]);
        blank.text = "  ".into();
        assert!(check_question(&blank).is_err(), "a question says itself");
    }

    #[test]
    fn list_ids_are_unique_across_sections() {
        let section = |title: &str, ids: &[&str]| pb::ChoiceSection {
            title: title.into(),
            choices: ids.iter().map(|id| choice(id, id)).collect(),
        };
        let mut q = pb::Question {
            text: "Which product?".into(),
            kind: Some(question::Kind::List(pb::ChoiceList {
                button: "Choose".into(),
                sections: vec![
                    section("Washers", &["w1", "w2"]),
                    section("Heaters", &["h1"]),
                ],
            })),
        };
        assert_eq!(check_question(&q), Ok(()));
        let a = answer(answer::Value::Choice("h1".into()));
        assert_eq!(answer_text(&q, &a).as_deref(), Ok("h1"));
        if let Some(question::Kind::List(list)) = &mut q.kind {
            list.sections[1].choices.push(choice("w1", "again"));
        }
        assert!(check_question(&q).is_err());
    }

    #[test]
    fn a_form_checks_each_kind_and_lists_what_was_filled() {
        let mut pick = field("model", FieldKind::Choice, true);
        pick.options = vec![choice("wm1", "WM-100"), choice("wm2", "WM-200")];
        let q = pb::Question {
            text: "Tell us about your washer".into(),
            kind: Some(question::Kind::Form(pb::Form {
                fields: vec![
                    field("name", FieldKind::Text, true),
                    field("email", FieldKind::Email, true),
                    field("phone", FieldKind::Phone, false),
                    field("bought", FieldKind::Date, false),
                    field("age", FieldKind::Number, false),
                    pick,
                    field("warranty", FieldKind::Checkbox, false),
                    field("notes", FieldKind::Multiline, false),
                ],
                submit: "Send".into(),
            })),
        };
        assert_eq!(check_question(&q), Ok(()));
        let filled = |pairs: &[(&str, &str)]| {
            answer(answer::Value::Form(pb::FormAnswer {
                fields: pairs
                    .iter()
                    .map(|(id, v)| pb::FieldAnswer {
                        id: (*id).into(),
                        value: (*v).into(),
                    })
                    .collect(),
            }))
        };
        let good = filled(&[
            ("email", "ann@example.org"),
            ("name", "Ann"),
            ("model", "wm2"),
            ("warranty", "true"),
            ("bought", "2024-02-29"),
            ("phone", "+49 (30) 123-456"),
            ("age", "-1.5"),
        ]);
        assert_eq!(
            answer_text(&q, &good).as_deref(),
            Ok(
                "NAME: Ann\nEMAIL: ann@example.org\nPHONE: +49 (30) 123-456\nBOUGHT: 2024-02-29\nAGE: -1.5\nMODEL: WM-200\nWARRANTY: yes"
            ),
            "in the form's order"
        );
        for bad in [
            filled(&[("name", "Ann"), ("model", "wm1")]),
            filled(&[("name", "Ann"), ("email", "ann"), ("model", "wm1")]),
            filled(&[("name", "Ann"), ("email", "a@b.c"), ("model", "wm9")]),
            filled(&[("name", "A\nB"), ("email", "a@b.c"), ("model", "wm1")]),
            filled(&[
                ("name", "Ann"),
                ("email", "a@b.c"),
                ("model", "wm1"),
                ("bought", "2023-02-29"),
            ]),
            filled(&[
                ("name", "Ann"),
                ("email", "a@b.c"),
                ("model", "wm1"),
                ("age", "1e3"),
            ]),
            filled(&[
                ("name", "Ann"),
                ("email", "a@b.c"),
                ("model", "wm1"),
                ("warranty", "yes"),
            ]),
            filled(&[
                ("name", "Ann"),
                ("email", "a@b.c"),
                ("model", "wm1"),
                ("colour", "red"),
            ]),
            filled(&[
                ("name", "Ann"),
                ("name", "Bo"),
                ("email", "a@b.c"),
                ("model", "wm1"),
            ]),
        ] {
            assert!(answer_text(&q, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_rating_stays_on_its_scale() {
        let q = |scale: RatingScale, comment: bool| pb::Question {
            text: "How did we do?".into(),
            kind: Some(question::Kind::Rating(pb::Rating {
                scale: scale as i32,
                low_label: "poor".into(),
                high_label: "great".into(),
                comment,
            })),
        };
        let score = |score: u32, comment: &str| {
            answer(answer::Value::Rating(pb::RatingAnswer {
                score,
                comment: comment.into(),
            }))
        };
        assert!(check_question(&q(RatingScale::Unspecified, false)).is_err());
        let stars = q(RatingScale::Stars, true);
        assert_eq!(
            answer_text(&stars, &score(4, " quick help ")).as_deref(),
            Ok("4/5\nquick help")
        );
        assert!(answer_text(&stars, &score(0, "")).is_err());
        assert!(answer_text(&stars, &score(6, "")).is_err());
        assert_eq!(
            answer_text(&q(RatingScale::Nps, false), &score(0, "")).as_deref(),
            Ok("0/10")
        );
        assert!(
            answer_text(&q(RatingScale::Nps, false), &score(9, "why")).is_err(),
            "no comment invited"
        );
        assert_eq!(
            answer_text(&q(RatingScale::Thumbs, false), &score(1, "")).as_deref(),
            Ok("thumbs up")
        );
    }

    #[test]
    fn an_answer_without_a_value_or_question_is_malformed() {
        let mut a = answer(answer::Value::Choice("x".into()));
        a.question_seq = 0;
        assert!(check_answer_shape(&a).is_err());
        a.question_seq = 1;
        a.value = None;
        assert!(check_answer_shape(&a).is_err());
        a.value = Some(answer::Value::Choice(String::new()));
        assert!(check_answer_shape(&a).is_err());
    }
}
