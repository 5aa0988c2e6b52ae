//! Publish/subscribe (PROTOCOL.md section 6): [`PubChannel`] broadcasts, every
//! [`SubChannel`] at the same slot in the network receives. Sync mode lets slow
//! subscribers slow the publishers down.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use yoton_core::context::SLICES_PER_LOCK;
use yoton_core::{channel_slot, Context, Package, SlotGuard, SlotReceiver, SlotSender};

use crate::error::{ChannelError, Result};
use crate::message::{MessageType, Text};
use crate::queue::{DiscardMode, Inbox, Notifier};

/// Queue length above which a subscriber in sync mode says `full`.
pub const SYNC_HWM: usize = 32;
/// Queue length below which it says `ok` again.
pub const SYNC_LWM: usize = 16;
/// Longest wait of one send on a publisher that some subscriber said `full` to.
pub const SYNC_SEND_WAIT: Duration = Duration::from_secs(1);
/// A `full` lock expires by itself after this long.
pub const SYNC_LOCK_EXPIRY: Duration = Duration::from_secs(10);
/// A subscriber in sync mode repeats its status this often while it is checked.
const SYNC_REPEAT: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------- publisher

struct PubLock {
    full_sources: Mutex<(HashSet<u64>, Option<Instant>)>,
    /// Fast path: false while no subscriber said `full`.
    any_full: AtomicBool,
    unlocked: Notify,
}

impl SlotReceiver for PubLock {
    fn deposit(&self, package: Package, _recv_seq: u64) {
        let mut st = self.full_sources.lock();
        if package.payload.as_ref() == b"full" {
            st.0.insert(package.source_id);
        } else {
            st.0.remove(&package.source_id);
        }
        if st.0.is_empty() {
            st.1 = None;
            self.any_full.store(false, Ordering::Release);
            drop(st);
            self.unlocked.notify_waiters();
        } else {
            st.1 = Some(Instant::now() + SYNC_LOCK_EXPIRY);
            self.any_full.store(true, Ordering::Release);
        }
    }
}

impl PubLock {
    #[inline]
    fn locked(&self) -> bool {
        if !self.any_full.load(Ordering::Acquire) {
            return false;
        }
        let mut st = self.full_sources.lock();
        match st.1 {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // Expired: forget the lock (as the reference does).
                st.1 = None;
                st.0.clear();
                self.any_full.store(false, Ordering::Release);
                false
            }
            None => false,
        }
    }

    async fn wait_unlocked(&self) {
        let notified = self.unlocked.notified();
        if self.locked() {
            let _ = tokio::time::timeout(SYNC_SEND_WAIT, notified).await;
        }
    }
}

struct NoHooks;
impl SlotSender for NoHooks {}

struct PubInner {
    ctx: Context,
    name: String,
    slot: u64,
    lock: Arc<PubLock>,
    closed: AtomicBool,
    guards: Mutex<Vec<SlotGuard>>,
}

/// The sending end of publish/subscribe. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{PubChannel, SubChannel, Text};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let publisher = PubChannel::<Text>::new(&a, "news").unwrap();
/// let subscriber = SubChannel::<Text>::new(&b, "news").unwrap();
/// a.bind("inproc://pubsub-doc").unwrap();
/// b.connect("inproc://pubsub-doc", Duration::from_secs(1)).unwrap();
/// publisher.send("hello".to_string()).unwrap();
/// let got = subscriber.recv_timeout(Duration::from_secs(2)).unwrap();
/// assert_eq!(got.as_deref(), Some("hello"));
/// ```
pub struct PubChannel<M: MessageType = Text> {
    inner: Arc<PubInner>,
    _m: PhantomData<fn(M)>,
}

impl<M: MessageType> Clone for PubChannel<M> {
    fn clone(&self) -> Self {
        PubChannel {
            inner: self.inner.clone(),
            _m: PhantomData,
        }
    }
}

impl<M: MessageType> std::fmt::Debug for PubChannel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PubChannel({}.{}.pub-sub)", self.inner.name, M::NAME)
    }
}

