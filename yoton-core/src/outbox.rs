//! Every connection's send queue. The queues live in the context's state, under the
//! lock that also guards the router: a send stamps its package with the next
//! sequence number and appends it to the queue of each connection in one critical
//! section (one lock per send, not one for the context and another per connection),
//! so every connection carries a source's packages in the order of their numbers.
//! A connection's writer takes everything queued at once, under the same lock.

use std::collections::VecDeque;

use bytes::BytesMut;

use crate::connection::Connection;
use crate::link::Outgoing;
use crate::package::{Frame, HEADER_SIZE};
use crate::pool::BufferPool;
use crate::router::LinkId;
use crate::stream::COPY_THRESHOLD;

/// Soft limits of a send queue: above either, senders wait (up to 1 s). Packages
/// beyond [`HARD_LIMIT_FACTOR`] times either limit are discarded and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Packages queued.
    pub packages: usize,
    /// Payload bytes queued.
    pub bytes: usize,
}

/// Once a send queue holds this many times its soft limits (packages or bytes),
/// further packages are discarded and counted in
/// [`Connection::discarded`](crate::Connection::discarded) until it drains: it holds
/// at most the hard limit plus one package, whatever that package's size. Context
/// messages (`NEW_CONNECTION`, ...) are never discarded.
pub const HARD_LIMIT_FACTOR: usize = 4;

impl QueueLimits {
    /// The hard limits.
    fn hard(&self) -> QueueLimits {
        QueueLimits {
            packages: self.packages.saturating_mul(HARD_LIMIT_FACTOR),
            bytes: self.bytes.saturating_mul(HARD_LIMIT_FACTOR),
        }
    }

    #[inline(always)]
    fn reached(&self, packages: usize, bytes: usize) -> bool {
        packages >= self.packages || bytes >= self.bytes
    }
}

/// What became of a package handed to a connection's send queue. Not to be dropped:
/// a `wake` in it is the only wake-up the writer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the writer must be woken when the push says so (see AfterPush)"]
pub(crate) enum Pushed {
    /// Queued; `wait` when a local sender should now wait for room (the queue is at
    /// or above its soft limits and the connection is not stalled); `wake` when the
    /// queue was empty, so its writer may be asleep (see [`AfterPush`]).
    Queued { wait: bool, wake: bool },
    /// The queue was at its hard limit: the package was dropped and counted; `wait`
    /// as above (the queue is full, but a local sender has not yet waited it out).
    Discarded { wait: bool },
    /// The connection no longer sends.
    Closed,
}

impl Pushed {
    /// A local sender should wait for room.
    pub(crate) fn should_wait(self) -> bool {
        matches!(
            self,
            Pushed::Queued { wait: true, .. } | Pushed::Discarded { wait: true }
        )
    }

    /// The queue's writer must be woken.
    pub(crate) fn should_wake(self) -> bool {
        matches!(self, Pushed::Queued { wake: true, .. })
    }
}

/// What pushing under the context's lock leaves to do once the lock is released:
/// wake the writers whose queues were empty, and the connections whose queues
/// reached their soft limit (a local sender waits for those). A writer woken while
/// the lock is held would run straight into it: blocking pub/sub ping-pong took
/// 104-106 µs with the wake-up under the lock against 75-90 µs before the queues
/// moved under it (the floor: 87-91 µs; three alternating runs each).
#[derive(Default)]
pub(crate) struct AfterPush {
    wake: Vec<Connection>,
    full: Vec<Connection>,
}

impl AfterPush {
    /// Note what pushing to `c` gave, for a local sender: writers to wake and the
    /// connections to wait for.
    #[inline]
    pub(crate) fn note(&mut self, c: &Connection, pushed: Pushed) {
        self.note_wake(c, pushed);
        if pushed.should_wait() {
            self.full.push(c.clone());
        }
    }

    /// Note only the writer to wake (forwarding and the start-up queue never wait).
    #[inline]
    pub(crate) fn note_wake(&mut self, c: &Connection, pushed: Pushed) {
        if pushed.should_wake() {
            self.wake.push(c.clone());
        }
    }

    /// Some send queue reached its soft limit: a local sender should stop and wait.
    #[inline]
    pub(crate) fn must_wait(&self) -> bool {
        !self.full.is_empty()
    }

