//! A test-only server side of the device profile, on `snow`: the reference
//! the server's gateway follows. It keeps everything in memory and does
//! exactly what `proto/DEVICES.md` asks of a server:
//!
//! 1. parse the wrapper and drop what cannot be valid, before any
//!    cryptography (length, type, version);
//! 2. check mac1 (proves the sender knows our public key) and, under load,
//!    mac2 (proves it receives at its address) — else answer a cookie;
//! 3. complete the IK handshake; drop unknown device keys silently;
//! 4. accept an initiation only above the device's last initiation counter
//!    (a replayed initiation changes nothing and is answered with
//!    `StaleInitiation` inside message 2);
//! 5. find transport sessions by receiver index, never by address, and
//!    follow the device to its latest authenticated address;
//! 6. act on a device message id once and repeat the first answer for a
//!    retransmission.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use blake2::Blake2s256;
use blake2::digest::Digest;
use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};
use kanal_firmware::profile::limits::{MAX_DATAGRAM, MAX_FRAME};
use kanal_firmware::profile::wire::{self, COOKIE, COOKIE_REPLY, Datagram, MAC, TAG};
use kanal_firmware::profile::{
    DeviceFrame, ErrorCode, ErrorFrame, Message, NOISE_PATTERN, Opened, ReplayWindow, ServerAck,
    ServerFrame,
};

/// Mailbox messages sent per poll answer.
const POLL_BATCH: usize = 4;

/// A conversation a device opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: u64,
    pub topic: String,
    pub texts: Vec<String>,
    pub diagnostics: Vec<(String, String)>,
}

/// A registered device and what the server keeps for it.
#[derive(Debug, Default)]
pub struct DeviceRecord {
    /// The highest initiation counter accepted.
    pub last_initiation: u32,
    pub conversations: Vec<Conversation>,
    /// Each device message id acted on: the frame (a gateway keeps a
    /// digest) and the encoded first answer.
    answered: HashMap<u32, (Vec<u8>, Vec<u8>)>,
    /// The highest device message id seen.
    pub highest_id: u32,
    /// Waiting agent messages by server message id: (conversation, text,
    /// quick replies).
    pub mailbox: BTreeMap<u64, (u64, String, Vec<String>)>,
    next_message: u64,
}

/// One established session, found by the server's index.
struct Session {
    device: [u8; 32],
    transport: snow::StatelessTransportState,
    /// The device's index: our datagrams name it.
    remote: u32,
    sent: u64,
    replay: ReplayWindow,
    /// Where the last authenticated datagram came from.
    peer: SocketAddr,
}

/// Counts of what the responder refused, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub wire: usize,
    pub mac: usize,
    pub cookie_sent: usize,
    pub handshake: usize,
    pub unknown_key: usize,
    pub stale: usize,
    pub unknown_index: usize,
    pub replay: usize,
    pub decrypt: usize,
}

pub struct Responder {
    secret: [u8; 32],
    public: [u8; 32],
    pub devices: HashMap<[u8; 32], DeviceRecord>,
    sessions: HashMap<u32, Session>,
    next_index: u32,
    next_conversation: u64,
    /// When set, initiations without a valid mac2 get a cookie reply.
    pub under_load: bool,
    cookie_secret: [u8; 32],
    cookie_nonce: u64,
    pub refusals: Refusals,
    /// Device message ids acted on (not repeated answers), in order.
    pub acted: Vec<u32>,
}

impl Responder {
    pub fn new(secret: [u8; 32], public: [u8; 32]) -> Self {
        Self {
            secret,
            public,
            devices: HashMap::new(),
            sessions: HashMap::new(),
            // Any allocation works if indices are unique among live
            // sessions; a real gateway draws them at random.
            next_index: 0x1000,
            next_conversation: 100,
            under_load: false,
            cookie_secret: [0x5c; 32],
            cookie_nonce: 0,
            refusals: Refusals::default(),
            acted: Vec::new(),
        }
    }

    pub fn register(&mut self, device_public: [u8; 32]) {
        self.devices.entry(device_public).or_default();
    }

