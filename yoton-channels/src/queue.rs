//! The incoming queue of a channel: bounded, with a discard policy and a counter of
//! discarded messages, waited on by blocking and async receivers alike, plus the
//! coalesced `received` notification.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};
use yoton_core::Package;

/// Default maximum queue length (the reference's).
pub const DEFAULT_QUEUE_LEN: usize = 10_000;

/// Emptied runs kept for reuse (their buffers go to the reader for its next batches),
/// at most this many, of at most [`SPARE_MAX`] entries each.
const SPARES: usize = 4;

/// The largest emptied run kept for reuse (entries); a larger one is freed.
const SPARE_MAX: usize = 16 * 1024;

/// Queued packages with their receive sequence numbers, in arrival order.
type Run = VecDeque<(Package, u64)>;

/// What a full queue drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiscardMode {
    /// Drop the oldest queued message to make room (the default, as in the reference).
    #[default]
    Old,
    /// Drop the message that just arrived.
    New,
}

struct State {
    /// The queue: runs of packages in arrival order, each a batch as a reader handed
    /// it over (moved in whole, not copied entry by entry), or single packages
    /// appended to the last run. No run is empty.
    runs: VecDeque<Run>,
    /// Packages in `runs`.
    len: usize,
    /// Emptied runs, for the readers' next batches (see [`SPARES`]).
    spare: Vec<Run>,
    max_len: usize,
    mode: DiscardMode,
    closed: bool,
}

impl State {
    fn pop_front(&mut self) -> Option<(Package, u64)> {
        let run = self.runs.front_mut()?;
        let x = run.pop_front()?;
        self.len -= 1;
        if run.is_empty() {
            if let Some(run) = self.runs.pop_front() {
                self.keep_spare(run);
            }
        }
        Some(x)
    }

    fn push_back(&mut self, item: (Package, u64)) {
        match self.runs.back_mut() {
            Some(run) => run.push_back(item),
            None => {
                let mut run = self.spare.pop().unwrap_or_default();
                run.push_back(item);
                self.runs.push_back(run);
            }
        }
        self.len += 1;
    }

    /// Keep an emptied run for reuse (see [`SPARES`]).
    fn keep_spare(&mut self, mut run: Run) {
        run.clear();
        if run.capacity() > 0 && run.capacity() <= SPARE_MAX && self.spare.len() < SPARES {
            self.spare.push(run);
        }
    }

    fn front(&self) -> Option<&(Package, u64)> {
        self.runs.front()?.front()
    }

    fn back(&self) -> Option<&(Package, u64)> {
        self.runs.back()?.back()
    }
}

/// A bounded queue of received packages with their receive sequence numbers.
pub(crate) struct Inbox {
    state: Mutex<State>,
    notify: Notify,
    discarded: AtomicU64,
    /// The queue length as of the last change, readable without the lock (a hint
    /// for spinning receivers).
    pending: AtomicUsize,
}

