//! A certificate authority of the test's own (rcgen): what servers trust
//! by WebPKI when it is their `federation_ca_file`, and the certificates
//! it issues for their domains.

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A test CA.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// A self-signed certificate for `domain`: one no authority issued.
pub fn self_signed(domain: &str) -> Result<Issued> {
    let certified = rcgen::generate_simple_self_signed(vec![domain.to_owned()])?;
    Ok(Issued {
        cert: certified.cert.pem(),
        key: certified.signing_key.serialize_pem(),
    })
}

impl TestCa {
    /// A new root named `name`.
    pub fn new(name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        })
    }

    /// The root certificate, PEM: what `federation_ca_file` holds.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `domain` (its only name; the server
    /// usage only, as public authorities issue them now).
    pub fn issue(&self, domain: &str) -> Result<Issued> {
        let mut params = CertificateParams::new(vec![domain.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, domain);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