    pub fn device(&self, device_public: &[u8; 32]) -> &DeviceRecord {
        &self.devices[device_public]
    }

    /// An agent's reply lands in the device's mailbox; returns its id.
    pub fn post(
        &mut self,
        device: &[u8; 32],
        conversation: u64,
        text: &str,
        replies: &[&str],
    ) -> u64 {
        let record = self.devices.get_mut(device).expect("registered");
        record.next_message += 1;
        let id = record.next_message;
        record.mailbox.insert(
            id,
            (
                conversation,
                text.to_owned(),
                replies.iter().map(|r| (*r).to_owned()).collect(),
            ),
        );
        id
    }

    /// The address the session with this server index answers to.
    pub fn peer_of_session(&self, index: u32) -> Option<SocketAddr> {
        self.sessions.get(&index).map(|s| s.peer)
    }

    pub fn session_indices(&self) -> Vec<u32> {
        let mut indices: Vec<u32> = self.sessions.keys().copied().collect();
        indices.sort_unstable();
        indices
    }

    /// A restart that loses the sessions (the registry stays).
    pub fn forget_sessions(&mut self) {
        self.sessions.clear();
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Handles one datagram from `from`; returns the datagrams to send.
    pub fn handle(&mut self, from: SocketAddr, datagram: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let Ok(parsed) = wire::parse(datagram) else {
            self.refusals.wire += 1;
            return Vec::new();
        };
        match parsed {
            Datagram::Initiation(init) => self.initiation(from, init),
            Datagram::Transport(transport) => self.transport(from, transport),
            Datagram::Response(_) | Datagram::CookieReply(_) => {
                self.refusals.wire += 1;
                Vec::new()
            }
        }
    }

    fn initiation(
        &mut self,
        from: SocketAddr,
        init: wire::Initiation<'_>,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mac1_key = labelled_hash(wire::MAC1_LABEL, &self.public);
        if keyed_mac(&mac1_key, init.mac1_input) != *init.mac1 {
            self.refusals.mac += 1;
            return Vec::new();
        }
        if self.under_load {
            let cookie = self.cookie_for(from);
            let valid_mac2 = init
                .mac2
                .is_some_and(|(mac2, input)| keyed_mac(&cookie, input) == *mac2);
            if !valid_mac2 {
                self.refusals.cookie_sent += 1;
                return vec![(from, self.cookie_reply(init.sender, &cookie, init.mac1))];
            }
        }

        let params = NOISE_PATTERN.parse().expect("a valid pattern");
        let prologue = wire::prologue(init.header);
        let mut handshake = snow::Builder::new(params)
            .local_private_key(&self.secret)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_responder())
            .expect("a responder");
        let mut payload = [0u8; MAX_DATAGRAM];
        let Ok(len) = handshake.read_message(init.noise, &mut payload) else {
            self.refusals.handshake += 1;
            return Vec::new();
        };
        let device: [u8; 32] = handshake
            .get_remote_static()
            .and_then(|key| key.try_into().ok())
            .expect("IK carries the initiator's static key");
        let Some(record) = self.devices.get_mut(&device) else {
            self.refusals.unknown_key += 1;
            return Vec::new();
        };

        let index = self.next_index;
        self.next_index += 1;
        let mut answers = Vec::new();
        let stale = init.counter <= record.last_initiation;
        if stale {
            self.refusals.stale += 1;
            answers.push(encode_server(&ServerFrame::Error(ErrorFrame {
                id: None,
                code: ErrorCode::StaleInitiation.value(),
                detail: record.last_initiation,
            })));
        } else {
            record.last_initiation = init.counter;
            answers = self.act(&device, &payload[..len]);
        }

        // Message 2 carries the first answer; the rest follow as transport.
        let mut out = vec![0u8; MAX_DATAGRAM];
        wire::write_response_header(&mut out, index, init.sender).expect("room");
        let first = answers.first().cloned().unwrap_or_default();
        let n = handshake
            .write_message(&first, &mut out[wire::RESPONSE_HEADER..])
            .expect("message 2");
        out.truncate(wire::RESPONSE_HEADER + n);
        let mut datagrams = vec![(from, out)];
        if stale {
            // Nothing was accepted: no session is kept.
            return datagrams;
        }
        let transport = handshake.into_stateless_transport_mode().expect("finished");
        let mut session = Session {
            device,
            transport,
            remote: init.sender,
            sent: 0,
            replay: ReplayWindow::new(),
            peer: from,
        };
        for answer in answers.iter().skip(1) {
            datagrams.push((from, seal(&mut session, answer)));
        }
        self.sessions.insert(index, session);
        datagrams
    }

