//! Structured messages over real QUIC and SQLite (PROTOCOL.md §14): an
//! agent asks, the customer answers, the server checks each answer against
//! its question and writes its words; what breaks the rules is refused
//! with the documented code and stores nothing; a device is offered the
//! choices that fit it and its pick is stored as the answer.

use kanal_client::structured::{self, Scale};
use kanal_proto::pb;
use kanal_server::admin::{self, DeviceSpec};
use kanal_server::datadir;
use kanal_tests::device::TestDevice;
use kanal_tests::*;

fn answer_of(message: &pb::Message) -> &pb::Answer {
    match message.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(pb::body::Kind::Answer(answer)) => answer,
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[tokio::test]
async fn answers_fit_their_questions_and_say_what_was_chosen() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let carla = server.register("carla").await?;
    let mallory = server.register("mallory").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let id = conversation.id.as_str();
    let hello = carla.send_text(id, "it leaks").await?;

    let asked = ann
        .ask(
            id,
            structured::buttons("Is it still leaking?", &["Yes", "No"]),
        )
        .await?;
    let answered = carla.answer(id, asked.seq, structured::choose("2")).await?;
    let survey = ann
        .ask(id, structured::rating("How did we do?", Scale::Stars, true))
        .await?;
    let rated = carla
        .answer(id, survey.seq, structured::score(5, "quick and kind"))
        .await?;

    // Every reader sees the server's words, whatever the client sent.
    let history = ann.history(id, 0, 50).await?;
    let by_seq = |seq: u64| {
        history
            .messages
            .iter()
            .find(|m| m.seq == seq)
            .expect("stored")
    };
    let choice = answer_of(by_seq(answered.seq));
    assert_eq!(choice.question_seq, asked.seq);
    assert_eq!(choice.text, "No");
    assert_eq!(
        by_seq(rated.seq).body.as_ref().and_then(pb::Body::text),
        Some("5/5\nquick and kind")
    );
    assert_eq!(
        by_seq(asked.seq).body.as_ref().and_then(pb::Body::text),
        Some("Is it still leaking?"),
        "a client that cannot show buttons shows the question"
    );

    // Answers that fit no question: refused, nothing stored.
    let invalid = pb::ErrorCode::InvalidAnswer;
    assert_refused(
        carla.answer(id, asked.seq, structured::choose("3")).await,
        invalid,
    )?;
    assert_refused(
        carla.answer(id, asked.seq, structured::score(1, "")).await,
        invalid,
    )?;
    assert_refused(
        carla.answer(id, hello.seq, structured::choose("1")).await,
        invalid,
    )?;
    assert_refused(
        carla.answer(id, 999, structured::choose("1")).await,
        invalid,
    )?;
    assert_refused(
        ann.answer(id, asked.seq, structured::choose("1")).await,
        invalid,
    )?;
    assert_refused(
        carla.answer(id, survey.seq, structured::score(6, "")).await,
        invalid,
    )?;
    assert_refused(
        mallory.answer(id, asked.seq, structured::choose("1")).await,
        pb::ErrorCode::NotFound,
    )?;
    assert_refused(
        carla.answer(id, 0, structured::choose("1")).await,
        pb::ErrorCode::BadRequest,
    )?;

    // Questions that break the rules.
    let labels: Vec<String> = (0..101).map(|i| format!("option {i}")).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    assert_refused(
        ann.ask(id, structured::buttons("Pick one", &labels)).await,
        pb::ErrorCode::TooLarge,
    )?;
    // A hundred is within the limit: no vendor-style cap of three.
    ann.ask(id, structured::buttons("Pick one", &labels[..100]))
        .await?;
    assert_refused(
        ann.ask(id, structured::buttons("", &["Yes"])).await,
        pb::ErrorCode::BadRequest,
    )?;
    let mut twice = structured::quick_replies("Which?", &["A", "B"]);
    if let Some(pb::question::Kind::QuickReplies(choices)) = &mut twice.kind {
        choices.choices[1].id = "1".into();
    }
    assert_refused(ann.ask(id, twice).await, pb::ErrorCode::BadRequest)?;

    let after = ann.history(id, 0, 50).await?;
    assert_eq!(
        after.messages.last().map(|m| m.seq),
        Some(rated.seq + 1),
        "only the 100-button question was stored after the last answer"
    );
    Ok(())
}

#[tokio::test]
async fn a_form_is_checked_field_by_field() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let carla = server.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    let id = conversation.id.as_str();
    let form = structured::form(
        "Where should the technician come?",
        vec![
            structured::field("name", "Name", pb::FieldKind::Text, true),
            structured::field("email", "E-mail", pb::FieldKind::Email, true),
            structured::field("day", "Day", pb::FieldKind::Date, false),
        ],
        "Book",
    );
    let asked = ann.ask(id, form).await?;
    assert_refused(
        carla
            .answer(id, asked.seq, structured::fill(&[("name", "Carla")]))
            .await,
        pb::ErrorCode::InvalidAnswer,
    )?;
    assert_refused(
        carla
            .answer(
                id,
                asked.seq,
                structured::fill(&[("name", "Carla"), ("email", "carla"), ("day", "2027-01-05")]),
            )
            .await,
        pb::ErrorCode::InvalidAnswer,
    )?;
    let sent = carla
        .answer(
            id,
            asked.seq,
            structured::fill(&[
                ("day", "2027-01-05"),
                ("email", "carla@example.org"),
                ("name", "Carla"),
            ]),
        )
        .await?;
    let history = carla.history(id, sent.seq + 1, 1).await?;
    assert_eq!(
        answer_of(&history.messages[0]).text,
        "Name: Carla\nE-mail: carla@example.org\nDay: 2027-01-05"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_offered_the_choices_and_its_pick_is_the_answer() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let (mut device, key) = TestDevice::new(&server).await?;
    admin::add_device(
        &server.server.node(),
        DeviceSpec {
            serial: "HP-0002".into(),
            model: "HP 300".into(),
            key,
            inbox: datadir::DEFAULT_INBOX.into(),
            owner: None,
        },
    )
    .await?;
    let conversation = device.open("filter", "Filter clogged", &[]).await?;
    let report = next_message(&mut ann_events).await?;

    let asked = ann
        .ask(
            &report.conversation,
            structured::buttons("Replace the filter now?", &["Yes", "Later"]),
        )
        .await?;
    let (mail_id, to, text, replies) = device.next_mail_with_id().await?;
    assert_eq!(
        (to, text.as_str()),
        (conversation, "Replace the filter now?")
    );
    assert_eq!(replies, ["Yes", "Later"]);
    let pick = kanal_firmware::Choice {
        message: mail_id,
        index: 1,
    };
    device.append(conversation, "Later", Some(pick)).await?;
    let answer = loop {
        let message = next_message(&mut ann_events).await?;
        if message.sender == "hp-0002@localhost" {
            break message;
        }
    };
    let answer = answer_of(&answer);
    assert_eq!(answer.question_seq, asked.seq);
    assert_eq!(answer.value, Some(structured::choose("2")));
    assert_eq!(answer.text, "Later");

    // A question with more choices than a device shows reaches it as text.
    ann.ask(
        &report.conversation,
        structured::rating("Rate the repair from 1 to 5", Scale::Stars, false),
    )
    .await?;
    let (_, _, text, replies) = device.next_mail_with_id().await?;
    assert_eq!(text, "Rate the repair from 1 to 5");
    assert!(replies.is_empty());
    Ok(())
}
