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

use actix_rt::net::TcpStream;
use actix_service::{Service, ServiceExt};
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection as TcpConnection, Connector as TcpConnector, Resolver,
};
use awc::http::Uri;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The scheme of the URI subject alternative name that names an agent in its
/// certificate: `damrey-agent://HOST:PORT`, the agent's advertised address. `damrey certs
/// DIR NAME=HOST:PORT` writes it; an agent checks it on every peer link under mutual TLS.
pub const AGENT_URI_SCHEME: &str = "damrey-agent";

/// The URI subject alternative name of the agent advertised at `address` (`host:port`).
pub fn agent_uri(address: &str) -> String {
    format!("{AGENT_URI_SCHEME}://{address}")
}

/// The agents a certificate names: the `host:port` of each `damrey-agent://` URI subject
/// alternative name, in the certificate's order (none for an older certificate, made
/// without one).
///
/// The certificate is read only as far as its subject alternative names, by walking its
/// DER (RFC 5280: `Certificate`, `TBSCertificate`, `extensions [3]`, the extension
/// 2.5.29.17, `uniformResourceIdentifier [6]`): rustls and webpki verify a certificate
/// but expose none of its names, and this one field does not call for an X.509 parser
/// crate. Every certificate read here was verified by the handshake first; anything
/// malformed reads as naming no agent.
pub fn agent_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const OCTET_STRING: u8 = 0x04;
    const URI: u8 = 0x86;
    const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
    let prefix = format!("{AGENT_URI_SCHEME}://");
    let names = || -> Option<Vec<String>> {
        let (_, certificate, _) = der_element(certificate.as_ref(), SEQUENCE)?;
        let (_, tbs, _) = der_element(certificate, SEQUENCE)?;
        let extensions = der_elements(tbs).find(|(tag, _)| *tag == EXTENSIONS)?.1;
        let (_, extensions, _) = der_element(extensions, SEQUENCE)?;
        let alt_names = der_elements(extensions).find_map(|(tag, extension)| {
            let (_, oid, rest) = der_element(extension, OID).filter(|_| tag == SEQUENCE)?;
            if oid != SUBJECT_ALT_NAME {
                return None;
            }
            // An optional `critical` BOOLEAN, then the value.
            let value = der_elements(rest).find(|(tag, _)| *tag == OCTET_STRING)?.1;
            Some(der_element(value, SEQUENCE)?.1)
        })?;
        Some(
            der_elements(alt_names)
                .filter(|(tag, _)| *tag == URI)
                .filter_map(|(_, uri)| std::str::from_utf8(uri).ok())
                .filter_map(|uri| uri.strip_prefix(&prefix))
                .map(str::to_owned)
                .collect(),
        )
    };
    names().unwrap_or_default()
}

/// The DER element at the start of `input` if its tag is `tag`: (tag, contents, rest).
fn der_element(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    der_next(input).filter(|(found, _, _)| *found == tag)
}

/// The DER elements of `input`, one after another, as (tag, contents).
fn der_elements(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, contents, rest) = der_next(input)?;
        input = rest;
        Some((tag, contents))
    })
}

/// The first DER element of `input`: (tag, contents, rest); none when `input` is empty
/// or malformed. Only the one-byte tags of X.509's structures are read.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (length, rest) = rest.split_at(bytes);
        let length = length
            .iter()
            .fold(0usize, |sum, &byte| sum << 8 | usize::from(byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

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
    /// The CA cannot verify certificates.
    #[error("the CA cannot verify certificates")]
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

/// Client configs for links to other agents, under mutual TLS: each trusts the mesh's CA
/// only, presents this agent's certificate, and takes only a server certificate that
/// names the agent dialled (`damrey-agent://host:port`), so a certificate of another
/// agent on the same host (another port) is refused.
#[derive(Debug, Clone)]
pub struct AgentDialer {
    base: Arc<ClientConfig>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl AgentDialer {
    /// Dials trusting the CA certificates in `ca`, presenting `identity`.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be used.
    pub fn new(ca: &Path, identity: Option<&Identity>) -> Result<AgentDialer, TlsError> {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()?;
        Ok(AgentDialer {
            base: Arc::new(client_config(ca, identity)?),
            verifier,
        })
    }

    /// The config of links to the agent advertised at `agent` (`host:port`).
    pub fn config_for(&self, agent: &str) -> Arc<ClientConfig> {
        let mut config = (*self.base).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AgentServerVerifier {
                inner: self.verifier.clone(),
                agent: agent.to_owned(),
            }));
        // A resumed session skips the certificate: links to each agent keep their own.
        config.resumption = Resumption::default();
        Arc::new(config)
    }
}

/// Verifies an agent's server certificate as any client does (the CA signed it for the
/// host dialled), then that it names the agent dialled.
#[derive(Debug)]
struct AgentServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The agent dialled, `host:port`.
    agent: String,
}