    fn transport(
        &mut self,
        from: SocketAddr,
        transport: wire::Transport<'_>,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let Some(session) = self.sessions.get_mut(&transport.receiver) else {
            self.refusals.unknown_index += 1;
            return Vec::new();
        };
        if session.replay.check(transport.counter).is_err() {
            self.refusals.replay += 1;
            return Vec::new();
        }
        let mut frame = [0u8; MAX_DATAGRAM];
        let Ok(len) =
            session
                .transport
                .read_message(transport.counter, transport.ciphertext, &mut frame)
        else {
            self.refusals.decrypt += 1;
            return Vec::new();
        };
        session.replay.mark(transport.counter).expect("checked");
        // Roaming: answer where the device is now.
        session.peer = from;
        let device = session.device;
        let answers = self.act(&device, &frame[..len]);
        let session = self.sessions.get_mut(&transport.receiver).expect("present");
        answers
            .iter()
            .map(|answer| (session.peer, seal(session, answer)))
            .collect()
    }

    /// Acts on one device frame; returns the encoded answers.
    fn act(&mut self, device: &[u8; 32], bytes: &[u8]) -> Vec<Vec<u8>> {
        let record = self.devices.get_mut(device).expect("registered");
        let frame = match DeviceFrame::decode(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                return vec![encode_server(&ServerFrame::Error(ErrorFrame {
                    id: None,
                    code: err.code().value(),
                    detail: 0,
                }))];
            }
        };
        // A retransmission (same id, same bytes) gets the first answer
        // again; the same id on other bytes is refused, so a device whose
        // saved state went back in time renumbers instead of losing a
        // message. A poll is answered afresh (idempotent by nature).
        if let Some(id) = frame.id() {
            if let Some((first, answer)) = record.answered.get(&id) {
                if first.as_slice() != bytes {
                    return vec![encode_server(&ServerFrame::Error(ErrorFrame {
                        id: Some(id),
                        code: ErrorCode::IdReused.value(),
                        detail: record.highest_id,
                    }))];
                }
                if !matches!(frame, DeviceFrame::Poll(_)) {
                    return vec![answer.clone()];
                }
            }
            record.highest_id = record.highest_id.max(id);
        }
        match frame {
            DeviceFrame::Open(open) => {
                self.acted.push(open.id);
                let id = self.next_conversation;
                self.next_conversation += 1;
                record.conversations.push(Conversation {
                    id,
                    topic: open.topic.to_owned(),
                    texts: vec![open.text.to_owned()],
                    diagnostics: open
                        .diagnostics
                        .iter()
                        .map(|d| (d.key.to_owned(), d.value.to_owned()))
                        .collect(),
                });
                let answer = encode_server(&ServerFrame::Opened(Opened {
                    id: open.id,
                    conversation: id,
                }));
                record
                    .answered
                    .insert(open.id, (bytes.to_vec(), answer.clone()));
                vec![answer]
            }
            DeviceFrame::Append(append) => {
                self.acted.push(append.id);
                let answer = match record
                    .conversations
                    .iter_mut()
                    .find(|c| c.id == append.conversation)
                {
                    Some(conversation) => {
                        conversation.texts.push(append.text.to_owned());
                        encode_server(&ServerFrame::Ack(ServerAck {
                            ids: heapless::Vec::from_slice(&[append.id]).expect("room"),
                            pending: record.mailbox.len() as u32,
                        }))
                    }
                    None => encode_server(&ServerFrame::Error(ErrorFrame {
                        id: Some(append.id),
                        code: ErrorCode::UnknownConversation.value(),
                        detail: 0,
                    })),
                };
                record
                    .answered
                    .insert(append.id, (bytes.to_vec(), answer.clone()));
                vec![answer]
            }
            DeviceFrame::Poll(poll) => {
                self.acted.push(poll.id);
                record
                    .answered
                    .insert(poll.id, (bytes.to_vec(), Vec::new()));
                record.mailbox.retain(|&id, _| id > poll.cursor);
                let mut answers = Vec::new();
                let mut prev = poll.cursor;
                for (&id, (conversation, text, replies)) in record.mailbox.iter().take(POLL_BATCH) {
                    answers.push(encode_server(&ServerFrame::Message(Message {
                        id,
                        prev,
                        conversation: *conversation,
                        text,
                        replies: replies.iter().map(String::as_str).collect(),
                    })));
                    prev = id;
                }
                let pending = record.mailbox.len().saturating_sub(POLL_BATCH) as u32;
                answers.push(encode_server(&ServerFrame::Ack(ServerAck {
                    ids: heapless::Vec::from_slice(&[poll.id]).expect("room"),
                    pending,
                })));
                answers
            }
            DeviceFrame::Ack(ack) => {
                record.mailbox.retain(|&id, _| id > ack.upto);
                Vec::new()
            }
        }
    }

    fn cookie_for(&self, from: SocketAddr) -> [u8; COOKIE] {
        // A real gateway rotates the secret every two minutes.
        keyed_mac(&self.cookie_secret, from.to_string().as_bytes())
    }

    fn cookie_reply(&mut self, receiver: u32, cookie: &[u8; COOKIE], mac1: &[u8; MAC]) -> Vec<u8> {
        self.cookie_nonce += 1;
        let key = labelled_hash(wire::COOKIE_LABEL, &self.public);
        let mut sealed = [0u8; COOKIE + TAG];
        sealed[..COOKIE].copy_from_slice(cookie);
        let (body, tag_out) = sealed.split_at_mut(COOKIE);
        let tag = ChaCha20Poly1305::new(&key.into())
            .encrypt_in_place_detached(&noise_nonce(self.cookie_nonce).into(), mac1, body)
            .expect("seal");
        tag_out.copy_from_slice(&tag);
        let mut out = vec![0u8; COOKIE_REPLY];
        wire::write_cookie_reply(&mut out, receiver, self.cookie_nonce, &sealed).expect("room");
        out
    }
}

