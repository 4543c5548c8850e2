use super::*;

const MIN: i64 = 60_000;

fn entry(conversation: &str, dseq: u64, at_ms: i64, actor: &str) -> pb::DeskEvent {
    pb::DeskEvent {
        conversation: conversation.into(),
        dseq,
        at_ms,
        actor: actor.into(),
        kind: None,
    }
}

fn with(mut e: pb::DeskEvent, kind: pb::desk_event::Kind) -> pb::DeskEvent {
    e.kind = Some(kind);
    e
}

fn assigned(c: &str, dseq: u64, at: i64, owner: &str) -> pb::DeskEvent {
    with(
        entry(c, dseq, at, ""),
        pb::desk_event::Kind::Assigned(pb::DeskAssigned {
            owner: owner.into(),
            bot: false,
        }),
    )
}

/// A target met by `by` at `at`: (when it started, business ms it took).
fn met(
    c: &str,
    (dseq, at): (u64, i64),
    by: &str,
    target: pb::SlaTarget,
    (started, business): (i64, i64),
    in_time: bool,
) -> pb::DeskEvent {
    with(
        entry(c, dseq, at, by),
        pb::desk_event::Kind::Sla(pb::DeskSla {
            target: target as i32,
            alert: pb::SlaAlert::Met as i32,
            in_time,
            business_ms: business,
            started_at_ms: started,
        }),
    )
}

fn breach(c: &str, dseq: u64, at: i64, target: pb::SlaTarget) -> pb::DeskEvent {
    with(
        entry(c, dseq, at, ""),
        pb::desk_event::Kind::Sla(pb::DeskSla {
            target: target as i32,
            alert: pb::SlaAlert::Breach as i32,
            ..Default::default()
        }),
    )
}

fn status(
    c: &str,
    dseq: u64,
    at: i64,
    by: &str,
    from: pb::TicketStatus,
    to: pb::TicketStatus,
) -> pb::DeskEvent {
    with(
        entry(c, dseq, at, by),
        pb::desk_event::Kind::Status(pb::DeskStatus {
            from: from as i32,
            to: to as i32,
            snoozed_until_ms: 0,
        }),
    )
}

fn rating(
    c: &str,
    dseq: u64,
    at: i64,
    resolution: u64,
    by: &str,
    scale: pb::RatingScale,
    score: u32,
) -> pb::DeskEvent {
    with(
        entry(c, dseq, at, "alice@kanal.test"),
        pb::desk_event::Kind::Rating(pb::DeskRating {
            question_seq: 9,
            resolution_dseq: resolution,
            resolved_by: by.into(),
            scale: scale as i32,
            score,
            comment: String::new(),
        }),
    )
}

const ANN: &str = "ann@kanal.test";
const BEN: &str = "ben@kanal.test";
const CAL: &str = "cal@kanal.test";

fn policy() -> SlaPolicy {
    SlaPolicy {
        first_response_ms: Some(15 * MIN),
        resolution_ms: Some(8 * 60 * MIN),
        ..SlaPolicy::default()
    }
}

/// Two tickets: ann answers hers in 10 minutes and resolves it, rated 5
/// stars, then 4 (the rating changed); ben answers late, after a breach,
/// and resolves; the customer reopens ben's, which ann resolves again,
/// rated 1.
fn period() -> Tally {
    use pb::SlaTarget::{FirstResponse, Resolution};
    use pb::TicketStatus::{Open, Resolved};
    let mut tally = Tally::default();
    let t = 1_000_000;
    for e in [
        with(
            entry("c1", 1, t, ""),
            pb::desk_event::Kind::Queued(pb::DeskQueued::default()),
        ),
        assigned("c1", 2, t, ANN),
        with(
            entry("c2", 1, t + MIN, ""),
            pb::desk_event::Kind::Queued(pb::DeskQueued::default()),
        ),
        assigned("c2", 2, t + MIN, BEN),
        met(
            "c1",
            (3, t + 10 * MIN),
            ANN,
            FirstResponse,
            (t, 10 * MIN),
            true,
        ),
        breach("c2", 3, t + 16 * MIN, FirstResponse),
        met(
            "c2",
            (4, t + 31 * MIN),
            BEN,
            FirstResponse,
            (t + MIN, 30 * MIN),
            false,
        ),
        status("c1", 4, t + 40 * MIN, ANN, Open, Resolved),
        met(
            "c1",
            (5, t + 40 * MIN),
            ANN,
            Resolution,
            (t, 40 * MIN),
            true,
        ),
        rating("c1", 6, t + 41 * MIN, 4, ANN, pb::RatingScale::Stars, 5),
        rating("c1", 7, t + 42 * MIN, 4, ANN, pb::RatingScale::Stars, 4),
        status("c2", 5, t + 60 * MIN, BEN, Open, Resolved),
        met(
            "c2",
            (6, t + 60 * MIN),
            BEN,
            Resolution,
            (t + MIN, 59 * MIN),
            true,
        ),
        status("c2", 7, t + 70 * MIN, "", Resolved, Open),
        status("c2", 8, t + 80 * MIN, ANN, Open, Resolved),
        // Elapsed unknown: a clock stored before it was kept.
        met(
            "c2",
            (9, t + 80 * MIN),
            ANN,
            Resolution,
            (0, 10 * MIN),
            true,
        ),
        rating("c2", 10, t + 81 * MIN, 8, ANN, pb::RatingScale::Stars, 1),
    ] {
        tally.add(&e);
    }
    tally
}

