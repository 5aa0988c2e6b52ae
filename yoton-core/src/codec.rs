//! Framing: the 56-byte header codec as a `tokio_util::codec` decoder and encoder.
//!
//! The decoder hands out payloads as [`bytes::Bytes`] slices of the read buffer (no copy) and
//! never trusts a length field to reserve more than a bounded chunk ahead of the bytes
//! actually received, so a peer that announces 1 GiB and sends 10 bytes costs 10 bytes
//! plus one chunk. The encoder copies header and payload into a buffer; the connection
//! writer uses it for small packages and writes large payloads by reference (vectored).

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::package::{frame_from_parts, Frame, Header, CONTROL, HEADER_SIZE};

/// Default maximum payload size: 1 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// How far ahead of the received bytes the decoder may reserve at least (it also
/// grows geometrically with what has actually arrived).
const RESERVE_CHUNK: usize = 1 << 20;

/// Room to make for `missing` more bytes of a payload of which `buffered` have
/// arrived, never trusting the length field for more than a bounded chunk: what is
/// missing, but at most 1 MiB or as much as has arrived, whichever is more (so room
/// grows geometrically with what actually arrives).
///
/// ```
/// use yoton_core::codec::bounded_room;
///
/// assert_eq!(bounded_room(100, 0), 100);
/// assert_eq!(bounded_room(1 << 30, 10), 1 << 20); // a lying length costs 1 MiB
/// assert_eq!(bounded_room(1 << 30, 8 << 20), 8 << 20);
/// ```
pub fn bounded_room(missing: usize, buffered: usize) -> usize {
    missing.min(RESERVE_CHUNK.max(buffered))
}

/// [`PackageCodec::decode_all`] leaves making room for an incomplete frame with a
/// payload up to this size to its caller (whose read buffer is larger).
pub const CALLER_ROOM: usize = 32 * 1024;

/// Why a byte stream could not be decoded. Each closes the connection it happened on.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The control word was not `YOTON   `.
    #[error("Lost track of the stream: bad control bytes {found:#018x} (expected \"YOTON   \"); the peer is not speaking Yoton packages")]
    LostTrack {
        /// The control word that was found instead.
        found: u64,
    },
    /// The header announced a payload above the configured maximum.
    #[error("Package too large: the header announces {length} bytes, above the maximum message size of {max} bytes (raise it with max_message_size on both ends)")]
    TooLarge {
        /// Announced length.
        length: u64,
        /// Configured maximum.
        max: u64,
    },
    /// An I/O error of the underlying stream.
    #[error("Socket error. {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder and encoder of [`Frame`]s.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
/// use yoton_core::{Frame, Package, PackageCodec};
///
/// let mut codec = PackageCodec::new(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(&Frame::Package(Package::new(42, "hi")), &mut buf).unwrap();
/// codec.encode(&Frame::Heartbeat, &mut buf).unwrap();
/// match codec.decode(&mut buf).unwrap() {
///     Some(Frame::Package(p)) => assert_eq!(&p.payload[..], b"hi"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Heartbeat));
/// ```
#[derive(Debug)]
pub struct PackageCodec {
    max_len: u64,
    pending: Option<Header>,
}

impl PackageCodec {
    /// A codec that refuses payloads above `max_message_size` bytes.
    pub fn new(max_message_size: u64) -> Self {
        PackageCodec {
            max_len: max_message_size,
            pending: None,
        }
    }

    /// The configured maximum payload size.
    pub fn max_message_size(&self) -> u64 {
        self.max_len
    }

    /// Bytes of a partially received payload (0 between packages).
    pub fn partial_payload_len(&self) -> u64 {
        self.pending.map(|h| h.length).unwrap_or(0)
    }

    /// Room to make ahead of the `buffered` bytes of a partially received payload
    /// larger than [`CALLER_ROOM`] (`None` for a smaller one, or between packages):
    /// what is missing of it, but never more than a bounded chunk (1 MiB, or as much
    /// as has arrived, whichever is more) ahead of the bytes actually received.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use yoton_core::{Package, PackageCodec};
    ///
    /// let mut wire = BytesMut::new();
    /// Package::new(1, vec![0u8; 5 << 20]).encode_into(&mut wire);
    /// let mut codec = PackageCodec::default();
    /// let mut buf = wire.split_to(100); // the header and 44 payload bytes
    /// codec.decode_with(&mut buf, |_| unreachable!()).unwrap();
    /// assert_eq!(codec.room_ahead(buf.len()), Some(1 << 20));
    /// ```
    pub fn room_ahead(&self, buffered: usize) -> Option<usize> {
        let len = usize::try_from(self.pending?.length).unwrap_or(usize::MAX);
        (len > CALLER_ROOM).then(|| bounded_room(len.saturating_sub(buffered), buffered))
    }
}