fn seal(session: &mut Session, frame: &[u8]) -> Vec<u8> {
    let counter = session.sent;
    session.sent += 1;
    let mut out = vec![0u8; wire::TRANSPORT_HEADER + frame.len() + TAG];
    wire::write_transport_header(&mut out, session.remote, counter).expect("room");
    session
        .transport
        .write_message(counter, frame, &mut out[wire::TRANSPORT_HEADER..])
        .expect("seal");
    out
}

pub fn encode_server(frame: &ServerFrame<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    frame.encode(&mut buf).expect("a valid frame").to_vec()
}

/// The Noise ChaChaPoly nonce: four zero bytes, then the counter
/// little-endian.
fn noise_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

fn labelled_hash(label: &[u8], public: &[u8; 32]) -> [u8; 32] {
    let mut hash = Blake2s256::new();
    hash.update(label);
    hash.update(public);
    hash.finalize().into()
}

/// The first 16 bytes of HMAC-BLAKE2s(key, input) (RFC 2104 with a
/// 64-byte block), written out here as a gateway would with its own crates.
fn keyed_mac(key: &[u8], input: &[u8]) -> [u8; MAC] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Blake2s256::new()
        .chain_update(pad(0x36))
        .chain_update(input)
        .finalize();
    let outer = Blake2s256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut mac = [0u8; MAC];
    mac.copy_from_slice(&outer[..MAC]);
    mac
}
