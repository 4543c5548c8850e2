//! The README's service-desk walkthrough, run as written: the shell block
//! between its `desk walkthrough` markers, with `kanald` and `kanal` the
//! real command lines, against a real server process. What the script
//! prints is what the README promises: the queue, the transfer, the note
//! only agents see, the resolve's survey and its answer.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");
const KANAL: &str = env!("CARGO_BIN_EXE_kanal-under-test");

/// The walkthrough's shell block from the README.
fn walkthrough() -> Result<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let start = readme
        .find("<!-- desk walkthrough -->")
        .context("the README has no desk walkthrough")?;
    let end = readme[start..]
        .find("<!-- end desk walkthrough -->")
        .context("the walkthrough has no end marker")?;
    let block = &readme[start..start + end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(body, _)| body)
        .context("the walkthrough is not a sh block")?;
    Ok(body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_desk_walkthrough_runs_as_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let (_server, addr, fingerprint) = spawn_kanald(KANALD, &data, loopback(0)).await?;
    // `kanald` and `kanal` on the PATH are the builds under test.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin)?;
    std::os::unix::fs::symlink(KANALD, bin.join("kanald"))?;
    std::os::unix::fs::symlink(KANAL, bin.join("kanal"))?;
    let script = dir.path().join("walkthrough.sh");
    std::fs::write(&script, walkthrough()?)?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::time::timeout(
        PATIENCE * 3,
        tokio::process::Command::new("bash")
            .arg(&script)
            .env("PATH", path)
            .env("KANALD_DATA_DIR", &data)
            .env("KANAL_SERVER", addr.to_string())
            .env("KANAL_PIN", &fingerprint)
            .env("WALK", dir.path().join("walk"))
            .env_remove("KANAL_USER")
            .env_remove("KANAL_PASSWORD")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the walkthrough did not finish in time")??;
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the walkthrough failed ({}):\n{out}\n{err}",
        output.status
    );
    let lines: Vec<&str> = out.lines().collect();
    let has = |what: &str| lines.iter().any(|l| l.contains(what));
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();

    // Ann's queue: three unowned tickets, one per customer.
    ensure!(
        count(" open normal unowned (support@localhost)") >= 3,
        "{out}"
    );
    // The canned greeting, its placeholders filled in.
    ensure!(
        has("canned response greeting of support@localhost set"),
        "{out}"
    );
    // Bob's queue after the transfer: the heater, for team tier2.
    ensure!(
        has(" open normal unowned (support@localhost) team tier2"),
        "{out}"
    );
    // Carla's history: the agent's answer and the survey, never the note.
    ensure!(
        has("ann@localhost: Please check the hose behind the drum."),
        "{out}"
    );
    ensure!(
        has("#3 ") && has("support@localhost: How did we do?") && has("[rating 1-5, comment]"),
        "the survey is message #3 from the inbox:\n{out}"
    );
    let carla_history_end = lines
        .iter()
        .position(|l| l.contains("[rating 1-5, comment]"))
        .context("no survey")?;
    ensure!(
        !lines[..carla_history_end]
            .iter()
            .any(|l| l.contains("premium plan")),
        "the customer saw the note:\n{out}"
    );
    // Ann's history: Carla's answer, in the server's words.
    ensure!(has("carla@localhost: 5/5"), "{out}");
    ensure!(
        has("ann@localhost: Hello emil, ann here: we are on it."),
        "{out}"
    );
    ensure!(has("Quick help (answers #3)"), "{out}");
    // The desk log: the note, the transfer, the resolve.
    ensure!(
        has("note by ann@localhost: premium plan, offer a visit"),
        "{out}"
    );
    ensure!(has("open -> resolved by ann@localhost"), "{out}");
    // Bob's own tickets, the lines before the report: the router Ann gave
    // him and the heater he took.
    let report = lines
        .iter()
        .position(|l| l.starts_with("support@localhost, "))
        .context("no report")?;
    let bobs = lines[report.saturating_sub(2)..report]
        .iter()
        .filter(|l| l.contains(" open normal bob@localhost (support@localhost)"))
        .count();
    ensure!(bobs == 2, "bob's tickets:\n{out}");
    // The report: three tickets opened, four assignments (the heater
    // twice), one resolution; Ann answered two customers and resolved the
    // washer, rated five stars; Bob owns two tickets, nobody waits on Ann.
    let row = |who: &str| -> Vec<&str> {
        lines[report..]
            .iter()
            .find(|l| l.trim_start().starts_with(who))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default()
    };
    let inbox = row("inbox ");
    ensure!(inbox.get(1..5) == Some(&["3", "4", "1", "2"][..]), "{out}");
    let ann = row("ann@localhost ");
    ensure!(ann.get(1..5) == Some(&["-", "2", "1", "0"][..]), "{out}");
    ensure!(
        ann.get(5..)
            .is_some_and(|rest| rest.join(" ").ends_with("100% of 1")),
        "ann's CSAT:\n{out}"
    );
    let bob = row("bob@localhost ");
    ensure!(bob.get(1..5) == Some(&["-", "2", "0", "2"][..]), "{out}");
    ensure!(
        has("CSAT stars: 1 rated, 1 satisfied, 0 dissatisfied"),
        "{out}"
    );
    Ok(())
}
