//! Prefaulting the room of a large frame: before a read into fresh memory, the pages
//! it will fill are made present by one `madvise(MADV_POPULATE_WRITE)` call per
//! [`PREFAULT_AHEAD`] bytes, instead of a page fault per 4 KiB inside the kernel's
//! copy (or quinn's).
//!
//! A payload too large for a read buffer gets a buffer of its own; a 256 MiB message
//! is 65,536 pages of fresh memory. On the 2-core VM of `yoton bench`, faulting them in
//! was half of a W4 receiver's samples. With the room populated ahead, pairs of the
//! bench's processes sending one 256 MiB message (alternating pairs) went from
//! 1.35-1.69 to 1.88-2.29 GB/s over tcp (5 pairs; receiver CPU 148-176 -> 119-136 ms),
//! from 1.24-1.48 to 1.72-2.06 over ws (5 pairs; 184-212 -> 131-153 ms) and from
//! 0.99-1.12 to 1.07-1.19 over quic (9 pairs; 236-261 -> 211-236 ms). Memory a pool
//! hands out again is present already and is left alone (see
//! [`LargePool::make_room`](crate::pool::LargePool::make_room)): a `madvise` per 1 MiB
//! payload of W2 cost its receiver more than it saved.
//!
//! Linux 5.14 and later; elsewhere, or once the kernel refuses, pages are faulted in as
//! before.

use bytes::BytesMut;

/// How far ahead of what a large frame's buffer holds its room is populated.
pub const PREFAULT_AHEAD: usize = 4 << 20;

/// How far the buffer of a large frame is populated. The owner of the buffer tells it
/// each time the buffer changes ([`Prefault::new_buffer`]), with whether the new one
/// is fresh memory; only fresh memory is populated.
///
/// ```
/// use yoton_core::prefault::{Prefault, PREFAULT_AHEAD};
///
/// // 64 MiB of fresh memory, of which a frame still needs 10 MiB.
/// let mut buf = bytes::BytesMut::with_capacity(64 << 20);
/// let mut prefault = Prefault::default();
/// prefault.new_buffer(true);
/// prefault.before_read(&mut buf, 10 << 20);
/// // (On Linux the first PREFAULT_AHEAD bytes of room are present now.)
/// buf.resize(PREFAULT_AHEAD, 7); // what a read would write
/// assert_eq!(buf.len(), PREFAULT_AHEAD);
/// ```
#[derive(Debug, Default)]
pub struct Prefault {
    /// Offset in the current buffer up to which its room is populated; `None` while
    /// the buffer is not fresh memory (nothing to do).
    done: Option<usize>,
    /// The kernel refused once: no more attempts.
    off: bool,
}

impl Prefault {
    /// The buffer changed; `fresh` when the new one is memory that was never used (as
    /// [`LargePool::make_room`](crate::pool::LargePool::make_room) tells).
    pub fn new_buffer(&mut self, fresh: bool) {
        self.done = fresh.then_some(0);
    }

