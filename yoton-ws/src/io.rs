//! The byte stream under a WebSocket: plain TCP or TLS over TCP.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use yoton_core::stream::{BoxRead, BoxWrite};

/// Bytes a peer may send before the Yoton handshake is complete (the HTTP upgrade,
/// WebSocket framing and the handshake line, which is at most 256 bytes, together).
/// Without it, a peer could make a pending connection buffer a message of up to the
/// transport's maximum message size (1 GiB) before saying who it is.
pub const PRE_HANDSHAKE_BUDGET: u64 = 1 << 20;

/// Plain TCP (`ws://`) or TLS over TCP (`wss://`).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// The stream a WebSocket runs over (during the upgrade; the link then takes it
/// apart with [`Io::into_split`]).
pub(crate) struct Io {
    stream: Stream,
}

impl Io {
    pub(crate) fn plain(s: TcpStream) -> Io {
        Io {
            stream: Stream::Plain(s),
        }
    }

    pub(crate) fn tls(s: tokio_rustls::TlsStream<TcpStream>) -> Io {
        Io {
            stream: Stream::Tls(Box::new(s)),
        }
    }

    /// Owned reading and writing halves: plain TCP splits without a lock; TLS, whose
    /// state both directions share, through tokio's split.
    pub(crate) fn into_split(self) -> (BoxRead, BoxWrite) {
        match self.stream {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
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
