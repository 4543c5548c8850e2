//! The service desk's rows: tickets, seats and settings are upserts read
//! back whole; a conversation's desk log pages backwards, refuses a note
//! stored before, and replays through party and inbox logs.

use bytes::Bytes;

use super::{
    add_agent, address, conversation_id, event, message, new_conversation, new_party, text,
};
use crate::model::{
    Availability, ConversationKey, DeskEntry, DeskRecord, Event, EventRef, Message, Owner, PartyId,
    PartyKind, Priority, Status, StoredDesk, StoredSeat, StoredTicket, TicketFilter, Write,
};
use crate::store::{Store, StoreError};

/// A ticket of `inbox` for conversation `key`.
fn ticket(
    key: ConversationKey,
    inbox: PartyId,
    status: Status,
    updated_at_ms: i64,
) -> StoredTicket {
    StoredTicket {
        key,
        inbox,
        status,
        owner: Owner::Nobody,
        priority: Priority::Normal,
        last_dseq: 0,
        updated_at_ms,
        state: format!("{{\"ticket\":{key},\"at\":{updated_at_ms}}}"),
    }
}

/// `agent`'s seat at `inbox`.
fn seat(inbox: PartyId, agent: PartyId, availability: Availability) -> StoredSeat {
    StoredSeat {
        inbox,
        agent,
        availability,
        capacity: None,
        last_assigned_ms: 0,
    }
}

/// Entry `dseq` of conversation `key`'s desk log, by `actor` (a note if
/// `client_note_id` is not empty).
fn entry(
    key: ConversationKey,
    dseq: u64,
    inbox: PartyId,
    actor: Option<PartyId>,
    client_note_id: &str,
) -> DeskEntry {
    DeskEntry {
        key,
        dseq,
        inbox,
        at_ms: 1_000 + dseq as i64,
        actor,
        client_note_id: client_note_id.into(),
        // Not UTF-8, with a zero byte: stored as bytes, not text.
        payload: Bytes::from(vec![0x0a, 0x00, 0xff, key as u8, dseq as u8]),
    }
}

/// `count` conversations (keys 1..=count) between a user and an inbox;
/// returns (user, inbox, another inbox, agents ann and ben).
async fn desk_parties<S: Store>(
    store: &S,
    count: i64,
) -> (PartyId, PartyId, PartyId, [PartyId; 2]) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let sales = new_party(store, "sales@kanal.test", PartyKind::Inbox).await;
    let ann = new_party(store, "ann@kanal.test", PartyKind::Agent).await;
    let ben = new_party(store, "ben@kanal.test", PartyKind::Agent).await;
    add_agent(store, support.id, ann.id).await;
    add_agent(store, support.id, ben.id).await;
    let mut batch = Vec::new();
    for key in 1..=count {
        let id = conversation_id(&format!("kanal.test/c{key}"));
        let inbox = if key % 2 == 0 { sales.id } else { support.id };
        batch.extend(new_conversation(key, &id, alice.id, &[alice.id, inbox], 10));
    }
    store.commit(batch).await.expect("conversations");
    (alice.id, support.id, sales.id, [ann.id, ben.id])
}

