//! TLS for client connections: a pinned certificate, or WebPKI.
//!
//! `kanald` generates a self-signed certificate by default, which no CA vouches
//! for; its operator hands out the certificate's SHA-256 instead and clients
//! pin it. A pin replaces the whole chain and name check: the server proves it
//! holds the pinned certificate's key in the TLS 1.3 handshake signature, which
//! is still verified. Without a pin the server needs a certificate a public CA
//! issued for its name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::ClientError;
use crate::fingerprint::Fingerprint;

/// A rustls client configuration for Kanal: TLS 1.3 only, ALPN
/// [`kanal_proto::ALPN_CLIENT`], and either the pinned certificate or the
/// WebPKI roots.
pub fn client_crypto(pin: Option<Fingerprint>) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut config = match pin {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin, &provider)))
            .with_no_client_auth(),
        None => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ClientError::Config(format!("WebPKI verifier: {e}")))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![kanal_proto::ALPN_CLIENT.to_vec()];
    Ok(config)
}

/// Accepts exactly the certificate whose SHA-256 is the pin.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pin: Fingerprint, provider: &CryptoProvider) -> Self {
        Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_set_alpn_and_tls13() {
        for pin in [None, Some(Fingerprint([7; 32]))] {
            let config = client_crypto(pin).expect("config");
            assert_eq!(config.alpn_protocols, vec![b"kanal/1".to_vec()]);
            let config = Arc::new(config);
            quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("usable by QUIC");
        }
    }

    #[test]
    fn pinned_verifier_accepts_only_the_pin() {
        let der = CertificateDer::from(vec![1u8, 2, 3]);
        let provider = rustls::crypto::ring::default_provider();
        let name = ServerName::try_from("localhost").expect("name");
        let good = PinnedVerifier::new(Fingerprint::of_der(&der), &provider);
        assert!(
            good.verify_server_cert(&der, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        let bad = PinnedVerifier::new(Fingerprint([0; 32]), &provider);
        assert!(
            bad.verify_server_cert(&der, &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }
}
