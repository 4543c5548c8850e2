//! The service desk over real QUIC and SQLite, through the SDK's desk
//! methods: an inbox with a desk routes its conversations to its connected
//! agents in turn, an agent's note reaches the other agents and never the
//! customer, a customer cannot use the desk, an away agent stays away
//! across a server restart, the desk's refusals are the ones PROTOCOL.md
//! §15.4 documents, an operator's per-agent capacity drains the queue, a
//! device customer rates a resolution with thumbs, and reports (§15.8)
//! count what the desk did, per agent, the same after a restart.

use kanal_client::{ClientEvent, TicketFilter};
use kanal_proto::pb;
use kanal_server::admin;
use kanal_server::model::Routing;
use kanal_tests::*;

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

    let one = alice.ticket(&first.id).await?;
    let two = alice.ticket(&second.id).await?;
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
        .add_note_with_id(&first.id, "n1", "premium plan, call back")
        .await?;
    let again = alice
        .add_note_with_id(&first.id, "n1", "premium plan, call back")
        .await?;
    assert!(again.duplicate && again.dseq == added.dseq, "{again:?}");
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
    assert_refused(carla.ticket(&first.id).await, pb::ErrorCode::NotAnAgent)?;
    assert_refused(
        carla.add_note(&first.id, "let me in").await,
        pb::ErrorCode::NotAnAgent,
    )?;

    // Resolving is a change like any other.
    let resolved = alice
        .set_status(&first.id, pb::TicketStatus::Resolved)
        .await?;
    assert_eq!(resolved.status, pb::TicketStatus::Resolved as i32);
    assert!(resolved.resolved_at_ms > 0);
    Ok(())
}

#[tokio::test]
async fn an_away_agent_keeps_its_tickets_takes_no_new_ones_and_stays_away_after_a_restart()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    admin::set_up_desk(&server.server.node(), "support", Routing::RoundRobin).await?;
    let alice = server.agent("alice").await?;
    let bruno = server.agent("bruno").await?;
    let carla = server.register("carla").await?;
    let first = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let first_owner = alice.ticket(&first.id).await?.owner;
    let (away, other) = if first_owner == "alice@localhost" {
        (&alice, &bruno)
    } else {
        (&bruno, &alice)
    };
    let away_address = away.party().address;
    let other_address = other.party().address;
    away.set_availability(pb::Availability::Away).await?;
    // Away keeps what it has and takes nothing new, in turn or not.
    for subject in ["heater", "router"] {
        let next = carla
            .create_conversation(&["support@localhost"], subject)
            .await?;
        assert_eq!(other.ticket(&next.id).await?.owner, other_address);
    }
    assert_eq!(away.ticket(&first.id).await?.owner, away_address);

    // Both clients come back after a restart: the away one says so again
    // before its event stream reports the reconnection.
    let mut away_events = away.subscribe(0).await?;
    let mut other_events = other.subscribe(0).await?;
    until_caught_up(&mut away_events).await?;
    until_caught_up(&mut other_events).await?;
    let server = server.restart().await?;
    for events in [&mut away_events, &mut other_events] {
        while !matches!(next_event(events).await?, ClientEvent::Reconnected) {}
    }
    let dora = server.register("dora").await?;
    let after = dora
        .create_conversation(&["support@localhost"], "oven")
        .await?;
    assert_eq!(
        other.ticket(&after.id).await?.owner,
        other_address,
        "the away agent is still away after reconnecting"
    );

    // Back online, it takes the next one (round robin: its turn).
    away.set_availability(pb::Availability::Online).await?;
    let last = dora
        .create_conversation(&["support@localhost"], "fridge")
        .await?;
    assert_eq!(away.ticket(&last.id).await?.owner, away_address);

    let mine = away
        .tickets(&TicketFilter {
            owner: away_address.clone(),
            ..TicketFilter::default()
        })
        .await?;
    let mut ids: Vec<_> = mine
        .tickets
        .iter()
        .map(|t| t.conversation.clone())
        .collect();
    ids.sort();
    let mut expected = vec![first.id.clone(), last.id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "the owner filter lists its tickets only");
    Ok(())
}

