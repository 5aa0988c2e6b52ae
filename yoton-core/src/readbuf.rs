//! The read buffer of a byte stream, recycled: payloads are handed out as slices of
//! it, so a buffer stays alive until the receiver has dropped every message read
//! into it. Filled buffers come from a [`BufferPool`], which takes the oldest of its
//! last few buffers again once nothing else refers to it.
//!
//! On a stream of small messages most buffers are taken again; the rest are new
//! while the receiver is more than [`KEEP`] buffers behind.
//!
//! Buffers are [`READ_BUFFER`] bytes, or [`STREAM_BUFFER`] while the stream keeps
//! more waiting in the socket than a small buffer holds: fewer, larger reads then
//! cost the kernel less per byte (fewer wake-ups and acknowledgements), and a
//! connection that only hears heartbeats still uses small buffers.
//!
//! A frame too large for either gets a buffer of its own ([`ReadBuffer::make_room_for_frame`]),
//! from a [`LargePool`]: a stream of large messages reuses the memory of those the
//! receiver has dropped.

use bytes::BytesMut;

use crate::codec::CALLER_ROOM;
use crate::pool::{BufferPool, LargePool};
use crate::prefault::Prefault;

/// Size of a read buffer.
pub const READ_BUFFER: usize = 64 * 1024;

/// Size of a read buffer while the stream streams: a read filled all the room it had,
/// or brought at least [`READ_BUFFER`] bytes. (A subscriber of a stream of 64-byte
/// messages made a third as many `recvfrom` calls and half as many context
/// switches, and took about a fifth more messages per second, than with 64 KiB.)
pub const STREAM_BUFFER: usize = 256 * 1024;

/// Large buffers kept for reuse (see [`KEEP`]): a connection that streamed keeps at
/// most this many plus one, 1.25 MiB.
pub const KEEP_STREAM: usize = 4;

/// A read needs at least this much room; with less, the next buffer is taken. (The
/// codec leaves room for frames up to [`CALLER_ROOM`] to the reader, so a frame that
/// big, carried over, still leaves this much in a buffer.)
pub const MIN_ROOM: usize = 4096;

/// Earlier buffers kept for reuse: the receiver is rarely more than this many
/// buffers behind, and a connection that stops streaming keeps at most this many
/// (plus the current one) allocated, 576 KiB. (With 3, a subscriber of a stream of
/// 64-byte messages that fell behind got new buffers, in fresh pages, more often.)
pub const KEEP: usize = 8;

/// Reads in a row that neither streamed nor belonged to a large frame, after which the
/// buffers kept for reuse beyond the small ones are given up: the large ones and those
/// of [`STREAM_BUFFER`] bytes (a connection that streamed and went on with a trickle,
/// or heartbeats only, keeps none of them after about 16 s).
pub const RELEASE_AFTER: u32 = 64;

// A frame the codec leaves to the reader fits in one buffer with room to spare.
const _: () = assert!(READ_BUFFER >= CALLER_ROOM + crate::package::HEADER_SIZE + MIN_ROOM);

/// A read buffer that reuses its earlier allocations once their slices are gone.
/// Byte-stream links (core's stream reader) and transports with a framing of their
/// own (WebSocket) read into it and cut payloads out of it.
///
/// ```
/// use yoton_core::readbuf::ReadBuffer;
///
/// let mut rb = ReadBuffer::new(bytes::BytesMut::new());
/// rb.make_room(); // before a read
/// rb.buf().extend_from_slice(b"two messages");
/// let first = rb.buf().split_to(3).freeze(); // a slice, no copy
/// assert_eq!((&first[..], rb.len()), (&b"two"[..], 9));
/// ```
#[derive(Debug)]
pub struct ReadBuffer {
    buf: BytesMut,
    pool: BufferPool,
    stream_pool: BufferPool,
    large: LargePool,
    /// The buffer was made for one large frame (by `large`): once it is in, reading
    /// moves on to a pooled buffer.
    in_large: bool,
    /// Reads in a row that neither streamed nor belonged to a large frame (see
    /// [`RELEASE_AFTER`]).
    quiet_reads: u32,
    /// The last read says the stream streams (see [`STREAM_BUFFER`]).
    streaming: bool,
    /// How far the room of a large frame's buffer is populated (while it is fresh
    /// memory, see [`LargePool::make_room`]).
    prefault: Prefault,
}