impl<M: MessageType> PubChannel<M> {
    /// A publisher at slot `name` (the slot string is `name.TYPE.pub-sub`).
    pub fn new(ctx: &Context, name: &str) -> Result<Self> {
        let slot = channel_slot(name, M::NAME, "pub-sub");
        let control = channel_slot(name, M::NAME, "sub-pub");
        let lock = Arc::new(PubLock {
            full_sources: Mutex::new((HashSet::new(), None)),
            any_full: AtomicBool::new(false),
            unlocked: Notify::new(),
        });
        let g1 = ctx.register_sender(
            slot,
            &format!("{name}.{}.pub-sub", M::NAME),
            Arc::new(NoHooks),
        )?;
        let g2 = ctx.register_receiver(
            control,
            &format!("{name}.{}.sub-pub", M::NAME),
            lock.clone(),
        )?;
        Ok(PubChannel {
            inner: Arc::new(PubInner {
                ctx: ctx.clone(),
                name: name.to_owned(),
                slot,
                lock,
                closed: AtomicBool::new(false),
                guards: Mutex::new(vec![g1, g2]),
            }),
            _m: PhantomData,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ChannelError::Closed("pub", self.inner.name.clone()));
        }
        Ok(())
    }

    fn package(&self, message: M::Message) -> Result<Option<Package>> {
        self.check_open()?;
        let payload = M::encode(message)?;
        if payload.is_empty() {
            return Ok(None);
        }
        Ok(Some(Package::new(self.inner.slot, payload)))
    }

    /// Publish a message (blocking style). Waits up to 1 s while a subscriber in sync
    /// mode is full, and up to 1 s for room in full send queues. An empty message is
    /// not sent.
    pub fn send(&self, message: M::Message) -> Result<()> {
        let Some(p) = self.package(message)? else {
            return Ok(());
        };
        self.wait_unlocked()?;
        Ok(self.inner.ctx.send(p)?)
    }

    /// Publish a message (async style); the same waits as [`PubChannel::send`].
    pub async fn send_async(&self, message: M::Message) -> Result<()> {
        let Some(p) = self.package(message)? else {
            return Ok(());
        };
        self.inner.lock.wait_unlocked().await;
        Ok(self.inner.ctx.send_async(p).await?)
    }

    /// While a subscriber in sync mode has its queue full, wait (blocking) as the
    /// async senders do (`PubLock::wait_unlocked`).
    fn wait_unlocked(&self) -> Result<()> {
        if self.inner.lock.locked() {
            self.inner
                .ctx
                .block_on("send", self.inner.lock.wait_unlocked())?;
        }
        Ok(())
    }

    /// Whether some subscriber in sync mode asked this publisher to slow down.
    pub fn is_throttled(&self) -> bool {
        self.inner.lock.locked()
    }

    /// The base slot name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The context this channel sends through.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// Unregister the channel; later sends fail.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.guards.lock().clear();
    }
}

impl PubChannel<crate::message::Binary> {
    /// Publish the bytes of `message` without handing over a [`Bytes`](bytes::Bytes):
    /// they are copied straight into the send queues, so a buffer can be reused for
    /// every message and nothing is allocated per message (up to 16 KiB; larger
    /// messages are copied once). Waits as [`PubChannel::send`] does; an empty
    /// message is not sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::{Binary, PubChannel, SubChannel};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let publisher = PubChannel::<Binary>::new(&a, "ticks").unwrap();
    /// let sub = SubChannel::<Binary>::new(&b, "ticks").unwrap();
    /// a.bind("inproc://send-slice-doc").unwrap();
    /// b.connect("inproc://send-slice-doc", Duration::from_secs(1)).unwrap();
    /// let mut buf = [0u8; 8];
    /// for i in 0..3u64 {
    ///     buf.copy_from_slice(&i.to_le_bytes());
    ///     publisher.send_slice(&buf).unwrap();
    /// }
    /// for i in 0..3u64 {
    ///     let m = sub.recv_timeout(Duration::from_secs(2)).unwrap().unwrap();
    ///     assert_eq!(m[..], i.to_le_bytes());
    /// }
    /// ```
    pub fn send_slice(&self, message: &[u8]) -> Result<()> {
        if !self.slice_wanted(message)? {
            return Ok(());
        }
        self.wait_unlocked()?;
        Ok(self.inner.ctx.send_slice(self.inner.slot, message)?)
    }

