//! A simulated client, behaving as Kanal's client does: every request is
//! retried until answered (sends are idempotent by their client message
//! id), events are taken strictly in seq order, and a gap or a short
//! replay makes it sync again.

use std::collections::BTreeMap;

use kanal_proto::address::ConversationId;

use super::node::ToNode;
use crate::core::engine::{Command, Reply};
use crate::model::{Body, Event, Party};

/// How long a client waits for an answer before it asks again, ms.
pub(super) const RETRY_MS: i64 = 200;

/// What a node sends a client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToClient {
    /// The answer to request `request`.
    Replied {
        /// The client's request number.
        request: u64,
        /// The answer.
        reply: Reply,
    },
    /// An event of the client's party's log.
    Event {
        /// Its seq in the log.
        seq: u64,
        /// What happened.
        event: Event,
    },
    /// The replay reached the log's head.
    SyncComplete {
        /// The head when the replay ended.
        head: u64,
    },
}

/// A client of the simulation.
#[derive(Debug)]
pub(crate) struct SimClient {
    /// Its node.
    pub node: usize,
    /// Who it is.
    pub party: Party,
    /// Its log as received: every seq once, in order, from 1.
    pub events: Vec<(u64, Event)>,
    /// When each of `events` arrived, ms of virtual time.
    pub received_at: Vec<i64>,
    /// Answers, by request number.
    pub replies: BTreeMap<u64, Reply>,
    /// Requests not yet answered, with when they were last sent.
    pending: BTreeMap<u64, (Command, i64)>,
    next_request: u64,
    /// When the outstanding Sync was sent, if one is.
    syncing: Option<i64>,
    /// When set, the client also syncs every this many ms, forever.
    poll_every_ms: Option<i64>,
    next_poll: Option<i64>,
}

impl SimClient {
    pub(super) fn new(node: usize, party: Party) -> Self {
        Self {
            node,
            party,
            events: Vec::new(),
            received_at: Vec::new(),
            replies: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 1,
            syncing: None,
            poll_every_ms: None,
            next_poll: None,
        }
    }

    /// The last seq of the log held.
    pub(crate) fn last(&self) -> u64 {
        self.events.last().map_or(0, |(seq, _)| *seq)
    }

    /// Whether every request has been answered.
    pub(crate) fn is_settled(&self) -> bool {
        self.pending.is_empty() && self.syncing.is_none()
    }

    /// Has the client also sync every `every_ms` from `now` on, forever.
    pub(super) fn poll_every(&mut self, every_ms: i64, now: i64) {
        self.poll_every_ms = Some(every_ms);
        self.next_poll = Some(now + every_ms);
    }

    pub(super) fn start_sync(&mut self, now: i64) -> Vec<ToNode> {
        self.syncing = Some(now);
        vec![ToNode::Sync {
            party: self.party.id,
            since: self.last(),
        }]
    }

    pub(super) fn create(&mut self, to: Vec<Party>, subject: &str, now: i64) -> Vec<ToNode> {
        let opaque = format!("sim{}x{}", self.party.id, self.next_request);
        self.request(
            Command::CreateConversation {
                by: self.party.clone(),
                to,
                subject: subject.to_owned(),
                opaque,
            },
            now,
        )
    }

    pub(super) fn send(
        &mut self,
        conversation: &ConversationId,
        client_msg_id: &str,
        body: Body,
        now: i64,
    ) -> Vec<ToNode> {
        self.request(
            Command::Send {
                by: self.party.clone(),
                conversation: conversation.clone(),
                client_msg_id: client_msg_id.to_owned(),
                body,
            },
            now,
        )
    }

    fn request(&mut self, command: Command, now: i64) -> Vec<ToNode> {
        let request = self.next_request;
        self.next_request += 1;
        self.pending.insert(request, (command.clone(), now));
        vec![ToNode::Command { request, command }]
    }

    pub(super) fn receive(&mut self, message: ToClient, now: i64) -> Vec<ToNode> {
        match message {
            ToClient::Replied { request, reply } => {
                if self.pending.remove(&request).is_some() {
                    self.replies.insert(request, reply);
                }
                Vec::new()
            }
            ToClient::Event { seq, event } => {
                let last = self.last();
                if seq == last + 1 {
                    self.events.push((seq, event));
                    self.received_at.push(now);
                    Vec::new()
                } else if seq > last + 1 && self.syncing.is_none() {
                    // A gap: something was lost on the way; the node has it.
                    self.start_sync(now)
                } else {
                    Vec::new() // Seen already, or a sync is under way.
                }
            }
            ToClient::SyncComplete { head } => {
                if self.syncing.is_none() {
                    return Vec::new(); // A duplicate of an answered sync.
                }
                self.syncing = None;
                if self.last() < head {
                    // Part of the replay was lost: ask again from where we are.
                    self.start_sync(now)
                } else {
                    Vec::new()
                }
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<i64> {
        let retries = self.pending.values().map(|(_, at)| at + RETRY_MS);
        let sync = self.syncing.map(|at| at + RETRY_MS);
        retries.chain(sync).chain(self.next_poll).min()
    }

    pub(super) fn handle_timeout(&mut self, now: i64) -> Vec<ToNode> {
        let mut out = Vec::new();
        for (request, (command, at)) in &mut self.pending {
            if *at + RETRY_MS <= now {
                *at = now;
                out.push(ToNode::Command {
                    request: *request,
                    command: command.clone(),
                });
            }
        }
        let sync_due = self.syncing.is_some_and(|at| at + RETRY_MS <= now);
        let poll_due = self.next_poll.is_some_and(|at| at <= now);
        if poll_due {
            self.next_poll = None;
        }
        if let Some(every) = self.poll_every_ms
            && self.next_poll.is_none()
        {
            self.next_poll = Some(now + every);
        }
        if sync_due || poll_due {
            out.extend(self.start_sync(now));
        }
        out
    }
}
