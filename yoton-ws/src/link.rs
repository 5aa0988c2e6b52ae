//! The two halves of an upgraded WebSocket as core's message reader and writer.
//!
//! The reader reads as much as the socket has into a recycled buffer and takes every
//! complete message out of it at once, each a slice of the buffer (payloads are
//! unmasked in place). The writer puts a whole batch of packages, each one binary
//! frame, into one buffer (masking as it copies, on the client side) and writes it
//! with one system call; on the server side a large payload goes by reference in the
//! same vectored write.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yoton_core::connection::STOP_EOF;
use yoton_core::lowat::LowWater;
use yoton_core::messages::{packages_in, MessageReader, MessageWriter, OutMessage, RawMessages};
use yoton_core::readbuf::ReadBuffer;
use yoton_core::stream::{write_segments, BoxRead, BoxWrite, COPY_THRESHOLD};
use yoton_core::{Endpoint, LinkError};

use crate::frame::{close_body, op, put_header, put_masked, Deframer, Event, FrameError, Side};
use crate::io::{Io, PRE_HANDSHAKE_BUDGET};

/// Reason sent in the close frame after a goodbye.
const CLOSE_TEXT: &str = "Yoton connection closed";

/// Close codes that end a connection normally (RFC 6455 section 7.4.1).
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;

/// A client masks what it sends in pieces of this size, and writes once this much
/// is buffered: a large message never has a masked copy of its own.
const MASK_CHUNK: usize = 64 * 1024;
const WRITE_AT: usize = 256 * 1024;

/// Most a read takes of a large masked frame, so that it is unmasked while in the
/// cache (see [`WsReader::fill`]). A W4 receiver (256 MiB) spent 118-160 samples
/// unmasking after reads of up to 1 MiB, 60 after reads of 256 KiB.
const UNMASK_READ: usize = 256 << 10;

/// Masking keys drawn from one seed (64 KiB of output, as `rand`'s `ThreadRng`).
const RESEED_AFTER: u32 = 16 * 1024;

/// A WebSocket after its HTTP upgrade.
pub(crate) struct Upgraded {
    pub(crate) io: Io,
    /// Bytes that came after the upgrade's head (frames already).
    pub(crate) tail: BytesMut,
    /// Bytes of [`PRE_HANDSHAKE_BUDGET`] the upgrade used.
    pub(crate) used: u64,
}

/// The answer to the peer's latest ping, for the writer to send.
type Pong = Arc<Mutex<Option<Bytes>>>;

/// Split an upgraded WebSocket into core's message halves.
pub(crate) fn raw_messages(
    up: Upgraded,
    side: Side,
    max_message: usize,
    local: Endpoint,
    peer: Endpoint,
) -> RawMessages {
    let (r, w) = up.io.into_split();
    let pong = Pong::default();
    let budget = PRE_HANDSHAKE_BUDGET.saturating_sub(up.used);
    RawMessages {
        reader: Box::new(WsReader {
            io: r,
            buf: ReadBuffer::new(up.tail),
            // Before the Yoton handshake a message is at most what the budget allows.
            deframer: Deframer::new(side, max_message.min(budget as usize)),
            budget: Some(budget),
            max_message,
            pong: pong.clone(),
            low_water: LowWater::default(),
        }),
        writer: Box::new(WsWriter {
            io: w,
            masks: (side == Side::Client).then(Masks::default),
            batch: BytesMut::new(),
            segments: VecDeque::new(),
            pong,
        }),
        local,
        peer,
    }
}

/// The receiving half: binary messages are packages, pings are answered (by the
/// writer, with its next write: at the latest with the next heartbeat), pongs are
/// ignored, a close frame or the end of the stream is the end, and a text message is
/// an error.
struct WsReader {
    io: BoxRead,
    buf: ReadBuffer,
    deframer: Deframer,
    /// Bytes the peer may still send before the Yoton handshake is done.
    budget: Option<u64>,
    max_message: usize,
    pong: Pong,
    low_water: LowWater,
}

impl WsReader {
    /// The next message in what was read, `None` when more must be read first, or
    /// how the stream ends (`LinkError::Eof` for a normal close).
    fn step(&mut self) -> Option<Result<Bytes, LinkError>> {
        loop {
            let event = match self.deframer.next(self.buf.buf()) {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(e) => return Some(Err(frame_error(e))),
            };
            match event {
                Event::Binary(m) => return Some(Ok(m)),
                Event::Ping(p) => {
                    if let Ok(mut slot) = self.pong.lock() {
                        *slot = Some(p);
                    }
                }
                Event::Pong => {}
                Event::Text(n) => {
                    return Some(Err(LinkError::Other(format!(
                        "Protocol error: the peer sent a WebSocket text message ({n} bytes); \
                         Yoton over WebSocket carries binary messages only"
                    ))))
                }
                Event::Close(frame) => return Some(Err(closed(frame))),
            }
        }
    }