    /// Wake the writers (after the lock is released); the connections a local
    /// sender should wait for are left.
    #[inline]
    pub(crate) fn wake(self) -> Vec<Connection> {
        for c in &self.wake {
            c.wake_writer();
        }
        self.full
    }
}

/// The send queues of a context's connections. A connection keeps the index of
/// its queue (its slot) and its link id: a send looks its queues up by index, and a
/// slot freed by a finished connection and taken by a new one is told apart by the
/// link id.
#[derive(Default)]
pub(crate) struct Queues {
    slots: Vec<Option<(LinkId, Queue)>>,
    free: Vec<usize>,
}

impl Queues {
    /// Keep `queue` for `link`; its slot.
    pub(crate) fn insert(&mut self, link: LinkId, queue: Queue) -> usize {
        if let Some(slot) = self.free.pop() {
            if let Some(entry) = self.slots.get_mut(slot) {
                *entry = Some((link, queue));
                return slot;
            }
        }
        self.slots.push(Some((link, queue)));
        self.slots.len() - 1
    }

    /// The queue of `link`, kept in `slot`.
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: usize, link: LinkId) -> Option<&mut Queue> {
        match self.slots.get_mut(slot) {
            Some(Some((l, q))) if *l == link => Some(q),
            _ => None,
        }
    }

    /// Take out the queue of `link`, kept in `slot`.
    pub(crate) fn remove(&mut self, slot: usize, link: LinkId) -> Option<Queue> {
        let entry = self.slots.get_mut(slot)?;
        if entry.as_ref().is_some_and(|(l, _)| *l == link) {
            self.free.push(slot);
            entry.take().map(|(_, q)| q)
        } else {
            None
        }
    }
}

/// One connection's send queue.
pub(crate) struct Queue {
    limits: QueueLimits,
    hard: QueueLimits,
    /// In order: runs of small packages in wire encoding, large packages, signals.
    items: VecDeque<Outgoing>,
    /// Small packages queued after the last item, already in wire encoding (encoded
    /// here, in the sender's thread, so the writer only hands bytes to the link and
    /// a payload is freed by the thread that made it).
    open: BytesMut,
    /// Where the runs come from: the writer drops a run once it is written, and the
    /// pool hands its memory out again (no fresh pages for every 64 KiB sent).
    runs: BufferPool,
    /// Entries (packages and signals) queued and not yet taken by the writer.
    queued: usize,
    /// Entries taken by the writer and not yet written.
    in_flight: usize,
    /// Payload bytes queued and in flight.
    pub(crate) bytes: usize,
    /// Of those, in flight.
    bytes_in_flight: usize,
    /// Entries ever queued.
    pub(crate) pushed: u64,
    /// Entries ever written.
    pub(crate) written: u64,
    /// Set once the goodbye is queued (or the connection died): nothing more is accepted.
    pub(crate) sealed: bool,
    /// A local sender waited the full time for room and got none: senders stop
    /// waiting for this connection (it only queues up to the hard limit, then
    /// discards) until its queue is below the soft limits again.
    pub(crate) stalled: bool,
}

impl Queue {
    pub(crate) fn new(limits: QueueLimits) -> Queue {
        Queue {
            limits,
            hard: limits.hard(),
            items: VecDeque::new(),
            open: BytesMut::new(),
            runs: BufferPool::new(OPEN_RUN_CHUNK, KEEP_RUNS),
            queued: 0,
            in_flight: 0,
            bytes: 0,
            bytes_in_flight: 0,
            pushed: 0,
            written: 0,
            sealed: false,
            stalled: false,
        }
    }

    /// Entries queued or in flight.
    pub(crate) fn len(&self) -> usize {
        self.queued + self.in_flight
    }

