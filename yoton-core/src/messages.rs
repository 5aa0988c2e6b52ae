//! The message adapter: handshake and framing over a transport that carries whole
//! messages (WebSocket), one package per message.
//!
//! The first message each way is the handshake line of PROTOCOL.md section 3
//! (`YOTON!<id hex>.<pid>\r\n`, as UTF-8 bytes); every later message is one package:
//! the 56-byte header followed by the payload, nothing else. A message whose length
//! does not match its header closes the connection.

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};

use crate::handshake::{self, HandshakeError, Hello};
use crate::link::{Endpoint, Link, LinkError, LinkReader, LinkWriter, Outgoing, ReadBatch};
use crate::package::{frame_from_parts, Frame, Header, HEADER_SIZE};
use crate::stream::Role;

/// The receiving half of a message transport.
#[async_trait]
pub trait MessageReader: Send + 'static {
    /// The next message; `Ok(None)` at the end of the stream. Must be cancel-safe.
    async fn recv(&mut self) -> Result<Option<Bytes>, LinkError>;

    /// Wait for one message, then add every further message that has already
    /// arrived to `out` without waiting, until `out` holds `max`. Returns how the
    /// stream ended behind the messages added (`Some`: report it after them), or
    /// the error or end (`Err(LinkError::Eof)`) when no message came. Must be
    /// cancel-safe while it waits for the first message.
    ///
    /// The default calls [`recv`](Self::recv) and then polls it once per further
    /// message; a transport that reads many messages at once (WebSocket) hands them
    /// over together instead.
    async fn recv_many(
        &mut self,
        out: &mut Vec<Bytes>,
        max: usize,
    ) -> Result<Option<LinkError>, LinkError> {
        out.push(self.recv().await?.ok_or(LinkError::Eof)?);
        // `recv` is cancel-safe: a poll that finds nothing leaves no trace.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while out.len() < max {
            let std::task::Poll::Ready(next) = self.recv().as_mut().poll(&mut cx) else {
                break;
            };
            match next {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return Ok(Some(LinkError::Eof)),
                Err(e) => return Ok(Some(e)),
            }
        }
        Ok(None)
    }

    /// The Yoton handshake succeeded: a reader that bounds what a peer may send
    /// before it (as it should: the handshake line is small, a message may be large)
    /// lifts that bound now.
    fn handshake_done(&mut self) {}
}

/// One message to send: whole, or in two parts that make one message (a large
/// package's header and payload, so that a transport that can send parts, as QUIC's
/// streams can, never copies the payload); or a run of small packages in wire
/// encoding, each of which is a message of its own.
///
/// ```
/// use bytes::Bytes;
/// use yoton_core::messages::OutMessage;
/// let m = OutMessage::Parts(Bytes::from_static(b"head"), Bytes::from_static(b"body"));
/// assert_eq!(m.len(), 8);
/// assert_eq!(m.first(), b"head");
/// let mut batch = bytes::BytesMut::from(&b"..."[..]);
/// m.copy_into(&mut batch);
/// assert_eq!(&batch[..], b"...headbody");
/// assert_eq!(&m.into_bytes()[..], b"headbody");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutMessage {
    /// The whole message.
    Whole(Bytes),
    /// The message is the first part followed by the second.
    Parts(Bytes, Bytes),
    /// Several packages back to back in wire encoding, each one message: a
    /// transport that writes many messages into one buffer goes through them with
    /// [`packages_in`] (no slice made per package); [`split_encoded`] cuts them
    /// into one `Bytes` each. Their payloads are small (below
    /// [`COPY_THRESHOLD`](crate::stream::COPY_THRESHOLD)).
    Packages(Bytes),
}

