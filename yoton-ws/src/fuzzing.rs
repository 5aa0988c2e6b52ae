//! An entry point for the fuzz target `ws_deframe` (`fuzz/`), compiled only with the
//! `fuzzing` feature. Not an API: it may change with any release.

use bytes::BytesMut;

use crate::frame::{Deframer, Side};

/// How one piece of a stream is fed to the deframer.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Bytes of the stream in this piece (at least 1).
    pub len: usize,
    /// Unmask what has arrived of a large frame before taking anything (as the link
    /// does after each read).
    pub unmask_arrived: bool,
    /// Take runs of whole binary frames (at most this many at a time) before each
    /// call of `next`; 0: `next` only.
    pub run: usize,
}

/// Deframe `wire`, received in the pieces `plan` gives, by the server side (it expects
/// masked frames) or the client side, with messages of at most `max` bytes; frames
/// above `unmask_above` bytes (the link: 32 KiB) are unmasked as they arrive. Returns
/// every event in order (as `Debug` text, binary payloads included) and the error that
/// ended the stream, if any. The fuzz target checks that the result does not depend
/// on the pieces or on how the events were taken.
pub fn deframe(
    server: bool,
    max: usize,
    unmask_above: usize,
    wire: &[u8],
    mut plan: impl FnMut() -> Step,
) -> (Vec<String>, Option<String>) {
    let side = if server { Side::Server } else { Side::Client };
    let mut d = Deframer::new(side, max).unmask_ahead_above(unmask_above);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let step = plan();
        let (piece, after) = rest.split_at(step.len.clamp(1, rest.len()));
        rest = after;
        buf.extend_from_slice(piece);
        if step.unmask_arrived {
            d.unmask_arrived(&mut buf);
        }
        loop {
            if step.run > 0 {
                let mut run = Vec::new();
                d.binary_run(&mut buf, &mut run, step.run);
                events.extend(run.into_iter().map(|m| format!("Binary({m:?})")));
            }
            match d.next(&mut buf) {
                Ok(Some(e)) => events.push(format!("{e:?}")),
                Ok(None) => break,
                Err(e) => return (events, Some(e.to_string())),
            }
        }
    }
    (events, None)
}