impl PackageCodec {
    /// Decode every complete frame in `src` into `out`, cutting their payloads from
    /// one frozen chunk (one split of the buffer per call, then a reference-counted
    /// slice per payload, instead of a split per package). What is left is an
    /// incomplete frame, its header consumed as [`Decoder::decode`] does, but no room
    /// is reserved for it here: the caller reads into a buffer of its own choosing
    /// (the stream reader recycles its buffers, and a reserve here would allocate a
    /// fresh one), with [`PackageCodec::room_ahead`] bytes of room for a large one.
    ///
    /// Frames before a bad header are still appended before the error is returned.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tokio_util::codec::Encoder;
    /// use yoton_core::{Frame, Package, PackageCodec};
    ///
    /// let mut codec = PackageCodec::new(1024);
    /// let mut buf = BytesMut::new();
    /// for i in 0..3u8 {
    ///     codec.encode(&Frame::Package(Package::new(1, vec![i; 10])), &mut buf).unwrap();
    /// }
    /// buf.extend_from_slice(b"YOTON"); // the start of a fourth
    /// let mut out = Vec::new();
    /// codec.decode_all(&mut buf, &mut out).unwrap();
    /// assert_eq!(out.len(), 3);
    /// assert_eq!(&buf[..], b"YOTON");
    /// ```
    pub fn decode_all(
        &mut self,
        src: &mut BytesMut,
        out: &mut Vec<Frame>,
    ) -> Result<(), CodecError> {
        self.decode_with(src, |f| out.push(f))
    }

    /// [`PackageCodec::decode_all`], handing each frame to `take` instead of a list.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use yoton_core::{Frame, Package, PackageCodec};
    ///
    /// let mut buf = BytesMut::new();
    /// Package::new(1, "one").encode_into(&mut buf);
    /// Package::new(1, "two").encode_into(&mut buf);
    /// let mut n = 0;
    /// PackageCodec::default().decode_with(&mut buf, |f| {
    ///     assert!(matches!(f, Frame::Package(_)));
    ///     n += 1;
    /// }).unwrap();
    /// assert_eq!(n, 2);
    /// ```
    #[inline]
    pub fn decode_with(
        &mut self,
        src: &mut BytesMut,
        mut take: impl FnMut(Frame),
    ) -> Result<(), CodecError> {
        if self.pending.is_some() {
            match self.decode_one(src, false)? {
                Some(f) => take(f),
                None => return Ok(()),
            }
        }
        // The end of the complete frames with good headers, reading only their control
        // words and lengths; a bad or incomplete one ends the run and is left to
        // `decode_one` below (its error, or its reserve).
        let mut at = 0usize;
        while let Some(raw) = src
            .get(at..at + HEADER_SIZE)
            .and_then(|h| h.try_into().ok())
        {
            let Some(end) = self.frame_end(raw, at, src.len()) else {
                break;
            };
            at = end;
        }
        if at > 0 {
            // Then the frames, their payloads cut from one frozen chunk.
            let chunk = src.split_to(at).freeze();
            let mut pos = 0usize;
            while let Some(raw) = chunk.get(pos..pos + HEADER_SIZE) {
                let mut bytes = [0u8; HEADER_SIZE];
                bytes.copy_from_slice(raw);
                // Checked in the first pass, as are the ends (a header or end that did
                // not check out here would end the loop, not panic).
                let Ok(h) = Header::from_bytes(&bytes) else {
                    break;
                };
                let start = pos + HEADER_SIZE;
                let Some(end) = start.checked_add(h.length as usize).filter(|&e| e <= at) else {
                    break;
                };
                take(frame_from_parts(h, chunk.slice(start..end)));
                pos = end;
            }
        }
        // What is left starts with a bad header (its error, after the frames before
        // it), or an incomplete frame (its header consumed; the caller makes room).
        if let Some(f) = self.decode_one(src, false)? {
            take(f);
        }
        Ok(())
    }
}

impl Default for PackageCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl Decoder for PackageCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.decode_one(src, true)
    }
}