    /// Publish many messages at once, in order, each as [`PubChannel::send_slice`]
    /// would: runs of up to [`SLICES_PER_LOCK`] go into the send queues under one lock
    /// (for small messages, about a fifth less CPU time per message than one
    /// `send_slice` each). Empty messages are not sent. Waits as `send_slice` does,
    /// checking a sync-mode subscriber's request to slow down before each run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::{Binary, PubChannel, SubChannel};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let publisher = PubChannel::<Binary>::new(&a, "batch").unwrap();
    /// let sub = SubChannel::<Binary>::new(&b, "batch").unwrap();
    /// a.bind("inproc://send-slices-doc").unwrap();
    /// b.connect("inproc://send-slices-doc", Duration::from_secs(1)).unwrap();
    /// let ticks: Vec<[u8; 8]> = (0..100u64).map(u64::to_le_bytes).collect();
    /// publisher.send_slices(&ticks).unwrap();
    /// for t in &ticks {
    ///     assert_eq!(sub.recv_timeout(Duration::from_secs(2)).unwrap().unwrap()[..], t[..]);
    /// }
    /// ```
    pub fn send_slices<P: AsRef<[u8]>>(&self, messages: &[P]) -> Result<()> {
        self.check_open()?;
        if messages.iter().any(|m| m.as_ref().is_empty()) {
            return self.send_runs(&non_empty(messages));
        }
        self.send_runs(messages)
    }

    fn send_runs<P: AsRef<[u8]>>(&self, messages: &[P]) -> Result<()> {
        for run in messages.chunks(SLICES_PER_LOCK) {
            self.wait_unlocked()?;
            self.inner.ctx.send_slices(self.inner.slot, run)?;
        }
        Ok(())
    }

    /// [`PubChannel::send_slices`], async style.
    pub async fn send_slices_async<P: AsRef<[u8]>>(&self, messages: &[P]) -> Result<()> {
        self.check_open()?;
        if messages.iter().any(|m| m.as_ref().is_empty()) {
            return self.send_runs_async(&non_empty(messages)).await;
        }
        self.send_runs_async(messages).await
    }

    async fn send_runs_async<P: AsRef<[u8]>>(&self, messages: &[P]) -> Result<()> {
        for run in messages.chunks(SLICES_PER_LOCK) {
            self.inner.lock.wait_unlocked().await;
            let send = self.inner.ctx.send_slices_async(self.inner.slot, run);
            send.await?;
        }
        Ok(())
    }

    /// [`PubChannel::send_slice`], async style.
    pub async fn send_slice_async(&self, message: &[u8]) -> Result<()> {
        if !self.slice_wanted(message)? {
            return Ok(());
        }
        self.inner.lock.wait_unlocked().await;
        Ok(self
            .inner
            .ctx
            .send_slice_async(self.inner.slot, message)
            .await?)
    }

    fn slice_wanted(&self, message: &[u8]) -> Result<bool> {
        self.check_open()?;
        Ok(!message.is_empty())
    }
}

/// The messages of a `send_slices` call that are sent: the empty ones left out.
fn non_empty<P: AsRef<[u8]>>(messages: &[P]) -> Vec<&[u8]> {
    messages
        .iter()
        .map(AsRef::as_ref)
        .filter(|m| !m.is_empty())
        .collect()
}

// ---------------------------------------------------------------- subscriber

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum QueueStatus {
    Off,
    Ok,
    Full,
}

struct SyncState {
    status: QueueStatus,
    repeat_at: Instant,
}

struct SubShared {
    ctx: Context,
    name: String,
    out_slot: u64,
    inbox: Inbox,
    notifier: Arc<Notifier>,
    sync: Mutex<SyncState>,
    check_posted: AtomicBool,
    sync_on: AtomicBool,
    invalid: std::sync::atomic::AtomicU64,
    ref_seq: std::sync::atomic::AtomicU64,
    spinner: crate::spin::Spinner,
}

