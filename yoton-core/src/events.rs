//! The Yoton event system: signals, timers, delayed calls and an event loop, ported
//! from the reference's `yoton/events.py`.
//!
//! - A [`Signal`] holds handlers. [`Signal::emit`] queues one event per bound handler
//!   on an [`EventLoop`]; the handlers run later, in the thread that processes events.
//!   [`Signal::emit_now`] calls them at once, in the caller's thread.
//! - [`EventLoop::call_later`] queues a call now (`0.0`), at the front of the queue
//!   (negative) or after a delay in seconds (positive).
//! - A [`Timer`] emits its [`Timer::timeout`] signal when its interval runs out, once
//!   or repeatedly.
//! - [`EventLoop::process_events`] runs the queued events; [`EventLoop::start_event_loop`]
//!   keeps doing so until [`EventLoop::stop_event_loop`]; another event loop (a GUI's)
//!   can drive yoton's with [`EventLoop::embed_event_loop`], and an async runtime with
//!   [`EventLoop::run_event_loop_async`].
//!
//! Like the reference's module-level functions (`yoton.process_events()`,
//! `yoton.call_later(...)`), the free functions of this module act on one process-wide
//! loop, [`event_loop()`]; signals and timers use it unless created `with_loop`.
//!
//! As in the reference, delayed calls and timers are watched by one timer thread per
//! loop (started on first use), which posts their events to the queue when they are
//! due: timers fire even while nobody processes events, and a blocked
//! `process_events(true)` wakes up for them.
//!
//! Handlers that panic are caught (`catch_unwind`) and logged with `tracing::error!`;
//! the other handlers and the loop go on, as the reference prints the exception and
//! goes on.
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
//! use yoton_core::events::{EventLoop, Signal};
//!
//! let el = EventLoop::new();
//! let signal = Signal::<usize>::with_loop(&el);
//! let total = Arc::new(AtomicUsize::new(0));
//! let t = total.clone();
//! signal.bind(move |v| { t.fetch_add(v, Ordering::SeqCst); });
//! signal.emit(2); // queued
//! assert_eq!(total.load(Ordering::SeqCst), 0);
//! el.process_events(false);
//! assert_eq!(total.load(Ordering::SeqCst), 2);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

/// Most events the queue holds; like the reference's `PackageQueue(10000, "new")`,
/// an event posted to a full queue is discarded (with a warning). Events put at the
/// front (`call_later` with a negative time-out) are never discarded.
///
/// ```
/// assert_eq!(yoton_core::events::MAX_QUEUED_EVENTS, 10_000);
/// ```
pub const MAX_QUEUED_EVENTS: usize = 10_000;

/// The shortest timer interval. The reference refuses intervals `<= 0`; here a
/// shorter interval (zero) is raised to this one.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::events::{Timer, MIN_TIMER_INTERVAL};
/// let t = Timer::new(Duration::ZERO, true);
/// assert_eq!(t.interval(), MIN_TIMER_INTERVAL);
/// ```
pub const MIN_TIMER_INTERVAL: Duration = Duration::from_millis(1);

/// Used when "now + delay" does not fit an `Instant`: about thirty years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

type Job = Box<dyn FnOnce() + Send + 'static>;
type EmbedCallback = Arc<dyn Fn() + Send + Sync + 'static>;
type HandlerFn<T> = Arc<dyn Fn(T) + Send + Sync + 'static>;

/// Runs `f`, catching and logging a panic.
fn call_guarded(what: &str, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(panic payload is not a string)".to_owned());
        tracing::error!("panic while handling a yoton event (in {what}): {msg}");
    }
}

/// `now + delay`, or far in the future when that does not fit.
fn deadline_after(delay: Duration) -> Option<Instant> {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(FAR_FUTURE))
}

// ---------------------------------------------------------------------------------
// The event loop
// ---------------------------------------------------------------------------------

enum Event {
    /// Something to run.
    Call(Job),
    /// Posted by `stop_event_loop` to wake a blocked `process_events` (the reference
    /// posts a dummy event); not counted as processed.
    Wake,
}

struct QueueState {
    events: VecDeque<Event>,
    /// The reference's `_stop_event_loop`.
    stop: bool,
    /// The reference's `_in_event_loop`.
    in_loop: bool,
    /// The reference's `_embedding_callback1`.
    embed: Option<EmbedCallback>,
    /// Whether `_embedding_callback2` is set: the next posted event calls `embed`.
    embed_armed: bool,
}

struct Shared {
    queue: Mutex<QueueState>,
    /// Wakes threads blocked in `process_events`.
    cond: Condvar,
    /// Wakes `run_event_loop_async`.
    notify: Notify,
    timers: Arc<TimerThread>,
}

enum Wait {
    No,
    Forever,
    Until(Instant),
}

