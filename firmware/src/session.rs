//! The device session: sans-IO, like quinn-proto. Feed it received
//! datagrams ([`DeviceSession::handle_datagram`]) and the time; take the
//! datagrams to send ([`DeviceSession::poll_transmit`]) and the next
//! deadline ([`DeviceSession::poll_timeout`]). It owns no socket and reads
//! no clock.
//!
//! Requests ([`open`](DeviceSession::open), [`append`](DeviceSession::append),
//! [`poll_mailbox`](DeviceSession::poll_mailbox)) are encoded at once into a
//! bounded outbox and retransmitted with exponential backoff until the
//! server answers. Without a session the oldest waiting request rides in
//! handshake message 1, so first contact is one round trip.

use heapless::Vec;
use kanal_proto::device::limits::{MAX_DATAGRAM, MAX_DIAGNOSTICS};
use kanal_proto::device::wire::{self, COOKIE, Datagram, MAC, TRANSPORT_HEADER};
use kanal_proto::device::{
    Append, Choice, DeviceAck, DeviceFrame, Diagnostic, ErrorCode, Open, Poll, ReplayWindow,
    ServerFrame,
};
use rand_core::{CryptoRng, RngCore};

pub use crate::config::DeviceConfig;
use crate::crypto::{self, Handshake, Identity, Key};
pub use crate::event::{DatagramError, Event, SendError, TransmitError};
use crate::fmt::{debug, log_warn};
use crate::outbox::Outbox;
use crate::snapshot::{self, SnapshotError};
use crate::time::Instant;

/// How long a cookie from the server stays usable, in milliseconds
/// (the server rotates its cookie secret every two minutes).
const COOKIE_LIFETIME_MS: u64 = 120_000;

/// A device's session with its server; `N` is the outbox capacity
/// (unanswered requests).
pub struct DeviceSession<R, const N: usize> {
    state: State<N>,
    rng: R,
    /// Decryption happens here, so events can borrow their text from it.
    rx: [u8; MAX_DATAGRAM],
}

/// Everything but the receive buffer, so a decoded frame can borrow the
/// buffer while the state changes.
struct State<const N: usize> {
    config: DeviceConfig,
    identity: Identity,
    current: Option<Transport>,
    previous: Option<Transport>,
    handshake: Option<PendingHandshake>,
    cookie: Option<([u8; COOKIE], Instant)>,
    outbox: Outbox<N>,
    next_id: u32,
    next_initiation: u32,
    cursor: u64,
    ack_due: bool,
    unread: u16,
    mail_waiting: bool,
    /// Retransmissions since the last authenticated datagram.
    silent: u16,
    handshake_backoff_ms: u32,
    next_handshake_at: Instant,
}

/// An established session's keys and counters.
struct Transport {
    local: u32,
    remote: u32,
    send: Key,
    receive: Key,
    sent: u64,
    replay: ReplayWindow,
    since: Instant,
}

/// An initiation sent and not yet answered.
struct PendingHandshake {
    state: Handshake,
    local: u32,
    mac1: [u8; MAC],
}

impl<R: RngCore + CryptoRng, const N: usize> DeviceSession<R, N> {
    /// A session for a device that has never talked to its server (or lost
    /// its saved state): nothing is sent until a request is queued.
    pub fn new(config: DeviceConfig, rng: R) -> Self {
        let identity = Identity::new(&config.device_secret, &config.server_public);
        let backoff = config.retransmit_initial_ms;
        Self {
            state: State {
                config,
                identity,
                current: None,
                previous: None,
                handshake: None,
                cookie: None,
                outbox: Outbox::new(),
                next_id: 1,
                next_initiation: 1,
                cursor: 0,
                ack_due: false,
                unread: 0,
                mail_waiting: false,
                silent: 0,
                handshake_backoff_ms: backoff,
                next_handshake_at: Instant(0),
            },
            rng,
            rx: [0; MAX_DATAGRAM],
        }
    }

    /// Length of the saved state ([`Self::save`]) of this session type, in
    /// bytes.
    pub const SAVED_LEN: usize = snapshot::saved_len(N);

