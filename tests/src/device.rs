//! A device as the firmware runs it, on the host: the real
//! `kanal-firmware` session driven over a real UDP socket to the server's
//! device gateway, with optional datagram loss both ways (decided by a
//! seeded generator, so a run is reproducible) and a record of every
//! datagram it sent, for the tests that replay or tamper with them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::{DeviceConfig, DeviceSession, Event, Instant};
use rand_core::{OsRng, RngCore as _};
use tokio::net::UdpSocket;

use crate::{PATIENCE, TestServer, loopback};

/// Outbox capacity of test devices.
pub const OUTBOX: usize = 4;

/// One device on the host.
pub struct TestDevice {
    session: DeviceSession<OsRng, OUTBOX>,
    socket: UdpSocket,
    started: std::time::Instant,
    /// Per mille of datagrams lost, each way.
    loss_per_mille: u64,
    loss_state: u64,
    /// Every datagram the device sent (including lost ones), in order.
    pub sent: Vec<Vec<u8>>,
    /// Datagrams dropped by the simulated loss, each way: (out, in).
    pub lost: (usize, usize),
}

impl TestDevice {
    /// A device with a fresh key pair, talking to `server`'s gateway;
    /// returns it and its public key (to register).
    pub async fn new(server: &TestServer) -> Result<(Self, [u8; 32])> {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let config = DeviceConfig::new(secret, server.server.device_public_key());
        Self::with_config(server.server.device_addr(), config).await
    }

    /// A device with `config`, talking to the gateway at `gateway`.
    pub async fn with_config(
        gateway: SocketAddr,
        config: DeviceConfig,
    ) -> Result<(Self, [u8; 32])> {
        let socket = UdpSocket::bind(loopback(0)).await?;
        socket.connect(gateway).await?;
        let session = DeviceSession::new(config, OsRng);
        let public = session.public_key();
        let device = Self {
            session,
            socket,
            started: std::time::Instant::now(),
            loss_per_mille: 0,
            loss_state: 0x5eed,
            sent: Vec::new(),
            lost: (0, 0),
        };
        Ok((device, public))
    }

    /// Loses `per_mille` of the datagrams each way from now on, by a
    /// generator seeded with `seed`.
    pub fn with_loss(mut self, per_mille: u64, seed: u64) -> Self {
        self.loss_per_mille = per_mille;
        self.loss_state = seed;
        self
    }

    /// The session, to queue requests on.
    pub fn session(&mut self) -> &mut DeviceSession<OsRng, OUTBOX> {
        &mut self.session
    }

    /// The device's clock: milliseconds since it was made.
    pub fn now(&self) -> Instant {
        Instant(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Sends what is due and handles what arrives, until `want` maps an
    /// event to a value, or `patience` passes.
    pub async fn until<T>(
        &mut self,
        patience: Duration,
        mut want: impl FnMut(&Event<'_>) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            let now = self.now();
            while let Some(len) = self.session.poll_transmit(now, &mut buf)? {
                self.sent.push(buf[..len].to_vec());
                if self.lose() {
                    self.lost.0 += 1;
                    continue;
                }
                self.socket.send(&buf[..len]).await?;
            }
            let wait = match self.session.poll_timeout() {
                Some(at) => Duration::from_millis(at.0.saturating_sub(self.now().0)),
                None => patience,
            };
            let wake = (tokio::time::Instant::now() + wait).min(deadline);
            tokio::select! {
                received = self.socket.recv(&mut buf) => {
                    let len = received?;
                    if self.lose() {
                        self.lost.1 += 1;
                        continue;
                    }
                    let now = self.now();
                    // A datagram the session refuses (a late one of an old
                    // session) changes nothing.
                    if let Ok(Some(event)) = self.session.handle_datagram(now, &buf[..len])
                        && let Some(value) = want(&event)
                    {
                        return Ok(value);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("the device waited {patience:?} in vain");
                    }
                }
            }
        }
    }

    /// Opens a conversation and waits for its number.
    pub async fn open(
        &mut self,
        topic: &str,
        text: &str,
        diagnostics: &[(&str, &str)],
    ) -> Result<u64> {
        let diagnostics: Vec<_> = diagnostics
            .iter()
            .map(|(key, value)| kanal_firmware::Diagnostic { key, value })
            .collect();
        let now = self.now();
        let id = self.session.open(now, topic, text, &diagnostics)?;
        self.until(PATIENCE, |event| match event {
            Event::Opened {
                id: opened,
                conversation,
            } if *opened == id => Some(*conversation),
            _ => None,
        })
        .await
        .context("the conversation was not opened")
    }

    /// Appends to a conversation and waits until the server stored it.
    pub async fn append(
        &mut self,
        conversation: u64,
        text: &str,
        choice: Option<kanal_firmware::Choice>,
    ) -> Result<()> {
        let now = self.now();
        let id = self.session.append(now, conversation, text, choice)?;
        self.until(PATIENCE, |event| match event {
            Event::Accepted { ids } if ids.contains(&id) => Some(()),
            _ => None,
        })
        .await
        .context("the append was not accepted")
    }

    /// Polls the mailbox until a message arrives; returns its
    /// (conversation, text, quick replies).
    pub async fn next_mail(&mut self) -> Result<(u64, String, Vec<String>)> {
        let (_, conversation, text, replies) = self.next_mail_with_id().await?;
        Ok((conversation, text, replies))
    }

    /// Polls the mailbox until a message arrives; returns its (server
    /// message id, conversation, text, quick replies).
    pub async fn next_mail_with_id(&mut self) -> Result<(u64, u64, String, Vec<String>)> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            // Poll, as a device does on every wake; a poll still waiting
            // in the outbox is retransmitted, not queued twice.
            if self.session.outbox_len() == 0 {
                let now = self.now();
                self.session.poll_mailbox(now)?;
            }
            let found = self
                .until(Duration::from_secs(1), |event| match event {
                    Event::Message(message) => Some((
                        message.id,
                        message.conversation,
                        message.text.to_owned(),
                        message.replies.iter().map(|r| (*r).to_owned()).collect(),
                    )),
                    _ => None,
                })
                .await;
            match found {
                Ok(mail) => return Ok(mail),
                Err(_) if std::time::Instant::now() < deadline => {}
                Err(e) => return Err(e.context("no mail arrived")),
            }
        }
    }
}

/// The generator of simulated loss: splitmix64, seeded per device.
impl TestDevice {
    fn lose(&mut self) -> bool {
        if self.loss_per_mille == 0 {
            return false;
        }
        self.loss_state = self.loss_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.loss_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 1000 < self.loss_per_mille
    }
}
