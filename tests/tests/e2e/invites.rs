//! `kanald invite add|list|revoke`, as an operator runs them, with and
//! without a server running: each code admits as many customers as it
//! allows, and a revoked one admits no one.

use anyhow::{Context as _, Result, ensure};
use kanal_client::{Client, ClientConfig, ClientError, Credentials, pb};
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// Issues an invite with `args`; returns the code it printed.
async fn issue(data: &std::path::Path, args: &[&str]) -> Result<String> {
    let mut command = vec!["invite", "add"];
    command.extend_from_slice(args);
    let printed = kanald_output(KANALD, data, &command).await?;
    Ok(printed.trim().to_owned())
}

/// Registers `local` with `invite`; the refusal's code if refused.
async fn register(
    config: &ClientConfig,
    local: &str,
    invite: &str,
) -> Result<Option<pb::ErrorCode>> {
    let credentials = Credentials::Register {
        local: local.into(),
        password: PASSWORD.into(),
        display_name: String::new(),
        invite: invite.into(),
    };
    match Client::connect(config.clone(), credentials).await {
        Ok(client) => {
            client.close().await;
            Ok(None)
        }
        Err(ClientError::Refused { code, .. }) => Ok(Some(code)),
        Err(other) => Err(other.into()),
    }
}

#[tokio::test]
async fn operator_invites_admit_customers_until_used_up_or_revoked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    run_kanald(KANALD, &data, &["init"]).await?;
    set_config_key(&data, "registration", "\"invite\"")?;
    // One code issued with no server running, the others through it.
    let offline = issue(&data, &["--note", "issued offline"]).await?;
    let (_server, addr, fingerprint) = spawn_kanald(KANALD, &data, loopback(0)).await?;
    let config = config_for(addr, &fingerprint);
    let twice = issue(&data, &["--uses", "2", "--days", "7"]).await?;
    let revoked = issue(&data, &["--note", "to revoke"]).await?;
    ensure!(offline != twice && twice != revoked, "codes repeat");

    let listed = kanald_output(KANALD, &data, &["invite", "list"]).await?;
    ensure!(listed.lines().count() == 3, "{listed}");
    let revoked_id = listed
        .lines()
        .find(|line| line.contains("to revoke"))
        .and_then(|line| line.split_whitespace().next())
        .context("the invite to revoke is listed")?;
    kanald_output(KANALD, &data, &["invite", "revoke", revoked_id]).await?;

    ensure!(register(&config, "nobody", "").await? == Some(pb::ErrorCode::InvalidInvite));
    ensure!(register(&config, "olga", &offline).await?.is_none());
    ensure!(register(&config, "otto", &offline).await? == Some(pb::ErrorCode::InvalidInvite));
    ensure!(register(&config, "tina", &twice).await?.is_none());
    ensure!(register(&config, "tom", &twice).await?.is_none());
    ensure!(register(&config, "tess", &twice).await? == Some(pb::ErrorCode::InvalidInvite));
    ensure!(register(&config, "rita", &revoked).await? == Some(pb::ErrorCode::InvalidInvite));

    // Used up or revoked, none is listed any more.
    let listed = kanald_output(KANALD, &data, &["invite", "list"]).await?;
    ensure!(listed.trim().is_empty(), "{listed}");
    Ok(())
}
