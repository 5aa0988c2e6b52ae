//! Busy polling: while a blocking receive spins, the context's own runtime polls its
//! sockets instead of sleeping.
//!
//! A blocking receive (`recv` of a subscriber, the result of a request) spins for a
//! while before its thread sleeps, so that a message on its way is taken without a
//! thread wake-up. But the message first has to be read, by the runtime's thread, and
//! that thread sleeps in `epoll_wait` between packets: its wake-up costs tens of
//! microseconds on an idle machine, once per message. While someone holds a
//! [`BusyPoll`] guard, a task keeps that thread polling instead: it yields to the
//! runtime (which polls its I/O without sleeping and runs its other tasks) and yields
//! the CPU to other threads between polls, so the spinning receiver still gets its
//! turn on a busy core. On the 2-core machine of `yoton bench`, the blocking pub/sub
//! ping-pong (p50) went from 46-55 to 15-21 µs over TCP, and from 65-93 to 23-32 µs
//! over QUIC.
//!
//! Only a runtime the context started for itself (outside any tokio runtime) is made
//! to poll: a runtime of the application's is left alone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crate::runtime::Rt;

/// The busy polling of one context's runtime: how many hold it, and whether the
/// polling task runs.
#[derive(Debug, Default)]
pub(crate) struct Poller {
    holders: AtomicUsize,
    running: AtomicBool,
}

impl Poller {
    /// Hold busy polling (a task on `rt` polls while anyone holds it), or only count
    /// the holder when the runtime is not the context's own.
    pub(crate) fn hold(self: &Arc<Self>, rt: &Rt) -> BusyPoll {
        self.holders.fetch_add(1, SeqCst);
        if rt.is_own() && !self.running.swap(true, SeqCst) {
            rt.spawn(self.clone().poll());
        }
        BusyPoll {
            poller: self.clone(),
        }
    }

    /// Poll while anyone holds on. A holder that comes as the task ends either sees
    /// `running` still set (and the task, checking again, goes on for it) or clears
    /// it and starts a new task.
    async fn poll(self: Arc<Self>) {
        loop {
            if self.holders.load(SeqCst) == 0 {
                self.running.store(false, SeqCst);
                if self.holders.load(SeqCst) == 0 || self.running.swap(true, SeqCst) {
                    return;
                }
            }
            // The CPU to another thread that wants it (the receiver spinning on it),
            // then the runtime: its I/O is polled without sleeping, its tasks run.
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
}

/// While this guard lives, the context's own runtime polls its sockets instead of
/// sleeping (see [`Context::busy_poll`](crate::Context::busy_poll)). Dropping it
/// lets the runtime sleep again once no other guard is held.
///
/// ```
/// let ctx = yoton_core::Context::new().unwrap();
/// let polling = ctx.busy_poll();
/// // ... wait for something that comes over the network, briefly ...
/// drop(polling);
/// ```
#[derive(Debug)]
#[must_use = "busy polling lasts while the guard lives"]
pub struct BusyPoll {
    poller: Arc<Poller>,
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        self.poller.holders.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_task_polls_while_a_guard_lives_and_ends_after_the_last() {
        let rt = Rt::current_or_new(1, 7).unwrap();
        let p = Arc::new(Poller::default());
        for _ in 0..3 {
            let a = p.hold(&rt);
            let b = p.hold(&rt);
            assert!(p.running.load(SeqCst));
            drop(a);
            std::thread::sleep(Duration::from_millis(5));
            assert!(p.running.load(SeqCst), "one guard is still held");
            drop(b);
            wait_until("the task ends", || !p.running.load(SeqCst));
            assert_eq!(p.holders.load(SeqCst), 0);
        }
    }

    #[test]
    fn guards_taken_and_dropped_from_many_threads_leave_no_task_behind() {
        let rt = Rt::current_or_new(1, 8).unwrap();
        let p = Arc::new(Poller::default());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        let _g = p.hold(&rt);
                    }
                });
            }
        });
        wait_until("the task ends", || !p.running.load(SeqCst));
        // A new guard starts polling again.
        let g = p.hold(&rt);
        assert!(p.running.load(SeqCst));
        drop(g);
        wait_until("the task ends again", || !p.running.load(SeqCst));
    }

    #[test]
    fn an_applications_runtime_is_left_alone() {
        let app = tokio::runtime::Runtime::new().unwrap();
        let rt = app.block_on(async { Rt::current_or_new(1, 9).unwrap() });
        let p = Arc::new(Poller::default());
        let g = p.hold(&rt);
        assert_eq!(p.holders.load(SeqCst), 1);
        assert!(!p.running.load(SeqCst), "no task on a runtime not our own");
        drop(g);
        assert_eq!(p.holders.load(SeqCst), 0);
    }
}