impl OutMessage {
    /// Length in bytes (of all its packages, for [`OutMessage::Packages`]).
    pub fn len(&self) -> usize {
        match self {
            OutMessage::Whole(b) | OutMessage::Packages(b) => b.len(),
            OutMessage::Parts(a, b) => a.len() + b.len(),
        }
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first part (the whole message when it is whole).
    pub fn first(&self) -> &[u8] {
        match self {
            OutMessage::Whole(b) | OutMessage::Parts(b, _) | OutMessage::Packages(b) => b,
        }
    }

    /// The bytes in one piece (parts are joined: one copy).
    pub fn into_bytes(self) -> Bytes {
        match self {
            OutMessage::Whole(b) | OutMessage::Packages(b) => b,
            parts => {
                let mut m = BytesMut::with_capacity(parts.len());
                parts.copy_into(&mut m);
                m.freeze()
            }
        }
    }

    /// Append the bytes to `dst` (a transport that batches small messages into one
    /// write).
    pub fn copy_into(&self, dst: &mut BytesMut) {
        match self {
            OutMessage::Whole(b) | OutMessage::Packages(b) => dst.extend_from_slice(b),
            OutMessage::Parts(a, b) => {
                dst.extend_from_slice(a);
                dst.extend_from_slice(b);
            }
        }
    }
}

/// The sending half of a message transport.
#[async_trait]
pub trait MessageWriter: Send + 'static {
    /// Send these messages in order, then flush.
    async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError>;
    /// Close the sending direction.
    async fn close(&mut self) -> Result<(), LinkError>;
}

/// A message link that a transport produced, before the handshake.
pub struct RawMessages {
    /// Receiving half.
    pub reader: Box<dyn MessageReader>,
    /// Sending half.
    pub writer: Box<dyn MessageWriter>,
    /// This end.
    pub local: Endpoint,
    /// The other end.
    pub peer: Endpoint,
}

/// [`handshake::LineIo`] over a message link: one line per message.
struct MessageLines<'a> {
    raw: &'a mut RawMessages,
}

#[async_trait]
impl handshake::LineIo for MessageLines<'_> {
    async fn recv_line(&mut self) -> Result<String, HandshakeError> {
        let msg = self
            .raw
            .reader
            .recv()
            .await
            .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))?
            .ok_or(HandshakeError::Eof)?;
        if msg.len() > handshake::MAX_LINE {
            return Err(HandshakeError::TooLong);
        }
        let text = std::str::from_utf8(&msg).map_err(|_| HandshakeError::InvalidUtf8)?;
        Ok(text.trim_end_matches("\r\n").to_owned())
    }

    async fn send_line(&mut self, line: &str) -> Result<(), HandshakeError> {
        let msg = Bytes::from(format!("{line}\r\n"));
        self.raw
            .writer
            .send(vec![OutMessage::Whole(msg)])
            .await
            .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))
    }

    async fn refuse(&mut self, line: &str) {
        let _ = self.send_line(line).await;
        let _ = self.raw.writer.close().await;
    }
}

