//! Certificates: the self-signed pair `kanald init` generates, loading the
//! operator's PEM files, and the SHA-256 fingerprint clients pin.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the self-signed certificate failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file is missing or malformed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A self-signed certificate for `domain` (plus `localhost` and the loopback
/// addresses), as `(certificate PEM, private key PEM)`.
pub(crate) fn self_signed(domain: &str) -> Result<(String, String), TlsError> {
    let mut names = vec![domain.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.into());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// Writes the pair with the key readable by its owner only.
pub(crate) fn write_pair(
    cert_path: &Path,
    key_path: &Path,
    cert: &str,
    key: &str,
) -> Result<(), TlsError> {
    let write = |path: &Path, text: &str, private: bool| -> Result<(), TlsError> {
        let err = |source| TlsError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(path, text).map_err(err)?;
        if private {
            restrict(path).map_err(err)?;
        }
        Ok(())
    };
    write(cert_path, cert, false)?;
    write(key_path, key, true)
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Loads a certificate chain and key from PEM files.
pub(crate) fn load(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem_err = |path: &Path, message: String| TlsError::Pem {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_err(cert_path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(cert_path, "no certificate in file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_err(key_path, e.to_string()))?;
    Ok((certs, key))
}

/// The roots WebPKI trusts: the usual public ones (`public`, as the
/// `webpki-roots` crate ships Mozilla's) and every certificate of the PEM
/// file `extra`, if given.
pub(crate) fn roots(public: bool, extra: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if public {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = extra {
        let pem_err = |message: String| TlsError::Pem {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| pem_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(pem_err("no certificate in file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| pem_err(format!("not a usable root certificate: {e}")))?;
        }
    }
    Ok(roots)
}

/// Why `certs` (this server's chain) does not prove `domain` by WebPKI
/// name rules, if it does not: peers trusting by WebPKI would refuse it.
pub(crate) fn not_valid_for(certs: &[CertificateDer<'_>], domain: &str) -> Option<String> {
    let name = match rustls_pki_types::ServerName::try_from(domain) {
        Ok(name) => name,
        Err(e) => return Some(e.to_string()),
    };
    let first = certs.first()?;
    let cert = match webpki::EndEntityCert::try_from(first) {
        Ok(cert) => cert,
        Err(e) => return Some(format!("unreadable certificate: {e}")),
    };
    cert.verify_is_valid_for_subject_name(&name)
        .err()
        .map(|e| e.to_string())
}

/// The SHA-256 fingerprint of a DER certificate, as lowercase hex: what
/// clients pin.
pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_loads_and_has_a_stable_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed("acme.example").expect("generate");
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        write_pair(&cp, &kp, &cert, &key).expect("write");
        let (certs, _key) = load(&cp, &kp).expect("load");
        let fp = fingerprint(&certs[0]);
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, fingerprint(&load(&cp, &kp).expect("load").0[0]));
    }

    #[test]
    fn roots_load_from_pem_and_name_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _key) = self_signed("ca.example").expect("generate");
        let path = dir.path().join("roots.pem");
        std::fs::write(&path, &cert).expect("write");
        assert_eq!(roots(false, Some(&path)).expect("roots").len(), 1);
        assert!(roots(true, None).expect("public roots").len() > 50);
        std::fs::write(&path, "not pem").expect("write");
        let err = roots(false, Some(&path)).expect_err("no certificate");
        assert!(err.to_string().contains("roots.pem"), "{err}");
    }

    #[test]
    fn a_certificate_is_checked_for_the_domain_it_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed("acme.example").expect("generate");
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        write_pair(&cp, &kp, &cert, &key).expect("write");
        let (certs, _key) = load(&cp, &kp).expect("load");
        assert_eq!(not_valid_for(&certs, "acme.example"), None);
        assert!(not_valid_for(&certs, "other.example").is_some());
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = load(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    }
}
