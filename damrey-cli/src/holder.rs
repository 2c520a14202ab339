//! A certificate holder as `damrey certs` takes it on its command line,
//! `NAME=HOST[:PORT]`: its type and its parser, which clap calls.

use std::net::IpAddr;

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
    pub fn agent(&self) -> Option<String> {
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
