//! Refusing cheaply (`DEVICES.md` §6): mac1 proves a sender knows this
//! server's public key, mac2 that it receives at its address; a cookie
//! reply hands it what mac2 needs. HMAC-BLAKE2s from `hmac` and `blake2`,
//! the cookie sealed with `chacha20poly1305`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use blake2::{Blake2s256, Digest as _};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInPlace as _, KeyInit as _};
use hmac::{Mac as _, SimpleHmac};
use kanal_proto::device::wire::{self, COOKIE, COOKIE_REPLY, MAC, TAG};
use rand::RngCore as _;

/// How long one cookie secret is used before the next replaces it.
pub(crate) const COOKIE_ROTATION: Duration = Duration::from_secs(120);

/// `HASH(label ‖ public)`: the keys of mac1 and of cookie sealing.
fn labelled_hash(label: &[u8], public: &[u8; 32]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(public)
        .finalize()
        .into()
}

/// HMAC-BLAKE2s of `input` under `key`, not finalised yet.
fn hmac(key: &[u8], input: &[&[u8]]) -> SimpleHmac<Blake2s256> {
    let mut mac =
        <SimpleHmac<Blake2s256> as hmac::Mac>::new_from_slice(key).expect("HMAC takes any key");
    for part in input {
        mac.update(part);
    }
    mac
}

/// `HMAC16(key, input)`: the first 16 bytes of HMAC-BLAKE2s.
pub(crate) fn hmac16(key: &[u8], input: &[&[u8]]) -> [u8; MAC] {
    let mut out = [0u8; MAC];
    out.copy_from_slice(&hmac(key, input).finalize().into_bytes()[..MAC]);
    out
}

/// Whether `mac` is `HMAC16(key, input)`, compared in constant time.
fn hmac16_ok(key: &[u8], input: &[u8], mac: &[u8; MAC]) -> bool {
    hmac(key, &[input]).verify_truncated_left(mac).is_ok()
}

/// The server's mac and cookie keys, and its rotating cookie secrets.
pub(crate) struct Macs {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    /// The current secret, since when, and the one before it (a cookie
    /// handed out just before a rotation still works).
    secrets: std::sync::Mutex<Secrets>,
}

struct Secrets {
    current: [u8; 32],
    previous: [u8; 32],
    since: Instant,
}

impl Macs {
    /// The keys of the server whose static public key is `public`.
    pub(crate) fn new(public: &[u8; 32]) -> Self {
        Self {
            mac1_key: labelled_hash(wire::MAC1_LABEL, public),
            cookie_key: labelled_hash(wire::COOKIE_LABEL, public),
            secrets: std::sync::Mutex::new(Secrets {
                current: random(),
                previous: random(),
                since: Instant::now(),
            }),
        }
    }

    /// Whether `mac1` is right for `input` (the initiation before mac1).
    pub(crate) fn mac1_ok(&self, input: &[u8], mac1: &[u8; MAC]) -> bool {
        hmac16_ok(&self.mac1_key, input, mac1)
    }

    /// Whether `mac2` proves the sender received a cookie for `from` under
    /// the current or the previous secret.
    pub(crate) fn mac2_ok(&self, from: SocketAddr, input: &[u8], mac2: &[u8; MAC]) -> bool {
        let (current, previous) = self.secrets();
        [current, previous]
            .iter()
            .any(|secret| hmac16_ok(&cookie_of(secret, from), input, mac2))
    }

    /// A cookie reply to the initiation with sender index `receiver` and
    /// `mac1`, from `from`.
    pub(crate) fn cookie_reply(
        &self,
        from: SocketAddr,
        receiver: u32,
        mac1: &[u8; MAC],
    ) -> [u8; COOKIE_REPLY] {
        let (current, _) = self.secrets();
        let cookie = cookie_of(&current, from);
        // 64 random bits: a nonce never repeats under this key in practice,
        // across restarts too.
        let nonce = rand::rng().next_u64();
        let mut sealed = [0u8; COOKIE + TAG];
        sealed[..COOKIE].copy_from_slice(&cookie);
        let (body, tag_out) = sealed.split_at_mut(COOKIE);
        let tag = ChaCha20Poly1305::new(&self.cookie_key.into())
            .encrypt_in_place_detached(&noise_nonce(nonce).into(), mac1, body)
            .expect("a 16-byte cookie seals");
        tag_out.copy_from_slice(&tag);
        let mut out = [0u8; COOKIE_REPLY];
        wire::write_cookie_reply(&mut out, receiver, nonce, &sealed).expect("room");
        out
    }

    /// The current and previous secrets, rotated first when due.
    fn secrets(&self) -> ([u8; 32], [u8; 32]) {
        let mut secrets = self
            .secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if secrets.since.elapsed() >= COOKIE_ROTATION {
            secrets.previous = secrets.current;
            secrets.current = random();
            secrets.since = Instant::now();
        }
        (secrets.current, secrets.previous)
    }
}

/// The cookie of source address `from` under `secret`.
fn cookie_of(secret: &[u8; 32], from: SocketAddr) -> [u8; COOKIE] {
    let port = from.port().to_le_bytes();
    match from.ip() {
        std::net::IpAddr::V4(ip) => hmac16(secret, &[&ip.octets(), &port]),
        std::net::IpAddr::V6(ip) => hmac16(secret, &[&ip.octets(), &port]),
    }
}

/// The Noise ChaChaPoly nonce: four zero bytes, then `counter`
/// little-endian.
fn noise_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

fn random() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}
