//! RFC 6455 framing without I/O: frame headers, masking, and a deframer that takes
//! whole messages off the front of a read buffer.
//!
//! The link (`link.rs`) reads many frames per `read` into one buffer and hands each
//! binary message on as a slice of it (no copy, no allocation per message); a
//! fragmented message is put back together here. Every rule a receiver must check is
//! checked: reserved bits, known opcodes, control frames short and unfragmented,
//! masking by clients only, continuation frames only inside a message, the message
//! size limit as soon as a header announces too much.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

/// Opcodes (RFC 6455 section 5.2).
pub(crate) mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Longest payload of a control frame.
const MAX_CONTROL: usize = 125;

/// A frame that is not complete yet and at most this large is left to the reader's
/// recycled buffer; a larger one gets room reserved for all of it at once, so that a
/// large payload is read straight into place (one allocation, no regrowth).
pub(crate) const RESERVE_ABOVE: usize = 32 * 1024;

/// Which end of the WebSocket this is: a server receives masked frames and sends
/// plain ones, a client the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// Why the peer's frames cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A message above the limit (its size as far as it is known).
    #[error(
        "Package too large: a WebSocket message of {size} bytes exceeds the limit of {max} bytes \
         (raise max_message_size of the WebSocket transport and of the context on both ends)"
    )]
    TooLarge { size: u64, max: usize },
    /// A rule of RFC 6455 broken.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
}

/// What a complete frame (or the last frame of a message) was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole binary message.
    Binary(Bytes),
    /// The first frame of a text message, with its length (Yoton refuses text).
    Text(usize),
    /// A ping with its payload (to be answered with a pong carrying the same).
    Ping(Bytes),
    /// A pong (ignored).
    Pong,
    /// A close frame: its status code and reason, if it had any.
    Close(Option<(u16, String)>),
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Length of the header itself.
    size: usize,
    /// Length of the payload.
    len: u64,
}

/// Parse the frame header at the front of `b`; `None` while it is incomplete.
fn parse_header(b: &[u8]) -> Result<Option<Header>, FrameError> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    let (len, mut size) = match b1 & 0x7f {
        126 => match b.get(2..4).and_then(|x| <[u8; 2]>::try_from(x).ok()) {
            Some(x) => (u64::from(u16::from_be_bytes(x)), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10).and_then(|x| <[u8; 8]>::try_from(x).ok()) {
            Some(x) => {
                let len = u64::from_be_bytes(x);
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("frame length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(k) = b
            .get(size..size + 4)
            .and_then(|k| <[u8; 4]>::try_from(k).ok())
        else {
            return Ok(None);
        };
        size += 4;
        Some(k)
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        size,
        len,
    }))
}

/// Append a frame header to `dst`.
pub(crate) fn put_header(
    dst: &mut BytesMut,
    opcode: u8,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    let b0 = opcode | if fin { 0x80 } else { 0 };
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        dst.extend_from_slice(&[b0, m | len as u8]);
    } else if let Ok(short) = u16::try_from(len) {
        dst.extend_from_slice(&[b0, m | 126]);
        dst.extend_from_slice(&short.to_be_bytes());
    } else {
        dst.extend_from_slice(&[b0, m | 127]);
        dst.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        dst.extend_from_slice(&k);
    }
}

/// The masking key as it lines up with payload byte `offset` (rotated by the offset),
/// as a 32-bit word and twice over as a 64-bit one.
fn key_words(key: [u8; 4], offset: usize) -> (u32, u64) {
    let word = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32);
    (word, u64::from(word) | (u64::from(word) << 32))
}

/// One 8-byte word XORed with the key.
fn masked_word(w: &[u8], wide: u64) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(w);
    (u64::from_le_bytes(a) ^ wide).to_le_bytes()
}

