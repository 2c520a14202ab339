//! `damrey certs DIR NAME=HOST[:PORT] ...`: a development CA and a certificate per
//! process of a mesh, with rcgen. The CA is made once in DIR and reused, so agents can be
//! added later; every certificate serves and authenticates (serverAuth and clientAuth),
//! so one file is an agent's listener identity and its peer-link identity alike.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use damrey_service::tls::agent_uri;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::SUCCESS;
use crate::cli::CertsArgs;

/// How long the CA and the certificates are valid: 825 days, the longest that Apple's
/// TLS clients accept for a server certificate.
const VALIDITY: Duration = Duration::from_secs(825 * 24 * 60 * 60);
/// The CA's common name; a reused CA is remade with it, so it must not change.
const CA_NAME: &str = "Damrey development CA";

/// What one `NAME=HOST[:PORT]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The files' name: `DIR/NAME.pem` and `DIR/NAME.key`.
    pub name: String,
    /// The host the certificate names: an IP address or a DNS name.
    pub host: Host,
    /// The port of an agent's advertised address, which the certificate then names too.
    pub port: Option<u16>,
}

/// A certificate's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP address subject alternative name.
    Ip(IpAddr),
    /// A DNS name subject alternative name.
    Dns(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

impl Holder {
    /// The agent address the certificate names (`host:port`), when a port was given.
    fn agent(&self) -> Option<String> {
        self.port.map(|port| format!("{}:{port}", self.host))
    }
}

/// Parses `NAME=HOST[:PORT]` (an IPv6 host with a port in brackets: `NAME=[::1]:7701`),
/// for clap: an error here is a usage error (exit 2).
pub fn parse_holder(text: &str) -> Result<Holder, String> {
    let Some((name, address)) = text.split_once('=') else {
        return Err("expected NAME=HOST or NAME=HOST:PORT".into());
    };
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !name.starts_with('.');
    if !name_ok {
        return Err(format!(
            "the name {name:?} is not 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot)"
        ));
    }
    if name == "ca" {
        return Err("the name \"ca\" is the CA's own (ca.pem, ca.key)".into());
    }
    let (host, port) = split_host_port(address)?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => {
            rustls::pki_types::DnsName::try_from(host)
                .map_err(|_| format!("{host:?} is neither an IP address nor a DNS name"))?;
            Host::Dns(host.to_owned())
        }
    };
    Ok(Holder {
        name: name.to_owned(),
        host,
        port,
    })
}

/// Splits `HOST[:PORT]`, `[IPV6]:PORT` or a bare IPv6 address.
fn split_host_port(address: &str) -> Result<(&str, Option<u16>), String> {
    let port = |text: &str| match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(format!("the port {text:?} is not a number from 1 to 65535")),
    };
    if let Some(rest) = address.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err(format!("{address:?} opens a [ without closing it"));
        };
        return match after.strip_prefix(':') {
            Some(number) => Ok((ip, port(number)?)),
            None if after.is_empty() => Ok((ip, None)),
            None => Err(format!("unexpected {after:?} after [{ip}]")),
        };
    }
    match address.matches(':').count() {
        0 if address.is_empty() => Err("the host is empty".into()),
        0 => Ok((address, None)),
        1 => {
            let (host, number) = address.split_once(':').expect("one colon");
            if host.is_empty() {
                return Err("the host is empty".into());
            }
            Ok((host, port(number)?))
        }
        // An IPv6 address alone; with a port it needs brackets.
        _ => Ok((address, None)),
    }
}