    /// Restores the state [`Self::save`]d before deep sleep into this
    /// session (typically just created by [`Self::new`]; restoring in place
    /// keeps a second session off the stack). Session keys are never saved,
    /// so the first datagram is a new handshake (no counter can be reused);
    /// the unanswered requests are resent with their ids, and a mailbox poll
    /// is queued (the reason to wake). On an error the session is left as
    /// new.
    pub fn restore(&mut self, saved: &[u8], now: Instant) -> Result<(), SnapshotError> {
        let state = &mut self.state;
        state.current = None;
        state.previous = None;
        state.handshake = None;
        state.cookie = None;
        state.ack_due = false;
        state.mail_waiting = false;
        state.silent = 0;
        state.handshake_backoff_ms = state.config.retransmit_initial_ms;
        state.next_handshake_at = now;
        state.outbox.clear();
        let backoff = state.config.retransmit_initial_ms;
        let counters = match snapshot::restore(saved, &mut state.outbox, now, backoff) {
            Ok(counters) => counters,
            Err(err) => {
                state.outbox.clear();
                return Err(err);
            }
        };
        state.next_id = counters.next_id.max(1);
        state.next_initiation = counters.next_initiation.max(1);
        state.cursor = counters.cursor;
        state.unread = counters.unread;
        // A full outbox polls after its answers instead.
        let _ = self.poll_mailbox(now);
        Ok(())
    }

    /// Writes the state to keep across deep sleep into `out` (at least
    /// [`Self::SAVED_LEN`] bytes): counters, the mailbox cursor, the unread
    /// count and unanswered requests (see [`crate::snapshot`]).
    pub fn save(&self, out: &mut [u8]) -> Result<usize, SnapshotError> {
        let state = &self.state;
        let counters = snapshot::Counters {
            next_id: state.next_id,
            next_initiation: state.next_initiation,
            cursor: state.cursor,
            unread: state.unread,
        };
        snapshot::save(&counters, &state.outbox, out)
    }

    /// The device's static public key, as registered on the server.
    pub fn public_key(&self) -> [u8; 32] {
        self.state.identity.public_key()
    }

    /// Opens a conversation; returns its device message id (the
    /// [`Event::Opened`] answer names it).
    pub fn open(
        &mut self,
        now: Instant,
        topic: &str,
        text: &str,
        diagnostics: &[Diagnostic<'_>],
    ) -> Result<u32, SendError> {
        let diagnostics =
            Vec::from_slice(diagnostics).map_err(|_| SendError::TooManyDiagnostics {
                len: diagnostics.len(),
                max: MAX_DIAGNOSTICS,
            })?;
        self.state.queue(now, false, |id| {
            DeviceFrame::Open(Open {
                id,
                topic,
                text,
                diagnostics,
            })
        })
    }

    /// Adds a message to a conversation this device opened; `choice` picks
    /// a quick reply of a received message.
    pub fn append(
        &mut self,
        now: Instant,
        conversation: u64,
        text: &str,
        choice: Option<Choice>,
    ) -> Result<u32, SendError> {
        self.state.queue(now, false, |id| {
            DeviceFrame::Append(Append {
                id,
                conversation,
                text,
                choice,
            })
        })
    }

    /// Asks the server for waiting mailbox messages (on wake, or when the
    /// server said some are pending). A poll already waiting is reused.
    pub fn poll_mailbox(&mut self, now: Instant) -> Result<u32, SendError> {
        self.state.poll_mailbox(now)
    }

    /// Handles one received datagram (from any address: sessions are found
    /// by index). Returns what it meant, if anything; an error only says
    /// why it was dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Option<Event<'_>>, DatagramError> {
        let len = self.state.decrypt(now, datagram, &mut self.rx)?;
        let Some(len) = len else {
            return Ok(None);
        };
        let frame = ServerFrame::decode(&self.rx[..len])?;
        Ok(self.state.apply(now, frame))
    }

