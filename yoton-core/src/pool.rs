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