impl Shared {
    fn new() -> Shared {
        Shared {
            queue: Mutex::new(QueueState {
                events: VecDeque::new(),
                stop: false,
                in_loop: false,
                embed: None,
                embed_armed: false,
            }),
            cond: Condvar::new(),
            notify: Notify::new(),
            timers: Arc::new(TimerThread {
                state: Mutex::new(TimerState {
                    entries: Vec::new(),
                    seq: 0,
                    started: false,
                    exit: false,
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// The reference's `post_event` (`front == false`) and `post_event_asap`.
    fn post(&self, event: Event, front: bool) {
        let mut q = self.queue.lock();
        let rejected = if front {
            q.events.push_front(event);
            None
        } else if q.events.len() < MAX_QUEUED_EVENTS {
            q.events.push_back(event);
            None
        } else {
            Some(event)
        };
        let callback = if q.embed_armed {
            q.embed_armed = false;
            q.embed.clone()
        } else {
            None
        };
        drop(q);
        if rejected.is_some() {
            tracing::warn!(
                "yoton event queue is full ({MAX_QUEUED_EVENTS} events): event discarded; \
                 process events more often"
            );
        } else {
            self.cond.notify_one();
            self.notify.notify_waiters();
        }
        drop(rejected);
        if let Some(callback) = callback {
            call_guarded("the embedding callback", || callback());
        }
    }

    /// The reference's `process_events`: re-arm the embedding callback, wait as told
    /// for a first event, then run events until the queue is empty.
    fn process(&self, wait: Wait) -> usize {
        let mut q = self.queue.lock();
        q.embed_armed = q.embed.is_some();
        match wait {
            Wait::No => {}
            Wait::Forever => {
                while q.events.is_empty() {
                    self.cond.wait(&mut q);
                }
            }
            Wait::Until(deadline) => {
                while q.events.is_empty() {
                    if self.cond.wait_until(&mut q, deadline).timed_out() {
                        break;
                    }
                }
            }
        }
        let mut n = 0;
        while let Some(event) = q.events.pop_front() {
            if let Event::Call(job) = event {
                MutexGuard::unlocked(&mut q, || call_guarded("an event handler", job));
                n += 1;
            }
        }
        n
    }

    /// Marks the loop as entered; false when a loop already runs.
    fn enter_loop(&self) -> bool {
        let mut q = self.queue.lock();
        if q.in_loop {
            return false;
        }
        q.in_loop = true;
        q.stop = false;
        true
    }

    fn stopping(&self) -> bool {
        self.queue.lock().stop
    }

    /// Hands `target` to the timer thread, due at `deadline`; first removes the
    /// entries of timer `replace` (a restarted timer).
    fn schedule(self: &Arc<Self>, deadline: Instant, target: TimerTarget, replace: Option<u64>) {
        let timers = &self.timers;
        let mut st = timers.state.lock();
        let removed = match replace {
            Some(id) => st.remove_timer(id),
            None => Vec::new(),
        };
        st.seq += 1;
        let seq = st.seq;
        st.entries.push(TimerEntry {
            deadline,
            seq,
            target,
        });
        let spawn = !st.started;
        st.started = true;
        drop(st);
        drop(removed);
        timers.cond.notify_all();
        if spawn {
            let thread_timers = timers.clone();
            let owner = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("yoton-timers".to_owned())
                .spawn(move || thread_timers.run(owner));
            if let Err(e) = spawned {
                tracing::error!(
                    "could not start the yoton timer thread ({e}); timers and delayed \
                     calls wait until it can be started"
                );
                timers.state.lock().started = false;
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.timers.state.lock().exit = true;
        self.timers.cond.notify_all();
    }
}

/// Resets the "in event loop" flag when a loop returns (or its future is dropped).
struct LoopGuard<'a>(&'a Shared);

impl Drop for LoopGuard<'_> {
    fn drop(&mut self) {
        self.0.queue.lock().in_loop = false;
    }
}

/// An event loop: a queue of events, processed by whoever calls
/// [`process_events`](EventLoop::process_events), plus a timer thread for timers and
/// delayed calls. Cloning gives another handle to the same loop. The reference has
/// one loop per process; [`event_loop()`] is that one, and [`EventLoop::new`] makes
/// independent ones (handy in tests).
///
/// ```
/// use yoton_core::events::EventLoop;
/// let el = EventLoop::new();
/// el.call_later(|| {}, 0.0);
/// assert_eq!(el.process_events(false), 1);
/// ```
#[derive(Clone)]
pub struct EventLoop {
    shared: Arc<Shared>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.shared.queue.lock();
        f.debug_struct("EventLoop")
            .field("pending_events", &q.events.len())
            .field("running", &q.in_loop)
            .field("embedded", &q.embed.is_some())
            .finish()
    }
}

// `Default` would read as "the default loop", which is `event_loop()`, not a new one.
#[allow(clippy::new_without_default)]
impl EventLoop {
    /// A new, independent event loop (the process-wide one is [`event_loop()`]).
    /// Its timer thread starts with the first timer or delayed call and ends when
    /// the last handle to the loop (including signals and timers on it) is dropped.
    ///
    /// ```
    /// let el = yoton_core::events::EventLoop::new();
    /// assert_eq!(el.pending_events(), 0);
    /// ```
    pub fn new() -> EventLoop {
        EventLoop {
            shared: Arc::new(Shared::new()),
        }
    }

    /// Whether `self` and `other` are handles to the same loop.
    ///
    /// ```
    /// use yoton_core::events::{event_loop, EventLoop};
    /// assert!(event_loop().same_loop(&event_loop().clone()));
    /// assert!(!event_loop().same_loop(&EventLoop::new()));
    /// ```
    pub fn same_loop(&self, other: &EventLoop) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Runs the queued events, including events queued while doing so, until the
    /// queue is empty; returns how many ran. With `block`, first waits until there
    /// is at least one event (the reference's `process_events(True)`: no time
    /// limit); [`stop_event_loop`](EventLoop::stop_event_loop) ends that wait, as do
    /// new events, due timers and delayed calls.
    ///
    /// ```
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// assert_eq!(el.process_events(false), 0); // nothing queued: returns at once
    /// el.call_later(|| {}, 0.01);
    /// assert_eq!(el.process_events(true), 1); // waited for the delayed call
    /// ```
    pub fn process_events(&self, block: bool) -> usize {
        self.shared
            .process(if block { Wait::Forever } else { Wait::No })
    }

    /// As [`process_events`](EventLoop::process_events), waiting at most `timeout`
    /// for a first event (the reference's `process_events(block=<float>)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// assert_eq!(el.process_events_timeout(Duration::from_millis(10)), 0);
    /// ```
    pub fn process_events_timeout(&self, timeout: Duration) -> usize {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.shared.process(Wait::Until(deadline)),
            None => self.shared.process(Wait::Forever),
        }
    }

    /// Processes events until [`stop_event_loop`](EventLoop::stop_event_loop) is
    /// called (from a handler or any thread). Returns at once if this loop is
    /// already running (in this or another thread), like the reference.
    ///
    /// Entering clears an earlier stop request, as in the reference: a stop made
    /// before the loop runs is lost. From another thread, wait for
    /// [`is_running`](EventLoop::is_running) before stopping, or stop from a
    /// handler (e.g. through `call_later`).
    ///
    /// ```
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// let el2 = el.clone();
    /// el.call_later(move || el2.stop_event_loop(), 0.0);
    /// el.start_event_loop(); // returns after the call above ran
    /// assert!(!el.is_running());
    /// ```
    pub fn start_event_loop(&self) {
        if !self.shared.enter_loop() {
            return;
        }
        let _guard = LoopGuard(&self.shared);
        while !self.shared.stopping() {
            self.shared.process(Wait::Forever);
        }
    }

    /// Makes [`start_event_loop`](EventLoop::start_event_loop) (or
    /// [`run_event_loop_async`](EventLoop::run_event_loop_async)) return once the
    /// events queued so far are processed, and wakes a blocked
    /// [`process_events`](EventLoop::process_events). Callable from any thread and
    /// from handlers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// let runner = { let el = el.clone(); std::thread::spawn(move || el.start_event_loop()) };
    /// while !el.is_running() && !runner.is_finished() {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// el.stop_event_loop();
    /// runner.join().unwrap();
    /// ```
    pub fn stop_event_loop(&self) {
        {
            let mut q = self.shared.queue.lock();
            if q.stop {
                return;
            }
            q.stop = true;
        }
        self.shared.post(Event::Wake, false);
    }

    /// Whether [`start_event_loop`](EventLoop::start_event_loop) or
    /// [`run_event_loop_async`](EventLoop::run_event_loop_async) is running on this
    /// loop (the reference's `_in_event_loop`).
    ///
    /// ```
    /// let el = yoton_core::events::EventLoop::new();
    /// assert!(!el.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.shared.queue.lock().in_loop
    }

    /// The number of queued events.
    ///
    /// ```
    /// let el = yoton_core::events::EventLoop::new();
    /// el.call_later(|| {}, 0.0);
    /// assert_eq!(el.pending_events(), 1);
    /// ```
    pub fn pending_events(&self) -> usize {
        self.shared.queue.lock().events.len()
    }

    /// Calls `f` from the event loop: after the events already queued (`timeout ==
    /// 0.0`, or NaN), before them (`timeout < 0.0`: put at the front of the queue,
    /// never discarded), or queued once `timeout` seconds have passed (`> 0.0`; an
    /// infinite delay never comes, so `f` is dropped).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// for (name, timeout) in [("a", 0.0), ("b", 0.0), ("first", -1.0)] {
    ///     let log = log.clone();
    ///     el.call_later(move || log.lock().unwrap().push(name), timeout);
    /// }
    /// el.process_events(false);
    /// assert_eq!(*log.lock().unwrap(), ["first", "a", "b"]);
    /// ```
    pub fn call_later<F>(&self, f: F, timeout: f64)
    where
        F: FnOnce() + Send + 'static,
    {
        if timeout > 0.0 {
            let deadline = Duration::try_from_secs_f64(timeout)
                .ok()
                .and_then(deadline_after);
            match deadline {
                Some(deadline) => {
                    self.shared
                        .schedule(deadline, TimerTarget::Call(Box::new(f)), None);
                }
                None => tracing::warn!(
                    "call_later with a time-out of {timeout} s: it never comes; call dropped"
                ),
            }
        } else if timeout < 0.0 {
            self.shared.post(Event::Call(Box::new(f)), true);
        } else {
            self.shared.post(Event::Call(Box::new(f)), false);
        }
    }

    /// Lets another event loop (a GUI's) drive this one. `callback` is called (in
    /// the thread that posts the event, so it must be thread-safe) when an event is
    /// queued: the first one after `embed_event_loop` or after each start of
    /// [`process_events`](EventLoop::process_events), not for every event. It should
    /// schedule, in the other loop, a call to `process_events(false)`. Replaces an
    /// earlier callback; [`unembed_event_loop`](EventLoop::unembed_event_loop)
    /// removes it (the reference passes `None`). Events queued before embedding do
    /// not call it.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// let (wake_gui, gui_queue) = mpsc::channel();
    /// el.embed_event_loop(move || { let _ = wake_gui.send(()); });
    /// el.call_later(|| {}, 0.0);
    /// el.call_later(|| {}, 0.0);
    /// // The "GUI loop": one wake-up for both events.
    /// assert!(gui_queue.try_recv().is_ok());
    /// assert!(gui_queue.try_recv().is_err());
    /// assert_eq!(el.process_events(false), 2);
    /// ```
    pub fn embed_event_loop<F>(&self, callback: F)
    where
        F: Fn() + Send + Sync + 'static,
    {
        let old = {
            let mut q = self.shared.queue.lock();
            q.embed_armed = true;
            q.embed.replace(Arc::new(callback))
        };
        drop(old);
    }

    /// Stops calling the callback given to
    /// [`embed_event_loop`](EventLoop::embed_event_loop) (the reference's
    /// `embed_event_loop(None)`).
    ///
    /// ```
    /// use yoton_core::events::EventLoop;
    /// let el = EventLoop::new();
    /// el.embed_event_loop(|| panic!("not called"));
    /// el.unembed_event_loop();
    /// el.call_later(|| {}, 0.0);
    /// ```
    pub fn unembed_event_loop(&self) {
        let old = {
            let mut q = self.shared.queue.lock();
            q.embed_armed = false;
            q.embed.take()
        };
        drop(old);
    }

    /// The event loop for async code: processes events as they come, in the task
    /// that awaits this future, until [`stop_event_loop`](EventLoop::stop_event_loop).
    /// Returns at once if the loop is already running. Handlers run inside the
    /// task, so they should not block; alternatively call
    /// `process_events(false)` from a `tokio::time::interval` tick (polling).
    ///
    /// ```
    /// use yoton_core::events::EventLoop;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let el = EventLoop::new();
    /// let el2 = el.clone();
    /// el.call_later(move || el2.stop_event_loop(), 0.01);
    /// el.run_event_loop_async().await;
    /// # });
    /// ```
    pub async fn run_event_loop_async(&self) {
        if !self.shared.enter_loop() {
            return;
        }
        let _guard = LoopGuard(&self.shared);
        loop {
            let mut notified = std::pin::pin!(self.shared.notify.notified());
            // Registered before looking at the queue: no wake-up is missed.
            notified.as_mut().enable();
            self.shared.process(Wait::No);
            if self.shared.stopping() {
                break;
            }
            notified.await;
        }
    }
}

static DEFAULT_LOOP: OnceLock<EventLoop> = OnceLock::new();

/// The process-wide event loop (the reference's single event queue), created on
/// first use. The free functions of this module, [`Signal::new`] and [`Timer::new`]
/// use it.
///
/// ```
/// use yoton_core::events::{event_loop, Signal};
/// assert!(Signal::<()>::new().event_loop().same_loop(event_loop()));
/// ```
pub fn event_loop() -> &'static EventLoop {
    DEFAULT_LOOP.get_or_init(EventLoop::new)
}

/// [`EventLoop::process_events`] on the process-wide loop (`yoton.process_events()`).
///
/// ```
/// yoton_core::events::call_later(|| {}, 0.0);
/// assert_eq!(yoton_core::events::process_events(false), 1);
/// ```
pub fn process_events(block: bool) -> usize {
    event_loop().process_events(block)
}

/// [`EventLoop::start_event_loop`] on the process-wide loop (`yoton.start_event_loop()`).
///
/// ```
/// use yoton_core::events::{call_later, start_event_loop, stop_event_loop};
/// call_later(stop_event_loop, 0.0);
/// start_event_loop();
/// ```
pub fn start_event_loop() {
    event_loop().start_event_loop();
}

/// [`EventLoop::stop_event_loop`] on the process-wide loop (`yoton.stop_event_loop()`).
///
/// ```
/// use yoton_core::events::{call_later, start_event_loop, stop_event_loop};
/// call_later(|| stop_event_loop(), 0.01);
/// start_event_loop();
/// ```
pub fn stop_event_loop() {
    event_loop().stop_event_loop();
}

/// [`EventLoop::embed_event_loop`] on the process-wide loop (`yoton.embed_event_loop(cb)`).
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use yoton_core::events::{call_later, embed_event_loop, process_events};
/// let woken = Arc::new(AtomicBool::new(false));
/// let w = woken.clone();
/// embed_event_loop(move || w.store(true, Ordering::SeqCst));
/// call_later(|| {}, 0.0);
/// assert!(woken.load(Ordering::SeqCst));
/// process_events(false);
/// ```
pub fn embed_event_loop<F>(callback: F)
where
    F: Fn() + Send + Sync + 'static,
{
    event_loop().embed_event_loop(callback);
}

/// [`EventLoop::unembed_event_loop`] on the process-wide loop
/// (`yoton.embed_event_loop(None)`).
///
/// ```
/// yoton_core::events::embed_event_loop(|| {});
/// yoton_core::events::unembed_event_loop();
/// ```
pub fn unembed_event_loop() {
    event_loop().unembed_event_loop();
}

/// [`EventLoop::call_later`] on the process-wide loop (`yoton.call_later(f, timeout)`).
///
/// ```
/// use yoton_core::events::{call_later, process_events};
/// call_later(|| {}, -1.0);
/// assert_eq!(process_events(false), 1);
/// ```
pub fn call_later<F>(f: F, timeout: f64)
where
    F: FnOnce() + Send + 'static,
{
    event_loop().call_later(f, timeout);
}

/// [`EventLoop::run_event_loop_async`] on the process-wide loop.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use yoton_core::events::{call_later, run_event_loop_async, stop_event_loop};
/// call_later(stop_event_loop, 0.0);
/// run_event_loop_async().await;
/// # });
/// ```
pub async fn run_event_loop_async() {
    event_loop().run_event_loop_async().await;
}

// ---------------------------------------------------------------------------------
// The timer thread
// ---------------------------------------------------------------------------------

enum TimerTarget {
    /// A delayed call: posted to the queue when due.
    Call(Job),
    /// A running timer: emits its signal when due.
    Timer { id: u64, timer: Weak<TimerInner> },
}

struct TimerEntry {
    deadline: Instant,
    /// Order of equal deadlines.
    seq: u64,
    target: TimerTarget,
}

struct TimerState {
    entries: Vec<TimerEntry>,
    seq: u64,
    started: bool,
    exit: bool,
}

impl TimerState {
    /// Removes the entries of a timer; they are returned to be dropped unlocked.
    fn remove_timer(&mut self, id: u64) -> Vec<TimerEntry> {
        let (removed, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| matches!(e.target, TimerTarget::Timer { id: i, .. } if i == id));
        self.entries = kept;
        removed
    }

    fn has_timer(&self, id: u64) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.target, TimerTarget::Timer { id: i, .. } if i == id))
    }
}

