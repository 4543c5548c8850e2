//! The device's cryptography: the Noise IK handshake as initiator (clatter),
//! transport encryption with explicit counters, and the wrapper's macs.
//!
//! Transport datagrams are encrypted with the session keys directly
//! (ChaCha20-Poly1305, nonce = the datagram's counter, no associated data),
//! not through a stateful cipher, because datagrams may be lost or
//! reordered and the receiver must decrypt by the counter it reads.

use clatter::bytearray::ByteArray;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2s;
use clatter::handshakepattern::noise_ik;
use clatter::traits::{Cipher, Dh, Handshaker, Hash};
use clatter::{KeyPair, NqHandshakeCore};
use kanal_proto::device::wire::{self, COOKIE, MAC, TAG};
use rand_core::{CryptoRng, RngCore};

/// A transport key (zeroed when dropped).
pub(crate) type Key = <ChaChaPoly as Cipher>::Key;

type StaticKeys = KeyPair<<X25519 as Dh>::PubKey, <X25519 as Dh>::PrivateKey>;

/// The handshake state of one initiation.
pub(crate) type Handshake = NqHandshakeCore<X25519, ChaChaPoly, Blake2s, SuppliedEphemeral>;

/// Why a cryptographic step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CryptoError {
    /// A handshake message was refused or could not be written.
    Handshake,
    /// A datagram did not authenticate.
    Decrypt,
    /// The output buffer was too small.
    Buffer,
}

/// The device's long-term identity and the server it trusts.
pub(crate) struct Identity {
    keys: StaticKeys,
    server_public: [u8; 32],
    mac1_key: [u8; 32],
    cookie_key: Key,
}

impl Identity {
    pub(crate) fn new(device_secret: &[u8; 32], server_public: &[u8; 32]) -> Self {
        let secret = <X25519 as Dh>::PrivateKey::from_slice(device_secret);
        let public = public_key(device_secret);
        Self {
            keys: KeyPair::new(public, secret),
            server_public: *server_public,
            mac1_key: labelled_hash(wire::MAC1_LABEL, server_public),
            cookie_key: Key::from_slice(&labelled_hash(wire::COOKIE_LABEL, server_public)),
        }
    }

    /// The device's static public key (what the maker registers).
    pub(crate) fn public_key(&self) -> [u8; 32] {
        self.keys.public
    }

    /// Starts a handshake with a fresh ephemeral key from `rng`; the
    /// initiation header is bound into the prologue.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        header: &[u8; wire::INITIATION_HEADER],
    ) -> Result<Handshake, CryptoError> {
        let mut ephemeral = [0u8; 32];
        rng.fill_bytes(&mut ephemeral);
        let secret = <X25519 as Dh>::PrivateKey::from_slice(&ephemeral);
        let public = public_key(&ephemeral);
        ephemeral.fill(0);
        Handshake::new(
            noise_ik(),
            &wire::prologue(header),
            true,
            Some(self.keys.clone()),
            Some(KeyPair::new(public, secret)),
            Some(self.server_public),
            None,
        )
        .map_err(|_| CryptoError::Handshake)
    }

    /// mac1 over `input` (every initiation byte before it).
    pub(crate) fn mac1(&self, input: &[u8]) -> [u8; MAC] {
        keyed_mac(&self.mac1_key, input)
    }

    /// Opens a cookie reply's sealed cookie; `mac1` is the mac1 of the
    /// initiation it answers.
    pub(crate) fn open_cookie(
        &self,
        nonce: u64,
        sealed: &[u8; COOKIE + TAG],
        mac1: &[u8; MAC],
    ) -> Result<[u8; COOKIE], CryptoError> {
        let mut buf = *sealed;
        ChaChaPoly::decrypt_in_place(&self.cookie_key, nonce, mac1, &mut buf, COOKIE + TAG)
            .map_err(|_| CryptoError::Decrypt)?;
        let mut cookie = [0u8; COOKIE];
        cookie.copy_from_slice(&buf[..COOKIE]);
        Ok(cookie)
    }
}