/// XOR `data` with the masking key, `data` starting at byte `offset` of the payload:
/// 64-bit words (eight at a time, which the compiler turns into vector XORs), then
/// single bytes; words keep the key lined up.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let (word, wide) = key_words(key, offset);
    let xor = |c: &mut [u8]| {
        let m = masked_word(c, wide);
        c.copy_from_slice(&m);
    };
    let mut blocks = data.chunks_exact_mut(64);
    for block in &mut blocks {
        block.chunks_exact_mut(8).for_each(xor);
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    (&mut words).for_each(xor);
    for (b, k) in words
        .into_remainder()
        .iter_mut()
        .zip(word.to_le_bytes().into_iter().cycle())
    {
        *b ^= k;
    }
}

/// Append `src` masked with `key` (`src` starting at byte `offset` of the payload) to
/// `dst` in one pass: read, XOR, write into `dst`'s spare room. Copying first and
/// masking in place took twice as long (64 KiB pieces in the cache: 20 against
/// 42 GB/s; 64-byte payloads: 3.7 against 1.5 ns).
pub(crate) fn put_masked(dst: &mut BytesMut, src: &[u8], key: [u8; 4], offset: usize) {
    let (word, wide) = key_words(key, offset);
    dst.reserve(src.len());
    let n = src.len();
    let at = dst.len();
    // After `reserve`, all of `src` fits (else: copy, then mask in place).
    let Some(spare) = dst.spare_capacity_mut().get_mut(..n) else {
        dst.extend_from_slice(src);
        if let Some(added) = dst.get_mut(at..) {
            apply_mask(added, key, offset);
        }
        return;
    };
    let put = |d: &mut [MaybeUninit<u8>], s: &[u8]| {
        for (x, y) in d.iter_mut().zip(masked_word(s, wide)) {
            x.write(y);
        }
    };
    let (mut db, mut sb) = (spare.chunks_exact_mut(64), src.chunks_exact(64));
    for (d, s) in (&mut db).zip(&mut sb) {
        d.chunks_exact_mut(8)
            .zip(s.chunks_exact(8))
            .for_each(|(d, s)| put(d, s));
    }
    let (mut dw, mut sw) = (
        db.into_remainder().chunks_exact_mut(8),
        sb.remainder().chunks_exact(8),
    );
    (&mut dw).zip(&mut sw).for_each(|(d, s)| put(d, s));
    for ((x, y), k) in dw
        .into_remainder()
        .iter_mut()
        .zip(sw.remainder())
        .zip(word.to_le_bytes().into_iter().cycle())
    {
        x.write(y ^ k);
    }
    // SAFETY: `spare` and `src` are both `n` long, and the 64-byte blocks, then the
    // 8-byte words of the rest, then its last bytes wrote every byte of `spare`: the
    // first `n` bytes of the spare room are initialized.
    unsafe { dst.set_len(at + n) };
}

/// Where a frame with header `h` ends, counted from its start (`check` bounds the
/// length by the message limit, a usize).
fn frame_end(h: &Header) -> usize {
    h.size
        .saturating_add(usize::try_from(h.len).unwrap_or(usize::MAX))
}

/// Takes whole messages off the front of a read buffer.
#[derive(Debug)]
pub(crate) struct Deframer {
    side: Side,
    /// Largest message accepted.
    max: usize,
    /// The payload so far of a fragmented binary message.
    partial: Option<BytesMut>,
    /// Bytes of the payload of the frame at the front of the buffer that are unmasked
    /// already (see [`Deframer::unmask_arrived`]).
    unmasked: usize,
    /// Frames above this size are unmasked as they arrive ([`RESERVE_ABOVE`]).
    unmask_above: usize,
}

impl Deframer {
    pub(crate) fn new(side: Side, max: usize) -> Self {
        Deframer {
            side,
            max,
            partial: None,
            unmasked: 0,
            unmask_above: RESERVE_ABOVE,
        }
    }

