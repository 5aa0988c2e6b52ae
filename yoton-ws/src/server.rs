//! The server side of the opening handshake (RFC 6455 section 4.2), with plain HTTP
//! answers for everything that is not a WebSocket upgrade to the configured path.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::io::Io;
use crate::link::Upgraded;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 64;

/// What matters in a request head.
struct Head {
    method: String,
    path: String,
    version: u8,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    ws_version: Option<String>,
    key: Option<String>,
    offers_yoton: bool,
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Parse a complete request head: `Ok(None)` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = Head {
        method: req.method.unwrap_or_default().to_owned(),
        path: req.path.unwrap_or_default().to_owned(),
        version: req.version.unwrap_or_default(),
        upgrade_websocket: false,
        connection_upgrade: false,
        ws_version: None,
        key: None,
        offers_yoton: false,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= has_token(value, "websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.connection_upgrade |= has_token(value, "upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            head.key = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            head.offers_yoton |= has_token(value, "yoton");
        }
    }
    Ok(Some((n, head)))
}

/// An HTTP answer that ends the exchange.
struct Refusal {
    status: &'static str,
    extra: &'static str,
    body: String,
}

impl Refusal {
    fn new(status: &'static str, body: String) -> Self {
        Refusal {
            status,
            extra: "",
            body,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {}\r\n{}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.status,
            self.extra,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

/// Decide on a request: the `101` answer, or a refusal.
fn answer(head: &Head, path: &str) -> Result<String, Refusal> {
    let hint = format!(
        "This is a Yoton endpoint. Connect a WebSocket client to the path {path} and exchange \
         binary messages: first the handshake line YOTON!<16 hex id>.<pid>\\r\\n each way, then \
         one package (56-byte header + payload) per message.\n"
    );
    if head.method != "GET" {
        let mut r = Refusal::new("405 Method Not Allowed", hint);
        r.extra = "Allow: GET\r\n";
        return Err(r);
    }
    let asked = head.path.split('?').next().unwrap_or_default();
    if asked != path {
        return Err(Refusal::new(
            "404 Not Found",
            format!("No Yoton endpoint at {asked}; this server serves WebSocket connections at {path}.\n"),
        ));
    }
    if head.version < 1 || !head.upgrade_websocket || !head.connection_upgrade {
        let mut r = Refusal::new("426 Upgrade Required", hint);
        r.extra = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
        return Err(r);
    }
    if head.ws_version.as_deref() != Some("13") {
        let mut r = Refusal::new(
            "426 Upgrade Required",
            format!(
                "Unsupported WebSocket version {:?}; this server speaks version 13.\n",
                head.ws_version.as_deref().unwrap_or("(none)")
            ),
        );
        r.extra = "Sec-WebSocket-Version: 13\r\n";
        return Err(r);
    }
    let Some(key) = head.key.as_deref().filter(|k| !k.is_empty()) else {
        return Err(Refusal::new(
            "400 Bad Request",
            "The WebSocket upgrade lacks Sec-WebSocket-Key.\n".into(),
        ));
    };
    let protocol = if head.offers_yoton {
        "Sec-WebSocket-Protocol: yoton\r\n"
    } else {
        ""
    };
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        derive_accept_key(key.as_bytes())
    ))
}

async fn refuse(io: &mut Io, refusal: &Refusal) -> String {
    let _ = io.write_all(&refusal.bytes()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
    format!("answered HTTP {}", refusal.status)
}

/// Read the upgrade request, answer it, and start the WebSocket. The error says what
/// was wrong (for the log); the client got an HTTP answer where that made sense.
pub(crate) async fn upgrade(mut io: Io, path: &str) -> Result<Upgraded, String> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let (n, head) = loop {
        match parse_head(&buf) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(httparse::Error::TooManyHeaders) => {
                let r = Refusal::new(
                    "431 Request Header Fields Too Large",
                    "Too many headers.\n".into(),
                );
                return Err(refuse(&mut io, &r).await);
            }
            Err(e) => {
                let r = Refusal::new("400 Bad Request", format!("Malformed request: {e}.\n"));
                return Err(refuse(&mut io, &r).await);
            }
        }
        if buf.len() >= MAX_HEAD {
            let r = Refusal::new(
                "431 Request Header Fields Too Large",
                format!("The request head is longer than {MAX_HEAD} bytes.\n"),
            );
            return Err(refuse(&mut io, &r).await);
        }
        let mut chunk = [0u8; 2048];
        let got = io
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the request: {e}"))?;
        if got == 0 {
            return Err("the client closed before its request was complete".into());
        }
        buf.extend(chunk.iter().take(got));
    };
    match answer(&head, path) {
        Err(refusal) => Err(refuse(&mut io, &refusal).await),
        Ok(response) => {
            io.write_all(response.as_bytes())
                .await
                .map_err(|e| format!("writing the upgrade answer: {e}"))?;
            io.flush()
                .await
                .map_err(|e| format!("writing the upgrade answer: {e}"))?;
            let used = buf.len() as u64;
            let tail = BytesMut::from(buf.get(n..).unwrap_or_default());
            Ok(Upgraded { io, tail, used })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: &str) -> Head {
        match parse_head(req.as_bytes()) {
            Ok(Some((_, h))) => h,
            _ => panic!("incomplete: {req}"),
        }
    }

    const UPGRADE: &str = "GET /yoton HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn accepts_a_proper_upgrade() {
        let a = answer(&head(UPGRADE), "/yoton").unwrap_or_else(|r| panic!("{}", r.status));
        // The example of RFC 6455 section 1.3.
        assert!(a.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(!a.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn refusals() {
        let status = |req: &str, path: &str| match answer(&head(req), path) {
            Ok(_) => "101",
            Err(r) => r.status,
        };
        assert_eq!(status(UPGRADE, "/other"), "404 Not Found");
        assert_eq!(
            status("GET /yoton HTTP/1.1\r\nHost: x\r\n\r\n", "/yoton"),
            "426 Upgrade Required"
        );
        assert_eq!(
            status("POST /yoton HTTP/1.1\r\n\r\n", "/yoton"),
            "405 Method Not Allowed"
        );
        let v8 = UPGRADE.replace("Version: 13", "Version: 8");
        assert_eq!(status(&v8, "/yoton"), "426 Upgrade Required");
        let with_query = UPGRADE.replace("/yoton ", "/yoton?x=1 ");
        assert_eq!(status(&with_query, "/yoton"), "101");
        let proto = UPGRADE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: chat, yoton\r\n\r\n",
        );
        assert!(answer(&head(&proto), "/yoton")
            .unwrap_or_default()
            .contains("Sec-WebSocket-Protocol: yoton"));
    }

    #[test]
    fn incomplete_heads_wait() {
        assert!(matches!(parse_head(b"GET /yoton HTTP/1.1\r\nHo"), Ok(None)));
    }
}
