//! The engine driven by the sequencer on the in-memory store, as the
//! writer drives it on SQLite; some tests also feed it state by hand, as a
//! store would.

use std::sync::Arc;

use kanal_proto::address::{Address, ConversationId};

use super::*;
use crate::model::{Body, DeskSettings, PartyKind, RefusalCode, Write};
use crate::node::sequencer::Sequencer;
use crate::sim::ready;
use crate::store::Store;
use crate::store::memory::MemoryStore;

struct Fixture {
    sequencer: Sequencer,
    store: Arc<MemoryStore>,
    published: Vec<Published>,
    now: i64,
}

fn party(id: PartyId, local: &str, kind: PartyKind) -> Party {
    Party {
        id,
        address: Address::new(local, "localhost").expect("valid"),
        kind,
        display_name: String::new(),
    }
}

fn alice() -> Party {
    party(1, "alice", PartyKind::User)
}
fn support() -> Party {
    party(2, "support", PartyKind::Inbox)
}
fn agent_a() -> Party {
    party(3, "agent-a", PartyKind::Agent)
}
fn agent_b() -> Party {
    party(4, "agent-b", PartyKind::Agent)
}
fn mallory() -> Party {
    party(5, "mallory", PartyKind::User)
}

fn text(s: &str) -> Body {
    Body::Text(s.into())
}

/// The deliveries of `published`, flattened: `(party, seq)`.
fn deliveries(published: &[Published]) -> Vec<(PartyId, u64)> {
    published
        .iter()
        .flat_map(|p| p.recipients.iter().copied())
        .collect()
}

impl Fixture {
    /// alice, the support inbox with agents a and b, and mallory, stored.
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let mut writes: Vec<Write> = [alice(), support(), agent_a(), agent_b(), mallory()]
            .into_iter()
            .map(|p| Write::NewParty {
                id: p.id,
                party: NewParty {
                    address: p.address,
                    kind: p.kind,
                    display_name: p.display_name,
                    password_hash: None,
                },
                created_at_ms: 0,
            })
            .collect();
        writes.push(Write::InboxAgent { inbox: 2, agent: 3 });
        writes.push(Write::InboxAgent { inbox: 2, agent: 4 });
        ready(store.commit(writes)).expect("directory");
        let sequencer =
            ready(Sequencer::new(store.clone(), "localhost".into())).expect("sequencer");
        Self {
            sequencer,
            store,
            published: Vec::new(),
            now: 1_000,
        }
    }

    fn engine(&mut self) -> &mut Engine {
        self.sequencer.engine_mut()
    }

    /// Orders one command as the writer would: needs loaded from the store,
    /// the rows committed to it.
    fn run(&mut self, cmd: Command) -> Reply {
        self.now += 10;
        let (mut replies, published) = ready(self.sequencer.order(&[cmd], self.now));
        self.published.extend(published);
        replies.pop().expect("one reply")
    }

    fn deliveries(&self) -> Vec<(PartyId, u64)> {
        deliveries(&self.published)
    }

    fn open_with_support(&mut self) -> ConversationId {
        match self.run(Command::CreateConversation {
            by: alice(),
            to: vec![support()],
            subject: "washer".into(),
            opaque: "abc".into(),
        }) {
            Reply::Conversation(c) => c.id,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn send(&mut self, by: Party, conv: &ConversationId, cmid: &str) -> Reply {
        self.run(Command::Send {
            by,
            conversation: conv.clone(),
            client_msg_id: cmid.into(),
            body: text("hi"),
        })
    }
}

fn sent_seq(reply: Reply) -> (u64, bool) {
    match reply {
        Reply::Sent(s) => (s.seq, s.duplicate),
        other => panic!("expected Sent, got {other:?}"),
    }
}

/// A far-off verify window: every send not in memory is looked up.
const ALWAYS: i64 = i64::MAX;

#[test]
fn inbox_conversation_reaches_customer_and_every_agent() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(conv.host(), "localhost");
    let added: Vec<PartyId> = f.deliveries().iter().map(|d| d.0).collect();
    assert_eq!(added, vec![1, 3, 4]);

    assert_eq!(sent_seq(f.send(alice(), &conv, "m1")), (1, false));
    assert_eq!(sent_seq(f.send(agent_b(), &conv, "r1")), (2, false));
    // Each party's log is gapless: added (1), message (2), reply (3).
    for p in [1, 3, 4] {
        let seqs: Vec<u64> = f
            .deliveries()
            .iter()
            .filter(|d| d.0 == p)
            .map(|d| d.1)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "party {p}");
    }
}

