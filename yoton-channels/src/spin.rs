//! Spin before sleeping: a blocking receive polls for a short while (yielding the
//! CPU between polls) before its thread goes to sleep. A message or reply that is on
//! its way is then taken without a thread wake-up, which costs more than the wait
//! itself on loopback: with it, the blocking pub/sub ping-pong went from 1.5x to
//! 0.9-1.0x the floor's round trip, and a blocking request/reply call from 2.0x to
//! 1.1-1.2x (`yoton bench --workload W3`). The cost: a receive that has to wait
//! keeps its CPU busy for up to [`BLOCKING_SPIN`] first, yielding it to any other
//! thread that wants it. So a subscriber spins only while it pays: not after a message
//! above 64 KiB (a stream of large messages is bound by copying, and a spinning
//! receiver took a fifth of the 1 MiB throughput of W2 on 2 cores), not after a
//! batch of more than [`SPIN_MAX_BATCH`] messages (a stream of small ones: its next
//! batch is worth a wake-up, and the CPU a spin burns is the sender's on 2 cores), and
//! after three spins in a row that ended without a message only every 16th wait spins.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a blocking receive polls before it sleeps (at most its own time-out).
/// Only threads outside any tokio runtime spin.
pub const BLOCKING_SPIN: Duration = Duration::from_micros(100);

/// Spins in a row that found nothing, after which a channel mostly stops spinning.
const GIVE_UP_AFTER: u32 = 3;
/// While given up, one wait in this many still spins (to notice when it pays again).
const RETRY_EVERY: u32 = 16;

/// After a message larger than this, a channel does not spin.
pub(crate) const SPIN_MAX_MESSAGE: usize = 64 * 1024;

/// After a batch of more messages than this (taken at once), a channel does not spin
/// until it takes a message on its own again.
pub(crate) const SPIN_MAX_BATCH: usize = 16;

/// The spinning of one channel: [`spin`] while it pays off.
#[derive(Debug, Default)]
pub(crate) struct Spinner {
    misses: AtomicU32,
    waits: AtomicU32,
    /// Do not spin: the last message was larger than [`SPIN_MAX_MESSAGE`], or the
    /// last batch longer than [`SPIN_MAX_BATCH`].
    skip: AtomicBool,
}

impl Spinner {
    /// A message of `len` bytes was received.
    pub(crate) fn saw(&self, len: usize) {
        self.saw_batch(1, len);
    }

    /// `n` messages were taken at once, the last of `last_len` bytes (nothing changes
    /// when `n` is 0).
    pub(crate) fn saw_batch(&self, n: usize, last_len: usize) {
        if n == 0 {
            return;
        }
        let skip = last_len > SPIN_MAX_MESSAGE || n > SPIN_MAX_BATCH;
        if self.skip.load(Ordering::Relaxed) != skip {
            self.skip.store(skip, Ordering::Relaxed);
        }
    }

    /// [`spin`], unless skipped or the last spins of this channel found nothing.
    pub(crate) fn spin<T>(
        &self,
        timeout: Option<Duration>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if self.skip.load(Ordering::Relaxed) {
            return None;
        }
        if self.misses.load(Ordering::Relaxed) >= GIVE_UP_AFTER
            && self.waits.fetch_add(1, Ordering::Relaxed) % RETRY_EVERY != 0
        {
            return None;
        }
        let got = spin(timeout, ready);
        if got.is_some() {
            self.misses.store(0, Ordering::Relaxed);
        } else {
            let _ = self
                .misses
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                    Some(m.saturating_add(1))
                });
        }
        got
    }
}

/// Poll `ready` until it gives a value, for at most [`BLOCKING_SPIN`] (or `timeout`,
/// when shorter); `None` when nothing came (the caller then sleeps).
pub(crate) fn spin<T>(
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    let spin = timeout.map_or(BLOCKING_SPIN, |t| t.min(BLOCKING_SPIN));
    let start = Instant::now();
    while start.elapsed() < spin {
        std::thread::yield_now();
        if let Some(v) = ready() {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_value_that_comes_while_spinning() {
        let mut polls = 0;
        let got = spin(None, || {
            polls += 1;
            (polls == 3).then_some(42)
        });
        assert_eq!((got, polls), (Some(42), 3));
    }

    #[test]
    fn gives_up_after_the_spin_or_the_shorter_time_out() {
        let t = Instant::now();
        assert_eq!(spin(None, || None::<()>), None);
        let full = t.elapsed();
        assert!(full >= BLOCKING_SPIN, "{full:?}");
        let t = Instant::now();
        let mut polls = 0;
        assert_eq!(
            spin(Some(Duration::ZERO), || {
                polls += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(polls, 0, "a zero time-out does not poll");
        assert!(t.elapsed() < BLOCKING_SPIN + Duration::from_millis(50));
    }

    #[test]
    fn a_spinner_stops_spinning_when_it_does_not_pay_and_tries_again_now_and_then() {
        let s = Spinner::default();
        let mut polls = 0;
        let mut wait = |come: bool| {
            let before = polls;
            let got = s.spin(Some(Duration::from_micros(200)), || {
                polls += 1;
                come.then_some(())
            });
            (got.is_some(), polls > before)
        };
        assert_eq!(wait(true), (true, true));
        for _ in 0..GIVE_UP_AFTER {
            assert_eq!(wait(false), (false, true), "spins until it gave up");
        }
        // Given up: of the next RETRY_EVERY waits, one spins.
        let spun = (0..RETRY_EVERY).filter(|_| wait(false).1).count();
        assert_eq!(spun, 1);
        // A spin that pays brings it back.
        let mut tries = 0;
        while !wait(true).0 {
            tries += 1;
            assert!(tries <= RETRY_EVERY, "never tried again");
        }
        assert_eq!(wait(false), (false, true), "spinning again after a success");
        s.misses.store(0, Ordering::Relaxed);
        s.saw(SPIN_MAX_MESSAGE + 1);
        assert_eq!(wait(true), (false, false), "no spin after a large message");
        s.saw(10);
        assert_eq!(wait(true), (true, true));
        s.saw_batch(SPIN_MAX_BATCH + 1, 10);
        assert_eq!(wait(true), (false, false), "no spin after a long batch");
        s.saw_batch(0, 10);
        assert_eq!(wait(true), (false, false), "an empty batch changes nothing");
        s.saw_batch(SPIN_MAX_BATCH, 10);
        assert_eq!(wait(true), (true, true), "a short batch spins again");
    }

    #[test]
    fn never_spins_on_a_runtime_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut polls = 0;
        rt.block_on(async {
            assert_eq!(
                spin(None, || {
                    polls += 1;
                    Some(1)
                }),
                None
            );
        });
        assert_eq!(polls, 0);
    }
}