    /// Unmask frames above `n` bytes as they arrive (the fuzz target's inputs are
    /// smaller than [`RESERVE_ABOVE`]).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn unmask_ahead_above(mut self, n: usize) -> Self {
        self.unmask_above = n;
        self
    }

    /// Change the message size limit (lifted after the Yoton handshake).
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// When `buf` starts with a frame within the limit and large enough for an
    /// allocation of its own (see [`RESERVE_ABOVE`]): the bytes of it still missing.
    pub(crate) fn large_frame_room(&self, buf: &[u8]) -> Option<usize> {
        let h = parse_header(buf).ok()??;
        let len = usize::try_from(h.len).ok()?;
        (len > RESERVE_ABOVE && len <= self.max).then(|| frame_end(&h).saturating_sub(buf.len()))
    }

    /// Whether frames arrive masked (at a server).
    pub(crate) fn unmasks(&self) -> bool {
        self.side == Side::Server
    }

    /// Unmask what has arrived of a large masked frame at the front of `buf` (one
    /// with an allocation of its own, see [`RESERVE_ABOVE`]), while it is in the cache
    /// and the rest is on its way, rather than all of it once it is complete (256 MiB
    /// took tens of milliseconds after the last byte was in). Frames that break a
    /// rule are left to [`Deframer::next`] to report.
    pub(crate) fn unmask_arrived(&mut self, buf: &mut BytesMut) {
        let Ok(Some(h)) = parse_header(buf) else {
            return;
        };
        let Some(key) = h.mask else { return };
        if h.len <= self.unmask_above as u64 || self.check(&h).is_err() {
            return;
        }
        let end = buf.len().min(frame_end(&h));
        if let Some(arrived) = buf.get_mut(h.size + self.unmasked..end) {
            apply_mask(arrived, key, self.unmasked);
            self.unmasked += arrived.len();
        }
    }

    /// Unmask the payload of the frame at the front of the buffer, but for what
    /// [`Deframer::unmask_arrived`] did already.
    fn unmask_front(&mut self, payload: &mut [u8], key: [u8; 4]) {
        let done = std::mem::take(&mut self.unmasked);
        if let Some(rest) = payload.get_mut(done..) {
            apply_mask(rest, key, done);
        }
    }

    /// Bytes of a fragmented message held so far.
    pub(crate) fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, BytesMut::len)
    }

    /// The next event from the front of `buf`, or `None` when `buf` holds no complete
    /// frame yet (the reader then makes room, all of it at once for a large one: see
    /// [`Deframer::large_frame_room`]). Frames of a fragmented message are taken and
    /// held until its last one.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
        loop {
            let Some(h) = parse_header(buf)? else {
                return Ok(None);
            };
            self.check(&h)?;
            let total = frame_end(&h);
            if buf.len() < total {
                return Ok(None);
            }
            let mut frame = buf.split_to(total);
            frame.advance(h.size);
            if let Some(key) = h.mask {
                self.unmask_front(&mut frame, key);
            }
            if let Some(event) = self.take(h, frame)? {
                return Ok(Some(event));
            }
        }
    }

    /// Take the whole, unfragmented binary frames at the front of `buf`, unmasked, into
    /// `out` until it holds `max` messages: one pass over their headers (checking and
    /// unmasking), then one cut of `buf` that all their payloads are slices of, as a
    /// byte stream's read is decoded (`PackageCodec::decode_with`). Stops at anything
    /// else (a control frame, a fragment, an incomplete frame, a broken rule), which
    /// [`Deframer::next`] then takes, or reports, after the messages before it.
    pub(crate) fn binary_run(&mut self, buf: &mut BytesMut, out: &mut Vec<Bytes>, max: usize) {
        if self.partial.is_some() {
            return;
        }
        let (mut at, mut frames) = (0usize, 0usize);
        while out.len() + frames < max {
            let Some(rest) = buf.get_mut(at..) else { break };
            let Ok(Some(h)) = parse_header(rest) else {
                break;
            };
            if h.opcode != op::BINARY || !h.fin || self.check(&h).is_err() {
                break;
            }
            let Some(frame) = rest.get_mut(h.size..frame_end(&h)) else {
                break;
            };
            if let Some(key) = h.mask {
                // Only the front frame can be unmasked in part already; for the
                // others `unmask_front` masks all of it.
                self.unmask_front(frame, key);
            }
            at += frame_end(&h);
            frames += 1;
        }
        if at == 0 {
            return;
        }
        // Then the payloads, cut from one frozen chunk (the headers were checked above).
        let run = buf.split_to(at).freeze();
        let mut pos = 0;
        while let Some(Ok(Some(h))) = run.get(pos..).map(parse_header) {
            out.push(run.slice(pos + h.size..pos + frame_end(&h)));
            pos += frame_end(&h);
        }
    }

    /// The rules that a header alone can break.
    fn check(&self, h: &Header) -> Result<(), FrameError> {
        match (self.side, h.mask.is_some()) {
            (Side::Server, false) => {
                return Err(FrameError::Protocol("a client sent an unmasked frame"))
            }
            (Side::Client, true) => {
                return Err(FrameError::Protocol("a server sent a masked frame"))
            }
            _ => {}
        }
        match h.opcode {
            op::CLOSE | op::PING | op::PONG => {
                if !h.fin {
                    return Err(FrameError::Protocol("a fragmented control frame"));
                }
                if h.len > MAX_CONTROL as u64 {
                    return Err(FrameError::Protocol(
                        "a control frame longer than 125 bytes",
                    ));
                }
            }
            op::CONTINUATION | op::TEXT | op::BINARY => {
                let so_far = self.partial_len() as u64;
                let size = so_far.saturating_add(h.len);
                if size > self.max as u64 {
                    return Err(FrameError::TooLarge {
                        size,
                        max: self.max,
                    });
                }
                match (h.opcode, self.partial.is_some()) {
                    (op::CONTINUATION, false) => {
                        return Err(FrameError::Protocol(
                            "a continuation frame outside of a fragmented message",
                        ))
                    }
                    (op::TEXT | op::BINARY, true) => {
                        return Err(FrameError::Protocol(
                            "a new message before the last frame of the previous one",
                        ))
                    }
                    _ => {}
                }
            }
            _ => return Err(FrameError::Protocol("an unknown opcode")),
        }
        Ok(())
    }

    /// A complete, unmasked frame: an event, or `None` when it is a fragment that
    /// does not end its message.
    fn take(&mut self, h: Header, payload: BytesMut) -> Result<Option<Event>, FrameError> {
        Ok(Some(match h.opcode {
            op::PING => Event::Ping(payload.freeze()),
            op::PONG => Event::Pong,
            op::CLOSE => Event::Close(close_payload(&payload)?),
            op::TEXT => Event::Text(payload.len()),
            op::BINARY if h.fin => Event::Binary(payload.freeze()),
            op::BINARY => {
                self.partial = Some(payload);
                return Ok(None);
            }
            _ => {
                // A continuation (`check` made sure a message is in progress).
                let mut whole = self.partial.take().unwrap_or_default();
                whole.extend_from_slice(&payload);
                if !h.fin {
                    self.partial = Some(whole);
                    return Ok(None);
                }
                Event::Binary(whole.freeze())
            }
        }))
    }
}