    /// Before a read into `buf`'s spare room, of which the frame being read still needs
    /// `ahead` bytes: when `buf` is fresh memory, make the pages of the next `ahead`
    /// bytes of the room present, up to [`PREFAULT_AHEAD`] bytes past what the buffer
    /// holds.
    pub fn before_read(&mut self, buf: &mut BytesMut, ahead: usize) {
        let Some(done) = self.done else {
            return;
        };
        if self.off {
            return;
        }
        let len = buf.len();
        let want = buf
            .capacity()
            .min(len.saturating_add(ahead.min(PREFAULT_AHEAD)));
        let from = done.max(len);
        if want <= from {
            return;
        }
        let Some(room) = buf.spare_capacity_mut().get_mut(from - len..want - len) else {
            return;
        };
        if populate(room) {
            self.done = Some(want);
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
    let page = page_size();
    let start = room.as_mut_ptr() as usize;
    let first = start.next_multiple_of(page);
    let last = (start + room.len()) / page * page;
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

/// The size of a page of memory (4 KiB where the system does not say).
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf reads a value of the system and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

#[cfg(not(target_os = "linux"))]
fn populate(_room: &mut [std::mem::MaybeUninit<u8>]) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// Page faults of the calling thread so far that needed no disk (its minor ones).
    fn minor_faults() -> i64 {
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

    /// Faults of writing `byte` into `buf` until it holds `up_to` bytes.
    pub(crate) fn faults_filling(buf: &mut BytesMut, up_to: usize, byte: u8) -> i64 {
        let before = minor_faults();
        buf.resize(up_to, byte);
        minor_faults() - before
    }

    /// Whether counting faults tells populated room from room that is not: not where
    /// transparent huge pages are on for every mapping (one fault brings 2 MiB).
    fn faults_tell() -> bool {
        let always = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| s.contains("[always]"));
        if always {
            eprintln!("transparent huge pages are on for every mapping: faults not counted");
        }
        !always
    }

    /// A buffer of [`FRESH`] bytes, and its prefault told whether it is fresh.
    fn buffer(fresh: bool) -> (BytesMut, Prefault) {
        let mut prefault = Prefault::default();
        prefault.new_buffer(fresh);
        (BytesMut::with_capacity(FRESH), prefault)
    }

    #[test]
    fn the_room_ahead_is_present_before_it_is_written_and_no_further() {
        let (mut buf, mut prefault) = buffer(true);
        buf.extend_from_slice(b"start");
        prefault.before_read(&mut buf, FRESH);
        let populated = faults_filling(&mut buf, PREFAULT_AHEAD, 1);
        // Touched page by page, 4 MiB would be 1,024 faults.
        assert!(populated < 16, "{populated} faults in the populated room");
        if !faults_tell() {
            return;
        }
        // Past it, the pages fault in as they are written: the test can tell.
        let past = faults_filling(&mut buf, PREFAULT_AHEAD + (1 << 20), 2);
        assert!(past >= 200, "only {past} faults past the populated room");
        // The next call populates on from where the last one stopped.
        prefault.before_read(&mut buf, FRESH);
        let next = faults_filling(&mut buf, 2 * PREFAULT_AHEAD, 3);
        assert!(next < 16, "{next} faults in the next populated room");
        assert!(buf[5..PREFAULT_AHEAD].iter().all(|&b| b == 1));
    }

    #[test]
    fn no_more_than_the_frame_still_needs_is_populated() {
        let (mut buf, mut prefault) = buffer(true);
        prefault.before_read(&mut buf, 1 << 20);
        assert!(faults_filling(&mut buf, 1 << 20, 1) < 16);
        if !faults_tell() {
            return;
        }
        let past = faults_filling(&mut buf, 2 << 20, 1);
        assert!(past >= 200, "only {past} faults past what the frame needed");
    }

    #[test]
    fn memory_that_is_not_fresh_is_left_alone() {
        let (mut buf, mut prefault) = buffer(false);
        prefault.before_read(&mut buf, FRESH);
        if !faults_tell() {
            return;
        }
        let faults = faults_filling(&mut buf, 1 << 20, 1);
        assert!(
            faults >= 200,
            "only {faults} faults: the room was populated"
        );
    }

    /// A new buffer may be where the last one was (a freed mapping's address comes
    /// back for the next of the same size): what was populated of the old one says
    /// nothing about the new one.
    #[test]
    fn a_new_buffer_at_the_address_of_the_last_one_is_populated_again() {
        let (mut buf, mut prefault) = buffer(true);
        prefault.before_read(&mut buf, FRESH);
        buf.resize(PREFAULT_AHEAD, 1);
        // Fresh memory again at the same address: its pages are dropped.
        buf.clear();
        let page = page_size();
        let start = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = (buf.as_ptr() as usize + buf.capacity()) / page * page;
        // SAFETY: the whole pages of the buffer's own allocation, which nothing else
        // uses; they read as zeros afterwards, and the buffer is empty, so none of
        // its bytes is read before it is written again.
        let dropped =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        assert_eq!(dropped, 0, "{}", std::io::Error::last_os_error());
        prefault.new_buffer(true);
        prefault.before_read(&mut buf, FRESH);
        let faults = faults_filling(&mut buf, PREFAULT_AHEAD, 2);
        assert!(faults < 16, "{faults} faults in the room of the new buffer");
    }
}