/// Tickets, seats and settings are inserted or replaced (the last write
/// of a row in a batch wins) and read back as written; a desk leaves its
/// resolved tickets out.
pub async fn desk_rows_upsert_and_read_back<S: Store>(store: &S) {
    let (_, support, sales, [ann, ben]) = desk_parties(store, 4).await;
    assert_eq!(
        store.desk(support).await.expect("desk"),
        StoredDesk::default()
    );
    assert_eq!(store.ticket(1).await.expect("ticket"), None);

    let first = ticket(1, support, Status::Open, 100);
    let mut replaced = ticket(1, support, Status::Pending, 150);
    replaced.owner = Owner::Agent(ann);
    replaced.priority = Priority::Urgent;
    replaced.last_dseq = 3;
    let resolved = ticket(3, support, Status::Resolved { at_ms: 300 }, 300);
    let snoozed = ticket(
        5,
        support,
        Status::Snoozed {
            until_ms: 9_000_000,
        },
        500,
    );
    let mut bot_owned = ticket(2, sales, Status::Open, 200);
    bot_owned.owner = Owner::Bot(ben);
    bot_owned.priority = Priority::Low;
    let mut ben_seat = seat(support, ben, Availability::Away);
    ben_seat.capacity = Some(4);
    ben_seat.last_assigned_ms = 77;
    store
        .commit(vec![
            Write::Ticket(first),
            Write::Seat(ben_seat.clone()),
            Write::Seat(seat(support, ann, Availability::Offline)),
            Write::DeskSettings {
                inbox: support,
                settings: "{\"v\":1}".into(),
            },
            Write::Ticket(replaced.clone()),
            Write::Ticket(resolved.clone()),
            Write::Ticket(bot_owned.clone()),
            Write::Seat(seat(support, ann, Availability::Online)),
            Write::DeskSettings {
                inbox: support,
                settings: "{\"v\":2}".into(),
            },
        ])
        .await
        .expect("commit desk rows");
    // Conversation 5 does not exist: its ticket fails the batch.
    assert!(
        store
            .commit(vec![Write::Ticket(snoozed.clone())])
            .await
            .is_err(),
        "a ticket needs its conversation"
    );

    let desk = store.desk(support).await.expect("desk");
    assert_eq!(desk.settings.as_deref(), Some("{\"v\":2}"));
    assert_eq!(
        desk.seats,
        vec![seat(support, ann, Availability::Online), ben_seat.clone()]
    );
    assert_eq!(
        desk.tickets,
        vec![replaced.clone()],
        "resolved ones are left out"
    );
    assert_eq!(
        store.ticket(1).await.expect("ticket"),
        Some(replaced.clone())
    );
    assert_eq!(
        store.ticket(3).await.expect("ticket"),
        Some(resolved.clone())
    );
    assert_eq!(
        store.ticket(2).await.expect("ticket"),
        Some(bot_owned.clone())
    );
    let sales_desk = store.desk(sales).await.expect("desk");
    assert_eq!(
        sales_desk,
        StoredDesk {
            settings: None,
            seats: Vec::new(),
            tickets: vec![bot_owned],
        }
    );

    // Later batches replace rows; a resolved ticket reopened is back on
    // its desk.
    let mut reopened = resolved.clone();
    reopened.status = Status::Snoozed { until_ms: 5_000 };
    reopened.updated_at_ms = 400;
    let mut closed = replaced.clone();
    closed.status = Status::Resolved { at_ms: 450 };
    let mut ben_back = ben_seat;
    ben_back.availability = Availability::Online;
    ben_back.capacity = None;
    store
        .commit(vec![
            Write::Ticket(reopened.clone()),
            Write::Ticket(closed.clone()),
            Write::Seat(ben_back.clone()),
            Write::DeskSettings {
                inbox: support,
                settings: "{\"v\":3}".into(),
            },
        ])
        .await
        .expect("commit replacements");
    let desk = store.desk(support).await.expect("desk");
    assert_eq!(desk.settings.as_deref(), Some("{\"v\":3}"));
    assert_eq!(
        desk.seats,
        vec![seat(support, ann, Availability::Online), ben_back]
    );
    assert_eq!(desk.tickets, vec![reopened]);
    assert_eq!(store.ticket(1).await.expect("ticket"), Some(closed));
}