    /// Read more (cancel-safe: a read that did not finish took nothing).
    async fn fill(&mut self) -> Result<(), LinkError> {
        let large = self.deframer.large_frame_room(self.buf.buf());
        match large {
            Some(missing) => {
                let size = self.buf.len() + missing;
                self.buf.make_room_for_frame(missing, size);
            }
            None => self.buf.make_room(),
        }
        self.low_water.before_read(&self.io, large);
        let read = if large.is_some() && self.deframer.unmasks() {
            // A large masked frame is unmasked after each read (`unmask_arrived`): in
            // pieces that are still in the cache, not the several MiB one read can
            // bring from a grown socket buffer.
            let mut room = BufMut::limit(self.buf.buf(), UNMASK_READ);
            self.io.read_buf(&mut room).await
        } else {
            self.io.read_buf(self.buf.buf()).await
        };
        let n = match read {
            Ok(n) => n,
            // TLS without its close_notify: the peer vanished, as over plain TCP.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(LinkError::Eof);
        }
        let in_large_frame = self.deframer.large_frame_room(self.buf.buf()).is_some();
        self.buf.read(n, in_large_frame);
        self.deframer.unmask_arrived(self.buf.buf());
        if let Some(left) = self.budget {
            self.budget = Some(left.checked_sub(n as u64).ok_or_else(|| {
                LinkError::Other(format!(
                    "the peer sent more than {PRE_HANDSHAKE_BUDGET} bytes before completing \
                     the Yoton handshake"
                ))
            })?);
        }
        Ok(())
    }
}

#[async_trait]
impl MessageReader for WsReader {
    fn handshake_done(&mut self) {
        self.budget = None;
        self.deframer.set_max(self.max_message);
    }

    async fn recv(&mut self) -> Result<Option<Bytes>, LinkError> {
        loop {
            match self.step() {
                Some(Ok(m)) => return Ok(Some(m)),
                Some(Err(LinkError::Eof)) => return Ok(None),
                Some(Err(e)) => return Err(e),
                None => match self.fill().await {
                    Err(LinkError::Eof) => return Ok(None),
                    other => other?,
                },
            }
        }
    }

    async fn recv_many(
        &mut self,
        out: &mut Vec<Bytes>,
        max: usize,
    ) -> Result<Option<LinkError>, LinkError> {
        let start = out.len();
        loop {
            while out.len() < max {
                self.deframer.binary_run(self.buf.buf(), out, max);
                if out.len() >= max {
                    break;
                }
                match self.step() {
                    None => break,
                    Some(Ok(m)) => out.push(m),
                    Some(Err(e)) if out.len() == start => return Err(e),
                    Some(Err(e)) => return Ok(Some(e)),
                }
            }
            if out.len() > start {
                return Ok(None);
            }
            self.fill().await?;
        }
    }
}

/// A close frame: a normal one (or one without a reason) is the end of the stream;
/// an unusual code with a reason is reported.
fn closed(frame: Option<(u16, String)>) -> LinkError {
    match frame {
        Some((code, reason)) if code != NORMAL && code != GOING_AWAY && !reason.is_empty() => {
            LinkError::Other(format!(
                "{STOP_EOF} (WebSocket close code {code}: {reason})"
            ))
        }
        _ => LinkError::Eof,
    }
}

fn frame_error(e: FrameError) -> LinkError {
    LinkError::Other(e.to_string())
}

/// Masking keys for a client's frames. RFC 6455 section 5.3 asks for a fresh key per
/// frame from "a strong source of entropy": ChaCha12 (`rand::rngs::StdRng`), seeded
/// from the system's random source and seeded again after every [`RESEED_AFTER`] keys.
/// Taking the keys from the system 1,024 at a time cost 6 % of a W1 sender's CPU (the
/// kernel's ChaCha is not vectorized); drawing them from the generator one call per
/// frame cost about 10 ns a frame, so they are drawn [`KEY_BLOCK`] at a time.
struct Masks {
    rng: Option<StdRng>,
    /// Keys left before the next seed.
    left: u32,
    /// Keys drawn and not handed out yet: `block[at..]`.
    block: [u8; 4 * KEY_BLOCK],
    at: usize,
}

