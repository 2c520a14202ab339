//! TLS for every Damrey listener and client, with rustls (the `ring` provider): server
//! and client configs made from PEM files. One home for how certificates, keys and
//! trusted CAs are read, so the proxy, the agent and worker processes agree.
//!
//! Mutual TLS between agents: an agent's listener asks every client for a certificate
//! signed by the mesh's CA and verifies one when it is given (workers and curl may come
//! without one); its peer links present the agent's own certificate. A certificate
//! signed by another CA fails the handshake either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificates or the key.
    #[error("the TLS configuration is refused")]
    Rustls(#[from] rustls::Error),
    /// Only one of a certificate and its key is set.
    #[error("tls_cert and tls_key go together: {0} is set without the other")]
    HalfIdentity(&'static str),
    /// The CA cannot verify client certificates.
    #[error("the CA cannot verify client certificates")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Where a service's certificate and key are, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Identity {
    /// The identity of a service's `tls_cert` and `tls_key` settings: none when neither
    /// is set (TLS off).
    ///
    /// # Errors
    /// [`TlsError::HalfIdentity`] when only one is set.
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Identity>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Identity {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::HalfIdentity("tls_cert")),
            (None, Some(_)) => Err(TlsError::HalfIdentity("tls_key")),
        }
    }
}

/// The cryptography every config uses: rustls' `ring` provider, named explicitly so no
/// process-wide default is needed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in the PEM file at `path`.
///
/// # Errors
/// [`TlsError`] when the file cannot be read or holds none.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what: "certificates",
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// The private key in the PEM file at `path`.
///
/// # Errors
/// [`TlsError`] when the file cannot be read or holds no key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        what: "a private key",
        path: path.to_owned(),
        source,
    })
}

/// The CA certificates in the PEM file at `path`, as trust roots.
///
/// # Errors
/// [`TlsError`] when the file cannot be read, holds none, or one is not a CA rustls takes.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate)?;
    }
    Ok(roots)
}

/// A listener's config: it presents `identity`; with `client_ca`, it asks clients for a
/// certificate signed by that CA and verifies any that is given (one that is not signed
/// by it fails the handshake), while clients without one still connect.
///
/// # Errors
/// [`TlsError`] when a file cannot be used.
pub fn server_config(
    identity: &Identity,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .allow_unauthenticated()
                .build()?,
        ),
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_single_cert(certificates(&identity.cert)?, private_key(&identity.key)?)?)
}

/// A client's config: it trusts the CA certificates in `ca` (and nothing else), checks
/// that the server's certificate names the host it dials, and presents `identity` when
/// a server asks for a certificate.
///
/// # Errors
/// [`TlsError`] when a file cannot be used.
pub fn client_config(ca: &Path, identity: Option<&Identity>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    Ok(match identity {
        Some(identity) => builder
            .with_client_auth_cert(certificates(&identity.cert)?, private_key(&identity.key)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// An HTTP and WebSocket client: over TLS with `tls` (for `https://` and `wss://`
/// URLs), else plain.
pub fn client(timeout: Duration, tls: Option<&Arc<ClientConfig>>) -> awc::Client {
    let builder = awc::Client::builder().timeout(timeout);
    match tls {
        Some(config) => builder
            .connector(awc::Connector::new().rustls_0_23(config.clone()))
            .finish(),
        None => builder.finish(),
    }
}

/// `https` with TLS, `http` without.
pub fn http_scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// `wss` with TLS, `ws` without.
pub fn ws_scheme(tls: bool) -> &'static str {
    if tls { "wss" } else { "ws" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    #[test]
    fn configs_are_made_from_pem_files_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("damrey-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let identity = Identity {
            cert: write(&dir, "leaf.pem", &leaf.pem()),
            key: write(&dir, "leaf.key", &key.serialize_pem()),
        };
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        let empty = write(&dir, "empty.pem", "");

        assert!(server_config(&identity, None).is_ok());
        assert!(server_config(&identity, Some(&ca_file)).is_ok());
        assert!(client_config(&ca_file, Some(&identity)).is_ok());
        let no_ca = client_config(&empty, None).unwrap_err();
        assert_eq!(
            no_ca.to_string(),
            format!("{} holds no certificate", empty.display())
        );
        let missing = Identity {
            cert: identity.cert.clone(),
            key: dir.join("missing.key"),
        };
        assert!(
            server_config(&missing, None)
                .unwrap_err()
                .to_string()
                .starts_with("cannot read a private key from")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
