//! Request/reply with load balancing (PROTOCOL.md section 6), exactly as on the wire:
//!
//! 1. the requester broadcasts the text `req?` (dest_seq = 2**63 + id) every 0.5 s;
//! 2. a replier that is not busy answers `req!` to the requester, one at a time;
//! 3. the first `req!` wins: the requester sends the obj-encoded
//!    `(method, args, kwargs)` to that replier (dest_seq = id) and broadcasts `req-`
//!    so the others forget it; cancelling also broadcasts `req-`;
//! 4. the replier answers with the obj-encoded result, or the tuple
//!    `("yoton_ERROR_HANDLING_REQUEST", text)` when the method fails or is unknown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Notify;
use yoton_core::{channel_slot, Context, Package, SlotGuard, SlotReceiver, SlotSender};

use crate::error::{ChannelError, Result};
use crate::message::{MessageType, Object};
use crate::object::{self, Value};
use crate::queue::Inbox;
use crate::spin::{AsyncSpin, SpinLimit};

/// Offset of the dest_seq of control messages (`req?`, `req!`, `req-`).
pub const REQREP_SEQ_REF: u64 = 1 << 63;
/// First item of the reply tuple that carries an error.
pub const ERROR_OBJECT: &str = "yoton_ERROR_HANDLING_REQUEST";
/// Default auto-cancel time-out of a request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an unanswered `req?` is repeated.
const RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// A replier forgets an acknowledged pre-request after this long.
const PRE_REQUEST_EXPIRY: Duration = Duration::from_secs(10);

struct NoHooks;
impl SlotSender for NoHooks {}

/// Wakes whoever drives a channel: an async task (`notify`) or a plain thread
/// (`flag` + `cv`, which works without a runtime, also while it shuts down).
#[derive(Default)]
struct Wake {
    notify: Notify,
    flag: Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl Wake {
    fn wake(&self) {
        self.notify.notify_one();
        *self.flag.lock() = true;
        self.cv.notify_all();
    }

    async fn notified(&self) {
        self.notify.notified().await
    }

    /// Wait (blocking) until woken or `timeout` passes.
    fn wait_blocking(&self, timeout: Duration) {
        let mut woken = self.flag.lock();
        if !*woken {
            let _ = self.cv.wait_for(&mut woken, timeout);
        }
        *woken = false;
    }

    fn notify_waiters(&self) {
        self.notify.notify_waiters();
        *self.flag.lock() = true;
        self.cv.notify_all();
    }
}

/// Register one end of request/reply: it sends at `name.obj.<sends>` and `sink`
/// receives at `name.obj.<receives>`.
fn register_end(
    ctx: &Context,
    name: &str,
    sends: &str,
    receives: &str,
    sink: impl SlotReceiver,
) -> Result<Vec<SlotGuard>> {
    let out = ctx.register_sender(
        channel_slot(name, "obj", sends),
        &format!("{name}.obj.{sends}"),
        Arc::new(NoHooks),
    )?;
    let into = ctx.register_receiver(
        channel_slot(name, "obj", receives),
        &format!("{name}.obj.{receives}"),
        Arc::new(sink),
    )?;
    Ok(vec![out, into])
}

// =================================================================== requester

/// The requester's receiver. `req!` and replies are handled on the task that read
/// them, once the context's lock is released (`after_deposit`): answering a `req!`
/// there saves a hand-off to another task on each of the two round trips.
struct ReqSink {
    inbox: Weak<Inbox>,
    shared: Weak<ReqShared>,
}

impl SlotReceiver for ReqSink {
    fn deposit(&self, package: Package, recv_seq: u64) {
        // Only the inbox here: the last reference to the channel must not be dropped
        // under the context's lock (its slot guards take that lock).
        if let Some(inbox) = self.inbox.upgrade() {
            inbox.push(package, recv_seq);
        }
    }

    fn wants_after_deposit(&self) -> bool {
        true
    }

    fn after_deposit(&self) {
        if let Some(s) = self.shared.upgrade() {
            s.handle_inbox();
        }
    }
}

#[derive(Debug, Clone)]
enum Status {
    Waiting,
    Running,
    Cancelled,
    Failed(String),
    Done(Value),
}

type DoneCallback = Box<dyn FnOnce(&Reply) + Send>;

struct ReplyState {
    id: u64,
    request: Bytes,
    status: Mutex<Status>,
    replier: AtomicU64,
    first_sent: Instant,
    next_send: Mutex<Instant>,
    auto_cancel: Mutex<Duration>,
    /// Sent straight to a known replier (direct mode), without a pre-request.
    direct: bool,
    callbacks: Mutex<Vec<DoneCallback>>,
    /// Tasks awaiting the reply (as a future, or in `wait`; a Reply may be cloned and
    /// awaited in several), woken by [`Reply::finish`].
    wakers: Mutex<Vec<Waker>>,
    channel: Weak<ReqShared>,
}

/// The handle of one request: a future of its reply, usable blocking
/// ([`Reply::result`]) and async (`.await`).
///
/// ```
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{ReqChannel, RepChannel, RepMode, Value};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let rep = RepChannel::new(&a, "calc").unwrap();
/// rep.handle("add", |(x, y): (i64, i64)| Ok::<_, String>(x + y));
/// rep.set_mode(RepMode::Thread);
/// let req = ReqChannel::new(&b, "calc").unwrap();
/// a.bind("inproc://reqrep-doc").unwrap();
/// b.connect("inproc://reqrep-doc", Duration::from_secs(1)).unwrap();
/// let reply = req.call("add", (2, 3)).unwrap();
/// assert_eq!(reply.result(Duration::from_secs(5)).unwrap(), Value::Int(5));
/// ```
#[derive(Clone)]
pub struct Reply {
    state: Arc<ReplyState>,
    /// Awaited: the spin before it waits to be woken (see [`crate::spin`]).
    spin: AsyncSpin,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("id", &self.state.id)
            .field("status", &*self.state.status.lock())
            .finish()
    }
}

impl Reply {
    /// The request number (1, 2, ... per requester channel).
    pub fn id(&self) -> u64 {
        self.state.id
    }