/// Listings filter by inbox, status and owner, order by last change (then
/// key) newest first, and page with `has_more`.
pub async fn ticket_listings_filter_page_and_order<S: Store>(store: &S) {
    let (_, support, sales, [ann, ben]) = desk_parties(store, 8).await;
    // Keys: odd ones support's, even ones sales'.
    let mut tickets = Vec::new();
    for (key, status, owner, at) in [
        (1, Status::Open, Owner::Nobody, 100),
        (2, Status::Open, Owner::Agent(ann), 300),
        (3, Status::Pending, Owner::Agent(ann), 300),
        (4, Status::Resolved { at_ms: 400 }, Owner::Agent(ann), 400),
        (5, Status::Snoozed { until_ms: 900 }, Owner::Bot(ben), 500),
        (6, Status::Open, Owner::Nobody, 50),
        (7, Status::Resolved { at_ms: 700 }, Owner::Nobody, 700),
        (8, Status::Pending, Owner::Agent(ben), 300),
    ] {
        let mut t = ticket(key, if key % 2 == 0 { sales } else { support }, status, at);
        t.owner = owner;
        tickets.push(t);
    }
    store
        .commit(tickets.iter().cloned().map(Write::Ticket).collect())
        .await
        .expect("commit tickets");
    let keys = async |filter: TicketFilter, limit: u32, offset: u32| {
        let (found, more) = store
            .tickets(&filter, limit, offset)
            .await
            .expect("tickets");
        for t in &found {
            let stored = &tickets[t.key as usize - 1];
            assert_eq!(t, stored, "a listed ticket is read back whole");
        }
        (found.iter().map(|t| t.key).collect::<Vec<_>>(), more)
    };
    let both = vec![support, sales];
    let filter = |statuses: &[i64], owner: Option<PartyId>, unowned: bool| TicketFilter {
        inboxes: both.clone(),
        statuses: statuses.to_vec(),
        owner,
        unowned,
    };

    // Every status but resolved; ties on time newest key first.
    assert_eq!(
        keys(filter(&[], None, false), 10, 0).await,
        (vec![5, 8, 3, 2, 1, 6], false)
    );
    // Paging.
    assert_eq!(
        keys(filter(&[], None, false), 2, 0).await,
        (vec![5, 8], true)
    );
    assert_eq!(
        keys(filter(&[], None, false), 2, 2).await,
        (vec![3, 2], true)
    );
    assert_eq!(
        keys(filter(&[], None, false), 2, 4).await,
        (vec![1, 6], false)
    );
    assert_eq!(keys(filter(&[], None, false), 2, 6).await, (vec![], false));
    // One inbox; no inbox at all.
    let support_only = TicketFilter {
        inboxes: vec![support],
        ..TicketFilter::default()
    };
    assert_eq!(keys(support_only, 10, 0).await, (vec![5, 3, 1], false));
    assert_eq!(
        keys(TicketFilter::default(), 10, 0).await,
        (vec![], false),
        "no inboxes, no tickets"
    );
    // Statuses by their stored numbers, resolved ones included on request.
    let resolved = Status::Resolved { at_ms: 0 }.as_i64().0;
    let pending = Status::Pending.as_i64().0;
    assert_eq!(
        keys(filter(&[resolved], None, false), 10, 0).await,
        (vec![7, 4], false)
    );
    assert_eq!(
        keys(filter(&[pending, resolved], None, false), 10, 0).await,
        (vec![7, 4, 8, 3], false)
    );
    // Owners: an agent's, a bot's, nobody's.
    assert_eq!(
        keys(filter(&[], Some(ann), false), 10, 0).await,
        (vec![3, 2], false)
    );
    assert_eq!(
        keys(filter(&[resolved], Some(ann), false), 10, 0).await,
        (vec![4], false)
    );
    assert_eq!(
        keys(filter(&[], Some(ben), false), 10, 0).await,
        (vec![5, 8], false)
    );
    assert_eq!(
        keys(filter(&[], None, true), 10, 0).await,
        (vec![1, 6], false)
    );
    assert_eq!(
        keys(filter(&[], Some(ann), true), 10, 0).await,
        (vec![], false),
        "owned by ann and by nobody: none"
    );
}

/// A conversation's desk log pages backwards like its history; a note is
/// found by its author's client note id.
pub async fn desk_entries_page_backwards_and_notes_are_found<S: Store>(store: &S) {
    let (_, support, _, [ann, ben]) = desk_parties(store, 3).await;
    let entries = [
        entry(1, 1, support, None, ""),
        entry(1, 2, support, Some(ann), "n-1"),
        entry(1, 3, support, Some(ann), ""),
        entry(1, 4, support, Some(ben), "n-1"),
        entry(1, 5, support, None, ""),
    ];
    let mut batch: Vec<Write> = entries.iter().cloned().map(Write::DeskEntry).collect();
    batch.push(Write::DeskEntry(entry(3, 1, support, Some(ann), "n-1")));
    store.commit(batch).await.expect("commit entries");

    let page = async |before: u64, limit: u32| {
        let (found, more) = store.desk_entries(1, before, limit).await.expect("page");
        (found, more)
    };
    assert_eq!(page(0, 10).await, (entries.to_vec(), false));
    assert_eq!(page(0, 5).await, (entries.to_vec(), false));
    assert_eq!(page(0, 2).await, (entries[3..].to_vec(), true));
    assert_eq!(page(4, 2).await, (entries[1..3].to_vec(), true));
    assert_eq!(page(2, 2).await, (entries[..1].to_vec(), false));
    assert_eq!(page(1, 2).await, (vec![], false));
    assert_eq!(
        store.desk_entries(2, 0, 10).await.expect("empty log"),
        (vec![], false)
    );
    assert_eq!(
        store.desk_entries(3, 0, 10).await.expect("other log"),
        (vec![entry(3, 1, support, Some(ann), "n-1")], false)
    );

    assert_eq!(
        store.find_note(1, ann, "n-1").await.expect("find"),
        Some((2, 1_002))
    );
    assert_eq!(
        store.find_note(1, ben, "n-1").await.expect("find"),
        Some((4, 1_004))
    );
    assert_eq!(
        store.find_note(3, ann, "n-1").await.expect("find"),
        Some((1, 1_001))
    );
    assert_eq!(store.find_note(1, ann, "n-2").await.expect("find"), None);
    assert_eq!(store.find_note(2, ann, "n-1").await.expect("find"), None);
    assert_eq!(
        store.find_note(1, ann, "").await.expect("find"),
        None,
        "an entry without a client note id is no note"
    );
}