/// The reference's `TheTimerThread`, one per loop: sleeps on a condition variable
/// until the earliest deadline (or a change), then posts what is due.
struct TimerThread {
    state: Mutex<TimerState>,
    cond: Condvar,
}

impl TimerThread {
    fn run(self: Arc<Self>, owner: Weak<Shared>) {
        let mut st = self.state.lock();
        while !st.exit {
            let next = st
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.deadline, e.seq))
                .map(|(i, e)| (i, e.deadline));
            let Some((index, deadline)) = next else {
                self.cond.wait(&mut st);
                continue;
            };
            if deadline > Instant::now() {
                self.cond.wait_until(&mut st, deadline);
                continue;
            }
            let entry = st.entries.swap_remove(index);
            let mut fire: Option<Arc<TimerInner>> = None;
            let mut call: Option<Job> = None;
            match entry.target {
                TimerTarget::Call(job) => call = Some(job),
                TimerTarget::Timer { id, timer } => {
                    if let Some(t) = timer.upgrade() {
                        if !t.oneshot.load(Ordering::SeqCst) {
                            if let Some(deadline) = deadline_after(t.interval()) {
                                st.seq += 1;
                                let seq = st.seq;
                                st.entries.push(TimerEntry {
                                    deadline,
                                    seq,
                                    target: TimerTarget::Timer { id, timer },
                                });
                            }
                        }
                        fire = Some(t);
                    }
                }
            }
            // Unlocked: emitting and posting run user code (embedding callbacks,
            // drops), which may use the timers.
            MutexGuard::unlocked(&mut st, || {
                if let Some(t) = fire {
                    t.signal.emit(());
                    drop(t);
                }
                if let Some(job) = call {
                    match owner.upgrade() {
                        Some(shared) => shared.post(Event::Call(job), false),
                        None => drop(job),
                    }
                }
            });
        }
        let leftovers = std::mem::take(&mut st.entries);
        drop(st);
        drop(leftovers);
    }
}

