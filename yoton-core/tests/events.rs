//! The event system: signals, call_later, timers, the loop (blocking, embedded and
//! async). Every wait is bounded: loops run in threads joined through a channel
//! with a time-out, so a bug fails a test instead of hanging it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use yoton_core::events::{self, EventLoop, Signal, Timer};

/// Far more than any step needs; only reached when something is broken.
const WATCHDOG: Duration = Duration::from_secs(20);

fn counter() -> (Arc<AtomicUsize>, impl Fn() + Send + Sync + Clone + 'static) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    (n, move || {
        n2.fetch_add(1, Ordering::SeqCst);
    })
}

fn log<T: Send + 'static>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

/// Runs `start_event_loop` in a thread; the receiver gets `()` when it returns.
fn spawn_loop(el: &EventLoop) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let el = el.clone();
    thread::spawn(move || {
        el.start_event_loop();
        let _ = tx.send(());
    });
    rx
}

/// Polls `cond` until true or the watchdog runs out.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Processes events for `span` (at least), returning how many ran.
fn process_for(el: &EventLoop, span: Duration) -> usize {
    let end = Instant::now() + span;
    let mut n = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return n;
        }
        n += el.process_events_timeout(end - now);
    }
}

#[test]
fn emit_is_queued_and_emit_now_is_immediate() {
    let el = EventLoop::new();
    let s = Signal::<&'static str>::with_loop(&el);
    let seen = log();
    let l = seen.clone();
    s.bind(move |v| l.lock().unwrap().push(v));
    s.emit("queued");
    s.emit_now("now");
    assert_eq!(*seen.lock().unwrap(), ["now"]);
    assert_eq!(el.process_events(false), 1);
    assert_eq!(*seen.lock().unwrap(), ["now", "queued"]);
}

#[test]
fn one_event_per_handler_in_bind_order() {
    let el = EventLoop::new();
    let s = Signal::<u32>::with_loop(&el);
    let seen = log();
    for name in ["a", "b", "c"] {
        let l = seen.clone();
        s.bind(move |v| l.lock().unwrap().push(format!("{name}{v}")));
    }
    s.emit(1);
    s.emit(2);
    assert_eq!(el.pending_events(), 6);
    assert_eq!(el.process_events(false), 6);
    assert_eq!(*seen.lock().unwrap(), ["a1", "b1", "c1", "a2", "b2", "c2"]);
}

#[test]
fn unbind_and_unbind_all() {
    let el = EventLoop::new();
    let s = Signal::<()>::with_loop(&el);
    let (n, inc) = counter();
    let i1 = inc.clone();
    let a = s.bind(move |()| i1());
    let i2 = inc.clone();
    let b = s.bind(move |()| i2());
    assert_ne!(a, b);
    assert!(s.unbind(a));
    assert!(!s.unbind(a));
    s.emit(());
    el.process_events(false);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    s.bind(move |()| inc());
    assert_eq!(s.handler_count(), 2);
    s.unbind_all();
    assert_eq!(s.handler_count(), 0);
    s.emit(());
    s.emit_now(());
    assert_eq!(el.process_events(false), 0);
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn a_handler_may_rebind_or_emit_during_emit_now() {
    let el = EventLoop::new();
    let s = Signal::<u32>::with_loop(&el);
    let seen = log();
    let (s2, l) = (s.clone(), seen.clone());
    s.bind(move |v| {
        l.lock().unwrap().push(v);
        if v < 3 {
            s2.emit_now(v + 1); // re-entrant: no deadlock
            let l2 = l.clone();
            s2.bind(move |w| l2.lock().unwrap().push(100 + w));
        }
    });
    s.emit_now(1);
    // Each emit calls the handlers bound when it started.
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    assert_eq!(s.handler_count(), 3);
    s.emit_now(3);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 3, 103, 103]);
}