    /// Done: cancelled, failed or answered.
    pub fn done(&self) -> bool {
        matches!(
            *self.state.status.lock(),
            Status::Cancelled | Status::Failed(_) | Status::Done(_)
        )
    }

    /// A replier took the request and works on it.
    pub fn running(&self) -> bool {
        matches!(*self.state.status.lock(), Status::Running)
    }

    /// The request was cancelled (by [`Reply::cancel`] or its auto-cancel time-out).
    pub fn cancelled(&self) -> bool {
        matches!(*self.state.status.lock(), Status::Cancelled)
    }

    /// The context id of the replier that took the request (0 until one did).
    pub fn replier(&self) -> u64 {
        self.state.replier.load(Ordering::Relaxed)
    }

    /// Cancel the request unless a replier already runs it; true when it is (now)
    /// cancelled or already done, false when it is running.
    pub fn cancel(&self) -> bool {
        let mut st = self.state.status.lock();
        match *st {
            Status::Running => false,
            Status::Waiting => {
                *st = Status::Cancelled;
                drop(st);
                if let Some(ch) = self.state.channel.upgrade() {
                    ch.send_control("req-", 0, self.state.id);
                }
                self.finish();
                true
            }
            _ => true,
        }
    }

    /// Change the auto-cancel time-out (counted from the first `req?`).
    pub fn set_auto_cancel_timeout(&self, timeout: Duration) {
        *self.state.auto_cancel.lock() = timeout;
    }

    /// Call `f` once the reply is done (at once if it already is). It runs on the
    /// thread that completes the reply; keep it short.
    pub fn add_done_callback(&self, f: impl FnOnce(&Reply) + Send + 'static) {
        if self.done() {
            f(self);
        } else {
            self.state.callbacks.lock().push(Box::new(f));
            // It may have completed in between.
            if self.done() {
                self.run_callbacks();
            }
        }
    }

    fn run_callbacks(&self) {
        let cbs: Vec<DoneCallback> = self.state.callbacks.lock().drain(..).collect();
        for cb in cbs {
            cb(self);
        }
    }

    fn finish(&self) {
        let wakers = std::mem::take(&mut *self.state.wakers.lock());
        for w in wakers {
            w.wake();
        }
        self.run_callbacks();
    }

    fn outcome(&self) -> Option<Result<Value>> {
        match &*self.state.status.lock() {
            Status::Waiting | Status::Running => None,
            Status::Cancelled => Some(Err(ChannelError::Cancelled)),
            Status::Failed(e) => Some(Err(ChannelError::Remote(e.clone()))),
            Status::Done(v) => Some(Ok(v.clone())),
        }
    }

    fn block(&self, timeout: Duration) -> Result<Option<Result<Value>>> {
        let ch = self
            .state
            .channel
            .upgrade()
            .ok_or(ChannelError::Cancelled)?;
        // Always (not adaptive as a subscriber's): a caller waiting for a reply is
        // latency-bound, and over QUIC a reply can take a little longer than the spin,
        // which made an adaptive spinner give up (blocking call p50 84 -> 220 us).
        let limit = timeout.min(ch.spin.get());
        if let Some(r) = crate::spin::spin(&ch.ctx, limit, || self.outcome()) {
            return Ok(Some(r));
        }
        // Spun already (or on a runtime's thread, where it must not): sleep until woken.
        let mut waiting = self.clone();
        waiting.spin = AsyncSpin::new(Duration::ZERO);
        let wait = async move { tokio::time::timeout(timeout, waiting).await.ok() };
        Ok(ch.ctx.block_on("result", wait)?)
    }

    /// Wait up to `timeout` for the reply (blocking). Errors: `Timeout`, `Cancelled`,
    /// or `Remote` with the replier's error text.
    pub fn result(&self, timeout: Duration) -> Result<Value> {
        self.block(timeout)?
            .unwrap_or(Err(ChannelError::Timeout(timeout)))
    }

    /// Like [`Reply::result`], deserialized into `T`.
    pub fn result_as<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let v = self.result(timeout)?;
        object::from_value(v).map_err(|e| ChannelError::Message {
            action: "decode",
            type_name: "obj",
            reason: e.to_string(),
        })
    }

    /// Wait up to `timeout`; on success the value, otherwise cancel and None.
    pub fn result_or_cancel(&self, timeout: Duration) -> Option<Value> {
        match self.block(timeout) {
            Ok(Some(Ok(v))) => Some(v),
            _ => {
                self.cancel();
                None
            }
        }
    }

    /// The remote error text, None when the request succeeded; errors when it did
    /// not finish within `timeout` or was cancelled.
    pub fn exception(&self, timeout: Duration) -> Result<Option<String>> {
        match self.block(timeout)? {
            None => Err(ChannelError::Timeout(timeout)),
            Some(Ok(_)) => Ok(None),
            Some(Err(ChannelError::Remote(e))) => Ok(Some(e)),
            Some(Err(e)) => Err(e),
        }
    }
}