// ---------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------

/// Identifies a handler bound to a [`Signal`], to [`unbind`](Signal::unbind) it.
///
/// ```
/// use yoton_core::events::Signal;
/// let s = Signal::<u8>::new();
/// let id = s.bind(|_| {});
/// assert!(s.unbind(id));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(u64);

struct Handler<T> {
    id: u64,
    call: HandlerFn<T>,
    /// For weak handlers: whether the object still lives.
    alive: Option<Box<dyn Fn() -> bool + Send + Sync + 'static>>,
}

impl<T> Handler<T> {
    fn is_dead(&self) -> bool {
        self.alive.as_ref().is_some_and(|alive| !alive())
    }
}

struct SignalState<T> {
    next_id: u64,
    handlers: Vec<Handler<T>>,
    subscribers: Vec<mpsc::UnboundedSender<T>>,
}

struct SignalInner<T> {
    el: EventLoop,
    state: Mutex<SignalState<T>>,
}

/// Something that happens, to which handlers are bound (the reference's `Signal`).
/// [`emit`](Signal::emit) queues one event per handler on the signal's
/// [`EventLoop`], so the handlers run when events are processed, in that thread;
/// [`emit_now`](Signal::emit_now) calls them at once. Every emission also goes to
/// the [`stream`](Signal::stream)s, without the event loop.
///
/// Cloning gives another handle to the same signal (same handlers). The reference
/// calls handlers with any arguments; here the value is a `T` (use a tuple for
/// several). A handler that is a closure is kept until unbound: to bind to an object
/// without keeping it alive (the reference holds methods by weak reference), use
/// [`bind_weak`](Signal::bind_weak).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use yoton_core::events::{EventLoop, Signal};
/// let el = EventLoop::new();
/// let received = Signal::<(String, u32)>::with_loop(&el);
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let l = log.clone();
/// received.bind(move |(who, n)| l.lock().unwrap().push(format!("{who}:{n}")));
/// received.emit(("ann".into(), 1));
/// el.process_events(false);
/// assert_eq!(*log.lock().unwrap(), ["ann:1"]);
/// ```
pub struct Signal<T> {
    inner: Arc<SignalInner<T>>,
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Signal {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Signal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("Signal")
            .field("handlers", &st.handlers.len())
            .field("streams", &st.subscribers.len())
            .finish()
    }
}

