//! A client that floods typing datagrams gets a few a second relayed and
//! the rest dropped, with no task or database read per datagram, while a
//! bystander pair goes on talking undisturbed.

use std::time::Instant;

use anyhow::{Result, ensure};
use kanal_client::ClientEvent;
use kanal_tests::*;

/// Datagrams the flooding client sends.
const FLOOD: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typing_flood_is_rate_limited_and_harms_no_one_else() -> Result<()> {
    let server = TestServer::start().await?;
    let agent = server.agent("alice").await?;
    let mut agent_events = agent.subscribe(0).await?;
    until_caught_up(&mut agent_events).await?;
    let flooder = server.register("flooder").await?;
    let noisy = flooder
        .create_conversation(&["support@localhost"], "noise")
        .await?;
    let calm = server.register("calm").await?;
    let quiet = calm
        .create_conversation(&["support@localhost"], "washer")
        .await?;

    let started = Instant::now();
    for _ in 0..FLOOD {
        // Datagrams may be dropped on the way; that is what they are for.
        let _ = flooder.typing(&noisy.id, true);
    }
    // The bystander's messages all arrive, in order, through the flood.
    let mut typed = 0_u64;
    let mut received = Vec::new();
    for n in 0..20 {
        calm.send_text(&quiet.id, &format!("still here {n}"))
            .await?;
    }
    while received.len() < 20 {
        match next_event(&mut agent_events).await? {
            ClientEvent::Typing(typing) => {
                ensure!(typing.from == "flooder@localhost");
                typed += 1;
            }
            ClientEvent::Event(event) => {
                if let Some(kanal_proto::pb::event::Kind::Message(m)) = event.kind
                    && m.conversation == quiet.id
                {
                    received.push(text_of(&m).to_owned());
                }
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected: Vec<String> = (0..20).map(|n| format!("still here {n}")).collect();
    ensure!(
        received == expected,
        "the bystander lost messages: {received:?}"
    );
    ensure!(typed >= 1, "typing is no longer relayed at all");
    // A burst of 8, then 4 a second; one spare second for scheduling.
    let allowed = 8.0 + 4.0 * (elapsed + 1.0);
    ensure!(
        (typed as f64) <= allowed,
        "{typed} of {FLOOD} typing datagrams relayed in {elapsed:.2} s (at most {allowed:.0})"
    );
    assert_memory_bounded("typing flood")?;
    Ok(())
}