impl SubShared {
    /// Sync mode: tell publishers `full` above the high-water mark and `ok` below
    /// the low-water mark (and repeat the status every few seconds).
    fn check_queue_status(&self) {
        let send = {
            let mut st = self.sync.lock();
            if st.status == QueueStatus::Off {
                return;
            }
            let n = self.inbox.len();
            let now = Instant::now();
            let mut send = None;
            if n > SYNC_HWM && st.status == QueueStatus::Ok {
                st.status = QueueStatus::Full;
                send = Some("full");
            } else if n < SYNC_LWM && st.status == QueueStatus::Full {
                st.status = QueueStatus::Ok;
                send = Some("ok");
            } else if now >= st.repeat_at {
                send = Some(if st.status == QueueStatus::Full {
                    "full"
                } else {
                    "ok"
                });
            }
            if send.is_some() {
                st.repeat_at = now + SYNC_REPEAT;
            }
            send
        };
        if let Some(text) = send {
            self.send_control(text);
        }
    }

    fn send_control(&self, text: &'static str) {
        if self.ctx.connection_count() == 0 {
            return;
        }
        let p = Package::new(self.out_slot, text);
        if let Err(e) = self.ctx.send_now(p) {
            tracing::debug!(channel = %self.name, error = %e, "could not send sync status");
        }
    }
}

struct SubSink {
    shared: std::sync::Weak<SubShared>,
}

impl SubSink {
    fn after_push(shared: &Arc<SubShared>, n: usize) {
        let rt = shared.ctx.runtime();
        shared.notifier.arrived(rt);
        // Sync mode: the status message is sent from a task (never inside the router).
        let sync_on = shared.sync_on.load(Ordering::Relaxed);
        if sync_on && n > SYNC_HWM && !shared.check_posted.swap(true, Ordering::AcqRel) {
            let s = shared.clone();
            rt.spawn(async move {
                s.check_posted.store(false, Ordering::Release);
                s.check_queue_status();
            });
        }
    }
}

impl SlotReceiver for SubSink {
    fn deposit(&self, package: Package, recv_seq: u64) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let n = shared.inbox.push(package, recv_seq);
        Self::after_push(&shared, n);
    }

    fn deposit_batch(&self, batch: &mut Vec<(Package, u64)>) {
        let Some(shared) = self.shared.upgrade() else {
            batch.clear();
            return;
        };
        let n = shared.inbox.push_many(batch);
        Self::after_push(&shared, n);
    }
}

/// The receiving end of publish/subscribe. Cheap to clone.
///
/// Receiving: [`recv`](SubChannel::recv) (blocks), [`recv_timeout`](SubChannel::recv_timeout),
/// [`try_recv`](SubChannel::try_recv) (never blocks), [`recv_async`](SubChannel::recv_async),
/// [`recv_all`](SubChannel::recv_all), and iteration over pending messages.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{PubChannel, SubChannel, Text};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let publisher = PubChannel::<Text>::new(&a, "feed").unwrap();
/// let sub = SubChannel::<Text>::new(&b, "feed").unwrap();
/// a.bind_async("inproc://sub-doc").await.unwrap();
/// b.connect_async("inproc://sub-doc", Duration::from_secs(1)).await.unwrap();
/// for m in ["a", "b", "c"] {
///     publisher.send_async(m.to_string()).await.unwrap();
/// }
/// assert_eq!(sub.recv_async().await.unwrap(), "a");
/// a.flush_async(Duration::from_secs(1)).await.unwrap();
/// while sub.pending() < 2 { tokio::time::sleep(Duration::from_millis(5)).await; }
/// assert_eq!(sub.iter().collect::<Vec<_>>(), vec!["b", "c"]);
/// # });
/// ```
pub struct SubChannel<M: MessageType = Text> {
    shared: Arc<SubShared>,
    guards: Arc<Mutex<Vec<SlotGuard>>>,
    _m: PhantomData<fn() -> M>,
}

impl<M: MessageType> Clone for SubChannel<M> {
    fn clone(&self) -> Self {
        SubChannel {
            shared: self.shared.clone(),
            guards: self.guards.clone(),
            _m: PhantomData,
        }
    }
}

impl<M: MessageType> std::fmt::Debug for SubChannel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SubChannel({}.{}.pub-sub, {} pending)",
            self.shared.name,
            M::NAME,
            self.pending()
        )
    }
}