/// Run the handshake over a message link and turn it into a [`Link`].
pub async fn establish_messages(
    mut raw: RawMessages,
    role: Role,
    me: Hello,
    max_message_size: u64,
    auth: Option<&handshake::Secret>,
) -> Result<Link, HandshakeError> {
    let fut = async {
        let mut io = MessageLines { raw: &mut raw };
        match role {
            Role::Host => handshake::host(&mut io, me, auth).await,
            Role::Client => handshake::client(&mut io, me, auth).await,
        }
    };
    let peer = tokio::time::timeout(handshake::HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    raw.reader.handshake_done();
    Ok(Link {
        reader: Box::new(PackageMessages {
            io: raw.reader,
            max: max_message_size,
            end: None,
            messages: Vec::new(),
        }),
        writer: Box::new(MessagePackages { io: raw.writer }),
        local: raw.local,
        peer: raw.peer,
        peer_id: peer.id,
        peer_pid: peer.pid,
    })
}

/// Decode one message as one frame.
pub fn decode_message(msg: Bytes, max: u64) -> Result<Frame, LinkError> {
    let Some(raw) = msg.get(..HEADER_SIZE) else {
        return Err(LinkError::Other(format!(
            "Lost track of the stream: a message of {} bytes is shorter than a package header",
            msg.len()
        )));
    };
    let mut bytes = [0u8; HEADER_SIZE];
    bytes.copy_from_slice(raw);
    let h = Header::from_bytes(&bytes)
        .map_err(|found| crate::codec::CodecError::LostTrack { found })?;
    if h.length > max {
        return Err(crate::codec::CodecError::TooLarge {
            length: h.length,
            max,
        }
        .into());
    }
    let body = (msg.len() - HEADER_SIZE) as u64;
    if body != h.length {
        return Err(LinkError::Other(format!(
            "Lost track of the stream: the header announces {} payload bytes, the message carries {body}",
            h.length
        )));
    }
    // Advancing the message it came in makes the payload without a reference count
    // of its own (a slice would take one and dropping `msg` give it back).
    let mut payload = msg;
    payload.advance(HEADER_SIZE);
    Ok(frame_from_parts(h, payload))
}

/// The packages of a run in wire encoding ([`Outgoing::Encoded`]), one slice each.
/// The run was encoded by this process; a malformed tail (which cannot happen) ends
/// the run.
///
/// ```
/// use yoton_core::messages::packages_in;
/// use yoton_core::Package;
/// let mut run = bytes::BytesMut::new();
/// Package::new(1, "a").encode_into(&mut run);
/// Package::new(2, "bc").encode_into(&mut run);
/// let lengths: Vec<usize> = packages_in(&run).map(|p| p.len()).collect();
/// assert_eq!(lengths, [57, 58]);
/// ```
pub fn packages_in(run: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = run;
    std::iter::from_fn(move || {
        let len_field = rest.get(HEADER_SIZE - 8..HEADER_SIZE)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(len_field);
        let end = HEADER_SIZE.checked_add(usize::try_from(u64::from_le_bytes(word)).ok()?)?;
        let one = rest.get(..end)?;
        rest = rest.get(end..)?;
        Some(one)
    })
}

/// Cut a run of packages in wire encoding ([`Outgoing::Encoded`]) into one slice per
/// package (no copy), as [`packages_in`] finds them.
pub fn split_encoded(run: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    packages_in(run).map(|p| run.slice_ref(p))
}

/// At most this many messages are taken per read (those already arrived).
const MESSAGE_BATCH: usize = 1024;

struct PackageMessages {
    io: Box<dyn MessageReader>,
    max: u64,
    /// How the stream ended behind messages already handed out (reported next).
    end: Option<LinkError>,
    /// The messages of a read (kept for its room).
    messages: Vec<Bytes>,
}

#[async_trait]
impl LinkReader for PackageMessages {
    /// Waits for one message, then takes every message that has already arrived (up
    /// to [`MESSAGE_BATCH`]) without waiting: the batch is routed in one pass and wakes
    /// a channel once, as a byte stream's read does. One message per read made each
    /// package cost a routing pass and a wake-up (W1 over WebSocket: 0.7 M msg/s).
    async fn read_frames(&mut self, out: &mut ReadBatch) -> Result<(), LinkError> {
        if let Some(e) = self.end.take() {
            return Err(e);
        }
        self.messages.clear();
        self.end = self.io.recv_many(&mut self.messages, MESSAGE_BATCH).await?;
        for m in self.messages.drain(..) {
            match decode_message(m, self.max) {
                Ok(frame) => out.push(frame),
                Err(e) => {
                    self.end = Some(e);
                    break;
                }
            }
        }
        match self.end.take() {
            Some(e) if out.is_empty() => Err(e),
            end => {
                self.end = end;
                Ok(())
            }
        }
    }
}

struct MessagePackages {
    io: Box<dyn MessageWriter>,
}

#[async_trait]
impl LinkWriter for MessagePackages {
    async fn write_batch(&mut self, batch: &[Outgoing]) -> Result<(), LinkError> {
        let mut msgs = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Outgoing::Encoded(run) => msgs.push(OutMessage::Packages(run.clone())),
                // A large package: header and payload as parts (the payload by
                // reference); a signal is its header alone.
                Outgoing::Frame(f) => {
                    let header = Bytes::copy_from_slice(&f.header());
                    msgs.push(match f {
                        Frame::Package(p) => OutMessage::Parts(header, p.payload.clone()),
                        _ => OutMessage::Whole(header),
                    });
                }
            }
        }
        self.io.send(msgs).await
    }

    async fn shutdown(&mut self) -> Result<(), LinkError> {
        self.io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Package;

    #[test]
    fn an_encoded_run_is_cut_into_one_message_per_package() {
        let packages: Vec<Package> = (1..=3u8)
            .map(|i| Package::new(u64::from(i), vec![i; usize::from(i) * 100]))
            .collect();
        let mut run = BytesMut::new();
        for p in &packages {
            p.encode_into(&mut run);
        }
        let run = run.freeze();
        let msgs: Vec<Bytes> = split_encoded(&run).collect();
        assert_eq!(msgs.len(), 3);
        for (m, p) in msgs.into_iter().zip(&packages) {
            assert_eq!(
                decode_message(m, 1 << 20).unwrap(),
                Frame::Package(p.clone())
            );
        }
        // A cut-off tail ends the run instead of panicking.
        let cut = run.slice(..run.len() - 1);
        assert_eq!(split_encoded(&cut).count(), 2);
    }

    /// Messages from a channel: what was sent before a `recv` is already there.
    struct Incoming(tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, LinkError>>);

    #[async_trait]
    impl MessageReader for Incoming {
        async fn recv(&mut self) -> Result<Option<Bytes>, LinkError> {
            self.0.recv().await.transpose()
        }
    }

    fn message(p: &Package) -> Bytes {
        let mut b = BytesMut::new();
        p.encode_into(&mut b);
        b.freeze()
    }

    #[tokio::test]
    async fn a_read_takes_every_message_that_has_arrived_and_then_the_end() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = PackageMessages {
            io: Box::new(Incoming(rx)),
            max: 1 << 20,
            end: None,
            messages: Vec::new(),
        };
        let packages: Vec<Package> = (1..=5u64).map(|i| Package::new(i, "x")).collect();
        for p in &packages[..3] {
            tx.send(Ok(message(p))).unwrap();
        }
        let mut out = ReadBatch::default();
        r.read_frames(&mut out).await.unwrap();
        assert_eq!(out.frames, 3, "one read, all three arrived messages");
        assert_eq!(out.packages.len(), 3);
        // A bad message behind good ones: those are delivered, the error comes next.
        out.clear();
        tx.send(Ok(message(&packages[3]))).unwrap();
        tx.send(Ok(Bytes::from_static(b"short"))).unwrap();
        tx.send(Ok(message(&packages[4]))).unwrap();
        r.read_frames(&mut out).await.unwrap();
        assert_eq!(out.packages, [(packages[3].clone(), 0)]);
        let e = r.read_frames(&mut out).await.unwrap_err();
        assert!(
            e.to_string().contains("shorter than a package header"),
            "{e}"
        );
        // The end of the stream behind a message: the message, then the end.
        out.clear();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        r.io = Box::new(Incoming(rx));
        tx.send(Ok(message(&packages[4]))).unwrap();
        drop(tx);
        r.read_frames(&mut out).await.unwrap();
        assert_eq!(out.packages, [(packages[4].clone(), 0)]);
        assert!(matches!(r.read_frames(&mut out).await, Err(LinkError::Eof)));
    }

    struct Capture(std::sync::Arc<parking_lot::Mutex<Vec<OutMessage>>>);

    #[async_trait]
    impl MessageWriter for Capture {
        async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError> {
            self.0.lock().extend(messages);
            Ok(())
        }
        async fn close(&mut self) -> Result<(), LinkError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_large_package_goes_as_header_and_payload_parts_without_a_copy() {
        let sent = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut w = MessagePackages {
            io: Box::new(Capture(sent.clone())),
        };
        let big = Package::new(7, vec![9u8; 100_000]);
        let mut run = BytesMut::new();
        Package::new(8, "small").encode_into(&mut run);
        Package::new(8, "second").encode_into(&mut run);
        let run = run.freeze();
        w.write_batch(&[
            Outgoing::Encoded(run.clone()),
            Outgoing::Frame(Frame::Package(big.clone())),
            Outgoing::Frame(Frame::Goodbye),
        ])
        .await
        .unwrap();
        let sent = std::mem::take(&mut *sent.lock());
        assert_eq!(sent.len(), 3);
        match &sent[1] {
            OutMessage::Parts(header, payload) => {
                assert_eq!(header[..], big.header()[..]);
                assert_eq!(
                    payload.as_ptr(),
                    big.payload.as_ptr(),
                    "the payload was copied"
                );
            }
            other => panic!("a large package as {other:?}"),
        }
        match &sent[0] {
            OutMessage::Packages(r) => assert_eq!(r.as_ptr(), run.as_ptr(), "the run was copied"),
            other => panic!("a run as {other:?}"),
        }
        let whole: Vec<Frame> = sent
            .into_iter()
            .flat_map(|m| match m {
                OutMessage::Packages(r) => split_encoded(&r).collect::<Vec<_>>(),
                m => vec![m.into_bytes()],
            })
            .map(|m| decode_message(m, 1 << 20).unwrap())
            .collect();
        assert_eq!(
            whole,
            [
                Frame::Package(Package::new(8, "small")),
                Frame::Package(Package::new(8, "second")),
                Frame::Package(big),
                Frame::Goodbye
            ]
        );
    }
}
