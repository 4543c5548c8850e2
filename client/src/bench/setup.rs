//! What every scenario needs before it measures: the server under test, a
//! small pool of shared UDP endpoints, a few registered accounts, and many
//! connections opened cheaply by resuming those accounts' sessions.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use kanal_client::{Client, ClientConfig, ClientError, ClientEvent, Credentials, Events, pb};
use tokio::task::JoinSet;

use crate::bench::global::Global;
use crate::bench::report::{self, Progress, Tally};

/// Most accounts a scenario registers: each Register costs the server an
/// Argon2id hash (tens of ms), so many connections share a few accounts.
pub(crate) const MAX_ACCOUNTS: usize = 64;

/// Registrations in flight at once: each is an Argon2id hash on the server,
/// CPU-bound and memory-hungry, and memory the server allocates for them
/// would blur `idle`'s before/after reading.
const REGISTER_CONCURRENCY: usize = 2;

/// Requests a connection may have in flight: the server allows 8
/// bidirectional streams including the control stream (PROTOCOL.md §2.3).
pub(crate) const MAX_IN_FLIGHT: usize = 7;

/// UDP socket buffers asked for, in bytes (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`): thousands of connections share one
/// socket, and the default ≈200 KiB drops bursts of handshakes.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

/// Connections closed at once by [`close_all`].
const CLOSE_CONCURRENCY: usize = 128;

/// Longest wait for a connection's SyncComplete.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The server under test and the UDP endpoints the bench's clients share.
#[derive(Debug)]
pub(crate) struct Target {
    /// The server as given, `host:port` (the first, with several nodes).
    pub(crate) server: String,
    /// Every node connections go to, in turn.
    nodes: Vec<String>,
    config: ClientConfig,
    addr: SocketAddr,
    per_endpoint: usize,
    pin: Option<kanal_client::Fingerprint>,
    /// The TLS name the server's certificate must carry.
    server_name: String,
    endpoints: Mutex<Vec<quinn::Endpoint>>,
    /// Prefix of every name this run creates, unique per run.
    pub(crate) run: String,
    /// Whether progress bars are drawn.
    pub(crate) progress: bool,
}

/// A registered account whose session connections resume.
#[derive(Clone)]
pub(crate) struct Account {
    /// Its address, `local@domain`.
    pub(crate) address: String,
    /// The resume token of the session Register created.
    pub(crate) token: String,
    /// Its password.
    pub(crate) password: String,
}

impl std::fmt::Debug for Account {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// Credentials that resume the account's session, or (with
    /// `password_login`) log in again with its password: a new session and
    /// an Argon2id hash on the server each time.
    pub(crate) fn credentials(&self, password_login: bool) -> Credentials {
        if password_login {
            Credentials::Password {
                address: self.address.clone(),
                password: self.password.clone(),
            }
        } else {
            Credentials::Resume {
                token: self.token.clone(),
            }
        }
    }
}

/// How [`Target::open`] opens connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// How many.
    pub(crate) count: usize,
    /// How many handshakes at once.
    pub(crate) concurrency: usize,
    /// Subscribe from the account's event head and wait for SyncComplete.
    pub(crate) sync: bool,
    /// Log in with the password instead of resuming.
    pub(crate) password_login: bool,
}

impl Plan {
    /// `count` connections by Resume, without Sync.
    pub(crate) fn resume(count: usize, concurrency: usize) -> Self {
        Self {
            count,
            concurrency,
            sync: false,
            password_login: false,
        }
    }

    /// The same plan, with Sync.
    pub(crate) fn with_sync(self) -> Self {
        Self { sync: true, ..self }
    }
}

/// One open connection of a scenario.
#[derive(Debug)]
pub(crate) struct Session {
    /// Which connection of the scenario it is.
    pub(crate) index: usize,
    /// The client.
    pub(crate) client: Client,
    /// Its event stream, when the connection was asked to Sync.
    pub(crate) events: Option<Events>,
}