impl<M: MessageType> SubChannel<M> {
    /// A subscriber at slot `name` (it receives on `name.TYPE.pub-sub`).
    pub fn new(ctx: &Context, name: &str) -> Result<Self> {
        let in_slot = channel_slot(name, M::NAME, "pub-sub");
        let out_slot = channel_slot(name, M::NAME, "sub-pub");
        let shared = Arc::new(SubShared {
            ctx: ctx.clone(),
            name: name.to_owned(),
            out_slot,
            inbox: Inbox::new(),
            notifier: Notifier::new(),
            sync: Mutex::new(SyncState {
                status: QueueStatus::Off,
                repeat_at: Instant::now(),
            }),
            check_posted: AtomicBool::new(false),
            sync_on: AtomicBool::new(false),
            invalid: Default::default(),
            ref_seq: Default::default(),
            spinner: Default::default(),
        });
        let g1 = ctx.register_receiver(
            in_slot,
            &format!("{name}.{}.pub-sub", M::NAME),
            Arc::new(SubSink {
                shared: Arc::downgrade(&shared),
            }),
        )?;
        let g2 = ctx.register_sender(
            out_slot,
            &format!("{name}.{}.sub-pub", M::NAME),
            Arc::new(NoHooks),
        )?;
        Ok(SubChannel {
            shared,
            guards: Arc::new(Mutex::new(vec![g1, g2])),
            _m: PhantomData,
        })
    }

    fn decode(&self, p: Package) -> Option<M::Message> {
        self.shared.spinner.saw(p.payload.len());
        self.decode_payload(p)
    }