#[test]
fn panicking_handler_does_not_stop_the_others() {
    let el = EventLoop::new();
    let s = Signal::<()>::with_loop(&el);
    let (n, inc) = counter();
    let i1 = inc.clone();
    s.bind(move |()| i1());
    s.bind(|()| panic!("a broken handler"));
    s.bind(move |()| inc());
    s.emit(());
    el.call_later(|| panic!("a broken call"), 0.0);
    assert_eq!(el.process_events(false), 4);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    s.emit_now(());
    assert_eq!(n.load(Ordering::SeqCst), 4);
    // The loop keeps working.
    let rx = spawn_loop(&el);
    s.emit(());
    let el2 = el.clone();
    el.call_later(move || el2.stop_event_loop(), 0.0);
    rx.recv_timeout(WATCHDOG).expect("loop did not stop");
    assert_eq!(n.load(Ordering::SeqCst), 6);
}

#[test]
fn call_later_zero_negative_and_positive() {
    let el = EventLoop::new();
    let seen = log();
    let t0 = Instant::now();
    let ran_at = Arc::new(Mutex::new(None));
    let calls: [(&str, f64); 5] = [
        ("delayed", 0.05),
        ("a", 0.0),
        ("b", 0.0),
        ("urgent1", -1.0),
        ("urgent2", -0.5),
    ];
    for (name, timeout) in calls {
        let (l, r) = (seen.clone(), ran_at.clone());
        el.call_later(
            move || {
                l.lock().unwrap().push(name);
                if name == "delayed" {
                    *r.lock().unwrap() = Some(t0.elapsed());
                }
            },
            timeout,
        );
    }
    el.process_events(false);
    // Negative ones go to the front, so the latest of them runs first.
    assert_eq!(seen.lock().unwrap()[..4], ["urgent2", "urgent1", "a", "b"]);
    // The delayed call comes later, through the queue's back.
    let end = Instant::now() + WATCHDOG;
    while seen.lock().unwrap().len() < 5 && Instant::now() < end {
        el.process_events_timeout(Duration::from_millis(100));
    }
    assert_eq!(seen.lock().unwrap().last(), Some(&"delayed"));
    let elapsed = ran_at.lock().unwrap().expect("delayed call did not run");
    assert!(
        elapsed >= Duration::from_millis(50),
        "delayed call ran after {elapsed:?}"
    );
}

