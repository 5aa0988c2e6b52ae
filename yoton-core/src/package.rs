//! The package: a 56-byte header (seven little-endian u64) and a payload.

use bytes::Bytes;

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 56;

/// The control field: the bytes `YOTON` and three spaces, read as a little-endian u64.
pub const CONTROL: u64 = u64::from_le_bytes(*b"YOTON   ");

/// Connection-level slot (heartbeat and goodbye signals).
pub const SLOT_SIGNAL: u64 = 1;

/// Context-to-context slot (`NEW_CONNECTION`, `CLOSE_CONNECTION`).
pub const SLOT_CONTEXT: u64 = 2;

/// A unit of routing: header fields plus payload.
///
/// The payload is [`Bytes`]: cloning a package (to send it over several connections)
/// is a reference-count increment, not a copy.
///
/// ```
/// use yoton_core::Package;
/// let p = Package::new(yoton_core::slot_hash("chat.txt.pub-sub"), "hello");
/// assert_eq!(p.payload.as_ref(), b"hello");
/// assert_eq!(p.dest_id, 0); // broadcast
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Destination slot hash.
    pub slot: u64,
    /// Id of the context that created the package.
    pub source_id: u64,
    /// Per-source sequence number, starting at 1.
    pub source_seq: u64,
    /// 0 for a broadcast, else the id of the one context that must deposit it.
    pub dest_id: u64,
    /// For replies: which request this answers.
    pub dest_seq: u64,
    /// The message bytes.
    pub payload: Bytes,
}

impl Package {
    /// A broadcast package for `slot`; the context fills in `source_id` and `source_seq`
    /// when it is sent.
    pub fn new(slot: u64, payload: impl Into<Bytes>) -> Self {
        Package {
            slot,
            source_id: 0,
            source_seq: 0,
            dest_id: 0,
            dest_seq: 0,
            payload: payload.into(),
        }
    }

    /// Builder-style: direct the package at one context (`dest_id`) with a `dest_seq`.
    pub fn to(mut self, dest_id: u64, dest_seq: u64) -> Self {
        self.dest_id = dest_id;
        self.dest_seq = dest_seq;
        self
    }

    /// Append the package in its wire encoding (header, then payload) to `dst`.
    ///
    /// ```
    /// let mut buf = bytes::BytesMut::new();
    /// yoton_core::Package::new(1, "abc").encode_into(&mut buf);
    /// assert_eq!(buf.len(), yoton_core::package::HEADER_SIZE + 3);
    /// assert_eq!(&buf[..8], b"YOTON   ");
    /// ```
    pub fn encode_into(&self, dst: &mut bytes::BytesMut) {
        dst.extend_from_slice(&self.header());
        dst.extend_from_slice(&self.payload);
    }

    /// The header of this package as it goes on the wire.
    #[inline]
    pub fn header(&self) -> [u8; HEADER_SIZE] {
        Header {
            slot: self.slot,
            source_id: self.source_id,
            source_seq: self.source_seq,
            dest_id: self.dest_id,
            dest_seq: self.dest_seq,
            length: self.payload.len() as u64,
        }
        .to_bytes()
    }
}

/// The header fields (without the control word, which is constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Destination slot hash.
    pub slot: u64,
    /// Id of the context that created the package.
    pub source_id: u64,
    /// Per-source sequence number.
    pub source_seq: u64,
    /// Destination context (0: broadcast).
    pub dest_id: u64,
    /// Request this package answers.
    pub dest_seq: u64,
    /// Payload length in bytes.
    pub length: u64,
}

impl Header {
    /// Whether this is the goodbye signal: an empty package with source_seq 1 (on any
    /// slot, as the reference reads it). Every transport asks this one predicate.
    #[inline]
    pub fn is_goodbye(&self) -> bool {
        self.length == 0 && self.source_seq == 1
    }

    /// Encode, control word first.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let fields = [
            CONTROL,
            self.slot,
            self.source_id,
            self.source_seq,
            self.dest_id,
            self.dest_seq,
            self.length,
        ];
        for (chunk, value) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// Decode 56 bytes. Returns the control word found when it is not [`CONTROL`].
    #[inline]
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> Result<Header, u64> {
        let mut fields = [0u64; 7];
        for (field, chunk) in fields.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *field = u64::from_le_bytes(word);
        }
        let [control, slot, source_id, source_seq, dest_id, dest_seq, length] = fields;
        if control != CONTROL {
            return Err(control);
        }
        Ok(Header {
            slot,
            source_id,
            source_seq,
            dest_id,
            dest_seq,
            length,
        })
    }
}

/// What travels over a link: a package, or one of the two connection-level signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A package with a non-empty payload.
    Package(Package),
    /// "I am alive" (slot 1, source_seq 0, no payload).
    Heartbeat,
    /// "Closing, goodbye" (slot 1, source_seq 1, no payload).
    Goodbye,
}

impl Frame {
    /// The wire header of this frame.
    pub fn header(&self) -> [u8; HEADER_SIZE] {
        match self {
            Frame::Package(p) => p.header(),
            Frame::Heartbeat => signal_header(0),
            Frame::Goodbye => signal_header(1),
        }
    }

    /// The payload (empty for signals).
    pub fn payload(&self) -> &[u8] {
        match self {
            Frame::Package(p) => &p.payload,
            _ => &[],
        }
    }
}

fn signal_header(seq: u64) -> [u8; HEADER_SIZE] {
    Header {
        slot: SLOT_SIGNAL,
        source_id: 0,
        source_seq: seq,
        dest_id: 0,
        dest_seq: 0,
        length: 0,
    }
    .to_bytes()
}

/// Interpret a header plus payload as a frame. Empty payloads are signals: source_seq 1
/// is goodbye, anything else (0 is the heartbeat) counts as a heartbeat, as in the
/// reference, which discards other empty packages.
#[inline]
pub fn frame_from_parts(h: Header, payload: Bytes) -> Frame {
    if h.is_goodbye() {
        Frame::Goodbye
    } else if h.length == 0 {
        Frame::Heartbeat
    } else {
        Frame::Package(Package {
            slot: h.slot,
            source_id: h.source_id,
            source_seq: h.source_seq,
            dest_id: h.dest_id,
            dest_seq: h.dest_seq,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_yoton_and_three_spaces() {
        assert_eq!(&CONTROL.to_le_bytes(), b"YOTON   ");
    }

    #[test]
    fn header_round_trip() {
        let p = Package::new(99, "abc").to(5, 6);
        let h = Header::from_bytes(&p.header());
        assert_eq!(
            h,
            Ok(Header {
                slot: 99,
                source_id: 0,
                source_seq: 0,
                dest_id: 5,
                dest_seq: 6,
                length: 3
            })
        );
    }

    #[test]
    fn wrong_control_is_reported() {
        let mut raw = Package::new(1, "x").header();
        raw[0] = b'X';
        assert!(Header::from_bytes(&raw).is_err());
    }
}
