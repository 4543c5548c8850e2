//! Responses a client will not read hold nothing of anyone else's: reads
//! finish into the connection's bounded response budget and release their
//! database connection, the writer's loads have connections of their own,
//! and a response left unread for FRAME_STALL_SECS resets its stream with
//! STALLED.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use kanal_proto::codes::StreamCode;
use kanal_proto::io::write_frame;
use kanal_proto::{limits, pb};
use kanal_tests::*;

/// Large messages in the attacker's conversation.
const LARGE_MESSAGES: usize = 60;

/// Request streams the attacker opens: one more than its connection's
/// response budget holds full pages for, so one stream waits for room.
const STREAMS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_history_pages_do_not_stall_the_server() -> Result<()> {
    let server = TestServer::start().await?;
    let mut bystander = Bystander::start(&server, "calm", "alice").await?;

    // The attacker's connection grants almost no flow-control credit and
    // never reads: whatever the server answers stays unsent.
    let mut stingy = quinn::TransportConfig::default();
    stingy
        .stream_receive_window(quinn::VarInt::from_u32(4 * 1024))
        .receive_window(quinn::VarInt::from_u32(16 * 1024));
    let raw = raw_session_with(&server, "hoarder", stingy).await?;
    let setup = server.login("hoarder@localhost").await?;
    let big = setup
        .create_conversation(&["support@localhost"], "large")
        .await?;
    let text = "x".repeat(limits::MAX_TEXT);
    for _ in 0..LARGE_MESSAGES {
        setup.send_text(&big.id, &text).await?;
    }

    let mut held = Vec::new();
    for stream in 0..STREAMS {
        let (mut send, recv) = raw.connection.open_bi().await?;
        for n in 0..limits::MAX_PIPELINED_REQUESTS {
            let request = pb::Request {
                id: (stream * 1000 + n) as u64,
                kind: Some(pb::request::Kind::History(pb::History {
                    conversation: big.id.clone(),
                    before_seq: 0,
                    limit: limits::MAX_PAGE,
                })),
            };
            write_frame(&mut send, &request).await?;
        }
        held.push((send, recv));
    }
    let attack_started = Instant::now();

    // Everyone else is served as usual: sends, reads, new logins.
    bystander
        .converse(100)
        .await?
        .assert_within("unread responses", Duration::from_millis(500))?;
    for _ in 0..20 {
        let page = setup.history(&big.id, 0, limits::MAX_PAGE).await?;
        ensure!(!page.messages.is_empty(), "the reader got an empty page");
    }
    server.login("calm@localhost").await?;

    // The unread responses are dropped after FRAME_STALL_SECS: each of the
    // attacker's streams is reset with STALLED. `received_reset` reads no
    // data, so it grants the server no credit.
    for (_send, mut recv) in held {
        let reset = tokio::time::timeout(2 * PATIENCE, recv.received_reset()).await??;
        let code = reset.and_then(|code| StreamCode::from_value(code.into_inner()));
        ensure!(
            code == Some(StreamCode::Stalled),
            "stream ended with {code:?}"
        );
    }
    let waited = attack_started.elapsed();
    ensure!(
        waited >= Duration::from_secs(limits::FRAME_STALL_SECS),
        "reset after {waited:?}, before any response could be late"
    );
    assert_memory_bounded("unread responses")?;
    Ok(())
}

/// Streams kept open between requests, as a pipelining client keeps them,
/// hold none of the response budget: every one of them is still answered.
#[tokio::test]
async fn idle_open_streams_hold_no_response_budget() -> Result<()> {
    let server = TestServer::start().await?;
    let raw = raw_session(&server, "keeper").await?;
    let mut open = Vec::new();
    for n in 0..STREAMS_PER_CONNECTION {
        let (mut send, recv) = raw.connection.open_bi().await?;
        let request = pb::Request {
            id: n as u64,
            kind: Some(pb::request::Kind::ListConversations(Default::default())),
        };
        write_frame(&mut send, &request).await?;
        let mut reader = kanal_proto::io::FrameReader::new(recv, limits::MAX_RESPONSE_FRAME);
        let response: Option<pb::Response> =
            tokio::time::timeout(PATIENCE, reader.next()).await??;
        ensure!(
            response.is_some_and(|r| r.id == n as u64),
            "stream {n} was not answered while {n} others stay open"
        );
        // Left open: the next request could come at any time.
        open.push((send, reader));
    }
    Ok(())
}

/// Request streams a connection may have open at once (PROTOCOL.md §2.3).
const STREAMS_PER_CONNECTION: usize = 7;
