//! How packages travel over one QUIC connection.
//!
//! ## Streams
//! - **Control stream**: the one bidirectional stream, opened by the client. It carries,
//!   in order, the handshake lines (`YOTON!<id>.<pid>\r\n`, and the authentication
//!   lines when a shared secret is set), then packages exactly as over TCP (56-byte
//!   header + payload), heartbeats and the goodbye. It has a higher send priority than
//!   the other streams.
//! - **Large packages** (payload above the sender's threshold, 64 KiB by default) each
//!   go on a unidirectional stream of their own: the 56-byte header and the payload,
//!   then the end of the stream. In the control stream, at the place where the package
//!   would have been, a 56-byte *reference* is written instead: the same header with
//!   the control word `YOTONUNI`. The n-th reference of a connection stands for the
//!   n-th unidirectional stream that the peer opened (QUIC numbers streams in the
//!   order they are opened).
//!
//! ## Ordering guarantees (receiving side)
//! - **Packages of the same slot (channel) are delivered in the order they were sent,**
//!   whatever their sizes. So a channel's own protocol is never reordered: a
//!   publisher's messages, the `req?` / request / `req-` sequence of request/reply,
//!   state updates.
//! - **Packages of different slots may overtake each other when a large package is in
//!   flight**: a small package (or a large one that completes sooner) of one channel
//!   does not wait for a large package of another channel. That is the point: a
//!   64 MiB transfer on one channel does not delay a chat message on another. (Over
//!   TCP, everything arrives in the order sent; code that sends a large package on
//!   one channel and a "done" on another must not expect that order over QUIC.)
//! - A large package never overtakes a package sent before it: it is only delivered
//!   once its reference has been read from the control stream.
//! - Bounds: at most [`MAX_OVERTAKE`] packages may overtake the oldest large package
//!   still in flight (so the router's per-source duplicate window of 4096 sequence
//!   numbers never mistakes a late large package for an old duplicate), and at most
//!   [`MAX_WAITING`] packages ([`MAX_WAITING_BYTES`] bytes) may wait behind large
//!   packages of their slot. Past either bound, reading the control stream pauses
//!   until the large package is in: the connection then behaves like TCP.
//! - The goodbye (and the end of the control stream) is delivered after every package
//!   sent before it: closing right after sending a large package does not lose it.
//! - Without large packages everything travels on one stream, in TCP's order.
//!
//! ## Sending
//! The writer hands each large package to a task of its own and goes on with the
//! next package at once, so small packages behind it are not held up at the sender
//! either. At most `max_concurrent_large_messages` of the peer's streams can be open
//! at a time (the peer's QUIC stream limit); a further large package waits for one,
//! and the packages behind it with it. A link that is dropped keeps its connection
//! open until the peer has received what was written (like a closed TCP socket).
//!
//! ## Memory
//! Per connection, at most `max_concurrent_large_messages` large packages are read or
//! held at a time (a permit is taken before a stream is accepted and given back when
//! its package is handed to the context), each at most `max_message_size`; the buffer
//! of a large package grows with what actually arrived, not with what its header
//! announces. The control stream is read into a queue of 64 packages, plus the
//! packages waiting behind large ones (bounded above). QUIC flow control holds the
//! peer back when these are full.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use yoton_core::codec::{bounded_room, CodecError};
use yoton_core::handshake::MAX_LINE;
use yoton_core::link::LinkError;
use yoton_core::messages::{MessageReader, MessageWriter, OutMessage, RawMessages};
use yoton_core::package::{Header, CONTROL, HEADER_SIZE};
use yoton_core::pool::LargePool;
use yoton_core::readbuf::ReadBuffer;
use yoton_core::Endpoint;

/// Control word of a reference to a package that travels on its own stream.
pub const REF_CONTROL: u64 = u64::from_le_bytes(*b"YOTONUNI");

/// How many packages may overtake the oldest large package still in flight.
pub const MAX_OVERTAKE: u64 = yoton_core::router::DEDUP_WINDOW / 2;

/// Packages that may wait behind large packages of their slot before reading the
/// control stream pauses.
pub const MAX_WAITING: usize = 1024;

