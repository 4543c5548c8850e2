//! The engine driven in memory: a fixture directory answers its needs, as
//! the writer answers them from the store.

use std::collections::HashMap;

use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;

use super::*;
use crate::model::{PartyKind, Write};

struct Fixture {
    engine: Engine,
    agents: HashMap<PartyId, Vec<PartyId>>,
    committed: Vec<Write>,
    deliveries: Vec<Delivery>,
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

fn text(s: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(s.into())),
    }
}

impl Fixture {
    fn new() -> Self {
        let mut agents = HashMap::new();
        agents.insert(2, vec![3, 4]);
        Self {
            engine: Engine::new("localhost", 0),
            agents,
            committed: Vec::new(),
            deliveries: Vec::new(),
            now: 1_000,
        }
    }

    /// Answers needs from the fixture and the committed rows, then applies.
    fn run(&mut self, cmd: Command) -> Reply {
        for _round in 0..4 {
            let needs = self.engine.needs(&cmd);
            if needs.is_empty() {
                break;
            }
            for need in needs {
                match need {
                    Need::Conversation(_) => {} // unknown ids stay unknown
                    Need::Head(p) => {
                        let head = self
                            .committed
                            .iter()
                            .filter_map(|w| match w {
                                Write::Event { party, seq, .. } if *party == p => Some(*seq),
                                _ => None,
                            })
                            .max()
                            .unwrap_or(0);
                        self.engine.load_head(p, head);
                    }
                    Need::InboxAgents(i) => {
                        let a = self.agents.get(&i).cloned().unwrap_or_default();
                        self.engine.load_inbox_agents(i, a);
                    }
                    Need::PriorSend {
                        key,
                        sender,
                        client_msg_id,
                    } => self
                        .engine
                        .load_prior_send(key, sender, client_msg_id, None),
                    Need::Watermark {
                        conversation,
                        party,
                        kind,
                    } => {
                        let up_to = self
                            .committed
                            .iter()
                            .filter_map(|w| match w {
                                Write::Watermark {
                                    party: p,
                                    kind: k,
                                    up_to,
                                    ..
                                } if *p == party && *k == kind => Some(*up_to),
                                _ => None,
                            })
                            .max()
                            .unwrap_or(0);
                        self.engine
                            .load_watermark(&conversation, party, kind, up_to);
                    }
                }
            }
        }
        self.now += 10;
        let (reply, applied) = self.engine.apply(self.now, &cmd);
        self.engine.finish_batch();
        self.committed.extend(applied.writes);
        self.deliveries.extend(applied.deliveries);
        reply
    }

    fn open_with_support(&mut self) -> ConversationId {
        match self.run(Command::CreateConversation {
            by: alice(),
            to: vec![support()],
            subject: "washer".into(),
            opaque: "abc".into(),
        }) {
            Reply::Conversation(c) => c.id.parse().expect("id"),
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

#[test]
fn inbox_conversation_reaches_customer_and_every_agent() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(conv.host(), "localhost");
    let added: Vec<PartyId> = f.deliveries.iter().map(|d| d.party).collect();
    assert_eq!(added, vec![1, 3, 4]);

    assert_eq!(sent_seq(f.send(alice(), &conv, "m1")), (1, false));
    assert_eq!(sent_seq(f.send(agent_b(), &conv, "r1")), (2, false));
    // Each party's log is gapless: added (1), message (2), reply (3).
    for p in [1, 3, 4] {
        let seqs: Vec<u64> = f
            .deliveries
            .iter()
            .filter(|d| d.party == p)
            .map(|d| d.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "party {p}");
    }
}

#[test]
fn retrying_a_client_msg_id_stores_nothing_new() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert_eq!(sent_seq(f.send(alice(), &conv, "same")), (1, false));
    let writes_before = f.committed.len();
    assert_eq!(sent_seq(f.send(alice(), &conv, "same")), (1, true));
    assert_eq!(f.committed.len(), writes_before);
    // The same id from another sender is another message.
    assert_eq!(sent_seq(f.send(agent_a(), &conv, "same")), (2, false));
}

#[test]
fn sends_to_a_conversation_created_here_need_no_lookup() {
    let mut f = Fixture::new();
    f.engine.verify_sends(true);
    let conv = f.open_with_support();
    f.send(alice(), &conv, "first");
    let needs = f.engine.needs(&Command::Send {
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
    f.engine.load_conversation(ConversationRecord {
        key: 1,
        id: conv.clone(),
        subject: String::new(),
        created_at_ms: 0,
        last_seq: 7,
        last_activity_ms: 0,
        members: vec![alice(), support()],
    });
    f.engine.load_inbox_agents(2, vec![3, 4]);
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
        !f.engine
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. })),
        "an unverified send is looked up nowhere"
    );
    f.engine.verify_sends(true);
    assert!(
        f.engine
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. })),
        "a verified send is looked up"
    );
    // Verification survives a reset: it is the driver's choice, not cache.
    f.engine.reset(1);
    loaded_conversation(&mut f);
    assert!(
        f.engine
            .needs(&cmd)
            .iter()
            .any(|n| matches!(n, Need::PriorSend { .. }))
    );
}

