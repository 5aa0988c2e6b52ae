//! Address parsing: `[scheme://]host:port`, as the reference understands it, plus the
//! `inproc://NAME` form.
//!
//! - no scheme means `tcp`; the scheme is lower-cased;
//! - `localhost` means `127.0.0.1`; `publichost` / `publichostN` is the N-th IPv4
//!   address that this machine's host name resolves to;
//! - the port is a number, or a name hashed with [`port_hash`], optionally `name+N`
//!   (as in the reference, anything that is not a plain integer is hashed, so
//!   `1234+1` is the hash of `"1234"` plus one);
//! - anything after the port that starts with `/` is kept as a path (WebSocket).

use std::fmt;

use crate::error::Error;
use crate::hash::port_hash;

/// A parsed address.
///
/// ```
/// use yoton_core::Address;
/// let a = Address::parse("localhost:test+2").unwrap();
/// assert_eq!((a.scheme.as_str(), a.host.as_str(), a.port), ("tcp", "127.0.0.1", 56339));
/// let err = Address::parse("localhost:test+x").unwrap_err().to_string();
/// assert!(err.contains("port"), "{err}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Lower-case scheme, `tcp` when none was given.
    pub scheme: String,
    /// Resolved host (IP address or host name; the name for `inproc`).
    pub host: String,
    /// Port number (0: any free port when binding; always 0 for `inproc`).
    pub port: u16,
    /// Path after the port, with its leading `/` (empty when none).
    pub path: String,
}

fn err(address: &str, part: &'static str, what: impl Into<String>) -> Error {
    Error::Address {
        address: address.to_owned(),
        part,
        what: what.into(),
    }
}

impl Address {
    /// Parse an address; the error names the part that is wrong.
    pub fn parse(address: &str) -> Result<Address, Error> {
        let text = address.trim();
        if text.is_empty() {
            return Err(err(
                address,
                "address",
                "is empty; expected [scheme://]host:port",
            ));
        }
        let (scheme, rest) = match text.rfind("://") {
            Some(i) => (text[..i].to_lowercase(), &text[i + 3..]),
            None => ("tcp".to_owned(), text),
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return Err(err(
                address,
                "scheme",
                format!("`{scheme}` is not a valid scheme"),
            ));
        }
        if scheme == "inproc" {
            if rest.is_empty() {
                return Err(err(
                    address,
                    "name",
                    "inproc:// needs a name, e.g. inproc://workers",
                ));
            }
            return Ok(Address {
                scheme,
                host: rest.to_owned(),
                port: 0,
                path: String::new(),
            });
        }
        let (host, port_and_path) = split_host_port(rest).ok_or_else(|| {
            err(
                address,
                "port",
                "missing; expected host:port, e.g. localhost:test",
            )
        })?;
        if host.is_empty() {
            return Err(err(
                address,
                "host",
                "is empty; use localhost, publichost or an IP address",
            ));
        }
        let (port_text, path) = match port_and_path.find('/') {
            Some(i) => (&port_and_path[..i], &port_and_path[i..]),
            None => (port_and_path, ""),
        };
        let port = parse_port(port_text).map_err(|what| err(address, "port", what))?;
        let host = resolve_host(host).map_err(|what| err(address, "host", what))?;
        Ok(Address {
            scheme,
            host,
            port,
            path: path.to_owned(),
        })
    }

    /// `host:port` (IPv6 hosts in brackets), as a socket address string.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The first socket address `host:port` resolves to (a literal IP as it is, a
    /// name through the system's resolver), for a transport to bind or connect. A
    /// failed lookup may pass on a later attempt (the error is not permanent).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let a = yoton_core::Address::parse("tcp://127.0.0.1:8000").unwrap();
    /// assert_eq!(a.resolve().await.unwrap(), "127.0.0.1:8000".parse().unwrap());
    /// let v6 = yoton_core::Address::parse("tcp://[::1]:8000").unwrap();
    /// assert!(v6.resolve().await.unwrap().is_ipv6());
    /// # });
    /// ```
    pub async fn resolve(&self) -> Result<std::net::SocketAddr, crate::transport::TransportError> {
        use crate::transport::TransportError;
        let target = self.host_port();
        let mut found = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|e| TransportError::new(format!("cannot resolve {target}: {e}")))?;
        found
            .next()
            .ok_or_else(|| TransportError::new(format!("{target} resolves to no address")))
    }

    /// The same address with another port (e.g. the one actually bound).
    pub fn with_port(&self, port: u16) -> Address {
        Address {
            port,
            ..self.clone()
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == "inproc" {
            return write!(f, "inproc://{}", self.host);
        }
        write!(f, "{}://{}{}", self.scheme, self.host_port(), self.path)
    }
}