/// Bytes of packages that may wait behind large packages of their slot before
/// reading the control stream pauses.
pub const MAX_WAITING_BYTES: usize = 64 << 20;

/// Reads of the control stream (each up to [`READ_CHUNKS`] chunks of entries) queued
/// between its reader task and the context.
const CONTROL_QUEUE: usize = 64;

/// Room of the control stream's read buffer, and of the writer's batch.
const READ_CHUNK: usize = 64 * 1024;

/// Chunks (about a datagram each) taken from the control stream per read.
const READ_CHUNKS: usize = 32;

/// How long a dropped link keeps its connection open for the peer to receive what
/// was written.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the control stream is still read (and dropped) after the reader is
/// gone, at most, while large packages are still being sent (see [`drain`]).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The buffers kept for large packages (up to [`yoton_core::pool::LARGE_KEEP`]) are
/// given up when no large package arrives for this long.
const RELEASE_LARGE: Duration = Duration::from_secs(16);

/// Settings of the link layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WireOptions {
    pub(crate) threshold: usize,
    pub(crate) max_message_size: u64,
    pub(crate) max_large: usize,
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A QUIC connection error as a link error; the texts are the reference's close
/// reasons where one fits.
pub(crate) fn connection_error(e: &quinn::ConnectionError) -> LinkError {
    use quinn::ConnectionError as C;
    match e {
        C::ApplicationClosed(_) | C::ConnectionClosed(_) | C::Reset => LinkError::Eof,
        C::TimedOut => LinkError::Other(
            "Other end dropped the connection. (nothing heard within the QUIC idle time-out)"
                .into(),
        ),
        C::LocallyClosed => LinkError::Other("Connection closed locally.".into()),
        other => LinkError::Other(format!("QUIC error: {other}")),
    }
}

fn read_error(e: quinn::ReadError) -> Option<LinkError> {
    match e {
        // The connection's end is reported once, by the control stream.
        quinn::ReadError::ConnectionLost(_) => None,
        other => Some(LinkError::Other(format!("QUIC stream error: {other}"))),
    }
}

fn write_error(e: quinn::WriteError) -> LinkError {
    match e {
        quinn::WriteError::ConnectionLost(c) => connection_error(&c),
        // The peer no longer reads: it dropped its end.
        quinn::WriteError::Stopped(_) => LinkError::Eof,
        other => LinkError::Other(format!("QUIC stream error: {other}")),
    }
}

fn word(b: &[u8]) -> Option<u64> {
    let mut w = [0u8; 8];
    w.copy_from_slice(b.get(..8)?);
    Some(u64::from_le_bytes(w))
}

/// A header whose control word is `control` (checked by the caller), with the
/// standard control word put back.
fn parse_header(raw: &[u8]) -> Option<([u8; HEADER_SIZE], Header)> {
    let mut bytes = [0u8; HEADER_SIZE];
    bytes.copy_from_slice(raw.get(..HEADER_SIZE)?);
    if let Some(first) = bytes.get_mut(..8) {
        first.copy_from_slice(&CONTROL.to_le_bytes());
    }
    let h = Header::from_bytes(&bytes).ok()?;
    Some((bytes, h))
}

/// One entry of the control stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A handshake line, with its `\r\n`.
    Line(Bytes),
    /// A package: header and payload.
    Package(Bytes),
    /// A reference to the next large package (its header, standard control word).
    Ref([u8; HEADER_SIZE]),
}

