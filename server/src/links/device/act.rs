//! What the gateway does with a device's frame (`DEVICES.md` §8, §9): the
//! device is a party like any other, so an `Open` is a conversation with
//! its inbox (and its owner, when linked) whose first message is a device
//! report, an `Append` a message, and a `Poll` a page of the device's own
//! event log — its mailbox. Everything goes through the node's writer.
//!
//! Acting on a request id once survives a restart without a table of its
//! own: a conversation's id and a message's client_msg_id are derived from
//! a digest of the frame, so a retransmission finds what the first copy
//! made; the in-memory answers only tell a retransmission from a reused id.

use std::collections::VecDeque;
use std::time::Duration;

use blake2::{Blake2s256, Digest as _};
use kanal_proto::address::ConversationId;
use kanal_proto::device::limits::{MAX_FRAME, MAX_TEXT};
use kanal_proto::device::{
    Append, Choice, DeviceFrame, ErrorCode, ErrorFrame, Message, Open, Opened, Poll, ServerAck,
    ServerFrame,
};

use crate::core::engine::{Command, Reply};
use crate::model::{Body, Device, Event, Party, Refusal, RefusalCode};
use crate::node::Node;

use super::choices;
use super::mailheads::{Clear, MailHeads};

/// Mailbox messages sent per poll answer.
pub(crate) const POLL_BATCH: usize = 4;

/// Events of the device's log read per poll, to find its messages among
/// its own and receipts.
const POLL_SCAN: u32 = 64;

/// Request ids remembered per device, with their frame's digest and answers.
const REMEMBERED: usize = 64;

/// What the gateway remembers of one device between its frames.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Recent request ids: (id, digest of the frame, encoded answers).
    answered: VecDeque<(u32, [u8; 32], Vec<Vec<u8>>)>,
    /// The highest request id seen.
    highest_id: u32,
    /// The highest mailbox id the device said it has.
    cursor: u64,
    /// The part of its log its last poll found without mail.
    clear: Option<Clear>,
}

/// How the gateway acts for devices.
pub(crate) struct Actor<'a> {
    pub node: &'a Node,
    /// How long an agent's message waits in a mailbox.
    pub mail_expiry: Duration,
    /// Where the devices' logs end, so an empty mailbox costs no read.
    pub mail: &'a MailHeads,
}