impl Future for Reply {
    type Output = Result<Value>;
    /// Registers the task's waker with the reply, then checks it (a reply that
    /// completes in between is seen by the check). Before, every pending poll spawned
    /// a watcher task that lived until the reply came.
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        if let Some(r) = me.outcome() {
            return Poll::Ready(r);
        }
        // Always (as a blocking wait): a caller waiting for a reply is latency-bound.
        if me.spin.poll_spin(cx).is_pending() {
            return Poll::Pending;
        }
        {
            let mut wakers = me.state.wakers.lock();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        match me.outcome() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

struct ReqShared {
    ctx: Context,
    name: String,
    slot: u64,
    counter: AtomicU64,
    items: Mutex<HashMap<u64, Reply>>,
    default_timeout: Mutex<Duration>,
    /// Direct mode: requests go straight to `last_replier` when there is one.
    direct: AtomicBool,
    /// The replier that sent the latest reply (0: none yet, or it stopped answering).
    last_replier: AtomicU64,
    inbox: Arc<Inbox>,
    /// Someone is handling the inbox (see [`ReqShared::handle_inbox`]).
    handling: AtomicBool,
    wake: Arc<Wake>,
    /// How long a wait for a reply spins.
    spin: SpinLimit,
    closed: AtomicBool,
    guards: Mutex<Vec<SlotGuard>>,
}

impl ReqShared {
    /// Handle the packages in the inbox, one caller at a time and in arrival order:
    /// the reading tasks of several connections and the driving task all call this,
    /// and two of them taking turns at popping could otherwise apply a replier's
    /// reply after its next `req!` (the requester then saw that replier running two
    /// requests for a moment). A caller that finds another at work leaves the rest
    /// to it, which looks at the inbox again after it stops (this also makes a call
    /// from a done-callback return at once instead of deadlocking).
    fn handle_inbox(&self) {
        loop {
            if self.handling.swap(true, Ordering::AcqRel) {
                return;
            }
            while let Some((p, _)) = self.inbox.pop() {
                self.handle(p);
            }
            self.handling.store(false, Ordering::Release);
            // A package pushed after the last pop, whose caller found this one at
            // work (the inbox's lock orders the push, its caller's check, this store
            // and the look below).
            if self.inbox.len() == 0 {
                return;
            }
        }
    }

    fn send_control(&self, text: &'static str, dest_id: u64, id: u64) {
        let p = Package::new(self.slot, text).to(dest_id, REQREP_SEQ_REF + id);
        if let Err(e) = self.ctx.send_now(p) {
            tracing::debug!(channel = %self.name, error = %e, "could not send {text}");
        }
    }

    /// Repeat `req?` for unanswered requests; auto-cancel the old ones.
    fn resend(&self) {
        let now = Instant::now();
        let items: Vec<Reply> = self.items.lock().values().cloned().collect();
        for r in items {
            let limit = *r.state.auto_cancel.lock();
            let expired = now > r.state.first_sent + limit;
            let mut st = r.state.status.lock();
            match &*st {
                Status::Waiting if expired => {
                    drop(st);
                    r.cancel();
                    self.items.lock().remove(&r.state.id);
                }
                Status::Waiting => {
                    drop(st);
                    let mut next = r.state.next_send.lock();
                    if now > *next {
                        *next = now + RESEND_INTERVAL;
                        drop(next);
                        self.send_control("req?", 0, r.state.id);
                    }
                }
                // A direct request without an answer: that replier may be gone. Fail
                // it, and let the next calls find a replier with pre-requests again.
                Status::Running if r.state.direct && expired => {
                    let replier = r.replier();
                    *st = Status::Failed(format!(
                        "no reply from replier {replier:016x} within {limit:?} (direct mode)"
                    ));
                    drop(st);
                    let _ = self.last_replier.compare_exchange(
                        replier,
                        0,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    self.items.lock().remove(&r.state.id);
                    r.finish();
                }
                Status::Cancelled => {
                    drop(st);
                    self.items.lock().remove(&r.state.id);
                }
                _ => {}
            }
        }
    }

    fn handle(&self, p: Package) {
        if p.dest_id == 0 || p.dest_id != self.ctx.id() {
            return; // only packages directed at us
        }
        if p.dest_seq > REQREP_SEQ_REF {
            // `req!` from a replier that is ready for request `id`.
            let id = p.dest_seq - REQREP_SEQ_REF;
            let Some(r) = self.items.lock().get(&id).cloned() else {
                return;
            };
            if r.state.replier.load(Ordering::Relaxed) != 0 {
                return;
            }
            {
                let mut st = r.state.status.lock();
                if !matches!(*st, Status::Waiting) {
                    return;
                }
                *st = Status::Running;
            }
            r.state.replier.store(p.source_id, Ordering::Relaxed);
            let request = Package::new(self.slot, r.state.request.clone()).to(p.source_id, id);
            if let Err(e) = self.ctx.send_now(request) {
                tracing::debug!(channel = %self.name, error = %e, "could not send request");
            }
            self.send_control("req-", 0, id);
        } else if p.dest_seq > 0 {
            let Some(r) = self.items.lock().remove(&p.dest_seq) else {
                return;
            };
            self.last_replier.store(p.source_id, Ordering::Relaxed);
            let outcome = match Object::decode(p.payload) {
                Ok(Value::Tuple(t)) if is_error(&t) => {
                    Status::Failed(t.get(1).map(value_text).unwrap_or_default())
                }
                Ok(v) => Status::Done(v),
                Err(e) => Status::Failed(format!("reply does not decode: {e}")),
            };
            *r.state.status.lock() = outcome;
            r.finish();
        }
    }
}

fn is_error(t: &[Value]) -> bool {
    t.len() == 2 && matches!(t.first(), Some(Value::Str(s)) if s == ERROR_OBJECT)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The requesting end of request/reply. Cheap to clone. Its message type is always
/// `obj`.
///
/// Call a remote method with [`ReqChannel::call`] (positional arguments) or
/// [`ReqChannel::call_kw`] (positional and keyword arguments); any serde type that
/// maps onto the object encoding can be an argument.
#[derive(Clone)]
pub struct ReqChannel {
    shared: Arc<ReqShared>,
}

impl std::fmt::Debug for ReqChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReqChannel({}.obj.req-rep)", self.shared.name)
    }
}

impl ReqChannel {
    /// A requester at slot `name` (`name.obj.req-rep`).
    pub fn new(ctx: &Context, name: &str) -> Result<Self> {
        let slot = channel_slot(name, "obj", "req-rep");
        let shared = Arc::new(ReqShared {
            ctx: ctx.clone(),
            name: name.to_owned(),
            slot,
            counter: AtomicU64::new(0),
            items: Mutex::new(HashMap::new()),
            default_timeout: Mutex::new(DEFAULT_REQUEST_TIMEOUT),
            direct: AtomicBool::new(false),
            last_replier: AtomicU64::new(0),
            inbox: Arc::new(Inbox::new()),
            handling: AtomicBool::new(false),
            wake: Arc::new(Wake::default()),
            spin: SpinLimit::default(),
            closed: AtomicBool::new(false),
            guards: Mutex::new(Vec::new()),
        });
        let sink = ReqSink {
            inbox: Arc::downgrade(&shared.inbox),
            shared: Arc::downgrade(&shared),
        };
        *shared.guards.lock() = register_end(ctx, name, "req-rep", "rep-req", sink)?;
        ctx.runtime()
            .spawn(drive_requester(Arc::downgrade(&shared)));
        Ok(ReqChannel { shared })
    }

    /// Set the auto-cancel time-out of requests made from now on (default 10 s).
    pub fn set_default_timeout(&self, timeout: Duration) {
        *self.shared.default_timeout.lock() = timeout;
    }

    /// How long a wait for a reply polls before it sleeps, for calls made from now on
    /// (default [`BLOCKING_SPIN`](crate::BLOCKING_SPIN), 100 µs): a reply that comes
    /// meanwhile is taken without a thread wake-up. A blocking wait yields its thread
    /// between polls, an awaited [`Reply`] its runtime (which runs its other tasks and
    /// polls its I/O). `Duration::ZERO` turns spinning off: less CPU, more latency.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_channels::{RepChannel, RepMode, ReqChannel};
    /// let (a, b) = (yoton_core::Context::new().unwrap(), yoton_core::Context::new().unwrap());
    /// let req = ReqChannel::new(&a, "spin-doc").unwrap();
    /// let rep = RepChannel::new(&b, "spin-doc").unwrap();
    /// rep.handle("one", |(): ()| Ok::<_, String>(1));
    /// rep.set_mode(RepMode::Task);
    /// a.bind("inproc://spin-doc").unwrap();
    /// b.connect("inproc://spin-doc", Duration::from_secs(1)).unwrap();
    /// req.set_spin(Duration::ZERO); // sleep at once: for a caller that is not in a hurry
    /// let reply = req.call("one", ()).unwrap();
    /// assert_eq!(reply.result_as::<i64>(Duration::from_secs(5)).unwrap(), 1);
    /// ```
    pub fn set_spin(&self, limit: Duration) {
        self.shared.spin.set(limit);
    }

    /// Direct mode (off by default): once a replier has answered, send the next
    /// requests straight to it, without the pre-request round trip (`req?`/`req!`):
    /// one round trip per call instead of two. Repliers serve such requests (the
    /// Python reference's too), so the wire stays compatible; what is given up is the
    /// load balancing over several repliers, and a request to a replier that has gone
    /// fails after the auto-cancel time-out (the next call looks for a replier again).
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_channels::{RepChannel, RepMode, ReqChannel};
    /// let (a, b) = (yoton_core::Context::new().unwrap(), yoton_core::Context::new().unwrap());
    /// let req = ReqChannel::new(&a, "direct-doc").unwrap();
    /// let rep = RepChannel::new(&b, "direct-doc").unwrap();
    /// rep.handle("twice", |(x,): (i64,)| Ok::<_, String>(2 * x));
    /// rep.set_mode(RepMode::Task);
    /// a.bind("inproc://direct-doc").unwrap();
    /// b.connect("inproc://direct-doc", Duration::from_secs(1)).unwrap();
    /// req.set_direct(true);
    /// let first = req.call("twice", (1,)).unwrap(); // finds the replier
    /// assert_eq!(first.result_as::<i64>(Duration::from_secs(5)).unwrap(), 2);
    /// let second = req.call("twice", (2,)).unwrap(); // goes straight to it
    /// assert_eq!(second.result_as::<i64>(Duration::from_secs(5)).unwrap(), 4);
    /// assert_eq!(second.replier(), b.id());
    /// ```
    pub fn set_direct(&self, on: bool) {
        self.shared.direct.store(on, Ordering::Relaxed);
    }

    /// Call `method` with positional arguments: a tuple such as `(1, "a")`, a `Vec`,
    /// `()` for none, or one value for a single argument.
    pub fn call(&self, method: &str, args: impl Serialize) -> Result<Reply> {
        self.call_kw(method, args, ())
    }

    /// Call `method` with positional and keyword arguments (`kwargs`: a struct or a
    /// map with string keys, or `()` for none).
    pub fn call_kw(
        &self,
        method: &str,
        args: impl Serialize,
        kwargs: impl Serialize,
    ) -> Result<Reply> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(ChannelError::Closed("req", self.shared.name.clone()));
        }
        let enc = |e: crate::object::ObjectError| ChannelError::Message {
            action: "encode",
            type_name: "obj",
            reason: e.to_string(),
        };
        let args = match object::to_value(&args).map_err(enc)? {
            Value::None => Value::Tuple(vec![]),
            Value::List(v) | Value::Tuple(v) => Value::Tuple(v),
            one => Value::Tuple(vec![one]),
        };
        let kwargs = match object::to_value(&kwargs).map_err(enc)? {
            Value::None => Value::Dict(vec![]),
            d @ Value::Dict(_) => d,
            other => {
                return Err(ChannelError::Message {
                    action: "encode",
                    type_name: "obj",
                    reason: format!(
                        "keyword arguments must be a struct or a map, not {}",
                        other.type_name()
                    ),
                })
            }
        };
        let request = Value::Tuple(vec![Value::Str(method.to_owned()), args, kwargs]);
        Ok(self.request(object::to_bytes(&request)))
    }