impl<T: Clone + Send + 'static> Default for Signal<T> {
    /// Same as [`Signal::new`].
    ///
    /// ```
    /// let s: yoton_core::events::Signal<i32> = Default::default();
    /// assert_eq!(s.handler_count(), 0);
    /// ```
    fn default() -> Self {
        Signal::new()
    }
}

impl<T: Clone + Send + 'static> Signal<T> {
    /// A signal without handlers, emitting onto the process-wide loop
    /// [`event_loop()`].
    ///
    /// ```
    /// let s = yoton_core::events::Signal::<u32>::new();
    /// assert_eq!(s.handler_count(), 0);
    /// ```
    pub fn new() -> Signal<T> {
        Signal::with_loop(event_loop())
    }

    /// A signal without handlers, emitting onto `event_loop`.
    ///
    /// ```
    /// use yoton_core::events::{EventLoop, Signal};
    /// let el = EventLoop::new();
    /// let s = Signal::<u32>::with_loop(&el);
    /// assert!(s.event_loop().same_loop(&el));
    /// ```
    pub fn with_loop(event_loop: &EventLoop) -> Signal<T> {
        Signal {
            inner: Arc::new(SignalInner {
                el: event_loop.clone(),
                state: Mutex::new(SignalState {
                    next_id: 0,
                    handlers: Vec::new(),
                    subscribers: Vec::new(),
                }),
            }),
        }
    }

    /// The loop [`emit`](Signal::emit) queues events on.
    ///
    /// ```
    /// use yoton_core::events::{event_loop, Signal};
    /// assert!(Signal::<()>::new().event_loop().same_loop(event_loop()));
    /// ```
    pub fn event_loop(&self) -> &EventLoop {
        &self.inner.el
    }

    fn add_handler(
        &self,
        call: HandlerFn<T>,
        alive: Option<Box<dyn Fn() -> bool + Send + Sync + 'static>>,
    ) -> HandlerId {
        let mut st = self.inner.state.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.handlers.push(Handler { id, call, alive });
        HandlerId(id)
    }

    /// Binds `handler`, called with the emitted value. Each call binds anew (the
    /// reference warns and ignores a handler bound twice; closures cannot be
    /// compared). Keeps `handler` (and what it captures) until unbound or until the
    /// signal is dropped.
    ///
    /// ```
    /// use yoton_core::events::{EventLoop, Signal};
    /// let el = EventLoop::new();
    /// let s = Signal::<u32>::with_loop(&el);
    /// s.bind(|v| assert_eq!(v, 7));
    /// s.emit(7);
    /// assert_eq!(el.process_events(false), 1);
    /// ```
    pub fn bind<F>(&self, handler: F) -> HandlerId
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        self.add_handler(Arc::new(handler), None)
    }

    /// Binds `method` of `object` without keeping `object` alive (the reference's
    /// weakly referenced bound methods): once the object is dropped, its events are
    /// skipped (also those already queued) and the handler is removed at the next
    /// emit.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// use yoton_core::events::Signal;
    /// struct Counter(AtomicU32);
    /// impl Counter { fn add(&self, v: u32) { self.0.fetch_add(v, Ordering::SeqCst); } }
    /// let s = Signal::<u32>::new();
    /// let c = Arc::new(Counter(AtomicU32::new(0)));
    /// s.bind_weak(&c, Counter::add);
    /// s.emit_now(3);
    /// assert_eq!(c.0.load(Ordering::SeqCst), 3);
    /// drop(c);
    /// s.emit_now(3); // nothing to call: removed
    /// assert_eq!(s.handler_count(), 0);
    /// ```
    pub fn bind_weak<O, F>(&self, object: &Arc<O>, method: F) -> HandlerId
    where
        O: Send + Sync + 'static,
        F: Fn(&O, T) + Send + Sync + 'static,
    {
        let weak = Arc::downgrade(object);
        let probe = weak.clone();
        self.add_handler(
            Arc::new(move |v| {
                if let Some(object) = weak.upgrade() {
                    method(&object, v);
                }
            }),
            Some(Box::new(move || probe.strong_count() > 0)),
        )
    }

    /// Unbinds a handler (events already queued for it still run, as in the
    /// reference); also removes handlers of dropped objects. Returns whether `id`
    /// was bound.
    ///
    /// ```
    /// use yoton_core::events::Signal;
    /// let s = Signal::<()>::new();
    /// let id = s.bind(|_| {});
    /// assert!(s.unbind(id));
    /// assert!(!s.unbind(id));
    /// ```
    pub fn unbind(&self, id: HandlerId) -> bool {
        let mut st = self.inner.state.lock();
        let (removed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.handlers)
            .into_iter()
            .partition(|h| h.id == id.0 || h.is_dead());
        st.handlers = kept;
        let found = removed.iter().any(|h| h.id == id.0);
        drop(st);
        drop(removed);
        found
    }

    /// Unbinds all handlers (the reference's `unbind()` without argument). Streams
    /// stay subscribed.
    ///
    /// ```
    /// use yoton_core::events::Signal;
    /// let s = Signal::<()>::new();
    /// s.bind(|_| {});
    /// s.bind(|_| {});
    /// s.unbind_all();
    /// assert_eq!(s.handler_count(), 0);
    /// ```
    pub fn unbind_all(&self) {
        let removed = std::mem::take(&mut self.inner.state.lock().handlers);
        drop(removed);
    }

    /// The number of bound handlers whose object (for
    /// [`bind_weak`](Signal::bind_weak)) still lives.
    ///
    /// ```
    /// let s = yoton_core::events::Signal::<()>::new();
    /// s.bind(|_| {});
    /// assert_eq!(s.handler_count(), 1);
    /// ```
    pub fn handler_count(&self) -> usize {
        self.inner
            .state
            .lock()
            .handlers
            .iter()
            .filter(|h| !h.is_dead())
            .count()
    }

    /// Sends `value` to the streams and returns the live handlers, dropping dead
    /// ones and closed streams.
    fn deliver(&self, value: &T) -> Vec<HandlerFn<T>> {
        let mut st = self.inner.state.lock();
        st.subscribers.retain(|tx| tx.send(value.clone()).is_ok());
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.handlers)
            .into_iter()
            .partition(|h| h.is_dead());
        st.handlers = live;
        let calls = st.handlers.iter().map(|h| h.call.clone()).collect();
        drop(st);
        drop(dead);
        calls
    }

    /// Queues one event per bound handler on the signal's loop, each calling the
    /// handler with a clone of `value`; they run when the loop processes events.
    /// Safe from any thread. Also sends `value` to the streams.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use yoton_core::events::{EventLoop, Signal};
    /// let el = EventLoop::new();
    /// let s = Signal::<()>::with_loop(&el);
    /// let n = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..3 {
    ///     let n = n.clone();
    ///     s.bind(move |_| { n.fetch_add(1, Ordering::SeqCst); });
    /// }
    /// s.emit(());
    /// assert_eq!(el.pending_events(), 3); // one per handler
    /// el.process_events(false);
    /// assert_eq!(n.load(Ordering::SeqCst), 3);
    /// ```
    pub fn emit(&self, value: T) {
        let shared = &self.inner.el.shared;
        for call in self.deliver(&value) {
            let v = value.clone();
            shared.post(Event::Call(Box::new(move || call(v))), false);
        }
    }

    /// Calls the bound handlers now, in the calling thread, in the order they were
    /// bound (a panicking one is logged and the others still run). Also sends
    /// `value` to the streams. The reference advises to do this only from the
    /// thread that runs the event loop.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// use yoton_core::events::Signal;
    /// let s = Signal::<usize>::new();
    /// let n = Arc::new(AtomicUsize::new(0));
    /// let n2 = n.clone();
    /// s.bind(move |v| { n2.fetch_add(v, Ordering::SeqCst); });
    /// s.emit_now(5);
    /// assert_eq!(n.load(Ordering::SeqCst), 5);
    /// ```
    pub fn emit_now(&self, value: T) {
        for call in self.deliver(&value) {
            let v = value.clone();
            call_guarded("a signal handler", move || call(v));
        }
    }

    /// An async stream of the values emitted from now on (by `emit` or
    /// `emit_now`), delivered at emit time without the event loop. Unbounded: read
    /// it, or drop it. Ends when every handle to the signal is dropped.
    ///
    /// ```
    /// use yoton_core::events::Signal;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let s = Signal::<u32>::new();
    /// let mut stream = s.stream();
    /// s.emit(1);
    /// s.emit_now(2);
    /// assert_eq!(stream.recv().await, Some(1));
    /// assert_eq!(stream.recv().await, Some(2));
    /// drop(s);
    /// assert_eq!(stream.recv().await, None);
    /// # });
    /// ```
    pub fn stream(&self) -> SignalStream<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.state.lock().subscribers.push(tx);
        SignalStream { rx }
    }
}