/// A note reusing its author's client note id in a conversation fails its
/// batch with `DuplicateSend` and stores nothing of it; entries without
/// one never collide, and a dseq taken is not a duplicate note.
pub async fn reused_client_note_id_is_a_duplicate_send<S: Store>(store: &S) {
    let (alice, support, _, [ann, ben]) = desk_parties(store, 2).await;
    store
        .commit(vec![
            Write::DeskEntry(entry(1, 1, support, Some(ann), "n-1")),
            Write::DeskEntry(entry(1, 2, support, None, "")),
            Write::DeskEntry(entry(1, 3, support, Some(ann), "")),
        ])
        .await
        .expect("commit");
    let before = store.ticket(1).await.expect("ticket");

    let retry = vec![
        message(1, 1, alice, "m-1", 2_000, "lost with the batch"),
        Write::Ticket(ticket(1, support, Status::Open, 2_000)),
        Write::DeskEntry(entry(1, 4, support, Some(ben), "n-9")),
        Write::DeskEntry(entry(1, 5, support, Some(ann), "n-1")),
    ];
    let refused = store.commit(retry).await;
    assert!(
        matches!(refused, Err(StoreError::DuplicateSend)),
        "{refused:?}"
    );
    // Twice in one batch.
    let twice = vec![
        Write::DeskEntry(entry(1, 4, support, Some(ben), "n-9")),
        Write::DeskEntry(entry(1, 5, support, Some(ben), "n-9")),
    ];
    let refused = store.commit(twice).await;
    assert!(
        matches!(refused, Err(StoreError::DuplicateSend)),
        "{refused:?}"
    );
    assert_eq!(store.find_send(1, alice, "m-1").await.expect("find"), None);
    assert_eq!(store.ticket(1).await.expect("ticket"), before);
    assert_eq!(store.find_note(1, ben, "n-9").await.expect("find"), None);
    assert_eq!(
        store.desk_entries(1, 0, 10).await.expect("log").0.len(),
        3,
        "nothing of the failed batches"
    );

    // Another author's id, the same id in another conversation, and more
    // entries without an id are new; a taken dseq is not a duplicate note.
    store
        .commit(vec![
            Write::DeskEntry(entry(1, 4, support, Some(ben), "n-1")),
            Write::DeskEntry(entry(1, 5, support, None, "")),
            Write::DeskEntry(entry(1, 6, support, Some(ann), "")),
            Write::DeskEntry(entry(2, 1, support, Some(ann), "n-1")),
        ])
        .await
        .expect("new notes and entries");
    let taken = store
        .commit(vec![Write::DeskEntry(entry(
            1,
            6,
            support,
            Some(ann),
            "n-7",
        ))])
        .await;
    assert!(
        matches!(taken, Err(ref e) if !matches!(e, StoreError::DuplicateSend)),
        "{taken:?}"
    );
    assert_eq!(store.desk_entries(1, 0, 10).await.expect("log").0.len(), 6);
    assert_eq!(store.find_note(1, ann, "n-7").await.expect("find"), None);
}

