//! `ip:port` socket addresses of replicas, ordered the way views print them.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The address under which a replica is reached, e.g. `10.10.0.2:8085`.
///
/// Addresses order by IP numerically, then port (host names after IPs,
/// alphabetically), so a view prints the same at every replica.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SocketAddress {
    text: Arc<str>,
    host: Host,
    port: u16,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl SocketAddress {
    /// Parses `ip:port` (or `[ipv6]:port`, or `hostname:port`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not of the form ip:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{text:?} has no valid port"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = if let Ok(ip) = bare.parse::<IpAddr>() {
            Host::Ip(ip)
        } else if !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            Host::Name(host.to_ascii_lowercase())
        } else {
            return Err(format!("{text:?} has no valid host"));
        };
        let canonical = match &host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Host::Ip(ip) => format!("{ip}:{port}"),
            Host::Name(name) => format!("{name}:{port}"),
        };
        Ok(SocketAddress {
            text: Arc::from(canonical),
            host,
            port,
        })
    }

    /// Parses a comma-separated list, ignoring empty items and duplicates.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut out: Vec<Self> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let addr = SocketAddress::parse(item)?;
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address as `host:port` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for SocketAddress {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.host, self.port).cmp(&(&other.host, other.port))
    }
}

impl PartialOrd for SocketAddress {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SocketAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SocketAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SocketAddress::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_ips_numerically_then_ports() {
        let list = SocketAddress::parse_list(
            "10.10.0.10:8085,10.10.0.2:8085,10.10.0.2:80, 10.10.0.3:8085",
        )
        .unwrap();
        let printed: Vec<&str> = list.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            printed,
            [
                "10.10.0.2:80",
                "10.10.0.2:8085",
                "10.10.0.3:8085",
                "10.10.0.10:8085"
            ]
        );
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "a b:1",
            ":80",
        ] {
            assert!(SocketAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn round_trips_through_text() {
        for ok in ["127.0.0.1:8082", "[::1]:8085", "replica-0.kv:8085"] {
            let a = SocketAddress::parse(ok).unwrap();
            assert_eq!(SocketAddress::parse(a.as_str()).unwrap(), a);
            assert_eq!(a.as_str(), ok);
        }
    }
}