/// The values a [`Signal`] emits, as an async stream (from [`Signal::stream`]).
/// Implements `futures_util::Stream`; [`recv`](SignalStream::recv) is its `next`.
///
/// ```
/// use futures_util::StreamExt;
/// use yoton_core::events::Signal;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let s = Signal::<&'static str>::new();
/// let stream = s.stream();
/// s.emit("a");
/// s.emit("b");
/// drop(s);
/// assert_eq!(stream.collect::<Vec<_>>().await, ["a", "b"]);
/// # });
/// ```
pub struct SignalStream<T> {
    rx: mpsc::UnboundedReceiver<T>,
}

impl<T> fmt::Debug for SignalStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalStream")
            .field("buffered", &self.rx.len())
            .finish()
    }
}

impl<T> SignalStream<T> {
    /// The next emitted value, or `None` once the signal is gone and the values
    /// are read.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let s = yoton_core::events::Signal::<u8>::new();
    /// let mut st = s.stream();
    /// s.emit(9);
    /// assert_eq!(st.recv().await, Some(9));
    /// # });
    /// ```
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The next value if one is buffered, without waiting.
    ///
    /// ```
    /// let s = yoton_core::events::Signal::<u8>::new();
    /// let mut st = s.stream();
    /// assert_eq!(st.try_recv(), None);
    /// s.emit_now(4);
    /// assert_eq!(st.try_recv(), Some(4));
    /// ```
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T> futures_util::Stream for SignalStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

// ---------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------

static NEXT_TIMER_ID: AtomicU64 = AtomicU64::new(1);

struct TimerInner {
    id: u64,
    /// Nanoseconds.
    interval: AtomicU64,
    oneshot: AtomicBool,
    signal: Signal<()>,
}

impl TimerInner {
    fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval.load(Ordering::SeqCst))
    }

    fn set_interval(&self, interval: Duration) {
        let nanos = u64::try_from(interval.max(MIN_TIMER_INTERVAL).as_nanos()).unwrap_or(u64::MAX);
        self.interval.store(nanos, Ordering::SeqCst);
    }
}

