//! The byte-stream adapter: handshake and framing over any `AsyncRead` + `AsyncWrite`
//! pair. TCP, TLS, QUIC streams and in-process pipes all go through here.

use std::collections::VecDeque;
use std::io::IoSlice;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::PackageCodec;
use crate::handshake::{self, HandshakeError, Hello};
use crate::link::{Endpoint, Link, LinkError, LinkReader, LinkWriter, Outgoing, ReadBatch};
use crate::lowat::LowWater;
use crate::package::{Frame, HEADER_SIZE};
use crate::readbuf::{ReadBuffer, READ_BUFFER};

/// Packages with payloads up to this size are copied into their wire encoding when
/// they are queued (see [`Outgoing`]); larger payloads are written by reference with a
/// vectored write.
pub const COPY_THRESHOLD: usize = 16 * 1024;

/// Most slices handed to one `writev`.
const MAX_IOV: usize = 64;

/// Most bytes handed to one `writev` (a quarter of Linux's largest default TCP send
/// buffer). A stream of 1 MiB messages written up to 64 of them per call made 2.9 GB/s
/// (median of 6 pairs); at most 1 MiB per call, 3.7-3.9 GB/s (512 KiB: 3.4, 2 MiB: 3.4).
pub const MAX_WRITE: usize = 1 << 20;

/// The reading half of a byte stream, as a transport hands it over.
///
/// ```
/// use yoton_core::stream::{BoxRead, StreamRead};
///
/// let (a, _b) = tokio::io::duplex(64);
/// let (reader, _writer) = tokio::io::split(a);
/// let boxed: BoxRead = Box::new(reader);
/// assert!(!boxed.set_recv_lowat(4096)); // a pipe has no low-water mark
/// ```
pub trait StreamRead: AsyncRead + Send + Unpin {
    /// Ask that a read wait until `bytes` can be taken at once (1: as soon as
    /// anything arrived), true when the stream did. Readers ask while a large frame
    /// streams in, never for more than it still lacks (see
    /// [`LowWater`]). A TCP socket sets `SO_RCVLOWAT`;
    /// other streams ignore it, TLS among them (what arrives encrypted does not
    /// match what is read, and the TLS layer may hold decrypted bytes already).
    fn set_recv_lowat(&self, _bytes: usize) -> bool {
        false
    }
}

impl StreamRead for tokio::net::tcp::OwnedReadHalf {
    fn set_recv_lowat(&self, bytes: usize) -> bool {
        crate::lowat::set_tcp(self.as_ref(), bytes)
    }
}

impl<T: AsyncRead + Send> StreamRead for tokio::io::ReadHalf<T> {}

impl StreamRead for tokio::io::DuplexStream {}

impl<T: StreamRead + ?Sized> StreamRead for Box<T> {
    fn set_recv_lowat(&self, bytes: usize) -> bool {
        (**self).set_recv_lowat(bytes)
    }
}

/// Boxed reading half of a byte stream.
pub type BoxRead = Box<dyn StreamRead>;
/// Boxed writing half of a byte stream.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Which side of the handshake this end plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that accepted (waits for the client's line first).
    Host,
    /// The side that connected (sends its line first).
    Client,
}

/// A byte stream that a transport produced, before the handshake.
pub struct RawStream {
    /// Reading half.
    pub reader: BoxRead,
    /// Writing half.
    pub writer: BoxWrite,
    /// This end.
    pub local: Endpoint,
    /// The other end.
    pub peer: Endpoint,
}

/// Run the handshake over what a transport produced (bounded by
/// [`handshake::HANDSHAKE_TIMEOUT`]) and turn it into a [`Link`] that refuses packages
/// above `max_message_size`.
pub async fn establish(
    incoming: crate::transport::Incoming,
    role: Role,
    me: Hello,
    max_message_size: u64,
    auth: Option<&handshake::Secret>,
) -> Result<Link, HandshakeError> {
    match incoming {
        crate::transport::Incoming::Stream(raw) => {
            establish_stream(raw, role, me, max_message_size, auth).await
        }
        crate::transport::Incoming::Messages(raw) => {
            crate::messages::establish_messages(raw, role, me, max_message_size, auth).await
        }
    }
}

/// [`establish`] for a byte stream.
pub async fn establish_stream(
    mut raw: RawStream,
    role: Role,
    me: Hello,
    max_message_size: u64,
    auth: Option<&handshake::Secret>,
) -> Result<Link, HandshakeError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let fut = async {
        let mut io = handshake::StreamLines {
            reader: &mut raw.reader,
            writer: &mut raw.writer,
            buf: &mut buf,
        };
        match role {
            Role::Host => handshake::host(&mut io, me, auth).await,
            Role::Client => handshake::client(&mut io, me, auth).await,
        }
    };
    let peer = tokio::time::timeout(handshake::HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    Ok(Link {
        reader: Box::new(StreamReader {
            io: raw.reader,
            buf: ReadBuffer::new(buf),
            codec: PackageCodec::new(max_message_size),
            low_water: LowWater::default(),
        }),
        writer: Box::new(StreamWriter {
            io: raw.writer,
            batch: BytesMut::with_capacity(READ_BUFFER),
            segments: VecDeque::new(),
        }),
        local: raw.local,
        peer: raw.peer,
        peer_id: peer.id,
        peer_pid: peer.pid,
    })
}