    fn request(&self, request: Bytes) -> Reply {
        let id = self.shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let direct_to = if self.shared.direct.load(Ordering::Relaxed) {
            self.shared.last_replier.load(Ordering::Relaxed)
        } else {
            0
        };
        let now = Instant::now();
        let reply = Reply {
            state: Arc::new(ReplyState {
                id,
                request,
                // A direct request is running at its replier from the start.
                status: Mutex::new(if direct_to == 0 {
                    Status::Waiting
                } else {
                    Status::Running
                }),
                replier: AtomicU64::new(direct_to),
                first_sent: now,
                next_send: Mutex::new(now + RESEND_INTERVAL),
                auto_cancel: Mutex::new(*self.shared.default_timeout.lock()),
                direct: direct_to != 0,
                callbacks: Mutex::new(Vec::new()),
                wakers: Mutex::new(Vec::new()),
                channel: Arc::downgrade(&self.shared),
            }),
            spin: AsyncSpin::new(self.shared.spin.get()),
        };
        self.shared.items.lock().insert(id, reply.clone());
        if direct_to == 0 {
            self.shared.send_control("req?", 0, id);
        } else {
            let p = Package::new(self.shared.slot, reply.state.request.clone()).to(direct_to, id);
            if let Err(e) = self.shared.ctx.send_now(p) {
                tracing::debug!(channel = %self.shared.name, error = %e, "could not send request");
            }
        }
        reply
    }

