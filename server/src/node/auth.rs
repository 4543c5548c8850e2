//! Proving who a client is: Argon2id password hashes and resume tokens.
//!
//! Resume tokens are 32 random bytes shown to the client once (base64url);
//! the server keeps only their SHA-256, so a stolen database does not open
//! sessions. Password hashing runs on the blocking pool, at most one hash
//! per core at once ([`HASHING`]): each is deliberately slow (≈16 ms of CPU
//! and 19 MiB), so a flood of logins waits its turn instead of starving the
//! runtime and the writer, and its memory stays bounded.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id computations that may run at once: one per core.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    tokio::sync::Semaphore::new(cores)
});

/// Runs `work` on the blocking pool once a hashing permit is free.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed, so acquiring cannot fail.
    let _permit = HASHING.acquire().await.ok();
    tokio::task::spawn_blocking(work).await
}

/// Hashes a password with Argon2id and a fresh salt (PHC string).
pub(crate) async fn hash_password(password: String) -> Result<String, HashError> {
    hashing(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Checks a password against a PHC string. With no hash (unknown account) it
/// still spends the time of one verification, so timing does not reveal
/// which addresses exist.
pub(crate) async fn verify_password(password: String, hash: Option<String>) -> bool {
    hashing(move || {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => (decoy_hash().to_string(), false),
        };
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// A valid Argon2id hash of a random password, made once.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let mut secret = [0u8; 16];
        rand::rng().fill_bytes(&mut secret);
        Argon2::default()
            .hash_password(&secret, &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// A new resume token: what the client gets, and the hash the server keeps.
pub(crate) fn new_resume_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// The hash under which a resume token is stored.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new invite code (the operator hands it out) and the hash the server
/// keeps: 26 characters of lowercase base32, 130 random bits.
pub(crate) fn new_invite_code() -> (String, [u8; 32]) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 26];
    rand::rng().fill_bytes(&mut bytes);
    let code: String = bytes
        .iter()
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect();
    let hash = token_hash(&code);
    (code, hash)
}

/// A random opaque id part: 20 characters of lowercase base32 (100 bits).
pub(crate) fn random_opaque() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let (a, ha) = new_resume_token();
        let (b, _) = new_resume_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), ha);
        assert_eq!(random_opaque().len(), 20);
    }
}
