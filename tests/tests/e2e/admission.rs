//! The server holds at most `max_connections` connections, counting those
//! still in their handshake, and refuses the rest with the QUIC transport
//! error CONNECTION_REFUSED (PROTOCOL.md §2.4).

use std::sync::Arc;

use kanal_server::config::Config;
use kanal_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_is_admitted_up_to_max_connections() -> anyhow::Result<()> {
    let server = Arc::new(
        TestServer::start_with(Config {
            max_connections: 2,
            ..Config::default()
        })
        .await?,
    );

    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let server = server.clone();
        attempts.spawn(async move { raw_connect(&server, kanal_proto::ALPN_CLIENT).await });
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    while let Some(attempt) = tokio::time::timeout(PATIENCE, attempts.join_next()).await? {
        match attempt? {
            Ok(connection) => admitted.push(connection),
            Err(quinn::ConnectionError::ConnectionClosed(close))
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                refused += 1
            }
            Err(other) => anyhow::bail!("an attempt ended with {other}"),
        }
    }
    assert_eq!((admitted.len(), refused), (2, 6));
    Ok(())
}