/// Decode the next entry of the control stream from `buf`, if complete.
pub(crate) fn decode_control(buf: &mut BytesMut, max: u64) -> Result<Option<Entry>, LinkError> {
    match word(buf) {
        Some(w) if w == CONTROL || w == REF_CONTROL => {
            let Some((header, h)) = parse_header(buf) else {
                return Ok(None);
            };
            if h.length > max {
                return Err(CodecError::TooLarge {
                    length: h.length,
                    max,
                }
                .into());
            }
            if w == REF_CONTROL {
                let _ = buf.split_to(HEADER_SIZE);
                return Ok(Some(Entry::Ref(header)));
            }
            let len = usize::try_from(h.length).unwrap_or(usize::MAX);
            let total = HEADER_SIZE.saturating_add(len);
            if buf.len() >= total {
                return Ok(Some(Entry::Package(buf.split_to(total).freeze())));
            }
            let missing = total - buf.len();
            buf.reserve(bounded_room(missing, buf.len()));
            Ok(None)
        }
        _ => {
            let scan = buf.get(..buf.len().min(MAX_LINE + 2)).unwrap_or_default();
            if let Some(pos) = scan.windows(2).position(|w| w == b"\r\n") {
                return Ok(Some(Entry::Line(buf.split_to(pos + 2).freeze())));
            }
            if buf.len() >= 8 && buf.len() > MAX_LINE + 2 {
                let found = word(buf).unwrap_or(0);
                return Err(CodecError::LostTrack { found }.into());
            }
            Ok(None)
        }
    }
}

/// What the control stream's task hands the reader, in order.
enum Control {
    /// Every entry that one read completed.
    Entries(Vec<Entry>),
    End(Result<(), LinkError>),
}

enum Large {
    Done {
        index: u64,
        message: Bytes,
        permit: OwnedSemaphorePermit,
    },
    Failed(LinkError),
}

async fn read_control(
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Control>,
    max: u64,
    sending: Arc<AtomicUsize>,
) {
    let mut buf = ReadBuffer::new(BytesMut::new());
    let mut last = 0;
    let end = loop {
        // Everything one read completed goes to the reader at once.
        let mut entries = Vec::with_capacity(last);
        let failed = loop {
            match decode_control(buf.buf(), max) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        last = entries.len();
        if !entries.is_empty() && tx.send(Control::Entries(entries)).await.is_err() {
            return drain(recv, &sending).await;
        }
        if let Some(e) = failed {
            break Err(e);
        }
        buf.make_room();
        match tokio::io::AsyncReadExt::read_buf(&mut recv, buf.buf()).await {
            Ok(0) if buf.is_empty() => break Ok(()),
            Ok(0) => {
                break Err(LinkError::Other(format!(
                "Other end dropped the connection in the middle of a package ({} bytes received)",
                buf.len()
            )))
            }
            Ok(n) => buf.read(n, false),
            Err(e) => break Err(control_read_error(e)),
        }
    };
    let _ = tx.send(Control::End(end)).await;
}

/// Why reading the control stream failed (quinn's error inside the I/O error of
/// its `AsyncRead`).
fn control_read_error(e: std::io::Error) -> LinkError {
    match e.get_ref().and_then(|inner| inner.downcast_ref()) {
        Some(quinn::ReadError::ConnectionLost(c)) => connection_error(c),
        _ => LinkError::Other(format!("QUIC stream error: {e}")),
    }
}

/// The reader is gone (the link closed) while large packages of ours may still be
/// on their way out on streams of their own. Dropping the control stream now would
/// tell the peer to stop sending on it; its next heartbeat would then fail, and the
/// peer would close the connection, losing those packages (seen when a large
/// package took longer than the close's one-second flush). So go on reading, and
/// dropping, what the peer sends until no large package is in flight, the peer
/// ends its stream (as it does once it has taken our goodbye), the connection ends,
/// or [`DRAIN_LIMIT`] has passed.
async fn drain(mut recv: quinn::RecvStream, sending: &AtomicUsize) {
    let until = tokio::time::Instant::now() + DRAIN_LIMIT;
    while sending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until {
        let next = tokio::time::timeout(LARGE_POLL, recv.read_chunk(READ_CHUNK, true)).await;
        match next {
            Ok(Ok(Some(_))) | Err(_) => {}
            Ok(Ok(None) | Err(_)) => return,
        }
    }
}

/// How often [`drain`] looks whether large packages are still in flight.
const LARGE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Counts a large package in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn more_than_announced(length: u64) -> LinkError {
    LinkError::Other(format!(
        "Lost track of the stream: a package stream carries more than the {length} payload bytes its header announces"
    ))
}

/// Read one large package (header + payload, then the end of the stream).
async fn read_large(
    recv: &mut quinn::RecvStream,
    max: u64,
    pool: &Mutex<LargePool>,
) -> Result<Bytes, Option<LinkError>> {
    let mut head = [0u8; HEADER_SIZE];
    recv.read_exact(&mut head).await.map_err(|e| match e {
        quinn::ReadExactError::ReadError(e) => read_error(e),
        quinn::ReadExactError::FinishedEarly(n) => Some(LinkError::Other(format!(
            "Lost track of the stream: a package stream ended after {n} bytes"
        ))),
    })?;
    let found = word(&head).unwrap_or(0);
    let h = Header::from_bytes(&head).map_err(|_| Some(CodecError::LostTrack { found }.into()))?;
    if h.length > max {
        return Err(Some(
            CodecError::TooLarge {
                length: h.length,
                max,
            }
            .into(),
        ));
    }
    let total = HEADER_SIZE.saturating_add(usize::try_from(h.length).unwrap_or(usize::MAX));
    // Room from the memory of large packages the receiver has dropped, when there is
    // some (fresh memory costs a page fault per 4 KiB as the payload is copied in),
    // growing with what arrives, never beyond the announced size.
    let make_room = |buf: &mut BytesMut| {
        let ahead = bounded_room(total - buf.len(), buf.len());
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.make_room(buf, ahead, total)
    };
    let mut buf = BytesMut::from(&head[..]);
    // Fresh memory is populated ahead of the copies (one system call per 4 MiB
    // instead of a page fault per 4 KiB).
    let mut prefault = yoton_core::prefault::Prefault::default();
    prefault.new_buffer(make_room(&mut buf));
    // quinn's chunks are slices of its datagrams, many per call: one copy each, into
    // room that was never zeroed (reading into a zero-filled buffer cost a memset of
    // every byte).
    let mut chunks: [Bytes; READ_CHUNKS] = Default::default();
    while buf.len() < total {
        let ahead = total - buf.len();
        prefault.before_read(&mut buf, ahead);
        let n = match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(Some(LinkError::Other(format!(
                    "Lost track of the stream: the header announces {} payload bytes, the stream carries {}",
                    h.length,
                    buf.len() - HEADER_SIZE
                ))))
            }
            Err(e) => return Err(read_error(e)),
        };
        for c in chunks.iter_mut().take(n) {
            let filled = buf.len();
            if c.len() > total - filled {
                return Err(Some(more_than_announced(h.length)));
            }
            if buf.capacity() - filled < c.len() {
                prefault.new_buffer(make_room(&mut buf));
            }
            buf.extend_from_slice(c);
            *c = Bytes::new();
        }
    }
    let mut probe = [0u8; 1];
    match recv.read(&mut probe).await {
        Ok(None) => Ok(buf.freeze()),
        Ok(Some(_)) => Err(Some(more_than_announced(h.length))),
        Err(e) => Err(read_error(e)),
    }
}

