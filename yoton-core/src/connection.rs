//! A connection between two contexts: its status, its send queue and the two tasks
//! (reader and writer) that move frames over its link.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::context::{ContextInner, KEEP_PACKAGE_LIST};
use crate::error::{Error, Result};
use bytes::BytesMut;

use crate::link::{Endpoint, Link, LinkReader, LinkWriter, Outgoing, ReadBatch};
use crate::package::{Frame, Package, HEADER_SIZE, SLOT_CONTEXT};
use crate::router::LinkId;
use crate::stream::COPY_THRESHOLD;

/// A sender that has had nothing to send for this long sends a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// Default (and minimum) receive time-out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `close` tries to flush before it closes anyway.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Close reason when the user closes without giving one.
pub const STOP_DEFAULT_REASON: &str = "Closed on command.";
/// Close reason when the other end said goodbye.
pub const STOP_CLOSED_FROM_THERE: &str = "Closed from other end.";
/// Close reason when the stream ended without a goodbye.
pub const STOP_EOF: &str = "Other end dropped the connection.";

/// The life of a connection: closed -> waiting -> hosting/connected -> closing -> closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Bound, waiting for a peer.
    Waiting,
    /// Connected, this end accepted.
    Hosting,
    /// Connected, this end connected.
    Connected,
    /// Saying goodbye.
    Closing,
    /// Closed (see [`Connection::close_reason`]).
    Closed,
}

/// Something that happened to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A peer completed the handshake.
    Connected,
    /// `true`: nothing arrived for `timeout`; `false`: data flows again.
    TimedOut(bool),
    /// The connection closed, with the reason.
    Closed(String),
}

struct Ends {
    local: Endpoint,
    peer: Endpoint,
    peer_id: u64,
    peer_pid: u64,
    reason: Option<String>,
}

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
/// further packages are discarded and counted in [`Connection::discarded`] until it
/// drains: it holds at most the hard limit plus one package, whatever that package's
/// size. Context messages (`NEW_CONNECTION`, ...) are never discarded.
pub const HARD_LIMIT_FACTOR: usize = 4;

impl QueueLimits {
    fn soft_reached(&self, packages: usize, bytes: usize) -> bool {
        packages >= self.packages || bytes >= self.bytes
    }

    fn hard_reached(&self, packages: usize, bytes: usize) -> bool {
        packages > 0
            && (packages >= self.packages.saturating_mul(HARD_LIMIT_FACTOR)
                || bytes >= self.bytes.saturating_mul(HARD_LIMIT_FACTOR))
    }
}

/// What became of a package handed to a connection's send queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; `wait` when a local sender should now wait for room (the queue is at
    /// or above its soft limits and the connection is not stalled).
    Queued { wait: bool },
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
            Pushed::Queued { wait: true } | Pushed::Discarded { wait: true }
        )
    }
}