impl Inbox {
    pub(crate) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                runs: VecDeque::new(),
                len: 0,
                spare: Vec::new(),
                max_len: DEFAULT_QUEUE_LEN,
                mode: DiscardMode::Old,
                closed: false,
            }),
            notify: Notify::new(),
            discarded: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        }
    }

    fn mark(&self, st: &State) {
        self.pending.store(st.len, Ordering::Release);
    }

    /// Whether something may be queued (no lock taken).
    pub(crate) fn may_have(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    pub(crate) fn set_limit(&self, max_len: usize, mode: DiscardMode) {
        let mut st = self.state.lock();
        st.max_len = max_len.max(1);
        st.mode = mode;
        while st.len > st.max_len {
            st.pop_front();
            self.discarded.fetch_add(1, Ordering::Relaxed);
        }
        self.mark(&st);
    }

    /// Queue one package within the limit: a full queue drops its oldest (`Old`) or
    /// this one (`New`), counted.
    fn push_bounded(&self, st: &mut State, item: (Package, u64)) {
        if st.len >= st.max_len {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            match st.mode {
                DiscardMode::Old => {
                    st.pop_front();
                }
                DiscardMode::New => return,
            }
        }
        st.push_back(item);
    }

    /// Queue a package; returns the queue length afterwards.
    pub(crate) fn push(&self, p: Package, seq: u64) -> usize {
        let mut st = self.state.lock();
        self.push_bounded(&mut st, (p, seq));
        self.mark(&st);
        let n = st.len;
        drop(st);
        self.notify.notify_one();
        n
    }

    /// Queue several packages (one lock, one wake-up); returns the length afterwards.
    /// A batch that fits is moved in as a run of its own (no package is moved), and
    /// the caller gets an emptied run's buffer, or none, for its next batch.
    pub(crate) fn push_many(&self, batch: &mut Vec<(Package, u64)>) -> usize {
        let mut st = self.state.lock();
        if batch.is_empty() {
            return st.len;
        }
        if st.len.saturating_add(batch.len()) <= st.max_len {
            let next = Vec::from(st.spare.pop().unwrap_or_default());
            let run = Run::from(std::mem::replace(batch, next));
            st.len += run.len();
            st.runs.push_back(run);
        } else {
            for item in batch.drain(..) {
                self.push_bounded(&mut st, item);
            }
        }
        self.mark(&st);
        let n = st.len;
        drop(st);
        self.notify.notify_one();
        n
    }

    pub(crate) fn pop(&self) -> Option<(Package, u64)> {
        let mut st = self.state.lock();
        let x = st.pop_front();
        self.mark(&st);
        x
    }

    /// [`Inbox::pop`], without taking the lock when nothing is queued: what a spinning
    /// receive polls.
    pub(crate) fn poll_pop(&self) -> Option<(Package, u64)> {
        self.may_have().then(|| self.pop()).flatten()
    }

    /// Everything queued, as the runs themselves (no package is moved), and how many
    /// packages they hold; hand the runs back with [`Inbox::recycle`] once emptied.
    pub(crate) fn take_all(&self) -> (VecDeque<Run>, usize) {
        let mut st = self.state.lock();
        let all = std::mem::take(&mut st.runs);
        let n = std::mem::replace(&mut st.len, 0);
        self.mark(&st);
        (all, n)
    }

    /// Give back the runs from [`Inbox::take_all`] (a few are kept, see [`SPARES`]).
    pub(crate) fn recycle(&self, runs: VecDeque<Run>) {
        let mut st = self.state.lock();
        for run in runs {
            st.keep_spare(run);
        }
    }

    /// Pop the leading packages whose receive sequence is at most `seq`.
    pub(crate) fn drain_upto(&self, seq: u64) -> Vec<(Package, u64)> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        while st.front().is_some_and(|(_, s)| *s <= seq) {
            out.extend(st.pop_front());
        }
        self.mark(&st);
        out
    }

    /// (first pending receive sequence, last pending + 1).
    pub(crate) fn pending_seqs(&self) -> Option<(u64, u64)> {
        let st = self.state.lock();
        Some((st.front()?.1, st.back()?.1 + 1))
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().len
    }

    pub(crate) fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Wait for a package; None once the queue is closed and empty.
    pub(crate) async fn pop_wait(&self) -> Option<(Package, u64)> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock();
                if let Some(x) = st.pop_front() {
                    self.mark(&st);
                    return Some(x);
                }
                if st.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Like [`Inbox::pop_wait`], bounded by `timeout` (None: forever).
    pub(crate) async fn pop_timeout(&self, timeout: Option<Duration>) -> Option<(Package, u64)> {
        match timeout {
            None => self.pop_wait().await,
            Some(t) => tokio::time::timeout(t, self.pop_wait())
                .await
                .ok()
                .flatten(),
        }
    }
}

type Callback = Box<dyn Fn() + Send + Sync>;

/// The coalesced `received` notification: many arrivals may give one emission; the
/// callbacks run on a runtime task, never inside the router.
pub(crate) struct Notifier {
    posted: AtomicBool,
    /// Someone may listen (a callback, a stream or the signal was asked for): until
    /// then an arrival costs nothing (no task per batch).
    wanted: AtomicBool,
    callbacks: Mutex<Vec<Arc<Callback>>>,
    tx: broadcast::Sender<()>,
    signal: yoton_core::events::Signal<()>,
}