async fn accept_large(conn: quinn::Connection, tx: mpsc::Sender<Large>, max: u64, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let mut readers = JoinSet::new();
    let pool = Arc::new(Mutex::new(LargePool::default()));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut stream = loop {
            match tokio::time::timeout(RELEASE_LARGE, conn.accept_uni()).await {
                Ok(Ok(s)) => break s,
                // The control stream reports the end of the connection.
                Ok(Err(_)) => return,
                // No large package for a while: their memory is given back.
                Err(_) => pool.lock().unwrap_or_else(PoisonError::into_inner).clear(),
            }
        };
        while readers.try_join_next().is_some() {}
        let tx = tx.clone();
        let pool = pool.clone();
        readers.spawn(async move {
            let index = stream.id().index();
            let item = match read_large(&mut stream, max, &pool).await {
                Ok(message) => Large::Done {
                    index,
                    message,
                    permit,
                },
                Err(Some(e)) => Large::Failed(e),
                Err(None) => return,
            };
            let _ = tx.send(item).await;
        });
    }
}

/// A package that waits for an earlier package of its slot (or for its payload).
enum Pending {
    Small {
        slot: u64,
        message: Bytes,
    },
    Large {
        slot: u64,
        index: u64,
        header: [u8; HEADER_SIZE],
        /// `delivered` when the reference was read.
        at: u64,
    },
}

