//! The context: a node of the network. It owns the router, the connections and the
//! slot registrations, and runs the I/O on a tokio runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::address::Address;
use crate::busypoll::Poller;
use crate::codec::DEFAULT_MAX_MESSAGE_SIZE;
use crate::connection::{Connection, Status, STOP_CLOSED_FROM_THERE};
use crate::error::{Error, Result};
use crate::handshake::Hello;
use crate::link::Endpoint;
use crate::outbox::{AfterPush, Queue, Queues};
use crate::package::{Package, SLOT_CONTEXT};
use crate::router::{IdMap, LinkId, Router, Verdict};
use crate::runtime::Rt;
use crate::statelock::StateLock;
use crate::stream::{establish, Role};
use crate::transport::{Registry, Transport, TransportError, TransportListener};

/// Context message that makes state channels resend their state.
pub const NEW_CONNECTION: &str = "NEW_CONNECTION";
/// Context message that asks the receiver to close its connection to the sender.
pub const CLOSE_CONNECTION: &str = "CLOSE_CONNECTION";

/// How many closed connections [`Context::connections_all`] still lists.
pub const CLOSED_HISTORY: usize = 16;

/// Default per-connection send queue length (packages) above which senders wait (up
/// to 1 s). The reference uses 64; with one write per batch that caps a write at 64
/// small packages, so the Rust default is larger and bounded in bytes as well. Packages
/// being written count until the write completes, so a sender that reaches the limit
/// waits for that write: at 1,024 a stream of 64-byte messages put the publisher to
/// sleep once per write (3.7 k context switches and 1.4 k writes per million
/// messages); at 4,096 it fills the next write while one is under way (0.9 k and
/// 0.5 k), and both processes spend about a sixth less CPU per message.
pub const DEFAULT_SEND_QUEUE: usize = 4096;
/// Default number of worker threads of the runtime a context starts for itself (when
/// it is built outside a tokio runtime): one, as ZeroMQ's default `io_threads`. One
/// thread runs every connection's reader and writer, so handing a package from a
/// reader to a writer (a request/reply answer, a forwarded package) wakes no other
/// thread. On the 2-core machine of `yoton bench`, one thread against two: blocking
/// request/reply p50 97-167 µs against 194-207 µs, blocking pub/sub ping-pong 64 µs
/// against 76-83 µs, and the same throughput in W1, W2, W4 and W5 within the noise.
pub const DEFAULT_IO_THREADS: usize = 1;
/// Default per-connection send queue size (payload bytes) above which senders wait.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 16 << 20;
/// How long a send waits for room in a full send queue before it goes on anyway.
pub const SEND_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// At most this many packages go into the send queues under one lock of the context
/// in [`Context::send_slices`] (about a microsecond: a connection's reader or writer
/// never waits long for the lock).
pub const SLICES_PER_LOCK: usize = 64;

/// Something that takes packages deposited at a slot (a receiving channel).
///
/// `deposit` runs while the context routes, in receive order; it must be quick and must
/// not call back into the context (spawn a task for that).
pub trait SlotReceiver: Send + Sync + 'static {
    /// A package for this slot arrived, with the context's receive sequence number.
    fn deposit(&self, package: Package, recv_seq: u64);

    /// Several packages for this slot arrived in one read, in order; take them all
    /// (leave `batch` empty). The default calls [`SlotReceiver::deposit`] for each.
    fn deposit_batch(&self, batch: &mut Vec<(Package, u64)>) {
        for (p, seq) in batch.drain(..) {
            self.deposit(p, seq);
        }
    }

    /// Whether [`SlotReceiver::after_deposit`] does anything; asked once, when the
    /// receiver is registered. Default: false.
    fn wants_after_deposit(&self) -> bool {
        false
    }

    /// Packages were deposited here from one read; called after the context's lock
    /// is released, on the task that read them, once per read. Unlike `deposit` it
    /// may call into the context (send with `send_now`), but it must not block or
    /// wait: the connection reads nothing meanwhile. Request/reply answers its
    /// protocol messages here, without a hand-off to another task.
    fn after_deposit(&self) {}
}

/// A registered receiver, with its answer to [`SlotReceiver::wants_after_deposit`].
struct Receiver {
    receiver: Arc<dyn SlotReceiver>,
    after: bool,
}

/// A sending channel's hooks.
pub trait SlotSender: Send + Sync + 'static {
    /// A new context joined the network (`NEW_CONNECTION`): state channels resend.
    fn on_new_connection(&self) {}
}

/// Something that happened at the context level.
#[derive(Clone, Debug)]
pub enum ContextEvent {
    /// A connection completed its handshake.
    NewConnection(Connection),
    /// A connection closed, with the reason.
    ConnectionClosed(Connection, String),
}

/// How a connection made with [`Context::connect_with_reconnect`] comes back after
/// it was lost: retries with exponential backoff (opt-in; plain `connect` never
/// reconnects).
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// Wait before the first retry (default 100 ms).
    pub initial_delay: Duration,
    /// Longest wait between retries (default 5 s).
    pub max_delay: Duration,
    /// Time-out of each attempt (default 1 s).
    pub attempt_timeout: Duration,
    /// Stop after this many attempts (default: never).
    pub max_attempts: Option<u32>,
    /// Stop after this long (default: never).
    pub give_up_after: Option<Duration>,
    /// Stop at the first failure that retrying cannot mend ([`Error::ConnectFailed`]:
    /// a refused certificate, a server that answers in another protocol, a refused
    /// authentication). Default `false`: such a failure is logged at warn and the
    /// policy goes on, as the server may be fixed meanwhile; an unattended client
    /// that should not knock on a misconfigured server forever sets it.
    pub stop_on_permanent_failure: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(1),
            max_attempts: None,
            give_up_after: None,
            stop_on_permanent_failure: false,
        }
    }
}

/// Settings of a context. Build one with [`Context::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest payload accepted from a peer (default 1 GiB).
    pub max_message_size: u64,
    /// Start-up queue length (default 10,000; the oldest is dropped when full).
    pub startup_queue: usize,
    /// Per-connection send queue length (packages) above which senders wait
    /// (default [`DEFAULT_SEND_QUEUE`]). At
    /// [`HARD_LIMIT_FACTOR`](crate::connection::HARD_LIMIT_FACTOR) times this, further
    /// packages are discarded and counted.
    pub send_queue: usize,
    /// Per-connection send queue size (payload bytes) above which senders wait
    /// (default 16 MiB). Beyond [`HARD_LIMIT_FACTOR`](crate::connection::HARD_LIMIT_FACTOR)
    /// times this, further packages are discarded and counted.
    pub send_queue_bytes: usize,
    /// Shared secret for peer authentication (off by default: the Python reference
    /// does not know it).
    pub secret: Option<crate::handshake::Secret>,
    /// Handshakes in progress per listener above which new sockets are closed at once
    /// (default 64): slow or silent clients cannot pile up.
    pub max_pending_handshakes: usize,
    /// Connections per listener above which new sockets are closed at once
    /// (default 1024).
    pub max_connections: usize,
    /// Worker threads of the runtime a context starts when it is built outside any
    /// tokio runtime (default [`DEFAULT_IO_THREADS`]). Built inside a runtime, the
    /// context uses that one and this is not used.
    pub io_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            startup_queue: crate::router::DEFAULT_STARTUP_QUEUE,
            send_queue: DEFAULT_SEND_QUEUE,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            secret: None,
            max_pending_handshakes: 64,
            max_connections: 1024,
            io_threads: DEFAULT_IO_THREADS,
        }
    }
}