impl Notifier {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Notifier {
            posted: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            callbacks: Mutex::new(Vec::new()),
            tx: broadcast::channel(16).0,
            signal: yoton_core::events::Signal::new(),
        })
    }

    pub(crate) fn add(&self, f: Callback) {
        self.callbacks.lock().push(Arc::new(f));
        self.wanted.store(true, Ordering::Release);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<()> {
        self.wanted.store(true, Ordering::Release);
        self.tx.subscribe()
    }

    pub(crate) fn signal(&self) -> &yoton_core::events::Signal<()> {
        self.wanted.store(true, Ordering::Release);
        &self.signal
    }

    /// Something arrived: emit once for everything that arrives until the emission ran.
    pub(crate) fn arrived(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        if !self.wanted.load(Ordering::Acquire) || self.posted.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        rt.spawn(async move {
            me.posted.store(false, Ordering::Release);
            let callbacks: Vec<Arc<Callback>> = me.callbacks.lock().clone();
            for cb in callbacks {
                cb();
            }
            let _ = me.tx.send(());
            me.signal.emit(());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(i: u64) -> Package {
        Package::new(1, vec![i as u8; 4])
    }

    fn batch(seqs: std::ops::Range<u64>) -> Vec<(Package, u64)> {
        seqs.map(|i| (package(i), i)).collect()
    }

    fn taken(inbox: &Inbox) -> Vec<u64> {
        let (runs, n) = inbox.take_all();
        let seqs: Vec<u64> = runs.iter().flatten().map(|(_, s)| *s).collect();
        assert_eq!(seqs.len(), n);
        inbox.recycle(runs);
        seqs
    }

    #[test]
    fn batches_are_moved_in_whole_and_an_emptied_run_comes_back_to_the_reader() {
        let inbox = Inbox::new();
        let mut first = batch(0..100);
        let first_at = first.as_ptr() as usize;
        assert_eq!(inbox.push_many(&mut first), 100);
        // Into a queue that holds packages, the next batch is moved in too.
        let mut second = batch(100..150);
        let second_at = second.as_ptr() as usize;
        assert_eq!(inbox.push_many(&mut second), 150);
        assert!(first.is_empty() && second.is_empty());
        {
            let st = inbox.state.lock();
            let at: Vec<usize> = st
                .runs
                .iter()
                .map(|r| r.as_slices().0.as_ptr() as usize)
                .collect();
            assert_eq!(at, [first_at, second_at], "the batches were copied");
        }
        inbox.push(package(150), 150);
        assert_eq!(inbox.pop().map(|(_, s)| s), Some(0));
        assert_eq!(inbox.pending_seqs(), Some((1, 151)));
        assert_eq!(taken(&inbox), (1..151).collect::<Vec<_>>());
        assert!(!inbox.may_have() && inbox.len() == 0);
        // The emptied runs' buffers go to the reader for its next batches.
        let mut next = batch(200..201);
        inbox.push_many(&mut next);
        assert!(next.is_empty() && next.capacity() >= 50);
        // A run that grew too large is not kept.
        inbox.recycle([Run::with_capacity(SPARE_MAX + 1)].into());
        assert!(inbox
            .state
            .lock()
            .spare
            .iter()
            .all(|r| r.capacity() <= SPARE_MAX));
        assert_eq!(taken(&inbox), [200]);
    }

    #[test]
    fn limits_and_draining_work_across_runs() {
        let inbox = Inbox::new();
        inbox.push_many(&mut batch(0..5));
        inbox.push_many(&mut batch(5..10));
        inbox.push(package(10), 10);
        assert_eq!(inbox.len(), 11);
        let drained: Vec<u64> = inbox.drain_upto(6).into_iter().map(|(_, s)| s).collect();
        assert_eq!(drained, (0..7).collect::<Vec<_>>());
        assert_eq!(inbox.pending_seqs(), Some((7, 11)));
        // A lower limit drops the oldest, across runs.
        inbox.push_many(&mut batch(11..14));
        inbox.set_limit(5, DiscardMode::Old);
        assert_eq!(inbox.discarded(), 2);
        assert_eq!(taken(&inbox), (9..14).collect::<Vec<_>>());
        // A batch above the limit keeps only the newest (Old) ...
        assert_eq!(inbox.push_many(&mut batch(20..50)), 5);
        assert_eq!(taken(&inbox), (45..50).collect::<Vec<_>>());
        assert_eq!(inbox.discarded(), 27);
        // ... or only the first that fit (New).
        inbox.set_limit(3, DiscardMode::New);
        inbox.push_many(&mut batch(60..62));
        assert_eq!(inbox.push_many(&mut batch(62..65)), 3);
        assert_eq!(taken(&inbox), [60, 61, 62]);
        assert_eq!(inbox.discarded(), 29);
    }
}
