//! The text handshake of PROTOCOL.md section 3: `YOTON!<id hex>.<pid>\r\n` both ways.
//!
//! The parsing and formatting are pure; [`host`] and [`client`] run it over any byte
//! stream and keep whatever the peer sent after its line (it may start sending packages
//! at once).

use bytes::BytesMut;
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
    /// Authentication with the shared secret failed.
    #[error("Handshake failed (authentication): {0}")]
    AuthFailed(String),
    /// An I/O error.
    #[error("Handshake failed. Socket error. {0}")]
    Io(#[from] std::io::Error),
}

impl HandshakeError {
    /// Whether another attempt may succeed: the peer closed the connection or went
    /// silent (a host at its connection limit drops new sockets), or the socket
    /// failed. A peer that is not Yoton, refuses our secret or is this very context
    /// says the same every time.
    ///
    /// ```
    /// use yoton_core::handshake::HandshakeError;
    /// assert!(HandshakeError::Eof.may_pass());
    /// assert!(!HandshakeError::AuthFailed("wrong secret".into()).may_pass());
    /// ```
    pub fn may_pass(&self) -> bool {
        matches!(
            self,
            HandshakeError::Timeout | HandshakeError::Eof | HandshakeError::Io(_)
        )
    }
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
        if io.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}

/// A line-based channel for the handshake: a byte stream ([`StreamLines`]) or a message
/// link (one line per message).
#[async_trait::async_trait]
pub trait LineIo: Send {
    /// The next line, without its `\r\n`.
    async fn recv_line(&mut self) -> Result<String, HandshakeError>;
    /// Send a line (`\r\n` is added).
    async fn send_line(&mut self, line: &str) -> Result<(), HandshakeError>;
    /// Send a last line and close the sending side; errors are ignored.
    async fn refuse(&mut self, line: &str);
}

/// [`LineIo`] over the two halves of a byte stream; bytes after the handshake stay in
/// `buf` for the package decoder.
pub struct StreamLines<'a, R, W> {
    /// Reading half.
    pub reader: &'a mut R,
    /// Writing half.
    pub writer: &'a mut W,
    /// Read buffer.
    pub buf: &'a mut BytesMut,
}

#[async_trait::async_trait]
impl<R, W> LineIo for StreamLines<'_, R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn recv_line(&mut self) -> Result<String, HandshakeError> {
        read_line(self.reader, self.buf).await
    }

    async fn send_line(&mut self, line: &str) -> Result<(), HandshakeError> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.writer.flush().await?;
        Ok(())
    }

    async fn refuse(&mut self, line: &str) {
        let _ = self.send_line(line).await;
        let _ = self.writer.shutdown().await;
    }
}

/// A shared secret for the optional peer authentication. The secret never goes on the
/// wire: each side proves it knows it with an HMAC-SHA256 over the other side's fresh
/// nonce and both context ids.
#[derive(Clone)]
pub struct Secret(std::sync::Arc<[u8]>);

impl Secret {
    /// A secret from bytes (use at least 16 random bytes).
    pub fn new(bytes: impl AsRef<[u8]>) -> Secret {
        Secret(bytes.as_ref().into())
    }

    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    fn mac(&self, role: &str, nonce: &[u8; 16], a: u64, b: u64) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        m.update(role.as_bytes());
        m.update(nonce);
        m.update(&a.to_le_bytes());
        m.update(&b.to_le_bytes());
        m
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// A fresh random nonce; without the operating system's random numbers the
/// handshake fails rather than authenticate with a guessable one.
fn nonce() -> Result<[u8; 16], HandshakeError> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|e| {
        HandshakeError::AuthFailed(format!(
            "the operating system gave no random numbers for the nonce ({e})"
        ))
    })?;
    Ok(n)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

const AUTH_TAG: &str = "+auth:";
const AUTH_FAILED: &str = "ERROR: authentication failed.";