impl Pending {
    fn slot(&self) -> u64 {
        match self {
            Pending::Small { slot, .. } | Pending::Large { slot, .. } => *slot,
        }
    }
}

enum Held {
    Goodbye(Bytes),
    End,
}

/// The receiving half: merges the control stream and the large-package streams,
/// keeping each slot's packages in order.
pub(crate) struct QuicReader {
    control: mpsc::Receiver<Control>,
    /// Entries of the control stream received and not yet taken, in order.
    inbox: VecDeque<Entry>,
    large: mpsc::Receiver<Large>,
    large_open: bool,
    /// Packages not deliverable yet, in the order they were sent.
    pending: VecDeque<Pending>,
    next_ref: u64,
    /// Large packages read and not yet delivered, each with the permit of its stream.
    arrived: BTreeMap<u64, (Bytes, OwnedSemaphorePermit)>,
    held: Option<Held>,
    /// Bytes of the small packages in `pending`.
    waiting_bytes: usize,
    /// Packages delivered so far.
    delivered: u64,
    conn: quinn::Connection,
    _task: AbortOnDrop,
    _endpoint: quinn::Endpoint,
}

/// A message that is only a header saying goodbye (core's rule, whatever the slot).
fn is_goodbye(m: &[u8]) -> bool {
    <&[u8; HEADER_SIZE]>::try_from(m)
        .ok()
        .and_then(|h| Header::from_bytes(h).ok())
        .is_some_and(|h| h.is_goodbye())
}

fn slot_of(m: &[u8]) -> u64 {
    m.get(8..).and_then(word).unwrap_or(0)
}

impl QuicReader {
    /// The first pending package that no earlier pending package of its slot holds
    /// back, if it can be delivered.
    fn pop_ready(&mut self) -> Option<Result<Option<Bytes>, LinkError>> {
        if self.pending.is_empty() {
            return match self.held.take()? {
                Held::Goodbye(m) => Some(Ok(Some(m))),
                Held::End => Some(Ok(None)),
            };
        }
        let mut ahead: HashSet<u64> = HashSet::new();
        let mut found = None;
        for (i, item) in self.pending.iter().enumerate() {
            let slot = item.slot();
            if ahead.contains(&slot) {
                continue;
            }
            let ready = match item {
                Pending::Small { .. } => true,
                Pending::Large { index, .. } => self.arrived.contains_key(index),
            };
            if ready {
                found = Some(i);
                break;
            }
            ahead.insert(slot);
        }
        let item = self.pending.remove(found?)?;
        self.delivered += 1;
        match item {
            Pending::Small { message, .. } => {
                self.waiting_bytes = self.waiting_bytes.saturating_sub(message.len());
                Some(Ok(Some(message)))
            }
            Pending::Large { index, header, .. } => {
                let (message, _permit) = self.arrived.remove(&index)?;
                if message.get(..HEADER_SIZE) != Some(&header[..]) {
                    return Some(Err(LinkError::Other(
                        "Lost track of the stream: a package stream does not match its announcement"
                            .into(),
                    )));
                }
                Some(Ok(Some(message)))
            }
        }
    }

    /// Whether reading the control stream must pause: after a goodbye, when too many
    /// packages wait, or when the oldest large package was overtaken too often.
    fn blocked(&self) -> bool {
        if self.held.is_some()
            || self.pending.len() >= MAX_WAITING
            || self.waiting_bytes >= MAX_WAITING_BYTES
        {
            return true;
        }
        let oldest = self.pending.iter().find_map(|p| match p {
            Pending::Large { at, .. } => Some(*at),
            Pending::Small { .. } => None,
        });
        oldest.is_some_and(|at| self.delivered - at >= MAX_OVERTAKE)
    }

