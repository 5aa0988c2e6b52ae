//! Buffers of one size, taken again once nothing refers to them: the read buffers of
//! a stream (payloads are handed out as slices of them) and the runs of encoded
//! packages of a send queue (the writer holds them until they are written).
//!
//! A fresh allocation for each filled buffer costs more than its `malloc`: the
//! allocator gives freed memory back to the system and the kernel faults the pages
//! in again, zeroed, while they are written (callgrind does not see it; on a stream
//! of 64-byte messages it was thousands of page faults per million messages). The
//! pool keeps a zero-length handle to the start of its last few buffers and hands
//! out the oldest one again once only the handle is left of it.

use std::collections::VecDeque;

use bytes::BytesMut;

/// Buffers of `size` bytes, the last `keep` of them held for reuse.
///
/// ```
/// use yoton_core::pool::BufferPool;
///
/// let mut pool = BufferPool::new(1024, 2);
/// let mut a = pool.take(0);
/// a.extend_from_slice(b"payload");
/// let first = a.as_ptr();
/// let slice = a.split().freeze(); // handed out
/// drop(a);
/// // Still referred to by `slice`: a new buffer.
/// assert_ne!(pool.take(0).as_ptr(), first);
/// drop(slice);
/// // Only the pool's handle is left: the same memory again, empty, all of it.
/// let again = pool.take(0);
/// assert_eq!(again.as_ptr(), first);
/// assert!(again.is_empty() && again.capacity() >= 1024);
/// ```
#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    keep: usize,
    /// Zero-length handles to the starts of the buffers handed out, oldest first.
    earlier: VecDeque<BytesMut>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers that keeps the last `keep` (at least one).
    pub fn new(size: usize, keep: usize) -> Self {
        BufferPool {
            size,
            keep: keep.max(1),
            earlier: VecDeque::new(),
        }
    }

    /// An empty buffer with room for at least `min` bytes: the oldest buffer of the
    /// pool that nothing else refers to any more, or else a new one (of the pool's
    /// size, or `min` when that is larger; only buffers of the pool's size are kept).
    pub fn take(&mut self, min: usize) -> BytesMut {
        if min > self.size {
            return BytesMut::with_capacity(min);
        }
        // Only the handle is left of the oldest buffer: its memory is free again.
        let free = self
            .earlier
            .front_mut()
            .is_some_and(|old| old.try_reclaim(self.size));
        let reused = if free { self.earlier.pop_front() } else { None };
        let mut buf = reused.unwrap_or_else(|| BytesMut::with_capacity(self.size));
        if self.earlier.len() == self.keep {
            self.earlier.pop_front();
        }
        self.earlier.push_back(buf.split_to(0));
        buf
    }

    /// Give up every buffer kept (each is freed once nothing else refers to it).
    pub fn clear(&mut self) {
        self.earlier.clear();
    }

    /// Buffers kept (whether free or not).
    pub fn kept(&self) -> usize {
        self.earlier.len()
    }
}

/// Bytes of large buffers a [`LargePool`] keeps for reuse, at most. (A stream of 1 MiB
/// messages, `yoton bench` W2, made 2.5 GB/s with 4 MiB and 2.9 GB/s with 16 MiB: a
/// receiver that falls a few messages behind still finds free ones.) The stream
/// reader gives them up once large frames stop ([`crate::readbuf::RELEASE_AFTER`]).
pub const LARGE_KEEP: usize = 16 << 20;

/// A [`LargePool`]'s buffers are a multiple of this size.
pub const LARGE_STEP: usize = 64 * 1024;

