//! What one client may make the server hold or do is bounded: registrations
//! per source and in total (or by invitation only), sends per party, and
//! connections per account and per source. A refusal costs the refused
//! nothing else, and says how long to wait where the server can tell.

use std::time::Duration;

use anyhow::{Result, ensure};
use kanal_client::{Client, ClientError, Credentials, pb};
use kanal_server::Registration;
use kanal_server::admin;
use kanal_server::config::Config;
use kanal_tests::*;

/// Registers `local` with `invite`.
async fn register(server: &TestServer, local: &str, invite: &str) -> Result<Client, ClientError> {
    Client::connect(
        server.client_config(),
        Credentials::Register {
            local: local.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
            invite: invite.into(),
        },
    )
    .await
}

/// The code and retry hint of a refusal.
fn refusal<T>(result: Result<T, ClientError>) -> (pb::ErrorCode, Option<Duration>) {
    match result {
        Err(ClientError::Refused {
            code, retry_after, ..
        }) => (code, retry_after),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got success"),
    }
}

#[tokio::test]
async fn one_source_registers_only_its_hourly_share() -> Result<()> {
    let server = TestServer::start_with(Config {
        registrations_per_hour_per_source: 3,
        ..Config::default()
    })
    .await?;
    for n in 0..3 {
        register(&server, &format!("early{n}"), "").await?;
    }
    let (code, wait) = refusal(register(&server, "late", "").await);
    ensure!(code == pb::ErrorCode::RateLimited, "{code:?}");
    // One registration an hour / 3 = every 20 minutes.
    let wait = wait.expect("a retry hint");
    ensure!(
        wait > Duration::from_secs(19 * 60) && wait <= Duration::from_secs(20 * 60),
        "retry after {wait:?}"
    );
    // The refused account does not exist; existing ones still log in.
    let (code, _) = refusal(
        server
            .login("late@localhost")
            .await
            .map_err(|e| e.downcast::<ClientError>().expect("a client error")),
    );
    ensure!(code == pb::ErrorCode::Unauthenticated, "{code:?}");
    server.login("early0@localhost").await?;
    Ok(())
}

#[tokio::test]
async fn invite_only_registration_takes_one_use_per_account() -> Result<()> {
    let server = TestServer::start_with(Config {
        registration: Registration::Invite,
        ..Config::default()
    })
    .await?;
    let node = server.server.node();
    let (code, _) = refusal(register(&server, "uninvited", "").await);
    ensure!(code == pb::ErrorCode::InvalidInvite, "{code:?}");
    let (code, _) = refusal(register(&server, "guesser", "not-a-real-code").await);
    ensure!(code == pb::ErrorCode::InvalidInvite, "{code:?}");

    let (invite, issued) = admin::issue_invite(&node, 2, None, "the Meyers").await?;
    ensure!(issued.uses_left == 2);
    register(&server, "anna", &invite).await?;
    // A registration that fails for another reason gives its use back.
    let (code, _) = refusal(register(&server, "anna", &invite).await);
    ensure!(code == pb::ErrorCode::AddressTaken, "{code:?}");
    register(&server, "ben", &invite).await?;
    let (code, _) = refusal(register(&server, "carl", &invite).await);
    ensure!(code == pb::ErrorCode::InvalidInvite, "used up: {code:?}");

    // A revoked invite admits no one; an expired one neither.
    let (revoked, issued) = admin::issue_invite(&node, 5, None, "").await?;
    ensure!(node.store.revoke_invite(issued.id).await?);
    let (code, _) = refusal(register(&server, "dora", &revoked).await);
    ensure!(code == pb::ErrorCode::InvalidInvite, "revoked: {code:?}");
    let (expired, _) = admin::issue_invite(&node, 5, Some(Duration::ZERO), "").await?;
    let (code, _) = refusal(register(&server, "emil", &expired).await);
    ensure!(code == pb::ErrorCode::InvalidInvite, "expired: {code:?}");

    let parties: Vec<String> = node
        .store
        .parties()
        .await?
        .iter()
        .map(|p| p.address.to_string())
        .collect();
    ensure!(
        parties.contains(&"anna@localhost".into()) && parties.contains(&"ben@localhost".into()),
        "{parties:?}"
    );
    ensure!(
        !parties
            .iter()
            .any(|p| p.starts_with("carl") || p.starts_with("dora"))
    );
    Ok(())
}