impl Actor<'_> {
    /// Acts on one decrypted frame of `device`; returns the encoded answers
    /// (the first rides in handshake message 2 when there is one). `allow`
    /// is asked before a request is acted on: the rate limit, `Err` with
    /// the seconds to wait.
    pub(crate) async fn act(
        &self,
        device: &Device,
        memory: &mut Memory,
        bytes: &[u8],
        allow: impl FnOnce() -> Result<(), u32>,
    ) -> Vec<Vec<u8>> {
        let frame = match DeviceFrame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                let code = e.code();
                let detail = match e {
                    kanal_proto::device::FrameError::FieldTooLarge { max, .. }
                    | kanal_proto::device::FrameError::FrameTooLarge { max } => {
                        u32::try_from(max).unwrap_or(u32::MAX)
                    }
                    _ => 0,
                };
                return vec![error(None, code, detail)];
            }
        };
        let digest: [u8; 32] = Blake2s256::new()
            .chain_update(device.key)
            .chain_update(bytes)
            .finalize()
            .into();
        let Some(id) = frame.id() else {
            if let DeviceFrame::Ack(ack) = frame {
                memory.cursor = memory.cursor.max(ack.upto);
            }
            return Vec::new();
        };
        if let Some((_, seen, answers)) = memory.answered.iter().find(|(i, ..)| *i == id) {
            if *seen != digest {
                return vec![error(Some(id), ErrorCode::IdReused, memory.highest_id)];
            }
            if !matches!(frame, DeviceFrame::Poll(_)) {
                return answers.clone();
            }
        }
        if let Err(seconds) = allow() {
            return vec![error(Some(id), ErrorCode::RateLimited, seconds)];
        }
        let answers = match &frame {
            DeviceFrame::Open(open) => vec![self.open(device, open, &digest).await],
            DeviceFrame::Append(append) => {
                vec![self.append(device, memory, append, &digest).await]
            }
            DeviceFrame::Poll(poll) => self.poll(device, memory, poll).await,
            DeviceFrame::Ack(_) => Vec::new(),
        };
        // Transient refusals are not remembered: the retransmission is
        // acted on afresh.
        let transient = answers.first().is_some_and(|a| is_transient_error(a));
        if !transient {
            memory.highest_id = memory.highest_id.max(id);
            if memory.answered.len() == REMEMBERED {
                memory.answered.pop_front();
            }
            memory.answered.push_back((id, digest, answers.clone()));
        }
        answers
    }

    async fn open(&self, device: &Device, open: &Open<'_>, digest: &[u8; 32]) -> Vec<u8> {
        let number = conversation_number(digest);
        match self.open_conversation(device, open, number, digest).await {
            Ok(()) => encode(&ServerFrame::Opened(Opened {
                id: open.id,
                conversation: number,
            })),
            Err(refusal) => refused(open.id, &refusal),
        }
    }

    async fn open_conversation(
        &self,
        device: &Device,
        open: &Open<'_>,
        number: u64,
        digest: &[u8; 32],
    ) -> Result<(), Refusal> {
        let node = self.node;
        let party = self.party(device.party).await?;
        let id = conversation_id(&node.domain, number);
        let exists = node.store.load_conversation(&id).await.map_err(internal)?;
        if exists.is_none() {
            let mut to = vec![self.party(device.inbox).await?];
            if let Some(owner) = device.owner {
                to.push(self.party(owner).await?);
            }
            let command = Command::CreateConversation {
                by: party.clone(),
                to,
                subject: open.topic.to_owned(),
                opaque: id.opaque().to_owned(),
            };
            if let Reply::Refused(refusal) = node.writer.submit(command).await {
                // A retransmission that raced the first copy finds it made.
                if node
                    .store
                    .load_conversation(&id)
                    .await
                    .map_err(internal)?
                    .is_none()
                {
                    return Err(refusal);
                }
            }
        }
        let body = Body::DeviceReport {
            text: open.text.to_owned(),
            diagnostics: open
                .diagnostics
                .iter()
                .map(|d| (d.key.to_owned(), d.value.to_owned()))
                .collect(),
        };
        self.send(party, id, open.id, digest, body).await
    }

    async fn append(
        &self,
        device: &Device,
        memory: &Memory,
        append: &Append<'_>,
        digest: &[u8; 32],
    ) -> Vec<u8> {
        let result = async {
            let party = self.party(device.party).await?;
            let id = conversation_id(&self.node.domain, append.conversation);
            let record = self
                .node
                .store
                .load_conversation(&id)
                .await
                .map_err(internal)?;
            if !record.is_some_and(|r| r.members.iter().any(|m| m.id == party.id)) {
                return Err(Refusal::new(RefusalCode::NotFound, "not this device's"));
            }
            let body = match append.choice {
                Some(choice) => self.picked(device, &id, choice).await,
                None => None,
            }
            .unwrap_or_else(|| Body::Text(append.text.to_owned()));
            self.send(party, id, append.id, digest, body).await
        }
        .await;
        match result {
            Ok(()) => {
                let pending = self.mailbox(device, memory.cursor).await.map_or(0, |m| m.1);
                ack(append.id, pending)
            }
            Err(refusal) => refused(append.id, &refusal),
        }
    }

    async fn poll(&self, device: &Device, memory: &mut Memory, poll: &Poll) -> Vec<Vec<u8>> {
        memory.cursor = memory.cursor.max(poll.cursor);
        // Watched before the read: what is committed during it is seen.
        let epoch = self.mail.watch(device.party);
        if self
            .mail
            .nothing_new(device.party, poll.cursor, memory.clear)
        {
            return vec![ack(poll.id, 0)];
        }
        let (messages, pending, through) = match self.mailbox(device, poll.cursor).await {
            Ok(found) => found,
            Err(refusal) => return vec![refused(poll.id, &refusal)],
        };
        memory.clear = (messages.is_empty() && pending == 0).then_some(Clear {
            from: poll.cursor,
            through,
            epoch,
        });
        let mut answers = Vec::with_capacity(messages.len() + 1);
        let mut prev = poll.cursor;
        for (id, conversation, body) in &messages {
            let text = cut(body.text(), MAX_TEXT);
            let replies = choices::offered(body);
            answers.push(encode_message(Message {
                id: *id,
                prev,
                conversation: *conversation,
                text,
                replies,
            }));
            prev = *id;
        }
        answers.push(ack(poll.id, pending));
        answers
    }

    /// The device's waiting messages after `cursor` (at most
    /// [`POLL_BATCH`]: id, conversation number, body) and how many more
    /// wait. A mailbox message is an event of the device's log: a message
    /// of another party, younger than the expiry.
    async fn mailbox(
        &self,
        device: &Device,
        cursor: u64,
    ) -> Result<(Vec<(u64, u64, Body)>, u32, u64), Refusal> {
        let node = self.node;
        // Its own messages are not mail. Its address is its serial at this
        // domain (`add_device`): no read of its party per poll.
        let own = |sender: &kanal_proto::address::Address| {
            sender.local().eq_ignore_ascii_case(&device.serial) && sender.domain() == node.domain
        };
        let events = node
            .store
            .events_since(
                device.party,
                cursor,
                POLL_SCAN,
                MAX_FRAME * POLL_SCAN as usize,
            )
            .await
            .map_err(internal)?;
        let scanned_all = events.len() < POLL_SCAN as usize;
        let through = events.last().map_or(cursor, |(seq, _)| *seq);
        let oldest = crate::node::writer::now_ms()
            - i64::try_from(self.mail_expiry.as_millis()).unwrap_or(i64::MAX);
        let mut mail = events.into_iter().filter_map(|(seq, event)| match event {
            Event::Message(message) if !own(&message.sender) && message.sent_at_ms >= oldest => {
                let number = conversation_number_of(&message.conversation)?;
                Some((seq, number, message.body))
            }
            _ => None,
        });
        let batch: Vec<_> = mail.by_ref().take(POLL_BATCH).collect();
        let more = mail.count();
        // More events than one scan: at least one more may wait.
        let pending = if scanned_all { more } else { more.max(1) };
        Ok((batch, u32::try_from(pending).unwrap_or(u32::MAX), through))
    }

    /// The answer a device's pick of a quick reply makes, when the message
    /// it names (a mailbox id: the device's event seq) is a question of
    /// conversation `id`; `None` when it is not (the pick is then stored
    /// as the text the device sent).
    async fn picked(&self, device: &Device, id: &ConversationId, choice: Choice) -> Option<Body> {
        let events = self
            .node
            .store
            .events_since(device.party, choice.message.checked_sub(1)?, 1, MAX_FRAME)
            .await
            .ok()?;
        match events.into_iter().next()? {
            (seq, Event::Message(message))
                if seq == choice.message && message.conversation == *id =>
            {
                choices::picked(&message.body, message.seq, choice.index)
            }
            _ => None,
        }
    }

    /// Stores `body` from `party` under a client_msg_id derived from the
    /// request: a retransmission is a duplicate send, stored once.
    async fn send(
        &self,
        party: Party,
        conversation: ConversationId,
        id: u32,
        digest: &[u8; 32],
        body: Body,
    ) -> Result<(), Refusal> {
        let command = Command::Send {
            by: party,
            conversation,
            client_msg_id: format!("device-{id}-{}", hex::encode(&digest[..8])),
            body,
        };
        match self.node.writer.submit(command).await {
            Reply::Refused(refusal) => Err(refusal),
            _ => Ok(()),
        }
    }

    async fn party(&self, id: crate::model::PartyId) -> Result<Party, Refusal> {
        self.node
            .store
            .party_by_id(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Refusal::internal(format!("party {id} is gone")))
    }
}

