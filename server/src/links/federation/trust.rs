//! Which domain a server's certificate speaks for (FEDERATION.md §2): the
//! operator's configured peer, whose fingerprint is pinned, or, with
//! `federation_webpki`, any certificate that chains to a trusted root and
//! is valid for the domain.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::tls;
use crate::model::PeerRecord;

/// WebPKI trust: the roots, and what checks a chain against them.
#[derive(Debug)]
pub(crate) struct WebPki {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The dialling side's check of a peer's certificate for its domain.
    verifier: Arc<WebPkiServerVerifier>,
}

impl WebPki {
    /// Trusts certificates chaining to `roots`.
    pub(crate) fn new(roots: RootCertStore) -> Result<Self, rustls::Error> {
        let provider = tls::provider();
        let roots = Arc::new(roots);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Self {
            roots,
            algorithms: provider.signature_verification_algorithms,
            verifier,
        })
    }

    /// Checks that `chain` (a peer's certificate, then its intermediates)
    /// chains to a trusted root and is valid for `domain`, as a server
    /// certificate: the one the peer proves its domain with when it is
    /// dialled. (Public authorities no longer issue the client usage, so
    /// it is not asked for.)
    pub(crate) fn proves(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let (end, intermediates) = chain.split_first().ok_or("it presented no certificate")?;
        let name = ServerName::try_from(domain)
            .map_err(|e| format!("{domain} is not a name a certificate can carry: {e}"))?;
        let cert = webpki::EndEntityCert::try_from(end)
            .map_err(|e| format!("its certificate cannot be read: {e}"))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::UnknownIssuer => {
                "its certificate does not chain to a trusted root".to_owned()
            }
            other => format!("its certificate chain is not valid: {other}"),
        })?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| format!("its certificate is not valid for {domain}"))
    }
}

/// What a connection to `peer` must find its certificate to be: the
/// configured fingerprint, else valid for `peer` by WebPKI.
pub(super) fn for_dialling(
    peer: &str,
    configured: Option<&PeerRecord>,
    webpki: Option<&WebPki>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    match (configured, webpki) {
        (Some(config), _) if !config.fingerprint.is_empty() => {
            Ok(tls::pinned(config.fingerprint.clone()))
        }
        (_, Some(webpki)) => Ok(webpki.verifier.clone()),
        (Some(_), None) => Err(format!(
            "{peer} has no fingerprint configured, and federation_webpki is off"
        )),
        (None, None) => Err(format!(
            "{peer} is not a configured peer, and federation_webpki is off"
        )),
    }
}

/// The domain a connecting server proved it is, or why it did not: its
/// `Open` claims `origin`; its certificate is `chain`.
pub(super) fn for_accepting(
    own_domain: &str,
    origin: &str,
    configured: Option<&PeerRecord>,
    webpki: Option<&WebPki>,
    chain: &[CertificateDer<'_>],
) -> Result<String, String> {
    let fingerprint = chain
        .first()
        .map(crate::ops::certificate::fingerprint)
        .unwrap_or_default();
    if origin == own_domain {
        return Err(format!("claims {origin}, this server's own domain"));
    }
    match (configured, webpki) {
        (Some(peer), _) if !peer.fingerprint.is_empty() => {
            if peer.fingerprint == fingerprint {
                Ok(peer.domain.clone())
            } else {
                Err(format!(
                    "claims {origin} with certificate {fingerprint}, not the one configured for it"
                ))
            }
        }
        (_, Some(webpki)) => {
            kanal_proto::address::validate_domain(origin)
                .map_err(|e| format!("claims `{origin}`, not a domain: {e}"))?;
            webpki
                .proves(chain, origin)
                .map(|()| origin.to_owned())
                .map_err(|why| format!("claims {origin} (certificate {fingerprint}), but {why}"))
        }
        (Some(_), None) => Err(format!(
            "claims {origin}, a configured peer without a fingerprint, and federation_webpki is \
             off (certificate {fingerprint})"
        )),
        (None, None) => Err(format!(
            "claims {origin}, which is not a configured peer (certificate {fingerprint})"
        )),
    }
}
