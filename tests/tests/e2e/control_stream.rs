//! The control stream lives as long as the connection: when the client ends
//! it, by finishing or by resetting it, the server closes the connection with
//! `NORMAL` (PROTOCOL.md §5.6).

use anyhow::Context;
use kanal_proto::codes::CloseCode;
use kanal_tests::*;

#[tokio::test]
async fn finishing_or_resetting_the_control_stream_closes_the_connection_normally()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;

    let mut finished = raw_session(&server, "fin").await?;
    finished.control.finish()?;
    let code = tokio::time::timeout(PATIENCE, close_code(&finished.connection))
        .await
        .context("the finished session stayed open")?;
    assert_eq!(code, Some(CloseCode::Normal));

    let mut reset = raw_session(&server, "rita").await?;
    reset.control.reset(quinn::VarInt::from_u32(0))?;
    let code = tokio::time::timeout(PATIENCE, close_code(&reset.connection))
        .await
        .context("the reset session stayed open")?;
    assert_eq!(code, Some(CloseCode::Normal));

    // Before the Hello has arrived, too.
    let early = raw_connect(&server, kanal_proto::ALPN_CLIENT).await?;
    let (mut control, _recv) = early.open_bi().await?;
    control.write_all(&[0x05]).await?;
    control.reset(quinn::VarInt::from_u32(0))?;
    let code = tokio::time::timeout(PATIENCE, close_code(&early))
        .await
        .context("the connection reset before its Hello stayed open")?;
    assert_eq!(code, Some(CloseCode::Normal));
    Ok(())
}
