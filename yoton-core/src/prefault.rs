//! Prefaulting the room of a large frame: before a read into fresh memory, the pages
//! it will fill are made present by one `madvise(MADV_POPULATE_WRITE)` call per
//! [`PREFAULT_AHEAD`] bytes, instead of a page fault per 4 KiB inside the kernel's
//! copy (or quinn's).
//!
//! A payload too large for a read buffer gets a buffer of its own; a 256 MiB message
//! is 65,536 pages of fresh memory. On the 2-core VM of `yoton bench`, faulting them in
//! was half of a W4 receiver's samples. With the room populated ahead, pairs of the
//! bench's processes sending one 256 MiB message (5 alternating pairs each) went from
//! 1.35-1.69 to 1.88-2.29 GB/s over tcp (receiver CPU 148-176 -> 119-136 ms), from
//! 1.24-1.48 to 1.72-2.06 over ws (184-212 -> 131-153 ms) and from 0.99-1.10 to
//! 1.08-1.18 over quic (240-261 -> 216-236 ms). Memory a pool hands out again is
//! present already and is left alone (see [`LargePool::make_room`](crate::pool::LargePool::make_room)):
//! a `madvise` per 1 MiB payload of W2 cost its receiver more than it saved.
//!
//! Linux 5.14 and later; elsewhere, or once the kernel refuses, pages are faulted in as
//! before.

use bytes::BytesMut;

/// How far ahead of what a large frame's buffer holds its room is populated.
pub const PREFAULT_AHEAD: usize = 4 << 20;

/// How far the current buffer is populated: its start and the offset reached.
///
/// ```
/// use yoton_core::prefault::{Prefault, PREFAULT_AHEAD};
///
/// // 64 MiB of fresh memory, of which a frame still needs 10 MiB.
/// let mut buf = bytes::BytesMut::with_capacity(64 << 20);
/// let mut prefault = Prefault::default();
/// prefault.before_read(&mut buf, 10 << 20);
/// // (On Linux the first PREFAULT_AHEAD bytes of room are present now.)
/// buf.resize(PREFAULT_AHEAD, 7); // what a read would write
/// assert_eq!(buf.len(), PREFAULT_AHEAD);
/// ```
#[derive(Debug, Default)]
pub struct Prefault {
    base: usize,
    done: usize,
    off: bool,
}

impl Prefault {
    /// Before a read into `buf`'s spare room, fresh memory, of which the frame being
    /// read still needs `ahead` bytes: make the pages of the next `ahead` bytes of the
    /// room present, up to [`PREFAULT_AHEAD`] bytes past what the buffer holds.
    pub fn before_read(&mut self, buf: &mut BytesMut, ahead: usize) {
        if self.off {
            return;
        }
        let base = buf.as_ptr() as usize;
        if base != self.base {
            self.base = base;
            self.done = 0;
        }
        let len = buf.len();
        let want = buf
            .capacity()
            .min(len.saturating_add(ahead.min(PREFAULT_AHEAD)));
        let from = self.done.max(len);
        if want <= from {
            return;
        }
        let Some(room) = buf.spare_capacity_mut().get_mut(from - len..want - len) else {
            return;
        };
        if populate(room) {
            self.done = want;
        } else {
            self.off = true;
        }
    }
}

/// Make the whole pages inside `room` present and writable; false when the kernel
/// refused.
#[cfg(target_os = "linux")]
fn populate(room: &mut [std::mem::MaybeUninit<u8>]) -> bool {
    /// Linux 5.14's `MADV_POPULATE_WRITE` (not in every libc crate's list).
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    let start = room.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let last = (start + room.len()) / PAGE * PAGE;
    if last <= first {
        return true;
    }
    // SAFETY: [first, last) lies inside `room`, memory of this buffer that is borrowed
    // mutably here, so nothing else reads or writes it during the call; the kernel
    // only makes its pages present and writable and changes none of its bytes.
    let done = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            MADV_POPULATE_WRITE,
        )
    } == 0;
    if !done {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "MADV_POPULATE_WRITE refused; the pages of large frames are faulted in one by one"
        );
    }
    done
}

#[cfg(not(target_os = "linux"))]
fn populate(_room: &mut [std::mem::MaybeUninit<u8>]) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// Page faults of the calling thread so far that needed no disk (its minor ones).
    pub(crate) fn minor_faults() -> i64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes one rusage into the pointer, which points to one.
        let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
        // SAFETY: getrusage succeeded, so it filled the struct.
        unsafe { usage.assume_init() }.ru_minflt
    }

    /// 64 MiB: above glibc's largest mmap threshold, so a new mapping (fresh pages)
    /// whatever other tests freed before.
    const FRESH: usize = 64 << 20;

    /// Transparent huge pages for every mapping: one fault brings 2 MiB, so counting
    /// faults cannot tell populated room from room that is not.
    fn huge_pages_always() -> bool {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| s.contains("[always]"))
    }

    #[test]
    fn the_room_ahead_is_present_before_it_is_written_and_no_further() {
        let mut buf = BytesMut::with_capacity(FRESH);
        buf.extend_from_slice(b"start");
        let mut prefault = Prefault::default();
        prefault.before_read(&mut buf, FRESH);
        let before = minor_faults();
        buf.resize(PREFAULT_AHEAD, 1);
        let populated = minor_faults() - before;
        // Touched page by page, 4 MiB would be 1,024 faults.
        assert!(populated < 16, "{populated} faults in the populated room");
        if huge_pages_always() {
            eprintln!("transparent huge pages are on for every mapping: faults not counted");
            return;
        }
        // Past it, the pages fault in as they are written: the test can tell.
        let before = minor_faults();
        buf.resize(PREFAULT_AHEAD + (1 << 20), 2);
        let past = minor_faults() - before;
        assert!(past >= 200, "only {past} faults past the populated room");
        // The next call populates on from where the last one stopped.
        prefault.before_read(&mut buf, FRESH);
        let before = minor_faults();
        buf.resize(2 * PREFAULT_AHEAD, 3);
        let next = minor_faults() - before;
        assert!(next < 16, "{next} faults in the next populated room");
        assert!(buf[5..PREFAULT_AHEAD].iter().all(|&b| b == 1));
    }

    #[test]
    fn no_more_than_the_frame_still_needs_is_populated() {
        let mut buf = BytesMut::with_capacity(FRESH);
        let mut prefault = Prefault::default();
        prefault.before_read(&mut buf, 1 << 20);
        let before = minor_faults();
        buf.resize(1 << 20, 1);
        assert!(minor_faults() - before < 16);
        if huge_pages_always() {
            eprintln!("transparent huge pages are on for every mapping: faults not counted");
            return;
        }
        let before = minor_faults();
        buf.resize(2 << 20, 1);
        let past = minor_faults() - before;
        assert!(past >= 200, "only {past} faults past what the frame needed");
    }
}