/// The status code and reason of a close frame.
fn close_payload(p: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match p {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close frame of one byte")),
        [a, b, reason @ ..] => {
            let reason = std::str::from_utf8(reason)
                .map_err(|_| FrameError::Protocol("a close reason that is not UTF-8"))?;
            Ok(Some((u16::from_be_bytes([*a, *b]), reason.to_owned())))
        }
    }
}

/// A close frame's payload: the code, then the reason.
pub(crate) fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> BytesMut {
        let mut b = BytesMut::new();
        put_header(&mut b, opcode, fin, payload.len(), mask);
        let at = b.len();
        b.extend_from_slice(payload);
        if let Some(k) = mask {
            apply_mask(&mut b[at..], k, 0);
        }
        b
    }

    const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

    #[test]
    fn header_lengths_of_every_size_class_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            for mask in [None, KEY] {
                let mut b = BytesMut::new();
                put_header(&mut b, op::BINARY, true, len, mask);
                let h = parse_header(&b).unwrap().unwrap();
                assert_eq!(
                    (h.len, h.size, h.mask, h.fin),
                    (len as u64, b.len(), mask, true)
                );
                // Every shorter prefix is incomplete, not an error.
                for cut in 0..b.len() {
                    assert_eq!(parse_header(&b[..cut]), Ok(None), "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn the_example_frames_of_rfc_6455_section_5_7() {
        // A single-frame masked text message "Hello".
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = parse_header(&masked).unwrap().unwrap();
        let mut p = masked[h.size..].to_vec();
        apply_mask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(&p, b"Hello");
        // Our encoding of the same, with the same key, is byte for byte the example.
        assert_eq!(&frame(op::TEXT, true, b"Hello", h.mask)[..], &masked[..]);
    }

    #[test]
    fn masking_at_any_offset_matches_byte_by_byte() {
        let key = [1, 2, 3, 250];
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        for offset in 0..8 {
            for len in [
                0, 1, 7, 8, 9, 63, 64, 65, 100, 200, 4095, 4096, 4097, 10_000,
            ] {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, key, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(i + offset) % 4])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
                // Masked as it is appended, after what the buffer holds already.
                let mut put = BytesMut::from(&b"head"[..]);
                put_masked(&mut put, &data[..len], key, offset);
                assert_eq!(&put[..4], b"head");
                assert_eq!(put[4..], slow[..], "put_masked: offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn many_messages_in_one_buffer_come_out_in_order_as_slices() {
        let mut buf = BytesMut::new();
        for i in 0..50u8 {
            buf.extend_from_slice(&frame(op::BINARY, true, &[i; 70], KEY));
        }
        buf.extend_from_slice(&frame(op::BINARY, true, &[9; 10], KEY)[..5]);
        let mut d = Deframer::new(Side::Server, 1 << 20);
        for i in 0..50u8 {
            assert_eq!(
                d.next(&mut buf),
                Ok(Some(Event::Binary(vec![i; 70].into())))
            );
        }
        assert_eq!(d.next(&mut buf), Ok(None), "the cut-off frame waits");
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn fragments_with_a_ping_between_make_one_message() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(op::BINARY, false, b"abc", None));
        buf.extend_from_slice(&frame(op::PING, true, b"are you there", None));
        buf.extend_from_slice(&frame(op::CONTINUATION, false, b"def", None));
        buf.extend_from_slice(&frame(op::CONTINUATION, true, b"g", None));
        buf.extend_from_slice(&frame(op::PONG, true, b"", None));
        buf.extend_from_slice(&frame(op::CLOSE, true, &close_body(1001, "bye"), None));
        let mut d = Deframer::new(Side::Client, 1 << 20);
        assert_eq!(
            d.next(&mut buf),
            Ok(Some(Event::Ping(Bytes::from_static(b"are you there"))))
        );
        assert_eq!(d.partial_len(), 3);
        assert_eq!(
            d.next(&mut buf),
            Ok(Some(Event::Binary(Bytes::from_static(b"abcdefg"))))
        );
        assert_eq!(d.next(&mut buf), Ok(Some(Event::Pong)));
        assert_eq!(
            d.next(&mut buf),
            Ok(Some(Event::Close(Some((1001, "bye".into())))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn broken_rules_are_errors() {
        let err = |side: Side, max: usize, frames: &[BytesMut]| {
            let mut buf = BytesMut::new();
            for f in frames {
                buf.extend_from_slice(f);
            }
            let mut d = Deframer::new(side, max);
            loop {
                match d.next(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e.to_string()),
                }
            }
        };
        let s = Side::Server;
        let c = Side::Client;
        let bin = |fin, p: &[u8]| frame(op::BINARY, fin, p, KEY);
        let cont = |fin, p: &[u8]| frame(op::CONTINUATION, fin, p, KEY);
        assert!(err(s, 100, &[frame(op::BINARY, true, b"x", None)])
            .unwrap()
            .contains("unmasked"));
        assert!(err(c, 100, &[bin(true, b"x")])
            .unwrap()
            .contains("masked frame"));
        assert!(err(s, 100, &[cont(true, b"x")])
            .unwrap()
            .contains("continuation"));
        assert!(err(s, 100, &[bin(false, b"x"), bin(true, b"y")])
            .unwrap()
            .contains("new message"));
        assert!(err(s, 100, &[frame(op::PING, false, b"", KEY)])
            .unwrap()
            .contains("fragmented control"));
        assert!(err(s, 200, &[frame(op::PING, true, &[0; 126], KEY)])
            .unwrap()
            .contains("125"));
        assert!(err(s, 100, &[frame(0x3, true, b"", KEY)])
            .unwrap()
            .contains("unknown opcode"));
        let mut rsv = bin(true, b"x");
        rsv[0] |= 0x40;
        assert!(err(s, 100, &[rsv]).unwrap().contains("reserved bits"));
        assert!(err(s, 100, &[frame(op::CLOSE, true, &[3], KEY)])
            .unwrap()
            .contains("one byte"));
        assert!(err(s, 100, &[frame(op::CLOSE, true, &[3, 232, 0xff], KEY)])
            .unwrap()
            .contains("UTF-8"));
        // The limit counts every fragment of a message, and is checked on the header.
        assert_eq!(err(s, 100, &[bin(true, &[0; 100])]), None);
        let big = err(s, 100, &[bin(false, &[0; 60]), cont(true, &[0; 41])]).unwrap();
        assert!(
            big.starts_with("Package too large") && big.contains("101 bytes"),
            "{big}"
        );
        let mut huge = BytesMut::new();
        put_header(&mut huge, op::BINARY, true, 1 << 30, KEY);
        assert!(err(s, 100, &[huge])
            .unwrap()
            .starts_with("Package too large"));
        let mut top = BytesMut::from(&[0x82u8, 0xff][..]);
        top.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(err(s, 100, &[top]).unwrap().contains("top bit"));
    }

    /// A small deterministic generator (xorshift64*), so that failures repeat.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    /// A run stops before a frame that breaks a rule: the messages before it come
    /// out, and the frame's error comes from `next`; a run takes no more than asked.
    #[test]
    fn a_binary_run_stops_at_a_broken_rule_and_at_its_limit() {
        let key = Some([9, 8, 7, 6]);
        let mut wire = BytesMut::new();
        for body in [&b"one"[..], b"two", b"three"] {
            wire.extend_from_slice(&frame(op::BINARY, true, body, key));
        }
        let mut d = Deframer::new(Side::Server, 1 << 20);
        let mut out = Vec::new();
        d.binary_run(&mut wire, &mut out, 2);
        assert_eq!(out, [&b"one"[..], b"two"]);
        wire.extend_from_slice(&frame(op::BINARY, true, b"bare", None));
        d.binary_run(&mut wire, &mut out, 10);
        assert_eq!(out, [&b"one"[..], b"two", b"three"]);
        let e = d.next(&mut wire).unwrap_err();
        assert!(e.to_string().contains("unmasked"), "{e}");

        let mut wire = frame(op::BINARY, true, b"small", key);
        wire.extend_from_slice(&frame(op::BINARY, true, &[0; 200], key));
        let mut d = Deframer::new(Side::Server, 100);
        let mut out = Vec::new();
        d.binary_run(&mut wire, &mut out, 10);
        assert_eq!(out, [&b"small"[..]]);
        assert!(matches!(
            d.next(&mut wire),
            Err(FrameError::TooLarge { size: 200, .. })
        ));
    }

    /// Random messages, some fragmented with pings between the fragments, masked
    /// with random keys, fed to the deframer in random pieces (large frames unmasked
    /// as far as they came, now and then): the messages come out whole and in order,
    /// the pings in place.
    #[test]
    fn random_streams_in_random_pieces_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let mut wire = BytesMut::new();
            let mut expected = Vec::new();
            for m in 0..rng.below(20) + 1 {
                let len = [0, 1, 7, 125, 126, 300, 70_000][rng.below(7)];
                let body: Vec<u8> = (0..len).map(|i| (i * 31 + m + round) as u8).collect();
                let key = (rng.next() as u32).to_le_bytes();
                let pieces = rng.below(4) + 1;
                let mut at = 0;
                for p in 0..pieces {
                    let end = if p + 1 == pieces {
                        len
                    } else {
                        at + rng.below(len as u64 + 1) / pieces
                    };
                    let end = end.clamp(at, len);
                    let opcode = if p == 0 { op::BINARY } else { op::CONTINUATION };
                    wire.extend_from_slice(&frame(
                        opcode,
                        p + 1 == pieces,
                        &body[at..end],
                        Some(key),
                    ));
                    at = end;
                    if p + 1 < pieces && rng.below(2) == 0 {
                        wire.extend_from_slice(&frame(op::PING, true, b"p", Some(key)));
                        expected.push(Event::Ping(Bytes::from_static(b"p")));
                    }
                }
                expected.push(Event::Binary(body.into()));
            }
            let mut d = Deframer::new(Side::Server, 1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = (rng.below(3000) + 1).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                // Half of the time, a large frame is unmasked as far as it came.
                if rng.below(2) == 0 {
                    d.unmask_arrived(&mut buf);
                }
                loop {
                    // Half of the time, runs of whole binary frames first.
                    if rng.below(2) == 0 {
                        let mut run = Vec::new();
                        d.binary_run(&mut buf, &mut run, rng.below(5) + 1);
                        got.extend(run.into_iter().map(Event::Binary));
                    }
                    match d.next(&mut buf).unwrap() {
                        Some(e) => got.push(e),
                        None => break,
                    }
                }
            }
            assert_eq!(got, expected, "round {round}");
            assert!(buf.is_empty());
        }
    }

    /// Garbage and damaged frames never panic: every call gives an event, waits
    /// for more, or says what is wrong.
    #[test]
    fn damaged_input_never_panics() {
        let mut rng = Rng(42);
        let (mut events, mut errors) = (0, 0);
        for _ in 0..2000 {
            let mut wire = BytesMut::new();
            for _ in 0..rng.below(5) + 1 {
                let len = rng.below(300);
                let opcode = [0u8, 1, 2, 8, 9, 10, 3][rng.below(7)];
                let body = vec![rng.next() as u8; len];
                let mask = (rng.below(4) != 0).then(|| (rng.next() as u32).to_le_bytes());
                wire.extend_from_slice(&frame(opcode, rng.below(3) != 0, &body, mask));
            }
            for _ in 0..rng.below(4) {
                let at = rng.below(wire.len() as u64);
                wire[at] = rng.next() as u8;
            }
            let side = if rng.below(2) == 0 {
                Side::Server
            } else {
                Side::Client
            };
            let mut d = Deframer::new(side, rng.below(400) + 1);
            let mut buf = BytesMut::new();
            'pieces: for piece in wire.chunks(rng.below(64) + 1) {
                buf.extend_from_slice(piece);
                loop {
                    match d.next(&mut buf) {
                        Ok(Some(_)) => events += 1,
                        Ok(None) => break,
                        Err(_) => {
                            errors += 1;
                            break 'pieces;
                        }
                    }
                }
            }
        }
        // Both outcomes happened (the generator is not degenerate).
        assert!(
            events > 100 && errors > 100,
            "{events} events, {errors} errors"
        );
    }

    #[test]
    fn room_of_its_own_is_asked_for_a_large_frame_only() {
        let mut d = Deframer::new(Side::Client, 1 << 30);
        let mut small = BytesMut::with_capacity(16);
        put_header(&mut small, op::BINARY, true, 1000, None);
        assert_eq!(d.next(&mut small), Ok(None));
        assert_eq!(
            d.large_frame_room(&small),
            None,
            "a small frame waits for the reader's buffer"
        );
        let mut large = BytesMut::with_capacity(16);
        put_header(&mut large, op::BINARY, true, 10 << 20, None);
        assert_eq!(d.next(&mut large), Ok(None));
        // The header (10 bytes) is there, all of the payload missing.
        assert_eq!(d.large_frame_room(&large), Some(10 << 20));
        large.extend_from_slice(&[0; 100]);
        assert_eq!(d.large_frame_room(&large), Some((10 << 20) - 100));
        // Above the limit: no room (the frame is refused).
        let mut d = Deframer::new(Side::Client, 1 << 20);
        assert_eq!(d.large_frame_room(&large), None);
        assert!(d.next(&mut large).is_err());
    }
}