impl PackageCodec {
    /// Where the frame whose header is `raw` (at `at`) ends, when its header is good
    /// and it is complete within `available` bytes.
    #[inline(always)]
    fn frame_end(&self, raw: &[u8; HEADER_SIZE], at: usize, available: usize) -> Option<usize> {
        // The control word comes first and the length last.
        let control = u64::from_le_bytes(*raw.first_chunk::<8>()?);
        let length = u64::from_le_bytes(*raw.last_chunk::<8>()?);
        if control != CONTROL {
            return None;
        }
        Some(length)
            .filter(|&n| n <= self.max_len)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| (at + HEADER_SIZE).checked_add(n))
            .filter(|&end| end <= available)
    }

    /// [`Decoder::decode`], reserving room for an incomplete frame when `reserve` (a
    /// bounded chunk for a large one, see [`PackageCodec::room_ahead`]).
    fn decode_one(
        &mut self,
        src: &mut BytesMut,
        reserve: bool,
    ) -> Result<Option<Frame>, CodecError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(raw) = src.get(..HEADER_SIZE) else {
                    if reserve {
                        src.reserve(HEADER_SIZE);
                    }
                    return Ok(None);
                };
                let mut bytes = [0u8; HEADER_SIZE];
                bytes.copy_from_slice(raw);
                let h =
                    Header::from_bytes(&bytes).map_err(|found| CodecError::LostTrack { found })?;
                if h.length > self.max_len {
                    return Err(CodecError::TooLarge {
                        length: h.length,
                        max: self.max_len,
                    });
                }
                src.advance(HEADER_SIZE);
                self.pending = Some(h);
                h
            }
        };
        // length <= max_len, which the caller chose to fit in memory; usize is 64-bit on
        // every supported target, and the conversion saturates otherwise.
        let len = usize::try_from(header.length).unwrap_or(usize::MAX);
        if src.len() >= len {
            self.pending = None;
            let payload = src.split_to(len).freeze();
            return Ok(Some(frame_from_parts(header, payload)));
        }
        if reserve {
            let ahead = self.room_ahead(src.len());
            src.reserve(ahead.unwrap_or(len - src.len()));
        }
        Ok(None)
    }
}

impl Encoder<&Frame> for PackageCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let payload = frame.payload();
        if payload.len() as u64 > self.max_len {
            return Err(CodecError::TooLarge {
                length: payload.len() as u64,
                max: self.max_len,
            });
        }
        dst.reserve(HEADER_SIZE + payload.len());
        dst.extend_from_slice(&frame.header());
        dst.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Package;

    fn encode_all(frames: &[Frame]) -> BytesMut {
        let mut codec = PackageCodec::default();
        let mut buf = BytesMut::new();
        for f in frames {
            codec.encode(f, &mut buf).unwrap();
        }
        buf
    }

    #[test]
    fn decodes_byte_by_byte() {
        let frames = vec![
            Frame::Package(Package::new(10, "hello").to(3, 4)),
            Frame::Heartbeat,
            Frame::Package(Package::new(11, vec![7u8; 3000])),
            Frame::Goodbye,
        ];
        let wire = encode_all(&frames);
        let mut codec = PackageCodec::default();
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn oversized_length_is_an_error_before_any_payload() {
        let mut codec = PackageCodec::new(100);
        let mut buf = encode_all(&[Frame::Package(Package::new(1, vec![0u8; 101]))]);
        buf.truncate(HEADER_SIZE);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::TooLarge {
                    length: 101,
                    max: 100
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("101"));
    }

    #[test]
    fn huge_announced_length_reserves_a_bounded_chunk() {
        let mut codec = PackageCodec::new(u64::MAX);
        let header = crate::package::Header {
            slot: 9,
            source_id: 1,
            source_seq: 1,
            dest_id: 0,
            dest_seq: 0,
            length: 1 << 40,
        };
        let mut buf = BytesMut::from(&header.to_bytes()[..]);
        buf.extend_from_slice(b"0123456789");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 2 * RESERVE_CHUNK + 64,
            "capacity {}",
            buf.capacity()
        );
    }

    #[test]
    fn decode_all_matches_decode_byte_by_byte_and_keeps_frames_before_an_error() {
        let frames = vec![
            Frame::Package(Package::new(10, "hello").to(3, 4)),
            Frame::Heartbeat,
            Frame::Package(Package::new(11, vec![7u8; 3000])),
            Frame::Goodbye,
            Frame::Package(Package::new(12, vec![8u8; 70])),
        ];
        let wire = encode_all(&frames);
        // Fed in pieces of every size from 1 to 200 bytes.
        for step in 1..200 {
            let mut codec = PackageCodec::default();
            let mut buf = BytesMut::new();
            let mut out = vec![];
            for piece in wire.chunks(step) {
                buf.extend_from_slice(piece);
                codec.decode_all(&mut buf, &mut out).unwrap();
            }
            assert_eq!(out, frames, "pieces of {step}");
            assert!(buf.is_empty());
        }
        let mut buf = encode_all(&frames[..2]);
        buf.extend_from_slice(&[b'X'; 56]);
        let mut out = vec![];
        let err = PackageCodec::default()
            .decode_all(&mut buf, &mut out)
            .unwrap_err();
        assert!(matches!(err, CodecError::LostTrack { .. }), "{err}");
        assert_eq!(out, frames[..2]);
    }

    #[test]
    fn bad_control_word() {
        let mut codec = PackageCodec::default();
        let mut buf = BytesMut::from(
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901234567890"[..],
        );
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            err.to_string().starts_with("Lost track of the stream"),
            "{err}"
        );
    }
}