/// A desk entry's event replays as `Event::Desk` with the stored payload,
/// from a party's own log and from an inbox log through a span.
pub async fn desk_events_replay_from_party_and_inbox_logs<S: Store>(store: &S) {
    let (alice, support, _, [ann, ben]) = desk_parties(store, 1).await;
    let washer = conversation_id("kanal.test/c1");
    let note = entry(1, 1, support, Some(ann), "n-1");
    let system = entry(1, 2, support, None, "");
    let desk = EventRef::Desk { dseq: 1 };
    let inbox_event = |iseq: u64, what: EventRef| Write::InboxEvent {
        inbox: support,
        iseq,
        key: 1,
        what,
        at_ms: 1_000 + iseq as i64,
    };
    store
        .commit(vec![
            message(1, 1, alice, "m-1", 900, "hello"),
            Write::DeskEntry(note.clone()),
            Write::DeskEntry(system.clone()),
            // The inbox's log: the message, then both desk entries.
            inbox_event(1, EventRef::Message { seq: 1 }),
            inbox_event(2, desk),
            inbox_event(3, EventRef::Desk { dseq: 2 }),
            // ann follows it from its start; ben has rows of his own.
            Write::Span {
                party: ann,
                seq: 1,
                inbox: support,
                iseq: 1,
            },
            event(ben, 1, 1, EventRef::Desk { dseq: 2 }, 1_003),
            event(ben, 2, 1, desk, 1_004),
        ])
        .await
        .expect("commit");
    let record = |entry: &DeskEntry| {
        Event::Desk(DeskRecord {
            conversation: washer.clone(),
            dseq: entry.dseq,
            payload: entry.payload.clone(),
        })
    };
    let hello = Event::Message(Message {
        conversation: washer.clone(),
        seq: 1,
        sender: address("alice@kanal.test"),
        client_msg_id: "m-1".into(),
        sent_at_ms: 900,
        body: text("hello"),
    });
    assert_eq!(
        store
            .events_since(ann, 0, 10, usize::MAX)
            .await
            .expect("ann's log"),
        vec![(1, hello), (2, record(&note)), (3, record(&system))]
    );
    assert_eq!(
        store
            .events_since(ann, 2, 10, usize::MAX)
            .await
            .expect("ann's tail"),
        vec![(3, record(&system))]
    );
    assert_eq!(
        store
            .events_since(ben, 0, 10, usize::MAX)
            .await
            .expect("ben's log"),
        vec![(1, record(&system)), (2, record(&note))]
    );
    // Payloads count toward a page's budget.
    assert_eq!(
        store
            .events_since(ben, 0, 10, 1)
            .await
            .expect("bounded")
            .len(),
        1,
        "the first event always comes, then the budget ends the page"
    );
}

/// An inbox's desk entries over a period, across its conversations, in
/// `(at_ms, key, dseq)` order, paged by the last one read; another
/// inbox's entries and those outside the period are not among them.
pub async fn inbox_desk_entries_read_a_period_in_order<S: Store>(store: &S) {
    let (_, support, other, _) = desk_parties(store, 3).await;
    let at = |key: ConversationKey, dseq: u64, at_ms: i64, inbox: PartyId| DeskEntry {
        at_ms,
        ..entry(key, dseq, inbox, None, "")
    };
    let ours = [
        at(2, 1, 10, support),
        at(1, 1, 20, support),
        at(3, 1, 20, support),
        at(1, 2, 20, support),
        at(2, 2, 30, support),
        at(1, 3, 40, support),
    ];
    let mut batch: Vec<Write> = ours.iter().cloned().map(Write::DeskEntry).collect();
    batch.push(Write::DeskEntry(at(3, 2, 25, other)));
    store.commit(batch).await.expect("commit entries");
    let mut want = ours.to_vec();
    want.sort_by_key(|e| (e.at_ms, e.key, e.dseq));
    let read = async |period: (i64, i64), after, limit| {
        store
            .inbox_desk_entries(support, period, after, limit)
            .await
            .expect("read")
    };
    assert_eq!(read((0, 100), None, 100).await, want);
    assert_eq!(
        read((20, 40), None, 100).await,
        want[1..5].to_vec(),
        "[from, to)"
    );
    // Paging by the last entry read, through entries of one instant.
    let first = read((0, 100), None, 2).await;
    assert_eq!(first, want[..2].to_vec());
    let last = first.last().map(|e| (e.at_ms, e.key, e.dseq));
    assert_eq!(read((0, 100), last, 2).await, want[2..4].to_vec());
    let last = Some((want[3].at_ms, want[3].key, want[3].dseq));
    assert_eq!(read((0, 100), last, 10).await, want[4..].to_vec());
    assert_eq!(read((41, 100), None, 10).await, vec![]);
}