    /// Writes the next datagram to send into `out` (at least
    /// [`MAX_DATAGRAM`] bytes) and returns its length; `None` when nothing
    /// is due. Call until `None` after every input and at every deadline.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<usize>, TransmitError> {
        if out.len() < MAX_DATAGRAM {
            return Err(TransmitError::BufferTooSmall { len: out.len() });
        }
        self.state.transmit(now, &mut self.rng, out)
    }

    /// When [`Self::poll_transmit`] next has something to send, if ever
    /// (nothing waits: the device may sleep).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = &self.state;
        if state.current.is_none() {
            // Requests wait for a session: a new initiation is due with
            // the oldest request, an unanswered one on its backoff.
            return match state.handshake {
                None => state.outbox.earliest_due(),
                Some(_) => (!state.outbox.is_empty()).then_some(state.next_handshake_at),
            };
        }
        if state.ack_due {
            return Some(Instant(0));
        }
        state.outbox.earliest_due()
    }

    /// Whether an agent message waits unread: delivered and not yet
    /// [`Self::mark_read`], or announced by the server and not yet fetched.
    /// The notification LED shows this.
    pub fn has_unread(&self) -> bool {
        self.state.unread > 0 || self.state.mail_waiting
    }

    /// The user has read the delivered messages.
    pub fn mark_read(&mut self) {
        self.state.unread = 0;
    }

    /// Unanswered requests in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.state.outbox.len()
    }

    /// Whether a session with the server is established.
    pub fn is_established(&self) -> bool {
        self.state.current.is_some()
    }

    /// The highest server message id delivered in order.
    pub fn cursor(&self) -> u64 {
        self.state.cursor
    }
}