#[tokio::test]
async fn desk_changes_are_logged_once_and_bad_ones_are_refused_with_documented_codes()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    admin::set_up_desk(&server.server.node(), "support", Routing::Manual).await?;
    let alice = server.agent("alice").await?;
    let carla = server.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let id = conversation.id.as_str();

    let queue = alice
        .tickets(&TicketFilter {
            unowned: true,
            ..TicketFilter::default()
        })
        .await?;
    assert_eq!(queue.tickets.len(), 1, "manual routing leaves it queued");
    let taken = alice.assign(id, "alice@localhost").await?;
    assert_eq!(taken.owner, "alice@localhost");
    let labelled = alice.set_labels(id, &["vip", "billing"], &[]).await?;
    assert_eq!(labelled.labels, ["billing", "vip"], "sorted");
    let urgent = alice.set_priority(id, pb::Priority::Urgent).await?;
    assert_eq!(urgent.priority, pb::Priority::Urgent as i32);
    // The same change again succeeds and logs nothing.
    let same = alice.set_priority(id, pb::Priority::Urgent).await?;
    assert_eq!(same.last_dseq, urgent.last_dseq);

    let too_long = "x".repeat(65);
    assert_refused(
        alice.set_labels(id, &[&too_long], &[]).await,
        pb::ErrorCode::BadRequest,
    )?;
    let far = (367 * 86_400_000) + now_ms();
    assert_refused(alice.snooze(id, far).await, pb::ErrorCode::BadRequest)?;
    assert_refused(
        alice.snooze(id, now_ms() - 1_000).await,
        pb::ErrorCode::InvalidState,
    )?;
    assert_refused(
        alice.assign(id, "carla@localhost").await,
        pb::ErrorCode::InvalidState,
    )?;
    assert_refused(
        alice.assign(id, "nobody@localhost").await,
        pb::ErrorCode::NotFound,
    )?;
    assert_refused(
        alice.transfer(id, "tier2").await,
        pb::ErrorCode::InvalidState,
    )?;
    assert_refused(
        alice.ticket("localhost/nosuchconversation").await,
        pb::ErrorCode::NotFound,
    )?;
    // Refusals changed nothing.
    let ticket = alice.ticket(id).await?;
    assert_eq!(ticket.last_dseq, urgent.last_dseq);

    let snoozed = alice.snooze(id, now_ms() + 3_600_000).await?;
    assert_eq!(snoozed.status, pb::TicketStatus::Snoozed as i32);
    let back = alice.unassign(id).await?;
    assert!(back.owner.is_empty());

    // The desk log tells the whole story, oldest first, and pages.
    let log = alice.desk_history(id, 0, 50).await?;
    let kinds: Vec<&str> = log
        .events
        .iter()
        .map(|entry| match &entry.kind {
            Some(pb::desk_event::Kind::Assigned(_)) => "assigned",
            Some(pb::desk_event::Kind::Queued(_)) => "queued",
            Some(pb::desk_event::Kind::Labels(_)) => "labels",
            Some(pb::desk_event::Kind::Priority(_)) => "priority",
            Some(pb::desk_event::Kind::Status(_)) => "status",
            other => panic!("unexpected desk entry {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "queued", "assigned", "labels", "priority", "status", "queued"
        ],
        "back in the queue is one `queued` entry: its owner is nobody"
    );
    let dseqs: Vec<u64> = log.events.iter().map(|e| e.dseq).collect();
    assert_eq!(dseqs, (1..=6).collect::<Vec<_>>(), "gapless");
    let Some(pb::desk_event::Kind::Queued(requeued)) = &log.events[5].kind else {
        unreachable!("checked above");
    };
    assert_eq!(
        requeued.reason,
        pb::QueueReason::Unspecified as i32,
        "given back by hand"
    );
    let older = alice.desk_history(id, 3, 50).await?;
    assert_eq!(older.events.len(), 2);
    Ok(())
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_profile_shows_its_conversations_with_the_desk_and_its_devices_only()
-> anyhow::Result<()> {
    use kanal_server::admin::DeviceSpec;
    use kanal_tests::device::TestDevice;

    let server = TestServer::start().await?;
    admin::set_up_desk(&server.server.node(), "support", Routing::Manual).await?;
    let ann = server.agent("ann").await?;
    let carla = server.register("carla").await?;
    let dora = server.register("dora").await?;
    let washer = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let private = carla
        .create_conversation(&["dora@localhost"], "lunch")
        .await?;
    let heater = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    carla.send_text(&washer.id, "it leaks").await?;
    dora.send_text(&private.id, "noon?").await?;
    let (mut device, key) = TestDevice::new(&server).await?;
    admin::add_device(
        &server.server.node(),
        DeviceSpec {
            serial: "HP-0003".into(),
            model: "HP 300".into(),
            key,
            inbox: kanal_server::datadir::DEFAULT_INBOX.into(),
            owner: Some("carla".into()),
        },
    )
    .await?;
    device.open("filter", "Filter clogged", &[]).await?;

    let profile = ann.contact("carla@localhost", 0).await?;
    assert_eq!(
        profile.party.as_ref().map(|p| p.address.as_str()),
        Some("carla@localhost")
    );
    let ids: Vec<&str> = profile
        .conversations
        .iter()
        .filter_map(|c| c.conversation.as_ref().map(|v| v.id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [washer.id.as_str(), heater.id.as_str()],
        "most recently active first; the private one never"
    );
    assert!(
        profile.conversations.iter().all(|c| c.ticket.is_some()),
        "each with its ticket"
    );
    assert_eq!(profile.devices.len(), 1);
    assert_eq!(profile.devices[0].serial, "HP-0003");
    assert_eq!(profile.devices[0].conversations.len(), 1);
    assert!(!profile.has_more);

    assert_refused(
        carla.contact("dora@localhost", 0).await,
        pb::ErrorCode::NotAnAgent,
    )?;
    assert_refused(
        ann.contact("nobody@localhost", 0).await,
        pb::ErrorCode::NotFound,
    )?;
    Ok(())
}

#[tokio::test]
async fn a_report_counts_what_the_desk_did_per_agent_and_reads_the_same_after_a_restart()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    admin::set_up_desk(&server.server.node(), "support", Routing::Manual).await?;
    let alice = server.agent("alice").await?;
    let _bruno = server.agent("bruno").await?;
    let carla = server.register("carla").await?;
    let start = now_ms() - 1;
    let washer = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let heater = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    carla.send_text(&heater.id, "it is loud").await?;
    // Alice takes the washer, answers and resolves it; the heater waits.
    alice.assign(&washer.id, "alice@localhost").await?;
    alice.send_text(&washer.id, "Check the hose.").await?;
    alice
        .set_status(&washer.id, pb::TicketStatus::Resolved)
        .await?;

    let check = |report: pb::Report| -> anyhow::Result<()> {
        let [inbox] = &report.inboxes[..] else {
            anyhow::bail!("one inbox: {report:?}");
        };
        assert_eq!(inbox.inbox, "support@localhost");
        assert!(inbox.complete);
        let figures = inbox.figures.clone().unwrap_or_default();
        assert_eq!(
            (figures.opened, figures.assigned, figures.resolved),
            (2, 1, 1)
        );
        let first = figures.first_response.unwrap_or_default();
        assert_eq!(first.count, 1);
        assert!(first.median_ms >= 0 && first.business_median_ms >= 0);
        assert_eq!(figures.resolution.unwrap_or_default().count, 1);
        assert!(figures.sla.is_empty(), "no SLA targets set");
        let agents: Vec<(&str, u32, u32)> = inbox
            .agents
            .iter()
            .map(|a| {
                let f = a.figures.clone().unwrap_or_default();
                (
                    a.agent.as_str(),
                    f.resolved,
                    f.first_response.unwrap_or_default().count,
                )
            })
            .collect();
        assert_eq!(
            agents,
            [("alice@localhost", 1, 1), ("bruno@localhost", 0, 0)],
            "every agent, idle ones too, credited with its own work"
        );
        let backlog = inbox.backlog.unwrap_or_default();
        assert_eq!(
            (backlog.open, backlog.unowned, backlog.waiting),
            (1, 1, 1),
            "the heater waits"
        );
        assert!(backlog.oldest_waiting_since_ms >= start);
        Ok(())
    };
    check(alice.report("", start, 0).await?)?;
    check(
        alice
            .report("support@localhost", start, now_ms() + 1)
            .await?,
    )?;
    // An earlier period saw nothing.
    let before = alice.report("", start - 3_600_000, start).await?;
    let figures = before.inboxes[0].figures.clone().unwrap_or_default();
    assert_eq!((figures.opened, figures.resolved), (0, 0));

    // The documented refusals.
    assert_refused(carla.report("", start, 0).await, pb::ErrorCode::NotAnAgent)?;
    assert_refused(
        alice.report("", start, start).await,
        pb::ErrorCode::BadRequest,
    )?;
    assert_refused(
        alice.report("", start - 367 * 86_400_000, start).await,
        pb::ErrorCode::BadRequest,
    )?;
    assert_refused(
        alice.report("nobody@localhost", start, 0).await,
        pb::ErrorCode::NotFound,
    )?;

    // The figures come from the store: a restarted server reports the same.
    let server = server.restart().await?;
    let alice = server.login("alice@localhost").await?;
    check(alice.report("", start, 0).await?)?;
    Ok(())
}

#[tokio::test]
async fn an_operator_sets_an_agents_capacity_and_a_raised_one_takes_from_the_queue_at_once()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    // The node handle goes before the restart, as an operator's would.
    let node = server.server.node();
    admin::set_up_desk(&node, "support", Routing::RoundRobin).await?;
    let alice = server.agent("alice").await?;
    let _bruno = server.agent("bruno").await?;
    for agent in ["alice", "bruno"] {
        admin::set_capacity(&node, "support", agent, Some(0)).await?;
    }
    let carla = server.register("carla").await?;
    let washer = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let waiting = alice.ticket(&washer.id).await?;
    assert!(
        waiting.owner.is_empty() && waiting.queued_at_ms > 0,
        "{waiting:?}"
    );
    // Raising alice's capacity hands her the waiting conversation.
    let raised = admin::set_capacity(&node, "support", "alice", Some(1)).await?;
    assert_eq!(raised.address.to_string(), "alice@localhost");
    assert_eq!(alice.ticket(&washer.id).await?.owner, "alice@localhost");
    // Full now: the next one waits, also after a restart (the capacity
    // is stored with her seat).
    drop((alice, carla, node));
    let server = server.restart().await?;
    let alice = server.login("alice@localhost").await?;
    let carla = server.login("carla@localhost").await?;
    let heater = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    assert!(alice.ticket(&heater.id).await?.owner.is_empty());
    // Back to the inbox's capacity (none): she takes it.
    admin::set_capacity(&server.server.node(), "support", "alice", None).await?;
    assert_eq!(alice.ticket(&heater.id).await?.owner, "alice@localhost");
    // What the operator cannot do, named.
    let refused = admin::set_capacity(&server.server.node(), "support", "carla", Some(3))
        .await
        .expect_err("carla is no agent");
    assert!(
        refused
            .to_string()
            .contains("does not answer for support@localhost"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_customer_is_asked_thumbs_on_resolve_and_its_pick_is_reported()
-> anyhow::Result<()> {
    use kanal_server::admin::DeviceSpec;
    use kanal_tests::device::TestDevice;

    const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    // The operator asks stars; a device's customer is asked thumbs.
    run_kanald(
        KANALD,
        server.path(),
        &[
            "inbox",
            "desk",
            "support",
            "--routing",
            "manual",
            "--csat",
            "stars",
        ],
    )
    .await?;
    let (mut device, key) = TestDevice::new(&server).await?;
    admin::add_device(
        &server.server.node(),
        DeviceSpec {
            serial: "WM-0007".into(),
            model: "WM 9".into(),
            key,
            inbox: "support".into(),
            owner: None,
        },
    )
    .await?;
    let start = now_ms() - 1;
    let conversation = device.open("leak", "Water on the floor", &[]).await?;
    let report = next_message(&mut ann_events).await?;
    let id = report.conversation.clone();
    ann.assign(&id, "ann@localhost").await?;
    ann.send_text(&id, "Close the tap, a technician comes at 10.")
        .await?;
    let (_, _, answer_text, _) = device.next_mail_with_id().await?;
    assert_eq!(answer_text, "Close the tap, a technician comes at 10.");
    ann.set_status(&id, pb::TicketStatus::Resolved).await?;

    let (survey, to, text, replies) = device.next_mail_with_id().await?;
    assert_eq!(
        (to, text.as_str()),
        (conversation, "Did we solve your problem?")
    );
    assert_eq!(replies.len(), 2, "thumbs up, thumbs down: {replies:?}");
    device
        .append(
            conversation,
            &replies[0],
            Some(kanal_firmware::Choice {
                message: survey,
                index: 0,
            }),
        )
        .await?;
    let rating = loop {
        if let Some(pb::event::Kind::Desk(entry)) = next_stored(&mut ann_events).await?.kind
            && let Some(pb::desk_event::Kind::Rating(rating)) = entry.kind
        {
            break rating;
        }
    };
    assert_eq!(
        (rating.scale, rating.score, rating.resolved_by.as_str()),
        (pb::RatingScale::Thumbs as i32, 1, "ann@localhost")
    );
    let ticket = ann.ticket(&id).await?;
    assert_eq!(
        ticket.status,
        pb::TicketStatus::Resolved as i32,
        "the pick reopens nothing"
    );
    let report = ann.report("support@localhost", start, 0).await?;
    let figures = report.inboxes[0].figures.clone().unwrap_or_default();
    let [csat] = &figures.csat[..] else {
        anyhow::bail!("one scale: {figures:?}");
    };
    assert_eq!(csat.scale, pb::RatingScale::Thumbs as i32);
    assert_eq!(
        (csat.ratings, csat.satisfied, csat.scores.clone()),
        (1, 1, vec![0, 1])
    );
    Ok(())
}

#[tokio::test]
async fn setting_a_desk_up_again_keeps_its_teams_unless_it_names_new_ones() -> anyhow::Result<()> {
    const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let _bob = server.agent("bob").await?;
    let desk = |args: &[&str]| {
        let mut all = vec!["inbox", "desk", "support", "--routing", "manual"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_kanald(KANALD, server.path(), &args).await
    };
    run(desk(&["--team", "tier2=bob"])).await?;
    // Again, with other settings and no --team: tier2 is still there, and
    // a breach may escalate to it.
    run(desk(&[
        "--first-response-mins",
        "30",
        "--escalate-to-team",
        "tier2",
    ]))
    .await?;
    let carla = server.register("carla").await?;
    let washer = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    let moved = ann.transfer(&washer.id, "tier2").await?;
    assert_eq!(moved.team, "tier2");
    // Naming teams replaces them: tier2 is gone, and escalating to it is
    // refused with the key that names it.
    run(desk(&["--team", "billing=ann"])).await?;
    let heater = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    assert_refused(
        ann.transfer(&heater.id, "tier2").await,
        pb::ErrorCode::InvalidState,
    )?;
    let args = desk(&["--escalate-to-team", "tier2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = refused_kanald(KANALD, server.path(), &args).await?;
    assert!(refused.contains("--escalate-to-team tier2"), "{refused}");
    Ok(())
}
