//! Password guessing is refused cheaply once a source or an account has
//! failed too often, while everyone else logs in and talks as usual.

use std::net::SocketAddr;

use anyhow::{Result, ensure};
use kanal_client::{Client, Credentials};
use kanal_proto::pb;
use kanal_tests::*;

/// A login from the loopback address `source` (127.0.0.0/8 is all ours).
async fn login_from(
    server: &TestServer,
    source: [u8; 4],
    address: &str,
    password: &str,
) -> Result<Client, kanal_client::ClientError> {
    let endpoint = quinn::Endpoint::client(SocketAddr::from((source, 0)))
        .map_err(kanal_client::ClientError::from)?;
    Client::connect(
        server.client_config().endpoint(endpoint),
        Credentials::Password {
            address: address.into(),
            password: password.into(),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_by_source_and_by_account() -> Result<()> {
    let server = TestServer::start().await?;
    let agent = server.agent("alice").await?;
    let mut agent_events = agent.subscribe(0).await?;
    until_caught_up(&mut agent_events).await?;
    let calm = server.register("calm").await?;
    let quiet = calm.create_conversation(&["support@localhost"], "").await?;
    server.add_user("victim").await?;

    // One source guesses at many accounts: 20 wrong answers, then refused
    // before any password is checked.
    let mut refused = Vec::new();
    for n in 0..30 {
        let result = login_from(
            &server,
            [127, 0, 0, 2],
            &format!("guess{n}@localhost"),
            "wrong-password",
        )
        .await;
        refused.push(result.err().and_then(|e| e.code()));
    }
    let unauthenticated = refused
        .iter()
        .filter(|c| **c == Some(pb::ErrorCode::Unauthenticated))
        .count();
    let limited = refused
        .iter()
        .filter(|c| **c == Some(pb::ErrorCode::RateLimited))
        .count();
    ensure!(
        (unauthenticated, limited) == (20, 10),
        "expected 20 wrong answers then 10 refusals, got {refused:?}"
    );
    // Everyone else is unaffected: a login from another source, and the
    // conversation already under way.
    server.login("alice@localhost").await?;
    calm.send_text(&quiet.id, "still here").await?;
    let message = next_message(&mut agent_events).await?;
    ensure!(text_of(&message) == "still here");

    // Guesses at one account from many sources: after 10, the account is
    // refused whatever the password, until it has waited.
    for n in 0..10 {
        let wrong = login_from(
            &server,
            [127, 0, 1, n],
            "victim@localhost",
            "wrong-password",
        )
        .await;
        assert_refused(wrong, pb::ErrorCode::Unauthenticated)?;
    }
    let right = login_from(&server, [127, 0, 2, 1], "victim@localhost", PASSWORD).await;
    let message = match &right {
        Err(e) if e.code() == Some(pb::ErrorCode::RateLimited) => e.to_string(),
        other => anyhow::bail!("expected RATE_LIMITED, got {other:?}"),
    };
    ensure!(message.contains("retry in"), "{message}");
    assert_memory_bounded("failed-login flood")?;
    Ok(())
}