#[test]
fn blocking_process_events_waits_for_a_delayed_call() {
    let el = EventLoop::new();
    let t0 = Instant::now();
    el.call_later(|| {}, 0.03);
    let (tx, rx) = mpsc::channel();
    let el2 = el.clone();
    thread::spawn(move || {
        let _ = tx.send(el2.process_events(true));
    });
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn delayed_calls_run_in_deadline_order() {
    let el = EventLoop::new();
    let seen = log();
    for (name, timeout) in [("30ms", 0.03), ("10ms", 0.01), ("20ms", 0.02)] {
        let l = seen.clone();
        el.call_later(move || l.lock().unwrap().push(name), timeout);
    }
    let end = Instant::now() + WATCHDOG;
    while seen.lock().unwrap().len() < 3 && Instant::now() < end {
        el.process_events_timeout(Duration::from_millis(100));
    }
    assert_eq!(*seen.lock().unwrap(), ["10ms", "20ms", "30ms"]);
}

#[test]
fn process_events_timeout_returns_after_its_time_out() {
    let el = EventLoop::new();
    let t0 = Instant::now();
    assert_eq!(el.process_events_timeout(Duration::from_millis(30)), 0);
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn blocking_process_events_wakes_for_an_event_from_another_thread() {
    let el = EventLoop::new();
    let s = Signal::<u8>::with_loop(&el);
    let (n, inc) = counter();
    s.bind(move |_| inc());
    let (tx, rx) = mpsc::channel();
    let el2 = el.clone();
    thread::spawn(move || {
        let _ = tx.send(el2.process_events(true));
    });
    thread::sleep(Duration::from_millis(20));
    s.emit(1);
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn oneshot_timer_fires_once() {
    let el = EventLoop::new();
    let timer = Timer::with_loop(Duration::from_millis(20), true, &el);
    let (n, inc) = counter();
    timer.timeout().bind(move |()| inc());
    let t0 = Instant::now();
    timer.start();
    assert!(timer.is_running());
    // Wait for the first fire, then long enough for more if it repeated.
    let end = Instant::now() + WATCHDOG;
    while n.load(Ordering::SeqCst) == 0 && Instant::now() < end {
        el.process_events_timeout(Duration::from_millis(100));
    }
    assert!(t0.elapsed() >= Duration::from_millis(20));
    process_for(&el, Duration::from_millis(150));
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!timer.is_running());
    // Restartable.
    timer.start();
    let end = Instant::now() + WATCHDOG;
    while n.load(Ordering::SeqCst) == 1 && Instant::now() < end {
        el.process_events_timeout(Duration::from_millis(100));
    }
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[test]
fn repeating_timer_fires_until_stopped() {
    let el = EventLoop::new();
    let timer = Timer::with_loop(Duration::from_millis(10), false, &el);
    let (n, inc) = counter();
    timer.timeout().bind(move |()| inc());
    timer.start();
    let end = Instant::now() + WATCHDOG;
    while n.load(Ordering::SeqCst) < 4 && Instant::now() < end {
        el.process_events_timeout(Duration::from_millis(100));
    }
    assert!(n.load(Ordering::SeqCst) >= 4);
    assert!(timer.is_running());
    timer.stop();
    assert!(!timer.is_running());
    el.process_events(false); // fires queued before stop
    let after_stop = n.load(Ordering::SeqCst);
    process_for(&el, Duration::from_millis(80));
    assert_eq!(n.load(Ordering::SeqCst), after_stop);
}

#[test]
fn repeating_timer_rate_is_bounded_by_its_interval() {
    let el = EventLoop::new();
    let timer = Timer::with_loop(Duration::from_millis(25), false, &el);
    let (n, inc) = counter();
    timer.timeout().bind(move |()| inc());
    let t0 = Instant::now();
    timer.start();
    process_for(&el, Duration::from_millis(200));
    let elapsed = t0.elapsed();
    timer.stop();
    let fired = n.load(Ordering::SeqCst) as u128;
    // Each period is at least the interval: an upper bound on the count only.
    assert!(
        fired <= elapsed.as_millis() / 25,
        "{fired} fires in {elapsed:?}"
    );
}

#[test]
fn timer_fires_its_stream_without_the_loop() {
    let el = EventLoop::new();
    let timer = Timer::with_loop(Duration::from_millis(5), false, &el);
    let mut stream = timer.timeout().stream();
    timer.start();
    let end = Instant::now() + WATCHDOG;
    let mut got = 0;
    while got < 3 && Instant::now() < end {
        if stream.try_recv().is_some() {
            got += 1;
        } else {
            thread::sleep(Duration::from_millis(2));
        }
    }
    assert_eq!(got, 3);
    assert_eq!(el.process_events(false), 0); // no handlers bound: no events
}

#[test]
fn dropping_the_last_timer_handle_stops_it() {
    let el = EventLoop::new();
    let (n, inc) = counter();
    let token = Arc::new(());
    let timer = Timer::with_loop(Duration::from_millis(5), false, &el);
    let tok = token.clone();
    timer.timeout().bind(move |()| {
        let _keep = &tok;
        inc();
    });
    timer.start();
    wait_for("a first fire", || {
        el.process_events(false);
        n.load(Ordering::SeqCst) > 0
    });
    drop(timer);
    // Once the handler is gone, the timer is gone and its queued events ran.
    wait_for("the timer to be dropped", || {
        el.process_events(false);
        Arc::strong_count(&token) == 1
    });
    let fired = n.load(Ordering::SeqCst);
    process_for(&el, Duration::from_millis(50));
    assert_eq!(n.load(Ordering::SeqCst), fired);
}

#[test]
fn stop_event_loop_from_another_thread() {
    let el = EventLoop::new();
    let rx = spawn_loop(&el);
    wait_for("the loop to run", || el.is_running());
    // A second start returns at once: the loop already runs.
    let (tx2, rx2) = mpsc::channel();
    let el2 = el.clone();
    thread::spawn(move || {
        el2.start_event_loop();
        let _ = tx2.send(());
    });
    rx2.recv_timeout(WATCHDOG)
        .expect("nested start did not return");
    // Events posted from here run in the loop's thread.
    let (tx3, rx3) = mpsc::channel();
    el.call_later(move || tx3.send(thread::current().id()).unwrap_or(()), 0.0);
    let loop_thread = rx3.recv_timeout(WATCHDOG).expect("event not processed");
    assert_ne!(loop_thread, thread::current().id());
    el.stop_event_loop();
    rx.recv_timeout(WATCHDOG).expect("loop did not stop");
    assert!(!el.is_running());
}

#[test]
fn stop_event_loop_from_a_handler_and_restart() {
    let el = EventLoop::new();
    let s = Signal::<()>::with_loop(&el);
    let el2 = el.clone();
    s.bind(move |()| el2.stop_event_loop());
    for _ in 0..2 {
        let rx = spawn_loop(&el);
        wait_for("the loop to run", || el.is_running());
        s.emit(());
        rx.recv_timeout(WATCHDOG).expect("loop did not stop");
    }
}

#[test]
fn events_queued_before_the_stop_still_run() {
    let el = EventLoop::new();
    let (n, inc) = counter();
    let el2 = el.clone();
    el.call_later(move || el2.stop_event_loop(), 0.0);
    for _ in 0..3 {
        el.call_later(inc.clone(), 0.0);
    }
    let rx = spawn_loop(&el);
    rx.recv_timeout(WATCHDOG).expect("loop did not stop");
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[test]
fn timer_drives_a_running_loop_and_stops_it() {
    let el = EventLoop::new();
    let timer = Timer::with_loop(Duration::from_millis(5), false, &el);
    let (n, inc) = counter();
    let (el2, n2) = (el.clone(), n.clone());
    timer.timeout().bind(move |()| {
        inc();
        if n2.load(Ordering::SeqCst) >= 3 {
            el2.stop_event_loop();
        }
    });
    timer.start();
    let rx = spawn_loop(&el);
    rx.recv_timeout(WATCHDOG).expect("loop did not stop");
    timer.stop();
    assert!(n.load(Ordering::SeqCst) >= 3);
}

#[test]
fn embed_event_loop_drives_yoton_from_another_loop() {
    // The "GUI loop": a thread that runs a message queue; yoton's embedding
    // callback posts a message asking it to process yoton events.
    enum GuiMsg {
        ProcessYoton,
        Quit,
    }
    let el = EventLoop::new();
    let (gui_tx, gui_rx) = mpsc::channel::<GuiMsg>();
    let wakeups = Arc::new(AtomicUsize::new(0));
    {
        let gui_tx = Mutex::new(gui_tx.clone());
        let w = wakeups.clone();
        el.embed_event_loop(move || {
            w.fetch_add(1, Ordering::SeqCst);
            let _ = gui_tx.lock().unwrap().send(GuiMsg::ProcessYoton);
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let el_gui = el.clone();
    thread::spawn(move || {
        let mut processed = 0;
        while let Ok(msg) = gui_rx.recv_timeout(WATCHDOG) {
            match msg {
                GuiMsg::ProcessYoton => processed += el_gui.process_events(false),
                GuiMsg::Quit => break,
            }
        }
        let _ = done_tx.send(processed);
    });
    let s = Signal::<u32>::with_loop(&el);
    let seen = log();
    let l = seen.clone();
    s.bind(move |v| l.lock().unwrap().push(v));
    // Signals, delayed calls and timers all reach the GUI loop.
    s.emit(1);
    wait_for("the GUI loop to process the emit", || {
        seen.lock().unwrap().len() == 1
    });
    let s2 = s.clone();
    el.call_later(move || s2.emit(2), 0.02);
    let timer = Timer::with_loop(Duration::from_millis(10), true, &el);
    let s3 = s.clone();
    timer.timeout().bind(move |()| s3.emit(3));
    timer.start();
    wait_for("the GUI loop to process the rest", || {
        seen.lock().unwrap().len() == 3
    });
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3]);
    gui_tx.send(GuiMsg::Quit).unwrap();
    let processed = done_rx
        .recv_timeout(WATCHDOG)
        .expect("GUI loop did not end");
    assert!(processed >= 5, "processed {processed}");
    // Not one wake-up per event: at most one per process_events call, plus one.
    assert!(wakeups.load(Ordering::SeqCst) >= 1);
    el.unembed_event_loop();
}

#[test]
fn embedding_callback_once_per_batch() {
    let el = EventLoop::new();
    let (n, inc) = counter();
    el.embed_event_loop(inc);
    let s = Signal::<()>::with_loop(&el);
    s.bind(|()| {});
    s.bind(|()| {});
    s.emit(());
    s.emit(());
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(el.process_events(false), 4);
    s.emit(());
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn signal_stream_gets_every_emit_without_the_loop() {
    let el = EventLoop::new();
    let s = Signal::<u32>::with_loop(&el);
    let mut a = s.stream();
    let b = s.stream();
    let s2 = s.clone();
    let emitter = thread::spawn(move || {
        for i in 0..5 {
            s2.emit(i);
        }
        s2.emit_now(5);
    });
    for want in 0..6 {
        let got = tokio::time::timeout(WATCHDOG, a.recv())
            .await
            .expect("stream stalled");
        assert_eq!(got, Some(want));
    }
    emitter.join().unwrap();
    drop(s);
    let all: Vec<u32> = tokio::time::timeout(WATCHDOG, b.collect())
        .await
        .expect("stream did not end");
    assert_eq!(all, [0, 1, 2, 3, 4, 5]);
    assert_eq!(el.pending_events(), 0); // no handlers: nothing queued
}

#[tokio::test]
async fn dropped_stream_is_forgotten() {
    let s = Signal::<u8>::with_loop(&EventLoop::new());
    let st = s.stream();
    drop(st);
    s.emit(1); // must not fail or block
    let mut st2 = s.stream();
    s.emit(2);
    assert_eq!(st2.next().await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_event_loop_async_processes_until_stopped() {
    let el = EventLoop::new();
    let s = Signal::<u32>::with_loop(&el);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.bind(move |v| {
        let _ = tx.send(v);
    });
    let runner = tokio::spawn({
        let el = el.clone();
        async move { el.run_event_loop_async().await }
    });
    let s2 = s.clone();
    thread::spawn(move || {
        for i in 0..3 {
            s2.emit(i);
            thread::sleep(Duration::from_millis(5));
        }
    });
    for want in 0..3 {
        let got = tokio::time::timeout(WATCHDOG, rx.recv())
            .await
            .expect("loop stalled");
        assert_eq!(got, Some(want));
    }
    assert!(el.is_running());
    // A delayed call arrives through the timer thread too.
    let s3 = s.clone();
    el.call_later(move || s3.emit(42), 0.01);
    let got = tokio::time::timeout(WATCHDOG, rx.recv())
        .await
        .expect("delayed call lost");
    assert_eq!(got, Some(42));
    el.stop_event_loop();
    tokio::time::timeout(WATCHDOG, runner)
        .await
        .expect("async loop did not stop")
        .unwrap();
    assert!(!el.is_running());
}

#[tokio::test]
async fn dropping_the_async_loop_future_leaves_the_loop_startable() {
    let el = EventLoop::new();
    let r = tokio::time::timeout(Duration::from_millis(20), el.run_event_loop_async()).await;
    assert!(r.is_err());
    assert!(!el.is_running());
}

/// The only test of this binary on the process-wide loop (tests run in parallel).
#[test]
fn module_functions_use_the_process_wide_loop() {
    let s = Signal::<u32>::new();
    assert!(s.event_loop().same_loop(events::event_loop()));
    let seen = log();
    let l = seen.clone();
    s.bind(move |v| l.lock().unwrap().push(v));
    s.emit(1);
    events::call_later(|| {}, -1.0);
    assert_eq!(events::process_events(false), 2);
    // start/stop through the free functions, stopped from a delayed call.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        events::start_event_loop();
        let _ = tx.send(());
    });
    wait_for("the default loop to run", || {
        events::event_loop().is_running()
    });
    let s2 = s.clone();
    events::call_later(
        move || {
            s2.emit(2);
            events::stop_event_loop();
        },
        0.01,
    );
    rx.recv_timeout(WATCHDOG)
        .expect("default loop did not stop");
    // The emit queued from inside the loop ran before it returned.
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    // Embedding through the free functions.
    let (n, inc) = counter();
    events::embed_event_loop(inc);
    s.emit(3);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    events::unembed_event_loop();
    assert_eq!(events::process_events(false), 1);
    let timer = Timer::new(Duration::from_millis(5), true);
    assert!(timer.timeout().event_loop().same_loop(events::event_loop()));
}