/// mac2 over `input` (every initiation byte before it), keyed by a cookie.
pub(crate) fn mac2(cookie: &[u8; COOKIE], input: &[u8]) -> [u8; MAC] {
    keyed_mac(cookie, input)
}

/// Writes handshake message 1 carrying `payload` into `out`.
pub(crate) fn write_initiation(
    handshake: &mut Handshake,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, CryptoError> {
    handshake
        .write_message(payload, out)
        .map_err(|_| CryptoError::Handshake)
}

/// Reads handshake message 2 into `payload`; returns the payload length and
/// the transport keys (device → server, server → device).
pub(crate) fn read_response(
    mut handshake: Handshake,
    message: &[u8],
    payload: &mut [u8],
) -> Result<(usize, Key, Key), CryptoError> {
    let len = handshake
        .read_message(message, payload)
        .map_err(|_| CryptoError::Handshake)?;
    if !handshake.is_finished() {
        return Err(CryptoError::Handshake);
    }
    let ciphers = handshake
        .finalize()
        .map_err(|_| CryptoError::Handshake)?
        .take();
    let (send, _) = ciphers.initiator_to_responder.take();
    let (receive, _) = ciphers.responder_to_initiator.take();
    Ok((len, send, receive))
}

/// Encrypts `buf[..len]` in place under `counter`; returns the ciphertext
/// length (`len` + 16).
pub(crate) fn seal(
    key: &Key,
    counter: u64,
    buf: &mut [u8],
    len: usize,
) -> Result<usize, CryptoError> {
    if buf.len() < len + TAG {
        return Err(CryptoError::Buffer);
    }
    ChaChaPoly::encrypt_in_place(key, counter, &[], buf, len).map_err(|_| CryptoError::Buffer)
}

/// Decrypts `buf` (ciphertext and tag) in place under `counter`; returns
/// the plaintext length.
pub(crate) fn open(key: &Key, counter: u64, buf: &mut [u8]) -> Result<usize, CryptoError> {
    if buf.len() < TAG {
        return Err(CryptoError::Decrypt);
    }
    let len = buf.len();
    ChaChaPoly::decrypt_in_place(key, counter, &[], buf, len).map_err(|_| CryptoError::Decrypt)
}

/// The X25519 public key of a secret: the function applied to the base
/// point, on the same Montgomery ladder the Diffie-Hellman steps use (the
/// Edwards base-point code clatter's `pubkey` would pull in costs flash).
fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES)
}

/// BLAKE2s-256(label ‖ public key).
fn labelled_hash(label: &[u8; 8], public: &[u8; 32]) -> [u8; 32] {
    let mut input = [0u8; 40];
    input[..8].copy_from_slice(label);
    input[8..].copy_from_slice(public);
    let mut out = [0u8; 32];
    out.copy_from_slice(Blake2s::hash(&input).as_slice());
    out
}

/// The first 16 bytes of HMAC-BLAKE2s(key, input): the HMAC the Noise
/// handshake already needs, so the macs add no code.
fn keyed_mac(key: &[u8], input: &[u8]) -> [u8; MAC] {
    let mut mac = [0u8; MAC];
    mac.copy_from_slice(&Blake2s::hmac(key, input).as_slice()[..MAC]);
    mac
}

/// The RNG type clatter's handshake requires. The session always supplies
/// the ephemeral key (drawn from the injected RNG), so clatter never draws
/// from this one.
#[derive(Clone, Default)]
pub(crate) struct SuppliedEphemeral;

impl RngCore for SuppliedEphemeral {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, _dest: &mut [u8]) {
        // Reaching this would mean a handshake without a supplied ephemeral
        // key, which `Identity::start` makes impossible; failing loudly is
        // the only safe answer (a predictable key would be catastrophic).
        panic!("kanal-firmware: the ephemeral key is always supplied");
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SuppliedEphemeral {}
