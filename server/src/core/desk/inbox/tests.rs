//! The desk's routing, queue, statuses and timers, in virtual time.

use super::*;
use crate::core::desk::sla::SlaClock;

const MIN: i64 = 60_000;
const A: PartyId = 101;
const B: PartyId = 102;
const C: PartyId = 103;
const BOT: PartyId = 900;

fn desk(routing: Routing, capacity: Option<u32>, agents: &[PartyId]) -> InboxDesk {
    let settings = DeskSettings {
        routing,
        capacity,
        ..DeskSettings::default()
    };
    let mut desk = InboxDesk::new(1, settings);
    for &agent in agents {
        desk.add_agent(agent);
        desk.set_availability(0, agent, Availability::Online, &mut Vec::new())
            .expect("an agent of the inbox");
    }
    desk
}

fn owner(desk: &InboxDesk, key: ConversationKey) -> Owner {
    desk.ticket(key).expect("a ticket").owner
}

fn held(desk: &InboxDesk, agent: PartyId) -> u32 {
    desk.seat(agent).expect("a seat").held
}

fn open_all(desk: &mut InboxDesk, keys: impl IntoIterator<Item = ConversationKey>, now: i64) {
    for key in keys {
        desk.open(now, key, &mut Vec::new());
    }
}

#[test]
fn round_robin_takes_turns_and_queues_past_capacity() {
    let mut desk = desk(Routing::RoundRobin, Some(2), &[A, B, C]);
    open_all(&mut desk, 1..=7, 1000);
    let owners: Vec<Owner> = (1..=6).map(|k| owner(&desk, k)).collect();
    assert_eq!(
        owners,
        [A, B, C, A, B, C].map(Owner::Agent),
        "one each, in turn, twice"
    );
    assert_eq!(owner(&desk, 7), Owner::Nobody);
    assert_eq!(desk.queue().collect::<Vec<_>>(), [7]);
    assert_eq!([held(&desk, A), held(&desk, B), held(&desk, C)], [2, 2, 2]);
}

#[test]
fn round_robin_skips_agents_that_are_away_or_full() {
    let mut desk = desk(Routing::RoundRobin, None, &[A, B, C]);
    desk.set_availability(0, B, Availability::Away, &mut Vec::new())
        .expect("agent");
    desk.set_capacity(0, C, Some(1), &mut Vec::new())
        .expect("agent");
    open_all(&mut desk, 1..=4, 1000);
    let owners: Vec<Owner> = (1..=4).map(|k| owner(&desk, k)).collect();
    assert_eq!(owners, [A, C, A, A].map(Owner::Agent));
}

#[test]
fn balanced_gives_to_the_fewest_open_and_counts_only_open_ones() {
    let mut desk = desk(Routing::Balanced, None, &[A, B]);
    // A handled ten conversations, all resolved; B holds one open.
    for key in 1..=10 {
        desk.open(key, key, &mut Vec::new());
        desk.assign(key, key, Owner::Agent(A), Actor::Party(A), &mut Vec::new())
            .expect("assign");
        desk.set_status(
            key,
            key,
            Status::Resolved { at_ms: key },
            Actor::Party(A),
            &mut Vec::new(),
        )
        .expect("resolve");
    }
    desk.open(20, 11, &mut Vec::new());
    desk.assign(20, 11, Owner::Agent(B), Actor::Party(B), &mut Vec::new())
        .expect("assign");
    assert_eq!([held(&desk, A), held(&desk, B)], [0, 1]);
    desk.open(30, 12, &mut Vec::new());
    assert_eq!(owner(&desk, 12), Owner::Agent(A), "A holds none open");
    // Tied at one each: the one assigned least recently (B, at 20).
    desk.open(40, 13, &mut Vec::new());
    assert_eq!(owner(&desk, 13), Owner::Agent(B));
}

