//! The example firmware (`firmware/examples/qemu`), the real Cortex-M3
//! binary under `qemu-system-arm -M lm3s6965evb`, against a running
//! server: its UART is bridged to the device gateway
//! (`kanal_firmware::adapters::bridge`, as `kanal-serial-bridge` does), it
//! opens a conversation with its diagnostics, an agent answers with quick
//! replies, and the firmware prints the answer from its next poll.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` target (`.ci/run`
//! installs both and sets `KANAL_REQUIRE_QEMU=1`, which makes their absence
//! a failure). Without them, and without that variable, the test says so
//! and passes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail, ensure};
use kanal_firmware::adapters::bridge;
use kanal_firmware::{DeviceConfig, DeviceSession};
use kanal_proto::pb;
use kanal_server::admin::{self, DeviceSpec};
use kanal_server::datadir;
use kanal_tests::{PATIENCE, TestServer, next_message, until_caught_up};
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const TARGET: &str = "thumbv7m-none-eabi";
/// Where the example reads its provisioning page (its `provision::PAGE`).
const PAGE: &str = "0x3f000";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/examples/qemu")
}

/// Builds the example firmware (a no-op when it is fresh); its ELF.
fn build_example() -> Result<PathBuf> {
    let dir = example_dir();
    let target_dir = dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "--target", TARGET])
        .output()
        .context("running cargo to build the example firmware")?;
    if !output.status.success() {
        bail!(
            "building firmware/examples/qemu failed (is the {TARGET} target installed? `rustup target add {TARGET}`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(target_dir.join(TARGET).join("release/kanal-example-qemu"))
}

/// Whether the emulator is here; `Err` when it must be and is not.
fn qemu_present() -> Result<bool> {
    let found = std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found && std::env::var_os("KANAL_REQUIRE_QEMU").is_some() {
        bail!("KANAL_REQUIRE_QEMU is set and qemu-system-arm is not installed");
    }
    Ok(found)
}

/// The next console line of the firmware that starts with `prefix`.
async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> Result<String> {
    let read = async {
        while let Some(line) = lines.next_line().await? {
            println!("firmware: {line}");
            if line.starts_with(prefix) {
                return Ok(line);
            }
            ensure!(!line.starts_with("kanal: panic"), "the firmware panicked");
        }
        bail!("the firmware's console closed before a line starting {prefix:?}")
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .with_context(|| format!("no console line starting {prefix:?} within {PATIENCE:?}"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qemu_firmware_opens_a_conversation_and_prints_the_agents_answer() -> Result<()> {
    if !qemu_present()? {
        println!(
            "skipped: qemu-system-arm is not installed (set KANAL_REQUIRE_QEMU=1 to fail instead)"
        );
        return Ok(());
    }
    let elf = tokio::task::spawn_blocking(build_example).await??;

    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;

    // Provisioning, as a factory does it: a key pair for the unit, its
    // public key registered, its secret (with the server's key and a fresh
    // RNG seed) written to the provisioning page.
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let config = DeviceConfig::new(secret, server.server.device_public_key());
    let public = DeviceSession::<OsRng, 1>::new(config, OsRng).public_key();
    let spec = DeviceSpec {
        serial: "WM-0001".into(),
        model: "WM 9".into(),
        key: public,
        inbox: datadir::DEFAULT_INBOX.into(),
        owner: None,
    };
    admin::add_device(&server.server.node(), spec).await?;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut page = b"KNP1".to_vec();
    page.extend_from_slice(&secret);
    page.extend_from_slice(&server.server.device_public_key());
    page.extend_from_slice(&seed);
    page.extend_from_slice(&300u32.to_le_bytes()); // poll every 300 ms
    page.extend_from_slice(&1u32.to_le_bytes()); // exit after one agent message
    let dir = tempfile::tempdir()?;
    let page_file = dir.path().join("provision.bin");
    std::fs::write(&page_file, &page)?;

    // The host end of the UART: QEMU connects, the bridge forwards.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let uart = listener.local_addr()?;
    let gateway = server.server.device_addr();
    let bridge = tokio::task::spawn_blocking(move || -> Result<bridge::BridgeReport> {
        let (line, _) = listener.accept()?;
        line.set_nodelay(true)?;
        let line_out = line.try_clone()?;
        Ok(bridge::run(line, line_out, gateway)?)
    });

    let mut qemu = Command::new("qemu-system-arm")
        .args(["-M", "lm3s6965evb", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-serial")
        .arg(format!("tcp:{uart}"))
        .arg("-device")
        .arg(format!("loader,file={},addr={PAGE}", page_file.display()))
        .arg("-kernel")
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting qemu-system-arm")?;
    let mut console = BufReader::new(qemu.stdout.take().context("QEMU's stdout")?).lines();

    let device = line_starting(&mut console, "kanal: device ").await?;
    assert_eq!(device, format!("kanal: device {}", hex(&public)));
    line_starting(&mut console, "kanal: opened conversation ").await?;

    // The agent sees the report with the firmware's diagnostics.
    let report = next_message(&mut ann_events).await?;
    assert_eq!(report.sender, "wm-0001@localhost");
    let body = report.body.clone().context("a body")?;
    assert_eq!(body.text(), Some("Filter clogged, error E42"));
    let diagnostics: Vec<(&str, &str)> = body
        .diagnostics()
        .iter()
        .map(|d| (d.key.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(diagnostics, [("err", "E42"), ("fw", "0.1.0")]);

    let prompt = pb::Body {
        kind: Some(pb::body::Kind::Prompt(pb::Prompt {
            text: "Replace the filter?".into(),
            replies: vec!["Yes".into(), "No".into()],
        })),
    };
    ann.send(&report.conversation, "answer-1", prompt).await?;
    assert_eq!(
        line_starting(&mut console, "kanal: agent: ").await?,
        "kanal: agent: Replace the filter?"
    );
    assert_eq!(
        line_starting(&mut console, "kanal:   [1]").await?,
        "kanal:   [1] Yes"
    );
    assert_eq!(
        line_starting(&mut console, "kanal:   [2]").await?,
        "kanal:   [2] No"
    );
    let measured = line_starting(&mut console, "kanal: 1 agent messages").await?;
    assert!(measured.contains("peak stack"), "{measured}");

    let status = tokio::time::timeout(PATIENCE, qemu.wait()).await??;
    assert!(
        status.success(),
        "the firmware exits successfully: {status}"
    );
    // QEMU gone, the line closed: the bridge reports what it carried.
    let carried = tokio::time::timeout(PATIENCE, bridge).await???;
    assert!(carried.up >= 2 && carried.down >= 2, "{carried:?}");
    assert_eq!(carried.dropped, 0, "no broken frames on the line");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