#[derive(Default)]
struct Queue {
    /// In order: runs of small packages in wire encoding, large packages, signals.
    items: VecDeque<Outgoing>,
    /// Small packages queued after the last item, already in wire encoding (encoded
    /// here, in the sender's thread, so the writer only hands bytes to the link and
    /// a payload is freed by the thread that made it).
    open: BytesMut,
    /// Entries (packages and signals) queued and not yet taken by the writer.
    queued: usize,
    /// Entries taken by the writer and not yet written.
    in_flight: usize,
    /// Payload bytes queued and in flight.
    bytes: usize,
    /// Of those, in flight.
    bytes_in_flight: usize,
    pushed: u64,
    written: u64,
    /// Set once the goodbye is queued (or the connection died): nothing more is accepted.
    sealed: bool,
    /// A local sender waited the full time for room and got none: senders stop
    /// waiting for this connection (it only queues up to the hard limit, then
    /// discards) until its queue is below the soft limits again.
    stalled: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.queued + self.in_flight
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty() && self.open.is_empty()
    }

    /// Queue a frame: small packages join the open run, anything else closes it.
    fn push(&mut self, frame: Frame) {
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
    fn push_encoded(&mut self, header: &[u8; HEADER_SIZE], payload: &[u8]) {
        self.bytes += payload.len();
        self.queued += 1;
        self.pushed += 1;
        let need = HEADER_SIZE + payload.len();
        if self.open.capacity() - self.open.len() < need {
            // A full run goes to the writer as it is and a new one starts: growing
            // it would copy everything in it (the writer takes several runs at once).
            self.close_run();
            self.open.reserve(need.max(OPEN_RUN_CHUNK));
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
    fn take(&mut self, batch: &mut Vec<Outgoing>) {
        self.close_run();
        batch.extend(self.items.drain(..));
        self.in_flight += self.queued;
        self.queued = 0;
        self.bytes_in_flight = self.bytes;
    }

    fn clear(&mut self) {
        self.items.clear();
        self.open.clear();
        self.queued = 0;
        self.in_flight = 0;
        self.bytes = 0;
        self.bytes_in_flight = 0;
    }
}

/// Room reserved at a time for the open run of encoded packages.
const OPEN_RUN_CHUNK: usize = 64 * 1024;

type Callback = Arc<dyn Fn(&Connection, &ConnectionEvent) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) link_id: LinkId,
    name: Mutex<String>,
    ctx: Weak<ContextInner>,
    own_id: u64,
    own_pid: u64,
    ends: Mutex<Ends>,
    status: watch::Sender<Status>,
    queue: Mutex<Queue>,
    limits: QueueLimits,
    wake_writer: Notify,
    progress: Notify,
    timeout_ms: AtomicU64,
    timed_out: AtomicBool,
    reader_ended: AtomicBool,
    reader_end: Notify,
    closed_by_user: AtomicBool,
    events: broadcast::Sender<ConnectionEvent>,
    callbacks: Mutex<Vec<Callback>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Packages dropped because the send queue was at its hard limit.
    discarded: AtomicU64,
    /// The context's total of the same (shared by all its connections).
    ctx_discarded: Arc<AtomicU64>,
}