    /// Requests not yet done.
    pub fn outstanding(&self) -> usize {
        self.shared.items.lock().len()
    }

    /// The base slot name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Cancel every outstanding request and unregister.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        let items: Vec<Reply> = self.shared.items.lock().drain().map(|(_, r)| r).collect();
        for r in items {
            r.cancel();
        }
        self.shared.guards.lock().clear();
        self.shared.wake.wake();
    }
}

async fn drive_requester(weak: Weak<ReqShared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = match weak.upgrade() {
            Some(s) if !s.closed.load(Ordering::Relaxed) => s.wake.clone(),
            _ => return,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tick.tick() => {}
        }
        let Some(s) = weak.upgrade() else { return };
        s.handle_inbox();
        s.resend();
    }
}

// =================================================================== replier

/// The arguments of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Method name.
    pub method: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments (keys are usually strings).
    pub kwargs: Vec<(Value, Value)>,
}

impl Request {
    /// Keyword argument by name.
    pub fn kwarg(&self, name: &str) -> Option<&Value> {
        self.kwargs
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == name))
            .map(|(_, v)| v)
    }

    /// The positional arguments deserialized as `T` (a tuple, a Vec, a struct by
    /// position, or a single value when there is exactly one argument).
    pub fn parse<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        let as_tuple = object::from_value::<T>(Value::Tuple(self.args.clone()));
        match as_tuple {
            Ok(v) => Ok(v),
            Err(e) => match self.args.as_slice() {
                [] => object::from_value::<T>(Value::None)
                    .map_err(|_| format!("TypeError: bad arguments for '{}': {e}", self.method)),
                [one] => object::from_value::<T>(one.clone())
                    .map_err(|_| format!("TypeError: bad arguments for '{}': {e}", self.method)),
                _ => Err(format!(
                    "TypeError: bad arguments for '{}': {e}",
                    self.method
                )),
            },
        }
    }
}

/// What a handler returns: the reply value or an error text.
pub type HandlerResult = std::result::Result<Value, String>;
type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

#[derive(Clone)]
enum Handler {
    Plain(Arc<dyn Fn(Request) -> HandlerResult + Send + Sync>),
    Async(Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>),
}

/// A whole service as one object: an alternative to registering closures.
///
/// ```
/// use yoton_channels::{reqrep::{Service, Request, HandlerResult}, Value};
/// struct Counter(std::sync::atomic::AtomicI64);
/// impl Service for Counter {
///     fn call(&self, req: &Request) -> Option<HandlerResult> {
///         match req.method.as_str() {
///             "next" => Some(Ok(Value::Int(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)))),
///             _ => None, // unknown here: other handlers (or the error) apply
///         }
///     }
/// }
/// ```
pub trait Service: Send + Sync + 'static {
    /// Handle `req`, or None when this service has no such method.
    fn call(&self, req: &Request) -> Option<HandlerResult>;
}

/// How a replier runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RepMode {
    /// Requests wait (the reference's default).
    #[default]
    Off,
    /// Driven by the Yoton event loop (`yoton_core::events`): requests are handled
    /// when the loop processes events.
    Event,
    /// A thread of its own handles requests, one at a time.
    Thread,
    /// A task on the context's tokio runtime handles requests, one at a time (async
    /// handlers are awaited there; a plain handler runs on tokio's blocking pool, as
    /// it may block, which costs a thread hand-off each way per request: about 10 µs
    /// of the round trip in `yoton bench`, so prefer async handlers in this mode).
    Task,
}

/// The replier's book of pre-requests (`req?`).
#[derive(Default)]
struct PreRequests {
    /// Pre-requests not acknowledged yet, oldest first.
    queue: Vec<Package>,
    /// The one acknowledged (`req!`) whose request has not come yet.
    current: Option<(Package, Instant)>,
}

impl PreRequests {
    /// Book a `req?` or `req-` from a requester.
    fn book(&mut self, p: Package) {
        self.queue
            .retain(|q| !(q.source_id == p.source_id && q.dest_seq == p.dest_seq));
        match p.payload.as_ref() {
            b"req-" => {
                if matches!(&self.current, Some((c, _)) if c.source_id == p.source_id && c.dest_seq == p.dest_seq)
                {
                    self.current = None;
                }
            }
            b"req?" => self.queue.push(p),
            _ => {}
        }
    }
}

/// What the replier's receiver shares with the channel. Not the channel itself: its
/// last reference must not be dropped under the context's lock, where `deposit`
/// runs (its slot guards take that lock).
struct RepInbound {
    /// Requests, in order of arrival.
    inbox: Inbox,
    /// Pre-requests, booked as they arrive.
    pre: Mutex<PreRequests>,
    wake: Wake,
    /// Thread or task mode: pre-requests are acknowledged on the task that read them
    /// (`after_deposit`), with no hand-off to the replier's thread or task.
    auto: AtomicBool,
}

impl Default for RepInbound {
    fn default() -> Self {
        RepInbound {
            inbox: Inbox::new(),
            pre: Mutex::default(),
            wake: Wake::default(),
            auto: AtomicBool::new(false),
        }
    }
}

/// The replier's receiver.
struct RepSink {
    inbound: Weak<RepInbound>,
    shared: Weak<RepShared>,
}

impl SlotReceiver for RepSink {
    fn deposit(&self, p: Package, recv_seq: u64) {
        let Some(inbound) = self.inbound.upgrade() else {
            return;
        };
        if p.dest_seq > REQREP_SEQ_REF {
            inbound.pre.lock().book(p);
            if inbound.auto.load(Ordering::Relaxed) {
                return; // acknowledged in `after_deposit`
            }
        } else {
            // The request of the acknowledged pre-request, or a direct one.
            inbound.pre.lock().current = None;
            inbound.inbox.push(p, recv_seq);
        }
        inbound.wake.wake();
    }