#[test]
fn the_inbox_counts_openings_assignments_resolutions_and_times() {
    let report = period().report(
        "support@kanal.test".into(),
        [ANN.to_owned(), BEN.to_owned(), CAL.to_owned()],
        &policy(),
        Backlog::default(),
        true,
    );
    let figures = report.figures.expect("figures");
    assert_eq!(
        (figures.opened, figures.assigned, figures.resolved),
        (3, 2, 3)
    );
    let first = figures.first_response.expect("first response");
    assert_eq!(first.count, 2);
    assert_eq!(
        (first.median_ms, first.p90_ms, first.mean_ms),
        (10 * MIN, 30 * MIN, 20 * MIN)
    );
    assert_eq!(first.business_median_ms, 10 * MIN);
    let resolution = figures.resolution.expect("resolution");
    assert_eq!(resolution.count, 3);
    assert_eq!(
        resolution.median_ms,
        40 * MIN,
        "of the two elapsed times known"
    );
    assert_eq!(resolution.business_median_ms, 40 * MIN);
    assert_eq!(figures.next_response.expect("next").count, 0);
    // The policy sets first response and resolution; the first-response
    // target was met once in time and once late, after its breach.
    let sla: Vec<_> = figures
        .sla
        .iter()
        .map(|s| (s.target, s.target_ms, s.in_time, s.late, s.breaches))
        .collect();
    assert_eq!(
        sla,
        [
            (pb::SlaTarget::FirstResponse as i32, 15 * MIN, 1, 1, 1),
            (pb::SlaTarget::Resolution as i32, 480 * MIN, 3, 0, 0),
        ]
    );
    // Two rated resolutions: c1's last rating (4) and c2's 1.
    let [csat] = &figures.csat[..] else {
        panic!("one scale: {:?}", figures.csat);
    };
    assert_eq!(csat.scale, pb::RatingScale::Stars as i32);
    assert_eq!(csat.ratings, 2);
    assert_eq!(csat.scores, [0, 1, 0, 0, 1, 0]);
    assert_eq!((csat.satisfied, csat.dissatisfied), (1, 1));
    assert!(report.complete);
}

#[test]
fn each_agent_is_credited_with_what_it_did() {
    let report = period().report(
        "support@kanal.test".into(),
        [ANN.to_owned(), BEN.to_owned(), CAL.to_owned()],
        &policy(),
        Backlog::default(),
        true,
    );
    let agents: Vec<&str> = report.agents.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(agents, [ANN, BEN, CAL], "sorted, idle agents too");
    let of = |i: usize| report.agents[i].figures.clone().expect("figures");
    let (ann, ben, cal) = (of(0), of(1), of(2));
    assert_eq!((ann.assigned, ann.resolved), (1, 2));
    assert_eq!((ben.assigned, ben.resolved), (1, 1));
    assert_eq!((cal.assigned, cal.resolved), (0, 0));
    assert_eq!(ann.first_response.expect("ann").median_ms, 10 * MIN);
    assert_eq!(ben.first_response.expect("ben").median_ms, 30 * MIN);
    // Ben's late answer is his; the breach itself is the inbox's.
    assert_eq!(
        (ben.sla[0].in_time, ben.sla[0].late, ben.sla[0].breaches),
        (0, 1, 0)
    );
    // Both ratings rate ann's resolutions.
    assert_eq!(ann.csat[0].ratings, 2);
    assert!(ben.csat.is_empty());
    assert_eq!(cal.opened, 0);
}

#[test]
fn the_backlog_counts_what_is_unresolved_now() {
    let ticket = |status, owner, waiting| Ticket {
        status,
        owner,
        waiting_since_ms: waiting,
        ..Ticket::new(1, 2)
    };
    let mut backlog = Backlog::default();
    let names = |id: PartyId| Some(if id == 3 { ANN } else { BEN }.to_owned());
    for t in [
        ticket(Status::Open, Owner::Nobody, Some(500)),
        ticket(Status::Open, Owner::Agent(3), Some(300)),
        ticket(Status::Pending, Owner::Agent(3), None),
        ticket(Status::Snoozed { until_ms: 9 }, Owner::Agent(4), None),
        ticket(Status::Resolved { at_ms: 1 }, Owner::Agent(4), None),
    ] {
        backlog.add(&t, names);
    }
    let report = Tally::default().report(
        "support@kanal.test".into(),
        [],
        &SlaPolicy::default(),
        backlog,
        true,
    );
    let counts = report.backlog.expect("backlog");
    assert_eq!(
        (counts.open, counts.pending, counts.snoozed, counts.unowned),
        (2, 1, 1, 1)
    );
    assert_eq!((counts.waiting, counts.oldest_waiting_since_ms), (2, 300));
    let owned: Vec<(&str, u32)> = report
        .agents
        .iter()
        .map(|a| (a.agent.as_str(), a.owned))
        .collect();
    assert_eq!(owned, [(ANN, 2), (BEN, 1)]);
    assert!(
        report.figures.expect("figures").sla.is_empty(),
        "no policy, no SLA figures"
    );
}
