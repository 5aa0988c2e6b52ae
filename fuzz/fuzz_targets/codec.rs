//! The 56-byte header codec over an arbitrary byte stream, fed in arbitrary pieces.
//!
//! Input: byte 0 picks the maximum message size, byte 1 seeds the split points, the
//! rest is the stream. Checked:
//! - decoding never panics;
//! - the read buffer stays bounded by the bytes actually received (plus one bounded
//!   chunk), whatever lengths the headers announce;
//! - decoding in pieces gives exactly the frames (and the error) of decoding in one go;
//! - `decode_all` (what the stream reader uses) gives the same frames and error as
//!   `decode`, in one go and in pieces;
//! - every package re-encodes to exactly the bytes it was decoded from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use yoton_core::package::HEADER_SIZE;
use yoton_core::{CodecError, Frame, PackageCodec};

const MAX_SIZES: [u64; 6] = [0, 1, 64, 4096, 1 << 30, u64::MAX];
/// Largest look-ahead reservation of the decoder (1 MiB) plus slack for BytesMut's
/// own rounding.
const CHUNK: usize = (1 << 20) + 4096;

#[derive(Debug, PartialEq)]
enum Outcome {
    Frames(Vec<Frame>),
    Failed(Vec<Frame>, String),
}

fn err_kind(e: &CodecError) -> String {
    match e {
        CodecError::LostTrack { found } => format!("lost {found:#x}"),
        CodecError::TooLarge { length, max } => format!("large {length} {max}"),
        CodecError::Io(e) => format!("io {e}"),
    }
}

/// Decode `wire` fed in the given pieces; checks the memory bound and the re-encoding.
fn run(max: u64, wire: &[u8], mut next_piece: impl FnMut() -> usize) -> Outcome {
    let mut codec = PackageCodec::new(max);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut frame_start = 0usize;
    let mut frames = Vec::new();
    while fed < wire.len() {
        let n = next_piece().clamp(1, wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let consumed = fed - buf.len();
                    let bytes = &wire[frame_start..consumed];
                    check_frame(&frame, bytes);
                    frame_start = consumed;
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => return Outcome::Failed(frames, err_kind(&e)),
            }
            // Bounded memory: never more than a few times what arrived, plus one chunk.
            assert!(
                buf.capacity() <= 4 * fed + 4 * CHUNK,
                "capacity {} after {} bytes",
                buf.capacity(),
                fed
            );
        }
        assert!(
            buf.capacity() <= 4 * fed + 4 * CHUNK,
            "capacity {} after {} bytes (announced {})",
            buf.capacity(),
            fed,
            codec.partial_payload_len()
        );
    }
    Outcome::Frames(frames)
}

/// Decode `wire` in the given pieces with `decode_all`.
fn run_all(max: u64, wire: &[u8], mut next_piece: impl FnMut() -> usize) -> Outcome {
    let mut codec = PackageCodec::new(max);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut frames = Vec::new();
    while fed < wire.len() {
        let n = next_piece().clamp(1, wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        if let Err(e) = codec.decode_all(&mut buf, &mut frames) {
            return Outcome::Failed(frames, err_kind(&e));
        }
        assert!(
            buf.capacity() <= 4 * fed + 4 * CHUNK,
            "decode_all: capacity {} after {} bytes",
            buf.capacity(),
            fed
        );
    }
    Outcome::Frames(frames)
}

fn check_frame(frame: &Frame, bytes: &[u8]) {
    assert!(
        bytes.len() >= HEADER_SIZE,
        "a frame of {} bytes",
        bytes.len()
    );
    match frame {
        Frame::Package(p) => {
            assert!(!p.payload.is_empty());
            let mut out = BytesMut::new();
            PackageCodec::new(u64::MAX)
                .encode(frame, &mut out)
                .expect("re-encoding a decoded package");
            assert_eq!(&out[..], bytes, "a package does not re-encode to its bytes");
        }
        Frame::Heartbeat | Frame::Goodbye => {
            assert_eq!(bytes.len(), HEADER_SIZE, "a signal with a payload");
        }
    }
}

/// xorshift32: the next pseudo-random number (the piece sizes of a seeded run).
fn xorshift(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

fuzz_target!(|data: &[u8]| {
    let [sel, seed, wire @ ..] = data else { return };
    let max = MAX_SIZES[usize::from(*sel) % MAX_SIZES.len()];
    let whole = run(max, wire, || usize::MAX);
    let mut state = u32::from(*seed) | 0x100;
    let pieces = run(max, wire, || {
        // Pieces of 1..=64 bytes, sometimes 1..=4096.
        let r = xorshift(&mut state);
        if r & 0x80 == 0 {
            (r as usize >> 8) % 64 + 1
        } else {
            (r as usize >> 8) % 4096 + 1
        }
    });
    assert_eq!(
        whole, pieces,
        "decoding in pieces differs from decoding in one go"
    );
    let bytewise = run(max, wire, || 1);
    assert_eq!(whole, bytewise, "decoding byte by byte differs");
    assert_eq!(
        whole,
        run_all(max, wire, || usize::MAX),
        "decode_all differs"
    );
    let mut state = u32::from(*seed) | 0x200;
    let all_pieces = run_all(max, wire, || {
        (xorshift(&mut state) as usize >> 8) % 4096 + 1
    });
    assert_eq!(whole, all_pieces, "decode_all in pieces differs");
});
