//! The client side of the opening handshake (RFC 6455 section 4.1): send the upgrade
//! request, read the server's answer, check its accept key. Bytes that follow the
//! answer's head are already frames and go to the link.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use yoton_core::transport::TransportError;

use crate::io::Io;
use crate::link::Upgraded;

/// Longest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Most answer headers accepted.
const MAX_HEADERS: usize = 64;
/// Most bytes of a refusal's body quoted in the error.
const MAX_BODY: usize = 1024;

/// The parts of the server's answer that matter.
struct Answer {
    code: u16,
    reason: String,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    accept: Option<String>,
    content_length: Option<usize>,
}

fn parse_answer(buf: &[u8]) -> Result<Option<(usize, Answer)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let n = match res.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let mut a = Answer {
        code: res.code.unwrap_or_default(),
        reason: res.reason.unwrap_or_default().to_owned(),
        upgrade_websocket: false,
        connection_upgrade: false,
        accept: None,
        content_length: None,
    };
    for h in res.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        let has = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if h.name.eq_ignore_ascii_case("upgrade") {
            a.upgrade_websocket |= has("websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            a.connection_upgrade |= has("upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            a.accept = Some(value.to_owned());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            a.content_length = value.parse().ok();
        }
    }
    Ok(Some((n, a)))
}

/// Upgrade `io` at `uri` (`host` is the Host header, `path` the request target).
/// The error says what went wrong, with the server's answer where there is one.
pub(crate) async fn upgrade(
    mut io: Io,
    uri: &str,
    host: &str,
    path: &str,
) -> Result<Upgraded, TransportError> {
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let failed = |what: &str, e: std::io::Error| {
        TransportError::new(format!("WebSocket upgrade at {uri} failed: {what}: {e}"))
    };
    io.write_all(request.as_bytes())
        .await
        .map_err(|e| failed("sending the request", e))?;
    io.flush()
        .await
        .map_err(|e| failed("sending the request", e))?;
    let mut buf = BytesMut::with_capacity(1024);
    let (n, answer) = loop {
        match parse_answer(&buf) {
            Ok(Some(found)) => break found,
            Ok(None) if buf.len() < MAX_HEAD => {}
            Ok(None) => {
                return Err(TransportError::permanent(format!(
                    "WebSocket upgrade at {uri} failed: the answer's head is longer than {MAX_HEAD} bytes"
                )))
            }
            Err(e) => {
                return Err(TransportError::permanent(format!(
                    "WebSocket upgrade at {uri} failed: the answer is not HTTP ({e})"
                )))
            }
        }
        let got = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| failed("reading the answer", e))?;
        if got == 0 {
            return Err(TransportError::new(format!(
                "WebSocket upgrade at {uri} failed: the server closed the connection before answering"
            )));
        }
    };
    let used = buf.len() as u64;
    let tail = buf.split_off(n);
    if answer.code != 101 {
        let body = refusal_body(&mut io, tail, answer.content_length).await;
        let body = body.trim();
        return Err(TransportError {
            reason: format!(
                "WebSocket upgrade at {uri} refused: HTTP {} {}{}{body}",
                answer.code,
                answer.reason,
                if body.is_empty() { "" } else { ": " }
            ),
            permanent: refusal_is_final(answer.code),
        });
    }
    let expected = derive_accept_key(key.as_bytes());
    let problem = if !answer.upgrade_websocket || !answer.connection_upgrade {
        Some("the answer lacks `Upgrade: websocket` or `Connection: Upgrade`".to_owned())
    } else if answer.accept.as_deref() != Some(expected.as_str()) {
        Some(format!(
            "Sec-WebSocket-Accept is {:?}, expected {expected:?}",
            answer.accept.as_deref().unwrap_or("(missing)")
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(TransportError::permanent(format!(
            "WebSocket upgrade at {uri} failed: {p}"
        )));
    }
    Ok(Upgraded { io, tail, used })
}

/// Whether an HTTP refusal of the upgrade would come again: a client error (4xx: no
/// such path, not an upgrade the server takes), except a time-out (408) and too many
/// requests (429); server errors (5xx, such as 503 while the server is busy) may pass.
fn refusal_is_final(code: u16) -> bool {
    (400..500).contains(&code) && code != 408 && code != 429
}

/// What the server said along with a refusal: its body, at most [`MAX_BODY`] bytes.
async fn refusal_body(io: &mut Io, mut body: BytesMut, length: Option<usize>) -> String {
    let want = length.unwrap_or(MAX_BODY).min(MAX_BODY);
    let reading = async {
        while body.len() < want {
            match io.read_buf(&mut body).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    // The server may keep the connection open without a length: do not wait long.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), reading).await;
    String::from_utf8_lossy(body.get(..want.min(body.len())).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x82\x00";
        let (n, a) = parse_answer(ok).unwrap().unwrap();
        assert_eq!(
            n,
            ok.len() - 2,
            "the frame after the head is not part of it"
        );
        assert_eq!(a.code, 101);
        assert!(a.upgrade_websocket && a.connection_upgrade);
        assert_eq!(a.accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let no = b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\nno such path";
        let (_, a) = parse_answer(no).unwrap().unwrap();
        assert_eq!(
            (a.code, a.reason.as_str(), a.content_length),
            (404, "Not Found", Some(12))
        );
        assert!(parse_answer(b"HTTP/1.1 101 Swi").unwrap().is_none());
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
