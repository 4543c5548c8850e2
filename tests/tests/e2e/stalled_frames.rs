//! A frame that begins and never ends holds nothing for long: its request
//! stream is reset with STALLED within FRAME_STALL_SECS, and the connection
//! and everyone else carry on.

use std::time::Instant;

use anyhow::{Result, ensure};
use kanal_proto::codes::StreamCode;
use kanal_proto::limits;
use kanal_tests::*;

#[tokio::test]
async fn a_half_sent_request_frame_is_reset_as_stalled() -> Result<()> {
    let server = TestServer::start().await?;
    let raw = raw_session(&server, "slowloris").await?;
    let started = Instant::now();
    let (mut send, mut recv) = raw.connection.open_bi().await?;
    // A length prefix promising 1,000 bytes, and ten of them; then nothing,
    // with the stream left open.
    let mut partial = vec![0xe8, 0x07];
    partial.extend_from_slice(&[0; 10]);
    send.write_all(&partial).await?;
    let ended = tokio::time::timeout(2 * PATIENCE, recv.read_to_end(1 << 20)).await?;
    let code = match ended {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            StreamCode::from_value(code.into_inner())
        }
        other => anyhow::bail!("expected a reset, got {other:?}"),
    };
    ensure!(code == Some(StreamCode::Stalled), "reset with {code:?}");
    let waited = started.elapsed().as_secs();
    ensure!(
        waited >= limits::FRAME_STALL_SECS,
        "reset after {waited} s, before the frame could be late"
    );
    // The same connection is still served.
    let (mut send, mut recv) = raw.connection.open_bi().await?;
    let request = kanal_proto::pb::Request {
        id: 7,
        kind: Some(kanal_proto::pb::request::Kind::ListConversations(
            Default::default(),
        )),
    };
    kanal_proto::io::write_frame(&mut send, &request).await?;
    send.finish()?;
    let answer = recv.read_to_end(1 << 20).await?;
    ensure!(!answer.is_empty(), "no response after the stalled stream");
    Ok(())
}
