//! A client whose server died learns it from the restarted server at once:
//! its next packet is answered with a stateless reset, instead of silence
//! until its idle timeout (PROTOCOL.md §2.3).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kanal_client::{Client, Credentials, Fingerprint};
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resets_the_connections_of_its_killed_predecessor() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    run_kanald(KANALD, &data, &["init"]).await?;

    let (mut first, addr, fingerprint) = spawn_kanald(KANALD, &data, loopback(0)).await?;
    let old = register(addr, &fingerprint).await?;
    // SIGKILL: the server sends no CONNECTION_CLOSE, so the client still
    // believes in its connection, as after a crash or a lost close.
    first.start_kill()?;
    first.wait().await?;

    let (_second, again, _) = spawn_kanald(KANALD, &data, addr).await?;
    anyhow::ensure!(
        again == addr,
        "the new server listens on {again}, not {addr}"
    );
    // The old connection's next packet goes to the new process. Under load
    // a retransmission of its own may get there first and be reset before
    // the request is even sent: that is the same reset, earlier.
    let request = pb::Request {
        id: 1,
        kind: Some(pb::request::Kind::ListConversations(
            pb::ListConversations::default(),
        )),
    };
    if let Ok((mut send, _recv)) = old.connection.open_bi().await {
        let _ = write_frame(&mut send, &request).await;
    }
    let end = tokio::time::timeout(2 * PATIENCE, old.connection.closed())
        .await
        .context("the old connection did not end")?;
    assert!(
        matches!(end, quinn::ConnectionError::Reset),
        "the old connection ended with {end:?}, not a stateless reset"
    );

    // Reconnecting is all it takes: the session survived the restart.
    let resumed = Client::connect(
        config_for(addr, &fingerprint),
        Credentials::Resume {
            token: old.resume_token,
        },
    )
    .await?;
    assert_eq!(resumed.party().address, "ann@localhost");
    Ok(())
}

/// A raw QUIC connection that registered `ann@localhost`. It sends no
/// keep-alives, so after the server dies it is silent until the test makes
/// it speak; its idle timeout (`PATIENCE`) is what would end it without a
/// reset.
struct OldClient {
    connection: quinn::Connection,
    resume_token: String,
    /// The control stream, open for as long as the connection should live.
    _control: (quinn::SendStream, FrameReader<quinn::RecvStream>),
}

async fn register(addr: SocketAddr, fingerprint: &str) -> Result<OldClient> {
    let pin: Fingerprint = fingerprint.parse()?;
    let crypto = kanal_client::tls::client_crypto(Some(pin))?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(PATIENCE.try_into()?));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client(loopback(0))?;
    endpoint.set_default_client_config(config);
    let connection = endpoint.connect(addr, "localhost")?.await?;

    let (mut send, recv) = connection.open_bi().await?;
    let hello = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(pb::Hello {
            version: kanal_proto::PROTOCOL_VERSION,
            availability: pb::Availability::Unspecified as i32,
            client: "restart-test".into(),
            auth: Some(pb::hello::Auth::Register(pb::Register {
                local: "ann".into(),
                password: PASSWORD.into(),
                display_name: String::new(),
                invite: String::new(),
            })),
        })),
    };
    write_frame(&mut send, &hello).await?;
    let mut control = FrameReader::new(recv, limits::MAX_FRAME);
    let Some(pb::ServerControl {
        kind: Some(pb::server_control::Kind::Welcome(welcome)),
    }) = control.next().await?
    else {
        bail!("no Welcome");
    };
    Ok(OldClient {
        connection,
        resume_token: welcome.resume_token,
        _control: (send, control),
    })
}
