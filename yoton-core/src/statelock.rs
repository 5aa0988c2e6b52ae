//! The lock of a context's state (router, registrations, send queues): the standard
//! library's mutex, which on Linux spins briefly and then sleeps on a futex.
//!
//! Every send takes this lock once, and a connection's writer takes it to empty its
//! queue, so a publisher thread and its writer thread meet on it millions of times a
//! second. `parking_lot`'s mutex, which the rest of the crate uses, answers a held
//! lock by calling `sched_yield` up to seven times before it sleeps. On a machine
//! with fewer cores than busy threads (two cores, a publisher's two threads and a
//! subscriber's two) those yields fed on each other: some runs of `yoton bench`'s W1
//! spent 20-120 k `sched_yield` calls and up to twice the publisher's CPU time, and
//! their rate fell to half. With this lock, 16 alternating pairs of 5 M 64-byte
//! messages over tcp gave 11.1-16.0 M msg/s (median 14.8 M) against 6.7-16.9 M
//! (median 14.0 M), and the publisher used 305-440 ms of CPU (median 335) against
//! 317-852 ms (median 370).
//!
//! A poisoned lock is taken all the same: the state is kept consistent by each
//! critical section (nothing in them panics on purpose), and a context must go on
//! routing after a panic in a user's callback elsewhere.

/// A mutex whose `lock` returns the guard directly, like `parking_lot`'s.
#[derive(Debug, Default)]
pub(crate) struct StateLock<T>(std::sync::Mutex<T>);

impl<T> StateLock<T> {
    pub(crate) fn new(value: T) -> Self {
        StateLock(std::sync::Mutex::new(value))
    }

    /// Take the lock (a poisoned one too, see the module's documentation).
    #[inline]
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value, through exclusive access (no locking).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_taken_all_the_same() {
        let lock = std::sync::Arc::new(StateLock::new(1));
        let held = lock.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("a panic while the lock is held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(lock.0.is_poisoned());
        *lock.lock() += 1;
        assert_eq!(*lock.lock(), 2);
    }
}