/// Buffers of any size for payloads too large for a read buffer, each taken again once
/// nothing refers to it: the last few, [`LARGE_KEEP`] bytes of them at most.
///
/// A stream of 1 MiB messages that got a fresh allocation for each one spent a
/// quarter to nearly half of its receiving CPU clearing pages the kernel faulted in
/// (the allocator gives memory that large back to the system when it is freed).
///
/// ```
/// use yoton_core::pool::LargePool;
///
/// let mut pool = LargePool::default();
/// let mut a = pool.take(1 << 20);
/// a.resize(1 << 20, 7);
/// let first = a.as_ptr();
/// let payload = a.split().freeze(); // handed out
/// drop(a);
/// let other = pool.take(1 << 20);
/// assert_ne!(other.as_ptr(), first); // still referred to: a new one
/// drop(payload);
/// let again = pool.take(1 << 20);
/// assert_eq!(again.as_ptr(), first); // free again: the same memory
/// assert!(again.is_empty() && again.capacity() >= 1 << 20);
/// ```
#[derive(Debug, Default)]
pub struct LargePool {
    /// Zero-length handles to the starts of the buffers handed out, with their
    /// capacities, oldest first.
    kept: VecDeque<(BytesMut, usize)>,
}

impl LargePool {
    /// An empty buffer with room for at least `min` bytes: a kept one that nothing
    /// else refers to any more, or else a new one of `min` bytes rounded up to a
    /// multiple of [`LARGE_STEP`] (kept if it fits in [`LARGE_KEEP`], the oldest ones
    /// given up to make room for it).
    pub fn take(&mut self, min: usize) -> BytesMut {
        self.take_new(min).0
    }

    /// [`take`](Self::take), and whether the buffer is a new allocation.
    fn take_new(&mut self, min: usize) -> (BytesMut, bool) {
        // The newest free one: the likeliest to be in the cache still.
        let free = self
            .kept
            .iter_mut()
            .rposition(|(handle, cap)| *cap >= min && handle.try_reclaim(*cap));
        let ((mut buf, cap), new) = match free.and_then(|i| self.kept.remove(i)) {
            Some(reused) => (reused, false),
            None => {
                // Rounded up, so that a later payload a little larger fits too.
                let cap = min.div_ceil(LARGE_STEP).saturating_mul(LARGE_STEP);
                ((BytesMut::with_capacity(cap), cap), true)
            }
        };
        if cap <= LARGE_KEEP {
            while self.kept_bytes() + cap > LARGE_KEEP {
                self.kept.pop_front();
            }
            self.kept.push_back((buf.split_to(0), cap));
        }
        (buf, new)
    }

    /// Make room in `buf`, which holds the start of one large payload of `size` bytes in
    /// all, for `ahead` more bytes: when there is less, carry its bytes over to a buffer
    /// from [`take`](Self::take); for a payload above [`LARGE_KEEP`], grow it with
    /// `reserve` instead (in place where the allocator can: a copy would hold old and
    /// new at once, and for a payload that large peak memory is what matters; nor is
    /// any of its growth steps kept).
    ///
    /// Returns whether `buf` changed to memory that was never used (a new allocation,
    /// or grown); false when it had room or a kept buffer was taken again. Fresh memory
    /// is worth prefaulting ([`crate::prefault`]).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use yoton_core::pool::LargePool;
    ///
    /// let mut pool = LargePool::default();
    /// let mut buf = BytesMut::from(&b"the start"[..]);
    /// assert!(pool.make_room(&mut buf, 1 << 20, 9 + (1 << 20))); // a new buffer
    /// assert_eq!(&buf[..], b"the start");
    /// assert!(buf.capacity() >= 9 + (1 << 20));
    /// assert!(pool.kept_bytes() >= 9 + (1 << 20));
    /// assert!(!pool.make_room(&mut buf, 1 << 20, 9 + (1 << 20))); // room already
    /// ```
    pub fn make_room(&mut self, buf: &mut BytesMut, ahead: usize, size: usize) -> bool {
        if buf.capacity() - buf.len() >= ahead {
            return false;
        }
        if size > LARGE_KEEP {
            buf.reserve(ahead);
            true
        } else {
            let (mut next, new) = self.take_new(buf.len().saturating_add(ahead));
            next.extend_from_slice(buf);
            *buf = next;
            new
        }
    }

    /// Give up every buffer kept (each is freed once nothing else refers to it).
    pub fn clear(&mut self) {
        self.kept.clear();
    }