#[test]
fn prior_send_from_the_store_is_honoured() {
    let mut f = Fixture::new();
    f.engine.verify_sends(true);
    let conv = loaded_conversation(&mut f);
    let key = 1;
    let cmd = Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "old".into(),
        body: text("x"),
    };
    for need in f.engine.needs(&cmd) {
        match need {
            Need::PriorSend {
                key: k,
                sender,
                client_msg_id,
            } => {
                assert_eq!((k, sender), (key, 1));
                f.engine.load_prior_send(
                    k,
                    sender,
                    client_msg_id,
                    Some(StoredSend {
                        seq: 7,
                        sent_at_ms: 5,
                    }),
                );
            }
            Need::Head(p) => f.engine.load_head(p, 0),
            other => panic!("unexpected need {other:?}"),
        }
    }
    let (reply, applied) = f.engine.apply(99, &cmd);
    assert_eq!(sent_seq(reply), (7, true));
    assert!(applied.writes.is_empty());
}

#[test]
fn outsiders_and_unknown_conversations_are_not_found() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    assert!(matches!(
        f.send(mallory(), &conv, "x"),
        Reply::Refused(pb::ErrorCode::NotFound, _)
    ));
    let unknown: ConversationId = "localhost/nope".parse().expect("id");
    assert!(matches!(
        f.send(alice(), &unknown, "x"),
        Reply::Refused(pb::ErrorCode::NotFound, _)
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
    let events = f.deliveries.len();
    assert_eq!(f.run(mark(1)), Reply::Done);
    assert_eq!(
        f.deliveries.len(),
        events,
        "a lower watermark emits nothing"
    );
    assert!(matches!(
        f.run(mark(3)),
        Reply::Refused(pb::ErrorCode::BadRequest, _)
    ));
    // After a restart (the engine forgets, the store remembers) a lower
    // mark still emits nothing.
    f.engine.reset(1);
    f.engine.load_conversation(ConversationRecord {
        key: 1,
        id: conv.clone(),
        subject: String::new(),
        created_at_ms: 0,
        last_seq: 2,
        last_activity_ms: 0,
        members: vec![alice(), support()],
    });
    assert_eq!(f.run(mark(1)), Reply::Done);
    assert_eq!(
        f.deliveries.len(),
        events,
        "the stored watermark was honoured"
    );
    let watermarks = f
        .committed
        .iter()
        .filter(|w| matches!(w, Write::Watermark { .. }))
        .count();
    assert_eq!(watermarks, 1);
}

#[test]
fn reset_forgets_uncommitted_state() {
    let mut f = Fixture::new();
    let conv = f.open_with_support();
    f.engine.reset(0);
    // The conversation must be reloaded: until then it is unknown.
    assert_eq!(
        f.engine.needs(&Command::Send {
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
        f.engine.load_conversation(ConversationRecord {
            key: 1_000 + i as i64,
            id: ConversationId::new("localhost", &format!("filler{i}")).expect("id"),
            subject: String::new(),
            created_at_ms: 0,
            last_seq: 0,
            last_activity_ms: 0,
            members: vec![],
        });
    }
    f.engine.finish_batch();
    let cmd = Command::Send {
        by: alice(),
        conversation: conv.clone(),
        client_msg_id: "2".into(),
        body: text("x"),
    };
    assert_eq!(f.engine.needs(&cmd), vec![Need::Conversation(conv.clone())]);
    // Reloaded from the store (as the writer would), numbering continues.
    f.engine.load_conversation(ConversationRecord {
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