#[test]
fn a_waiting_ticket_goes_to_the_agent_the_moment_it_frees_up() {
    // Chatwoot #10583: queued chats stayed unassigned after an agent freed up.
    let mut desk = desk(Routing::RoundRobin, Some(1), &[A]);
    open_all(&mut desk, 1..=3, 1000);
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(desk.queue().collect::<Vec<_>>(), [2, 3]);
    let mut out = Vec::new();
    desk.set_status(
        2000,
        1,
        Status::Resolved { at_ms: 2000 },
        Actor::Party(A),
        &mut out,
    )
    .expect("resolve");
    assert_eq!(owner(&desk, 2), Owner::Agent(A), "the next one, at once");
    assert_eq!(
        out.last(),
        Some(&(
            2,
            DeskChange::Assigned {
                owner: Owner::Agent(A),
                by: Actor::Desk
            }
        ))
    );
    // Snoozing frees the seat too; raising the capacity drains the rest.
    desk.set_status(
        3000,
        2,
        Status::Snoozed { until_ms: 10 * MIN },
        Actor::Party(A),
        &mut Vec::new(),
    )
    .expect("snooze");
    assert_eq!(owner(&desk, 3), Owner::Agent(A));
    assert_eq!(desk.queue().count(), 0);
}

#[test]
fn an_agent_coming_online_takes_the_queue_by_priority_then_waiting_time() {
    let mut desk = desk(Routing::RoundRobin, Some(2), &[]);
    desk.add_agent(A);
    open_all(&mut desk, [1, 2, 3], 1000);
    desk.set_priority(3, Priority::Urgent, Actor::Party(C), &mut Vec::new())
        .expect("priority");
    assert_eq!(desk.queue().collect::<Vec<_>>(), [3, 1, 2]);
    let mut out = Vec::new();
    desk.set_availability(5000, A, Availability::Online, &mut out)
        .expect("agent");
    assert_eq!(owner(&desk, 3), Owner::Agent(A));
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(owner(&desk, 2), Owner::Nobody, "capacity 2");
    assert_eq!(
        out.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [3, 1],
        "assigned in queue order"
    );
}

#[test]
fn an_agent_offline_past_the_grace_hands_its_open_tickets_to_someone_online() {
    let mut desk = desk(Routing::RoundRobin, None, &[A, B]);
    let grace = desk.settings().offline_grace_ms;
    assert_eq!(grace, 2 * MIN, "the default");
    open_all(&mut desk, 1..=4, 1000);
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(owner(&desk, 3), Owner::Agent(A));
    // A pending ticket stays with A: its customer is the one to answer.
    desk.set_status(1500, 3, Status::Pending, Actor::Party(A), &mut Vec::new())
        .expect("pending");
    let mut out = Vec::new();
    desk.set_availability(2000, A, Availability::Offline, &mut out)
        .expect("agent");
    assert!(out.is_empty(), "nothing moves within the grace: {out:?}");
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(desk.poll_timeout(), Some(2000 + grace));
    desk.handle_timeout(2000 + grace - 1, &mut out);
    assert!(out.is_empty(), "{out:?}");
    desk.handle_timeout(2000 + grace, &mut out);
    assert_eq!(owner(&desk, 1), Owner::Agent(B));
    assert_eq!(owner(&desk, 3), Owner::Agent(A));
    assert!(out.contains(&(
        1,
        DeskChange::Queued {
            reason: Some(RequeueReason::OwnerOffline)
        }
    )));
    assert_eq!(held(&desk, A), 1);
    assert_eq!(desk.poll_timeout(), None, "the grace is over");
    // The customer of the pending one writes: B answers it, A is offline.
    let arrival = desk.customer_wrote(3000 + grace, 3, &mut Vec::new());
    assert_eq!(arrival, Arrival::Here);
    assert_eq!(desk.ticket(3).map(|t| t.status), Some(Status::Open));
    assert_eq!(owner(&desk, 3), Owner::Agent(B));
}