/// Masking keys drawn from the generator at a time (1 KiB: four of ChaCha's blocks).
const KEY_BLOCK: usize = 256;

impl Default for Masks {
    fn default() -> Self {
        Masks {
            rng: None,
            left: 0,
            block: [0; 4 * KEY_BLOCK],
            at: 4 * KEY_BLOCK,
        }
    }
}

impl Masks {
    #[inline]
    fn next(&mut self) -> Result<[u8; 4], LinkError> {
        if let Some(key) = self.block.get(self.at..self.at + 4) {
            self.at += 4;
            let mut k = [0u8; 4];
            k.copy_from_slice(key);
            return Ok(k);
        }
        self.refill()?;
        self.next()
    }

    /// Draw the next block of keys (from a new seed every [`RESEED_AFTER`] keys).
    #[cold]
    fn refill(&mut self) -> Result<(), LinkError> {
        let rng = match self.rng.as_mut() {
            Some(rng) if self.left > 0 => rng,
            _ => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| {
                    LinkError::Other(format!("no random masking keys for WebSocket frames: {e}"))
                })?;
                self.left = RESEED_AFTER;
                self.rng.insert(StdRng::from_seed(seed))
            }
        };
        rng.fill_bytes(&mut self.block);
        self.left = self.left.saturating_sub(KEY_BLOCK as u32);
        self.at = 0;
        Ok(())
    }
}

/// Append `piece`, the part of a frame's payload at `offset`, masked with `key` when
/// there is one.
fn put_payload(batch: &mut BytesMut, piece: &[u8], key: Option<[u8; 4]>, offset: usize) {
    match key {
        Some(key) => put_masked(batch, piece, key, offset),
        None => batch.extend_from_slice(piece),
    }
}

/// The sending half: one binary frame per package.
struct WsWriter {
    io: BoxWrite,
    /// A client's masking keys (a server does not mask).
    masks: Option<Masks>,
    /// Frames being put together.
    batch: BytesMut,
    /// What goes out next, in order: parts of `batch` and large payloads.
    segments: VecDeque<Bytes>,
    pong: Pong,
}

impl WsWriter {
    /// The next frame's masking key: a client's, or none for a server.
    #[inline]
    fn key(&mut self) -> Result<Option<[u8; 4]>, LinkError> {
        self.masks.as_mut().map(Masks::next).transpose()
    }

    /// Add one frame with a small payload (at most [`WRITE_AT`]) to the batch; no
    /// write. The frames of a run of small packages go in this way, without an await
    /// per frame.
    fn small_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), LinkError> {
        let key = self.key()?;
        put_header(&mut self.batch, opcode, true, payload.len(), key);
        put_payload(&mut self.batch, payload, key, 0);
        Ok(())
    }

    /// Add one frame whose payload is `parts` one after the other, writing whenever
    /// [`WRITE_AT`] bytes are put together (a client masks in [`MASK_CHUNK`] pieces, so
    /// a large message never has a masked copy of its own).
    async fn frame(&mut self, opcode: u8, parts: &[&[u8]]) -> Result<(), LinkError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let key = self.key()?;
        put_header(&mut self.batch, opcode, true, len, key);
        let mut offset = 0;
        for p in parts {
            for piece in p.chunks(MASK_CHUNK) {
                put_payload(&mut self.batch, piece, key, offset);
                offset += piece.len();
                if self.batch.len() >= WRITE_AT {
                    self.write().await?;
                }
            }
        }
        Ok(())
    }

    /// A server's large package: the header in the batch, the payload by reference.
    fn frame_by_reference(&mut self, header: &[u8], payload: &Bytes) {
        put_header(
            &mut self.batch,
            op::BINARY,
            true,
            header.len() + payload.len(),
            None,
        );
        self.batch.extend_from_slice(header);
        self.segments.push_back(self.batch.split().freeze());
        self.segments.push_back(payload.clone());
    }

    /// Write everything put together so far.
    async fn write(&mut self) -> Result<(), LinkError> {
        if !self.batch.is_empty() {
            self.segments.push_back(self.batch.split().freeze());
        }
        write_segments(&mut self.io, &mut self.segments).await?;
        // The written parts are gone: the batch's allocation is free again.
        self.batch.reserve(WRITE_AT);
        Ok(())
    }

    fn take_pong(&self) -> Option<Bytes> {
        self.pong.lock().ok().and_then(|mut p| p.take())
    }
}

