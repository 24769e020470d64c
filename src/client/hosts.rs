//! The hosts a client talks to: the default list, and a list as the
//! command line and `CAUSALKV_HOSTS` give it.

use crate::address::SocketAddress;

/// The hosts a client talks to when told nothing else: the three replicas
/// of the README's quick start (bare ports take the IP of the host before).
pub const DEFAULT_HOSTS: &str = "127.0.0.1:8082,8083,8084";

/// Parses a comma-separated host list such as `10.0.0.2:8085,8086`.
///
/// A bare port means that port on the host of the entry before it
/// (`127.0.0.1` when it comes first). Empty items and duplicates are
/// dropped; the order is kept, since it is the order hosts are tried in.
pub fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut hosts: Vec<String> = Vec::new();
    let mut last_host = "127.0.0.1".to_string();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let full = if item.bytes().all(|b| b.is_ascii_digit()) {
            format!("{last_host}:{item}")
        } else {
            item.to_string()
        };
        let address = SocketAddress::parse(&full).map_err(|e| format!("invalid host: {e}"))?;
        let canonical = address.as_str().to_string();
        if let Some((host, _port)) = canonical.rsplit_once(':') {
            last_host = host.to_string();
        }
        if !hosts.contains(&canonical) {
            hosts.push(canonical);
        }
    }
    if hosts.is_empty() {
        return Err("no host given".into());
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn bare_ports_take_the_host_before_them() {
        assert_eq!(
            parse_hosts(DEFAULT_HOSTS).unwrap(),
            ["127.0.0.1:8082", "127.0.0.1:8083", "127.0.0.1:8084"]
        );
        assert_eq!(
            parse_hosts(" 10.0.0.2:8085, 8086 ,,[::1]:9000,9001,10.0.0.2:8086").unwrap(),
            ["10.0.0.2:8085", "10.0.0.2:8086", "[::1]:9000", "[::1]:9001"]
        );
        assert_eq!(parse_hosts("8085").unwrap(), ["127.0.0.1:8085"]);
        assert_eq!(
            parse_hosts("localhost:1,2").unwrap(),
            ["localhost:1", "localhost:2"]
        );
    }

    #[test]
    fn malformed_host_lists_are_rejected() {
        for bad in ["", " , ", "nohost", "1.2.3.4:99999", "a b:1", "1.2.3.4:0"] {
            assert!(parse_hosts(bad).is_err(), "accepted {bad:?}");
        }
    }
}
