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
//!
//! While a blocking receive spins, its context's runtime polls its sockets too
//! ([`Context::busy_poll`](yoton_core::Context::busy_poll)) instead of sleeping in
//! `epoll_wait` until the message comes: otherwise the message waits for that
//! thread's wake-up before the spinning receiver can see it. (Blocking pub/sub
//! ping-pong p50 over tcp from 46-55 to 15-21 µs, over QUIC from 65-93 to 23-32 µs.)
//!
//! Async waits (a [`Reply`](crate::Reply) awaited, [`SubChannel::recv_async`](crate::SubChannel::recv_async))
//! spin too, without holding their runtime's thread: between polls they yield
//! ([`tokio::task::yield_now`]), which lets the runtime run its other tasks and poll
//! its I/O driver without sleeping, so a reply read meanwhile is taken without the
//! wake-up of a thread asleep in `epoll_wait`. (W3 async over tcp, p50: the pub/sub
//! ping-pong from 88 to 11 µs, 1.08x to 0.16x the floor's round trip; request/reply
//! from 182 to 49 µs, 2.23x to 0.7x.)
//!
//! How long a channel spins is its own setting ([`SubChannel::set_spin`](crate::SubChannel::set_spin),
//! [`ReqChannel::set_spin`](crate::ReqChannel::set_spin)): zero turns spinning off.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a receive or a reply polls before it sleeps (at most its own time-out), by
/// default: blocking waits on threads outside any tokio runtime, and async waits
/// (which yield to their runtime between polls). Each channel can set its own.
pub const BLOCKING_SPIN: Duration = Duration::from_micros(100);

/// A channel's spin time ([`BLOCKING_SPIN`] unless set), shared by its handles.
#[derive(Debug)]
pub(crate) struct SpinLimit(AtomicU64);

impl Default for SpinLimit {
    fn default() -> Self {
        let l = SpinLimit(AtomicU64::new(0));
        l.set(BLOCKING_SPIN);
        l
    }
}

impl SpinLimit {
    pub(crate) fn set(&self, limit: Duration) {
        let nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

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
    /// How long a spin lasts.
    pub(crate) limit: SpinLimit,
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
        ctx: &yoton_core::Context,
        timeout: Option<Duration>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if !self.should_spin() {
            return None;
        }
        let limit = timeout.map_or(self.limit.get(), |t| t.min(self.limit.get()));
        self.count(spin(ctx, limit, ready))
    }

    /// [`spin_async`], unless skipped or the last spins of this channel found nothing.
    pub(crate) async fn spin_async<T>(&self, ready: impl FnMut() -> Option<T>) -> Option<T> {
        if !self.should_spin() {
            return None;
        }
        self.count(spin_async(self.limit.get(), ready).await)
    }

    fn should_spin(&self) -> bool {
        !self.limit.get().is_zero()
            && !self.skip.load(Ordering::Relaxed)
            && (self.misses.load(Ordering::Relaxed) < GIVE_UP_AFTER
                || self.waits.fetch_add(1, Ordering::Relaxed) % RETRY_EVERY == 0)
    }

    /// Keep count of the spins that found nothing.
    fn count<T>(&self, got: Option<T>) -> Option<T> {
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

/// Poll `ready` until it gives a value, for at most `limit`; `None` when nothing came
/// (the caller then sleeps). Meanwhile `ctx`'s runtime polls its sockets
/// ([`Context::busy_poll`](yoton_core::Context::busy_poll)): what comes is read at
/// once, not after its thread wakes up.
pub(crate) fn spin<T>(
    ctx: &yoton_core::Context,
    limit: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    if limit.is_zero() || tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    let _polling = ctx.busy_poll();
    let start = Instant::now();
    while start.elapsed() < limit {
        std::thread::yield_now();
        if let Some(v) = ready() {
            return Some(v);
        }
    }
    None
}

/// Poll `ready` between yields to the runtime, for at most `limit`; `None` when
/// nothing came (the caller then waits to be woken).
pub(crate) async fn spin_async<T>(
    limit: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let mut spin = AsyncSpin::new(limit);
    std::future::poll_fn(|cx| match ready() {
        Some(v) => Poll::Ready(Some(v)),
        None => spin.poll_spin(cx).map(|()| None),
    })
    .await
}

/// The spin of one async wait, for a hand-written future: after a check that found
/// nothing, [`AsyncSpin::poll_spin`].
#[derive(Debug, Clone)]
pub(crate) struct AsyncSpin {
    since: Option<Instant>,
    /// How long it lasts (zero once it is over).
    limit: Duration,
}

impl AsyncSpin {
    /// A spin of `limit` from the first [`AsyncSpin::poll_spin`].
    pub(crate) fn new(limit: Duration) -> Self {
        AsyncSpin { since: None, limit }
    }

    /// `Pending` while the spin lasts (the task yields: it is polled again, to check
    /// again, once the runtime has polled its I/O and run its other tasks); `Ready`
    /// once its time is over since the first call: then wait to be woken.
    pub(crate) fn poll_spin(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.limit {
            self.limit = Duration::ZERO;
            return Poll::Ready(());
        }
        // Its first poll hands the waker to the runtime (woken after the I/O poll)
        // and is always pending; dropping it then is what yield_now's caller does too.
        let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> yoton_core::Context {
        yoton_core::Context::new().unwrap()
    }

    #[test]
    fn takes_a_value_that_comes_while_spinning() {
        let mut polls = 0;
        let got = spin(&ctx(), Duration::from_secs(10), || {
            polls += 1;
            (polls == 3).then_some(42)
        });
        assert_eq!((got, polls), (Some(42), 3));
    }

    #[test]
    fn gives_up_after_the_spin_or_the_shorter_time_out() {
        let t = Instant::now();
        assert_eq!(spin(&ctx(), BLOCKING_SPIN, || None::<()>), None);
        let full = t.elapsed();
        assert!(full >= BLOCKING_SPIN, "{full:?}");
        let t = Instant::now();
        let mut polls = 0;
        assert_eq!(
            spin(&ctx(), Duration::ZERO, || {
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
        let ctx = ctx();
        let mut polls = 0;
        let mut wait = |come: bool| {
            let before = polls;
            let got = s.spin(&ctx, Some(Duration::from_micros(200)), || {
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
    fn an_async_spin_yields_to_its_runtime_and_ends_after_its_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // The value comes from another task of this one thread: only a spin that
            // yields lets it run.
            let flag = std::sync::Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                f.store(true, Ordering::Relaxed);
            });
            let got = spin_async(Duration::from_secs(10), || {
                flag.load(Ordering::Relaxed).then_some(7)
            });
            assert_eq!(got.await, Some(7));
            let t = Instant::now();
            assert_eq!(
                spin_async(Duration::from_millis(2), || None::<()>).await,
                None
            );
            assert!(t.elapsed() >= Duration::from_millis(2));
            let mut polls = 0;
            let none = spin_async(Duration::ZERO, || {
                polls += 1;
                None::<()>
            });
            assert_eq!((none.await, polls), (None, 1), "a zero spin checks once");
        });
    }

    #[test]
    fn never_spins_on_a_runtime_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut polls = 0;
        rt.block_on(async {
            assert_eq!(
                spin(&ctx(), BLOCKING_SPIN, || {
                    polls += 1;
                    Some(1)
                }),
                None
            );
        });
        assert_eq!(polls, 0);
    }
}