    /// Nothing left for the writer to take.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.open.is_empty()
    }

    /// At or above a soft limit.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.limits.reached(self.len(), self.bytes)
    }

    /// At or above a hard limit (and not empty): packages that are not exempt are
    /// discarded.
    #[inline]
    pub(crate) fn is_over_hard_limit(&self) -> bool {
        let entries = self.len();
        entries > 0 && self.hard.reached(entries, self.bytes)
    }

    /// A local sender should wait for room now.
    #[inline]
    pub(crate) fn should_wait(&self) -> bool {
        !self.stalled && self.is_full()
    }

    /// Queue a frame: small packages join the open run, anything else closes it.
    pub(crate) fn push(&mut self, frame: Frame) {
        if let Frame::Package(p) = &frame {
            if p.payload.len() <= COPY_THRESHOLD {
                self.push_encoded(&p.header(), &p.payload);
                return;
            }
        }
        self.bytes += frame.payload().len();
        self.queued += 1;
        self.pushed += 1;
        self.close_run();
        self.items.push_back(Outgoing::Frame(frame));
    }

    /// Queue a small package given as its header and payload (encoded into the run).
    #[inline(always)]
    pub(crate) fn push_encoded(&mut self, header: &[u8; HEADER_SIZE], payload: &[u8]) {
        self.bytes += payload.len();
        self.queued += 1;
        self.pushed += 1;
        let need = HEADER_SIZE + payload.len();
        if self.open.capacity() - self.open.len() < need {
            // A full run goes to the writer as it is and a new one starts: growing
            // it would copy everything in it (the writer takes several runs at once).
            self.close_run();
            self.open = self.runs.take(need);
        }
        self.open.extend_from_slice(header);
        self.open.extend_from_slice(payload);
    }

    fn close_run(&mut self) {
        if !self.open.is_empty() {
            self.items
                .push_back(Outgoing::Encoded(self.open.split().freeze()));
        }
    }

    /// Everything queued, for the writer.
    pub(crate) fn take(&mut self, batch: &mut Vec<Outgoing>) {
        self.close_run();
        batch.extend(self.items.drain(..));
        self.in_flight += self.queued;
        self.queued = 0;
        self.bytes_in_flight = self.bytes;
    }

    /// The writer wrote what it took: count it, and end a stall once the queue is
    /// below its soft limits. True when more is queued already.
    pub(crate) fn wrote(&mut self) -> bool {
        self.written += self.in_flight as u64;
        self.in_flight = 0;
        // What is still queued was counted after the take.
        self.bytes = self.bytes.saturating_sub(self.bytes_in_flight);
        self.bytes_in_flight = 0;
        if self.stalled && !self.is_full() {
            self.stalled = false;
        }
        !self.is_empty()
    }
}

/// Room reserved at a time for the open run of encoded packages.
const OPEN_RUN_CHUNK: usize = 64 * 1024;