    /// A package read from the control stream: deliver it now, or queue it behind an
    /// earlier package of its slot.
    fn control_package(&mut self, m: Bytes) -> Option<Bytes> {
        if is_goodbye(&m) {
            if self.pending.is_empty() {
                return Some(m);
            }
            self.held = Some(Held::Goodbye(m));
            return None;
        }
        if m.len() <= HEADER_SIZE {
            // A heartbeat (or another empty signal): no slot order to keep.
            return Some(m);
        }
        let slot = slot_of(&m);
        if self.pending.iter().any(|p| p.slot() == slot) {
            self.waiting_bytes += m.len();
            self.pending.push_back(Pending::Small { slot, message: m });
            return None;
        }
        self.delivered += 1;
        Some(m)
    }
}

impl QuicReader {
    /// Take one entry of the control stream: a message to deliver now, or `None`
    /// when it was queued behind an earlier package of its slot.
    fn take(&mut self, entry: Entry) -> Option<Bytes> {
        match entry {
            Entry::Line(m) => Some(m),
            Entry::Ref(header) => {
                self.pending.push_back(Pending::Large {
                    slot: slot_of(&header),
                    index: self.next_ref,
                    header,
                    at: self.delivered,
                });
                self.next_ref += 1;
                None
            }
            Entry::Package(m) => self.control_package(m),
        }
    }

    /// What the control stream's task sent: its entries go to the inbox.
    fn receive(&mut self, c: Option<Control>) -> Result<(), LinkError> {
        match c {
            None => Err(LinkError::Eof),
            Some(Control::End(Ok(()))) => {
                self.held = Some(Held::End);
                Ok(())
            }
            Some(Control::End(Err(e))) => Err(e),
            Some(Control::Entries(v)) => {
                self.inbox.extend(v);
                Ok(())
            }
        }
    }

