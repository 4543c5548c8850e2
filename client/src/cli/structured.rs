//! `kanal ask` and `kanal answer`: structured messages from the command
//! line (PROTOCOL.md §14), and how questions and answers are printed
//! (`--json`: a message's `question` or `answer` object).

use crate::structured::{self, Scale};
use crate::{Client, pb};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

/// How `kanal ask` asks: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct QuestionKind {
    /// Buttons that stay on the message (comma-separated or repeated)
    #[arg(long, value_delimiter = ',')]
    buttons: Vec<String>,
    /// Quick replies, hidden once answered (comma-separated or repeated)
    #[arg(long, value_delimiter = ',')]
    quick_replies: Vec<String>,
    /// A list section, `TITLE=row,row,…` (repeat for more sections)
    #[arg(long)]
    section: Vec<String>,
    /// A rating on this scale
    #[arg(long, value_enum)]
    rating: Option<RatingArg>,
    /// A form field, `ID:KIND[:LABEL]` with KIND one of text, multiline,
    /// number, email, phone, date, checkbox or `choice=a|b|c`; a `!` after
    /// KIND makes it required (repeat for more fields)
    #[arg(long)]
    field: Vec<String>,
}

/// Options of some kinds.
#[derive(Debug, Args)]
pub(crate) struct QuestionOptions {
    /// With --rating: invite a comment
    #[arg(long)]
    comment: bool,
    /// With --section: the word on the list's button
    #[arg(long, default_value = "")]
    list_button: String,
    /// With --field: the word on the form's submit button
    #[arg(long, default_value = "")]
    submit: String,
}

/// A rating scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RatingArg {
    /// 1 to 5 stars
    Stars,
    /// 0 to 10
    Nps,
    /// thumbs down (0) or up (1)
    Thumbs,
}