/// Builds a [`Context`] with chosen transports and limits.
///
/// ```
/// let ctx = yoton_core::Context::builder().max_message_size(1 << 20).build().unwrap();
/// assert_ne!(ctx.id(), 0);
/// ```
#[derive(Debug, Default)]
pub struct ContextBuilder {
    registry: Option<Registry>,
    config: Config,
}

impl ContextBuilder {
    /// Add a transport (the in-process one is always there).
    pub fn transport(mut self, t: impl Transport) -> Self {
        self.registry
            .get_or_insert_with(default_registry)
            .register(Arc::new(t));
        self
    }

    /// Use exactly this registry.
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = Some(r);
        self
    }

    /// Largest payload accepted from a peer.
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Start-up queue length.
    pub fn startup_queue(mut self, n: usize) -> Self {
        self.config.startup_queue = n.max(1);
        self
    }

    /// Per-connection send queue length for soft back-pressure.
    pub fn send_queue(mut self, n: usize) -> Self {
        self.config.send_queue = n.max(1);
        self
    }

    /// Per-connection send queue size in payload bytes for soft back-pressure.
    pub fn send_queue_bytes(mut self, n: usize) -> Self {
        self.config.send_queue_bytes = n.max(1);
        self
    }

    /// Require every peer to prove this shared secret in the handshake (and prove it
    /// to them). Off by default; peers without it (the Python reference) are refused.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.secret = Some(crate::handshake::Secret::new(secret));
        self
    }

    /// Limit of handshakes in progress per listener.
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.config.max_pending_handshakes = n.max(1);
        self
    }

    /// Limit of connections per listener.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.max(1);
        self
    }

    /// Worker threads of the context's own runtime (default [`DEFAULT_IO_THREADS`];
    /// at least 1). Only used when the context is built outside a tokio runtime.
    /// More threads help when many connections are busy at once; for a few busy
    /// connections one thread is faster (see [`DEFAULT_IO_THREADS`]).
    ///
    /// ```
    /// let ctx = yoton_core::Context::builder().io_threads(2).build().unwrap();
    /// assert_eq!(ctx.config().io_threads, 2);
    /// ```
    pub fn io_threads(mut self, n: usize) -> Self {
        self.config.io_threads = n.max(1);
        self
    }

    /// Create the context.
    pub fn build(self) -> Result<Context> {
        let id = random_id();
        let rt = Rt::current_or_new(self.config.io_threads, id)?;
        let mut router = Router::new(id);
        router.set_startup_limit(self.config.startup_queue);
        let (events, _) = broadcast::channel(64);
        Ok(Context {
            inner: Arc::new(ContextInner {
                id,
                rt,
                registry: self.registry.unwrap_or_else(default_registry),
                config: self.config,
                state: StateLock::new(State {
                    router,
                    receivers: IdMap::default(),
                    senders: IdMap::default(),
                    connections: Vec::new(),
                    queues: Queues::default(),
                    run: Vec::new(),
                }),
                next_link: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                events,
                discarded: Arc::default(),
                callbacks: Mutex::new(Vec::new()),
                poller: Arc::default(),
            }),
        })
    }
}

/// Transports registered process-wide for contexts made with [`Context::new`].
static DEFAULTS: Mutex<Vec<Arc<dyn Transport>>> = Mutex::new(Vec::new());

/// Make a transport available to every context created afterwards with
/// [`Context::new`] or a builder without an explicit registry. Transport crates
/// offer a one-line `install()` that calls this.
pub fn register_default_transport(t: Arc<dyn Transport>) {
    let mut d = DEFAULTS.lock();
    let schemes = t.schemes();
    d.retain(|x| x.schemes() != schemes);
    d.push(t);
}

fn default_registry() -> Registry {
    let mut r = Registry::with_inproc();
    for t in DEFAULTS.lock().iter() {
        r.register(t.clone());
    }
    r
}

fn random_id() -> u64 {
    loop {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // Fall back to time and address entropy; ids only need to be unique.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            b = (t ^ (&b as *const _ as u64).rotate_left(17)).to_le_bytes();
        }
        let id = u64::from_le_bytes(b);
        if id != 0 {
            return id;
        }
    }
}

pub(crate) struct State {
    router: Router<Connection>,
    receivers: IdMap<Receiver>,
    senders: IdMap<Arc<dyn SlotSender>>,
    connections: Vec<Connection>,
    /// Each connection's send queue (under this lock, see [`crate::outbox`]).
    queues: Queues,
    /// The run of received packages for one slot being gathered by [`ContextInner::receive`]
    /// (kept: a fresh one for each read was a fresh allocation, often fresh pages).
    run: Vec<(Package, u64)>,
}

/// Room (packages) kept in a package list between reads: the receive run here and a
/// connection's read list; a larger one is shrunk or freed. A read list that was
/// traded with a channel's queue comes back as large as that queue: kept up to this
/// size (5 MiB, as large as the spare queue a channel keeps), neither the list nor
/// the queue has to grow again, in fresh pages, after every read that found the
/// receiver behind (with 8,192 that was thousands of page faults per million
/// messages).
pub(crate) const KEEP_PACKAGE_LIST: usize = 65536;

pub(crate) struct ContextInner {
    pub(crate) id: u64,
    pub(crate) rt: Rt,
    registry: Registry,
    config: Config,
    state: StateLock<State>,
    next_link: AtomicU64,
    closed: AtomicBool,
    events: broadcast::Sender<ContextEvent>,
    /// Packages dropped by full send queues of any connection, closed ones included.
    pub(crate) discarded: Arc<AtomicU64>,
    callbacks: Mutex<Vec<EventCallback>>,
    poller: Arc<Poller>,
}

type EventCallback = Arc<dyn Fn(&ContextEvent) + Send + Sync>;

/// A node of a Yoton network. Cheap to clone, `Send + Sync`; the last handle dropped
/// closes it.
///
/// Blocking methods (`bind`, `connect`, `flush`, `close`) can be called from a plain
/// `fn main`; the `_async` versions are the same code for use inside tokio.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::{Context, Package, slot_hash};
///
/// let a = Context::new().unwrap();
/// let b = Context::new().unwrap();
/// let slot = slot_hash("doc.bin.pub-sub");
/// let (tx, rx) = std::sync::mpsc::channel();
/// let _guard = b.register_receiver(slot, "doc", std::sync::Arc::new(move |p: Package, _seq: u64| {
///     tx.send(p.payload).unwrap();
/// })).unwrap();
/// a.bind("inproc://ctx-doc").unwrap();
/// b.connect("inproc://ctx-doc", Duration::from_secs(1)).unwrap();
/// a.send(Package::new(slot, "hello")).unwrap();
/// assert_eq!(&rx.recv_timeout(Duration::from_secs(2)).unwrap()[..], b"hello");
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &format_args!("{:016x}", self.inner.id))
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl<F: Fn(Package, u64) + Send + Sync + 'static> SlotReceiver for F {
    fn deposit(&self, package: Package, recv_seq: u64) {
        self(package, recv_seq)
    }
}