/// Runs kept for reuse (the writer holds the runs of one batch while it writes; a
/// queue that stops sending keeps at most this many allocated).
const KEEP_RUNS: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Package;

    /// Decode what a byte stream would carry for this batch.
    fn wire(batch: &[Outgoing]) -> Vec<Frame> {
        use tokio_util::codec::Decoder;
        let mut buf = BytesMut::new();
        for item in batch {
            match item {
                Outgoing::Encoded(b) => buf.extend_from_slice(b),
                Outgoing::Frame(f) => {
                    buf.extend_from_slice(&f.header());
                    buf.extend_from_slice(f.payload());
                }
            }
        }
        let mut codec = crate::PackageCodec::default();
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty());
        out
    }

    const LIMITS: QueueLimits = QueueLimits {
        packages: 4,
        bytes: 1 << 20,
    };

    #[test]
    fn small_packages_are_encoded_in_runs_and_order_is_kept() {
        let mut q = Queue::new(LIMITS);
        let small = |i: u8| Frame::Package(Package::new(u64::from(i), vec![i; 10]));
        let large = Frame::Package(Package::new(99, vec![7u8; COPY_THRESHOLD + 1]));
        let frames = vec![
            small(1),
            small(2),
            large.clone(),
            small(3),
            Frame::Goodbye,
            small(4),
        ];
        for f in frames.clone() {
            q.push(f);
        }
        assert_eq!(q.len(), 6);
        assert_eq!(q.bytes, 4 * 10 + COPY_THRESHOLD + 1);
        let mut batch = Vec::new();
        q.take(&mut batch);
        // Two small ones in one run, the large one by reference, one small, the
        // goodbye, the last small one: five items for six entries.
        assert_eq!(batch.len(), 5);
        assert!(matches!(&batch[0], Outgoing::Encoded(b) if b.len() == 2 * (HEADER_SIZE + 10)));
        assert_eq!(batch[1], Outgoing::Frame(large));
        assert_eq!(batch[3], Outgoing::Frame(Frame::Goodbye));
        assert_eq!(wire(&batch), frames);
        // Taken: in flight until written, still counted against the limits.
        assert!(q.is_empty());
        assert_eq!((q.queued, q.in_flight, q.len()), (0, 6, 6));
        assert_eq!(q.bytes_in_flight, q.bytes);
        q.push(small(5));
        assert_eq!(q.len(), 7);
        // Written: only the entry queued since is left, and the writer hears of it.
        assert!(q.wrote());
        assert_eq!((q.len(), q.bytes, q.written, q.pushed), (1, 10, 6, 7));
    }

    #[test]
    fn a_written_run_is_filled_again_instead_of_fresh_memory() {
        let mut q = Queue::new(QueueLimits {
            packages: 1 << 20,
            bytes: 1 << 30,
        });
        let header = Package::new(1, vec![0u8; 64]).header();
        // Enough packages for two full runs and the start of a third.
        let per_run = OPEN_RUN_CHUNK / (HEADER_SIZE + 64);
        let send_and_write = |q: &mut Queue| {
            for _ in 0..2 * per_run + 1 {
                q.push_encoded(&header, &[5u8; 64]);
            }
            let mut batch = Vec::new();
            q.take(&mut batch);
            q.wrote();
            batch
                .iter()
                .map(|o| match o {
                    Outgoing::Encoded(b) => b.as_ptr() as usize,
                    Outgoing::Frame(_) => 0,
                })
                .collect::<Vec<_>>()
        };
        let first = send_and_write(&mut q);
        assert_eq!(first.len(), 3);
        // Dropped by the writer (the batch above is gone). Memory freed now would
        // go to these allocations of the same size; the pool keeps its runs, so the
        // next runs are the same memory again.
        let soak: Vec<Vec<u8>> = (0..4).map(|_| vec![1u8; OPEN_RUN_CHUNK]).collect();
        let second = send_and_write(&mut q);
        drop(soak);
        assert!(
            second.iter().any(|at| first.contains(at)),
            "{first:x?} then {second:x?}"
        );
    }

    #[test]
    fn a_reused_slot_belongs_to_the_new_link_only() {
        let mut qs = Queues::default();
        let a = qs.insert(1, Queue::new(LIMITS));
        let b = qs.insert(2, Queue::new(LIMITS));
        assert_ne!(a, b);
        assert!(qs.get_mut(a, 1).is_some() && qs.get_mut(a, 2).is_none());
        assert!(qs.remove(a, 1).is_some());
        assert!(qs.remove(a, 1).is_none() && qs.get_mut(a, 1).is_none());
        let c = qs.insert(3, Queue::new(LIMITS));
        assert_eq!(c, a, "the freed slot is taken again");
        assert!(
            qs.get_mut(c, 1).is_none(),
            "the finished link does not reach it"
        );
        assert!(qs.remove(c, 1).is_none() && qs.get_mut(c, 3).is_some());
        assert!(qs.get_mut(99, 3).is_none());
    }

    #[test]
    fn limits_make_senders_wait_then_discard_and_a_stall_ends_below_them() {
        let mut q = Queue::new(LIMITS);
        let p = |i: u8| Frame::Package(Package::new(1, vec![i; 10]));
        for i in 0..3 {
            q.push(p(i));
        }
        assert!(!q.should_wait());
        q.push(p(3));
        assert!(q.should_wait() && !q.is_over_hard_limit());
        q.stalled = true;
        assert!(!q.should_wait(), "a stalled queue lets senders go on");
        for i in 4..16 {
            q.push(p(i));
        }
        assert!(q.is_over_hard_limit());
        let mut batch = Vec::new();
        q.take(&mut batch);
        assert!(q.is_over_hard_limit(), "in flight still counts");
        assert!(!q.wrote());
        assert!(!q.stalled && !q.is_full());
        assert_eq!(q.len(), 0);
    }
}
