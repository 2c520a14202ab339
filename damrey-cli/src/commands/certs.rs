//! `damrey certs DIR NAME=HOST[:PORT] ...`: a development CA and a certificate per
//! process of a mesh, with rcgen. The CA is made once in DIR and reused, so agents can be
//! added later; every certificate serves and authenticates (serverAuth and clientAuth),
//! so one file is an agent's listener identity and its peer-link identity alike.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
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
use crate::holder::Host;

/// How long the CA and the certificates are valid: 825 days, the longest that Apple's
/// TLS clients accept for a server certificate.
const VALIDITY: Duration = Duration::from_secs(825 * 24 * 60 * 60);
/// The CA's common name; a reused CA is remade with it, so it must not change.
const CA_NAME: &str = "Damrey development CA";

/// Makes (or reuses) the CA in `args.dir` and a certificate per holder; prints each
/// file made with the names it carries.
///
/// # Errors
/// DIR or a file in it cannot be written, or the CA's files there cannot be used.
pub fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let mut named = std::collections::HashSet::new();
    if let Some(twice) = args
        .holders
        .iter()
        .find(|holder| !named.insert(&holder.name))
    {
        bail!(
            "{} is named twice: each NAME gets its own files, so one would overwrite the other",
            twice.name
        );
    }
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