    fn wants_after_deposit(&self) -> bool {
        true
    }

    fn after_deposit(&self) {
        let Some(s) = self.shared.upgrade() else {
            return;
        };
        if s.inbound.auto.load(Ordering::Relaxed) {
            s.acknowledge_next();
        }
    }
}

struct RepShared {
    ctx: Context,
    name: String,
    slot: u64,
    inbound: Arc<RepInbound>,
    handlers: RwLock<HashMap<String, Handler>>,
    services: RwLock<Vec<Arc<dyn Service>>>,
    mode: Mutex<RepMode>,
    generation: AtomicU64,
    closed: AtomicBool,
    guards: Mutex<Vec<SlotGuard>>,
    handled: AtomicU64,
    busy: AtomicBool,
    /// The replier thread of thread mode, and a receiver that disconnects when it ends.
    thread: Mutex<Option<(std::thread::JoinHandle<()>, std::sync::mpsc::Receiver<()>)>>,
}

/// How long a mode change or `close` waits for the replier thread to finish the
/// request it is handling.
pub const REP_THREAD_STOP_WAIT: Duration = Duration::from_secs(5);

impl RepShared {
    /// Wait (up to [`REP_THREAD_STOP_WAIT`]) for the thread of thread mode to end;
    /// it ends after the request in hand, once the generation changed.
    fn stop_thread(&self) {
        let Some((handle, ended)) = self.thread.lock().take() else {
            return;
        };
        if handle.thread().id() == std::thread::current().id() {
            return; // called from a handler: the thread ends when it returns
        }
        // The thread drops its sender as it returns.
        if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) =
            ended.recv_timeout(REP_THREAD_STOP_WAIT)
        {
            let _ = handle.join();
        } else {
            tracing::warn!(
                channel = %self.name,
                "the replier thread is still handling a request after {REP_THREAD_STOP_WAIT:?}; \
                 it ends when that handler returns"
            );
        }
    }
}

impl RepShared {
    fn send(&self, payload: impl Into<Bytes>, dest_id: u64, dest_seq: u64) {
        let p = Package::new(self.slot, payload).to(dest_id, dest_seq);
        if let Err(e) = self.ctx.send_now(p) {
            tracing::debug!(channel = %self.name, error = %e, "replier could not send");
        }
    }

    /// The next request to run. Busy is set before the request leaves the inbox,
    /// so [`RepShared::has_work`] never sees neither.
    fn next_request(&self) -> Option<Package> {
        self.busy.store(true, Ordering::SeqCst);
        let p = self.inbound.inbox.pop().map(|(p, _)| p);
        if p.is_none() {
            self.busy.store(false, Ordering::SeqCst);
        }
        p
    }

    /// A request from [`RepShared::next_request`] was answered.
    fn request_done(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// A request waits or runs: a busy replier takes no more work.
    fn has_work(&self) -> bool {
        self.inbound.inbox.len() > 0 || self.busy.load(Ordering::SeqCst)
    }

    /// Acknowledge the next pre-request (`req!`) unless one is outstanding or a
    /// request waits or runs.
    fn acknowledge_next(&self) {
        let ack = {
            let mut pre = self.inbound.pre.lock();
            if matches!(&pre.current, Some((_, t)) if t.elapsed() > PRE_REQUEST_EXPIRY) {
                pre.current = None;
            }
            if pre.current.is_none() && !pre.queue.is_empty() && !self.has_work() {
                let p = pre.queue.remove(0);
                let ack = (p.source_id, p.dest_seq);
                pre.current = Some((p, Instant::now()));
                Some(ack)
            } else {
                None
            }
        };
        if let Some((dest, seq)) = ack {
            self.send(Bytes::from_static(b"req!"), dest, seq);
        }
    }

    fn parse(&self, p: &Package) -> std::result::Result<Request, String> {
        let v = Object::decode(p.payload.clone()).map_err(|e| e.to_string())?;
        let (Value::Tuple(mut parts) | Value::List(mut parts)) = v else {
            return Err("request is not a (name, args, kwargs) tuple".into());
        };
        if parts.len() != 3 {
            return Err("request is not a (name, args, kwargs) tuple".into());
        }
        let kwargs = parts.pop();
        let args = parts.pop();
        let name = parts.pop();
        let (
            Some(Value::Str(method)),
            Some(Value::Tuple(args) | Value::List(args)),
            Some(Value::Dict(kwargs)),
        ) = (name, args, kwargs)
        else {
            return Err("request is not a (name, args, kwargs) tuple".into());
        };
        Ok(Request {
            method,
            args,
            kwargs,
        })
    }

    fn finish(&self, p: &Package, result: HandlerResult) {
        let reply = match result {
            Ok(v) => v,
            Err(text) => {
                tracing::info!(channel = %self.name, error = %text, "error handling request");
                Value::Tuple(vec![Value::Str(ERROR_OBJECT.into()), Value::Str(text)])
            }
        };
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.send(object::to_bytes(&reply), p.source_id, p.dest_seq);
    }

    fn lookup(&self, req: &Request) -> std::result::Result<Handler, Option<HandlerResult>> {
        if let Some(h) = self.handlers.read().get(&req.method) {
            return Ok(h.clone());
        }
        for s in self.services.read().iter() {
            if let Some(r) = s.call(req) {
                return Err(Some(r));
            }
        }
        Err(None)
    }

    fn echo(&self, req: &Request) -> (Value, f64) {
        let arg = req.args.first().cloned().unwrap_or(Value::None);
        let sleep = req
            .args
            .get(1)
            .or_else(|| req.kwarg("sleep"))
            .and_then(|v| match v {
                Value::Int(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            })
            .unwrap_or(0.0);
        let me = Value::Str(format!("{:#x}", self.ctx.id()));
        (Value::Tuple(vec![arg, me]), sleep.clamp(0.0, 3600.0))
    }

    /// Run one request, blocking the calling (non-runtime) thread for async handlers.
    fn run_blocking(&self, p: Package) {
        let result = match self.parse(&p) {
            Err(e) => Err(format!("ValueError: {e}")),
            Ok(req) => match self.lookup(&req) {
                Ok(Handler::Plain(f)) => call_guarded(|| f(req)),
                Ok(Handler::Async(f)) => self
                    .ctx
                    .block_on("handle", f(req))
                    .unwrap_or_else(|e| Err(e.to_string())),
                Err(Some(r)) => r,
                Err(None) if req.method == "echo" => {
                    let (v, sleep) = self.echo(&req);
                    std::thread::sleep(Duration::from_secs_f64(sleep));
                    Ok(v)
                }
                Err(None) => Err(format!(
                    "RuntimeError: Method '{}' not implemented.",
                    req.method
                )),
            },
        };
        self.finish(&p, result);
    }

    /// Run one request on the runtime (Task mode).
    async fn run_async(&self, p: Package) {
        let result = match self.parse(&p) {
            Err(e) => Err(format!("ValueError: {e}")),
            Ok(req) => match self.lookup(&req) {
                Ok(Handler::Plain(f)) => {
                    let r = tokio::task::spawn_blocking(move || call_guarded(|| f(req))).await;
                    r.unwrap_or_else(|e| Err(format!("handler panicked: {e}")))
                }
                Ok(Handler::Async(f)) => f(req).await,
                Err(Some(r)) => r,
                Err(None) if req.method == "echo" => {
                    let (v, sleep) = self.echo(&req);
                    tokio::time::sleep(Duration::from_secs_f64(sleep)).await;
                    Ok(v)
                }
                Err(None) => Err(format!(
                    "RuntimeError: Method '{}' not implemented.",
                    req.method
                )),
            },
        };
        self.finish(&p, result);
    }

    /// Handle everything pending (blocking style); used by Event and Thread modes.
    fn process_pending(&self) {
        while let Some(p) = self.next_request() {
            self.run_blocking(p);
            self.request_done();
            self.acknowledge_next();
        }
        self.acknowledge_next();
    }
}

fn call_guarded(f: impl FnOnce() -> HandlerResult) -> HandlerResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|e| {
        let text = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "handler panicked".into());
        Err(format!("panic: {text}"))
    })
}