/// Split an optional `+auth:<nonce>` off a hello line.
fn split_auth(line: &str) -> (&str, Option<&str>) {
    match line.split_once(AUTH_TAG) {
        Some((hello, nonce)) => (hello, Some(nonce)),
        None => (line, None),
    }
}

/// Host side: wait for the client's line, answer with ours. A client that is not Yoton
/// gets [`NOT_YOTON`] and the error [`HandshakeError::NotYoton`]. With a secret, the
/// client must then prove it knows it, and the host proves it in return.
pub async fn host(
    io: &mut dyn LineIo,
    me: Hello,
    auth: Option<&Secret>,
) -> Result<Hello, HandshakeError> {
    let line = match io.recv_line().await {
        Ok(line) => line,
        Err(e @ (HandshakeError::TooLong | HandshakeError::InvalidUtf8)) => {
            io.refuse(NOT_YOTON).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let peer = match Hello::parse(split_auth(&line).0) {
        Ok(peer) => peer,
        Err(e @ HandshakeError::Unparsable(_)) => {
            io.refuse("ERROR: could not parse id.").await;
            return Err(e);
        }
        Err(e) => {
            io.refuse(NOT_YOTON).await;
            return Err(e);
        }
    };
    let hello = me.line();
    let hello = hello.trim_end();
    let Some(secret) = auth else {
        io.send_line(hello).await?;
        if peer.id == me.id {
            return Err(HandshakeError::SelfConnect);
        }
        return Ok(peer);
    };
    let my_nonce = nonce()?;
    io.send_line(&format!("{hello}{AUTH_TAG}{}", hex(&my_nonce)))
        .await?;
    if peer.id == me.id {
        return Err(HandshakeError::SelfConnect);
    }
    // AUTH <client nonce> <client mac>
    let answer = io.recv_line().await?;
    let mut parts = answer.split(' ');
    let ok = (|| {
        if parts.next()? != "AUTH" {
            return None;
        }
        let their_nonce = unhex::<16>(parts.next()?)?;
        let their_mac = unhex::<32>(parts.next()?)?;
        use hmac::Mac;
        secret
            .mac("yoton-auth-client", &my_nonce, peer.id, me.id)
            .verify_slice(&their_mac)
            .ok()?;
        Some(their_nonce)
    })();
    let Some(their_nonce) = ok else {
        io.refuse(AUTH_FAILED).await;
        return Err(HandshakeError::AuthFailed(
            "the peer did not prove the shared secret".into(),
        ));
    };
    use hmac::Mac;
    let mac = secret
        .mac("yoton-auth-host", &their_nonce, me.id, peer.id)
        .finalize()
        .into_bytes();
    io.send_line(&format!("AUTH-OK {}", hex(&mac))).await?;
    Ok(peer)
}

/// Client side: send our line, read and check the host's answer (and, with a secret,
/// authenticate both ways).
pub async fn client(
    io: &mut dyn LineIo,
    me: Hello,
    auth: Option<&Secret>,
) -> Result<Hello, HandshakeError> {
    let hello = me.line();
    io.send_line(hello.trim_end()).await?;
    let line = io.recv_line().await?;
    let (hello_part, host_nonce) = split_auth(&line);
    let peer = Hello::parse(hello_part)?;
    if peer.id == me.id {
        return Err(HandshakeError::SelfConnect);
    }
    match (auth, host_nonce) {
        (None, None) => Ok(peer),
        (None, Some(_)) => Err(HandshakeError::AuthFailed(
            "the host requires authentication; configure the shared secret (ContextBuilder::secret)".into(),
        )),
        (Some(_), None) => Err(HandshakeError::AuthFailed(
            "the host does not authenticate (no shared secret configured there); refusing it".into(),
        )),
        (Some(secret), Some(nonce_hex)) => {
            use hmac::Mac;
            let host_nonce = unhex::<16>(nonce_hex)
                .ok_or_else(|| HandshakeError::Unparsable(shorten(&line)))?;
            let my_nonce = nonce()?;
            let mac = secret.mac("yoton-auth-client", &host_nonce, me.id, peer.id).finalize().into_bytes();
            io.send_line(&format!("AUTH {} {}", hex(&my_nonce), hex(&mac))).await?;
            let answer = io.recv_line().await?;
            let proof = answer
                .strip_prefix("AUTH-OK ")
                .and_then(unhex::<32>)
                .ok_or_else(|| HandshakeError::AuthFailed(format!("the host answered {}", shorten(&answer))))?;
            secret
                .mac("yoton-auth-host", &my_nonce, peer.id, me.id)
                .verify_slice(&proof)
                .map_err(|_| HandshakeError::AuthFailed("the host did not prove the shared secret".into()))?;
            Ok(peer)
        }
    }
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
            let mut io = StreamLines {
                reader: &mut ar,
                writer: &mut aw,
                buf: &mut buf,
            };
            let peer = host(&mut io, Hello { id: 1, pid: 10 }, None).await;
            while buf.len() < 4 {
                ar.read_buf(&mut buf).await.unwrap();
            }
            (peer.unwrap(), buf)
        });
        let mut buf = BytesMut::new();
        let peer = client(
            &mut StreamLines {
                reader: &mut br,
                writer: &mut bw,
                buf: &mut buf,
            },
            Hello { id: 2, pid: 20 },
            None,
        )
        .await
        .unwrap();
        bw.write_all(b"rest").await.unwrap();
        assert_eq!(peer, Hello { id: 1, pid: 10 });
        let (seen, rest) = host.await.unwrap();
        assert_eq!(seen, Hello { id: 2, pid: 20 });
        assert_eq!(&rest[..], b"rest");
    }

    async fn pair(
        host_secret: Option<Secret>,
        client_secret: Option<Secret>,
    ) -> (Result<Hello, HandshakeError>, Result<Hello, HandshakeError>) {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let h = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut io = StreamLines {
                reader: &mut ar,
                writer: &mut aw,
                buf: &mut buf,
            };
            host(&mut io, Hello { id: 1, pid: 1 }, host_secret.as_ref()).await
        });
        let mut buf = BytesMut::new();
        let mut io = StreamLines {
            reader: &mut br,
            writer: &mut bw,
            buf: &mut buf,
        };
        let c = client(&mut io, Hello { id: 2, pid: 2 }, client_secret.as_ref()).await;
        // Close the client's end completely, so a host still waiting sees EOF.
        drop((br, bw));
        let h = tokio::time::timeout(std::time::Duration::from_secs(5), h)
            .await
            .expect("host handshake hung");
        (h.unwrap(), c)
    }

    #[tokio::test]
    async fn shared_secret_authenticates_both_ways() {
        let s = Secret::new(b"correct horse battery staple");
        let (h, c) = pair(Some(s.clone()), Some(s)).await;
        assert_eq!(h.unwrap().id, 2);
        assert_eq!(c.unwrap().id, 1);
    }

    #[tokio::test]
    async fn wrong_or_missing_secret_is_refused() {
        let (h, c) = pair(Some(Secret::new(b"right")), Some(Secret::new(b"wrong"))).await;
        assert!(matches!(h, Err(HandshakeError::AuthFailed(_))), "{h:?}");
        assert!(c.is_err());
        let (_, c) = pair(Some(Secret::new(b"right")), None).await;
        assert!(c
            .unwrap_err()
            .to_string()
            .contains("requires authentication"));
        let (h, c) = pair(None, Some(Secret::new(b"right"))).await;
        assert!(h.is_ok());
        assert!(c.unwrap_err().to_string().contains("does not authenticate"));
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
        let err = host(
            &mut StreamLines {
                reader: &mut ar,
                writer: &mut aw,
                buf: &mut buf,
            },
            Hello { id: 1, pid: 1 },
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandshakeError::NotYoton(_)), "{err}");
        let mut answer = String::new();
        br.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "ERROR: this is Yoton.\r\n");
    }
}
