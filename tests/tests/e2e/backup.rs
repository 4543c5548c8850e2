//! `kanald backup` copies a running server's database consistently, and the
//! copy restores into a server that serves everything committed before it.
//! On PostgreSQL it refuses, pointing to `pg_dump`.

use std::sync::Arc;

use anyhow::{Result, ensure};
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_what_was_committed() -> Result<()> {
    let server = TestServer::start().await?;
    let carla = server.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    for n in 1..=3 {
        carla
            .send_text(&conversation.id, &format!("before {n}"))
            .await?;
    }
    let backups = tempfile::tempdir()?;
    let copy = backups.path().join("kanal-backup.db");
    if server.database.is_some() {
        let stderr =
            refused_kanald(KANALD, server.path(), &["backup", &copy.to_string_lossy()]).await?;
        ensure!(stderr.contains("pg_dump"), "unclear refusal: {stderr}");
        ensure!(!copy.exists(), "a refused backup wrote a file");
        return Ok(());
    }
    run_kanald(KANALD, server.path(), &["backup", &copy.to_string_lossy()]).await?;
    carla.send_text(&conversation.id, "after").await?;

    // A backup never overwrites a file.
    let stderr =
        refused_kanald(KANALD, server.path(), &["backup", &copy.to_string_lossy()]).await?;
    ensure!(
        stderr.contains("exists already"),
        "unclear refusal: {stderr}"
    );

    // Restore: the same configuration and certificate, the copy as database.
    let restored = Arc::new(tempfile::tempdir()?);
    for file in ["kanald.toml", "cert.pem", "key.pem"] {
        std::fs::copy(server.path().join(file), restored.path().join(file))?;
    }
    std::fs::copy(&copy, restored.path().join("kanal.db"))?;
    let second = TestServer::start_in(restored, None, loopback(0)).await?;
    let carla_again = second.login("carla@localhost").await?;
    let page = carla_again.history(&conversation.id, 0, 10).await?;
    let texts: Vec<&str> = page.messages.iter().map(text_of).collect();
    ensure!(
        texts == ["before 1", "before 2", "before 3"],
        "restored {texts:?}"
    );
    Ok(())
}