#[tokio::test]
async fn a_party_sends_its_burst_then_its_rate() -> Result<()> {
    let server = TestServer::start_with(Config {
        sends_per_second_per_party: 10,
        send_burst_per_party: 5,
        ..Config::default()
    })
    .await?;
    let _agent = server.agent("alice").await?;
    let eager = server.register("eager").await?;
    // Opening the conversation counts as one send.
    let conversation = eager
        .create_conversation(&["support@localhost"], "many")
        .await?;
    for n in 0..4 {
        eager.send_text(&conversation.id, &format!("m{n}")).await?;
    }
    let refused = eager.send_text(&conversation.id, "one too many").await;
    let (code, wait) = refusal(refused);
    ensure!(code == pb::ErrorCode::RateLimited, "{code:?}");
    let wait = wait.expect("a retry hint");
    ensure!(wait <= Duration::from_millis(100), "retry after {wait:?}");
    // Others are not held back by it.
    let calm = server.register("calm").await?;
    let other = calm
        .create_conversation(&["support@localhost"], "calm")
        .await?;
    calm.send_text(&other.id, "hello").await?;
    // After the hinted wait, the same send goes through; the refused one
    // was never stored.
    tokio::time::sleep(wait).await;
    let sent = eager.send_text(&conversation.id, "one too many").await?;
    ensure!(sent.seq == 5, "the refused send took no seq: {}", sent.seq);
    Ok(())
}

/// Whether connecting as `address` is refused for holding too many
/// connections.
async fn refused_for_connections(server: &TestServer, address: &str) -> Result<bool> {
    match server.login(address).await {
        Ok(client) => {
            client.close().await;
            Ok(false)
        }
        Err(e) => match e.downcast::<ClientError>()? {
            ClientError::Refused {
                code: pb::ErrorCode::RateLimited,
                ..
            } => Ok(true),
            other => Err(other.into()),
        },
    }
}

#[tokio::test]
async fn connections_are_limited_per_account_and_per_source() -> Result<()> {
    let server = TestServer::start_with(Config {
        max_connections_per_account: 2,
        max_connections_per_source: 4,
        ..Config::default()
    })
    .await?;
    server.add_user("many").await?;
    server.add_user("other").await?;
    let first = server.login("many@localhost").await?;
    let _second = server.login("many@localhost").await?;
    ensure!(
        refused_for_connections(&server, "many@localhost").await?,
        "a third connection of the account was welcomed"
    );
    // Another account from the same address still gets in, up to the
    // address's four.
    let _third = server.login("other@localhost").await?;
    let _fourth = server.login("other@localhost").await?;
    ensure!(
        refused_for_connections(&server, "other@localhost").await?,
        "a fifth connection from the address was welcomed"
    );
    // A closed connection gives its places back once the server has seen
    // it close.
    first.close().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while refused_for_connections(&server, "many@localhost").await? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place was never given back"
        );
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[tokio::test]
async fn connections_that_never_say_hello_count_against_their_source() -> Result<()> {
    let server = TestServer::start_with(Config {
        max_connections_per_source: 3,
        ..Config::default()
    })
    .await?;
    server.add_user("late").await?;
    // Three connections that complete the QUIC handshake and stay silent.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(raw_connect(&server, kanal_proto::ALPN_CLIENT).await?);
    }
    ensure!(
        refused_for_connections(&server, "late@localhost").await?,
        "a login was welcomed beside three silent connections from its address"
    );
    // Once they are gone, the address gets in again.
    for connection in &silent {
        connection.close(0u32.into(), b"done");
    }
    for connection in silent {
        connection.closed().await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while refused_for_connections(&server, "late@localhost").await? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the silent connections' places were never given back"
        );
        tokio::task::yield_now().await;
    }
    Ok(())
}