#[test]
fn retrying_a_client_msg_id_stores_nothing_new() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(sent_seq(f.send(alice(), &conv, "same")), (1, false));
    let events_before = f.deliveries().len();
    assert_eq!(sent_seq(f.send(alice(), &conv, "same")), (1, true));
    assert_eq!(f.deliveries().len(), events_before, "nothing new to tell");
    let stored = ready(f.store.history(1, 0, 10)).expect("history").0;
    assert_eq!(stored.len(), 1, "nothing new stored");
    // The same id from another sender is another message.
    assert_eq!(sent_seq(f.send(agent_a(), &conv, "same")), (2, false));
}

#[test]
fn sends_to_a_conversation_created_here_need_no_lookup() {
    let mut f = Fixture::new();
    f.engine().verify_sends_until(ALWAYS);
    let conv = f.open_with_support();
    f.send(alice(), &conv, "first");
    let needs = f.engine().needs(&Command::Send {
        by: alice(),
        conversation: conv,
        client_msg_id: "new".into(),
        body: text("x"),
    });
    assert!(needs.is_empty(), "{needs:?}");
}

/// A conversation with history, loaded from the store: the engine cannot
/// know which client message ids it holds.
fn loaded_conversation(f: &mut Fixture) -> ConversationId {
    let conv: ConversationId = "localhost/stored".parse().expect("id");
    f.engine().load_conversation(ConversationRecord {
        key: 1,
        id: conv.clone(),
        subject: String::new(),
        created_at_ms: 0,
        last_seq: 7,
        last_activity_ms: 0,
        members: vec![alice(), support()],
    });
    f.engine().load_inbox_agents(2, vec![3, 4]);
    conv
}

#[test]
fn unverified_sends_trust_the_store_to_catch_old_ids() {
    let mut f = Fixture::new();
    let conv = loaded_conversation(&mut f);
    let cmd = Command::Send {
        by: alice(),
        conversation: conv,
        client_msg_id: "maybe-old".into(),
        body: text("x"),
    };
    assert!(
        !f.engine()
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. })),
        "an unverified send is looked up nowhere"
    );
    f.engine().verify_sends_until(ALWAYS);
    assert!(
        f.engine()
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. })),
        "a verified send is looked up"
    );
    // Verification survives a reset: it is the driver's choice, not cache.
    f.engine().reset(Counters {
        max_key: 1,
        max_party: 5,
        ..Counters::default()
    });
    loaded_conversation(&mut f);
    assert!(
        f.engine()
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. }))
    );
}

#[test]
fn prior_send_from_the_store_is_honoured() {
    let mut f = Fixture::new();
    f.engine().verify_sends_until(ALWAYS);
    let conv = loaded_conversation(&mut f);
    let key = 1;
    let cmd = Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "old".into(),
        body: text("x"),
    };
    for need in f.engine().needs(&cmd) {
        match need {
            Need::PriorSend {
                key: k,
                sender,
                client_msg_id,
            } => {
                assert_eq!((k, sender), (key, 1));
                f.engine().load_prior_send(
                    k,
                    sender,
                    client_msg_id,
                    Some(StoredSend {
                        seq: 7,
                        sent_at_ms: 5,
                    }),
                );
            }
            Need::Head(p) => f.engine().load_head(p, LogHead::default()),
            Need::InboxHead(i) => f.engine().load_inbox_head(i, InboxHead::default()),
            // The inbox's desk, as a store would say: none set up.
            Need::Desk(i) => f.engine().load_desk(i, None),
            other => panic!("unexpected need {other:?}"),
        }
    }
    let (reply, applied) = f.engine().apply(99, &cmd);
    assert_eq!(sent_seq(reply), (7, true));
    assert!(applied.writes.is_empty());
}

#[test]
fn outsiders_and_unknown_conversations_are_not_found() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert!(matches!(
        f.send(mallory(), &conv, "x"),
        Reply::Refused(Refusal {
            code: RefusalCode::NotFound,
            ..
        })
    ));
    let unknown: ConversationId = "localhost/nope".parse().expect("id");
    assert!(matches!(
        f.send(alice(), &unknown, "x"),
        Reply::Refused(Refusal {
            code: RefusalCode::NotFound,
            ..
        })
    ));
}