impl ReadBuffer {
    /// Start with `buf` (which may hold bytes read during the handshake).
    pub fn new(buf: BytesMut) -> Self {
        ReadBuffer {
            buf,
            // The current buffer is the newest of its pool's.
            pool: BufferPool::new(READ_BUFFER, KEEP + 1),
            stream_pool: BufferPool::new(STREAM_BUFFER, KEEP_STREAM + 1),
            large: LargePool::default(),
            in_large: false,
            quiet_reads: 0,
            streaming: false,
            prefault: Prefault::default(),
        }
    }

    /// The buffer: decoded from at the front, read into at the back.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes read but not decoded yet.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte read has been decoded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Make room for a read: when less than [`MIN_ROOM`] is left, carry the undecoded
    /// bytes over to the oldest earlier buffer nothing refers to any more, or else to
    /// a new one.
    ///
    /// The next buffer is a large one while the stream streams (tell it
    /// [`ReadBuffer::read`] of each read).
    pub fn make_room(&mut self) {
        // After a large frame, the rest of its buffer is not read into: a payload
        // there would keep the whole buffer from being reused.
        if self.in_large || self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.in_large = false;
            let pool = if self.streaming {
                &mut self.stream_pool
            } else {
                &mut self.pool
            };
            let mut next = pool.take(self.buf.len() + MIN_ROOM);
            next.extend_from_slice(&self.buf);
            self.buf = next;
        }
    }

    /// Make room for `ahead` more bytes of a frame of `size` bytes in all, too large for
    /// a pooled buffer (the buffer holds nothing but its start; `ahead` is bounded by
    /// the caller, see [`crate::PackageCodec::room_ahead`]): when there is less, its
    /// bytes move to a buffer of their own ([`LargePool::make_room`]). While that buffer
    /// is fresh memory, the pages of the room ahead are made present before each read
    /// ([`crate::prefault`]).
    ///
    /// ```
    /// use yoton_core::readbuf::ReadBuffer;
    ///
    /// let mut rb = ReadBuffer::new(bytes::BytesMut::from(&b"the start"[..]));
    /// rb.make_room_for_frame(1 << 20, 9 + (1 << 20));
    /// assert_eq!(&rb.buf()[..], b"the start");
    /// assert!(rb.buf().capacity() >= 9 + (1 << 20));
    /// ```
    pub fn make_room_for_frame(&mut self, ahead: usize, size: usize) {
        if self.buf.capacity() - self.buf.len() < ahead {
            let fresh = self.large.make_room(&mut self.buf, ahead, size);
            self.prefault.new_buffer(fresh);
            self.in_large = true;
        }
        if self.in_large {
            self.prefault.before_read(&mut self.buf, ahead);
        }
    }

    /// A read after [`ReadBuffer::make_room`] brought `n` bytes (call it before
    /// decoding): one that filled the buffer or brought a small buffer's worth says
    /// the stream streams, unless `in_large_frame`: the bytes belong to a frame with
    /// an allocation of its own (too large for a pooled buffer). The start of the next
    /// large frame read into a large buffer would be copied over to that frame's
    /// allocation (with 256 KiB buffers, a stream of 1 MiB messages copied a quarter
    /// of every payload once more and lost 15 % of its rate).
    pub fn read(&mut self, n: usize, in_large_frame: bool) {
        let filled = self.buf.len() == self.buf.capacity();
        self.streaming = !in_large_frame && (filled || n >= READ_BUFFER);
        if in_large_frame || self.streaming {
            self.quiet_reads = 0;
        } else if self.quiet_reads < RELEASE_AFTER {
            self.quiet_reads += 1;
            if self.quiet_reads == RELEASE_AFTER {
                self.large.clear();
                self.stream_pool.clear();
            }
        }
    }

    /// Whether the last read said the stream streams (the next new buffer is large).
    #[cfg(test)]
    fn is_streaming(&self) -> bool {
        self.streaming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fill the buffer and take everything out as one frozen slice (what the codec
    /// does with complete frames), leaving `keep` bytes behind.
    fn fill_and_take(rb: &mut ReadBuffer, keep: usize) -> bytes::Bytes {
        rb.make_room();
        let room = rb.buf().capacity() - rb.len();
        rb.buf().extend_from_slice(&vec![7u8; room]);
        let at = rb.len() - keep;
        rb.buf().split_to(at).freeze()
    }

    /// A read of 10 bytes, taken out.
    fn short_read(rb: &mut ReadBuffer) {
        rb.make_room();
        rb.buf().extend_from_slice(&[5; 10]);
        rb.read(10, false);
        drop(rb.buf().split().freeze());
    }

    #[test]
    fn stream_buffers_are_given_up_after_a_while_without_streaming() {
        let mut rb = ReadBuffer::new(BytesMut::new());
        drop(fill_and_take(&mut rb, 0));
        rb.read(READ_BUFFER, false);
        // Three held: three large buffers kept.
        let held: Vec<_> = (0..3)
            .map(|_| {
                let b = fill_and_take(&mut rb, 0);
                rb.read(STREAM_BUFFER, false);
                b
            })
            .collect();
        assert!(held.iter().all(|b| b.len() == STREAM_BUFFER));
        assert_eq!(rb.stream_pool.kept(), 3);
        for _ in 0..RELEASE_AFTER - 1 {
            short_read(&mut rb);
        }
        // (The first short read still went to a large buffer.)
        assert_eq!(rb.stream_pool.kept(), 4);
        short_read(&mut rb);
        assert_eq!(rb.stream_pool.kept(), 0);
    }

    fn address(b: &bytes::Bytes) -> usize {
        b.as_ptr() as usize
    }

    #[test]
    fn takes_an_earlier_buffer_again_once_its_slices_are_dropped() {
        let mut rb = ReadBuffer::new(BytesMut::new());
        let first = fill_and_take(&mut rb, 10);
        let second = fill_and_take(&mut rb, 10);
        assert_ne!(address(&first), address(&second));
        let first_at = address(&first);
        drop(first);
        // The carried-over bytes go to the front of the first allocation.
        let third = fill_and_take(&mut rb, 0);
        assert_eq!(address(&third), first_at);
        assert_eq!(third.len(), READ_BUFFER);
        assert!(third.iter().all(|&b| b == 7));
        drop(second);
    }

    #[test]
    fn buffers_are_large_while_reads_fill_their_room_and_small_again_after() {
        let mut rb = ReadBuffer::new(BytesMut::new());
        rb.make_room();
        assert_eq!(rb.buf().capacity(), READ_BUFFER);
        // A read that fills its room: the next buffer is large.
        drop(fill_and_take(&mut rb, 0));
        rb.read(READ_BUFFER, false);
        assert!(rb.is_streaming());
        rb.make_room();
        assert_eq!(rb.buf().capacity(), STREAM_BUFFER);
        // Reads of a small buffer's worth keep it so.
        rb.buf().extend_from_slice(&vec![1u8; READ_BUFFER]);
        rb.read(READ_BUFFER, false);
        assert!(rb.is_streaming());
        drop(rb.buf().split().freeze());
        // A short read (the socket held little): small buffers again.
        rb.make_room();
        rb.buf().extend_from_slice(&[2u8; 100]);
        rb.read(100, false);
        assert!(!rb.is_streaming());
        let room = rb.buf().capacity() - rb.len();
        rb.buf().extend_from_slice(&vec![3u8; room]);
        drop(rb.buf().split().freeze());
        rb.make_room();
        assert_eq!(rb.buf().capacity(), READ_BUFFER);
        // A read that fills its room but belongs to a large frame: small buffers.
        drop(fill_and_take(&mut rb, 0));
        rb.read(READ_BUFFER, true);
        assert!(!rb.is_streaming());
        rb.make_room();
        assert_eq!(rb.buf().capacity(), READ_BUFFER);
    }

    #[test]
    fn large_frames_reuse_the_memory_of_dropped_ones() {
        let mut rb = ReadBuffer::new(BytesMut::new());
        let frame = 1 << 20;
        let receive = |rb: &mut ReadBuffer, v: u8| {
            // The start of the frame in a small buffer, then room for the rest.
            rb.make_room();
            rb.buf().extend_from_slice(&[v; 1000]);
            rb.make_room_for_frame(frame - 1000, frame);
            assert!(rb.buf().capacity() - rb.len() >= frame - 1000);
            rb.buf().resize(frame, v);
            rb.buf().split().freeze()
        };
        let first = receive(&mut rb, 1);
        let second = receive(&mut rb, 2);
        assert_ne!(address(&first), address(&second));
        assert!(first.iter().all(|&b| b == 1) && second.iter().all(|&b| b == 2));
        let first_at = address(&first);
        drop(first);
        let third = receive(&mut rb, 3);
        assert_eq!(address(&third), first_at);
        assert!(second.iter().all(|&b| b == 2) && third.iter().all(|&b| b == 3));
        // Short reads of small frames only: the large buffers are given up, but not
        // before.
        drop((second, third));
        for _ in 0..RELEASE_AFTER - 1 {
            short_read(&mut rb);
        }
        assert!(rb.large.kept_bytes() >= 2 * frame);
        rb.read(10, true);
        for _ in 0..RELEASE_AFTER - 1 {
            short_read(&mut rb);
        }
        assert!(rb.large.kept_bytes() >= 2 * frame);
        short_read(&mut rb);
        assert_eq!(rb.large.kept_bytes(), 0);
        // Kept again from the next large frame on.
        let fourth = receive(&mut rb, 4);
        assert_eq!(rb.large.kept_bytes(), fourth.len());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_fresh_buffer_of_a_large_frame_is_populated_before_it_is_read_into() {
        use crate::prefault::{tests::faults_filling, PREFAULT_AHEAD};
        let mut rb = ReadBuffer::new(BytesMut::from(&b"start"[..]));
        // 40 MiB of room: above glibc's largest mmap threshold, so fresh pages.
        let ahead = 40 << 20;
        rb.make_room_for_frame(ahead, 5 + (64 << 20));
        let faults = faults_filling(rb.buf(), PREFAULT_AHEAD, 1); // what a read would write
        assert!(
            faults < 16,
            "{faults} page faults while reading into the room"
        );
        assert_eq!(&rb.buf()[..5], b"start");
    }

    #[test]
    fn keeps_the_undecoded_bytes_in_order() {
        let mut rb = ReadBuffer::new(BytesMut::from(&b"left from the handshake"[..]));
        rb.make_room();
        assert_eq!(&rb.buf()[..], b"left from the handshake");
        let mut bytes = 0u64;
        for round in 0..10u8 {
            let room = rb.buf().capacity() - rb.len();
            rb.buf().extend_from_slice(&vec![round; room]);
            let n = rb.len();
            // A partial frame of 100 bytes stays behind.
            let done = rb.buf().split_to(n - 100).freeze();
            bytes += done.len() as u64;
            drop(done);
            let tail = rb.buf().to_vec();
            rb.make_room();
            assert_eq!(&rb.buf()[..], &tail[..], "round {round}");
            assert!(rb.buf().capacity() - rb.len() >= MIN_ROOM);
        }
        assert!(bytes > 10 * (READ_BUFFER as u64 - 200));
    }

    #[test]
    fn a_large_partial_frame_gets_a_buffer_of_its_own() {
        let mut rb = ReadBuffer::new(BytesMut::new());
        drop(fill_and_take(&mut rb, 0));
        drop(fill_and_take(&mut rb, 0));
        // Nearly full with the start of a frame larger than half a buffer.
        rb.make_room();
        let room = rb.buf().capacity() - rb.len();
        rb.buf().extend_from_slice(&vec![1u8; room - 100]);
        rb.make_room();
        assert_eq!(rb.len(), room - 100);
        assert!(rb.buf().capacity() - rb.len() >= MIN_ROOM);
    }
}