/// The replying end of request/reply. Cheap to clone.
///
/// Register handlers by name with [`RepChannel::register`] (raw [`Request`]),
/// [`RepChannel::handle`] (typed with serde), [`RepChannel::handle_async`] or a
/// [`Service`]; pick a [`RepMode`]. The built-in `echo(arg, sleep=0)` returns
/// `(arg, hex(context id))` as in the reference.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{ReqChannel, RepChannel, RepMode, ChannelError};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let rep = RepChannel::new(&a, "svc").unwrap();
/// rep.handle("div", |(x, y): (f64, f64)| if y == 0.0 { Err("ZeroDivisionError") } else { Ok(x / y) });
/// rep.set_mode(RepMode::Task);
/// let req = ReqChannel::new(&b, "svc").unwrap();
/// a.bind("inproc://rep-doc").unwrap();
/// b.connect("inproc://rep-doc", Duration::from_secs(1)).unwrap();
/// let t = Duration::from_secs(5);
/// assert_eq!(req.call("div", (1.0, 4.0)).unwrap().result_as::<f64>(t).unwrap(), 0.25);
/// let err = req.call("div", (1.0, 0.0)).unwrap().result(t).unwrap_err();
/// assert!(matches!(err, ChannelError::Remote(ref e) if e.contains("ZeroDivision")));
/// let err = req.call("nope", ()).unwrap().result(t).unwrap_err();
/// assert!(err.to_string().contains("not implemented"));
/// ```
#[derive(Clone)]
pub struct RepChannel {
    shared: Arc<RepShared>,
}

impl std::fmt::Debug for RepChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RepChannel({}.obj.rep-req, {:?})",
            self.shared.name,
            self.mode()
        )
    }
}

