//! Servers over QUIC (ALPN `kanal-fed/1`, FEDERATION.md): the endpoint
//! other servers connect to, and one delivery per peer that carries this
//! server's outbox toward it.
//!
//! A connection carries one direction: the sending server dials, proves
//! its domain with its certificate, and writes its transactions; the
//! receiver applies them through the writer and acknowledges what it has
//! committed. Each server dials the other for its own outbox. The delivery
//! logic itself is sans-IO (`core::federation`): this module drives it
//! with sockets and the clock.

mod accept;
mod acked;
mod deliver;
mod dial;
pub(crate) mod discover;
mod tls;
pub(crate) mod trust;
pub(crate) mod typing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kanal_proto::address::Address;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

use crate::core::federation::outbox::Policy;
use crate::links::quic::endpoint::EndpointError;
use crate::model::{NewParty, Party, PartyKind, Refusal, RefusalCode};
use crate::node::Node;
use crate::node::limits::Buckets;
use crate::node::writer::now_ms;

/// Largest transaction frame, in bytes: a message at its limit with its
/// envelope, or a conversation's start with all its members.
pub(crate) const MAX_TRANSACTION_FRAME: usize = kanal_proto::limits::MAX_FRAME + 8 * 1024;

/// Longest a dial, or the `Open`/`Ready` exchange, may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most peer connections handled at once, handshakes included: a flood of
/// connections from anyone (peers are known only once a handshake is done)
/// is refused past it, and costs no more than this many sessions.
const MAX_SESSIONS: usize = 256;

/// Greetings with nothing to deliver (FEDERATION.md §5.2) made at once.
const MAX_GREETINGS: usize = 16;

/// Drop a federation connection after this long without traffic (QUIC
/// keep-alives keep a delivery's connection up in between).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the endpoint is made of.
#[derive(Debug)]
pub(crate) struct Settings {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// This server's certificate chain: what it proves its domain with.
    pub certs: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// How delivery retries and gives up.
    pub policy: Policy,
    /// The persisted stateless-reset secret (`reset.key`): a restarted
    /// server resets its predecessor's connections at their peer's next
    /// packet, so a peer delivering on one learns at once that it is gone
    /// and delivers again on a new one.
    pub reset_key: [u8; 64],
    /// Transactions a second one peer may have applied (0: no limit).
    pub transactions_per_second: u32,
    /// The roots servers that are not configured peers are trusted by
    /// (`federation_webpki`); `None`: configured peers only.
    pub webpki: Option<rustls::RootCertStore>,
    /// The DNS server peers are found with (`None`: the system's).
    pub dns: Option<SocketAddr>,
    /// How long a delivery toward a peer that is not configured stays with
    /// nothing to deliver before it is dropped.
    pub idle_peer: Duration,
}

/// Label under which the federation endpoint's reset key is derived.
const RESET_KEY_LABEL: &[u8] = b"kanal federation reset key v1";

