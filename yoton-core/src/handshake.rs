//! The text handshake of PROTOCOL.md section 3: `YOTON!<id hex>.<pid>\r\n` both ways.
//!
//! The parsing and formatting are pure; [`host`] and [`client`] run it over any byte
//! stream and keep whatever the peer sent after its line (it may start sending packages
//! at once).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The handshake must complete within this time (reference value).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest handshake line accepted (the reference's are about 40 bytes).
pub const MAX_LINE: usize = 256;

/// Answer to a client that is not Yoton.
pub const NOT_YOTON: &str = "ERROR: this is Yoton.";

/// Close reason: no answer in time.
pub const STOP_HANDSHAKE_TIMEOUT: &str = "Handshake timed out.";
/// Close reason: the answer was not a Yoton handshake.
pub const STOP_HANDSHAKE_FAILED: &str = "Handshake failed.";
/// Close reason: the peer has our own id.
pub const STOP_HANDSHAKE_SELF: &str = "Handshake failed (context cannot connect to self).";

/// One side's identity as sent in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Context id.
    pub id: u64,
    /// Process id.
    pub pid: u64,
}

impl Hello {
    /// The handshake line, with `\r\n`.
    ///
    /// ```
    /// let h = yoton_core::handshake::Hello { id: 0xab, pid: 42 };
    /// assert_eq!(h.line(), "YOTON!00000000000000ab.42\r\n");
    /// ```
    pub fn line(&self) -> String {
        format!("YOTON!{:016x}.{}\r\n", self.id, self.pid)
    }

    /// Parse a line (with or without the trailing `\r\n`).
    pub fn parse(line: &str) -> Result<Hello, HandshakeError> {
        let rest = line
            .strip_prefix("YOTON!")
            .ok_or_else(|| HandshakeError::NotYoton(shorten(line)))?;
        let rest = rest.trim();
        let bad = || HandshakeError::Unparsable(shorten(line));
        let (id, pid) = rest.split_once('.').ok_or_else(bad)?;
        let id = u64::from_str_radix(id, 16).map_err(|_| bad())?;
        let pid = pid.parse::<u64>().map_err(|_| bad())?;
        Ok(Hello { id, pid })
    }
}

fn shorten(s: &str) -> String {
    let s = s.trim_end();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// Why a handshake failed. The `Display` text starts with the reference's close reason.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Nothing (complete) arrived in time.
    #[error("Handshake timed out.")]
    Timeout,
    /// The peer is not Yoton (it said something else).
    #[error("Handshake failed. The peer is not Yoton; it said {0}")]
    NotYoton(String),
    /// A Yoton line whose id or pid cannot be parsed.
    #[error("Handshake failed. Could not parse the id in {0}")]
    Unparsable(String),
    /// The peer has our own id.
    #[error("Handshake failed (context cannot connect to self).")]
    SelfConnect,
    /// The line was longer than [`MAX_LINE`] without `\r\n`.
    #[error("Handshake failed. The handshake line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// The line is not UTF-8.
    #[error("Handshake failed. The handshake line is not valid UTF-8")]
    InvalidUtf8,
    /// The stream ended before the line was complete.
    #[error("Handshake failed. The peer closed the connection during the handshake")]
    Eof,
    /// An I/O error.
    #[error("Handshake failed. Socket error. {0}")]
    Io(#[from] std::io::Error),
}

/// Read one `\r\n`-terminated line; bytes after it stay in `buf`.
pub async fn read_line<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<String, HandshakeError> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(pos + 2);
            let text = std::str::from_utf8(line.get(..pos).unwrap_or_default())
                .map_err(|_| HandshakeError::InvalidUtf8)?;
            return Ok(text.to_owned());
        }
        if buf.len() > MAX_LINE {
            return Err(HandshakeError::TooLong);
        }
        buf.reserve(MAX_LINE);
        // Read at most what a line may still need, so packages after it stay unread
        // only when they arrive in the same segment (those are kept in `buf`).
        if io.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}

/// Host side: wait for the client's line, answer with ours. A client that is not Yoton
/// gets [`NOT_YOTON`] and the error [`HandshakeError::NotYoton`].
pub async fn host<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
    me: Hello,
) -> Result<Hello, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let line = match read_line(reader, buf).await {
        Ok(line) => line,
        Err(e @ (HandshakeError::TooLong | HandshakeError::InvalidUtf8)) => {
            let _ = send_line(writer, NOT_YOTON).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let peer = match Hello::parse(&line) {
        Ok(peer) => peer,
        Err(e @ HandshakeError::Unparsable(_)) => {
            let _ = send_line(writer, "ERROR: could not parse id.").await;
            return Err(e);
        }
        Err(e) => {
            let _ = send_line(writer, NOT_YOTON).await;
            return Err(e);
        }
    };
    writer.write_all(me.line().as_bytes()).await?;
    writer.flush().await?;
    if peer.id == me.id {
        return Err(HandshakeError::SelfConnect);
    }
    Ok(peer)
}

/// Client side: send our line, read and check the host's answer.
pub async fn client<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
    me: Hello,
) -> Result<Hello, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_all(me.line().as_bytes()).await?;
    writer.flush().await?;
    let line = read_line(reader, buf).await?;
    let peer = Hello::parse(&line)?;
    if peer.id == me.id {
        return Err(HandshakeError::SelfConnect);
    }
    Ok(peer)
}

async fn send_line<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> std::io::Result<()> {
    w.write_all(format!("{text}\r\n").as_bytes()).await?;
    w.flush().await?;
    w.shutdown().await
}

/// Drop the first `n` bytes of `buf` (helper for adapters).
pub fn consume(buf: &mut BytesMut, n: usize) {
    buf.advance(n.min(buf.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reference_line() {
        let h = Hello::parse("YOTON!0123456789abcdef.4242\r\n").unwrap();
        assert_eq!(
            h,
            Hello {
                id: 0x0123456789abcdef,
                pid: 4242
            }
        );
        assert_eq!(Hello::parse(&h.line()).unwrap(), h);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert!(matches!(
            Hello::parse("GET / HTTP/1.1"),
            Err(HandshakeError::NotYoton(_))
        ));
        assert!(matches!(
            Hello::parse("YOTON!xyz.1"),
            Err(HandshakeError::Unparsable(_))
        ));
        assert!(matches!(
            Hello::parse("YOTON!12"),
            Err(HandshakeError::Unparsable(_))
        ));
    }

    #[tokio::test]
    async fn handshake_over_a_pipe_keeps_trailing_bytes() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let host = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let peer = host(&mut ar, &mut aw, &mut buf, Hello { id: 1, pid: 10 }).await;
            while buf.len() < 4 {
                ar.read_buf(&mut buf).await.unwrap();
            }
            (peer.unwrap(), buf)
        });
        let mut buf = BytesMut::new();
        let peer = client(&mut br, &mut bw, &mut buf, Hello { id: 2, pid: 20 })
            .await
            .unwrap();
        bw.write_all(b"rest").await.unwrap();
        assert_eq!(peer, Hello { id: 1, pid: 10 });
        let (seen, rest) = host.await.unwrap();
        assert_eq!(seen, Hello { id: 2, pid: 20 });
        assert_eq!(&rest[..], b"rest");
    }

    #[tokio::test]
    async fn http_client_gets_the_error_answer() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        bw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let err = host(&mut ar, &mut aw, &mut buf, Hello { id: 1, pid: 1 })
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::NotYoton(_)), "{err}");
        let mut answer = String::new();
        br.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "ERROR: this is Yoton.\r\n");
    }
}
