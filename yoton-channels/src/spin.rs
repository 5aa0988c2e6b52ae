//! Spin before sleeping: a blocking receive polls for a short while (yielding the
//! CPU between polls) before its thread goes to sleep. A message or reply that is on
//! its way is then taken without a thread wake-up, which costs more than the wait
//! itself on loopback: with it, the blocking pub/sub ping-pong went from 1.5x to
//! 0.9-1.0x the floor's round trip, and a blocking request/reply call from 2.0x to
//! 1.1-1.2x (`yoton bench --workload W3`). The cost: a receive that has to wait
//! keeps its CPU busy for up to [`BLOCKING_SPIN`] first, yielding it to any other
//! thread that wants it.

use std::time::{Duration, Instant};

/// How long a blocking receive polls before it sleeps (at most its own time-out).
/// Only threads outside any tokio runtime spin.
pub const BLOCKING_SPIN: Duration = Duration::from_micros(100);

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