impl ServerCertVerifier for AgentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // One agent per certificate, as the listener reads it (`damrey-agent`'s
        // `/peer`): a certificate naming several identifies none.
        let names = agent_names(end_entity);
        if names == [self.agent.as_str()] {
            return Ok(verified);
        }
        let error = if names.is_empty() {
            format!(
                "the agent at {} presented a certificate that names no agent (no {} URI \
                 subject alternative name): {REMAKE}",
                self.agent,
                agent_uri("HOST:PORT"),
            )
        } else {
            let named: Vec<String> = names.iter().map(|name| agent_uri(name)).collect();
            format!(
                "the agent at {} presented a certificate for {}, not {}",
                self.agent,
                named.join(", "),
                agent_uri(&self.agent),
            )
        };
        tracing::warn!(agent = %self.agent, error = %error, "refused an agent's certificate");
        Err(rustls::Error::General(error))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What to do about a certificate that names no agent.
pub const REMAKE: &str = "remake the mesh's certificates with `damrey certs DIR NAME=HOST:PORT`, each agent's with its advertised address";

/// An HTTP and WebSocket client: over TLS with `tls` (for `https://` and `wss://`
/// URLs), else plain. Its connections send without delay ([`tcp_nodelay`]).
pub fn client(timeout: Duration, tls: Option<&Arc<ClientConfig>>) -> awc::Client {
    let connector = awc::Connector::new().connector(tcp_nodelay());
    let connector = match tls {
        Some(config) => connector.rustls_0_23(config.clone()),
        None => connector,
    };
    awc::Client::builder()
        .timeout(timeout)
        .connector(connector)
        .finish()
}

/// awc's TCP connector, with `TCP_NODELAY` set on every connection it opens. It resolves
/// names as awc's default does without its `hickory-dns` feature (std's resolver, off
/// the event loop); awc still adds its connect timeout and TLS around it.
///
/// A worker link or a peer link carries many small frames both ways on one connection.
/// With Nagle's algorithm on, a frame written while an earlier one is unacknowledged
/// waits for that ACK, which the other side may delay: a 64 KiB argument, one full
/// segment and a short tail on loopback, waited on every hop. The frames are already
/// gathered per wake-up before they are written, which is what Nagle would have done.
fn tcp_nodelay()
-> impl Service<ConnectInfo<Uri>, Response = TcpConnection<Uri, TcpStream>, Error = ConnectError> + Clone
{
    TcpConnector::new(Resolver::default()).service().map(
        |connection: TcpConnection<Uri, TcpStream>| {
            if let Err(error) = connection.io_ref().set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
            connection
        },
    )
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

    #[actix_rt::test]
    async fn the_clients_connections_send_without_delay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connection = tcp_nodelay()
            .call(ConnectInfo::new(uri))
            .await
            .expect("connects");
        assert!(connection.io_ref().nodelay().unwrap(), "TCP_NODELAY is set");
    }

    #[test]
    fn the_agents_a_certificate_names_are_its_damrey_agent_uris() {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = |names: &[&str]| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = names
                .iter()
                .map(|name| match name.parse() {
                    Ok(ip) => rcgen::SanType::IpAddress(ip),
                    Err(_) => rcgen::SanType::URI((*name).try_into().unwrap()),
                })
                .collect();
            params.self_signed(&key).unwrap().der().clone()
        };

        let agent = certificate(&["127.0.0.1", "damrey-agent://127.0.0.1:7701"]);
        let two = certificate(&[
            "damrey-agent://10.0.0.2:7701",
            "https://example.test/",
            "damrey-agent://[::1]:7702",
        ]);
        let older = certificate(&["127.0.0.1"]);

        assert_eq!(agent_names(&agent), ["127.0.0.1:7701"]);
        assert_eq!(agent_names(&two), ["10.0.0.2:7701", "[::1]:7702"]);
        assert!(agent_names(&older).is_empty());
        let truncated = CertificateDer::from(agent.as_ref()[..agent.len() / 2].to_vec());
        assert!(agent_names(&truncated).is_empty());
        assert!(agent_names(&CertificateDer::from(Vec::new())).is_empty());
        // Never a panic, whatever the bytes: every cut, and every byte flipped.
        for end in 0..two.len() {
            agent_names(&CertificateDer::from(two.as_ref()[..end].to_vec()));
        }
        for at in 0..two.len() {
            let mut bytes = two.as_ref().to_vec();
            bytes[at] ^= 0xff;
            agent_names(&CertificateDer::from(bytes));
        }
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