impl Drop for TimerInner {
    fn drop(&mut self) {
        let timers = &self.signal.inner.el.shared.timers;
        let removed = timers.state.lock().remove_timer(self.id);
        drop(removed);
    }
}

/// A timer (the reference's `Timer`): when started, its [`timeout`](Timer::timeout)
/// signal is emitted after `interval`, once (`oneshot`) or every `interval` until
/// stopped (the next period counts from the moment it fired, as in the reference).
/// The loop's timer thread watches it; the handlers run, as for any
/// [`Signal::emit`], when the loop processes events.
///
/// Cloning gives another handle to the same timer. Unlike the reference (whose
/// timer thread keeps a running timer alive), dropping the last handle stops it.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::events::{EventLoop, Timer};
/// let el = EventLoop::new();
/// let timer = Timer::with_loop(Duration::from_millis(10), true, &el);
/// let el2 = el.clone();
/// timer.timeout().bind(move |()| el2.stop_event_loop());
/// timer.start();
/// el.start_event_loop(); // returns when the timer fired
/// assert!(!timer.is_running());
/// ```
#[derive(Clone)]
pub struct Timer {
    inner: Arc<TimerInner>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("interval", &self.interval())
            .field("oneshot", &self.is_oneshot())
            .field("running", &self.is_running())
            .finish()
    }
}

impl Timer {
    /// A stopped timer on the process-wide loop. `interval` below
    /// [`MIN_TIMER_INTERVAL`] is raised to it. (The reference's defaults are one
    /// second and oneshot.)
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(1), true);
    /// assert!(!t.is_running());
    /// ```
    pub fn new(interval: Duration, oneshot: bool) -> Timer {
        Timer::with_loop(interval, oneshot, event_loop())
    }

    /// A stopped timer whose signal emits onto `event_loop`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::events::{EventLoop, Timer};
    /// let el = EventLoop::new();
    /// let t = Timer::with_loop(Duration::from_millis(5), false, &el);
    /// assert!(t.timeout().event_loop().same_loop(&el));
    /// ```
    pub fn with_loop(interval: Duration, oneshot: bool, event_loop: &EventLoop) -> Timer {
        let inner = TimerInner {
            id: NEXT_TIMER_ID.fetch_add(1, Ordering::SeqCst),
            interval: AtomicU64::new(0),
            oneshot: AtomicBool::new(oneshot),
            signal: Signal::with_loop(event_loop),
        };
        inner.set_interval(interval);
        Timer {
            inner: Arc::new(inner),
        }
    }

    /// The signal emitted when the timer fires; bind handlers to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(1), true);
    /// t.timeout().bind(|()| {});
    /// assert_eq!(t.timeout().handler_count(), 1);
    /// ```
    pub fn timeout(&self) -> &Signal<()> {
        &self.inner.signal
    }

    /// Starts the timer, or restarts it: it fires `interval` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(60), true);
    /// t.start();
    /// assert!(t.is_running());
    /// t.stop();
    /// ```
    pub fn start(&self) {
        let inner = &self.inner;
        let shared = &inner.signal.inner.el.shared;
        match deadline_after(inner.interval()) {
            Some(deadline) => shared.schedule(
                deadline,
                TimerTarget::Timer {
                    id: inner.id,
                    timer: Arc::downgrade(inner),
                },
                Some(inner.id),
            ),
            None => tracing::warn!("timer interval too long for this clock; timer not started"),
        }
    }

    /// Stops the timer (events it already queued still run).
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(60), false);
    /// t.start();
    /// t.stop();
    /// assert!(!t.is_running());
    /// ```
    pub fn stop(&self) {
        let timers = &self.inner.signal.inner.el.shared.timers;
        let removed = timers.state.lock().remove_timer(self.inner.id);
        drop(removed);
        timers.cond.notify_all();
    }

    /// Whether the timer is started and has yet to fire (oneshot) or keeps firing.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(1), true);
    /// assert!(!t.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        let timers = &self.inner.signal.inner.el.shared.timers;
        let running = timers.state.lock().has_timer(self.inner.id);
        running
    }

    /// The interval.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_millis(250), true);
    /// assert_eq!(t.interval(), Duration::from_millis(250));
    /// ```
    pub fn interval(&self) -> Duration {
        self.inner.interval()
    }

    /// Sets the interval (raised to [`MIN_TIMER_INTERVAL`] if shorter). A running
    /// timer keeps its current deadline; the new interval counts from the next
    /// start or period, as in the reference.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(1), true);
    /// t.set_interval(Duration::from_millis(20));
    /// assert_eq!(t.interval(), Duration::from_millis(20));
    /// ```
    pub fn set_interval(&self, interval: Duration) {
        self.inner.set_interval(interval);
    }

    /// Whether the timer fires once per start (else it repeats until stopped).
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(yoton_core::events::Timer::new(Duration::from_secs(1), true).is_oneshot());
    /// ```
    pub fn is_oneshot(&self) -> bool {
        self.inner.oneshot.load(Ordering::SeqCst)
    }

    /// Sets whether the timer fires once per start; takes effect when it next
    /// fires.
    ///
    /// ```
    /// use std::time::Duration;
    /// let t = yoton_core::events::Timer::new(Duration::from_secs(1), true);
    /// t.set_oneshot(false);
    /// assert!(!t.is_oneshot());
    /// ```
    pub fn set_oneshot(&self, oneshot: bool) {
        self.inner.oneshot.store(oneshot, Ordering::SeqCst);
    }
}