#[async_trait]
impl MessageWriter for WsWriter {
    async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError> {
        if let Some(p) = self.take_pong() {
            self.frame(op::PONG, &[p.as_ref()]).await?;
        }
        for m in &messages {
            match m {
                OutMessage::Parts(header, payload)
                    if self.masks.is_none() && payload.len() > COPY_THRESHOLD =>
                {
                    self.frame_by_reference(header, payload)
                }
                OutMessage::Parts(header, payload) => {
                    self.frame(op::BINARY, &[header.as_ref(), payload.as_ref()])
                        .await?
                }
                OutMessage::Whole(m) => self.frame(op::BINARY, &[m.as_ref()]).await?,
                OutMessage::Packages(run) => {
                    for p in packages_in(run) {
                        self.small_frame(op::BINARY, p)?;
                        if self.batch.len() >= WRITE_AT {
                            self.write().await?;
                        }
                    }
                }
            }
        }
        self.write().await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), LinkError> {
        let body = close_body(NORMAL, CLOSE_TEXT);
        let sent = async {
            self.frame(op::CLOSE, &[body.as_slice()]).await?;
            self.write().await?;
            self.io.flush().await?;
            self.io.shutdown().await?;
            Ok(())
        };
        match sent.await {
            // The peer is gone already: nothing left to close.
            Err(LinkError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::NotConnected
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    const WAIT: Duration = Duration::from_secs(30);

    fn endpoint() -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: 0,
        }
    }

    /// Our end (`side`) and a tungstenite end (the other side) over real TCP.
    async fn pair(side: Side) -> (RawMessages, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, theirs) = tokio::join!(ours, listener.accept());
        let (ours, theirs) = (ours.unwrap(), theirs.unwrap().0);
        let config = WebSocketConfig::default()
            .max_frame_size(Some(64 << 20))
            .max_message_size(Some(64 << 20));
        let role = match side {
            Side::Client => Role::Server,
            Side::Server => Role::Client,
        };
        let theirs = WebSocketStream::from_raw_socket(theirs, role, Some(config)).await;
        let up = Upgraded {
            io: Io::plain(ours),
            tail: BytesMut::new(),
            used: 0,
        };
        let mut raw = raw_messages(up, side, 64 << 20, endpoint(), endpoint());
        raw.reader.handshake_done();
        (raw, theirs)
    }