impl<const N: usize> State<N> {
    fn queue<'f>(
        &mut self,
        now: Instant,
        is_poll: bool,
        frame: impl FnOnce(u32) -> DeviceFrame<'f>,
    ) -> Result<u32, SendError> {
        if self.outbox.is_full() {
            return Err(SendError::OutboxFull { capacity: N });
        }
        let id = self.next_id;
        self.queue_frame(now, is_poll, &frame(id))
    }

    /// Encodes `frame` (numbered `next_id`) into a free outbox slot; one
    /// copy of this code serves every kind of request.
    fn queue_frame(
        &mut self,
        now: Instant,
        is_poll: bool,
        frame: &DeviceFrame<'_>,
    ) -> Result<u32, SendError> {
        let id = self.next_id;
        let backoff = self.config.retransmit_initial_ms;
        self.outbox
            .push_with(id, is_poll, now, backoff, |slot| {
                frame.encode(slot).map(|encoded| encoded.len())
            })?
            .ok_or(SendError::OutboxFull { capacity: N })?;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        Ok(id)
    }

    fn poll_mailbox(&mut self, now: Instant) -> Result<u32, SendError> {
        if let Some(id) = self.outbox.poll_id() {
            return Ok(id);
        }
        let cursor = self.cursor;
        self.queue(now, true, |id| DeviceFrame::Poll(Poll { id, cursor }))
    }

    /// Authenticates and decrypts a datagram into `rx`; returns the frame's
    /// length, or `None` when the datagram carried no frame (a cookie).
    fn decrypt(
        &mut self,
        now: Instant,
        datagram: &[u8],
        rx: &mut [u8; MAX_DATAGRAM],
    ) -> Result<Option<usize>, DatagramError> {
        match wire::parse(datagram)? {
            Datagram::Transport(transport) => {
                let session = match (&mut self.current, &mut self.previous) {
                    (Some(current), _) if current.local == transport.receiver => current,
                    (_, Some(previous)) if previous.local == transport.receiver => previous,
                    _ => {
                        return Err(DatagramError::UnknownIndex {
                            index: transport.receiver,
                        });
                    }
                };
                session.replay.check(transport.counter)?;
                let buf = &mut rx[..transport.ciphertext.len()];
                buf.copy_from_slice(transport.ciphertext);
                let len = crypto::open(&session.receive, transport.counter, buf)
                    .map_err(|_| DatagramError::Authentication)?;
                session.replay.mark(transport.counter)?;
                self.silent = 0;
                Ok(Some(len))
            }
            Datagram::Response(response) => {
                // A response that fails to authenticate ends this attempt
                // (the handshake state cannot be reused); the scheduled
                // retry starts a new one.
                let Some(pending) = self
                    .handshake
                    .take_if(|pending| pending.local == response.receiver)
                else {
                    return Err(DatagramError::UnknownIndex {
                        index: response.receiver,
                    });
                };
                let (len, send, receive) = crypto::read_response(pending.state, response.noise, rx)
                    .map_err(|_| DatagramError::Authentication)?;
                debug!("session {} established", pending.local);
                self.previous = self.current.take();
                self.current = Some(Transport {
                    local: pending.local,
                    remote: response.sender,
                    send,
                    receive,
                    sent: 0,
                    replay: ReplayWindow::new(),
                    since: now,
                });
                self.silent = 0;
                self.handshake_backoff_ms = self.config.retransmit_initial_ms;
                // Requests that waited for the session go out at once.
                self.outbox.make_all_due(now);
                Ok(Some(len))
            }
            Datagram::CookieReply(reply) => {
                let pending = match &self.handshake {
                    Some(pending) if pending.local == reply.receiver => pending,
                    _ => {
                        return Err(DatagramError::UnknownIndex {
                            index: reply.receiver,
                        });
                    }
                };
                let cookie = self
                    .identity
                    .open_cookie(reply.nonce, reply.sealed, &pending.mac1)
                    .map_err(|_| DatagramError::Authentication)?;
                debug!("cookie received; the next initiation carries mac2");
                self.cookie = Some((cookie, now));
                Ok(None)
            }
            Datagram::Initiation(_) => Err(DatagramError::Unexpected),
        }
    }

    /// Applies a decrypted server frame.
    fn apply<'a>(&mut self, now: Instant, frame: ServerFrame<'a>) -> Option<Event<'a>> {
        match frame {
            ServerFrame::Opened(opened) => self.outbox.remove(opened.id).then_some(Event::Opened {
                id: opened.id,
                conversation: opened.conversation,
            }),
            ServerFrame::Ack(ack) => {
                let mut accepted = Vec::new();
                for &id in &ack.ids {
                    if self.outbox.remove(id) {
                        // Capacity equals the ack's, so this cannot fail.
                        let _ = accepted.push(id);
                    }
                }
                self.mail_waiting = ack.pending > 0;
                if self.mail_waiting {
                    let _ = self.poll_mailbox(now);
                }
                (!accepted.is_empty()).then_some(Event::Accepted { ids: accepted })
            }
            ServerFrame::Message(message) => {
                if message.prev == self.cursor && message.id > self.cursor {
                    self.cursor = message.id;
                    self.unread = self.unread.saturating_add(1);
                    self.ack_due = true;
                    Some(Event::Message(message))
                } else {
                    if message.id <= self.cursor {
                        // Already delivered: our ack was lost; repeat it.
                        self.ack_due = true;
                    } else {
                        // A message before it was lost: fetch again from
                        // the cursor.
                        self.mail_waiting = true;
                        let _ = self.poll_mailbox(now);
                    }
                    None
                }
            }
            ServerFrame::Error(error) => self.refused(now, error.id, error.code, error.detail),
        }
    }

    fn refused<'a>(
        &mut self,
        now: Instant,
        id: Option<u32>,
        code: u16,
        detail: u32,
    ) -> Option<Event<'a>> {
        let known = ErrorCode::from_value(code);
        if known == Some(ErrorCode::StaleInitiation) {
            // The server kept no session for this handshake: start another
            // above the counter it last accepted.
            log_warn!("stale initiation; the server last accepted {}", detail);
            self.current = None;
            self.next_initiation = detail.saturating_add(1).max(self.next_initiation);
            self.next_handshake_at = now;
            self.outbox.make_all_due(now);
            return None;
        }
        let id = id?;
        if known == Some(ErrorCode::IdReused) {
            let new = detail.saturating_add(1).max(self.next_id);
            if self.outbox.renumber(id, new, now) {
                log_warn!("id {} was used before; now {}", id, new);
                self.next_id = new.checked_add(1).unwrap_or(1);
                return Some(Event::Renumbered { old: id, new });
            }
            return None;
        }
        if known.is_some_and(ErrorCode::is_transient) {
            if let Some(pending) = self.outbox.get_mut(id) {
                pending.due = now.after_ms(u64::from(detail).saturating_mul(1_000));
            }
            return None;
        }
        self.outbox
            .remove(id)
            .then_some(Event::Refused { id, code, detail })
    }

    fn transmit<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<Option<usize>, TransmitError> {
        if self.silent >= self.config.silent_retransmits && self.current.is_some() {
            log_warn!(
                "no answer to {} retransmissions; new handshake",
                self.silent
            );
            self.previous = self.current.take();
            self.silent = 0;
            self.next_handshake_at = now;
        }
        let needs_handshake = match &self.current {
            None => true,
            Some(current) => {
                current.sent >= self.config.rekey_after_messages
                    || now.since(current.since) >= self.config.rekey_after_ms
            }
        };
        // A new handshake starts at once; an unanswered one is retried on
        // its backoff.
        let handshake_due = self.handshake.is_none() || now >= self.next_handshake_at;
        // Without a session the oldest request waits for one; with a session
        // due for rekeying, the next request due starts the handshake.
        let has_payload = if self.current.is_none() {
            !self.outbox.is_empty()
        } else {
            self.outbox.next_due(now).is_some()
        };
        if needs_handshake && has_payload && handshake_due {
            return self.initiate(now, rng, out).map(Some);
        }
        let Some(current) = &mut self.current else {
            return Ok(None);
        };
        if current.sent >= ReplayWindow::LIMIT {
            // Unreachable in practice (rekeying comes far earlier); never
            // send past the limit.
            self.current = None;
            return Ok(None);
        }
        if self.ack_due {
            self.ack_due = false;
            let ack = DeviceFrame::Ack(DeviceAck { upto: self.cursor });
            // A variant byte and a varint of at most ten bytes.
            let mut frame = [0u8; 11];
            let Ok(encoded) = ack.encode(&mut frame) else {
                return Ok(None);
            };
            return seal_transport(current, encoded, out).map(Some);
        }
        let Some(pending) = self.outbox.next_due(now) else {
            return Ok(None);
        };
        if pending.sends > 0 {
            self.silent = self.silent.saturating_add(1);
        }
        pending.sent(now, self.config.retransmit_max_ms);
        seal_transport(current, pending.frame(), out).map(Some)
    }

    /// Writes an initiation carrying the next request due, or else the
    /// oldest unanswered one.
    fn initiate<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<usize, TransmitError> {
        let cookie = self
            .cookie
            .filter(|(_, at)| now.since(*at) < COOKIE_LIFETIME_MS)
            .map(|(cookie, _)| cookie);
        let local = rng.next_u32();
        let counter = self.next_initiation;
        self.next_initiation = self.next_initiation.saturating_add(1);
        let header = *wire::write_initiation_header(out, cookie.is_some(), local, counter)
            .map_err(|_| TransmitError::Handshake)?;
        let mut handshake = self
            .identity
            .start(rng, &header)
            .map_err(|_| TransmitError::Handshake)?;
        let request = match self.outbox.next_due(now) {
            Some(due) => Some(due),
            None => self.outbox.oldest(),
        };
        let Some(request) = request else {
            return Err(TransmitError::Handshake);
        };
        let noise_end = wire::INITIATION_HEADER
            + crypto::write_initiation(
                &mut handshake,
                request.frame(),
                &mut out[wire::INITIATION_HEADER..MAX_DATAGRAM - 2 * MAC],
            )
            .map_err(|_| TransmitError::Handshake)?;
        request.sent(now, self.config.retransmit_max_ms);
        let mac1 = self.identity.mac1(&out[..noise_end]);
        out[noise_end..noise_end + MAC].copy_from_slice(&mac1);
        let mut len = noise_end + MAC;
        if let Some(cookie) = cookie {
            let mac2 = crypto::mac2(&cookie, &out[..len]);
            out[len..len + MAC].copy_from_slice(&mac2);
            len += MAC;
        }
        debug!("initiation {} (counter {})", local, counter);
        self.handshake = Some(PendingHandshake {
            state: handshake,
            local,
            mac1,
        });
        self.next_handshake_at = now.after_ms(u64::from(self.handshake_backoff_ms));
        self.handshake_backoff_ms = self
            .handshake_backoff_ms
            .saturating_mul(2)
            .min(self.config.retransmit_max_ms);
        Ok(len)
    }
}

/// Writes a transport datagram carrying `frame` on `session`.
fn seal_transport(
    session: &mut Transport,
    frame: &[u8],
    out: &mut [u8],
) -> Result<usize, TransmitError> {
    let too_small = TransmitError::BufferTooSmall { len: out.len() };
    let counter = session.sent;
    wire::write_transport_header(out, session.remote, counter).map_err(|_| too_small)?;
    let body = out.get_mut(TRANSPORT_HEADER..).ok_or(too_small)?;
    body.get_mut(..frame.len())
        .ok_or(too_small)?
        .copy_from_slice(frame);
    let sealed = crypto::seal(&session.send, counter, body, frame.len()).map_err(|_| too_small)?;
    session.sent += 1;
    Ok(TRANSPORT_HEADER + sealed)
}