    /// [`SubChannel::decode`] without telling the spinner (a batch tells it once).
    fn decode_payload(&self, p: Package) -> Option<M::Message> {
        match M::decode(p.payload) {
            Ok(m) => Some(m),
            Err(e) => {
                self.shared.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = %self.shared.name, error = %e, "dropped a message that does not decode");
                None
            }
        }
    }

    /// The next message, without waiting (None when none is pending).
    pub fn try_recv(&self) -> Option<M::Message> {
        self.shared.check_queue_status();
        while let Some((p, _)) = self.shared.inbox.pop() {
            if let Some(m) = self.decode(p) {
                return Some(m);
            }
        }
        None
    }

    /// The next message, waiting as long as it takes. Errors when the channel is
    /// closed, or when called on a current-thread tokio runtime (use
    /// [`SubChannel::recv_async`] there).
    pub fn recv(&self) -> Result<M::Message> {
        self.recv_inner(None)?
            .ok_or_else(|| ChannelError::Closed("sub", self.shared.name.clone()))
    }

    /// The next message, waiting at most `timeout`: `Ok(None)` when nothing came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<M::Message>> {
        self.recv_inner(Some(timeout))
    }

    fn recv_inner(&self, timeout: Option<Duration>) -> Result<Option<M::Message>> {
        if let Some(m) = self.try_recv() {
            return Ok(Some(m));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let inbox = &self.shared.inbox;
        // Spin once, then sleep until a message comes (again after one that does not
        // decode).
        let mut spun = self
            .shared
            .spinner
            .spin(&self.shared.ctx, timeout, || inbox.poll_pop());
        loop {
            let got = match spun.take() {
                Some(p) => Some(p),
                None => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    self.shared.ctx.block_on("recv", inbox.pop_timeout(left))?
                }
            };
            self.shared.check_queue_status();
            match got {
                Some((p, _)) => {
                    if let Some(m) = self.decode(p) {
                        return Ok(Some(m));
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// The next message (async). Errors once the channel is closed and drained.
    pub async fn recv_async(&self) -> Result<M::Message> {
        let inbox = &self.shared.inbox;
        loop {
            // As `recv`: take one that is there, else spin (yielding), else wait.
            let mut got = inbox.pop();
            if got.is_none() {
                got = self.shared.spinner.spin_async(|| inbox.poll_pop()).await;
            }
            if got.is_none() {
                got = inbox.pop_wait().await;
            }
            let Some((p, _)) = got else {
                return Err(ChannelError::Closed("sub", self.shared.name.clone()));
            };
            self.shared.check_queue_status();
            if let Some(m) = self.decode(p) {
                return Ok(m);
            }
        }
    }

    /// Every pending message, at once.
    pub fn recv_all(&self) -> Vec<M::Message> {
        let (mut runs, n) = self.shared.inbox.take_all();
        self.shared.check_queue_status();
        // The spinner keeps whether the last message was large or the batch long.
        if let Some((p, _)) = runs.back().and_then(|run| run.back()) {
            self.shared.spinner.saw_batch(n, p.payload.len());
        }
        let mut messages = Vec::with_capacity(n);
        for run in runs.iter_mut() {
            messages.extend(run.drain(..).filter_map(|(p, _)| self.decode_payload(p)));
        }
        self.shared.inbox.recycle(runs);
        messages
    }

    /// An iterator over the pending messages (it ends when none is pending).
    pub fn iter(&self) -> impl Iterator<Item = M::Message> + '_ {
        std::iter::from_fn(move || self.try_recv())
    }

    /// Number of pending messages.
    pub fn pending(&self) -> usize {
        self.shared.inbox.len()
    }

    /// How long a receive that finds nothing polls before it sleeps (default
    /// [`BLOCKING_SPIN`](crate::BLOCKING_SPIN), 100 µs): a message that comes meanwhile
    /// is taken without a thread wake-up. [`SubChannel::recv`] yields its thread
    /// between polls, [`SubChannel::recv_async`] its runtime (which runs its other
    /// tasks and polls its I/O). A channel stops spinning while it does not pay (after
    /// a large message, a long batch, or spins that found nothing). `Duration::ZERO`
    /// turns spinning off: less CPU, more latency.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_channels::{SubChannel, Text};
    /// let ctx = yoton_core::Context::new().unwrap();
    /// let sub = SubChannel::<Text>::new(&ctx, "spin-doc").unwrap();
    /// sub.set_spin(Duration::ZERO);
    /// assert_eq!(sub.recv_timeout(Duration::from_millis(1)).unwrap(), None);
    /// ```
    pub fn set_spin(&self, limit: Duration) {
        self.shared.spinner.limit.set(limit);
    }

    /// Limit the queue to `max_len` messages; when full, `mode` says which one is
    /// dropped (default: 10,000, drop the oldest). Drops are counted in
    /// [`SubChannel::discarded`].
    pub fn set_queue_limit(&self, max_len: usize, mode: DiscardMode) {
        self.shared.inbox.set_limit(max_len, mode);
    }

    /// Messages dropped because the queue was full.
    pub fn discarded(&self) -> u64 {
        self.shared.inbox.discarded()
    }

    /// Messages dropped because they did not decode as the channel's type.
    pub fn invalid(&self) -> u64 {
        self.shared.invalid.load(Ordering::Relaxed)
    }

    /// Sync mode: when more than 32 messages are pending, ask the publishers to wait
    /// (each of their sends waits up to 1 s) until fewer than 16 are.
    pub fn set_sync_mode(&self, on: bool) {
        let was_full = {
            let mut st = self.shared.sync.lock();
            let was_full = st.status == QueueStatus::Full;
            st.status = if on {
                QueueStatus::Ok
            } else {
                QueueStatus::Off
            };
            st.repeat_at = Instant::now() + SYNC_REPEAT;
            // The arrival path looks at this flag instead of taking the lock.
            self.shared.sync_on.store(on, Ordering::Relaxed);
            was_full
        };
        if was_full {
            self.shared.send_control("ok");
        }
    }

    /// Whether sync mode is on.
    pub fn sync_mode(&self) -> bool {
        self.shared.sync.lock().status != QueueStatus::Off
    }

    /// Call `f` when messages arrived (coalesced: many arrivals may give one call). It
    /// runs on a runtime thread; keep it short.
    pub fn on_received(&self, f: impl Fn(&SubChannel<M>) + Send + Sync + 'static) {
        let weak = Arc::downgrade(&self.shared);
        let guards = Arc::downgrade(&self.guards);
        self.shared.notifier.add(Box::new(move || {
            if let (Some(shared), Some(guards)) = (weak.upgrade(), guards.upgrade()) {
                f(&SubChannel {
                    shared,
                    guards,
                    _m: PhantomData,
                })
            }
        }));
    }

    /// The `received` signal of the event system (emitted through the event loop,
    /// coalesced like [`SubChannel::on_received`]).
    pub fn received(&self) -> &yoton_core::events::Signal<()> {
        self.shared.notifier.signal()
    }

    /// An async stream that yields once per (coalesced) arrival notification.
    pub fn received_stream(&self) -> impl futures_util::Stream<Item = ()> {
        let rx = self.shared.notifier.subscribe();
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(()) => return Some(((), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        })
    }

    /// The base slot name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Unregister the channel; pending messages can still be read, then receiving
    /// returns None.
    pub fn close(&self) {
        self.guards.lock().clear();
        self.shared.inbox.close();
    }

    /// Whether the channel was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.inbox.is_closed()
    }

    /// Messages that arrived before the first pending message of every other channel
    /// given to the last [`select_sub_channel`] call that selected this channel.
    pub fn recv_selected(&self) -> Vec<M::Message> {
        let upto = self.shared.ref_seq.load(Ordering::Relaxed);
        let got = self.shared.inbox.drain_upto(upto);
        self.shared.check_queue_status();
        got.into_iter()
            .filter_map(|(p, _)| self.decode(p))
            .collect()
    }
}

/// Something [`select_sub_channel`] can choose from (every [`SubChannel`]).
pub trait Selectable {
    /// (first pending receive sequence, last pending + 1), or None.
    fn pending_seqs(&self) -> Option<(u64, u64)>;
    /// Remember the bound for the next `recv_selected`.
    fn set_ref_seq(&self, seq: u64);
}

impl<M: MessageType> Selectable for SubChannel<M> {
    fn pending_seqs(&self) -> Option<(u64, u64)> {
        self.shared.inbox.pending_seqs()
    }
    fn set_ref_seq(&self, seq: u64) {
        self.shared.ref_seq.store(seq, Ordering::Relaxed);
    }
}

/// Of the given subscribers (all of one context), the index of the one holding the
/// oldest pending message, or None when none has any. Then call that channel's
/// [`SubChannel::recv_selected`] to get its messages older than every other
/// channel's first pending one: repeating this merges the channels in the original
/// receive order.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{select_sub_channel, PubChannel, SubChannel, Text};
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let (p1, p2) = (PubChannel::<Text>::new(&a, "one").unwrap(), PubChannel::<Text>::new(&a, "two").unwrap());
/// let (s1, s2) = (SubChannel::<Text>::new(&b, "one").unwrap(), SubChannel::<Text>::new(&b, "two").unwrap());
/// a.bind_async("inproc://select-doc").await.unwrap();
/// b.connect_async("inproc://select-doc", Duration::from_secs(1)).await.unwrap();
/// for (i, p) in [&p1, &p2, &p2, &p1].iter().enumerate() {
///     p.send_async(format!("m{i}")).await.unwrap();
/// }
/// while s1.pending() + s2.pending() < 4 { tokio::time::sleep(Duration::from_millis(5)).await; }
/// let mut merged = vec![];
/// while let Some(i) = select_sub_channel(&[&s1, &s2]) {
///     merged.extend(if i == 0 { s1.recv_selected() } else { s2.recv_selected() });
/// }
/// assert_eq!(merged, ["m0", "m1", "m2", "m3"]);
/// # });
/// ```
pub fn select_sub_channel(channels: &[&dyn Selectable]) -> Option<usize> {
    let mut first: Option<(usize, u64)> = None;
    let mut bound = u64::MAX;
    for (i, ch) in channels.iter().enumerate() {
        let Some((seq1, seq2)) = ch.pending_seqs() else {
            continue;
        };
        match first {
            Some((_, best)) if seq1 >= best => bound = bound.min(seq1),
            Some((_, best)) => {
                bound = bound.min(best).min(seq2);
                first = Some((i, seq1));
            }
            None => {
                bound = bound.min(seq2);
                first = Some((i, seq1));
            }
        }
    }
    let (i, _) = first?;
    // Messages strictly older than every other channel's first pending one.
    channels.get(i)?.set_ref_seq(bound.saturating_sub(1));
    Some(i)
}
