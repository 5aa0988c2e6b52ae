//! The WebSocket deframer (RFC 6455 frames off the front of a read buffer) over an
//! arbitrary byte stream, fed in arbitrary pieces.
//!
//! Input: byte 0 picks the side (bit 0: server, which expects masked frames), the
//! message size limit (bits 1-3) and the size above which frames are unmasked as
//! they arrive (bits 4-5; the link's 32 KiB is beyond the fuzzer's inputs), byte 1
//! seeds the pieces, the rest is the stream. Checked:
//! - deframing never panics;
//! - the events (binary messages, pings, pongs, closes, text) and the error that ends
//!   the stream are the same whether the stream comes in one piece, byte by byte, or
//!   in random pieces; whether runs of whole binary frames are taken at once
//!   (`binary_run`, as the link does) or frame by frame; and whether large frames are
//!   unmasked as they arrive (`unmask_arrived`) or once complete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yoton_ws::fuzzing::{deframe, Step};

const MAX_SIZES: [usize; 8] = [0, 1, 125, 126, 4096, 40_000, 1 << 20, usize::MAX];
const UNMASK_ABOVE: [usize; 4] = [0, 3, 64, 32 * 1024];

/// xorshift32: the next pseudo-random number (the pieces of a seeded run).
fn xorshift(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

fuzz_target!(|data: &[u8]| {
    let [sel, seed, wire @ ..] = data else { return };
    let server = sel & 1 == 1;
    let max = MAX_SIZES[usize::from(sel >> 1) % MAX_SIZES.len()];
    let above = UNMASK_ABOVE[usize::from(sel >> 4) % UNMASK_ABOVE.len()];
    let plain = Step {
        len: usize::MAX,
        unmask_arrived: false,
        run: 0,
    };
    // The reference: one piece, frame by frame, each frame unmasked once complete.
    let whole = deframe(server, max, usize::MAX, wire, || plain);
    let bytewise = deframe(server, max, above, wire, || Step { len: 1, ..plain });
    assert_eq!(whole, bytewise, "byte by byte differs from one piece");
    let mut state = u32::from(*seed) | 0x100;
    let pieces = deframe(server, max, above, wire, || {
        let r = xorshift(&mut state);
        Step {
            // 1..=64 bytes, sometimes 1..=70,000 (beyond the 32 KiB of a large frame).
            len: if r & 0x80 == 0 {
                (r as usize >> 8) % 64 + 1
            } else {
                (r as usize >> 8) % 70_000 + 1
            },
            unmask_arrived: r & 1 == 1,
            run: (r as usize >> 1) % 4 * 3,
        }
    });
    assert_eq!(
        whole, pieces,
        "random pieces, runs and unmasking differ from one piece"
    );
    let runs = deframe(server, max, above, wire, || Step {
        len: usize::MAX,
        unmask_arrived: true,
        run: 1024,
    });
    assert_eq!(
        whole, runs,
        "runs of binary frames differ from frame by frame"
    );
});