impl std::str::FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Address::parse(s)
    }
}

/// Split `host:port`, allowing `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = rest[end + 1..].strip_prefix(':')?;
        return Some((&rest[..end], port));
    }
    s.split_once(':')
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("is empty; give a number or a name".into());
    }
    let trimmed = text.trim();
    // Python's int() also takes '_' between digits ("1_000").
    let plain: String = trimmed.chars().filter(|c| *c != '_').collect();
    let underscores_ok =
        !trimmed.starts_with('_') && !trimmed.ends_with('_') && !trimmed.contains("__");
    if underscores_ok {
        if let Ok(n) = plain.parse::<i64>() {
            return u16::try_from(n).map_err(|_| format!("{n} is out of range 0..=65535"));
        }
    }
    if trimmed.chars().all(char::is_numeric) {
        return Err(format!("`{text}`: write port numbers with ASCII digits"));
    }
    let (name, offset) = match text.split_once('+') {
        Some((name, off)) => {
            let off: i64 = off
                .trim()
                .parse()
                .map_err(|_| format!("offset `{off}` in `{text}` is not an integer"))?;
            (name, off)
        }
        None => (text, 0),
    };
    let port = i64::from(port_hash(name)).saturating_add(offset);
    u16::try_from(port).map_err(|_| format!("`{text}` gives port {port}, out of range 0..=65535"))
}

fn resolve_host(host: &str) -> Result<String, String> {
    let lower = host.to_lowercase();
    if lower == "localhost" {
        return Ok("127.0.0.1".into());
    }
    if let Some(index) = lower.strip_prefix("publichost") {
        if index.chars().all(|c| c.is_ascii_digit()) {
            let index: usize = if index.is_empty() {
                0
            } else {
                index
                    .parse()
                    .map_err(|_| format!("bad index in `{host}`"))?
            };
            let addrs = public_addresses()?;
            return addrs.get(index).cloned().ok_or_else(|| {
                format!(
                    "`{host}`: index {index} is not among this machine's public addresses {addrs:?}"
                )
            });
        }
    }
    Ok(host.to_owned())
}

/// The IPv4 addresses that this machine's host name resolves to, in order.
pub fn public_addresses() -> Result<Vec<String>, String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .map_err(|_| "cannot determine this machine's host name".to_string())?;
    let mut out: Vec<String> = Vec::new();
    let resolved = (name.as_str(), 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name `{name}`: {e}"))?;
    for a in resolved {
        if a.is_ipv4() {
            let ip = a.ip().to_string();
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = Address::parse("tcp://localhost:5000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 5000));
        let a = Address::parse("localhost:test").unwrap();
        assert_eq!(a.port, 56337);
        let a = Address::parse("WS://example.org:80/yoton").unwrap();
        assert_eq!((a.scheme.as_str(), a.path.as_str()), ("ws", "/yoton"));
        let a = Address::parse("[::1]:7").unwrap();
        assert_eq!(
            (a.host.as_str(), a.host_port()),
            ("::1", "[::1]:7".to_string())
        );
        let a = Address::parse("inproc://x").unwrap();
        assert_eq!(a.to_string(), "inproc://x");
        assert_eq!(Address::parse("localhost:0").unwrap().port, 0);
    }

    #[test]
    fn errors_name_the_part() {
        let cases = [
            ("", "address"),
            ("localhost", "port"),
            (":80", "host"),
            ("localhost:70000", "port"),
            ("localhost:a+b", "port"),
            ("bad scheme://x:1", "scheme"),
            ("publichost99:1", "host"),
            // Found by fuzzing: an offset that overflowed the addition.
            ("localhost:x+9223372036854775807", "port"),
        ];
        for (text, part) in cases {
            match Address::parse(text) {
                Err(Error::Address { part: p, .. }) => assert_eq!(p, part, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
