//! A stream's receive low-water mark (`SO_RCVLOWAT` of a TCP socket): while a large
//! frame streams in, the kernel wakes its reader once a good part of the frame is
//! there, not for every segment that arrives.
//!
//! Each wake-up costs the sending side too (on loopback the sender's system call
//! delivers the data and wakes the reader): 1 MiB WebSocket messages went from about
//! 3.0 to 5.2 GB/s with a mark of up to 256 KiB, and to 6.0 with 1 MiB. A reader asks
//! for no more than the frame still lacks, so the mark is always reached; the end of
//! the stream or an error wakes the reader whatever the mark, and Linux lowers a mark
//! that the socket's receive buffer could not hold.

use crate::stream::StreamRead;

/// Most bytes a reader waits for at once while a large frame streams in.
pub const MAX_LOW_WATER: usize = 1 << 20;

/// The mark a reader last set on its stream: it is set again only when it changes,
/// so reads of small frames cost no system call.
///
/// ```
/// use yoton_core::lowat::{LowWater, MAX_LOW_WATER};
/// use yoton_core::stream::StreamRead;
///
/// struct Pipe(std::cell::Cell<usize>);
/// # impl tokio::io::AsyncRead for Pipe {
/// #     fn poll_read(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>,
/// #         _: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
/// #         std::task::Poll::Ready(Ok(()))
/// #     }
/// # }
/// impl StreamRead for Pipe {
///     fn set_recv_lowat(&self, bytes: usize) -> bool {
///         self.0.set(bytes);
///         true
///     }
/// }
///
/// let (pipe, mut mark) = (Pipe(Default::default()), LowWater::default());
/// mark.before_read(&pipe, Some(5 << 20)); // 5 MiB of a frame still to come
/// assert_eq!(pipe.0.get(), MAX_LOW_WATER);
/// mark.before_read(&pipe, None); // small frames again
/// assert_eq!(pipe.0.get(), 1);
/// ```
#[derive(Debug)]
pub struct LowWater {
    current: usize,
    /// The stream refused once (or cannot): not asked again.
    off: bool,
}

impl Default for LowWater {
    fn default() -> Self {
        LowWater {
            current: 1,
            off: false,
        }
    }
}

impl LowWater {
    /// Before a read: `ahead` is how many bytes of a large frame are still to come
    /// (`None` when no large frame is being read).
    pub fn before_read(&mut self, io: &(impl StreamRead + ?Sized), ahead: Option<usize>) {
        let want = ahead.map_or(1, |a| a.clamp(1, MAX_LOW_WATER));
        if self.off || want == self.current {
            return;
        }
        if io.set_recv_lowat(want) {
            self.current = want;
        } else {
            self.off = true;
        }
    }
}

/// Set `SO_RCVLOWAT` on a TCP socket; false when the kernel refused (logged).
#[cfg(target_os = "linux")]
pub(crate) fn set_tcp(stream: &tokio::net::TcpStream, bytes: usize) -> bool {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads size_of::<c_int>() bytes at the pointer, which points to
    // `value`, alive on this frame for the whole call, and writes no memory; the
    // descriptor belongs to `stream`, which is borrowed (so open) for the whole call.
    let done = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !done {
        tracing::debug!(
            bytes,
            error = %std::io::Error::last_os_error(),
            "could not set SO_RCVLOWAT; large frames wake the reader per segment"
        );
    }
    done
}

/// Elsewhere the mark is left alone.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_tcp(_stream: &tokio::net::TcpStream, _bytes: usize) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// Read exactly `n` bytes, and see that nothing follows.
    async fn read_n(rx: &tokio::net::tcp::OwnedReadHalf, n: usize) {
        let mut buf = vec![0; 64 * 1024];
        let mut got = 0;
        while got < n {
            rx.readable().await.unwrap();
            let want = (n - got).min(buf.len());
            match rx.try_read(&mut buf[..want]) {
                Ok(0) => panic!("end of stream after {got} of {n} bytes"),
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        // Nothing more: this clears tokio's readiness for the next wait.
        let e = rx.try_read(&mut buf).expect_err("more than asked for");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }

    /// Bytes queued in a socket's receive buffer (`FIONREAD`).
    fn queued(fd: std::os::fd::RawFd) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int at the pointer, which points to `n`,
        // alive on this frame for the whole call; `fd` is an open socket of the caller.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, std::ptr::from_mut(&mut n)) };
        assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
        usize::try_from(n).unwrap_or(0)
    }

    /// Whether the kernel reports the socket readable right now (`poll`, no wait):
    /// the readiness that wakes a reader, low-water mark included.
    fn readable_now(fd: std::os::fd::RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd at the pointer, `p` on this
        // frame, for the whole call; a zero time-out returns at once.
        let r = unsafe { libc::poll(std::ptr::from_mut(&mut p), 1, 0) };
        assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
        p.revents & libc::POLLIN != 0
    }

    /// Over a real socket (its window grown first by 16 MiB read: Linux wakes a
    /// reader below the mark while the window is less than one segment, 64 KiB on
    /// loopback): with a mark of 256 KiB, 1 KiB in the socket does not make it
    /// readable; the rest of the 256 KiB does; back at 1, a byte does.
    #[tokio::test]
    async fn a_reader_is_woken_only_once_the_mark_is_reached() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (tx, rx) = tokio::join!(connect, listener.accept());
        let (mut tx, rx) = (tx.unwrap(), rx.unwrap().0);
        let (rx, _keep) = rx.into_split();
        let warm = vec![0u8; 16 << 20];
        let (sent, ()) = tokio::join!(tx.write_all(&warm), read_n(&rx, warm.len()));
        sent.unwrap();
        let mut mark = LowWater::default();
        let n = 256 * 1024;
        mark.before_read(&rx, Some(n));
        assert_eq!(mark.current, n, "{mark:?}");
        tx.write_all(&[1; 1024]).await.unwrap();
        // Once the 1 KiB is in the socket (a bounded wait for that), it is not readable.
        let fd = std::os::fd::AsRawFd::as_raw_fd(rx.as_ref());
        let t0 = std::time::Instant::now();
        while queued(fd) < 1024 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "1 KiB never arrived"
            );
            tokio::task::yield_now().await;
        }
        assert!(!readable_now(fd), "readable below the mark");
        tx.write_all(&vec![2; n - 1024]).await.unwrap();
        let at_mark = tokio::time::timeout(Duration::from_secs(10), read_n(&rx, n)).await;
        at_mark.expect("not readable at the mark");
        mark.before_read(&rx, None);
        assert_eq!(mark.current, 1);
        tx.write_all(&[3]).await.unwrap();
        let one = tokio::time::timeout(Duration::from_secs(10), read_n(&rx, 1)).await;
        one.expect("a byte at mark 1 did not make the socket readable");
    }
}
