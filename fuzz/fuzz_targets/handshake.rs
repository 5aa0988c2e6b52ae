//! The handshake: `Hello::parse`, the line reader, and both sides of the handshake
//! (with and without a shared secret) against arbitrary peer bytes, read in arbitrary
//! pieces.
//!
//! Input: byte 0 picks the mode (and seeds the piece sizes), the rest is what the peer
//! sends. Checked: nothing panics; a parsed hello formats back to a line that parses to
//! the same hello; the line reader never returns a line longer than `MAX_LINE` and
//! never holds more than one read beyond it; the handshake ends (the reader is finite,
//! so every await completes).
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use yoton_core::handshake::{self, Hello, Secret, StreamLines, MAX_LINE};

/// Hands out `data` in pieces whose sizes come from a seed; always ready.
struct Pieces<'a> {
    data: &'a [u8],
    state: u32,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.state;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.state = s;
        let want = (s as usize % 300) + 1;
        let n = want.min(buf.remaining()).min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Poll a future whose I/O is always ready; it must finish without ever waiting.
fn run<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the handshake did not finish although its input was always ready");
}

const ME: Hello = Hello {
    id: 0x1111_2222_3333_4444,
    pid: 7,
};

fuzz_target!(|data: &[u8]| {
    let [mode, peer @ ..] = data else { return };
    // Pure parsing.
    if let Ok(text) = std::str::from_utf8(peer) {
        if let Ok(h) = Hello::parse(text) {
            assert_eq!(Hello::parse(&h.line()).expect("own line parses"), h);
            assert_eq!(
                Hello::parse(h.line().trim_end()).expect("own line parses"),
                h
            );
        }
    }
    let state = u32::from(*mode) | 0x100;

    // The line reader alone: lines until an error.
    {
        let mut reader = Pieces { data: peer, state };
        let mut buf = BytesMut::new();
        run(async {
            loop {
                match handshake::read_line(&mut reader, &mut buf).await {
                    Ok(line) => {
                        assert!(line.len() <= MAX_LINE + 300, "line of {} bytes", line.len());
                        assert!(!line.contains("\r\n"));
                    }
                    Err(_) => break,
                }
                // A complete line was cut off at MAX_LINE + one read at most.
                assert!(buf.len() <= MAX_LINE + 300 + 2, "buffered {}", buf.len());
            }
        });
    }

    // Both roles, with and without a secret.
    let secret = Secret::new(b"fuzzing secret");
    let auth = match mode % 4 {
        0 | 1 => None,
        _ => Some(&secret),
    };
    let mut reader = Pieces { data: peer, state };
    let mut writer = tokio::io::sink();
    let mut buf = BytesMut::new();
    let mut io = StreamLines {
        reader: &mut reader,
        writer: &mut writer,
        buf: &mut buf,
    };
    let result = if mode % 2 == 0 {
        run(handshake::host(&mut io, ME, auth))
    } else {
        run(handshake::client(&mut io, ME, auth))
    };
    if let Ok(peer_hello) = result {
        assert_ne!(peer_hello.id, ME.id, "a self-connection was accepted");
        // With a secret, nobody who does not know it gets through (the chance to
        // guess a 32-byte HMAC is nil).
        assert!(auth.is_none(), "authenticated without knowing the secret");
    }
    let _ = buf.len();
});