/// The outcome of opening many connections.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The connections that opened, in completion order.
    pub(crate) sessions: Vec<Session>,
    /// Time from starting the QUIC handshake to the Welcome, in µs.
    pub(crate) connect: Histogram<u64>,
    /// Time from sending Sync to SyncComplete, in µs (empty without Sync).
    pub(crate) sync: Histogram<u64>,
    /// Why connections failed, with counts.
    pub(crate) errors: Tally,
    /// Wall-clock time for all of them.
    pub(crate) elapsed: Duration,
}

impl Target {
    /// Checks the options and resolves the server once.
    pub(crate) async fn new(global: &Global) -> Result<Arc<Target>> {
        let nodes: Vec<String> = global
            .server
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect();
        let first = nodes.first().context("--server names no server")?.clone();
        let mut config = ClientConfig::new(first.clone())
            .client_name(concat!("kanal-bench/", env!("CARGO_PKG_VERSION")));
        if let Some(pin) = global.pin {
            config = config.pin(pin);
        }
        if let Some(name) = &global.server_name {
            config = config.server_name(name.clone());
        }
        let addr = tokio::net::lookup_host(first.as_str())
            .await
            .with_context(|| format!("resolving `{first}` (expected host:port)"))?
            .next()
            .with_context(|| format!("`{first}` has no address"))?;
        let run = format!("b{}", random_name(7));
        Ok(Arc::new(Target {
            server: first.clone(),
            nodes,
            config,
            addr,
            per_endpoint: global.per_endpoint as usize,
            pin: global.pin,
            server_name: global.server_name.clone().unwrap_or_else(|| {
                // The host part of host:port, without an IPv6 literal's brackets.
                let host = first.rsplit_once(':').map_or(first.as_str(), |(h, _)| h);
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            }),
            endpoints: Mutex::new(Vec::new()),
            run,
            progress: !global.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }))
    }

    /// The client configuration of connection `index`: connections
    /// `k·per_endpoint … (k+1)·per_endpoint − 1` share endpoint `k`, and
    /// with several nodes connection `index` goes to node `index mod n`.
    pub(crate) fn config(&self, index: usize) -> Result<ClientConfig> {
        let slot = index / self.per_endpoint;
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while endpoints.len() <= slot {
            endpoints.push(bind_endpoint(self.addr)?);
        }
        let mut config = self.config.clone().endpoint(endpoints[slot].clone());
        if let Some(node) = self.nodes.get(index % self.nodes.len().max(1)) {
            config.server.clone_from(node);
        }
        Ok(config)
    }

    /// A QUIC connection made by hand, with `transport` settings, for
    /// clients that behave as the SDK never would. Its endpoint is closed
    /// with the others at [`Target::shutdown`].
    pub(crate) async fn raw_connect(
        &self,
        transport: quinn::TransportConfig,
    ) -> Result<quinn::Connection> {
        let endpoint = self.raw_endpoint()?;
        Ok(endpoint
            .connect_with(self.raw_config(transport)?, self.addr, &self.server_name)?
            .await?)
    }