    /// Both sides of ours against tungstenite: many small messages and a large one
    /// each way, arriving whole and in order; a ping from tungstenite is answered
    /// with a pong carrying its payload; a close frame ends our reader normally.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_framing_and_tungstenite_understand_each_other() {
        for side in [Side::Client, Side::Server] {
            let (ours, mut theirs) = pair(side).await;
            let (mut reader, mut writer) = (ours.reader, ours.writer);
            let big: Bytes = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
            let mut out: Vec<OutMessage> = (0..500u32)
                .map(|i| OutMessage::Whole(Bytes::from(i.to_le_bytes().repeat(30))))
                .collect();
            out.push(OutMessage::Parts(
                Bytes::from_static(b"header"),
                big.clone(),
            ));
            // Written while tungstenite reads (the large message does not fit into
            // the sockets' buffers).
            let sending = tokio::spawn(async move {
                writer.send(out).await.unwrap();
                writer
            });
            for i in 0..500u32 {
                match tokio::time::timeout(WAIT, theirs.next()).await.unwrap() {
                    Some(Ok(Message::Binary(b))) => assert_eq!(b, i.to_le_bytes().repeat(30)),
                    other => panic!("{side:?}: message {i}: {other:?}"),
                }
            }
            match tokio::time::timeout(WAIT, theirs.next()).await.unwrap() {
                Some(Ok(Message::Binary(b))) => {
                    assert_eq!(&b[..6], b"header");
                    assert!(b[6..] == big[..], "{side:?}: the large message changed");
                }
                other => panic!("{side:?}: the large message: {other:?}"),
            }
            let mut writer = tokio::time::timeout(WAIT, sending).await.unwrap().unwrap();
            // Their way: small ones, a ping, a large one, read while they are sent.
            let theirs_send = async {
                for i in 0..300u32 {
                    theirs
                        .feed(Message::binary(vec![i as u8; 100]))
                        .await
                        .unwrap();
                }
                theirs
                    .feed(Message::Ping(Bytes::from_static(b"ping!")))
                    .await
                    .unwrap();
                theirs.send(Message::binary(big.clone())).await.unwrap();
            };
            let ours_receive = async {
                let mut got = Vec::new();
                while got.len() < 301 {
                    let end = reader.recv_many(&mut got, 1024).await.unwrap();
                    assert!(end.is_none());
                }
                got
            };
            let ((), got) =
                tokio::time::timeout(WAIT, async { tokio::join!(theirs_send, ours_receive) })
                    .await
                    .unwrap();
            assert_eq!(got.len(), 301);
            for (i, m) in got.iter().take(300).enumerate() {
                assert_eq!(m[..], vec![i as u8; 100][..]);
            }
            assert!(
                got[300] == big,
                "{side:?}: the large message changed on its way to us"
            );
            // The pong goes with our next write.
            tokio::time::timeout(WAIT, writer.send(Vec::new()))
                .await
                .unwrap()
                .unwrap();
            let pong = tokio::time::timeout(WAIT, async {
                loop {
                    match theirs.next().await {
                        Some(Ok(Message::Pong(p))) => return p,
                        Some(Ok(_)) => {}
                        other => panic!("{side:?}: no pong: {other:?}"),
                    }
                }
            })
            .await
            .unwrap();
            assert_eq!(&pong[..], b"ping!");
            tokio::time::timeout(WAIT, theirs.close(None))
                .await
                .unwrap()
                .unwrap();
            let end = tokio::time::timeout(WAIT, reader.recv()).await.unwrap();
            assert!(matches!(end, Ok(None)), "{side:?}: {end:?}");
        }
    }

    /// Keys differ from frame to frame, across a new seed too, and two connections
    /// get different keys.
    #[test]
    fn masking_keys_are_fresh_per_frame_and_per_connection() {
        let n = RESEED_AFTER as usize + 1000;
        let mut a = Masks::default();
        let keys: Vec<[u8; 4]> = (0..n).map(|_| a.next().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        // 17,384 draws from 2^32 values: a few repeats at most.
        assert!(
            distinct.len() > n - 10,
            "{} distinct of {n}",
            distinct.len()
        );
        // 1,000 keys into the second seed: 1,024 of them drawn from it.
        assert_eq!(
            a.left,
            RESEED_AFTER - 1024,
            "seeded again after RESEED_AFTER keys"
        );
        let mut b = Masks::default();
        let other: Vec<[u8; 4]> = (0..100).map(|_| b.next().unwrap()).collect();
        assert_ne!(other[..], keys[..100]);
    }

    /// Our close sends a close frame with code 1000 that tungstenite reads as such.
    #[tokio::test]
    async fn close_sends_a_normal_close_frame() {
        let (mut ours, mut theirs) = pair(Side::Client).await;
        tokio::time::timeout(WAIT, ours.writer.close())
            .await
            .unwrap()
            .unwrap();
        match tokio::time::timeout(WAIT, theirs.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1000);
                assert_eq!(f.reason.as_str(), CLOSE_TEXT);
            }
            other => panic!("{other:?}"),
        }
    }

    /// An unusual close code with a reason is reported; a text message is an error.
    #[tokio::test]
    async fn unusual_closes_and_text_are_reported() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let (mut ours, mut theirs) = pair(Side::Server).await;
        theirs
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "go away".into(),
            })))
            .await
            .unwrap();
        let e = tokio::time::timeout(WAIT, ours.reader.recv())
            .await
            .unwrap();
        let e = e.unwrap_err().to_string();
        assert!(e.contains("1008") && e.contains("go away"), "{e}");
        let (mut ours, mut theirs) = pair(Side::Server).await;
        theirs.send(Message::text("hi")).await.unwrap();
        let e = tokio::time::timeout(WAIT, ours.reader.recv())
            .await
            .unwrap();
        let e = e.unwrap_err().to_string();
        assert!(e.contains("text message"), "{e}");
    }

    /// Before the handshake a peer may send at most the budget; a frame announcing
    /// more is refused on its header.
    #[tokio::test]
    async fn the_budget_bounds_what_comes_before_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, theirs) = tokio::join!(ours, listener.accept());
        let mut theirs = theirs.unwrap().0;
        let up = Upgraded {
            io: Io::plain(ours.unwrap()),
            tail: BytesMut::new(),
            used: PRE_HANDSHAKE_BUDGET - 100,
        };
        let mut raw = raw_messages(up, Side::Client, 1 << 30, endpoint(), endpoint());
        let mut f = BytesMut::new();
        put_header(&mut f, op::BINARY, true, 101, None);
        tokio::io::AsyncWriteExt::write_all(&mut theirs, &f)
            .await
            .unwrap();
        let e = raw.reader.recv().await.unwrap_err().to_string();
        assert!(
            e.starts_with("Package too large") && e.contains("101"),
            "{e}"
        );
    }
}