#[test]
fn an_agent_back_within_the_grace_keeps_everything() {
    let mut desk = desk(Routing::RoundRobin, None, &[A, B]);
    let grace = desk.settings().offline_grace_ms;
    open_all(&mut desk, 1..=2, 1000);
    let mut out = Vec::new();
    desk.set_availability(2000, A, Availability::Offline, &mut out)
        .expect("agent");
    // Its customer writes while it is away: the ticket waits for it.
    desk.customer_wrote(2500, 1, &mut out);
    desk.set_availability(2000 + grace - 1, A, Availability::Online, &mut out)
        .expect("agent");
    desk.handle_timeout(2000 + grace, &mut out);
    assert!(
        !out.iter()
            .any(|(_, c)| matches!(c, DeskChange::Queued { .. })),
        "{out:?}"
    );
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(desk.poll_timeout(), None);
}

#[test]
fn a_grace_of_zero_requeues_at_once_and_a_loaded_desk_counts_from_its_start() {
    let mut settings = DeskSettings {
        offline_grace_ms: 0,
        ..DeskSettings::default()
    };
    let mut desk = InboxDesk::new(1, settings.clone());
    for agent in [A, B] {
        desk.add_agent(agent);
        desk.set_availability(0, agent, Availability::Online, &mut Vec::new())
            .expect("agent");
    }
    open_all(&mut desk, 1..=2, 1000);
    desk.set_availability(2000, A, Availability::Offline, &mut Vec::new())
        .expect("agent");
    assert_eq!(owner(&desk, 1), Owner::Agent(B));

    // A desk read back from the store: its offline agents' grace starts
    // when it is first told the time.
    settings.offline_grace_ms = MIN;
    let mut loaded = InboxDesk::new(1, settings);
    loaded.load_ticket(
        Ticket {
            owner: Owner::Agent(A),
            ..Ticket::new(7, 1)
        },
        SlaClock::default(),
    );
    loaded.load_seat(Seat::new(A));
    let mut online = Seat::new(B);
    online.availability = Availability::Online;
    loaded.load_seat(online);
    assert_eq!(loaded.poll_timeout(), None);
    loaded.count_offline_from(5000);
    assert_eq!(loaded.poll_timeout(), Some(5000 + MIN));
    let mut out = Vec::new();
    loaded.handle_timeout(5000 + MIN, &mut out);
    assert_eq!(owner(&loaded, 7), Owner::Agent(B));
}

#[test]
fn an_unanswered_customer_goes_to_another_agent_after_the_answer_timeout() {
    let mut desk = desk(Routing::RoundRobin, None, &[A, B]);
    let mut settings = desk.settings().clone();
    settings.answer_timeout_ms = Some(5 * MIN);
    desk.set_settings(0, settings, &mut Vec::new());
    desk.open(1000, 1, &mut Vec::new());
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(desk.poll_timeout(), Some(1000 + 5 * MIN));
    // Nothing is due a moment before.
    desk.handle_timeout(1000 + 5 * MIN - 1, &mut Vec::new());
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    let mut out = Vec::new();
    desk.handle_timeout(1000 + 5 * MIN, &mut out);
    assert_eq!(owner(&desk, 1), Owner::Agent(B), "A let it wait: B gets it");
    assert_eq!(
        out[0],
        (
            1,
            DeskChange::Queued {
                reason: Some(RequeueReason::NoAnswer)
            }
        )
    );
    // B answers in time: no timer is left.
    desk.desk_wrote(2 * MIN, 1, B, &mut Vec::new());
    assert_eq!(desk.poll_timeout(), None);
    // The customer writes again: the clock starts again from then.
    desk.customer_wrote(10 * MIN, 1, &mut Vec::new());
    assert_eq!(desk.poll_timeout(), Some(15 * MIN));
}

#[test]
fn a_ticket_passed_over_by_everyone_still_goes_to_someone() {
    let mut desk = desk(Routing::RoundRobin, None, &[A]);
    let mut settings = desk.settings().clone();
    settings.answer_timeout_ms = Some(MIN);
    desk.set_settings(0, settings, &mut Vec::new());
    desk.open(0, 1, &mut Vec::new());
    desk.handle_timeout(MIN, &mut Vec::new());
    assert_eq!(owner(&desk, 1), Owner::Agent(A), "nobody else is online");
    assert_eq!(desk.poll_timeout(), Some(2 * MIN));
}

