//! A connection between two contexts: its status, its send queue and the two tasks
//! (reader and writer) that move frames over its link.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::context::{ContextInner, KEEP_PACKAGE_LIST};
use crate::error::{Error, Result};

use crate::link::{Endpoint, Link, LinkReader, LinkWriter, Outgoing, ReadBatch};
use crate::outbox::{Pushed, Queue, Queues};
use crate::package::{Frame, Package, HEADER_SIZE, SLOT_CONTEXT};
use crate::router::LinkId;
use crate::stream::COPY_THRESHOLD;

pub use crate::outbox::{QueueLimits, HARD_LIMIT_FACTOR};

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

type Callback = Arc<dyn Fn(&Connection, &ConnectionEvent) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) link_id: LinkId,
    /// Where the context keeps this connection's send queue ([`Queues`]).
    queue_slot: usize,
    name: Mutex<String>,
    ctx: Weak<ContextInner>,
    own_id: u64,
    own_pid: u64,
    ends: Mutex<Ends>,
    status: watch::Sender<Status>,
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
        queue_slot: usize,
        name: String,
        status: Status,
        local: Endpoint,
    ) -> Connection {
        let (events, _) = broadcast::channel(64);
        Connection {
            shared: Arc::new(Shared {
                link_id,
                queue_slot,
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
        self.with_queue(|q| q.len()).unwrap_or(0)
    }

    /// Payload bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.with_queue(|q| q.bytes).unwrap_or(0)
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

    /// Run `f` on this connection's send queue, under its context's state lock
    /// ([`crate::outbox`]); `None` once the connection has finished or its context
    /// is gone. Never call it with that lock held.
    fn with_queue<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> Option<R> {
        self.shared
            .ctx
            .upgrade()?
            .with_queue(self.shared.queue_slot, self.shared.link_id, f)
    }

    /// Queue a signal frame (the goodbye) for the writer. Returns false when the
    /// connection no longer sends.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        let pushed = self.with_queue(|q| {
            if q.sealed {
                return Pushed::Closed;
            }
            let first = q.is_empty();
            q.push(frame);
            self.pushed(q, first)
        });
        if pushed.is_some_and(Pushed::should_wake) {
            self.wake_writer();
        }
        matches!(pushed, Some(Pushed::Queued { .. }))
    }

    /// Wake the writer (after a push to an empty queue, once the context's lock is
    /// released: see [`AfterPush`](crate::outbox::AfterPush)).
    #[inline]
    pub(crate) fn wake_writer(&self) {
        self.shared.wake_writer.notify_one();
    }

    /// Queue a package on this connection's queue in `queues` (its context's)
    /// unless it is at its hard limit (then the package is discarded and counted).
    /// Only this context's own context messages (`NEW_CONNECTION`, ...) are exempt:
    /// forwarded ones count like any other package.
    pub(crate) fn push_package(&self, queues: &mut Queues, p: &Package) -> Pushed {
        let exempt = p.slot == SLOT_CONTEXT && p.source_id == self.shared.own_id;
        if p.payload.len() <= COPY_THRESHOLD {
            return self.push_small(queues, &p.header(), &p.payload, exempt);
        }
        let Some(q) = queues.get_mut(self.shared.queue_slot, self.shared.link_id) else {
            return Pushed::Closed;
        };
        if let Err(refused) = self.admit(q, exempt) {
            return refused;
        }
        let first = q.is_empty();
        q.push(Frame::Package(p.clone()));
        self.pushed(q, first)
    }

    /// Queue on this connection's queue in `queues` a package of at most
    /// [`COPY_THRESHOLD`] payload bytes given as its wire header and payload: it is
    /// encoded straight into the queue. `exempt`: never discarded (this context's
    /// own context messages).
    #[inline]
    pub(crate) fn push_small(
        &self,
        queues: &mut Queues,
        header: &[u8; HEADER_SIZE],
        payload: &[u8],
        exempt: bool,
    ) -> Pushed {
        let Some(q) = queues.get_mut(self.shared.queue_slot, self.shared.link_id) else {
            return Pushed::Closed;
        };
        if let Err(refused) = self.admit(q, exempt) {
            return refused;
        }
        let first = q.is_empty();
        q.push_encoded(header, payload);
        self.pushed(q, first)
    }

    /// Whether the queue takes another package, or why not (closed, or at its hard
    /// limit: then the package is counted as discarded).
    #[inline(always)]
    fn admit(&self, q: &Queue, exempt: bool) -> std::result::Result<(), Pushed> {
        if q.sealed {
            return Err(Pushed::Closed);
        }
        if !exempt && q.is_over_hard_limit() {
            self.count_discard();
            return Err(Pushed::Discarded { wait: !q.stalled });
        }
        Ok(())
    }

    /// After a push: the writer is to be woken when the queue was empty before
    /// (`first`; it drains everything queued when it wakes and checks again before it
    /// sleeps, so once per batch is enough; the caller wakes it once the lock is
    /// released), and whether a local sender should now wait.
    #[inline]
    fn pushed(&self, q: &Queue, first: bool) -> Pushed {
        Pushed::Queued {
            wait: q.should_wait(),
            wake: first,
        }
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
            let room = self.with_queue(|q| q.stalled || q.sealed || !q.is_full());
            if room.unwrap_or(true) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let stalled_now = self.with_queue(|q| {
                    let stall = !q.stalled && q.is_full();
                    q.stalled |= stall;
                    stall
                });
                if stalled_now == Some(true) {
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
        let Some(target) = self.with_queue(|q| q.pushed) else {
            return Ok(());
        };
        let fut = async {
            loop {
                let notified = self.shared.progress.notified();
                let done = self.with_queue(|q| q.written >= target || (q.sealed && q.is_empty()));
                if done.unwrap_or(true) {
                    return;
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
            self.with_queue(|q| q.sealed = true);
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
                self.with_queue(|q| q.sealed = true);
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
        // Nothing more is sent: the queue and what it holds go.
        if let Some(ctx) = self.shared.ctx.upgrade() {
            ctx.remove_queue(self.shared.queue_slot, self.shared.link_id);
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
    let mut linger = Linger::default();
    loop {
        conn.with_queue(|q| q.take(&mut batch));
        if streaming {
            top_up(&conn, &mut batch);
        }
        if batch.is_empty() && linger.wanted() {
            linger.caught(linger_for(&conn, &mut batch).await);
        }
        if batch.is_empty() {
            let notified = shared.wake_writer.notified();
            // Done once the goodbye is out, or when the queue is gone (finished).
            let done = conn
                .with_queue(|q| q.sealed && q.is_empty())
                .unwrap_or(true);
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
        linger.wrote(&batch);
        batch.clear();
        let more = conn.with_queue(Queue::wrote).unwrap_or(false);
        streaming = full || more;
        shared.progress.notify_waiters();
    }
}

/// After a write of packages the writer lingers before it sleeps: for up to
/// [`LINGER`] it yields to its runtime (which polls its I/O and runs its other tasks
/// meanwhile) and looks at the queue again. The runtime's thread then stays awake
/// for the answer to what was written and for the next package, instead of sleeping
/// in `epoll_wait` and being woken for each (W3 over tcp, async API, 3 alternating
/// runs: request/reply p50 38/34/42 -> 25/30/27 µs, direct mode 21/25/24 -> 14/18/15;
/// the blocking API, W1, W2 and idle connections unchanged within noise). Like a
/// channel's spin, it stops while it does not pay: after [`LINGER_GIVE_UP`] lingers in
/// a row that found nothing, only one in [`LINGER_RETRY`] chances lingers; a write of
/// signals alone (heartbeats) is never followed by one.
#[derive(Debug, Default)]
struct Linger {
    /// The last write carried a package (not only signals such as heartbeats).
    packages: bool,
    /// Lingers in a row that found nothing.
    misses: u32,
    /// Lingers skipped since the last one.
    skipped: u32,
}

impl Linger {
    fn wrote(&mut self, batch: &[Outgoing]) {
        self.packages = batch
            .iter()
            .any(|o| !matches!(o, Outgoing::Frame(Frame::Heartbeat | Frame::Goodbye)));
    }

    fn wanted(&mut self) -> bool {
        if !std::mem::take(&mut self.packages) {
            return false;
        }
        if self.misses < LINGER_GIVE_UP {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= LINGER_RETRY {
            self.skipped = 0;
            return true;
        }
        false
    }

    fn caught(&mut self, caught: bool) {
        self.misses = if caught {
            0
        } else {
            self.misses.saturating_add(1)
        };
    }
}

/// Yield to the runtime and look at the queue until something is queued or
/// [`LINGER`] is over; true when something came.
async fn linger_for(conn: &Connection, batch: &mut Vec<Outgoing>) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < LINGER {
        tokio::task::yield_now().await;
        conn.with_queue(|q| q.take(batch));
        if !batch.is_empty() {
            return true;
        }
    }
    false
}

/// See [`Linger`].
const LINGER: Duration = Duration::from_micros(50);
/// See [`Linger`].
const LINGER_GIVE_UP: u32 = 3;
/// See [`Linger`].
const LINGER_RETRY: u32 = 16;

/// While a sender streams, a batch below [`STREAM_BATCH`] bytes is topped up before
/// it is written: the writer yields its thread (at most [`STREAM_YIELDS`] times) so
/// that the sender can queue more. Fewer, fuller writes cost the kernel less per
/// package on both ends (W1 in `yoton bench`: 8-10M -> 12-13M msg/s). A single
/// message after a pause is never held back.
fn top_up(conn: &Connection, batch: &mut Vec<Outgoing>) {
    for _ in 0..STREAM_YIELDS {
        if batch.is_empty() || wire_len(batch) >= STREAM_BATCH {
            return;
        }
        std::thread::yield_now();
        conn.with_queue(|q| q.take(batch));
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

    /// A writer lingers after writing packages, not after a heartbeat alone; it
    /// gives up after three lingers in a row that found nothing, then lingers once in
    /// sixteen chances until one pays again.
    #[test]
    fn the_writer_lingers_only_while_it_pays() {
        let package = [Outgoing::Encoded(bytes::Bytes::from_static(b"run"))];
        let heartbeat = [Outgoing::Frame(Frame::Heartbeat)];
        let mut l = Linger::default();
        assert!(!l.wanted(), "nothing written yet");
        l.wrote(&heartbeat);
        assert!(!l.wanted(), "after a heartbeat alone");
        for _ in 0..LINGER_GIVE_UP {
            l.wrote(&package);
            assert!(l.wanted());
            l.caught(false);
        }
        let lingered: Vec<bool> = (0..2 * LINGER_RETRY)
            .map(|_| {
                l.wrote(&package);
                l.wanted()
            })
            .collect();
        assert_eq!(
            lingered.iter().filter(|&&x| x).count(),
            2,
            "once in {LINGER_RETRY}: {lingered:?}"
        );
        l.caught(true);
        l.wrote(&package);
        assert!(l.wanted(), "paid again: lingers every time");
    }

    #[test]
    fn discard_warnings_come_at_powers_of_ten() {
        let warned: Vec<u64> = (0..=100_000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(warned, [1, 10, 100, 1000, 10_000, 100_000]);
    }
}