/// The question `kanal ask` sends.
pub(crate) fn question(
    text: &str,
    kind: &QuestionKind,
    options: &QuestionOptions,
) -> anyhow::Result<pb::Question> {
    if !kind.buttons.is_empty() {
        return Ok(structured::buttons(text, &strs(&kind.buttons)));
    }
    if !kind.quick_replies.is_empty() {
        return Ok(structured::quick_replies(text, &strs(&kind.quick_replies)));
    }
    if let Some(scale) = kind.rating {
        let scale = match scale {
            RatingArg::Stars => Scale::Stars,
            RatingArg::Nps => Scale::Nps,
            RatingArg::Thumbs => Scale::Thumbs,
        };
        return Ok(structured::rating(text, scale, options.comment));
    }
    if !kind.section.is_empty() {
        let mut sections = Vec::new();
        for section in &kind.section {
            let Some((title, rows)) = section.split_once('=') else {
                bail!("--section {section:?}: write TITLE=row,row,…");
            };
            sections.push((title, rows.split(',').map(str::trim).collect::<Vec<_>>()));
        }
        let sections: Vec<(&str, &[&str])> =
            sections.iter().map(|(t, r)| (*t, r.as_slice())).collect();
        return Ok(structured::list(text, &options.list_button, &sections));
    }
    let fields = kind
        .field
        .iter()
        .map(|spec| form_field(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(structured::form(text, fields, &options.submit))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A `--field ID:KIND[!][:LABEL]`.
fn form_field(spec: &str) -> anyhow::Result<pb::FormField> {
    let mut parts = spec.splitn(3, ':');
    let (Some(id), Some(kind)) = (parts.next(), parts.next()) else {
        bail!("--field {spec:?}: write ID:KIND[:LABEL]");
    };
    let label = parts.next().unwrap_or(id);
    let (kind, required) = match kind.strip_suffix('!') {
        Some(kind) => (kind, true),
        None => (kind, false),
    };
    let (kind, options) = match kind.split_once('=') {
        Some(("choice", options)) => (pb::FieldKind::Choice, options.split('|').collect()),
        _ => (
            match kind {
                "text" => pb::FieldKind::Text,
                "multiline" => pb::FieldKind::Multiline,
                "number" => pb::FieldKind::Number,
                "email" => pb::FieldKind::Email,
                "phone" => pb::FieldKind::Phone,
                "date" => pb::FieldKind::Date,
                "checkbox" => pb::FieldKind::Checkbox,
                other => bail!(
                    "--field {spec:?}: unknown kind {other:?} (text, multiline, number, \
                     email, phone, date, checkbox, choice=a|b)"
                ),
            },
            Vec::new(),
        ),
    };
    let mut field = structured::field(id, label, kind, required);
    field.options = structured::choices(&options);
    Ok(field)
}

/// `kanal answer`: reads the question at `seq`, makes `words` its answer
/// and sends it.
pub(crate) async fn answer(
    client: &Client,
    conversation: &str,
    seq: u64,
    words: &[String],
    comment: Option<&str>,
) -> anyhow::Result<pb::Sent> {
    let page = client
        .history(conversation, seq.saturating_add(1), 1)
        .await
        .with_context(|| format!("reading message #{seq} of {conversation}"))?;
    let question = match page.messages.iter().find(|m| m.seq == seq) {
        Some(pb::Message {
            body:
                Some(pb::Body {
                    kind: Some(pb::body::Kind::Question(question)),
                }),
            ..
        }) => question,
        Some(_) => bail!("message #{seq} of {conversation} is not a question"),
        None => bail!("{conversation} has no message #{seq}"),
    };
    let value = answer_value(question, words, comment)?;
    client
        .answer(conversation, seq, value)
        .await
        .with_context(|| format!("answering #{seq} of {conversation}"))
}

/// What `words` answer to `question`: a choice by id, label or position; a
/// score; form fields as `id=value`.
fn answer_value(
    question: &pb::Question,
    words: &[String],
    comment: Option<&str>,
) -> anyhow::Result<pb::answer::Value> {
    use pb::question::Kind;
    let said = words.join(" ");
    match &question.kind {
        Some(Kind::Rating(_)) => {
            let score = said
                .trim()
                .parse()
                .with_context(|| format!("a rating takes a score, not {said:?}"))?;
            Ok(structured::score(score, comment.unwrap_or_default()))
        }
        Some(Kind::Form(_)) => {
            let mut fields = Vec::new();
            for word in words {
                let Some((id, value)) = word.split_once('=') else {
                    bail!("a form takes ID=VALUE for each field, not {word:?}");
                };
                fields.push((id, value));
            }
            Ok(structured::fill(&fields))
        }
        Some(_) => {
            let choices = question.choices();
            let said = said.trim();
            let found = choices
                .iter()
                .find(|c| c.id == said)
                .or_else(|| choices.iter().find(|c| c.label.eq_ignore_ascii_case(said)))
                .or_else(|| {
                    let n: usize = said.parse().ok()?;
                    choices.get(n.checked_sub(1)?)
                });
            match found {
                Some(choice) => Ok(structured::choose(&choice.id)),
                None => bail!(
                    "{said:?} is none of the choices: {}",
                    choices
                        .iter()
                        .map(|c| c.label.as_str())
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            }
        }
        None => bail!("the question has no kind this client knows"),
    }
}

/// How a question or answer is printed after its text; empty for other
/// bodies.
pub(crate) fn shown(body: &pb::Body) -> String {
    use pb::question::Kind;
    match &body.kind {
        Some(pb::body::Kind::Question(q)) => {
            let labels = |choices: &[&pb::Choice]| {
                choices
                    .iter()
                    .map(|c| c.label.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            match &q.kind {
                Some(Kind::QuickReplies(_)) => {
                    format!(" [quick replies: {}]", labels(&q.choices()))
                }
                Some(Kind::Buttons(_)) => format!(" [buttons: {}]", labels(&q.choices())),
                Some(Kind::List(_)) => format!(" [list: {}]", labels(&q.choices())),
                Some(Kind::Form(form)) => {
                    let fields: Vec<String> = form
                        .fields
                        .iter()
                        .map(|f| format!("{}{}", f.label, if f.required { "*" } else { "" }))
                        .collect();
                    format!(" [form: {}]", fields.join(", "))
                }
                Some(Kind::Rating(rating)) => {
                    let scale = match pb::RatingScale::try_from(rating.scale) {
                        Ok(pb::RatingScale::Stars) => "1-5",
                        Ok(pb::RatingScale::Nps) => "0-10",
                        Ok(pb::RatingScale::Thumbs) => "0-1",
                        _ => "?",
                    };
                    let comment = if rating.comment { ", comment" } else { "" };
                    format!(" [rating {scale}{comment}]")
                }
                None => " [question]".to_owned(),
            }
        }
        Some(pb::body::Kind::Answer(a)) => format!(" (answers #{})", a.question_seq),
        _ => String::new(),
    }
}

/// A question's or answer's fields as JSON, to add to its message's object.
pub(crate) fn json_fields(body: &pb::Body) -> Option<(&'static str, Value)> {
    use pb::question::Kind;
    let choice = |c: &&pb::Choice| json!({ "id": c.id, "label": c.label });
    match &body.kind {
        Some(pb::body::Kind::Question(q)) => {
            let detail = match &q.kind {
                Some(Kind::QuickReplies(_)) => json!({
                    "kind": "quick_replies",
                    "choices": q.choices().iter().map(choice).collect::<Vec<_>>(),
                }),
                Some(Kind::Buttons(_)) => json!({
                    "kind": "buttons",
                    "choices": q.choices().iter().map(choice).collect::<Vec<_>>(),
                }),
                Some(Kind::List(list)) => json!({
                    "kind": "list",
                    "button": list.button,
                    "sections": list.sections.iter().map(|s| json!({
                        "title": s.title,
                        "choices": s.choices.iter().map(|c| json!({ "id": c.id, "label": c.label })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }),
                Some(Kind::Form(form)) => json!({
                    "kind": "form",
                    "submit": form.submit,
                    "fields": form.fields.iter().map(|f| json!({
                        "id": f.id,
                        "label": f.label,
                        "kind": pb::FieldKind::try_from(f.kind)
                            .map(|k| k.as_str_name().trim_start_matches("FIELD_KIND_").to_lowercase())
                            .unwrap_or_default(),
                        "required": f.required,
                        "options": f.options.iter().map(|c| json!({ "id": c.id, "label": c.label })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }),
                Some(Kind::Rating(r)) => json!({
                    "kind": "rating",
                    "scale": pb::RatingScale::try_from(r.scale)
                        .map(|s| s.as_str_name().trim_start_matches("RATING_SCALE_").to_lowercase())
                        .unwrap_or_default(),
                    "comment": r.comment,
                }),
                None => json!({ "kind": "unknown" }),
            };
            Some(("question", detail))
        }
        Some(pb::body::Kind::Answer(a)) => {
            let mut detail = json!({ "question_seq": a.question_seq });
            let value = match &a.value {
                Some(pb::answer::Value::Choice(id)) => json!({ "choice": id }),
                Some(pb::answer::Value::Rating(r)) => {
                    json!({ "score": r.score, "comment": r.comment })
                }
                Some(pb::answer::Value::Form(f)) => json!({
                    "fields": f.fields.iter().map(|f| (f.id.clone(), Value::from(f.value.clone()))).collect::<serde_json::Map<_, _>>(),
                }),
                None => json!({}),
            };
            if let (Some(object), Value::Object(value)) = (detail.as_object_mut(), value) {
                object.extend(value);
            }
            Some(("answer", detail))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_spec_reads_kind_requirement_label_and_options() {
        let field = form_field("email:email!:E-mail").expect("a field");
        assert_eq!(
            (field.id.as_str(), field.label.as_str(), field.required),
            ("email", "E-mail", true)
        );
        assert_eq!(field.kind, pb::FieldKind::Email as i32);
        let pick = form_field("model:choice=WM-100|WM-200").expect("a field");
        assert_eq!(pick.options.len(), 2);
        assert_eq!(pick.label, "model");
        assert!(form_field("x:colour").is_err());
        assert!(form_field("x").is_err());
    }

    #[test]
    fn a_choice_is_named_by_id_label_or_position() {
        let q = structured::buttons("Still leaking?", &["Yes", "No"]);
        let words = |w: &str| vec![w.to_owned()];
        for said in ["2", "no", "No"] {
            assert_eq!(
                answer_value(&q, &words(said), None).expect("a choice"),
                structured::choose("2"),
                "{said}"
            );
        }
        assert!(answer_value(&q, &words("maybe"), None).is_err());
        let rating = structured::rating("How did we do?", Scale::Stars, true);
        assert_eq!(
            answer_value(&rating, &words("4"), Some("fine")).expect("a score"),
            structured::score(4, "fine")
        );
        let body = pb::Body {
            kind: Some(pb::body::Kind::Question(q)),
        };
        assert_eq!(shown(&body), " [buttons: Yes | No]");
    }
}