    /// The next message without waiting: `None` when nothing is ready.
    fn ready(&mut self) -> Option<Result<Option<Bytes>, LinkError>> {
        loop {
            if let Some(ready) = self.pop_ready() {
                return Some(ready);
            }
            if self.blocked() {
                return None;
            }
            if let Some(entry) = self.inbox.pop_front() {
                if let Some(m) = self.take(entry) {
                    return Some(Ok(Some(m)));
                }
                continue;
            }
            match self.control.try_recv() {
                Ok(c) => {
                    if let Err(e) = self.receive(Some(c)) {
                        return Some(Err(e));
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

#[async_trait]
impl MessageReader for QuicReader {
    async fn recv(&mut self) -> Result<Option<Bytes>, LinkError> {
        loop {
            if let Some(ready) = self.ready() {
                return ready;
            }
            let blocked = self.blocked();
            tokio::select! {
                biased;
                c = self.control.recv(), if !blocked => self.receive(c)?,
                l = self.large.recv(), if self.large_open => match l {
                    None => self.large_open = false,
                    Some(Large::Failed(e)) => return Err(e),
                    Some(Large::Done { index, message, permit }) => {
                        let known = self.pending.iter().any(|p| {
                            matches!(p, Pending::Large { index: i, .. } if *i == index)
                        });
                        if (!known && index < self.next_ref) || self.arrived.contains_key(&index) {
                            return Err(LinkError::Other(format!(
                                "Lost track of the stream: package stream {index} was not announced or arrived twice"
                            )));
                        }
                        // The permit is released when the package is delivered: no
                        // more than `max_large` large packages are in memory. No
                        // deadlock: streams are accepted in order, so the large
                        // package with the lowest index still pending holds a permit,
                        // and nothing of its slot is ahead of it that could not be
                        // delivered.
                        self.arrived.insert(index, (message, permit));
                    }
                },
                // While the control stream is read, its task reports the end of the
                // connection after the data received before it; otherwise (waiting for
                // a large package) the end is taken from the connection.
                e = self.conn.closed(), if blocked => return Err(connection_error(&e)),
            }
        }
    }

    async fn recv_many(
        &mut self,
        out: &mut Vec<Bytes>,
        max: usize,
    ) -> Result<Option<LinkError>, LinkError> {
        out.push(self.recv().await?.ok_or(LinkError::Eof)?);
        while out.len() < max {
            match self.ready() {
                None => break,
                Some(Ok(Some(m))) => out.push(m),
                Some(Ok(None)) => return Ok(Some(LinkError::Eof)),
                Some(Err(e)) => return Ok(Some(e)),
            }
        }
        Ok(None)
    }
}

/// The sending half.
pub(crate) struct QuicWriter {
    conn: quinn::Connection,
    /// Taken when the writer is dropped (see `Drop`).
    control: Option<quinn::SendStream>,
    threshold: usize,
    batch: BytesMut,
    endpoint: quinn::Endpoint,
    /// Large packages being sent (shared with the control stream's reader task).
    sending: Arc<AtomicUsize>,
    /// What goes out next on the control stream before the batch: parts of the
    /// batch and runs of packages.
    chunks: Vec<Bytes>,
}

impl QuicWriter {
    /// Write what was put together: the batch and the runs, in order.
    async fn flush_batch(&mut self) -> Result<(), LinkError> {
        if !self.batch.is_empty() {
            self.chunks.push(self.batch.split().freeze());
        }
        if self.chunks.is_empty() {
            return Ok(());
        }
        let written = match self.control.as_mut() {
            Some(c) => c
                .write_all_chunks(&mut self.chunks)
                .await
                .map_err(write_error),
            None => Err(LinkError::Other("Connection closed locally.".into())),
        };
        self.chunks.clear();
        written
    }
}

impl Drop for QuicWriter {
    /// Like closing a TCP socket: what was written still reaches the peer. The
    /// connection stays open until the peer has acknowledged the control stream (at
    /// most [`LINGER`]), then closes when its last handle goes.
    fn drop(&mut self) {
        let Some(mut control) = self.control.take() else {
            return;
        };
        let _ = control.finish();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keep = (self.conn.clone(), self.endpoint.clone());
        rt.spawn(async move {
            let _ = tokio::time::timeout(LINGER, control.stopped()).await;
            drop(keep);
        });
    }
}

async fn send_large(mut stream: quinn::SendStream, message: OutMessage, _counted: InFlight) {
    // Parts go as they are: quinn keeps the Bytes, the payload is never copied.
    let written = match message {
        OutMessage::Whole(m) | OutMessage::Packages(m) => stream.write_chunk(m).await,
        OutMessage::Parts(header, payload) => match stream.write_chunk(header).await {
            Ok(()) => stream.write_chunk(payload).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "a large package could not be sent");
        return;
    }
    let _ = stream.finish();
    // Keep the connection open until the peer has it all (the link may be dropped
    // meanwhile, e.g. right after a goodbye).
    let _ = stream.stopped().await;
}

#[async_trait]
impl MessageWriter for QuicWriter {
    async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError> {
        for m in messages {
            if let OutMessage::Packages(run) = m {
                // Small packages in wire encoding already: written as they are
                // (quinn keeps the Bytes), behind what the batch holds.
                if !self.batch.is_empty() {
                    self.chunks.push(self.batch.split().freeze());
                }
                self.chunks.push(run);
                continue;
            }
            let large = m.len() > HEADER_SIZE.saturating_add(self.threshold)
                && word(m.first()) == Some(CONTROL);
            if !large {
                m.copy_into(&mut self.batch);
                continue;
            }
            self.flush_batch().await?;
            let stream = self
                .conn
                .open_uni()
                .await
                .map_err(|e| connection_error(&e))?;
            self.batch.extend_from_slice(&REF_CONTROL.to_le_bytes());
            self.batch
                .extend_from_slice(m.first().get(8..HEADER_SIZE).unwrap_or_default());
            tokio::spawn(send_large(stream, m, InFlight::new(&self.sending)));
        }
        self.flush_batch().await
    }

    async fn close(&mut self) -> Result<(), LinkError> {
        self.flush_batch().await?;
        if let Some(c) = self.control.as_mut() {
            let _ = c.finish();
        }
        Ok(())
    }
}

/// Turn an established QUIC connection and its control stream into what core's
/// message adapter runs the handshake over.
pub(crate) fn raw_messages(
    endpoint: &quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    opts: WireOptions,
    local: Endpoint,
    peer: Endpoint,
) -> RawMessages {
    let _ = send.set_priority(1);
    let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
    let (big_tx, big_rx) = mpsc::channel(opts.max_large.max(1));
    let sending = Arc::new(AtomicUsize::new(0));
    // Not aborted with the reader: it ends by itself once the reader is gone (see
    // `drain`), or with the connection.
    tokio::spawn(read_control(
        recv,
        ctl_tx,
        opts.max_message_size,
        sending.clone(),
    ));
    let large_task = tokio::spawn(accept_large(
        conn.clone(),
        big_tx,
        opts.max_message_size,
        opts.max_large,
    ));
    RawMessages {
        reader: Box::new(QuicReader {
            control: ctl_rx,
            inbox: VecDeque::new(),
            large: big_rx,
            large_open: true,
            pending: VecDeque::new(),
            next_ref: 0,
            arrived: BTreeMap::new(),
            held: None,
            waiting_bytes: 0,
            delivered: 0,
            conn: conn.clone(),
            _task: AbortOnDrop(large_task),
            _endpoint: endpoint.clone(),
        }),
        writer: Box::new(QuicWriter {
            conn,
            control: Some(send),
            threshold: opts.threshold,
            batch: BytesMut::with_capacity(READ_CHUNK),
            endpoint: endpoint.clone(),
            sending,
            chunks: Vec::new(),
        }),
        local,
        peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yoton_core::package::{Frame, Package};

    #[test]
    fn goodbye_is_core_s_rule_on_any_slot() {
        let signal = |slot, source_seq| {
            Header {
                slot,
                source_id: 0,
                source_seq,
                dest_id: 0,
                dest_seq: 0,
                length: 0,
            }
            .to_bytes()
        };
        assert!(is_goodbye(&wire(&Frame::Goodbye)));
        assert!(
            is_goodbye(&signal(99, 1)),
            "an empty seq-1 package on slot 99"
        );
        assert!(!is_goodbye(&wire(&Frame::Heartbeat)));
        assert!(!is_goodbye(&signal(99, 2)));
        let mut with_payload = signal(1, 1).to_vec();
        with_payload.push(0);
        assert!(!is_goodbye(&with_payload));
    }

    fn wire(f: &Frame) -> Vec<u8> {
        let mut v = f.header().to_vec();
        v.extend_from_slice(f.payload());
        v
    }

    #[test]
    fn control_stream_entries_decode_byte_by_byte() {
        let p = Frame::Package(Package::new(7, "hello"));
        let mut big = Package::new(8, vec![1u8; 100]).header();
        big[..8].copy_from_slice(&REF_CONTROL.to_le_bytes());
        let mut stream = b"YOTON!00000000000000ab.42\r\nAUTH x\r\n".to_vec();
        stream.extend(wire(&p));
        stream.extend(big);
        stream.extend(wire(&Frame::Heartbeat));
        stream.extend(wire(&Frame::Goodbye));
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for b in stream {
            buf.extend_from_slice(&[b]);
            while let Some(e) = decode_control(&mut buf, 1 << 20).unwrap() {
                out.push(e);
            }
        }
        assert_eq!(out.len(), 6, "{out:?}");
        assert_eq!(
            out[0],
            Entry::Line(Bytes::from_static(b"YOTON!00000000000000ab.42\r\n"))
        );
        assert_eq!(out[1], Entry::Line(Bytes::from_static(b"AUTH x\r\n")));
        assert_eq!(out[2], Entry::Package(Bytes::from(wire(&p))));
        let Entry::Ref(h) = &out[3] else { panic!() };
        assert_eq!(&h[..], &Package::new(8, vec![1u8; 100]).header()[..]);
        assert!(matches!(&out[5], Entry::Package(m) if is_goodbye(m)));
        assert!(matches!(&out[4], Entry::Package(m) if !is_goodbye(m)));
    }

    #[test]
    fn oversized_and_garbage_are_errors() {
        let mut buf = BytesMut::from(&wire(&Frame::Package(Package::new(1, vec![0u8; 101])))[..]);
        let err = decode_control(&mut buf, 100).unwrap_err();
        assert!(err.to_string().contains("101"), "{err}");
        let mut buf = BytesMut::from(&[b'x'; 300][..]);
        let err = decode_control(&mut buf, 100).unwrap_err();
        assert!(err.to_string().starts_with("Lost track"), "{err}");
    }
}
