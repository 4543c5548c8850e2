//! Pipelined request streams (PROTOCOL.md §7.1): many requests on one
//! stream, one response each, in order; sends applied in stream order.

use std::collections::BTreeSet;

use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use kanal_tests::*;

/// A Send request.
fn send(id: u64, conversation: &str, client_msg_id: &str, text: &str) -> pb::Request {
    pb::Request {
        id,
        kind: Some(pb::request::Kind::Send(pb::Send {
            conversation: conversation.into(),
            client_msg_id: client_msg_id.into(),
            body: Some(pb::Body {
                kind: Some(pb::body::Kind::Text(text.into())),
            }),
        })),
    }
}

/// Every response frame on `recv` until the server finishes the stream.
async fn responses(recv: quinn::RecvStream) -> anyhow::Result<Vec<pb::Response>> {
    let mut reader = FrameReader::new(recv, limits::MAX_RESPONSE_FRAME);
    let mut all = Vec::new();
    while let Some(response) = reader.next::<pb::Response>().await? {
        all.push(response);
    }
    Ok(all)
}

#[tokio::test]
async fn one_stream_carries_many_requests_answered_and_applied_in_order() -> anyhow::Result<()> {
    let server = TestServer::start_with(unlimited_sends()).await?;
    let bob = server.register("bob").await?;
    let raw = raw_session(&server, "carol").await?;

    // Create the conversation on a stream of its own.
    let (mut create_send, create_recv) = raw.connection.open_bi().await?;
    let create = pb::Request {
        id: 1,
        kind: Some(pb::request::Kind::CreateConversation(
            pb::CreateConversation {
                to: vec!["bob@localhost".into()],
                subject: "pipelined".into(),
            },
        )),
    };
    write_frame(&mut create_send, &create).await?;
    create_send.finish()?;
    let created = responses(create_recv).await?;
    let Some(pb::response::Kind::Conversation(conversation)) = &created[0].kind else {
        panic!("create failed: {created:?}");
    };

    // 300 sends on one stream, written before any answer is read; number
    // 150 is invalid (an empty client_msg_id) and is refused on its own.
    const SENDS: u64 = 300;
    let (mut stream_send, stream_recv) = raw.connection.open_bi().await?;
    let reading = tokio::spawn(responses(stream_recv));
    for i in 1..=SENDS {
        let client_msg_id = if i == 150 {
            String::new()
        } else {
            format!("m{i}")
        };
        write_frame(
            &mut stream_send,
            &send(i, &conversation.id, &client_msg_id, &format!("n{i}")),
        )
        .await?;
    }
    stream_send.finish()?;
    let answers = reading.await??;

    assert_eq!(
        answers.iter().map(|r| r.id).collect::<Vec<_>>(),
        (1..=SENDS).collect::<Vec<_>>(),
        "one response per request, in request order"
    );
    let mut expected_seq = 0;
    for (i, answer) in (1..=SENDS).zip(&answers) {
        match &answer.kind {
            Some(pb::response::Kind::Error(error)) if i == 150 => {
                assert_eq!(error.code, pb::ErrorCode::BadRequest as i32);
            }
            Some(pb::response::Kind::Sent(sent)) => {
                expected_seq += 1;
                assert_eq!(
                    sent.seq, expected_seq,
                    "request {i} applied in stream order"
                );
                assert!(!sent.duplicate);
            }
            other => panic!("request {i}: unexpected {other:?}"),
        }
    }

    // Bob reads them back in the order they were written.
    let page = bob.history(&conversation.id, 0, limits::MAX_PAGE).await?;
    let texts: Vec<String> = page
        .messages
        .iter()
        .map(|m| text_of(m).to_owned())
        .collect();
    let written: Vec<String> = (1..=SENDS)
        .filter(|&i| i != 150)
        .map(|i| format!("n{i}"))
        .collect();
    assert_eq!(texts, written);
    Ok(())
}

#[tokio::test]
async fn the_sdk_pipeline_serves_many_tasks_and_survives_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start_with(unlimited_sends()).await?;
    let _bob = server.register("bob").await?;
    let alice = server.register("alice").await?;
    let conversation = alice.create_conversation(&["bob@localhost"], "").await?;
    let pipeline = alice.pipeline();

    const TASKS: usize = 64;
    const EACH: usize = 10;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (pipeline, id) = (pipeline.clone(), conversation.id.clone());
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..EACH {
                let sent = pipeline
                    .send(&id, &format!("t{task}-{n}"), text_body("x"))
                    .await?;
                anyhow::ensure!(!sent.duplicate);
                seqs.push(sent.seq);
            }
            anyhow::Ok(seqs)
        });
    }
    let mut seqs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for seq in done?? {
            assert!(seqs.insert(seq), "seq {seq} given twice");
        }
    }
    assert_eq!(
        seqs.into_iter().collect::<Vec<_>>(),
        (1..=(TASKS * EACH) as u64).collect::<Vec<_>>()
    );

    // A retry on the pipeline is a duplicate, like on any stream.
    let again = pipeline
        .send(&conversation.id, "t0-0", text_body("x"))
        .await?;
    assert!(again.duplicate);

    // After a restart the pipeline opens a new stream on the new connection.
    let _server = server.restart().await?;
    let after = pipeline
        .send(&conversation.id, "after", text_body("x"))
        .await?;
    assert_eq!(
        (after.seq, after.duplicate),
        ((TASKS * EACH) as u64 + 1, false)
    );
    Ok(())
}

/// A text body.
fn text_body(text: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(text.into())),
    }
}
