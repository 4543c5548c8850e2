//! The service desk over real QUIC and SQLite: an inbox with a desk routes
//! its conversations to its connected agents in turn, an agent's note
//! reaches the other agents and never the customer, and a customer cannot
//! use the desk.

use kanal_proto::pb;
use kanal_server::admin;
use kanal_server::model::Routing;
use kanal_tests::*;

fn ticket(kind: pb::response::Kind) -> pb::Ticket {
    match kind {
        pb::response::Kind::Ticket(ticket) => ticket,
        other => panic!("expected a Ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn conversations_go_to_connected_agents_in_turn_and_notes_stay_with_them()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    admin::set_up_desk(&server.server.node(), "support", Routing::RoundRobin).await?;
    // Connected agents are online.
    let alice = server.agent("alice").await?;
    let bruno = server.agent("bruno").await?;
    let mut bruno_events = bruno.subscribe(0).await?;
    until_caught_up(&mut bruno_events).await?;

    let carla = server.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let first = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let dora = server.register("dora").await?;
    let second = dora
        .create_conversation(&["support@localhost"], "heater")
        .await?;

    let get = |id: &str| {
        pb::request::Kind::GetTicket(pb::GetTicket {
            conversation: id.to_owned(),
        })
    };
    let one = ticket(alice.request(get(&first.id)).await?);
    let two = ticket(alice.request(get(&second.id)).await?);
    let mut owners = [one.owner.clone(), two.owner.clone()];
    owners.sort();
    assert_eq!(
        owners,
        ["alice@localhost", "bruno@localhost"],
        "one each, in turn"
    );
    assert_eq!(one.status, pb::TicketStatus::Open as i32);

    // A note: bruno receives it as a desk event; carla never does.
    let added = alice
        .request(pb::request::Kind::AddNote(pb::AddNote {
            conversation: first.id.clone(),
            client_note_id: "n1".into(),
            text: "premium plan, call back".into(),
        }))
        .await?;
    let pb::response::Kind::NoteAdded(added) = added else {
        panic!("expected NoteAdded, got {added:?}");
    };
    let note = loop {
        if let Some(pb::event::Kind::Desk(entry)) = next_stored(&mut bruno_events).await?.kind
            && entry.dseq == added.dseq
        {
            break entry;
        }
    };
    assert_eq!(note.actor, "alice@localhost");
    assert_eq!(
        note.kind,
        Some(pb::desk_event::Kind::Note("premium plan, call back".into()))
    );
    // Carla's log: her conversation and her message, nothing of the desk
    // in between.
    carla.send_text(&first.id, "any news?").await?;
    loop {
        let event = next_stored(&mut carla_events).await?;
        match event.kind {
            Some(pb::event::Kind::Message(message)) => {
                assert_eq!(message.seq, 1);
                break;
            }
            Some(pb::event::Kind::Desk(entry)) => panic!("the customer got {entry:?}"),
            _ => {}
        }
    }

    // The customer may not use the desk.
    let refused = carla.request(get(&first.id)).await;
    assert_refused(refused, pb::ErrorCode::NotAnAgent)?;

    // Resolving is a change like any other.
    let resolved = ticket(
        alice
            .request(pb::request::Kind::SetStatus(pb::SetStatus {
                conversation: first.id.clone(),
                status: pb::TicketStatus::Resolved as i32,
                snooze_until_ms: 0,
            }))
            .await?,
    );
    assert_eq!(resolved.status, pb::TicketStatus::Resolved as i32);
    assert!(resolved.resolved_at_ms > 0);
    Ok(())
}