/// A connection between this context and one other. Cheap to clone, `Send + Sync`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use yoton_core::{Context, Status};
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let host = a.bind_async("inproc://conn-doc").await.unwrap();
/// assert_eq!(host.status(), Status::Waiting);
/// let conn = b.connect_async("inproc://conn-doc", Duration::from_secs(1)).await.unwrap();
/// assert_eq!(conn.status(), Status::Connected);
/// assert_eq!(conn.peer_id(), a.id());
/// conn.close_async("bye").await;
/// assert_eq!(host.wait_closed_async(Duration::from_secs(2)).await.unwrap(), "Closed from other end.");
/// # });
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ends = self.shared.ends.lock();
        f.debug_struct("Connection")
            .field("name", &*self.shared.name.lock())
            .field("status", &self.status())
            .field("local", &ends.local)
            .field("peer", &ends.peer)
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(
        ctx: &Arc<ContextInner>,
        link_id: LinkId,
        name: String,
        status: Status,
        local: Endpoint,
    ) -> Connection {
        let (events, _) = broadcast::channel(64);
        Connection {
            shared: Arc::new(Shared {
                link_id,
                name: Mutex::new(name),
                ctx: Arc::downgrade(ctx),
                own_id: ctx.id,
                own_pid: u64::from(std::process::id()),
                ends: Mutex::new(Ends {
                    local,
                    peer: Endpoint::default(),
                    peer_id: 0,
                    peer_pid: 0,
                    reason: None,
                }),
                status: watch::Sender::new(status),
                queue: Mutex::new(Queue::default()),
                limits: ctx.queue_limits(),
                wake_writer: Notify::new(),
                progress: Notify::new(),
                timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
                timed_out: AtomicBool::new(false),
                reader_ended: AtomicBool::new(false),
                reader_end: Notify::new(),
                closed_by_user: AtomicBool::new(false),
                events,
                callbacks: Mutex::new(Vec::new()),
                tasks: Mutex::new(Vec::new()),
                discarded: AtomicU64::new(0),
                ctx_discarded: ctx.discarded.clone(),
            }),
        }
    }

    /// The connection's name (the address unless set with [`Connection::set_name`]).
    pub fn name(&self) -> String {
        self.shared.name.lock().clone()
    }

    /// Rename the connection (names are how [`crate::Context::connection`] finds it).
    pub fn set_name(&self, name: &str) -> &Self {
        *self.shared.name.lock() = name.to_owned();
        self
    }

    /// Current status.
    pub fn status(&self) -> Status {
        *self.shared.status.borrow()
    }

    /// Waiting or connected (packages are accepted for sending).
    pub fn is_alive(&self) -> bool {
        matches!(
            self.status(),
            Status::Waiting | Status::Hosting | Status::Connected
        )
    }

    /// Hosting or connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.status(), Status::Hosting | Status::Connected)
    }

    /// Bound and waiting for a peer.
    pub fn is_waiting(&self) -> bool {
        self.status() == Status::Waiting
    }

    /// This end (host and port; the real port when bound to port 0).
    pub fn local(&self) -> Endpoint {
        self.shared.ends.lock().local.clone()
    }

    /// The other end (empty until connected).
    pub fn peer(&self) -> Endpoint {
        self.shared.ends.lock().peer.clone()
    }

    /// This context's id.
    pub fn id(&self) -> u64 {
        self.shared.own_id
    }

    /// This process's id.
    pub fn pid(&self) -> u64 {
        self.shared.own_pid
    }

    /// The other context's id (0 until connected).
    pub fn peer_id(&self) -> u64 {
        self.shared.ends.lock().peer_id
    }

    /// The other process's id (0 until connected).
    pub fn peer_pid(&self) -> u64 {
        self.shared.ends.lock().peer_pid
    }

    /// Why the connection closed (None while open).
    pub fn close_reason(&self) -> Option<String> {
        self.shared.ends.lock().reason.clone()
    }

    /// Receive time-out: after this long without data, `TimedOut(true)` is emitted.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.shared.timeout_ms.load(Ordering::Relaxed))
    }

    /// Set the receive time-out (at least 0.5 s, as in the reference).
    pub fn set_timeout(&self, timeout: Duration) {
        let t = timeout.max(DEFAULT_TIMEOUT);
        self.shared
            .timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether this end closed the connection (with `close`), as opposed to the peer
    /// or a failure.
    pub fn closed_by_user(&self) -> bool {
        self.shared.closed_by_user.load(Ordering::Acquire)
    }

    /// Whether the connection is timed out right now.
    pub fn is_timed_out(&self) -> bool {
        self.shared.timed_out.load(Ordering::Relaxed)
    }

    /// Frames queued and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().len()
    }

    /// Payload bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queue.lock().bytes
    }

    /// Packages this connection dropped because its send queue was at the hard limit
    /// ([`HARD_LIMIT_FACTOR`] times the context's `send_queue` or `send_queue_bytes`):
    /// the peer (or a relay behind it) did not read fast enough.
    ///
    /// ```
    /// # let ctx = yoton_core::Context::new().unwrap();
    /// # let conn = ctx.bind("inproc://discarded-doc").unwrap();
    /// assert_eq!(conn.discarded(), 0);
    /// ```
    pub fn discarded(&self) -> u64 {
        self.shared.discarded.load(Ordering::Relaxed)
    }

    /// Call `f` for every event of this connection (on a runtime thread; keep it short
    /// and do not block in it).
    pub fn on_event(&self, f: impl Fn(&Connection, &ConnectionEvent) + Send + Sync + 'static) {
        self.shared.callbacks.lock().push(Arc::new(f));
    }

    /// Call `f(connection, reason)` when the connection closes.
    pub fn on_closed(&self, f: impl Fn(&Connection, &str) + Send + Sync + 'static) {
        self.on_event(move |c, e| {
            if let ConnectionEvent::Closed(reason) = e {
                f(c, reason)
            }
        });
    }

    /// Call `f(connection, timed_out)` when the connection times out or recovers.
    pub fn on_timedout(&self, f: impl Fn(&Connection, bool) + Send + Sync + 'static) {
        self.on_event(move |c, e| {
            if let ConnectionEvent::TimedOut(t) = e {
                f(c, *t)
            }
        });
    }

    /// An async stream of this connection's events from now on.
    pub fn events(&self) -> crate::EventStream<ConnectionEvent> {
        crate::EventStream::new(self.shared.events.subscribe())
    }

    fn emit(&self, event: ConnectionEvent) {
        let _ = self.shared.events.send(event.clone());
        let callbacks: Vec<Callback> = self.shared.callbacks.lock().clone();
        for cb in callbacks {
            cb(self, &event);
        }
    }

    // ----- sending -----

    /// Queue a signal frame (the goodbye) for the writer. Returns false when the
    /// connection no longer sends.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        let q = self.shared.queue.lock();
        if q.sealed {
            return false;
        }
        self.enqueue(q, frame);
        true
    }

    /// Queue a package unless the queue is at its hard limit (then it is discarded
    /// and counted). Only this context's own context messages (`NEW_CONNECTION`, ...)
    /// are exempt: forwarded ones count like any other package.
    pub(crate) fn push_package(&self, p: &Package) -> Pushed {
        let exempt = p.slot == SLOT_CONTEXT && p.source_id == self.shared.own_id;
        if p.payload.len() <= COPY_THRESHOLD {
            return self.push_small(&p.header(), &p.payload, exempt);
        }
        let q = match self.admit(exempt) {
            Ok(q) => q,
            Err(pushed) => return pushed,
        };
        let wait = self.enqueue(q, Frame::Package(p.clone()));
        Pushed::Queued { wait }
    }

    /// Queue a package of at most [`COPY_THRESHOLD`] payload bytes given as its wire
    /// header and payload: it is encoded straight into the send queue. `exempt`:
    /// never discarded (this context's own context messages).
    #[inline]
    pub(crate) fn push_small(
        &self,
        header: &[u8; HEADER_SIZE],
        payload: &[u8],
        exempt: bool,
    ) -> Pushed {
        let mut q = match self.admit(exempt) {
            Ok(q) => q,
            Err(pushed) => return pushed,
        };
        let first = q.is_empty();
        q.push_encoded(header, payload);
        Pushed::Queued {
            wait: self.pushed(q, first),
        }
    }

    /// The locked queue when it takes another package, or why not (closed, or at
    /// its hard limit: then the package is counted as discarded).
    #[inline(always)]
    fn admit(
        &self,
        exempt: bool,
    ) -> std::result::Result<parking_lot::MutexGuard<'_, Queue>, Pushed> {
        let q = self.shared.queue.lock();
        if q.sealed {
            return Err(Pushed::Closed);
        }
        if !exempt && self.shared.limits.hard_reached(q.len(), q.bytes) {
            let wait = !q.stalled;
            drop(q);
            self.count_discard();
            return Err(Pushed::Discarded { wait });
        }
        Ok(q)
    }

    /// Append to the locked queue and wake the writer if it may be asleep (it drains
    /// everything queued when it wakes and re-checks before it sleeps: once per batch
    /// is enough). True when a local sender should now wait for room.
    fn enqueue(&self, mut q: parking_lot::MutexGuard<'_, Queue>, frame: Frame) -> bool {
        let first = q.is_empty();
        q.push(frame);
        self.pushed(q, first)
    }

    /// After a push: unlock, wake the writer when the queue was empty before (`first`),
    /// and say whether a local sender should now wait for room.
    #[inline]
    fn pushed(&self, q: parking_lot::MutexGuard<'_, Queue>, first: bool) -> bool {
        let wait = !q.stalled && self.shared.limits.soft_reached(q.len(), q.bytes);
        drop(q);
        if first {
            self.shared.wake_writer.notify_one();
        }
        wait
    }

    fn count_discard(&self) {
        let n = self.shared.discarded.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.ctx_discarded.fetch_add(1, Ordering::Relaxed);
        // Say so on the first one and then at every power of ten, not per package.
        if is_power_of_ten(n) {
            tracing::warn!(
                connection = %self.name(),
                peer = %self.peer(),
                discarded = n,
                "send queue full: the peer does not read fast enough, packages are being \
                 discarded (raise send_queue/send_queue_bytes or slow the sender down)"
            );
        }
    }

    /// Wait until the queue is below its soft limits (or `max_wait` passes, or the
    /// connection dies or is stalled). Soft back-pressure: the package that made the
    /// caller wait is already queued. Waiting the full time marks the connection
    /// stalled.
    pub(crate) async fn wait_space(&self, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.shared.progress.notified();
            {
                let q = self.shared.queue.lock();
                if q.stalled || q.sealed || !self.shared.limits.soft_reached(q.len(), q.bytes) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut q = self.shared.queue.lock();
                if !q.stalled && self.shared.limits.soft_reached(q.len(), q.bytes) {
                    q.stalled = true;
                    drop(q);
                    tracing::warn!(
                        connection = %self.name(),
                        peer = %self.peer(),
                        "send queue full for {max_wait:?}: senders stop waiting for this \
                         connection; beyond the hard limit its packages are discarded"
                    );
                }
                return;
            }
        }
    }

    /// Wait until everything queued so far is written (async).
    pub async fn flush_async(&self, timeout: Duration) -> Result<()> {
        let target = self.shared.queue.lock().pushed;
        let fut = async {
            loop {
                let notified = self.shared.progress.notified();
                {
                    let q = self.shared.queue.lock();
                    if q.written >= target || (q.sealed && q.is_empty()) {
                        return;
                    }
                }
                if !self.is_alive() && self.status() != Status::Closing {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout(timeout))
    }

    /// Wait until everything queued so far is written (blocking).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.rt()?.block_on("flush", self.flush_async(timeout))?
    }

    fn rt(&self) -> Result<crate::runtime::Rt> {
        self.shared
            .ctx
            .upgrade()
            .map(|c| c.rt.clone())
            .ok_or(Error::Closed("context"))
    }

    // ----- waiting -----

    /// Wait until a peer is connected (async). Errors when it closes first or the
    /// time-out passes.
    pub async fn wait_connected_async(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.shared.status.subscribe();
        let waited = {
            let fut = rx.wait_for(|s| !matches!(s, Status::Waiting));
            tokio::time::timeout(timeout, fut).await.map(|r| r.is_ok())
        };
        match waited {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(_) if self.is_connected() => Ok(()),
            Ok(_) => Err(Error::Closed("connection")),
        }
    }

    /// Wait until a peer is connected (blocking).
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.rt()?
            .block_on("wait_connected", self.wait_connected_async(timeout))?
    }

    /// Wait until the connection is closed and return the reason (async).
    pub async fn wait_closed_async(&self, timeout: Duration) -> Result<String> {
        let mut rx = self.shared.status.subscribe();
        {
            let fut = rx.wait_for(|s| *s == Status::Closed);
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| Error::Timeout(timeout))?
                .map_err(|_| Error::Closed("connection"))?;
        }
        Ok(self.close_reason().unwrap_or_default())
    }

    /// Wait until the connection is closed and return the reason (blocking).
    pub fn wait_closed(&self, timeout: Duration) -> Result<String> {
        self.rt()?
            .block_on("wait_closed", self.wait_closed_async(timeout))?
    }

    // ----- closing -----

    /// Say goodbye, flush (up to 1 s) and close (async).
    pub async fn close_async(&self, reason: &str) {
        let Some(was) = self.begin_closing() else {
            return;
        };
        self.shared.closed_by_user.store(true, Ordering::Release);
        let reason = if reason.is_empty() {
            STOP_DEFAULT_REASON
        } else {
            reason
        };
        self.detach();
        if matches!(was, Status::Hosting | Status::Connected) {
            let deadline = tokio::time::Instant::now() + CLOSE_FLUSH_TIMEOUT;
            self.push(Frame::Goodbye);
            {
                self.shared.queue.lock().sealed = true;
            }
            let _ = self.flush_async(CLOSE_FLUSH_TIMEOUT).await;
            // The writer now shuts its side down. Keep reading until the peer closes
            // too (bounded): closing a socket with unread data makes the kernel reset
            // the connection, and the peer would see a socket error instead of the
            // goodbye.
            let ended = async {
                loop {
                    let n = self.shared.reader_end.notified();
                    if self.shared.reader_ended.load(Ordering::Acquire) {
                        return;
                    }
                    n.await;
                }
            };
            let _ = tokio::time::timeout_at(deadline, ended).await;
        }
        self.finish(reason);
    }

    /// Say goodbye, flush (up to 1 s) and close (blocking).
    pub fn close(&self, reason: &str) {
        if let Ok(rt) = self.rt() {
            let _ = rt.block_on("close", self.close_async(reason));
        } else {
            self.close_on_problem(reason);
        }
    }

    /// Close at once without a goodbye (the link failed).
    pub(crate) fn close_on_problem(&self, reason: &str) {
        if self.begin_closing().is_none() {
            if self.status() == Status::Closing {
                // A close in progress emits the event; just stop its flush.
                self.shared.queue.lock().sealed = true;
                self.shared.progress.notify_waiters();
            }
            return;
        }
        self.detach();
        self.finish(reason);
    }

    /// Move to `Closing` unless already closing or closed, in one step (the reader,
    /// the writer and the user may all try at once); the status before, when moved.
    fn begin_closing(&self) -> Option<Status> {
        let mut was = None;
        self.shared.status.send_if_modified(|s| {
            if matches!(*s, Status::Closing | Status::Closed) {
                return false;
            }
            was = Some(*s);
            *s = Status::Closing;
            true
        });
        was
    }

    /// Leave the router (no new packages are routed here).
    fn detach(&self) {
        if let Some(ctx) = self.shared.ctx.upgrade() {
            ctx.remove_link(self.shared.link_id);
        }
    }

    fn finish(&self, reason: &str) {
        {
            let mut q = self.shared.queue.lock();
            q.sealed = true;
            q.clear();
        }
        self.shared.ends.lock().reason = Some(reason.to_owned());
        for t in self.shared.tasks.lock().drain(..) {
            t.abort();
        }
        self.shared.status.send_replace(Status::Closed);
        self.shared.progress.notify_waiters();
        tracing::debug!(name = %self.name(), reason, "connection closed");
        self.emit(ConnectionEvent::Closed(reason.to_owned()));
        if let Some(ctx) = self.shared.ctx.upgrade() {
            ctx.connection_closed(self, reason);
        }
    }

    // ----- running a link -----

    pub(crate) fn add_task(&self, task: JoinHandle<()>) {
        self.shared.tasks.lock().push(task);
    }

    /// Attach an established link: record both ends, start the reader and the writer.
    pub(crate) fn start(&self, link: Link, status: Status, rt: &crate::runtime::Rt) {
        {
            let mut ends = self.shared.ends.lock();
            ends.local = link.local.clone();
            ends.peer = link.peer.clone();
            ends.peer_id = link.peer_id;
            ends.peer_pid = link.peer_pid;
        }
        let reader = rt.spawn(run_reader(self.clone(), link.reader));
        let writer = rt.spawn(run_writer(self.clone(), link.writer));
        {
            let mut tasks = self.shared.tasks.lock();
            tasks.push(reader);
            tasks.push(writer);
        }
        if self.status() == Status::Closed {
            // Closed while we were starting: stop the tasks again.
            for t in self.shared.tasks.lock().drain(..) {
                t.abort();
            }
            return;
        }
        // The event first: whoever waited for the status and subscribes afterwards
        // must not receive this (already past) event.
        self.emit(ConnectionEvent::Connected);
        // Only if nothing closed it meanwhile: the reader may already have seen the
        // peer's goodbye (a peer that connects and closes at once), and a closed
        // connection must never come back to life.
        self.shared.status.send_if_modified(|s| {
            if matches!(*s, Status::Closing | Status::Closed) {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}

async fn run_reader(conn: Connection, reader: Box<dyn LinkReader>) {
    read_until_closed(&conn, reader).await;
    conn.shared.reader_ended.store(true, Ordering::Release);
    conn.shared.reader_end.notify_waiters();
}

async fn read_until_closed(conn: &Connection, mut reader: Box<dyn LinkReader>) {
    let conn = conn.clone();
    let mut read = ReadBatch::default();
    loop {
        let got = tokio::time::timeout(conn.timeout(), reader.read_frames(&mut read)).await;
        match got {
            Err(_) => {
                if !conn.shared.timed_out.swap(true, Ordering::Relaxed) {
                    conn.emit(ConnectionEvent::TimedOut(true));
                }
                continue;
            }
            Ok(Err(e)) => {
                // Packages decoded before the error are still delivered.
                let goodbye = deliver(&conn, &mut read);
                let reason = if goodbye {
                    STOP_CLOSED_FROM_THERE.to_owned()
                } else if is_reset(&e) {
                    // A peer that vanished with our heartbeats unread in its socket
                    // gets reset by its kernel instead of ending the stream: the same
                    // event for us.
                    STOP_EOF.to_owned()
                } else {
                    e.to_string()
                };
                tracing::debug!(reason, "link reader stopped");
                conn.close_on_problem(&reason);
                return;
            }
            Ok(Ok(())) => {
                if conn.shared.timed_out.swap(false, Ordering::Relaxed) {
                    conn.emit(ConnectionEvent::TimedOut(false));
                }
                if deliver(&conn, &mut read) {
                    conn.close_on_problem(STOP_CLOSED_FROM_THERE);
                    return;
                }
            }
        }
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

fn is_reset(e: &crate::link::LinkError) -> bool {
    use crate::link::LinkError;
    let io = match e {
        LinkError::Io(io) => io,
        LinkError::Codec(crate::codec::CodecError::Io(io)) => io,
        _ => return false,
    };
    io.kind() == std::io::ErrorKind::ConnectionReset
}

/// Hand what was read to the context; true when it ended with a goodbye.
fn deliver(conn: &Connection, read: &mut ReadBatch) -> bool {
    let goodbye = read.goodbye;
    if !read.packages.is_empty() {
        if let Some(ctx) = conn.shared.ctx.upgrade() {
            ctx.receive(conn.shared.link_id, &mut read.packages);
        }
    }
    read.clear();
    // The list may have traded its buffer with a channel's queue: keep a usual one.
    if read.packages.capacity() > KEEP_PACKAGE_LIST {
        read.packages.shrink_to(KEEP_PACKAGE_LIST);
    }
    goodbye
}

async fn run_writer(conn: Connection, mut writer: Box<dyn LinkWriter>) {
    let shared = &conn.shared;
    let mut batch: Vec<Outgoing> = Vec::with_capacity(64);
    // A sender is streaming (the last write was full, or the queue refilled while
    // it was being written): a few more microseconds make the next write fuller.
    let mut streaming = false;
    loop {
        shared.queue.lock().take(&mut batch);
        if streaming {
            top_up(shared, &mut batch);
        }
        if batch.is_empty() {
            let notified = shared.wake_writer.notified();
            let done = {
                let q = shared.queue.lock();
                q.sealed && q.is_empty()
            };
            if done {
                let _ = writer.shutdown().await;
                // Keep the task alive until the connection finishes closing.
                std::future::pending::<()>().await;
            }
            if tokio::time::timeout(HEARTBEAT_INTERVAL, notified)
                .await
                .is_err()
            {
                batch.push(Outgoing::Frame(Frame::Heartbeat));
            }
            continue;
        }
        if let Err(e) = writer.write_batch(&batch).await {
            conn.close_on_problem(&e.to_string());
            return;
        }
        let full = wire_len(&batch) >= STREAM_BATCH;
        batch.clear();
        {
            let mut q = shared.queue.lock();
            q.written += q.in_flight as u64;
            q.in_flight = 0;
            // What is still queued was counted after the take.
            q.bytes = q.bytes.saturating_sub(q.bytes_in_flight);
            q.bytes_in_flight = 0;
            if q.stalled && !shared.limits.soft_reached(q.len(), q.bytes) {
                q.stalled = false;
            }
            streaming = full || !q.is_empty();
        }
        shared.progress.notify_waiters();
    }
}

/// While a sender streams, a batch below [`STREAM_BATCH`] bytes is topped up before
/// it is written: the writer yields its thread (at most [`STREAM_YIELDS`] times) so
/// that the sender can queue more. Fewer, fuller writes cost the kernel less per
/// package on both ends (W1 in `yoton bench`: 8-10M -> 12-13M msg/s). A single
/// message after a pause is never held back.
fn top_up(shared: &Shared, batch: &mut Vec<Outgoing>) {
    for _ in 0..STREAM_YIELDS {
        if batch.is_empty() || wire_len(batch) >= STREAM_BATCH {
            return;
        }
        std::thread::yield_now();
        shared.queue.lock().take(batch);
    }
}

fn wire_len(batch: &[Outgoing]) -> usize {
    batch.iter().map(Outgoing::wire_len).sum()
}

/// See [`top_up`].
const STREAM_BATCH: usize = 32 * 1024;
/// See [`top_up`].
const STREAM_YIELDS: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_warnings_come_at_powers_of_ten() {
        let warned: Vec<u64> = (0..=100_000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(warned, [1, 10, 100, 1000, 10_000, 100_000]);
    }

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

    #[test]
    fn small_packages_are_encoded_in_runs_and_order_is_kept() {
        let mut q = Queue::default();
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
    }
}