/// The conversation number a device knows an `Open`'s conversation by:
/// from the digest of the frame, so the same frame always names it.
fn conversation_number(digest: &[u8; 32]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The id of the device conversation numbered `number`: `domain/d` and 16
/// hex digits.
pub(crate) fn conversation_id(domain: &str, number: u64) -> ConversationId {
    ConversationId::new(domain, &format!("d{number:016x}")).expect("a valid conversation id")
}

/// The number of a device conversation's id; `None` for other ids.
pub(crate) fn conversation_number_of(id: &ConversationId) -> Option<u64> {
    let hex = id.opaque().strip_prefix('d')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::internal(e.to_string())
}

/// The device frame answering a refused request.
fn refused(id: u32, refusal: &Refusal) -> Vec<u8> {
    let (code, detail) = match refusal.code {
        RefusalCode::RateLimited => (
            ErrorCode::RateLimited,
            refusal
                .retry_after
                .map_or(1, |d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)),
        ),
        RefusalCode::NotFound => (ErrorCode::UnknownConversation, 0),
        RefusalCode::TooLarge => (ErrorCode::TooLarge, 0),
        RefusalCode::BadRequest => (ErrorCode::BadFrame, 0),
        _ => {
            tracing::warn!(code = ?refusal.code, message = %refusal.message, "a device request failed");
            (ErrorCode::Internal, 5)
        }
    };
    error(Some(id), code, detail)
}

fn ack(id: u32, pending: u32) -> Vec<u8> {
    encode(&ServerFrame::Ack(ServerAck {
        ids: heapless::Vec::from_slice(&[id]).expect("room for one id"),
        pending,
    }))
}

fn error(id: Option<u32>, code: ErrorCode, detail: u32) -> Vec<u8> {
    encode(&ServerFrame::Error(ErrorFrame {
        id,
        code: code.value(),
        detail,
    }))
}

/// Whether an encoded answer is a transient error.
fn is_transient_error(answer: &[u8]) -> bool {
    matches!(
        ServerFrame::decode(answer),
        Ok(ServerFrame::Error(ErrorFrame { code, .. }))
            if ErrorCode::from_value(code).is_some_and(ErrorCode::is_transient)
    )
}

/// Encodes a mailbox message, cutting its text further while the frame
/// exceeds `MAX_FRAME` (a long text with four long replies).
fn encode_message(mut message: Message<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    loop {
        let frame = ServerFrame::Message(message.clone());
        if let Ok(bytes) = frame.encode(&mut buf) {
            return bytes.to_vec();
        }
        let shorter = message.text.len().saturating_sub(16);
        message.text = cut(message.text, shorter);
    }
}

/// Encodes a server frame; every frame the gateway builds fits.
pub(crate) fn encode(frame: &ServerFrame<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    frame
        .encode(&mut buf)
        .map(|bytes| bytes.to_vec())
        .expect("the gateway's frames are within the limits")
}