#[test]
fn a_snooze_ends_at_its_time_and_the_owner_has_it_again() {
    let mut desk = desk(Routing::RoundRobin, Some(1), &[A]);
    desk.open(0, 1, &mut Vec::new());
    assert!(matches!(
        desk.set_status(
            MIN,
            1,
            Status::Snoozed { until_ms: MIN },
            Actor::Party(A),
            &mut Vec::new()
        ),
        Err(DeskError::SnoozeInPast)
    ));
    desk.set_status(
        MIN,
        1,
        Status::Snoozed { until_ms: 60 * MIN },
        Actor::Party(A),
        &mut Vec::new(),
    )
    .expect("snooze");
    assert_eq!(held(&desk, A), 0);
    assert_eq!(desk.poll_timeout(), Some(60 * MIN));
    let mut out = Vec::new();
    desk.handle_timeout(60 * MIN, &mut out);
    assert_eq!(
        out,
        [(
            1,
            DeskChange::Status {
                from: Status::Snoozed { until_ms: 60 * MIN },
                to: Status::Open,
                by: Actor::Desk
            }
        )]
    );
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(held(&desk, A), 1);
}

#[test]
fn a_customer_reopens_inside_the_window_and_continues_elsewhere_after_it() {
    let mut desk = desk(Routing::RoundRobin, None, &[A]);
    let window = desk.settings().reopen_window_ms;
    for key in [1, 2] {
        desk.open(0, key, &mut Vec::new());
        desk.set_status(
            MIN,
            key,
            Status::Resolved { at_ms: MIN },
            Actor::Party(A),
            &mut Vec::new(),
        )
        .expect("resolve");
    }
    assert_eq!(held(&desk, A), 0);
    let mut out = Vec::new();
    assert_eq!(
        desk.customer_wrote(MIN + window, 1, &mut out),
        Arrival::Here
    );
    assert_eq!(desk.ticket(1).map(|t| t.status), Some(Status::Open));
    assert_eq!(owner(&desk, 1), Owner::Agent(A), "back to its agent");
    assert_eq!(held(&desk, A), 1);
    assert_eq!(
        desk.customer_wrote(MIN + window + 1, 2, &mut Vec::new()),
        Arrival::Continuation
    );
    assert!(desk.ticket(2).is_some_and(|t| t.status.is_resolved()));
}

#[test]
fn a_bot_hands_off_once_however_often_it_asks() {
    let mut desk = desk(Routing::RoundRobin, None, &[A]);
    let mut settings = desk.settings().clone();
    settings.first_responder = Some(BOT);
    desk.set_settings(0, settings, &mut Vec::new());
    desk.open(0, 1, &mut Vec::new());
    assert_eq!(owner(&desk, 1), Owner::Bot(BOT));
    let mut out = Vec::new();
    assert_eq!(desk.hand_off(MIN, 1, BOT, &mut out), Ok(true));
    assert_eq!(desk.hand_off(MIN, 1, BOT, &mut out), Ok(false));
    assert_eq!(
        out,
        [
            (
                1,
                DeskChange::Queued {
                    reason: Some(RequeueReason::HandOff)
                }
            ),
            (
                1,
                DeskChange::Assigned {
                    owner: Owner::Agent(A),
                    by: Actor::Desk
                }
            ),
        ]
    );
    // And back to the bot by hand.
    desk.assign(
        2 * MIN,
        1,
        Owner::Bot(BOT),
        Actor::Party(A),
        &mut Vec::new(),
    )
    .expect("back");
    assert_eq!(owner(&desk, 1), Owner::Bot(BOT));
    assert_eq!(held(&desk, A), 0);
}

