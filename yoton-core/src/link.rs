//! A link: an established, handshaken connection that carries frames in order, split
//! into an owned reading half and an owned writing half.

use async_trait::async_trait;
use bytes::Bytes;

use crate::package::{Frame, Package};

/// Why a link stopped. The `Display` texts are the reference's close reasons (plus
/// detail), so they can be shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The stream ended.
    #[error("Other end dropped the connection.")]
    Eof,
    /// Bad framing (wrong control bytes, a package above the maximum size).
    #[error("{0}")]
    Codec(#[from] crate::codec::CodecError),
    /// An I/O error.
    #[error("Socket error. {0}")]
    Io(#[from] std::io::Error),
    /// Anything else a transport reports (TLS, WebSocket protocol, ...).
    #[error("{0}")]
    Other(String),
}

/// What a link read, in order: the packages, each paired with room for the receive
/// sequence number that the context gives it (so that the context judges them in
/// place and a channel can take the whole list as its queue), and whether the peer
/// said goodbye. Heartbeats leave no trace but count as frames read.
///
/// ```
/// use yoton_core::link::ReadBatch;
/// use yoton_core::{Frame, Package};
///
/// let mut batch = ReadBatch::default();
/// batch.push(Frame::Package(Package::new(7, "a")));
/// batch.push(Frame::Heartbeat);
/// batch.push(Frame::Goodbye);
/// batch.push(Frame::Package(Package::new(7, "after the goodbye")));
/// assert_eq!((batch.packages.len(), batch.goodbye, batch.frames), (1, true, 4));
/// ```
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// The packages, each with 0 as its receive sequence number until the context
    /// gives it one.
    pub packages: Vec<(Package, u64)>,
    /// The peer said goodbye; nothing after it is kept.
    pub goodbye: bool,
    /// Frames read: packages, heartbeats and the goodbye.
    pub frames: usize,
}

impl ReadBatch {
    /// Add a frame read.
    #[inline]
    pub fn push(&mut self, frame: Frame) {
        self.frames += 1;
        if self.goodbye {
            return;
        }
        match frame {
            Frame::Package(p) => self.packages.push((p, 0)),
            Frame::Heartbeat => {}
            Frame::Goodbye => self.goodbye = true,
        }
    }

    /// Whether no frame was read.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Forget what was read (the package list keeps its room).
    pub fn clear(&mut self) {
        self.packages.clear();
        self.goodbye = false;
        self.frames = 0;
    }
}

/// The reading half of a link.
#[async_trait]
pub trait LinkReader: Send + 'static {
    /// Wait for at least one frame and add every frame that is available without
    /// waiting further to `out`. Must be cancel-safe: a call dropped before it returns
    /// loses no bytes (the connection uses a time-out around it).
    async fn read_frames(&mut self, out: &mut ReadBatch) -> Result<(), LinkError>;

    /// Bytes of a partially received payload held right now (for diagnostics).
    fn partial_bytes(&self) -> u64 {
        0
    }
}

/// What a connection hands its writer, in order.
///
/// Small packages are put in their wire encoding as they are queued, in the sender's
/// thread, many back to back in one buffer: the writer of a byte stream then writes
/// that buffer as it is, and a message link cuts it into one message per package
/// (slices, no copy). Large packages (above [`COPY_THRESHOLD`](crate::stream::COPY_THRESHOLD))
/// and the connection's signals come as frames, so a large payload is never copied.
///
/// ```
/// use yoton_core::link::Outgoing;
/// use yoton_core::{Frame, Package};
///
/// let mut run = bytes::BytesMut::new();
/// Package::new(7, "hi").encode_into(&mut run);
/// let batch = [Outgoing::Encoded(run.freeze()), Outgoing::Frame(Frame::Heartbeat)];
/// assert_eq!(batch[0].wire_len(), 56 + 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// One frame: a large package (its payload goes by reference) or a signal.
    Frame(Frame),
    /// Whole packages in wire encoding (header, payload, header, payload, ...).
    Encoded(Bytes),
}

impl Outgoing {
    /// Bytes this item takes on a byte stream.
    pub fn wire_len(&self) -> usize {
        match self {
            Outgoing::Frame(f) => crate::package::HEADER_SIZE + f.payload().len(),
            Outgoing::Encoded(b) => b.len(),
        }
    }
}

/// The writing half of a link.
#[async_trait]
pub trait LinkWriter: Send + 'static {
    /// Write the whole batch, in order, in as few system calls as possible, then flush.
    async fn write_batch(&mut self, batch: &[Outgoing]) -> Result<(), LinkError>;

    /// Write frames, in order (a convenience over [`LinkWriter::write_batch`]).
    async fn write_frames(&mut self, frames: &[Frame]) -> Result<(), LinkError> {
        let batch: Vec<Outgoing> = frames.iter().cloned().map(Outgoing::Frame).collect();
        self.write_batch(&batch).await
    }

    /// Shut the sending direction down (after a goodbye).
    async fn shutdown(&mut self) -> Result<(), LinkError>;
}

/// Where one end of a link is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Host (IP address, or a name for in-process links).
    pub host: String,
    /// Port (0 where the transport has none).
    pub port: u16,
}

impl From<std::net::SocketAddr> for Endpoint {
    /// The IP address (as text) and port of a socket.
    ///
    /// ```
    /// let e: yoton_core::Endpoint = "[::1]:7000".parse::<std::net::SocketAddr>().unwrap().into();
    /// assert_eq!((e.host.as_str(), e.port), ("::1", 7000));
    /// ```
    fn from(a: std::net::SocketAddr) -> Self {
        Endpoint {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An established link: both halves plus what is known about both ends.
pub struct Link {
    /// Reading half.
    pub reader: Box<dyn LinkReader>,
    /// Writing half.
    pub writer: Box<dyn LinkWriter>,
    /// This end.
    pub local: Endpoint,
    /// The other end.
    pub peer: Endpoint,
    /// The other context's id.
    pub peer_id: u64,
    /// The other context's process id.
    pub peer_pid: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("peer_id", &format_args!("{:016x}", self.peer_id))
            .field("peer_pid", &self.peer_pid)
            .finish()
    }
}