/// Reads many frames per `read`; payloads are slices of the read buffer.
pub struct StreamReader<R> {
    io: R,
    buf: ReadBuffer,
    codec: PackageCodec,
    low_water: LowWater,
}

#[async_trait]
impl<R: StreamRead + 'static> LinkReader for StreamReader<R> {
    async fn read_frames(&mut self, out: &mut ReadBatch) -> Result<(), LinkError> {
        loop {
            self.codec.decode_with(self.buf.buf(), |f| out.push(f))?;
            if !out.is_empty() {
                return Ok(());
            }
            let large = self.codec.room_ahead(self.buf.len());
            match large {
                Some(ahead) => {
                    let size = self.codec.partial_payload_len();
                    let size = usize::try_from(size).unwrap_or(usize::MAX);
                    self.buf.make_room_for_frame(ahead, size);
                }
                None => self.buf.make_room(),
            }
            self.low_water.before_read(&self.io, large);
            let n = self.io.read_buf(self.buf.buf()).await?;
            if n == 0 {
                return Err(LinkError::Eof);
            }
            self.buf.read(n, large.is_some());
        }
    }

    fn partial_bytes(&self) -> u64 {
        self.buf.len() as u64
    }
}

/// Writes batches: small frames are copied into one buffer, large payloads go by
/// reference in the same vectored write.
pub struct StreamWriter<W> {
    io: W,
    batch: BytesMut,
    segments: VecDeque<Bytes>,
}

/// Write `segments` in order with vectored writes (at most 64 slices and [`MAX_WRITE`]
/// bytes per call), dropping each one once it is written: how a batch buffer and large
/// payloads (by reference) go out together.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use bytes::Bytes;
/// let mut out = Vec::new();
/// let mut segments: std::collections::VecDeque<Bytes> =
///     [Bytes::from_static(b"head"), Bytes::from(vec![7u8; 3])].into();
/// yoton_core::stream::write_segments(&mut out, &mut segments).await.unwrap();
/// assert_eq!(out, b"head\x07\x07\x07");
/// assert!(segments.is_empty());
/// # });
/// ```
pub async fn write_segments<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    segments: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !segments.is_empty() {
        let mut room = MAX_WRITE;
        let slices: Vec<IoSlice<'_>> = segments
            .iter()
            .take(MAX_IOV)
            .map_while(|b| {
                if room == 0 {
                    return None;
                }
                let take = b.len().min(room);
                room -= take;
                Some(IoSlice::new(b.get(..take).unwrap_or_default()))
            })
            .collect();
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = segments.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin + 'static> LinkWriter for StreamWriter<W> {
    async fn write_batch(&mut self, batch: &[Outgoing]) -> Result<(), LinkError> {
        for item in batch {
            match item {
                // Already in wire encoding: written as it is (no copy).
                Outgoing::Encoded(run) => {
                    if !self.batch.is_empty() {
                        self.segments.push_back(self.batch.split().freeze());
                    }
                    self.segments.push_back(run.clone());
                }
                Outgoing::Frame(frame) => {
                    let payload = frame.payload();
                    self.batch.extend_from_slice(&frame.header());
                    if payload.len() <= COPY_THRESHOLD {
                        self.batch.extend_from_slice(payload);
                    } else if let Frame::Package(p) = frame {
                        self.segments.push_back(self.batch.split().freeze());
                        self.segments.push_back(p.payload.clone());
                    }
                }
            }
        }
        if !self.batch.is_empty() {
            self.segments.push_back(self.batch.split().freeze());
        }
        if self.batch.capacity() < HEADER_SIZE * 16 {
            self.batch.reserve(READ_BUFFER);
        }
        write_segments(&mut self.io, &mut self.segments).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), LinkError> {
        self.io.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Takes everything it is given, and records how much each call gave.
    #[derive(Default)]
    struct Recorder {
        out: Vec<u8>,
        calls: Vec<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let n = bufs.iter().map(|b| b.len()).sum();
            for b in bufs {
                self.out.extend_from_slice(b);
            }
            self.calls.push(n);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_write_takes_at_most_max_write_bytes_and_everything_goes_out_in_order() {
        let mut segments: VecDeque<Bytes> = VecDeque::new();
        let mut expected = Vec::new();
        for (i, len) in [100, MAX_WRITE + 5, 0, 3 * MAX_WRITE / 2, 7]
            .into_iter()
            .enumerate()
        {
            let b = Bytes::from(vec![i as u8; len]);
            expected.extend_from_slice(&b);
            segments.push_back(b);
        }
        let mut w = Recorder::default();
        write_segments(&mut w, &mut segments).await.unwrap();
        assert!(segments.is_empty());
        assert!(w.out == expected, "the bytes differ");
        assert!(w.calls.iter().all(|&n| n <= MAX_WRITE), "{:?}", w.calls);
        // Full calls while there is enough: 100 + 1 MiB + 5 + 1.5 MiB + 7 bytes.
        assert_eq!(&w.calls[..2], &[MAX_WRITE, MAX_WRITE]);
        assert_eq!(w.calls.len(), 3);
    }
}