#[test]
fn a_ticket_for_a_busy_team_waits_without_holding_up_the_rest() {
    let mut desk = desk(Routing::RoundRobin, Some(1), &[A, B]);
    desk.load_team("billing".into(), vec![B]);
    open_all(&mut desk, [1, 2], 0);
    assert_eq!(owner(&desk, 2), Owner::Agent(B));
    assert!(matches!(
        desk.transfer_to_team(MIN, 1, "nobody", &mut Vec::new()),
        Err(DeskError::EmptyTeam(_))
    ));
    desk.transfer_to_team(MIN, 1, "billing", &mut Vec::new())
        .expect("transfer");
    // A is free now, but only billing (B, full) may take it.
    assert_eq!(owner(&desk, 1), Owner::Nobody);
    desk.open(2 * MIN, 3, &mut Vec::new());
    assert_eq!(owner(&desk, 3), Owner::Agent(A), "not held up by 1");
    desk.set_status(
        3 * MIN,
        2,
        Status::Resolved { at_ms: 3 * MIN },
        Actor::Party(B),
        &mut Vec::new(),
    )
    .expect("resolve");
    assert_eq!(owner(&desk, 1), Owner::Agent(B));
}

#[test]
fn manual_routing_assigns_nobody_and_an_answering_agent_takes_it() {
    let mut desk = desk(Routing::Manual, None, &[A, B]);
    open_all(&mut desk, [1, 2], 0);
    assert_eq!(desk.queue().collect::<Vec<_>>(), [1, 2]);
    desk.desk_wrote(MIN, 2, B, &mut Vec::new());
    assert_eq!(owner(&desk, 2), Owner::Agent(B));
    desk.assign(MIN, 1, Owner::Agent(A), Actor::Party(B), &mut Vec::new())
        .expect("assign");
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert!(matches!(
        desk.assign(MIN, 1, Owner::Agent(C), Actor::Party(B), &mut Vec::new()),
        Err(DeskError::NotAnAgent(C))
    ));
    assert_eq!(desk.queue().count(), 0);
}

#[test]
fn a_loaded_desk_counts_seats_and_timers_from_its_tickets() {
    let mut desk = InboxDesk::new(
        1,
        DeskSettings {
            answer_timeout_ms: Some(MIN),
            ..DeskSettings::default()
        },
    );
    let mut held_open = Ticket::new(1, 1);
    held_open.owner = Owner::Agent(A);
    held_open.assigned_at_ms = Some(0);
    held_open.waiting_since_ms = Some(10);
    let mut snoozed = Ticket::new(2, 1);
    snoozed.owner = Owner::Agent(A);
    snoozed.status = Status::Snoozed { until_ms: 5 * MIN };
    let mut waiting = Ticket::new(3, 1);
    waiting.queued_at_ms = Some(7);
    for ticket in [held_open, snoozed, waiting] {
        desk.load_ticket(ticket, SlaClock::default());
    }
    let mut seat = Seat::new(A);
    seat.availability = Availability::Online;
    seat.capacity = Some(2);
    desk.load_seat(seat);
    assert_eq!(held(&desk, A), 1);
    assert_eq!(desk.queue().collect::<Vec<_>>(), [3]);
    assert_eq!(desk.poll_timeout(), Some(10 + MIN));
}

#[test]
fn an_answer_timeout_of_zero_requeues_once_per_tick_and_returns() {
    let mut desk = desk(Routing::RoundRobin, None, &[A]);
    let mut settings = desk.settings().clone();
    settings.answer_timeout_ms = Some(0);
    desk.set_settings(0, settings, &mut Vec::new());
    desk.open(MIN, 1, &mut Vec::new());
    let mut out = Vec::new();
    desk.handle_timeout(MIN, &mut out);
    let requeues = out
        .iter()
        .filter(|(_, c)| matches!(c, DeskChange::Queued { .. }))
        .count();
    assert_eq!(requeues, 1, "{out:?}");
    assert_eq!(owner(&desk, 1), Owner::Agent(A));
    assert_eq!(desk.poll_timeout(), Some(MIN), "due again at the next tick");
}
