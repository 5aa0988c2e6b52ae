//! The byte stream under a WebSocket: plain TCP or TLS over TCP, with a budget of
//! bytes the peer may send before the Yoton handshake is complete.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

/// Bytes a peer may send before the Yoton handshake is complete (the HTTP upgrade,
/// WebSocket framing and the handshake line, which is at most 256 bytes, together).
/// Without it, a peer could make a pending connection buffer a message of up to the
/// transport's maximum message size (1 GiB) before saying who it is.
pub const PRE_HANDSHAKE_BUDGET: u64 = 1 << 20;

/// What is left of [`PRE_HANDSHAKE_BUDGET`]; `u64::MAX` once the handshake is done.
#[derive(Debug)]
pub(crate) struct Budget(AtomicU64);

impl Budget {
    fn new() -> Arc<Budget> {
        Arc::new(Budget(AtomicU64::new(PRE_HANDSHAKE_BUDGET)))
    }

    /// The Yoton handshake is done: no more limit than the message size.
    pub(crate) fn lift(&self) {
        self.0.store(u64::MAX, Ordering::Release);
    }

    /// Charge `n` bytes just read; an error when they exceed what is left.
    fn charge(&self, n: u64) -> std::io::Result<()> {
        let left = self.0.load(Ordering::Acquire);
        if left == u64::MAX {
            return Ok(());
        }
        if n > left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the peer sent more than {PRE_HANDSHAKE_BUDGET} bytes before completing the \
                     Yoton handshake"
                ),
            ));
        }
        // Lifted in between: keep it lifted.
        let _ = self
            .0
            .compare_exchange(left, left - n, Ordering::AcqRel, Ordering::Acquire);
        Ok(())
    }
}

/// The read buffer under a plain WebSocket. Tungstenite reads exactly the bytes it
/// still needs for the frame at hand whenever the payloads it handed out still share
/// its buffer, which is always the case here (they are handed on without copying):
/// over plain TCP that was a `recv` of 14 or 120 bytes, 1.4 system calls per 64-byte
/// package (W1: 0.7 M msg/s). Reads at least this large bypass the buffer, so large
/// payloads are still read straight into place; TLS has its own record buffer.
const PLAIN_READ_BUFFER: usize = 64 * 1024;

/// Plain TCP (`ws://`) or TLS over TCP (`wss://`).
enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// The stream a WebSocket runs over, reads charged to a [`Budget`].
pub(crate) struct Io {
    stream: Stream,
    budget: Arc<Budget>,
}

impl Io {
    pub(crate) fn plain(s: TcpStream) -> Io {
        Io {
            stream: Stream::Plain(BufReader::with_capacity(PLAIN_READ_BUFFER, s)),
            budget: Budget::new(),
        }
    }

    pub(crate) fn tls(s: tokio_rustls::TlsStream<TcpStream>) -> Io {
        Io {
            stream: Stream::Tls(Box::new(s)),
            budget: Budget::new(),
        }
    }

    /// The budget of this stream (the link lifts it after the Yoton handshake).
    pub(crate) fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut me.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len().saturating_sub(before) as u64;
            return Poll::Ready(me.budget.charge(n));
        }
        polled
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