    /// Bytes of buffers kept (whether free or not).
    pub fn kept_bytes(&self) -> usize {
        self.kept.iter().map(|(_, cap)| cap).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_and_take(pool: &mut BufferPool) -> bytes::Bytes {
        let mut b = pool.take(0);
        let room = b.capacity();
        b.extend_from_slice(&vec![7u8; room]);
        b.split().freeze()
    }

    #[test]
    fn never_hands_out_a_buffer_that_a_slice_still_refers_to() {
        let mut pool = BufferPool::new(1024, 4);
        let mut alive = vec![];
        for i in 0..20u8 {
            let mut b = pool.take(0);
            let room = b.capacity();
            b.extend_from_slice(&vec![i; room]);
            alive.push((i, b.split().freeze()));
        }
        for (i, b) in &alive {
            assert!(b.iter().all(|x| x == i), "buffer {i} was written over");
        }
        let mut at: Vec<_> = alive.iter().map(|(_, b)| b.as_ptr()).collect();
        at.sort();
        at.dedup();
        assert_eq!(at.len(), alive.len());
    }

    #[test]
    fn large_pool_reuses_free_buffers_of_enough_room_and_keeps_a_bounded_amount() {
        let mut pool = LargePool::default();
        let fill = |b: &mut BytesMut, n: usize, v: u8| {
            b.resize(n, v);
            b.split().freeze()
        };
        let kb = 1 << 10;
        let a = fill(&mut pool.take(256 * kb), 256 * kb, 1);
        let b = fill(&mut pool.take(512 * kb), 512 * kb, 2);
        // Both held: a third buffer, written without touching them.
        let c = fill(&mut pool.take(256 * kb), 256 * kb, 3);
        assert!(a.iter().all(|&x| x == 1) && b.iter().all(|&x| x == 2));
        let b_at = b.as_ptr();
        drop(b);
        // Free but too small for 768 KiB; free and large enough for 384 KiB.
        let big = pool.take(768 * kb);
        assert_ne!(big.as_ptr(), b_at);
        let mid = pool.take(384 * kb);
        assert_eq!(mid.as_ptr(), b_at);
        // All of it, not just what was asked for.
        assert_eq!(mid.capacity(), 512 * kb);
        // Never more than LARGE_KEEP bytes kept (the oldest give way); larger buffers
        // are not kept at all.
        let most = pool.take(LARGE_KEEP - 512 * kb);
        assert_eq!(pool.kept_bytes(), LARGE_KEEP);
        let huge = pool.take(2 * LARGE_KEEP);
        assert!(huge.capacity() >= 2 * LARGE_KEEP);
        assert!(pool.kept.iter().all(|(_, c)| *c <= LARGE_KEEP));
        // Room for a payload above LARGE_KEEP: grown, and none of its steps kept.
        pool.clear();
        let mut growing = BytesMut::from(&b"start"[..]);
        assert!(
            pool.make_room(&mut growing, 1 << 20, 2 * LARGE_KEEP),
            "grown"
        );
        assert!(growing.capacity() >= 5 + (1 << 20) && &growing[..] == b"start");
        assert_eq!(pool.kept_bytes(), 0);
        // One that fits: its buffer comes from the pool (and is kept).
        assert!(pool.make_room(&mut growing, 2 << 20, 5 + (2 << 20)), "new");
        assert!(growing.capacity() >= 5 + (2 << 20) && &growing[..] == b"start");
        assert!(pool.kept_bytes() >= 5 + (2 << 20));
        // Once nothing refers to that buffer, the next payload that fits takes it
        // again: memory that was used before, not fresh.
        let at = growing.as_ptr();
        drop(growing);
        let mut again = BytesMut::from(&b"next"[..]);
        assert!(
            !pool.make_room(&mut again, 2 << 20, 4 + (2 << 20)),
            "reused"
        );
        assert_eq!(again.as_ptr(), at);
        drop((a, c, big, mid, most, huge));
    }

    #[test]
    fn keeps_only_the_last_few_and_passes_large_requests_by() {
        let mut pool = BufferPool::new(1024, 2);
        let held: Vec<_> = (0..5).map(|_| fill_and_take(&mut pool)).collect();
        assert_eq!(pool.earlier.len(), 2);
        let big = pool.take(5000);
        assert!(big.capacity() >= 5000);
        assert_eq!(pool.earlier.len(), 2);
        drop(held);
    }
}