    /// A QUIC client configuration made by hand (this server's pin, the
    /// client ALPN) with `transport` settings.
    pub(crate) fn raw_config(
        &self,
        transport: quinn::TransportConfig,
    ) -> Result<quinn::ClientConfig> {
        let mut crypto = kanal_client::tls::client_crypto(self.pin)?;
        crypto.alpn_protocols = vec![kanal_proto::ALPN_CLIENT.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .context("TLS 1.3 configuration")?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(Arc::new(transport));
        Ok(config)
    }

    /// A UDP endpoint of its own, closed with the others at
    /// [`Target::shutdown`].
    pub(crate) fn raw_endpoint(&self) -> Result<quinn::Endpoint> {
        let endpoint = bind_endpoint(self.addr)?;
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(endpoint.clone());
        Ok(endpoint)
    }

    /// The server's address, and the TLS name its certificate carries.
    pub(crate) fn server_addr(&self) -> (SocketAddr, &str) {
        (self.addr, &self.server_name)
    }

    /// How many UDP endpoints the run has opened.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A progress bar (hidden with `--json` or when stderr is not a terminal).
    pub(crate) fn bar(&self, len: u64, what: &str) -> ProgressBar {
        report::bar(self.progress, len, what)
    }

    /// Registers `count` users named `<run>-<role><i>`, a few at a time.
    pub(crate) async fn register(&self, role: &str, count: usize) -> Result<Vec<Account>> {
        let bar = self.bar(count as u64, &format!("registering {role} accounts"));
        let password = random_name(16);
        let mut registrations = futures::stream::iter(0..count)
            .map(|i| {
                let local = format!("{}-{role}{i}", self.run);
                let random_password = password.clone();
                let bar = bar.clone();
                async move {
                    let credentials = Credentials::Register {
                        local: local.clone(),
                        password: random_password.clone(),
                        display_name: String::new(),
                        invite: String::new(),
                    };
                    let client = Client::connect(self.config(i)?, credentials)
                        .await
                        .with_context(|| format!("registering {local}"))?;
                    let account = Account {
                        address: client.party().address,
                        token: client.resume_token(),
                        password: random_password,
                    };
                    client.close().await;
                    bar.inc(1);
                    anyhow::Ok((i, account))
                }
            })
            .buffer_unordered(REGISTER_CONCURRENCY);
        let mut accounts = Vec::with_capacity(count);
        // The first failure ends the run: the server is unreachable or refuses.
        while let Some(registered) = registrations.next().await {
            accounts.push(registered?);
        }
        bar.finish_and_clear();
        accounts.sort_by_key(|(i, _)| *i);
        Ok(accounts.into_iter().map(|(_, account)| account).collect())
    }

    /// Opens connection `index` by resuming `account`'s session.
    pub(crate) async fn resume(&self, index: usize, account: &Account) -> Result<Client> {
        Ok(Client::connect(self.config(index)?, account.credentials(false)).await?)
    }

    /// Opens connections as `plan` says; connection `i` logs in as
    /// `accounts[i % len]`. Failures are counted, not fatal.
    pub(crate) async fn open(
        &self,
        accounts: &[Account],
        plan: Plan,
        progress: &Progress,
    ) -> Result<Opened> {
        let Plan {
            count,
            concurrency,
            sync,
            password_login,
        } = plan;
        if accounts.is_empty() {
            bail!("no accounts to open connections for");
        }
        let started = Instant::now();
        let mut opened = Opened {
            sessions: Vec::with_capacity(count),
            connect: report::histogram(),
            sync: report::histogram(),
            errors: Tally::default(),
            elapsed: Duration::ZERO,
        };
        let mut attempts = futures::stream::iter(0..count)
            .map(|index| {
                let credentials = accounts[index % accounts.len()].credentials(password_login);
                self.open_one(index, credentials, sync)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(attempt) = attempts.next().await {
            match attempt {
                Ok((session, connect, sync)) => {
                    report::record(&mut opened.connect, connect);
                    if let Some(sync) = sync {
                        report::record(&mut opened.sync, sync);
                    }
                    opened.sessions.push(session);
                    progress.inc_ok();
                }
                Err(error) => {
                    opened.errors.add(&error);
                    progress.inc_failed();
                }
            }
        }
        opened.elapsed = started.elapsed();
        Ok(opened)
    }

    async fn open_one(
        &self,
        index: usize,
        credentials: Credentials,
        sync: bool,
    ) -> Result<(Session, Duration, Option<Duration>), ClientError> {
        let started = Instant::now();
        let config = self
            .config(index)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let client = Client::connect(config, credentials).await?;
        let connected = started.elapsed();
        let mut session = Session {
            index,
            client,
            events: None,
        };
        if !sync {
            return Ok((session, connected, None));
        }
        let synced = Instant::now();
        let head = session.client.welcome().event_head;
        let mut events = session.client.subscribe(head).await?;
        wait_sync_complete(&mut events).await?;
        session.events = Some(events);
        Ok((session, connected, Some(synced.elapsed())))
    }

    /// Closes every endpoint (and with them every connection still open) and
    /// waits briefly for the close frames to leave.
    pub(crate) async fn shutdown(&self) {
        let endpoints = std::mem::take(
            &mut *self
                .endpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for endpoint in &endpoints {
            endpoint.close(0u32.into(), b"bench done");
        }
        for endpoint in endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }
}

/// Closes `sessions` cleanly, a bounded number at a time (a burst of
/// thousands of closes overflows the server's UDP receive buffer).
pub(crate) async fn close_all(sessions: Vec<Session>) {
    futures::stream::iter(sessions)
        .for_each_concurrent(CLOSE_CONCURRENCY, |session| async move {
            session.client.close().await;
        })
        .await;
}

/// One conversation per sender connection, with receiver `i mod N`.
pub(crate) async fn create_conversations(
    sessions: &[Session],
    receivers: &[Account],
) -> Result<Vec<(Client, String)>> {
    let addresses: Vec<String> = receivers.iter().map(|r| r.address.clone()).collect();
    create_conversations_to(sessions, &addresses).await
}

/// One conversation per sender connection, with party `i mod N` of `to`.
pub(crate) async fn create_conversations_to(
    sessions: &[Session],
    to: &[String],
) -> Result<Vec<(Client, String)>> {
    let mut created = Vec::with_capacity(sessions.len());
    let mut requests = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let client = session.client.clone();
        let to = to[i % to.len()].clone();
        requests.spawn(async move {
            let conversation = client.create_conversation(&[to.as_str()], "bench").await?;
            anyhow::Ok((i, client, conversation.id))
        });
    }
    while let Some(done) = requests.join_next().await {
        created.push(done??);
    }
    created.sort_by_key(|(i, _, _)| *i);
    Ok(created
        .into_iter()
        .map(|(_, client, id)| (client, id))
        .collect())
}

/// Reads events until SyncComplete.
pub(crate) async fn wait_sync_complete(events: &mut Events) -> Result<u64, ClientError> {
    let wait = async {
        loop {
            match events.next().await {
                Some(ClientEvent::SyncComplete { head }) => return Ok(head),
                Some(_) => {}
                None => return Err(ClientError::Closed),
            }
        }
    };
    tokio::time::timeout(SYNC_TIMEOUT, wait)
        .await
        .map_err(|_| ClientError::Timeout(SYNC_TIMEOUT, "SyncComplete"))?
}

/// A text body of exactly `size` bytes that starts with `prefix`.
pub(crate) fn text_body(prefix: &str, size: usize) -> pb::Body {
    let mut text = String::with_capacity(size.max(prefix.len()));
    text.push_str(prefix);
    while text.len() < size {
        text.push('x');
    }
    pb::Body {
        kind: Some(pb::body::Kind::Text(text)),
    }
}

/// The text of a message event, if it is one.
pub(crate) fn message_of(event: &ClientEvent) -> Option<&pb::Message> {
    match event {
        ClientEvent::Event(pb::Event {
            kind: Some(pb::event::Kind::Message(message)),
            ..
        }) => Some(message),
        _ => None,
    }
}

/// The text of a message.
pub(crate) fn text_of(message: &pb::Message) -> &str {
    message.body.as_ref().and_then(pb::Body::text).unwrap_or("")
}

/// `len` random characters valid in an address's local part.
fn random_name(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A client endpoint for `server` with large socket buffers.
fn bind_endpoint(server: SocketAddr) -> Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = match server {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
        .context("creating a UDP socket")?;
    // Best effort: without the larger buffers the bench still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket
        .bind(&bind.into())
        .with_context(|| format!("binding {bind}"))?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
    .context("starting a QUIC endpoint")?;
    Ok(endpoint)
}