/// The federation endpoint's reset key: derived from `reset.key`, so it
/// shares no secret with the client endpoint's.
fn reset_key(secret: &[u8; 64]) -> [u8; 32] {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        RESET_KEY_LABEL,
    );
    let mut key = [0u8; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

/// The federation link: its endpoint, and a delivery per peer.
#[derive(Debug)]
pub(crate) struct Federation {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    deliveries: JoinHandle<()>,
}

/// What the accept loop and the deliveries share.
#[derive(Debug)]
struct Shared {
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    policy: Policy,
    /// How long a delivery toward a peer that is not configured idles.
    idle_peer: Duration,
    /// The receiving state from each peer (shared by its connections).
    inboxes: accept::Inboxes,
    /// Sessions that may run at once.
    sessions: Arc<tokio::sync::Semaphore>,
    /// Greetings with nothing to deliver that may run at once.
    greetings: tokio::sync::Semaphore,
    /// Each peer's inbound transactions, a second's worth at once (`None`:
    /// no limit).
    inbound: Option<Buckets<String>>,
    /// Each peer's typing datagrams, over all its connections.
    typing: Arc<Buckets<String>>,
    /// WebPKI trust, when it is on.
    webpki: Option<Arc<trust::WebPki>>,
    /// Finds peers without a configured address.
    discovery: discover::Discovery,
}

impl Federation {
    /// Binds `settings.listen` and starts accepting peers and delivering
    /// the outbox (resuming every peer with stored transactions at once).
    pub(crate) fn serve(node: Arc<Node>, settings: Settings) -> Result<Self, EndpointError> {
        let server = tls::server_crypto(settings.certs.clone(), settings.key.clone_key())?;
        let webpki = settings
            .webpki
            .map(|roots| trust::WebPki::new(roots).map(Arc::new))
            .transpose()?;
        node.federation.trust_webpki(webpki.is_some());
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport()));
        let bind_err = |source| EndpointError::Bind {
            addr: settings.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(settings.listen).map_err(bind_err)?;
        let endpoint = quinn::Endpoint::new(
            crate::links::quic::endpoint::endpoint_config(&reset_key(&settings.reset_key)),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let shared = Arc::new(Shared {
            node,
            endpoint,
            certs: settings.certs,
            key: settings.key,
            policy: settings.policy,
            idle_peer: settings.idle_peer,
            inboxes: accept::Inboxes::default(),
            sessions: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS)),
            greetings: tokio::sync::Semaphore::new(MAX_GREETINGS),
            typing: Arc::new(typing::budget()),
            webpki,
            discovery: discover::Discovery::new(settings.dns),
            inbound: (settings.transactions_per_second > 0).then(|| {
                let rate = settings.transactions_per_second;
                Buckets::new(f64::from(rate), Duration::from_secs(1) / rate)
            }),
        });
        let accept = tokio::spawn(accept::serve(shared.clone()));
        let deliveries = tokio::spawn(deliver::serve(shared.clone()));
        Ok(Self {
            shared,
            accept,
            deliveries,
        })
    }

    /// The address it listens on (with the real port when 0 was asked).
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// Stops accepting and delivering, and closes every connection.
    pub(crate) async fn close(self) {
        self.accept.abort();
        self.deliveries.abort();
        self.shared
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        self.shared.endpoint.wait_idle().await;
    }
}

impl Shared {
    /// `peer` showed it is there: its delivery ends a backoff at once.
    fn sign_of_life(&self, peer: &str) {
        self.node.federation.outbox.sign_of_life(peer);
    }
}

/// QUIC transport for a few busy connections between servers.
fn transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(4u8.into())
        .max_concurrent_uni_streams(0u8.into())
        .keep_alive_interval(Some(IDLE_TIMEOUT / 3))
        .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    transport
}

/// The party this server records for `address` of another server: found,
/// or created as a remote party the first time a conversation names it.
/// Refused when this server has no way to that server: it is not a
/// configured peer, and WebPKI trust is off. (With it on, any domain is
/// taken; one that cannot be found or trusted fails as any unreachable
/// peer does: retries, then its senders are told.)
pub(crate) async fn remote_party(node: &Node, address: &Address) -> Result<Party, Refusal> {
    let internal = |e: crate::store::StoreError| Refusal::internal(e.to_string());
    if !node.federation.reachable(address.domain()) {
        return Err(Refusal::new(
            RefusalCode::RemoteUnreachable,
            format!(
                "{address} is on {}, which is not a peer of this server (`kanald peer add`, \
                 or `federation_webpki = true`)",
                address.domain()
            ),
        ));
    }
    if let Some(party) = node
        .store
        .party_by_address(address)
        .await
        .map_err(internal)?
    {
        return Ok(party);
    }
    let new = NewParty {
        address: address.clone(),
        kind: PartyKind::User,
        display_name: address.local().to_owned(),
        password_hash: None,
    };
    match node
        .writer
        .submit(crate::core::engine::Command::AddParty(new))
        .await
    {
        crate::core::engine::Reply::Party(party) => Ok(party),
        // Another request recorded it meanwhile.
        crate::core::engine::Reply::Refused(r) if r.code == RefusalCode::AddressTaken => node
            .store
            .party_by_address(address)
            .await
            .map_err(internal)?
            .ok_or_else(|| Refusal::internal("the remote party vanished")),
        crate::core::engine::Reply::Refused(r) => Err(r),
        _ => Err(Refusal::internal("unexpected answer")),
    }
}

/// A random number for a backoff's jitter.
fn jitter() -> u64 {
    rand::random()
}

/// The time, for the sans-IO state.
fn now() -> i64 {
    now_ms()
}