/// Compile-time check: the public types are `Send + Sync` and the future of
/// `run_event_loop_async` is `Send`.
#[allow(dead_code)]
fn assert_send_sync() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EventLoop>();
    send_sync::<Signal<String>>();
    send_sync::<Timer>();
    send_sync::<HandlerId>();
    send_sync::<SignalStream<String>>();
    let el = EventLoop::new();
    let fut = el.run_event_loop_async();
    send(&fut);
    fn is_future<F: Future>(_: &F) {}
    is_future(&fut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counter() -> (Arc<AtomicUsize>, impl Fn() + Send + Sync + Clone + 'static) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        (n, move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[test]
    fn full_queue_discards_new_events_but_not_front_ones() {
        let el = EventLoop::new();
        let (n, inc) = counter();
        for _ in 0..MAX_QUEUED_EVENTS + 5 {
            el.call_later(inc.clone(), 0.0);
        }
        assert_eq!(el.pending_events(), MAX_QUEUED_EVENTS);
        el.call_later(inc.clone(), -1.0);
        assert_eq!(el.pending_events(), MAX_QUEUED_EVENTS + 1);
        assert_eq!(el.process_events(false), MAX_QUEUED_EVENTS + 1);
        assert_eq!(n.load(Ordering::SeqCst), MAX_QUEUED_EVENTS + 1);
    }

    #[test]
    fn dropping_a_timer_removes_its_entry() {
        let el = EventLoop::new();
        let t = Timer::with_loop(Duration::from_secs(60), false, &el);
        t.start();
        assert_eq!(el.shared.timers.state.lock().entries.len(), 1);
        let t2 = t.clone();
        drop(t);
        assert!(t2.is_running());
        drop(t2);
        assert_eq!(el.shared.timers.state.lock().entries.len(), 0);
    }

    #[test]
    fn restart_keeps_one_entry() {
        let el = EventLoop::new();
        let t = Timer::with_loop(Duration::from_secs(60), true, &el);
        t.start();
        t.start();
        t.start();
        assert_eq!(el.shared.timers.state.lock().entries.len(), 1);
        t.stop();
        assert_eq!(el.shared.timers.state.lock().entries.len(), 0);
        assert!(!t.is_running());
    }

    #[test]
    fn timer_thread_ends_with_the_loop() {
        let el = EventLoop::new();
        el.call_later(|| {}, 3600.0);
        let timers = el.shared.timers.clone();
        assert!(timers.state.lock().started);
        drop(el);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The thread drops the pending call and its handle on exit.
        while Arc::strong_count(&timers) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(Arc::strong_count(&timers), 1, "timer thread still running");
        assert!(timers.state.lock().entries.is_empty());
    }

    #[test]
    fn emit_now_runs_before_queued_emit() {
        let el = EventLoop::new();
        let s = Signal::<u32>::with_loop(&el);
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        s.bind(move |v| l.lock().push(v));
        s.emit(1);
        s.emit_now(2);
        assert_eq!(*log.lock(), [2]);
        el.process_events(false);
        assert_eq!(*log.lock(), [2, 1]);
    }

    #[test]
    fn unbound_handler_keeps_its_queued_event() {
        let el = EventLoop::new();
        let s = Signal::<()>::with_loop(&el);
        let (n, inc) = counter();
        let id = s.bind(move |()| inc());
        s.emit(());
        assert!(s.unbind(id));
        s.emit(());
        assert_eq!(el.process_events(false), 1);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn weak_handler_of_dropped_object_is_skipped_and_pruned() {
        struct Obj(AtomicUsize);
        let el = EventLoop::new();
        let s = Signal::<usize>::with_loop(&el);
        let obj = Arc::new(Obj(AtomicUsize::new(0)));
        s.bind_weak(&obj, |o, v| {
            o.0.fetch_add(v, Ordering::SeqCst);
        });
        s.emit(1);
        let weak = Arc::downgrade(&obj);
        drop(obj);
        assert_eq!(el.process_events(false), 1); // ran, as a no-op
        assert!(weak.upgrade().is_none());
        assert_eq!(s.handler_count(), 0);
        s.emit(1);
        assert_eq!(el.pending_events(), 0);
        assert_eq!(s.inner.state.lock().handlers.len(), 0);
    }

    #[test]
    fn stop_wakes_a_blocked_process_events_and_is_not_counted() {
        let el = EventLoop::new();
        let el2 = el.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(el2.process_events(true));
        });
        std::thread::sleep(Duration::from_millis(20));
        el.stop_event_loop();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(0));
    }

    #[test]
    fn embedding_callback_is_rearmed_by_process_events() {
        let el = EventLoop::new();
        let (n, inc) = counter();
        el.embed_event_loop(inc);
        el.call_later(|| {}, 0.0);
        el.call_later(|| {}, 0.0);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        el.process_events(false);
        el.call_later(|| {}, -1.0);
        assert_eq!(n.load(Ordering::SeqCst), 2);
        el.unembed_event_loop();
        el.process_events(false);
        el.call_later(|| {}, 0.0);
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn panicking_embedding_callback_is_contained() {
        let el = EventLoop::new();
        el.embed_event_loop(|| panic!("gui is broken"));
        el.call_later(|| {}, 0.0);
        assert_eq!(el.process_events(false), 1);
    }

    #[test]
    fn zero_interval_is_raised() {
        let t = Timer::with_loop(Duration::ZERO, true, &EventLoop::new());
        assert_eq!(t.interval(), MIN_TIMER_INTERVAL);
        t.set_interval(Duration::MAX);
        assert!(t.interval() > Duration::from_secs(100 * 365 * 24 * 3600));
    }

    #[test]
    fn infinite_and_nan_delays() {
        let el = EventLoop::new();
        el.call_later(|| {}, f64::INFINITY);
        el.call_later(|| {}, f64::NAN);
        assert_eq!(el.pending_events(), 1);
        assert!(el.shared.timers.state.lock().entries.is_empty());
        // Far but finite: scheduled, not queued.
        el.call_later(|| {}, 1e12);
        assert_eq!(el.shared.timers.state.lock().entries.len(), 1);
    }
}
