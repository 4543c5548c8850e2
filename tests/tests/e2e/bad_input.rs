//! Bad input gets its documented error and costs nobody else anything: after
//! each attack, a well-behaved pair of clients on the same server still talks.

use bytes::BytesMut;
use kanal_client::{Client, ClientError, Credentials};
use kanal_proto::codes::{CloseCode, StreamCode};
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{frame, limits, pb};
use kanal_tests::*;

/// Sends raw bytes as a request and returns how the stream ended.
async fn raw_request(
    connection: &quinn::Connection,
    bytes: &[u8],
) -> anyhow::Result<Result<Vec<u8>, quinn::ReadToEndError>> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(bytes).await?;
    let _ = send.finish();
    Ok(recv.read_to_end(1 << 20).await)
}

fn reset_code(result: &Result<Vec<u8>, quinn::ReadToEndError>) -> Option<StreamCode> {
    match result {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            StreamCode::from_value(code.into_inner())
        }
        _ => None,
    }
}

/// The well-behaved pair: a customer and an agent in one conversation.
struct Bystanders {
    customer: Client,
    agent_events: kanal_client::Events,
    conversation: String,
    sent: u32,
}

impl Bystanders {
    async fn new(server: &TestServer) -> anyhow::Result<Self> {
        let agent = server.agent("alice").await?;
        let mut agent_events = agent.subscribe(0).await?;
        until_caught_up(&mut agent_events).await?;
        let customer = server.register("calm").await?;
        let conversation = customer
            .create_conversation(&["support@localhost"], "")
            .await?
            .id;
        std::mem::forget(agent);
        Ok(Self {
            customer,
            agent_events,
            conversation,
            sent: 0,
        })
    }

    /// Proves both are still connected and served.
    async fn still_talk(&mut self) -> anyhow::Result<()> {
        self.sent += 1;
        let text = format!("still here {}", self.sent);
        self.customer.send_text(&self.conversation, &text).await?;
        let message = next_message(&mut self.agent_events).await?;
        anyhow::ensure!(text_of(&message) == text, "agent got {message:?}");
        Ok(())
    }
}

