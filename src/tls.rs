//! The federation listener's TLS: a certificate chain and private key from PEM files.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    },
    TlsAcceptor,
};

/// The acceptor of TLS connections with the certificate chain and key of these files.
pub fn acceptor(certificate: &str, private_key: &str) -> Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .with_context(|| format!("reading the TLS certificate {certificate}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the TLS certificate {certificate}"))?;
    let key = PrivateKeyDer::from_pem_file(private_key)
        .with_context(|| format!("reading the TLS private key {private_key}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