#[test]
fn receipts_only_move_forward() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    f.send(alice(), &conv, "1");
    f.send(alice(), &conv, "2");
    let mark = |up_to| Command::MarkReceipt {
        by: agent_a(),
        conversation: conv.clone(),
        kind: ReceiptKind::Read,
        up_to,
    };
    assert_eq!(f.run(mark(2)), Reply::Done);
    let events = f.deliveries().len();
    assert_eq!(f.run(mark(1)), Reply::Done);
    assert_eq!(
        f.deliveries().len(),
        events,
        "a lower watermark emits nothing"
    );
    assert!(matches!(
        f.run(mark(3)),
        Reply::Refused(Refusal {
            code: RefusalCode::BadRequest,
            ..
        })
    ));
    // After a restart (the engine forgets, the store remembers) a lower
    // mark still emits nothing.
    f.engine().reset(Counters {
        max_key: 1,
        max_party: 5,
        ..Counters::default()
    });
    assert_eq!(f.run(mark(1)), Reply::Done);
    assert_eq!(
        f.deliveries().len(),
        events,
        "the stored watermark was honoured"
    );
    let stored = ready(f.store.watermark(1, agent_a().id, ReceiptKind::Read));
    assert_eq!(stored.expect("watermark"), 2);
}

#[test]
fn reset_forgets_uncommitted_state() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    f.engine().reset(Counters::default());
    // The conversation must be reloaded: until then it is unknown.
    assert_eq!(
        f.engine().needs(&Command::Send {
            by: alice(),
            conversation: conv.clone(),
            client_msg_id: "x".into(),
            body: text("x"),
        }),
        vec![Need::Conversation(conv)]
    );
}

#[test]
fn an_overfull_cache_is_dropped_and_reloaded_without_losing_order() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(sent_seq(f.send(alice(), &conv, "1")), (1, false));
    // Fill the conversation cache past its bound with other conversations.
    for i in 0..=MAX_CACHED {
        f.engine().load_conversation(ConversationRecord {
            key: 1_000 + i as i64,
            id: ConversationId::new("localhost", &format!("filler{i}")).expect("id"),
            subject: String::new(),
            created_at_ms: 0,
            last_seq: 0,
            last_activity_ms: 0,
            members: vec![],
        });
    }
    f.engine().finish_batch();
    let cmd = Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "2".into(),
        body: text("x"),
    };
    assert_eq!(
        f.engine().needs(&cmd),
        vec![Need::Conversation(conv.clone())]
    );
    // Reloaded from the store (as the writer would), numbering continues.
    f.engine().load_conversation(ConversationRecord {
        key: 1,
        id: conv.clone(),
        subject: "washer".into(),
        created_at_ms: 0,
        last_seq: 1,
        last_activity_ms: 0,
        members: vec![alice(), support()],
    });
    assert_eq!(sent_seq(f.send(alice(), &conv, "2")), (2, false));
    // A retry of the first message is still recognised.
    assert_eq!(sent_seq(f.send(alice(), &conv, "1")), (1, true));
}

// --- inbox logs ------------------------------------------------------------------