#[tokio::test]
async fn bad_input_gets_its_documented_error_and_harms_no_one_else() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut bystanders = Bystanders::new(&server).await?;
    bystanders.still_talk().await?;

    // A garbage first frame on the control stream: ProtocolViolation.
    let connection = raw_connect(&server, kanal_proto::ALPN_CLIENT).await?;
    let (mut send, _recv) = connection.open_bi().await?;
    send.write_all(&[4, 0xff, 0xff, 0xff, 0xff]).await?;
    assert_eq!(
        close_code(&connection).await,
        Some(CloseCode::ProtocolViolation)
    );
    bystanders.still_talk().await?;

    // An oversized length prefix: FrameTooLarge, before any body is sent.
    let connection = raw_connect(&server, kanal_proto::ALPN_CLIENT).await?;
    let (mut send, _recv) = connection.open_bi().await?;
    let mut prefix = BytesMut::new();
    prost::encoding::encode_varint(1 << 30, &mut prefix);
    send.write_all(&prefix).await?;
    assert_eq!(
        close_code(&connection).await,
        Some(CloseCode::FrameTooLarge)
    );
    bystanders.still_talk().await?;

    // A wrong ALPN: the TLS handshake fails (no_application_protocol alert).
    match raw_connect(&server, b"not-kanal/1").await {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(u64::from(close.error_code), 0x100 + 120, "TLS alert 120");
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    bystanders.still_talk().await?;

    // A wrong password: UNAUTHENTICATED, then the connection closes.
    let wrong = Client::connect(
        server.client_config(),
        Credentials::Password {
            address: "alice@localhost".into(),
            password: "not the password".into(),
        },
    )
    .await;
    assert_refused(wrong, pb::ErrorCode::Unauthenticated)?;
    let unknown = Client::connect(
        server.client_config(),
        Credentials::Password {
            address: "nobody@localhost".into(),
            password: "whatever123".into(),
        },
    )
    .await;
    assert_refused(unknown, pb::ErrorCode::Unauthenticated)?;
    bystanders.still_talk().await?;

    // Within an authenticated connection, bad requests close only their stream.
    let raw = raw_session(&server, "mallory").await?;
    let session = raw.connection.clone();
    let garbage = raw_request(&session, &[4, 0xff, 0xff, 0xff, 0xff]).await?;
    assert_eq!(reset_code(&garbage), Some(StreamCode::MalformedFrame));
    let mut oversized = BytesMut::new();
    prost::encoding::encode_varint((limits::MAX_FRAME + 1) as u64, &mut oversized);
    let too_large = raw_request(&session, &oversized).await?;
    assert_eq!(reset_code(&too_large), Some(StreamCode::FrameTooLarge));
    let truncated = raw_request(&session, &[10, 1, 2]).await?;
    assert_eq!(reset_code(&truncated), Some(StreamCode::Truncated));
    // Garbage after good requests on a pipelined stream resets that stream.
    let good = frame::encode_to_bytes(&pb::Request {
        id: 1,
        kind: Some(pb::request::Kind::ListConversations(
            pb::ListConversations {
                limit: 1,
                offset: 0,
            },
        )),
    });
    let mut pipelined = [good.clone(), good].concat();
    pipelined.extend_from_slice(&[4, 0xff, 0xff, 0xff, 0xff]);
    let after_good = raw_request(&session, &pipelined).await?;
    assert_eq!(reset_code(&after_good), Some(StreamCode::MalformedFrame));
    // ...and the same connection still answers a valid request.
    let list = pb::Request {
        id: 7,
        kind: Some(pb::request::Kind::ListConversations(
            pb::ListConversations {
                limit: 10,
                offset: 0,
            },
        )),
    };
    let answer = raw_request(&session, &frame::encode_to_bytes(&list)).await??;
    let mut buf = BytesMut::from(&answer[..]);
    let body = frame::FrameDecoder::new(limits::MAX_FRAME)
        .decode(&mut buf)?
        .expect("one frame");
    let response: pb::Response = frame::decode_body(body)?;
    assert_eq!(response.id, 7);
    assert!(matches!(
        response.kind,
        Some(pb::response::Kind::ConversationList(_))
    ));
    bystanders.still_talk().await?;

    // An unknown conversation, and one the caller is not part of: NOT_FOUND.
    let mallory = server.register("mallory2").await?;
    assert_refused(
        mallory.send_text("localhost/doesnotexist", "hi").await,
        pb::ErrorCode::NotFound,
    )?;
    assert_refused(
        mallory.history("localhost/doesnotexist", 0, 10).await,
        pb::ErrorCode::NotFound,
    )?;
    assert_refused(
        mallory
            .send_text(&bystanders.conversation, "let me in")
            .await,
        pb::ErrorCode::NotFound,
    )?;
    assert_refused(
        mallory.history(&bystanders.conversation, 0, 10).await,
        pb::ErrorCode::NotFound,
    )?;
    // A page before a seq no conversation can reach: BAD_REQUEST, not INTERNAL.
    assert_refused(
        bystanders
            .customer
            .history(&bystanders.conversation, u64::MAX, 10)
            .await,
        pb::ErrorCode::BadRequest,
    )?;
    // A malformed id and an oversized body are refused with their own codes.
    assert_refused(
        mallory.send_text("not an id", "hi").await,
        pb::ErrorCode::BadRequest,
    )?;
    let huge = "x".repeat(limits::MAX_TEXT + 1);
    assert_refused(
        bystanders
            .customer
            .send_text(&bystanders.conversation, &huge)
            .await,
        pb::ErrorCode::TooLarge,
    )?;
    assert_refused(
        mallory.create_conversation(&["ghost@localhost"], "").await,
        pb::ErrorCode::NotFound,
    )?;
    bystanders.still_talk().await?;

    // Registering a taken address, and an unsupported version.
    let taken = Client::connect(
        server.client_config(),
        Credentials::Register {
            local: "mallory2".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
            invite: String::new(),
        },
    )
    .await;
    assert_refused(taken, pb::ErrorCode::AddressTaken)?;
    bystanders.still_talk().await?;
    Ok(())
}

#[tokio::test]
async fn a_connection_without_hello_is_refused_by_version() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let connection = raw_connect(&server, kanal_proto::ALPN_CLIENT).await?;
    let (mut send, recv) = connection.open_bi().await?;
    let hello = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(pb::Hello {
            version: 99,
            availability: pb::Availability::Unspecified as i32,
            client: "future".into(),
            auth: Some(pb::hello::Auth::Resume(pb::Resume { token: "x".into() })),
        })),
    };
    write_frame(&mut send, &hello).await?;
    let mut reader = FrameReader::new(recv, limits::MAX_FRAME);
    let answer: pb::ServerControl = reader.next().await?.expect("an answer");
    match answer.kind {
        Some(pb::server_control::Kind::Error(e)) => {
            assert_eq!(e.code, pb::ErrorCode::UnsupportedVersion as i32);
        }
        other => panic!("expected an Error, got {other:?}"),
    }
    assert_eq!(close_code(&connection).await, Some(CloseCode::HelloRefused));
    let _: Option<ClientError> = None;
    Ok(())
}
