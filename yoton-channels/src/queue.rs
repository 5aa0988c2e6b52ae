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

/// The largest emptied queue kept for reuse (entries); a larger one is freed.
const SPARE_MAX: usize = 64 * 1024;

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
    q: VecDeque<(Package, u64)>,
    /// An emptied queue given back by [`Inbox::recycle`]: the next [`Inbox::take_all`]
    /// puts it in place of the one it takes, so neither grows again.
    spare: VecDeque<(Package, u64)>,
    max_len: usize,
    mode: DiscardMode,
    closed: bool,
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
                q: VecDeque::new(),
                spare: VecDeque::new(),
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
        self.pending.store(st.q.len(), Ordering::Release);
    }

    /// Whether something may be queued (no lock taken).
    pub(crate) fn may_have(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    pub(crate) fn set_limit(&self, max_len: usize, mode: DiscardMode) {
        let mut st = self.state.lock();
        st.max_len = max_len.max(1);
        st.mode = mode;
        while st.q.len() > st.max_len {
            st.q.pop_front();
            self.discarded.fetch_add(1, Ordering::Relaxed);
        }
        self.mark(&st);
    }

    /// Queue a package; returns the queue length afterwards.
    pub(crate) fn push(&self, p: Package, seq: u64) -> usize {
        let mut st = self.state.lock();
        if st.q.len() >= st.max_len {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            match st.mode {
                DiscardMode::Old => {
                    st.q.pop_front();
                }
                DiscardMode::New => return st.q.len(),
            }
        }
        st.q.push_back((p, seq));
        self.mark(&st);
        let n = st.q.len();
        drop(st);
        self.notify.notify_one();
        n
    }

    /// Queue several packages (one lock, one wake-up); returns the length afterwards.
    pub(crate) fn push_many(&self, batch: &mut Vec<(Package, u64)>) -> usize {
        let mut st = self.state.lock();
        if st.q.is_empty() && batch.len() <= st.max_len {
            // Nothing queued (a receiver that keeps up): the batch becomes the queue,
            // no package moved, and the empty queue's buffer goes back to the caller
            // for its next batch (both conversions take the buffer as it is).
            let batch_q = VecDeque::from(std::mem::take(batch));
            *batch = Vec::from(std::mem::replace(&mut st.q, batch_q));
        } else if st.q.len().saturating_add(batch.len()) <= st.max_len {
            // Room for all: one reserve and copy, no check per package.
            st.q.extend(batch.drain(..));
        } else {
            for item in batch.drain(..) {
                if st.q.len() >= st.max_len {
                    self.discarded.fetch_add(1, Ordering::Relaxed);
                    match st.mode {
                        DiscardMode::Old => {
                            st.q.pop_front();
                        }
                        DiscardMode::New => continue,
                    }
                }
                st.q.push_back(item);
            }
        }
        self.mark(&st);
        let n = st.q.len();
        drop(st);
        self.notify.notify_one();
        n
    }

    pub(crate) fn pop(&self) -> Option<(Package, u64)> {
        let mut st = self.state.lock();
        let x = st.q.pop_front();
        self.mark(&st);
        x
    }

    /// Everything queued, as the queue itself (no package is moved); hand it back
    /// with [`Inbox::recycle`] once emptied.
    pub(crate) fn take_all(&self) -> VecDeque<(Package, u64)> {
        let mut st = self.state.lock();
        let spare = std::mem::take(&mut st.spare);
        let all = std::mem::replace(&mut st.q, spare);
        self.mark(&st);
        all
    }

    /// Give back a queue from [`Inbox::take_all`] (kept unless it grew beyond
    /// [`SPARE_MAX`] entries).
    pub(crate) fn recycle(&self, mut q: VecDeque<(Package, u64)>) {
        q.clear();
        if q.capacity() > SPARE_MAX {
            return;
        }
        let mut st = self.state.lock();
        if st.spare.capacity() < q.capacity() {
            st.spare = q;
        }
    }

    /// Pop the leading packages whose receive sequence is at most `seq`.
    pub(crate) fn drain_upto(&self, seq: u64) -> Vec<(Package, u64)> {
        let mut st = self.state.lock();
        let n = st.q.iter().take_while(|(_, s)| *s <= seq).count();
        let out = st.q.drain(..n).collect();
        self.mark(&st);
        out
    }

    /// (first pending receive sequence, last pending + 1).
    pub(crate) fn pending_seqs(&self) -> Option<(u64, u64)> {
        let st = self.state.lock();
        Some((st.q.front()?.1, st.q.back()?.1 + 1))
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().q.len()
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
                if let Some(x) = st.q.pop_front() {
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

    fn seqs(q: &VecDeque<(Package, u64)>) -> Vec<u64> {
        q.iter().map(|(_, s)| *s).collect()
    }

    #[test]
    fn take_all_hands_out_the_queue_and_a_recycled_one_takes_its_place() {
        let inbox = Inbox::new();
        let package = |i: u64| Package::new(1, vec![i as u8; 4]);
        let mut batch: Vec<_> = (0..100).map(|i| (package(i), i)).collect();
        inbox.push_many(&mut batch);
        let all = inbox.take_all();
        assert_eq!(seqs(&all), (0..100).collect::<Vec<_>>());
        assert!(!inbox.may_have() && inbox.len() == 0);
        let room = all.capacity();
        inbox.recycle(all);
        inbox.push(package(100), 100);
        assert_eq!(seqs(&inbox.take_all()), [100]);
        // The recycled queue is now the one that fills, with its room.
        assert!(inbox.state.lock().q.capacity() >= room);
        inbox.push(package(101), 101);
        assert_eq!(seqs(&inbox.take_all()), [101]);
        // A queue that grew too large is not kept.
        inbox.recycle(VecDeque::with_capacity(SPARE_MAX + 1));
        assert!(inbox.state.lock().spare.capacity() <= SPARE_MAX);
    }

    #[test]
    fn a_batch_into_an_empty_queue_becomes_the_queue_and_its_buffer_comes_back() {
        let inbox = Inbox::new();
        let package = |i: u64| Package::new(1, vec![i as u8; 4]);
        // Give the queue a buffer of its own first.
        inbox.recycle(VecDeque::with_capacity(500));
        drop(inbox.take_all());
        let queue_room = inbox.state.lock().q.capacity();
        assert!(queue_room >= 500);
        let mut batch: Vec<_> = (0..100).map(|i| (package(i), i)).collect();
        let batch_at = batch.as_ptr() as usize;
        assert_eq!(inbox.push_many(&mut batch), 100);
        // The batch's own buffer is now the queue, and the queue's went to the caller.
        assert!(batch.is_empty());
        assert_eq!(batch.capacity(), queue_room);
        assert_eq!(
            inbox.state.lock().q.as_slices().0.as_ptr() as usize,
            batch_at
        );
        // Into a queue that holds packages, a batch is appended as before.
        batch.extend((100..150).map(|i| (package(i), i)));
        assert_eq!(inbox.push_many(&mut batch), 150);
        assert!(batch.is_empty());
        assert_eq!(seqs(&inbox.take_all()), (0..150).collect::<Vec<_>>());
        // A batch above the limit into an empty queue still keeps only the newest.
        inbox.set_limit(10, DiscardMode::Old);
        let mut batch: Vec<_> = (200..230).map(|i| (package(i), i)).collect();
        assert_eq!(inbox.push_many(&mut batch), 10);
        assert_eq!(seqs(&inbox.take_all()), (220..230).collect::<Vec<_>>());
        assert_eq!(inbox.discarded(), 20);
    }
}