impl Fixture {
    /// Creates a party through the engine.
    fn add(&mut self, local: &str, kind: PartyKind) -> Party {
        match self.run(Command::AddParty(NewParty {
            address: Address::new(local, "localhost").expect("valid"),
            kind,
            display_name: String::new(),
            password_hash: None,
        })) {
            Reply::Party(party) => party,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn add_agent(&mut self, inbox: &Party, agent: &Party) {
        let reply = self.run(Command::AddInboxAgent {
            inbox: inbox.clone(),
            agent: agent.clone(),
        });
        assert_eq!(reply, Reply::Done);
    }

    fn open(&mut self, by: Party, to: Vec<Party>, opaque: &str) -> ConversationId {
        match self.run(Command::CreateConversation {
            by,
            to,
            subject: "s".into(),
            opaque: opaque.into(),
        }) {
            Reply::Conversation(c) => c.id,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Every party's log, as the store replays it in pages of every size,
    /// equals what was published to it live, seq for seq; and the store's
    /// head of each log is its last seq.
    fn assert_logs_replay(&self, parties: &[PartyId]) {
        for &party in parties {
            let live: Vec<(u64, Event)> = self
                .published
                .iter()
                .flat_map(|p| {
                    p.recipients
                        .iter()
                        .filter(|(r, _)| *r == party)
                        .map(|&(_, seq)| (seq, p.event.clone()))
                })
                .collect();
            let seqs: Vec<u64> = live.iter().map(|(seq, _)| *seq).collect();
            let gapless: Vec<u64> = (1..=live.len() as u64).collect();
            assert_eq!(seqs, gapless, "party {party}'s live seqs");
            for page in [1, 2, 3, 1_000] {
                let mut replayed = Vec::new();
                loop {
                    let since = replayed.last().map_or(0, |(seq, _)| *seq);
                    let got = ready(self.store.events_since(party, since, page, usize::MAX))
                        .expect("replay");
                    if got.is_empty() {
                        break;
                    }
                    replayed.extend(got);
                }
                assert_eq!(replayed, live, "party {party}'s log in pages of {page}");
            }
            let head = ready(self.store.event_head(party)).expect("head");
            assert_eq!(head, live.len() as u64, "party {party}'s head");
        }
    }
}

#[test]
fn an_event_of_an_inbox_conversation_is_stored_once_for_all_its_agents() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(sent_seq(f.send(alice(), &conv, "m1")), (1, false));
    // Everything is cached now: the next send needs nothing, and its rows
    // are the message, the customer's event and one event of the inbox's
    // log; the agents follow that log without a row each.
    let cmd = Command::Send {
        by: agent_a(),
        conversation: conv.clone(),
        client_msg_id: "r1".into(),
        body: text("hello"),
    };
    assert_eq!(f.engine().needs(&cmd), vec![]);
    let (_, applied) = f.engine().apply(5_000, &cmd);
    let kinds: Vec<&str> = applied
        .writes
        .iter()
        .map(|w| match w {
            Write::Message { .. } => "message",
            Write::Event { party: 1, .. } => "alice's event",
            Write::InboxEvent { inbox: 2, .. } => "support's event",
            other => panic!("unexpected write {other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec!["message", "alice's event", "support's event"]);
    assert_eq!(deliveries(&applied.published), vec![(1, 3), (3, 3), (4, 3)]);
}

#[test]
fn agents_logs_through_inbox_logs_replay_exactly_as_they_were_published() {
    let mut f = Fixture::new();
    let sales = f.add("sales", PartyKind::Inbox);
    let carl = f.add("carl", PartyKind::Agent);
    // agent a answers for both inboxes; carl only for sales.
    f.add_agent(&sales, &agent_a());
    f.add_agent(&sales, &carl);
    let washer = f.open_with_support();
    let offer = f.open(mallory(), vec![sales.clone()], "offer");
    // Both inboxes in one conversation, and agent a a member of it too.
    let both = f.open(alice(), vec![sales.clone(), support(), agent_a()], "both");
    // A conversation of agents without inboxes: rows of their own.
    let direct = f.open(agent_a(), vec![agent_b()], "direct");
    for round in 0..4 {
        let id = |what: &str| format!("{what}{round}");
        f.send(alice(), &washer, &id("w"));
        f.send(agent_b(), &washer, &id("wr"));
        f.send(mallory(), &offer, &id("o"));
        f.send(carl.clone(), &offer, &id("or"));
        f.send(alice(), &both, &id("b"));
        f.send(agent_a(), &direct, &id("d"));
        f.send(agent_a(), &offer, &id("oa"));
        f.run(Command::MarkReceipt {
            by: agent_a(),
            conversation: washer.clone(),
            kind: ReceiptKind::Read,
            up_to: 2 * round + 2,
        });
    }
    // A new agent receives from its first event on.
    let dora = f.add("dora", PartyKind::Agent);
    f.add_agent(&support(), &dora);
    f.send(alice(), &washer, "late");
    f.send(alice(), &both, "late");
    let dora_seqs: Vec<u64> = f
        .deliveries()
        .iter()
        .filter(|(party, _)| *party == dora.id)
        .map(|(_, seq)| *seq)
        .collect();
    assert_eq!(dora_seqs, vec![1, 2], "both late messages, and only those");
    f.assert_logs_replay(&[1, 3, 4, 5, carl.id, dora.id]);
}

#[test]
fn a_restarted_engine_continues_agents_logs_from_the_store() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    f.send(alice(), &conv, "1");
    f.send(agent_a(), &conv, "2");
    // A new engine on the same store (as after a restart) learns from the
    // store that the agents follow the inbox's log, and continues it.
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    f.send(alice(), &conv, "3");
    let cmd = Command::Send {
        by: agent_b(),
        conversation: conv.clone(),
        client_msg_id: "4".into(),
        body: text("x"),
    };
    f.run(cmd);
    f.assert_logs_replay(&[1, 3, 4]);
}

#[test]
fn cached_audiences_are_dropped_past_their_bound_and_computed_again() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    f.send(alice(), &conv, "1");
    let cached = |f: &mut Fixture| {
        f.engine()
            .conversations
            .values()
            .filter(|state| state.audience.is_some())
            .count()
    };
    assert_eq!(cached(&mut f), 1);
    f.engine().audience_entries = MAX_AUDIENCE_ENTRIES + 1;
    f.engine().finish_batch();
    assert_eq!(cached(&mut f), 0, "dropped");
    assert_eq!(f.engine().audience_entries, 0);
    // The next send computes it again and reaches everyone as before.
    f.published.clear();
    assert_eq!(sent_seq(f.send(alice(), &conv, "2")), (2, false));
    let reached: Vec<PartyId> = f.deliveries().iter().map(|d| d.0).collect();
    assert_eq!(reached, vec![1, 3, 4]);
    assert_eq!(cached(&mut f), 1);
    assert_eq!(f.engine().audience_entries, 3);
}

/// The support inbox with a round-robin desk, agents a and b online.
fn desk_fixture() -> Fixture {
    let mut f = Fixture::new();
    let reply = f.run(Command::ConfigureDesk {
        inbox: support(),
        config: Box::default(),
        named: Vec::new(),
    });
    assert_eq!(reply, Reply::Done);
    for agent in [agent_a(), agent_b()] {
        let reply = f.run(Command::SetAvailability {
            agent,
            inbox: support(),
            availability: Availability::Online,
        });
        assert_eq!(reply, Reply::Done);
    }
    f
}

fn desk(f: &mut Fixture, by: Party, conv: &ConversationId, request: DeskRequest) -> Reply {
    f.run(Command::Desk {
        by,
        conversation: conv.clone(),
        request,
    })
}

fn owner(reply: Reply) -> Option<Address> {
    match reply {
        Reply::Ticket(ticket) => ticket.owner,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[test]
fn a_desk_assigns_in_turn_and_its_log_reaches_only_agents() {
    let mut f = desk_fixture();
    let conv = f.open_with_support();
    // Round robin: agent a first.
    assert_eq!(
        owner(desk(&mut f, agent_b(), &conv, DeskRequest::Get)),
        Some(agent_a().address)
    );
    f.published.clear();
    let reply = desk(
        &mut f,
        agent_b(),
        &conv,
        DeskRequest::Note {
            client_note_id: "n1".into(),
            text: "customer is on the premium plan".into(),
        },
    );
    let Reply::NoteAdded {
        dseq, duplicate, ..
    } = reply
    else {
        panic!("expected NoteAdded, got {reply:?}");
    };
    assert!(!duplicate);
    let told: Vec<PartyId> = f.deliveries().iter().map(|d| d.0).collect();
    assert_eq!(told, vec![3, 4], "the note reaches the agents, never alice");
    // A retried note is the same note.
    let again = desk(
        &mut f,
        agent_b(),
        &conv,
        DeskRequest::Note {
            client_note_id: "n1".into(),
            text: "customer is on the premium plan".into(),
        },
    );
    assert!(matches!(again, Reply::NoteAdded { dseq: d, duplicate: true, .. } if d == dseq));
    // The customer's replay holds no desk entry; the agents' does.
    let alice_log = ready(f.store.events_since(1, 0, 100, 1 << 20)).expect("replay");
    assert!(alice_log.iter().all(|(_, e)| !matches!(e, Event::Desk(_))));
    let agent_log = ready(f.store.events_since(4, 0, 100, 1 << 20)).expect("replay");
    assert!(agent_log.iter().any(|(_, e)| matches!(e, Event::Desk(_))));
    // The next conversation goes to agent b.
    let second = match f.run(Command::CreateConversation {
        by: mallory(),
        to: vec![support()],
        subject: "heater".into(),
        opaque: "def".into(),
    }) {
        Reply::Conversation(c) => c.id,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        owner(desk(&mut f, agent_a(), &second, DeskRequest::Get)),
        Some(agent_b().address)
    );
    // A customer may not use the desk.
    let refused = desk(&mut f, alice(), &conv, DeskRequest::Get);
    assert!(matches!(refused, Reply::Refused(r) if r.code == RefusalCode::NotAnAgent));
}

#[test]
fn an_agent_offline_past_the_grace_hands_its_conversations_to_one_online() {
    let mut f = desk_fixture();
    let conv = f.open_with_support();
    assert_eq!(
        owner(desk(&mut f, agent_a(), &conv, DeskRequest::Get)),
        Some(agent_a().address)
    );
    f.run(Command::SetAvailability {
        agent: agent_a(),
        inbox: support(),
        availability: Availability::Offline,
    });
    assert_eq!(
        owner(desk(&mut f, agent_a(), &conv, DeskRequest::Get)),
        Some(agent_a().address),
        "kept within the offline grace"
    );
    // The grace runs out: the deadline the engine asks for, a desk tick.
    let due = f.sequencer.poll_timeout().expect("the grace's deadline");
    assert_eq!(due, f.now + DeskSettings::default().offline_grace_ms - 10);
    f.now = due;
    let published = ready(f.sequencer.handle_timeout(due));
    f.published.extend(published);
    assert_eq!(
        owner(desk(&mut f, agent_a(), &conv, DeskRequest::Get)),
        Some(agent_b().address)
    );
    // Resolving and the desk's state survive a restart: a new engine reads
    // them back from the store.
    let resolved = desk(
        &mut f,
        agent_b(),
        &conv,
        DeskRequest::Status(crate::model::Status::Resolved { at_ms: 0 }),
    );
    assert!(matches!(resolved, Reply::Ticket(t) if t.status.is_resolved()));
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    let reply = desk(&mut f, agent_a(), &conv, DeskRequest::Get);
    assert!(matches!(reply, Reply::Ticket(t) if t.status.is_resolved() && t.last_dseq >= 4));
}

#[test]
fn every_resolution_asks_the_survey_once_and_answering_it_reopens_nothing() {
    use crate::core::desk::DeskConfig;
    use crate::model::{Csat, CsatScale, Status, Wire};
    use kanal_proto::pb;

    let mut f = Fixture::new();
    let mut config = DeskConfig::default();
    config.settings.csat = Some(Csat {
        scale: CsatScale::Stars,
        text: String::new(),
    });
    f.run(Command::ConfigureDesk {
        inbox: support(),
        config: Box::new(config),
        named: Vec::new(),
    });
    for agent in [agent_a(), agent_b()] {
        f.run(Command::SetAvailability {
            agent,
            inbox: support(),
            availability: Availability::Online,
        });
    }
    let conv = f.open_with_support();
    let key = ready(f.store.conversation_key(&conv))
        .expect("store")
        .expect("stored");
    let surveys = |f: &Fixture| -> Vec<(u64, String)> {
        ready(f.store.history(key, 0, 100))
            .expect("history")
            .0
            .into_iter()
            .filter(|m| m.sender == support().address && matches!(m.body, Body::Question(_)))
            .map(|m| (m.seq, m.client_msg_id))
            .collect()
    };
    let resolve = |f: &mut Fixture| {
        desk(
            f,
            agent_a(),
            &conv,
            DeskRequest::Status(Status::Resolved { at_ms: 0 }),
        )
    };
    resolve(&mut f);
    resolve(&mut f);
    let first = surveys(&f);
    assert_eq!(first.len(), 1, "one survey for one resolution: {first:?}");

    // The customer answers: the conversation stays resolved.
    let answer = Body::Answer(Wire(pb::Answer {
        question_seq: first[0].0,
        text: "5/5".into(),
        value: Some(pb::answer::Value::Rating(pb::RatingAnswer {
            score: 5,
            comment: String::new(),
        })),
    }));
    let sent = f.run(Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "rating-1".into(),
        body: answer,
    });
    assert!(matches!(sent, Reply::Sent(_)), "{sent:?}");
    let ticket = desk(&mut f, agent_a(), &conv, DeskRequest::Get);
    assert!(matches!(ticket, Reply::Ticket(t) if t.status.is_resolved()));
    // The answer is the resolution's rating, in the desk log; the survey
    // is remembered across a restart, where a changed answer rates anew.
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    let again = Body::Answer(Wire(pb::Answer {
        question_seq: first[0].0,
        text: String::new(),
        value: Some(pb::answer::Value::Rating(pb::RatingAnswer {
            score: 4,
            comment: "slow at first".into(),
        })),
    }));
    let sent = f.run(Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "rating-2".into(),
        body: again,
    });
    assert!(matches!(sent, Reply::Sent(_)), "{sent:?}");
    let ratings: Vec<(String, pb::DeskRating)> = ready(f.store.desk_entries(key, 0, 100))
        .expect("desk log")
        .0
        .into_iter()
        .filter_map(|e| {
            let event = <pb::DeskEvent as prost::Message>::decode(e.payload).expect("entry");
            match event.kind {
                Some(pb::desk_event::Kind::Rating(r)) => Some((event.actor, r)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(ratings.len(), 2, "{ratings:?}");
    assert_eq!(ratings[0].0, alice().address.to_string());
    assert_eq!(ratings[0].1.score, 5);
    assert_eq!(ratings[0].1.resolved_by, agent_a().address.to_string());
    assert_eq!(ratings[0].1.scale, pb::RatingScale::Stars as i32);
    assert_eq!(ratings[1].1.score, 4);
    assert_eq!(ratings[1].1.comment, "slow at first");
    assert_eq!(ratings[0].1.resolution_dseq, ratings[1].1.resolution_dseq);

    // A message reopens it; the second resolution asks again.
    f.send(alice(), &conv, "again");
    resolve(&mut f);
    let both = surveys(&f);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_ne!(both[0].1, both[1].1, "each resolution's own survey");
}

#[test]
fn a_customer_writing_while_closed_is_told_when_it_opens_once_per_closed_period() {
    use crate::core::desk::DeskConfig;

    let mut f = Fixture::new();
    let mut config = DeskConfig {
        // The fixture's clock starts on Thursday 1 January 1970, 00:00 UTC.
        hours: "mon-fri 09:00-17:00; zone UTC".parse().expect("hours"),
        ..DeskConfig::default()
    };
    config.settings.out_of_hours_reply = Some("Back at {{opens}}.".into());
    f.run(Command::ConfigureDesk {
        inbox: support(),
        config: Box::new(config),
        named: Vec::new(),
    });
    let conv = f.open_with_support();
    let key = ready(f.store.conversation_key(&conv))
        .expect("store")
        .expect("stored");
    let replies = |f: &Fixture| -> Vec<String> {
        ready(f.store.history(key, 0, 100))
            .expect("history")
            .0
            .into_iter()
            .filter(|m| m.sender == support().address)
            .map(|m| m.body.text().to_owned())
            .collect()
    };
    f.send(alice(), &conv, "hello?");
    f.send(alice(), &conv, "anyone?");
    assert_eq!(replies(&f), ["Back at Thu 1 Jan 09:00 (UTC)."], "once");
    // Open: nothing. Closed again that evening: told again.
    f.now = 10 * 3_600_000;
    f.send(alice(), &conv, "now?");
    assert_eq!(replies(&f).len(), 1);
    f.now = 18 * 3_600_000;
    f.send(alice(), &conv, "and now?");
    assert_eq!(
        replies(&f),
        [
            "Back at Thu 1 Jan 09:00 (UTC).",
            "Back at Fri 2 Jan 09:00 (UTC)."
        ]
    );
    // The reply follows the customer's message it answers.
    let stored = ready(f.store.history(key, 0, 100)).expect("history").0;
    let texts: Vec<&str> = stored.iter().map(|m| m.body.text()).collect();
    assert_eq!(
        texts,
        [
            "hi",
            "Back at Thu 1 Jan 09:00 (UTC).",
            "hi",
            "hi",
            "hi",
            "Back at Fri 2 Jan 09:00 (UTC)."
        ]
    );
}

#[test]
fn the_desk_log_goes_on_after_a_restart_when_only_notes_were_added() {
    let mut f = desk_fixture();
    let conv = f.open_with_support();
    let note = |f: &mut Fixture, id: &str| {
        desk(
            f,
            agent_a(),
            &conv,
            DeskRequest::Note {
                client_note_id: id.into(),
                text: "a note".into(),
            },
        )
    };
    let Reply::NoteAdded { dseq: first, .. } = note(&mut f, "n1") else {
        panic!("a note");
    };
    // The note changed nothing of the ticket but where its log ends: a
    // new engine must carry on after it, not write over it.
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    let reply = note(&mut f, "n2");
    assert!(
        matches!(reply, Reply::NoteAdded { dseq, duplicate: false, .. } if dseq == first + 1),
        "{reply:?}"
    );
}

/// A conversation alice started with an inbox of `host.example`, which
/// hosts it: its remote inbox stored, the replica created here.
fn open_with_remote(f: &mut Fixture) -> (ConversationId, Party) {
    let remote = Party {
        id: 6,
        address: "support@host.example".parse().expect("valid"),
        kind: PartyKind::Inbox,
        display_name: String::new(),
    };
    ready(f.store.commit(vec![Write::NewParty {
        id: remote.id,
        party: NewParty {
            address: remote.address.clone(),
            kind: remote.kind,
            display_name: String::new(),
            password_hash: None,
        },
        created_at_ms: 0,
    }]))
    .expect("remote party");
    let id = match f.run(Command::CreateConversation {
        by: alice(),
        to: vec![remote.clone()],
        subject: "heater".into(),
        opaque: "rem".into(),
    }) {
        Reply::Conversation(c) => c.id,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(id.host(), "host.example");
    (id, remote)
}

/// The host's transaction `peer_seq` toward this server: message `seq` of
/// the conversation.
fn posted(
    conversation: &ConversationId,
    peer_seq: u64,
    seq: u64,
    sender: &Party,
    cmid: &str,
) -> Command {
    Command::Federated {
        origin: "host.example".into(),
        seq: peer_seq,
        transaction: Some(Box::new(crate::model::Transaction::Replicate {
            conversation: conversation.clone(),
            what: crate::model::Replicated::Posted {
                seq,
                sender: sender.address.clone(),
                client_msg_id: cmid.into(),
                sent_at_ms: 5,
                body: text("hi"),
            },
        })),
    }
}

#[test]
fn a_host_replicates_only_what_this_servers_parties_submitted() {
    let mut f = Fixture::new();
    let (id, _) = open_with_remote(&mut f);
    let sent = f.send(alice(), &id, "c1");
    assert!(
        matches!(&sent, Reply::Sent(s) if s.relayed && s.seq == 0),
        "{sent:?}"
    );

    // Its own message comes back ordered: applied.
    assert_eq!(f.run(posted(&id, 1, 1, &alice(), "c1")), Reply::Done);
    // A message of alice's she never sent: refused, nothing stored.
    match f.run(posted(&id, 2, 2, &alice(), "forged")) {
        Reply::Refused(r) => assert_eq!(r.code, RefusalCode::ForgedOrigin, "{r:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let key = ready(f.store.load_conversation(&id))
        .expect("load")
        .expect("replica")
        .key;
    let (messages, _) = ready(f.store.history(key, 0, 10)).expect("history");
    let seqs: Vec<(u64, String)> = messages
        .iter()
        .map(|m| (m.seq, m.client_msg_id.clone()))
        .collect();
    assert_eq!(seqs, [(1, "c1".to_owned())]);

    // After a restart of the engine, what was submitted is still known.
    let sent = f.send(alice(), &id, "c2");
    assert!(matches!(&sent, Reply::Sent(s) if s.relayed), "{sent:?}");
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    assert_eq!(f.run(posted(&id, 3, 2, &alice(), "c2")), Reply::Done);
    let (messages, _) = ready(f.store.history(key, 0, 10)).expect("history");
    assert_eq!(messages.len(), 2, "c2 stored");
}

/// The stored messages of conversation `key`, by client message id.
fn stored_ids(f: &Fixture, key: i64) -> Vec<String> {
    let (messages, _) = ready(f.store.history(key, 0, 10)).expect("history");
    messages.into_iter().map(|m| m.client_msg_id).collect()
}

#[test]
fn a_peers_transactions_are_consumed_once_and_in_order_whatever_the_link_offers() {
    let mut f = Fixture::new();
    let (id, _) = open_with_remote(&mut f);
    for cmid in ["c1", "c2", "c3"] {
        f.send(alice(), &id, cmid);
    }
    assert_eq!(f.run(posted(&id, 1, 1, &alice(), "c1")), Reply::Done);
    let key = ready(f.store.load_conversation(&id))
        .expect("load")
        .expect("replica")
        .key;
    // Offered again (a link that forgot it was applied): nothing changes.
    assert_eq!(f.run(posted(&id, 1, 1, &alice(), "c1")), Reply::Done);
    assert_eq!(stored_ids(&f, key), ["c1"]);
    // Transaction 3 before 2: not consumed, and 2 is not skipped.
    match f.run(posted(&id, 3, 3, &alice(), "c3")) {
        Reply::Refused(r) => assert_eq!(r.code, RefusalCode::Internal, "{r:?}"),
        other => panic!("expected a refusal for now, got {other:?}"),
    }
    assert_eq!(
        ready(f.store.peer_committed("host.example")).expect("cursor"),
        1
    );
    // A restarted engine reads the cursor from the store, and goes on.
    f.sequencer = ready(Sequencer::new(f.store.clone(), "localhost".into())).expect("sequencer");
    assert_eq!(f.run(posted(&id, 1, 1, &alice(), "c1")), Reply::Done);
    assert_eq!(f.run(posted(&id, 2, 2, &alice(), "c2")), Reply::Done);
    assert_eq!(f.run(posted(&id, 3, 3, &alice(), "c3")), Reply::Done);
    assert_eq!(stored_ids(&f, key), ["c1", "c2", "c3"]);
    assert_eq!(
        ready(f.store.peer_committed("host.example")).expect("cursor"),
        3
    );
}