/// Makes (or reuses) the CA in `args.dir` and a certificate per holder; prints each
/// file made with the names it carries.
///
/// # Errors
/// DIR or a file in it cannot be written, or the CA's files there cannot be used.
pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (ca, ca_key_pair) = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(&ca_key)
                .with_context(|| format!("cannot read {}", ca_key.display()))?;
            let key = KeyPair::from_pem(&pem)
                .with_context(|| format!("{} holds no usable key", ca_key.display()))?;
            // rcgen signs with the issuer's name and key, so the CA made again from its
            // key is the one in ca.pem for every certificate it signs.
            let ca = ca_params().self_signed(&key)?;
            println!("{} (reused)", ca_cert.display());
            (ca, key)
        }
        (false, false) => {
            let key = KeyPair::generate()?;
            let ca = ca_params().self_signed(&key)?;
            write_private(&ca_key, &key.serialize_pem())?;
            write(&ca_cert, &ca.pem())?;
            println!("{} (new CA)", ca_cert.display());
            (ca, key)
        }
        (cert, _) => bail!(
            "{} is there without {}: remove it, or give another DIR",
            if cert { &ca_cert } else { &ca_key }.display(),
            if cert { &ca_key } else { &ca_cert }.display(),
        ),
    };
    for holder in &args.holders {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, holder.name.as_str());
        params.subject_alt_names.push(match &holder.host {
            Host::Ip(ip) => SanType::IpAddress(*ip),
            Host::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
        });
        if let Some(agent) = holder.agent() {
            params
                .subject_alt_names
                .push(SanType::URI(agent_uri(&agent).as_str().try_into()?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &ca, &ca_key_pair)?;
        let (cert_path, key_path) = (
            dir.join(format!("{}.pem", holder.name)),
            dir.join(format!("{}.key", holder.name)),
        );
        write_private(&key_path, &key.serialize_pem())?;
        write(&cert_path, &certificate.pem())?;
        let mut names = vec![match &holder.host {
            Host::Ip(ip) => format!("IP:{ip}"),
            Host::Dns(name) => format!("DNS:{name}"),
        }];
        if let Some(agent) = holder.agent() {
            names.push(format!("URI:{}", agent_uri(&agent)));
        }
        println!("{} ({})", cert_path.display(), names.join(", "));
    }
    Ok(ExitCode::from(SUCCESS))
}

/// The CA's parameters; the same on every run, so a reused CA key makes the same issuer.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    params
}

/// From now for [`VALIDITY`].
fn validity(params: &mut CertificateParams) {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is past 1970");
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_after = params.not_before + VALIDITY;
}

/// Writes a certificate (readable by all, as any certificate).
fn write(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a private key readable by its owner only (mode 0600, also when the file was
/// there before with another mode).
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(context)?;
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(context)?;
    file.write_all(pem.as_bytes()).with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(name: &str, host: Host, port: Option<u16>) -> Holder {
        Holder {
            name: name.into(),
            host,
            port,
        }
    }

    #[test]
    fn a_holder_names_an_ip_or_a_dns_host_and_maybe_a_port() {
        let ip = |text: &str| Host::Ip(text.parse().unwrap());
        assert_eq!(
            parse_holder("one=127.0.0.1:7701"),
            Ok(holder("one", ip("127.0.0.1"), Some(7701)))
        );
        assert_eq!(
            parse_holder("proxy=10.0.0.2"),
            Ok(holder("proxy", ip("10.0.0.2"), None))
        );
        assert_eq!(
            parse_holder("a-1=agent.example:7701"),
            Ok(holder("a-1", Host::Dns("agent.example".into()), Some(7701)))
        );
        assert_eq!(
            parse_holder("six=[::1]:7701"),
            Ok(holder("six", ip("::1"), Some(7701)))
        );
        assert_eq!(parse_holder("six=::1"), Ok(holder("six", ip("::1"), None)));
        assert_eq!(
            parse_holder("six=[::1]:7701").unwrap().agent().as_deref(),
            Some("[::1]:7701")
        );
    }

    #[test]
    fn a_bad_holder_is_refused_with_its_reason() {
        let refused = |text: &str| parse_holder(text).unwrap_err();
        assert_eq!(refused("agent"), "expected NAME=HOST or NAME=HOST:PORT");
        assert!(refused("=127.0.0.1").contains("is not 1-64 of"));
        assert!(refused("a/b=127.0.0.1").contains("is not 1-64 of"));
        assert!(refused("ca=127.0.0.1").contains("the CA's own"));
        assert_eq!(refused("one="), "the host is empty");
        assert_eq!(
            refused("one=127.0.0.1:0"),
            "the port \"0\" is not a number from 1 to 65535"
        );
        assert_eq!(
            refused("one=127.0.0.1:http"),
            "the port \"http\" is not a number from 1 to 65535"
        );
        assert_eq!(
            refused("one=bad_host!"),
            "\"bad_host!\" is neither an IP address nor a DNS name"
        );
        assert_eq!(refused("one=[::1"), "\"[::1\" opens a [ without closing it");
    }
}