/// Keeps a slot registration; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    ctx: std::sync::Weak<ContextInner>,
    slot: u64,
    receiving: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.upgrade() {
            let mut st = ctx.state.lock();
            if self.receiving {
                st.receivers.remove(&self.slot);
            } else {
                st.senders.remove(&self.slot);
            }
        }
    }
}

impl Context {
    /// A context with the default transports (in-process, plus those installed with
    /// [`register_default_transport`]).
    pub fn new() -> Result<Context> {
        ContextBuilder::default().build()
    }

    /// A builder for transports and limits.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// This context's id (random, never 0).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The transports this context can use.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A handle of the runtime the context runs on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.inner.rt.handle()
    }

    /// Keep this context's runtime polling its sockets, instead of sleeping between
    /// packets, while the guard lives (see [`crate::busypoll`]): a blocking receive
    /// holds one while it spins, so that what it waits for is read without the
    /// runtime's thread having to wake up. The polling yields the CPU between polls;
    /// it still keeps a core busy, so hold it only briefly. Only a runtime the context
    /// started itself polls (a context made inside an application's tokio runtime
    /// leaves it alone).
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = yoton_core::Context::new().unwrap();
    /// let polling = ctx.busy_poll();
    /// std::thread::sleep(Duration::from_micros(50)); // waiting for something, briefly
    /// drop(polling);
    /// ```
    pub fn busy_poll(&self) -> crate::busypoll::BusyPoll {
        self.inner.poller.hold(&self.inner.rt)
    }

    /// Run a future to completion from blocking code, on this context's runtime (see the
    /// module docs of the crate for the rules inside a runtime).
    pub fn block_on<F: std::future::Future>(
        &self,
        what: &'static str,
        fut: F,
    ) -> Result<F::Output> {
        self.inner.rt.block_on(what, fut)
    }

    // ----- slots -----

    /// Register the receiving side of a slot. At most one per slot.
    pub fn register_receiver(
        &self,
        slot: u64,
        name: &str,
        receiver: Arc<dyn SlotReceiver>,
    ) -> Result<SlotGuard> {
        let mut st = self.inner.state.lock();
        if st.receivers.contains_key(&slot) {
            return Err(Error::SlotTaken {
                slot,
                name: name.to_owned(),
                direction: "receiving",
            });
        }
        let after = receiver.wants_after_deposit();
        st.receivers.insert(slot, Receiver { receiver, after });
        Ok(SlotGuard {
            ctx: Arc::downgrade(&self.inner),
            slot,
            receiving: true,
        })
    }

    /// Register the sending side of a slot. At most one per slot.
    pub fn register_sender(
        &self,
        slot: u64,
        name: &str,
        sender: Arc<dyn SlotSender>,
    ) -> Result<SlotGuard> {
        let mut st = self.inner.state.lock();
        if st.senders.contains_key(&slot) {
            return Err(Error::SlotTaken {
                slot,
                name: name.to_owned(),
                direction: "sending",
            });
        }
        st.senders.insert(slot, sender);
        Ok(SlotGuard {
            ctx: Arc::downgrade(&self.inner),
            slot,
            receiving: false,
        })
    }

    // ----- sending -----

    /// Send a package into the network: it gets this context's id and next sequence
    /// number and goes over every alive connection (or into the start-up queue).
    ///
    /// Soft back-pressure: called from a thread outside any tokio runtime, it first
    /// waits (up to 1 s) while a connection's send queue is full. Inside a runtime use
    /// [`Context::send_async`], which waits the same way without blocking. A package
    /// with an empty payload is refused ([`Error::EmptyPayload`]): on the wire it
    /// would read as a heartbeat, or as a goodbye that closes the connection.
    #[inline]
    pub fn send(&self, package: Package) -> Result<()> {
        let full = self.route(package)?;
        self.wait_for_room(full)
    }

    /// Send without waiting for room in the send queues.
    pub fn send_now(&self, package: Package) -> Result<()> {
        self.route(package).map(|_| ())
    }

    /// Send; afterwards wait (up to 1 s) while a send queue it went to is full.
    pub async fn send_async(&self, package: Package) -> Result<()> {
        let full = self.route(package)?;
        wait_send_space(full).await;
        Ok(())
    }

    /// Route a package made here (one lock of the router); the connections whose send
    /// queue it left at or above the soft limit (a local sender waits for them).
    fn route(&self, package: Package) -> Result<Vec<Connection>> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed("context"));
        }
        if package.payload.is_empty() {
            return Err(Error::EmptyPayload { slot: package.slot });
        }
        let mut after = AfterPush::default();
        let mut st = self.inner.state.lock();
        if package.payload.len() <= crate::stream::COPY_THRESHOLD
            && push_stamped_small(
                &mut st,
                package.slot,
                (package.dest_id, package.dest_seq),
                &package.payload,
                &mut after,
            )
        {
            drop(st);
            // The package was not moved through the router; its payload is freed
            // after the lock.
            return Ok(after.wake());
        }
        let State { router, queues, .. } = &mut *st;
        router.send(package, |c, p| after.note(c, c.push_package(queues, p)));
        drop(st);
        Ok(after.wake())
    }

    /// Send a broadcast package for `slot` whose payload is copied from `payload`
    /// straight into the send queues: no allocation for payloads up to 16 KiB
    /// ([`COPY_THRESHOLD`](crate::stream::COPY_THRESHOLD)); larger ones, and any
    /// package sent before the first connection, are copied once into a [`Bytes`](bytes::Bytes).
    /// Otherwise as [`Context::send`] (soft back-pressure included); an empty
    /// payload is an error ([`Error::EmptyPayload`]), as for `send`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::{Context, Package, slot_hash};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let slot = slot_hash("doc-slice.bin.pub-sub");
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _guard = b.register_receiver(slot, "doc", std::sync::Arc::new(move |p: Package, _seq: u64| {
    ///     tx.send(p.payload).unwrap();
    /// })).unwrap();
    /// a.bind("inproc://ctx-slice-doc").unwrap();
    /// b.connect("inproc://ctx-slice-doc", Duration::from_secs(1)).unwrap();
    /// let buf = *b"reused buffer";
    /// a.send_slice(slot, &buf).unwrap();
    /// assert_eq!(&rx.recv_timeout(Duration::from_secs(2)).unwrap()[..], b"reused buffer");
    /// ```
    #[inline]
    pub fn send_slice(&self, slot: u64, payload: &[u8]) -> Result<()> {
        let full = self.route_slice(slot, payload)?;
        self.wait_for_room(full)
    }

    /// [`Context::send_slice`], waiting for room as [`Context::send_async`] does.
    pub async fn send_slice_async(&self, slot: u64, payload: &[u8]) -> Result<()> {
        let full = self.route_slice(slot, payload)?;
        wait_send_space(full).await;
        Ok(())
    }

    /// Send broadcast packages for `slot`, one per payload in order, as
    /// [`Context::send_slice`] would one by one, but up to [`SLICES_PER_LOCK`] of them
    /// under one lock of the context: small payloads cost a copy each and no lock of
    /// their own. (A publisher of 64-byte messages into a raw reader, as in `yoton
    /// bench`'s W1, spent a fifth less CPU time per message with calls of 64 than
    /// with one `send_slice` each: 33 against 41 ns.)
    ///
    /// If any payload is empty nothing is sent ([`Error::EmptyPayload`]). Soft
    /// back-pressure as for `send_slice`: a send queue that reaches its soft limit
    /// ends a run, and the call waits (blocking; up to 1 s) before it goes on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::{Context, Package, slot_hash};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let slot = slot_hash("doc-slices.bin.pub-sub");
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let _guard = b.register_receiver(slot, "doc", std::sync::Arc::new(move |p: Package, _seq: u64| {
    ///     tx.send(p.payload).unwrap();
    /// })).unwrap();
    /// a.bind("inproc://ctx-slices-doc").unwrap();
    /// b.connect("inproc://ctx-slices-doc", Duration::from_secs(1)).unwrap();
    /// a.send_slices(slot, &[&b"one"[..], b"two", b"three"]).unwrap();
    /// for m in ["one", "two", "three"] {
    ///     assert_eq!(&rx.recv_timeout(Duration::from_secs(2)).unwrap()[..], m.as_bytes());
    /// }
    /// ```
    pub fn send_slices<P: AsRef<[u8]>>(&self, slot: u64, payloads: &[P]) -> Result<()> {
        check_slices(slot, payloads)?;
        let mut rest = payloads;
        while !rest.is_empty() {
            let (sent, full) = self.route_slices(slot, rest)?;
            self.wait_for_room(full)?;
            rest = rest.get(sent..).unwrap_or_default();
        }
        Ok(())
    }

    /// [`Context::send_slices`], waiting for room as [`Context::send_async`] does.
    pub async fn send_slices_async<P: AsRef<[u8]>>(&self, slot: u64, payloads: &[P]) -> Result<()> {
        check_slices(slot, payloads)?;
        let mut rest = payloads;
        while !rest.is_empty() {
            let (sent, full) = self.route_slices(slot, rest)?;
            wait_send_space(full).await;
            rest = rest.get(sent..).unwrap_or_default();
        }
        Ok(())
    }

    /// After a blocking send: on a thread outside any tokio runtime, wait (up to
    /// [`SEND_QUEUE_WAIT`]) for room in the send queues the send left full; inside a
    /// runtime a blocking send does not wait (`send_async` does).
    fn wait_for_room(&self, full: Vec<Connection>) -> Result<()> {
        if !full.is_empty() && tokio::runtime::Handle::try_current().is_err() {
            self.inner.rt.block_on("send", wait_send_space(full))?;
        }
        Ok(())
    }

    /// Route the first of `payloads` (none empty): a run of small ones under one lock,
    /// up to [`SLICES_PER_LOCK`] and until a send queue reaches its soft limit; else
    /// the first one alone (large, or no connection yet). How many were sent, and the
    /// connections to wait for.
    fn route_slices<P: AsRef<[u8]>>(
        &self,
        slot: u64,
        payloads: &[P],
    ) -> Result<(usize, Vec<Connection>)> {
        let Some(first) = payloads.first().map(AsRef::as_ref) else {
            return Ok((0, Vec::new()));
        };
        if first.len() <= crate::stream::COPY_THRESHOLD {
            if self.inner.closed.load(Ordering::Relaxed) {
                return Err(Error::Closed("context"));
            }
            let mut after = AfterPush::default();
            let mut st = self.inner.state.lock();
            let mut sent = 0;
            for p in payloads.iter().take(SLICES_PER_LOCK).map(AsRef::as_ref) {
                if p.len() > crate::stream::COPY_THRESHOLD
                    || !push_stamped_small(&mut st, slot, (0, 0), p, &mut after)
                {
                    break;
                }
                sent += 1;
                if after.must_wait() {
                    break;
                }
            }
            drop(st);
            let full = after.wake();
            if sent > 0 {
                return Ok((sent, full));
            }
        }
        Ok((1, self.route_slice(slot, first)?))
    }

    #[inline]
    fn route_slice(&self, slot: u64, payload: &[u8]) -> Result<Vec<Connection>> {
        if payload.is_empty() {
            return Err(Error::EmptyPayload { slot });
        }
        if payload.len() <= crate::stream::COPY_THRESHOLD {
            if self.inner.closed.load(Ordering::Relaxed) {
                return Err(Error::Closed("context"));
            }
            let mut after = AfterPush::default();
            let mut st = self.inner.state.lock();
            if push_stamped_small(&mut st, slot, (0, 0), payload, &mut after) {
                drop(st);
                return Ok(after.wake());
            }
        }
        // Large, or no connection yet (the start-up queue keeps packages): one copy.
        self.route(Package::new(slot, bytes::Bytes::copy_from_slice(payload)))
    }

    /// Packages dropped because a connection's send queue was at its hard limit, over
    /// all connections of this context (closed ones included). Each connection also
    /// counts its own: [`Connection::discarded`].
    ///
    /// ```
    /// let ctx = yoton_core::Context::new().unwrap();
    /// assert_eq!(ctx.discarded(), 0);
    /// ```
    pub fn discarded(&self) -> u64 {
        self.inner.discarded.load(Ordering::Relaxed)
    }

    /// Packages waiting for a first connection.
    pub fn startup_queue_len(&self) -> usize {
        self.inner.state.lock().router.startup_len()
    }

    /// Packages dropped because the start-up queue was full.
    pub fn startup_dropped(&self) -> u64 {
        self.inner.state.lock().router.startup_dropped()
    }

    /// Wait until everything queued on every connection is written (async).
    pub async fn flush_async(&self, timeout: Duration) -> Result<()> {
        let conns = self.connections();
        let deadline = tokio::time::Instant::now() + timeout;
        for c in conns.iter().filter(|c| c.is_connected()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            c.flush_async(left).await?;
        }
        Ok(())
    }

    /// Wait until everything queued on every connection is written (blocking).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.rt.block_on("flush", self.flush_async(timeout))?
    }

    // ----- connections -----

    /// The alive connections (waiting or connected), oldest first.
    pub fn connections(&self) -> Vec<Connection> {
        let st = self.inner.state.lock();
        st.connections
            .iter()
            .filter(|c| c.is_alive())
            .cloned()
            .collect()
    }

    /// Every connection of this context: the alive ones and the 16 most recently
    /// closed ones.
    pub fn connections_all(&self) -> Vec<Connection> {
        self.inner.state.lock().connections.clone()
    }

    /// The alive connection with this name.
    pub fn connection(&self, name: &str) -> Option<Connection> {
        self.connections().into_iter().find(|c| c.name() == name)
    }

    /// Number of alive connections.
    pub fn connection_count(&self) -> usize {
        self.connections().len()
    }

    /// An async stream of context events (new and closed connections).
    pub fn events(&self) -> crate::EventStream<ContextEvent> {
        crate::EventStream::new(self.inner.events.subscribe())
    }

    /// Call `f` for every context event from now on: each connection that completes
    /// its handshake (whether made by `bind`, `connect`, `listen` or a reconnect) and
    /// each one that closes. It runs on a runtime thread: keep it short, do not block.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use yoton_core::{Context, ContextEvent};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let peers = Arc::new(Mutex::new(Vec::new()));
    /// let log = peers.clone();
    /// b.on_event(move |e| {
    ///     if let ContextEvent::NewConnection(c) = e {
    ///         log.lock().unwrap().push(c.peer_id());
    ///         // Follow this connection too (time-outs, closing) with c.on_event(...).
    ///     }
    /// });
    /// a.bind("inproc://on-event-doc").unwrap();
    /// b.connect("inproc://on-event-doc", Duration::from_secs(1)).unwrap();
    /// assert_eq!(*peers.lock().unwrap(), [a.id()]);
    /// ```
    pub fn on_event(&self, f: impl Fn(&ContextEvent) + Send + Sync + 'static) {
        self.inner.callbacks.lock().push(Arc::new(f));
    }

    fn new_connection(&self, name: String, status: Status, local: Endpoint) -> Connection {
        let link_id = self.inner.next_link.fetch_add(1, Ordering::Relaxed);
        let queue = Queue::new(self.inner.queue_limits());
        let mut st = self.inner.state.lock();
        let slot = st.queues.insert(link_id, queue);
        let conn = Connection::new(&self.inner, link_id, slot, name, status, local);
        st.connections.push(conn.clone());
        conn
    }

    fn add_link(&self, conn: &Connection) {
        let mut after = AfterPush::default();
        let mut st = self.inner.state.lock();
        let State { router, queues, .. } = &mut *st;
        router.add_link(conn.shared.link_id, conn.clone(), |c, p| {
            after.note_wake(c, c.push_package(queues, &p));
        });
        drop(st);
        after.wake();
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            Err(Error::Closed("context"))
        } else {
            Ok(())
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            id: self.inner.id,
            pid: u64::from(std::process::id()),
        }
    }

    /// Bind at `address` and wait (in the background) for exactly one peer; then the
    /// listening socket is closed. Returns the connection at once, in status
    /// `Waiting`; packages sent meanwhile are queued on it. Port 0 picks a free port
    /// ([`Connection::local`] tells which).
    pub async fn bind_async(&self, address: &str) -> Result<Connection> {
        self.check_open()?;
        let addr = Address::parse(address)?;
        let transport = self.inner.registry.for_address(&addr)?;
        let mut listener = transport.listen(&addr).await.map_err(|e| Error::Listen {
            address: addr.to_string(),
            reason: e.reason,
        })?;
        let local = listener.local();
        let conn = self.new_connection(
            addr.with_port(local.port).to_string(),
            Status::Waiting,
            local,
        );
        self.add_link(&conn);
        let weak = Arc::downgrade(&self.inner);
        let c2 = conn.clone();
        let hello = self.hello();
        let max = self.inner.config.max_message_size;
        let secret = self.inner.config.secret.clone();
        let task = self.inner.rt.spawn(async move {
            loop {
                let raw = match listener.accept().await {
                    Ok(raw) => raw,
                    Err(e) => {
                        c2.close_on_problem(&format!("Socket error. {e}"));
                        return;
                    }
                };
                match establish(raw, Role::Host, hello, max, secret.as_ref()).await {
                    Ok(link) => {
                        // The address is free again before the peer is reported in.
                        listener.close().await;
                        drop(listener);
                        let Some(inner) = weak.upgrade() else { return };
                        let ctx = Context { inner };
                        c2.start(link, Status::Hosting, &ctx.inner.rt);
                        ctx.announce(&c2);
                        return;
                    }
                    Err(e) => {
                        tracing::info!(address = %addr, error = %e, "refused a peer; still waiting");
                    }
                }
            }
        });
        conn.add_task(task);
        Ok(conn)
    }

    /// Blocking version of [`Context::bind_async`].
    pub fn bind(&self, address: &str) -> Result<Connection> {
        self.inner.rt.block_on("bind", self.bind_async(address))?
    }

    /// Connect to the context bound at `address`, retrying until `timeout` (nobody
    /// listening yet, a host at its connection limit that drops the socket during the
    /// handshake); the error names the address. An error that retrying cannot mend (a
    /// refused certificate, a server that speaks another protocol, a refused
    /// authentication) is reported at once ([`Error::ConnectFailed`]); otherwise, when
    /// time runs out, [`Error::Connect`] with the reason of the last attempt. The
    /// Yoton handshake of an attempt has its own time-out, which may end after
    /// `timeout`. Afterwards `NEW_CONNECTION` is broadcast.
    pub async fn connect_async(&self, address: &str, timeout: Duration) -> Result<Connection> {
        self.connect_once(address, timeout).await
    }

    /// Like [`Context::connect_async`], and when the connection is lost later (not
    /// closed by this end), reconnect following `policy`: retries with exponential
    /// backoff; each new connection re-announces itself (`NEW_CONNECTION`, so state
    /// channels resend) and appears in [`Context::events`] and
    /// [`Context::connections`] under the same name. While no connection is alive,
    /// packages wait in the start-up queue (bounded, oldest dropped first) and go out
    /// on the new connection.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use yoton_core::{Context, ReconnectPolicy};
    /// let host = Context::new().unwrap();
    /// let _listener = host.listen_async("inproc://reconnect-doc").await.unwrap();
    /// let guest = Context::new().unwrap();
    /// let conn = guest
    ///     .connect_with_reconnect_async("inproc://reconnect-doc", Duration::from_secs(1), ReconnectPolicy::default())
    ///     .await
    ///     .unwrap();
    /// assert!(conn.is_connected());
    /// # });
    /// ```
    pub async fn connect_with_reconnect_async(
        &self,
        address: &str,
        timeout: Duration,
        policy: ReconnectPolicy,
    ) -> Result<Connection> {
        let conn = self.connect_once(address, timeout).await?;
        self.watch_for_reconnect(&conn, address.to_owned(), policy);
        Ok(conn)
    }

    /// Blocking version of [`Context::connect_with_reconnect_async`].
    pub fn connect_with_reconnect(
        &self,
        address: &str,
        timeout: Duration,
        policy: ReconnectPolicy,
    ) -> Result<Connection> {
        self.inner.rt.block_on(
            "connect_with_reconnect",
            self.connect_with_reconnect_async(address, timeout, policy),
        )?
    }

    fn watch_for_reconnect(&self, conn: &Connection, address: String, policy: ReconnectPolicy) {
        let weak = Arc::downgrade(&self.inner);
        let rt = self.inner.rt.clone();
        // Started once: by the closed callback, or below when the connection closed
        // before the callback was registered.
        let started_once = AtomicBool::new(false);
        let on_lost = Arc::new(move |c: &Connection, reason: &str| {
            if c.closed_by_user() || started_once.swap(true, Ordering::AcqRel) {
                return;
            }
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.load(Ordering::Relaxed) {
                return;
            }
            tracing::info!(address = %address, reason, "connection lost; reconnecting");
            let weak = Arc::downgrade(&inner);
            drop(inner);
            let (address, policy) = (address.clone(), policy.clone());
            rt.spawn(async move {
                let mut delay = policy.initial_delay;
                let started = tokio::time::Instant::now();
                let mut attempt = 0u32;
                loop {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    let Some(inner) = weak.upgrade() else { return };
                    let ctx = Context { inner };
                    if ctx.is_closed() {
                        return;
                    }
                    match ctx.connect_once(&address, policy.attempt_timeout).await {
                        Ok(conn) => {
                            tracing::info!(address = %address, attempt, "reconnected");
                            ctx.watch_for_reconnect(&conn, address.clone(), policy.clone());
                            return;
                        }
                        // Retrying cannot mend this one (say, the server's new
                        // certificate is refused): worth a warning; the policy goes
                        // on (the server may be fixed meanwhile) unless told not to.
                        Err(e @ Error::ConnectFailed { .. }) => {
                            if policy.stop_on_permanent_failure {
                                tracing::warn!(address = %address, attempt, error = %e, "reconnect failed for good; giving up");
                                return;
                            }
                            tracing::warn!(address = %address, attempt, error = %e, "reconnect failed");
                        }
                        Err(e) => tracing::debug!(address = %address, attempt, error = %e, "reconnect failed"),
                    }
                    let gave_up = policy.max_attempts.is_some_and(|m| attempt >= m)
                        || policy.give_up_after.is_some_and(|g| started.elapsed() >= g);
                    if gave_up {
                        tracing::warn!(address = %address, attempt, "giving up reconnecting");
                        return;
                    }
                    delay = (delay * 2).min(policy.max_delay);
                }
            });
        });
        let lost = on_lost.clone();
        conn.on_closed(move |c, reason| lost(c, reason));
        if conn.status() == Status::Closed {
            on_lost(conn, &conn.close_reason().unwrap_or_default());
        }
    }

    async fn connect_once(&self, address: &str, timeout: Duration) -> Result<Connection> {
        self.check_open()?;
        let addr = Address::parse(address)?;
        let transport = self.inner.registry.for_address(&addr)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |reason: String| Error::Connect {
            address: addr.to_string(),
            timeout,
            reason,
        };
        let for_good = |reason: String| Error::ConnectFailed {
            address: addr.to_string(),
            reason,
        };
        // The reason of the latest failed attempt: when time runs out during a retry,
        // that reason (a refused certificate, say) says more than "no answer".
        let mut last_error: Option<String> = None;
        let pause = (timeout / 100).clamp(Duration::from_millis(5), Duration::from_millis(100));
        let link = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let error = match tokio::time::timeout(
                left.max(Duration::from_millis(10)),
                transport.connect(&addr),
            )
            .await
            {
                Err(_) => return Err(timed_out(last_error.unwrap_or_else(|| "no answer".into()))),
                Ok(Err(e)) => e,
                // The Yoton handshake has a time-out of its own (and may take longer
                // than what is left of the connect's).
                Ok(Ok(raw)) => match establish(
                    raw,
                    Role::Client,
                    self.hello(),
                    self.inner.config.max_message_size,
                    self.inner.config.secret.as_ref(),
                )
                .await
                {
                    Ok(link) => break link,
                    Err(e) => TransportError {
                        permanent: !e.may_pass(),
                        reason: e.to_string(),
                    },
                },
            };
            if error.permanent {
                return Err(for_good(error.reason));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out(error.reason));
            }
            last_error = Some(error.reason);
            tokio::time::sleep(pause.min(left)).await;
        };
        let conn = self.new_connection(addr.to_string(), Status::Connected, link.local.clone());
        conn.start(link, Status::Connected, &self.inner.rt);
        self.add_link(&conn);
        self.announce(&conn);
        self.send_now(Package::new(SLOT_CONTEXT, NEW_CONNECTION))?;
        // Our own state channels resend too, so the other side learns our state (after
        // a reconnect, what was sent before is not queued any more).
        self.inner.new_connection_hooks();
        Ok(conn)
    }

    /// Blocking version of [`Context::connect_async`].
    pub fn connect(&self, address: &str, timeout: Duration) -> Result<Connection> {
        self.inner
            .rt
            .block_on("connect", self.connect_async(address, timeout))?
    }

    /// Listen at `address` and accept any number of peers, each a [`Connection`]
    /// (status `Hosting`) in this context. Handshakes run concurrently, so a slow or
    /// wrong client does not hold up others.
    pub async fn listen_async(&self, address: &str) -> Result<Listener> {
        self.check_open()?;
        let addr = Address::parse(address)?;
        let transport = self.inner.registry.for_address(&addr)?;
        let mut listener = transport.listen(&addr).await.map_err(|e| Error::Listen {
            address: addr.to_string(),
            reason: e.reason,
        })?;
        let local = listener.local();
        let backlog = Arc::new(Backlog::default());
        let ctx = self.clone();
        let weak = Arc::downgrade(&self.inner);
        let name = addr.to_string();
        let tx = backlog.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (done_tx, done) = tokio::sync::watch::channel(());
        self.inner.rt.spawn(async move {
            // Dropped when this task ends, however it ends: `done` sees it.
            let _done = done_tx;
            drop(ctx);
            tokio::select! {
                () = accept_loop(weak, &mut *listener, name, tx.clone()) => {}
                _ = stopped.wait_for(|stop| *stop) => {}
            }
            tx.close();
            listener.close().await;
            // Before `_done` goes (a captured value would outlive the task's locals).
            drop(listener);
        });
        Ok(Listener {
            local,
            address: addr,
            backlog,
            stop,
            done,
            handle: self.inner.rt.handle().clone(),
        })
    }

    /// Blocking version of [`Context::listen_async`].
    pub fn listen(&self, address: &str) -> Result<Listener> {
        self.inner
            .rt
            .block_on("listen", self.listen_async(address))?
    }

    fn announce(&self, conn: &Connection) {
        self.inner.emit(ContextEvent::NewConnection(conn.clone()));
    }

    /// Close every connection (each says goodbye and flushes up to 1 s) and stop.
    pub async fn close_async(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let conns = self.connections_all();
        let closing = conns.iter().map(|c| c.close_async(""));
        futures_util::future::join_all(closing).await;
    }

    /// Blocking version of [`Context::close_async`].
    pub fn close(&self) {
        let _ = self.inner.rt.block_on("close", self.close_async());
    }

    /// Whether [`Context::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }
}

/// Stamp a small package made here (`dest`: its dest_id and dest_seq) and encode it
/// straight into every link's send queue, as `send` and `send_slice` do for payloads
/// up to the copy threshold; writers to wake and connections whose queue it left at
/// or above the soft limit go to `after`. False, with nothing stamped, when there is
/// no link yet (the caller hands an owned package to `Router::send` for the start-up
/// queue). This context's own context messages are never discarded.
#[inline]
fn push_stamped_small(
    st: &mut State,
    slot: u64,
    dest: (u64, u64),
    payload: &[u8],
    after: &mut AfterPush,
) -> bool {
    let Some((source_id, source_seq)) = st.router.stamp() else {
        return false;
    };
    let header = crate::package::Header {
        slot,
        source_id,
        source_seq,
        dest_id: dest.0,
        dest_seq: dest.1,
        length: payload.len() as u64,
    }
    .to_bytes();
    let exempt = slot == SLOT_CONTEXT;
    for (_, c) in st.router.links() {
        after.note(c, c.push_small(&mut st.queues, &header, payload, exempt));
    }
    true
}

/// Refuse a list of payloads with an empty one (before any is sent).
fn check_slices<P: AsRef<[u8]>>(slot: u64, payloads: &[P]) -> Result<()> {
    if payloads.iter().any(|p| p.as_ref().is_empty()) {
        return Err(Error::EmptyPayload { slot });
    }
    Ok(())
}

/// Wait (up to [`SEND_QUEUE_WAIT`] in all) for room in each of these send queues.
async fn wait_send_space(full: Vec<Connection>) {
    let deadline = tokio::time::Instant::now() + SEND_QUEUE_WAIT;
    for c in full {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        c.wait_space(left).await;
    }
}

async fn accept_loop(
    ctx: std::sync::Weak<ContextInner>,
    listener: &mut dyn TransportListener,
    name: String,
    tx: Arc<Backlog>,
) {
    let pending = Arc::new(AtomicU64::new(0));
    let alive = Arc::new(AtomicU64::new(0));
    loop {
        let raw = match listener.accept().await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(address = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = ctx.upgrade() else { return };
        let ctx = Context { inner };
        let config = &ctx.inner.config;
        // Limits: a socket over them is closed at once (dropped), keeping file
        // descriptors and memory bounded under a flood.
        if pending.load(Ordering::Acquire) >= config.max_pending_handshakes as u64 {
            tracing::warn!(address = %name, limit = config.max_pending_handshakes, "too many handshakes in progress; dropped a new socket");
            continue;
        }
        if alive.load(Ordering::Acquire) >= config.max_connections as u64 {
            tracing::warn!(address = %name, limit = config.max_connections, "connection limit reached; dropped a new socket");
            continue;
        }
        pending.fetch_add(1, Ordering::AcqRel);
        let (tx, name, pending, alive) = (tx.clone(), name.clone(), pending.clone(), alive.clone());
        ctx.inner.rt.clone().spawn(async move {
            let max = ctx.inner.config.max_message_size;
            let secret = ctx.inner.config.secret.clone();
            let result = establish(raw, Role::Host, ctx.hello(), max, secret.as_ref()).await;
            pending.fetch_sub(1, Ordering::AcqRel);
            match result {
                Ok(link) => {
                    let conn = ctx.new_connection(
                        format!("{name}#{}", link.peer),
                        Status::Hosting,
                        link.local.clone(),
                    );
                    alive.fetch_add(1, Ordering::AcqRel);
                    conn.on_closed(move |_, _| {
                        alive.fetch_sub(1, Ordering::AcqRel);
                    });
                    conn.start(link, Status::Hosting, &ctx.inner.rt);
                    ctx.add_link(&conn);
                    ctx.announce(&conn);
                    tx.push(conn);
                }
                Err(e) => tracing::info!(address = %name, error = %e, "refused a peer"),
            }
        });
    }
}

/// A listening endpoint that accepts any number of peers.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let host = yoton_core::Context::new().unwrap();
/// let listener = host.listen_async("inproc://listen-doc").await.unwrap();
/// for _ in 0..3 {
///     let c = yoton_core::Context::new().unwrap();
///     c.connect_async("inproc://listen-doc", Duration::from_secs(1)).await.unwrap();
///     let conn = listener.accept_async(Duration::from_secs(1)).await.unwrap();
///     assert_eq!(conn.peer_id(), c.id());
/// }
/// # });
/// ```
#[derive(Debug)]
pub struct Listener {
    local: Endpoint,
    address: Address,
    backlog: Arc<Backlog>,
    /// Tells the accept task to stop.
    stop: tokio::sync::watch::Sender<bool>,
    /// Closed when the accept task has ended and dropped the transport's listener.
    done: tokio::sync::watch::Receiver<()>,
    /// The context's runtime, for the blocking [`Listener::close`].
    handle: tokio::runtime::Handle,
}

/// Connections a listener accepted and [`Listener::accept_async`] has not handed out
/// yet. Only alive ones are kept (closed ones are dropped whenever one is added), so a
/// listener nobody calls `accept` on holds at most `max_connections` of them.
#[derive(Default)]
struct Backlog {
    queue: Mutex<std::collections::VecDeque<Connection>>,
    added: tokio::sync::Notify,
    closed: AtomicBool,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("len", &self.queue.lock().len())
            .finish()
    }
}

impl Backlog {
    fn push(&self, conn: Connection) {
        let mut q = self.queue.lock();
        q.retain(Connection::is_alive);
        q.push_back(conn);
        drop(q);
        self.added.notify_waiters();
    }

    /// The oldest connection that is still alive (closed ones are dropped).
    fn pop_alive(&self) -> Option<Connection> {
        let mut q = self.queue.lock();
        while let Some(c) = q.pop_front() {
            if c.is_alive() {
                return Some(c);
            }
        }
        None
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.added.notify_waiters();
    }
}

impl Listener {
    /// Where it listens (the real port when port 0 was asked for).
    pub fn local(&self) -> &Endpoint {
        &self.local
    }

    /// The address that was given, with the real port.
    pub fn address(&self) -> Address {
        self.address.with_port(self.local.port)
    }

    /// The next connection that completed its handshake and is still alive (async).
    pub async fn accept_async(&self, timeout: Duration) -> Result<Connection> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let added = self.backlog.added.notified();
            if let Some(c) = self.backlog.pop_alive() {
                return Ok(c);
            }
            if self.backlog.closed.load(Ordering::Acquire) {
                return Err(Error::Closed("listener"));
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Err(Error::Timeout(timeout));
            }
        }
    }

    /// Accepted connections not yet handed out by `accept` (alive ones only).
    pub fn backlog_len(&self) -> usize {
        self.backlog.queue.lock().len()
    }

    /// Stop accepting and give the address back: when this returns, the listening
    /// socket is closed and the address can be bound again. Not so over QUIC, whose
    /// UDP socket is shared with the connections accepted on it: it closes after the
    /// last of them, a moment later. Existing connections stay. Waiting `accept`
    /// calls end with [`Error::Closed`]. Dropping a listener stops it too, without
    /// waiting.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let ctx = yoton_core::Context::builder()
    ///     .transport(yoton_core::inproc::InprocTransport)
    ///     .build()
    ///     .unwrap();
    /// let listener = ctx.listen_async("inproc://close-doc").await.unwrap();
    /// listener.close_async().await;
    /// let again = ctx.listen_async("inproc://close-doc").await.unwrap();
    /// # drop(again);
    /// # });
    /// ```
    pub async fn close_async(&self) {
        self.stop_accepting();
        self.stopped().await;
    }

    /// Blocking version of [`Listener::close_async`]. On the thread of a
    /// current-thread runtime, where it cannot wait, it stops the listener and
    /// returns at once (the socket is closed moments later; use `close_async` there).
    pub fn close(&self) {
        self.stop_accepting();
        let _ = crate::runtime::block_on(&self.handle, "close", self.stopped());
    }

    /// Until the accept task has ended and dropped the transport's listener.
    async fn stopped(&self) {
        let mut done = self.done.clone();
        // Ends with an error once the task has dropped its end.
        while done.changed().await.is_ok() {}
    }

    fn stop_accepting(&self) {
        self.stop.send_replace(true);
        self.backlog.close();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

impl ContextInner {
    pub(crate) fn queue_limits(&self) -> crate::outbox::QueueLimits {
        crate::outbox::QueueLimits {
            packages: self.config.send_queue,
            bytes: self.config.send_queue_bytes,
        }
    }

    /// Route packages that arrived over `link` (their receive sequence numbers are
    /// filled in here), then handle context messages. `packages` is left empty.
    pub(crate) fn receive(&self, link: LinkId, packages: &mut Vec<(Package, u64)>) {
        let mut context_messages: Vec<Package> = Vec::new();
        let mut after = AfterPush::default();
        // Receivers to call `after_deposit` on once the lock is released.
        let mut deposited: Vec<Arc<dyn SlotReceiver>> = Vec::new();
        {
            let mut st = self.state.lock();
            let st = &mut *st;
            // Judge in place: the packages to deposit move to the front, in order,
            // with their receive sequence numbers. The usual read continues the
            // stream heard last: all of it at once.
            let first_slot = packages.first().map_or(0, |(p, _)| p.slot);
            let accepted = st.router.accept_stream(packages, link);
            let mut one_slot = packages
                .get(..accepted)
                .unwrap_or_default()
                .iter()
                .all(|(p, _)| p.slot == first_slot && p.slot != SLOT_CONTEXT);
            let mut kept = accepted;
            for i in accepted..packages.len() {
                let Some((p, seq)) = packages.get_mut(i) else {
                    break;
                };
                // Forwarding never waits (the reader must go on): a full queue only
                // slows down local senders, and beyond its hard limit a forwarded
                // package is discarded and counted like any other.
                let verdict = st.router.judge(p, link, |c, p| {
                    after.note_wake(c, c.push_package(&mut st.queues, p));
                });
                if let Verdict::Deposit(recv_seq) = verdict {
                    *seq = recv_seq;
                    one_slot &= p.slot == first_slot && p.slot != SLOT_CONTEXT;
                    if kept != i {
                        packages.swap(kept, i);
                    }
                    kept += 1;
                }
            }
            packages.truncate(kept);
            // Consecutive packages for one slot are handed over as one batch (one lock
            // and one wake-up of the channel); the receiver leaves it empty.
            let mut flush = |run: &mut Vec<(Package, u64)>, slot: u64, st: &State| {
                if run.is_empty() {
                    return;
                }
                if let Some(r) = st.receivers.get(&slot) {
                    r.receiver.deposit_batch(run);
                    if r.after && !deposited.iter().any(|d| Arc::ptr_eq(d, &r.receiver)) {
                        deposited.push(r.receiver.clone());
                    }
                }
                run.clear();
            };
            if one_slot {
                // The usual read, all for one channel: the list itself is the batch
                // (an empty channel queue takes it as it is).
                flush(packages, first_slot, st);
            } else {
                let mut run = std::mem::take(&mut st.run);
                let mut run_slot = 0u64;
                for (p, seq) in packages.drain(..) {
                    if p.slot == SLOT_CONTEXT {
                        context_messages.push(p);
                        continue;
                    }
                    if p.slot != run_slot {
                        flush(&mut run, run_slot, st);
                        run_slot = p.slot;
                    }
                    run.push((p, seq));
                }
                flush(&mut run, run_slot, st);
                if run.capacity() <= KEEP_PACKAGE_LIST {
                    st.run = run;
                }
            }
        }
        // Forwarding never waits: only the writers are woken.
        after.wake();
        for r in deposited {
            r.after_deposit();
        }
        for p in context_messages {
            self.context_message(&p);
        }
    }

    fn context_message(&self, p: &Package) {
        match std::str::from_utf8(&p.payload) {
            Ok(NEW_CONNECTION) => self.new_connection_hooks(),
            Ok(CLOSE_CONNECTION) => {
                let conns: Vec<Connection> = self.state.lock().connections.clone();
                for c in conns {
                    if c.is_connected() && c.peer_id() == p.source_id {
                        c.close_on_problem(STOP_CLOSED_FROM_THERE);
                    }
                }
            }
            other => tracing::warn!(message = ?other, "unknown context message"),
        }
    }

    fn new_connection_hooks(&self) {
        let senders: Vec<Arc<dyn SlotSender>> =
            self.state.lock().senders.values().cloned().collect();
        for s in senders {
            s.on_new_connection();
        }
    }

    pub(crate) fn remove_link(&self, link: LinkId) {
        self.state.lock().router.remove_link(link);
    }

    /// Run `f` on the send queue of `link`, kept in `slot` (see [`crate::outbox`]);
    /// `None` when it has none (any more).
    pub(crate) fn with_queue<R>(
        &self,
        slot: usize,
        link: LinkId,
        f: impl FnOnce(&mut Queue) -> R,
    ) -> Option<R> {
        self.state.lock().queues.get_mut(slot, link).map(f)
    }

    /// Drop the send queue of a finished connection, with what it still holds.
    pub(crate) fn remove_queue(&self, slot: usize, link: LinkId) {
        let queue = self.state.lock().queues.remove(slot, link);
        drop(queue);
    }

    pub(crate) fn connection_closed(&self, conn: &Connection, reason: &str) {
        {
            // Keep only the most recent closed connections (for `connections_all`), so
            // that peers connecting and leaving in a loop cannot grow the context.
            let mut st = self.state.lock();
            let closed = st
                .connections
                .iter()
                .filter(|c| c.status() == Status::Closed)
                .count();
            let mut excess = closed.saturating_sub(CLOSED_HISTORY);
            st.connections.retain(|c| {
                if excess > 0 && c.status() == Status::Closed {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.emit(ContextEvent::ConnectionClosed(
            conn.clone(),
            reason.to_owned(),
        ));
    }

    fn emit(&self, event: ContextEvent) {
        let callbacks: Vec<EventCallback> = self.callbacks.lock().clone();
        for cb in callbacks {
            cb(&event);
        }
        let _ = self.events.send(event);
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        for c in st.connections.drain(..) {
            c.close_on_problem("Context dropped.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex as PlMutex;

    type Got = Arc<PlMutex<Vec<(u64, u64)>>>;

    /// A receiver that records (source sequence, receive sequence) of what it gets.
    fn recorder(ctx: &Context, slot: u64) -> (Got, SlotGuard) {
        let got: Got = Arc::default();
        let g = got.clone();
        let guard = ctx
            .register_receiver(
                slot,
                "test",
                Arc::new(move |p: Package, seq: u64| g.lock().push((p.source_seq, seq))),
            )
            .unwrap();
        (got, guard)
    }

    fn package(slot: u64, source: u64, seq: u64) -> (Package, u64) {
        let mut p = Package::new(slot, "x");
        p.source_id = source;
        p.source_seq = seq;
        (p, 0)
    }

    #[test]
    fn receive_deposits_in_order_and_drops_what_the_router_refuses() {
        let ctx = Context::new().unwrap();
        let (a, _ga) = recorder(&ctx, 100);
        let (b, _gb) = recorder(&ctx, 200);
        // One slot only, with a duplicate and an own package among them.
        let mut read = vec![
            package(100, 42, 1),
            package(100, 42, 2),
            package(100, 42, 2),
            package(100, ctx.id(), 1),
            package(100, 42, 3),
        ];
        ctx.inner.receive(7, &mut read);
        assert!(read.is_empty());
        assert_eq!(*a.lock(), [(1, 1), (2, 2), (3, 3)]);
        // Two slots interleaved, a duplicate, a context message and a package for a
        // slot nobody listens to.
        let mut read = vec![
            package(200, 42, 4),
            package(100, 42, 5),
            package(100, 42, 4),
            package(SLOT_CONTEXT, 42, 6),
            package(300, 42, 7),
            package(200, 42, 8),
        ];
        ctx.inner.receive(7, &mut read);
        assert!(read.is_empty());
        assert_eq!(*a.lock(), [(1, 1), (2, 2), (3, 3), (5, 5)]);
        assert_eq!(*b.lock(), [(4, 4), (8, 8)]);
        // A read that the router refuses entirely.
        let mut read = vec![package(100, 42, 5), package(200, 42, 8)];
        ctx.inner.receive(7, &mut read);
        assert!(read.is_empty());
        assert_eq!(a.lock().len(), 4);
        assert_eq!(b.lock().len(), 2);
    }
}