impl RepChannel {
    /// A replier at slot `name` (it receives on `name.obj.req-rep`). Mode: off.
    pub fn new(ctx: &Context, name: &str) -> Result<Self> {
        let slot = channel_slot(name, "obj", "rep-req");
        let shared = Arc::new(RepShared {
            ctx: ctx.clone(),
            name: name.to_owned(),
            slot,
            inbound: Arc::new(RepInbound::default()),
            handlers: RwLock::new(HashMap::new()),
            services: RwLock::new(Vec::new()),
            mode: Mutex::new(RepMode::Off),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            guards: Mutex::new(Vec::new()),
            handled: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let sink = RepSink {
            inbound: Arc::downgrade(&shared.inbound),
            shared: Arc::downgrade(&shared),
        };
        *shared.guards.lock() = register_end(ctx, name, "rep-req", "req-rep", sink)?;
        Ok(RepChannel { shared })
    }

    /// Register a handler that gets the raw [`Request`].
    pub fn register(
        &self,
        method: &str,
        f: impl Fn(Request) -> HandlerResult + Send + Sync + 'static,
    ) -> &Self {
        self.shared
            .handlers
            .write()
            .insert(method.to_owned(), Handler::Plain(Arc::new(f)));
        self
    }

    /// Register a typed handler: the positional arguments are deserialized into `A`
    /// (a tuple, or a single value), the result serialized; an `Err` reaches the
    /// requester as a remote error with its text.
    pub fn handle<A, R, E, F>(&self, method: &str, f: F) -> &Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: std::fmt::Display,
        F: Fn(A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        self.register(method, move |req| {
            let a: A = req.parse()?;
            let r = f(a).map_err(|e| e.to_string())?;
            object::to_value(&r).map_err(|e| e.to_string())
        })
    }

    /// Register an async handler (best with [`RepMode::Task`]).
    pub fn handle_async<A, R, E, F, Fut>(&self, method: &str, f: F) -> &Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let h = move |req: Request| -> BoxFuture {
            let f = f.clone();
            Box::pin(async move {
                let a: A = req.parse()?;
                let r = f(a).await.map_err(|e| e.to_string())?;
                object::to_value(&r).map_err(|e| e.to_string())
            })
        };
        self.shared
            .handlers
            .write()
            .insert(method.to_owned(), Handler::Async(Arc::new(h)));
        self
    }

    /// Add a [`Service`]: asked for methods that have no registered handler.
    pub fn serve(&self, service: impl Service) -> &Self {
        self.shared.services.write().push(Arc::new(service));
        self
    }

    /// The current mode.
    pub fn mode(&self) -> RepMode {
        *self.shared.mode.lock()
    }

    /// Switch mode (off / event / thread / task).
    pub fn set_mode(&self, mode: RepMode) -> &Self {
        {
            let mut m = self.shared.mode.lock();
            if *m == mode {
                return self;
            }
            *m = mode;
        }
        self.shared.inbound.auto.store(
            matches!(mode, RepMode::Thread | RepMode::Task),
            Ordering::Relaxed,
        );
        let generation = self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.inbound.wake.notify_waiters();
        self.shared.stop_thread();
        let weak = Arc::downgrade(&self.shared);
        match mode {
            RepMode::Off => {}
            RepMode::Thread => {
                let (ending, ended) = std::sync::mpsc::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name(format!("yoton-rep-{}", self.shared.name))
                    .spawn(move || {
                        let _ending = ending;
                        run_thread(weak, generation)
                    });
                match spawned {
                    Ok(handle) => *self.shared.thread.lock() = Some((handle, ended)),
                    Err(e) => tracing::error!(error = %e, "could not start the replier thread"),
                }
            }
            RepMode::Task => {
                self.shared.ctx.runtime().spawn(run_task(weak, generation));
            }
            RepMode::Event => {
                self.shared
                    .ctx
                    .runtime()
                    .spawn(run_event_bridge(weak, generation));
            }
        }
        self
    }

    /// Requests handled so far.
    pub fn handled(&self) -> u64 {
        self.shared.handled.load(Ordering::Relaxed)
    }

    /// Whether a request is being handled right now.
    pub fn is_busy(&self) -> bool {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Handle whatever is pending now, in the caller's thread (for mode off, or to
    /// drive a replier from your own loop).
    pub fn process_pending(&self) {
        self.shared.process_pending();
    }

    /// The base slot name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Stop handling and unregister. In thread mode this waits (up to
    /// [`REP_THREAD_STOP_WAIT`]) for the request being handled to finish.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.set_mode(RepMode::Off);
        self.shared.guards.lock().clear();
        self.shared.inbound.inbox.close();
    }
}

fn still(weak: &Weak<RepShared>, generation: u64) -> Option<Arc<RepShared>> {
    let s = weak.upgrade()?;
    (s.generation.load(Ordering::SeqCst) == generation && !s.closed.load(Ordering::Relaxed))
        .then_some(s)
}

fn run_thread(weak: Weak<RepShared>, generation: u64) {
    loop {
        let Some(s) = still(&weak, generation) else {
            return;
        };
        s.process_pending();
        if s.inbound.inbox.len() == 0 {
            let inbound = s.inbound.clone();
            drop(s);
            inbound.wake.wait_blocking(Duration::from_millis(250));
        }
    }
}

async fn run_task(weak: Weak<RepShared>, generation: u64) {
    loop {
        let Some(s) = still(&weak, generation) else {
            return;
        };
        while let Some(p) = s.next_request() {
            s.run_async(p).await;
            s.request_done();
            s.acknowledge_next();
            if still(&weak, generation).is_none() {
                return;
            }
        }
        s.acknowledge_next();
        let inbound = s.inbound.clone();
        drop(s);
        let _ = tokio::time::timeout(Duration::from_millis(250), inbound.wake.notified()).await;
    }
}

/// Event mode: when packages arrive, queue a call on the Yoton event loop that handles
/// them; the user's `process_events` / `start_event_loop` runs it.
async fn run_event_bridge(weak: Weak<RepShared>, generation: u64) {
    let posted = Arc::new(AtomicBool::new(false));
    loop {
        let Some(s) = still(&weak, generation) else {
            return;
        };
        if !posted.swap(true, Ordering::AcqRel) {
            let w = weak.clone();
            let posted = posted.clone();
            yoton_core::events::call_later(
                move || {
                    posted.store(false, Ordering::Release);
                    if let Some(s) = still(&w, generation) {
                        s.process_pending();
                    }
                },
                0.0,
            );
        }
        let inbound = s.inbound.clone();
        drop(s);
        let _ = tokio::time::timeout(Duration::from_secs(2), inbound.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply for request `id` from replier 7, as it arrives from the network.
    fn reply(ctx: &Context, slot: u64, id: u64, text: &str) -> Package {
        let mut p = Package::new(slot, object::to_bytes(&Value::Str(text.into()))).to(ctx.id(), id);
        p.source_id = 7;
        p
    }

    /// While one caller handles the inbox (here: held in a done-callback), another
    /// returns at once and leaves the next package to it, so packages are applied in
    /// arrival order; the first caller then handles what came meanwhile.
    #[test]
    fn one_caller_at_a_time_handles_the_inbox_in_order() {
        let ctx = Context::new().unwrap();
        let req = ReqChannel::new(&ctx, "inbox-order").unwrap();
        let (first, second) = (req.call("m", ()).unwrap(), req.call("m", ()).unwrap());
        let shared = req.shared.clone();
        let slot = shared.slot;
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        first.add_done_callback(move |_| {
            entered_tx.send(()).unwrap();
            release_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        shared.inbox.push(reply(&ctx, slot, first.id(), "one"), 1);
        let busy = shared.clone();
        let a = std::thread::spawn(move || busy.handle_inbox());
        entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();

        shared.inbox.push(reply(&ctx, slot, second.id(), "two"), 2);
        shared.handle_inbox();
        assert!(
            !second.done(),
            "a second caller applied a reply while the first was still at work"
        );
        release_tx.send(()).unwrap();
        a.join().unwrap();
        assert!(
            second.done(),
            "the first caller left the later reply behind"
        );
        assert_eq!(
            second.result(Duration::ZERO).unwrap(),
            Value::Str("two".into())
        );
        assert_eq!(
            first.result(Duration::ZERO).unwrap(),
            Value::Str("one".into())
        );
    }
}
