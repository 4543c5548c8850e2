//! Certificate pins: the SHA-256 of a server's leaf certificate.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The SHA-256 digest of a certificate's DER encoding, used to pin a server.
///
/// Written as 64 lowercase hex characters; parsing also accepts uppercase and
/// `:` separators (`AB:CD:…`), as other tools print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

/// Why a fingerprint could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// Not 64 hex digits once separators are removed.
    #[error("a fingerprint is 64 hex digits (SHA-256), got {0} digits")]
    Length(usize),
    /// A character that is neither a hex digit nor `:`.
    #[error("`{0}` is not a hex digit")]
    Character(char),
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, FingerprintError> {
        let mut digits = Vec::with_capacity(64);
        for c in s.trim().chars() {
            match c {
                ':' => {}
                c if c.is_ascii_hexdigit() => digits.push(c as u8),
                c => return Err(FingerprintError::Character(c)),
            }
        }
        if digits.len() != 64 {
            return Err(FingerprintError::Length(digits.len()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes)
            .map_err(|_| FingerprintError::Length(digits.len()))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_der_prints_as_lowercase_hex() {
        let fp = Fingerprint::of_der(b"");
        assert_eq!(fp.to_string(), EMPTY_SHA256);
    }

    #[test]
    fn parses_lowercase_uppercase_and_colons() {
        let expected = Fingerprint::of_der(b"");
        assert_eq!(EMPTY_SHA256.parse::<Fingerprint>(), Ok(expected));
        assert_eq!(
            EMPTY_SHA256.to_uppercase().parse::<Fingerprint>(),
            Ok(expected)
        );
        let colons = EMPTY_SHA256
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).expect("ascii"))
            .collect::<Vec<_>>()
            .join(":")
            .to_uppercase();
        assert_eq!(colons.parse::<Fingerprint>(), Ok(expected));
        assert_eq!(format!("  {EMPTY_SHA256}\n").parse(), Ok(expected));
    }

    #[test]
    fn round_trips_through_display() {
        let fp = Fingerprint([0xa5; 32]);
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
    }

    #[test]
    fn refuses_wrong_length_and_characters() {
        assert_eq!(
            EMPTY_SHA256[..62].parse::<Fingerprint>(),
            Err(FingerprintError::Length(62))
        );
        assert_eq!(
            format!("{EMPTY_SHA256}00").parse::<Fingerprint>(),
            Err(FingerprintError::Length(66))
        );
        let bad = format!("g{}", &EMPTY_SHA256[1..]);
        assert_eq!(
            bad.parse::<Fingerprint>(),
            Err(FingerprintError::Character('g'))
        );
        assert_eq!("".parse::<Fingerprint>(), Err(FingerprintError::Length(0)));
    }
}
