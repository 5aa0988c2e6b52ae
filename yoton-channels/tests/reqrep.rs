//! Request/reply over real TCP.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use yoton_channels::{ChannelError, RepChannel, RepMode, ReqChannel, Value};
use yoton_core::Context;

/// A hub with the requester; repliers connect to it.
fn hub() -> (Context, String) {
    let hub = ctx();
    let l = hub.listen("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", l.local().port);
    std::mem::forget(l); // keep listening for the test's lifetime
    (hub, addr)
}

#[test]
fn three_repliers_one_slow_load_balancing() {
    let (hub, addr) = hub();
    let req = ReqChannel::new(&hub, "work").unwrap();
    let in_flight: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let max_in_flight: Vec<Arc<AtomicUsize>> =
        (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut keep = vec![];
    for k in 0..3 {
        let c = ctx();
        let rep = RepChannel::new(&c, "work").unwrap();
        let (now, max) = (in_flight[k].clone(), max_in_flight[k].clone());
        rep.handle("job", move |(i,): (i64,)| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            // Replier 0 is slow.
            std::thread::sleep(Duration::from_millis(if k == 0 { 100 } else { 2 }));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>((i, k as i64))
        });
        rep.set_mode(RepMode::Thread);
        c.connect(&addr, WAIT).unwrap();
        keep.push((c, rep));
    }
    wait_for("3 repliers", || hub.connection_count() == 3);
    let replies: Vec<_> = (0..100).map(|i| req.call("job", (i,)).unwrap()).collect();
    let mut by_replier: HashMap<i64, usize> = HashMap::new();
    for (i, r) in replies.iter().enumerate() {
        let (echo, k): (i64, i64) = r.result_as(Duration::from_secs(30)).unwrap();
        assert_eq!(echo, i as i64);
        *by_replier.entry(k).or_default() += 1;
    }
    for (k, m) in max_in_flight.iter().enumerate() {
        assert!(
            m.load(Ordering::SeqCst) <= 1,
            "replier {k} held two requests at once"
        );
    }
    let slow = by_replier.get(&0).copied().unwrap_or(0);
    assert!(
        slow < 30,
        "the slow replier took {slow} of 100: {by_replier:?}"
    );
    assert_eq!(by_replier.values().sum::<usize>(), 100);
}

#[test]
fn a_replier_that_starts_later_still_answers() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "late").unwrap();
    join(&a, &b);
    let reply = req.call("echo", ("hi",)).unwrap();
    std::thread::sleep(Duration::from_millis(800)); // a few req? go unanswered
    assert!(!reply.done());
    let rep = RepChannel::new(&b, "late").unwrap();
    rep.set_mode(RepMode::Task);
    let v = reply.result(WAIT).unwrap();
    assert_eq!(
        v,
        Value::Tuple(vec!["hi".into(), Value::Str(format!("{:#x}", b.id()))])
    );
    assert_eq!(reply.replier(), b.id());
}

#[test]
fn cancel_and_auto_cancel() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "nobody").unwrap();
    join(&a, &b);
    let r = req.call("echo", (1,)).unwrap();
    assert!(r.cancel());
    assert!(r.cancelled() && r.done());
    assert!(matches!(r.result(WAIT), Err(ChannelError::Cancelled)));

    req.set_default_timeout(Duration::from_millis(600));
    let r = req.call("echo", (2,)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    r.add_done_callback(move |r| {
        let _ = tx.send(r.cancelled());
    });
    let t0 = Instant::now();
    assert!(
        rx.recv_timeout(WAIT).unwrap(),
        "done callback: not cancelled"
    );
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert_eq!(r.result_or_cancel(Duration::from_millis(10)), None);
    // A cancelled request is not served later when a replier appears.
    let rep = RepChannel::new(&b, "nobody").unwrap();
    rep.set_mode(RepMode::Task);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rep.handled(), 0);
}

#[test]
fn errors_and_unknown_methods_reach_the_requester() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "err").unwrap();
    let rep = RepChannel::new(&b, "err").unwrap();
    rep.handle("fail", |(): ()| Err::<i64, _>("ValueError: bad input"));
    rep.register("panics", |_| panic!("boom"));
    rep.set_mode(RepMode::Thread);
    join(&a, &b);
    let e = req
        .call("fail", ())
        .unwrap()
        .exception(WAIT)
        .unwrap()
        .unwrap();
    assert!(e.contains("bad input"), "{e}");
    let e = req
        .call("missing", ())
        .unwrap()
        .result(WAIT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Method 'missing' not implemented"), "{e}");
    let e = req
        .call("panics", ())
        .unwrap()
        .result(WAIT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("boom"), "{e}");
    // Wrong argument types are an error too, not a crash.
    rep.handle("add", |(x, y): (i64, i64)| Ok::<_, String>(x + y));
    let e = req
        .call("add", ("a", "b"))
        .unwrap()
        .result(WAIT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("add"), "{e}");
    assert_eq!(
        req.call("add", (2, 3)).unwrap().result(WAIT).unwrap(),
        Value::Int(5)
    );
}

#[test]
fn keyword_arguments_and_async_handlers() {
    #[derive(serde::Serialize)]
    struct Opts {
        scale: f64,
    }
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "kw").unwrap();
    let rep = RepChannel::new(&b, "kw").unwrap();
    rep.register("scaled", |r| {
        let x = match r.args.first() {
            Some(Value::Float(x)) => *x,
            Some(Value::Int(i)) => *i as f64,
            _ => return Err("TypeError: x".into()),
        };
        let scale = match r.kwarg("scale") {
            Some(Value::Float(s)) => *s,
            _ => 1.0,
        };
        Ok(Value::Float(x * scale))
    });
    rep.handle_async("later", |(ms,): (u64,)| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, String>("done")
    });
    rep.set_mode(RepMode::Task);
    join(&a, &b);
    let v = req
        .call_kw("scaled", (2,), Opts { scale: 1.5 })
        .unwrap()
        .result(WAIT)
        .unwrap();
    assert_eq!(v, Value::Float(3.0));
    let v = req.call("later", (50,)).unwrap().result(WAIT).unwrap();
    assert_eq!(v, Value::Str("done".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_a_reply() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "aw").unwrap();
    let rep = RepChannel::new(&b, "aw").unwrap();
    rep.set_mode(RepMode::Task);
    join_async(&a, &b).await;
    let replies: Vec<_> = (0..20).map(|i| req.call("echo", (i,)).unwrap()).collect();
    for (i, r) in replies.into_iter().enumerate() {
        let v = tokio::time::timeout(WAIT, r).await.unwrap().unwrap();
        let Value::Tuple(t) = v else { panic!("{v:?}") };
        assert_eq!(t[0], Value::Int(i as i64));
    }
}

/// A reply polled many times (in a select loop) and awaited in a second task by a
/// clone: both tasks are woken when it comes, and polling does not leave a task
/// behind per poll (it spawned a watcher task per pending poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_polled_often_and_awaited_by_a_clone_wakes_both() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "often").unwrap();
    join_async(&a, &b).await;
    let reply = req.call("echo", (7,)).unwrap();
    let other = tokio::spawn(tokio::time::timeout(WAIT, reply.clone()));
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let mut polls = 0;
    let mut r = reply;
    let mut replier = None;
    let v = loop {
        tokio::select! {
            v = &mut r => break v.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(1)) => polls += 1,
        }
        if polls == 100 {
            // Polled a hundred times while pending: no task per poll.
            let grown = metrics.num_alive_tasks().saturating_sub(tasks_before);
            assert!(grown < 10, "{grown} tasks more after {polls} polls");
            // Now a replier appears and answers.
            let rep = RepChannel::new(&b, "often").unwrap();
            rep.set_mode(RepMode::Task);
            replier = Some(rep);
        }
        assert!(polls < 20_000, "no reply");
    };
    assert!(replier.is_some() && polls >= 100);
    let Value::Tuple(t) = &v else { panic!("{v:?}") };
    assert_eq!(t[0], Value::Int(7));
    let v2 = other
        .await
        .unwrap()
        .expect("the clone's task was woken")
        .unwrap();
    assert_eq!(v2, v);
}

#[test]
fn event_mode_runs_in_the_event_loop() {
    let (a, b) = (ctx(), ctx());
    let req = ReqChannel::new(&a, "ev").unwrap();
    let rep = RepChannel::new(&b, "ev").unwrap();
    rep.set_mode(RepMode::Event);
    join(&a, &b);
    let r = req.call("echo", ("e",)).unwrap();
    // Nothing is handled until somebody processes events.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rep.handled(), 0);
    let t0 = Instant::now();
    while !r.done() && t0.elapsed() < WAIT {
        yoton_core::events::process_events(false);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(r.result(Duration::from_millis(1)).is_ok());
    assert_eq!(rep.handled(), 1);
}

#[test]
fn direct_mode_sticks_to_one_replier_and_finds_another_when_it_is_gone() {
    let (hub, addr) = hub();
    let req = ReqChannel::new(&hub, "direct").unwrap();
    req.set_direct(true);
    req.set_default_timeout(Duration::from_millis(600));
    let repliers: Vec<_> = (0..2)
        .map(|k| {
            let c = ctx();
            let rep = RepChannel::new(&c, "direct").unwrap();
            rep.handle("who", move |(): ()| Ok::<_, String>(k as i64));
            rep.set_mode(RepMode::Task);
            c.connect(&addr, WAIT).unwrap();
            (c, rep)
        })
        .collect();
    wait_for("2 repliers", || hub.connection_count() == 2);
    let first = req.call("who", ()).unwrap();
    let k: i64 = first.result_as(WAIT).unwrap();
    let chosen = first.replier();
    for _ in 0..30 {
        let r = req.call("who", ()).unwrap();
        assert_eq!(r.result_as::<i64>(WAIT).unwrap(), k);
        assert_eq!(r.replier(), chosen, "direct mode went to another replier");
    }
    // The chosen replier goes away: the next direct call fails after the time-out...
    let (gone, _rep) = &repliers[k as usize];
    gone.close();
    wait_for("the replier to leave", || hub.connection_count() == 1);
    let r = req.call("who", ()).unwrap();
    let err = r.result(WAIT).unwrap_err().to_string();
    assert!(err.contains("direct mode"), "{err}");
    // ... and the one after finds the other replier.
    let r = req.call("who", ()).unwrap();
    assert_eq!(r.result_as::<i64>(WAIT).unwrap(), 1 - k);
    assert_ne!(r.replier(), chosen);
}

#[test]
fn close_in_thread_mode_waits_for_the_request_in_hand() {
    let (a, b) = (ctx(), ctx());
    let rep = RepChannel::new(&a, "slowclose").unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (s, f) = (started.clone(), finished.clone());
    rep.handle("nap", move |(): ()| {
        s.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(400));
        f.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(1i64)
    });
    rep.set_mode(RepMode::Thread);
    join(&a, &b);
    let req = ReqChannel::new(&b, "slowclose").unwrap();
    let _reply = req.call("nap", ()).unwrap();
    wait_for("the handler to start", || {
        started.load(Ordering::SeqCst) == 1
    });
    let t0 = Instant::now();
    rep.close();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "close returned while the handler was still running"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert!(!rep.is_busy());
}

/// A replier that is busy acknowledges no pre-request, even though pre-requests are
/// now acknowledged on the connection's reader, apart from the thread that handles
/// requests: the second call waits for a replier that is free, and gets one.
#[test]
fn a_busy_replier_acknowledges_no_pre_request() {
    let (hub, addr) = hub();
    let req = ReqChannel::new(&hub, "busy").unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = parking_lot::Mutex::new(released);
    let a = ctx();
    let busy = RepChannel::new(&a, "busy").unwrap();
    busy.handle("who", move |(): ()| {
        // Holds its thread until the test lets go (or gives up).
        let _ = released.lock().recv_timeout(Duration::from_secs(30));
        Ok::<_, String>("a")
    });
    busy.set_mode(RepMode::Thread);
    a.connect(&addr, WAIT).unwrap();
    wait_for("replier a", || hub.connection_count() == 1);
    let first = req.call("who", ()).unwrap();
    wait_for("replier a busy", || busy.is_busy());
    // Only the busy replier hears this one's pre-requests for a while (they are
    // repeated every 0.5 s): it must not take it.
    let second = req.call("who", ()).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        second.replier(),
        0,
        "the busy replier acknowledged a request"
    );
    let b = ctx();
    let free = RepChannel::new(&b, "busy").unwrap();
    free.handle("who", |(): ()| Ok::<_, String>("b"));
    free.set_mode(RepMode::Task);
    b.connect(&addr, WAIT).unwrap();
    let v: String = second.result_as(WAIT).unwrap();
    assert_eq!(v, "b");
    assert!(!first.done(), "the first call ended before it was let go");
    release.send(()).unwrap();
    let v: String = first.result_as(WAIT).unwrap();
    assert_eq!(v, "a");
}

/// An awaited reply spins before it sleeps, yielding to its runtime (which reads the
/// replier's acknowledgement, sends the request and reads the reply meanwhile): a
/// call answered within the spin completes without the runtime's thread going to
/// sleep. (The spin is set long here, so that a loaded machine cannot make a reply
/// outlast it.) The handler takes `HANDLER_DELAY`: longer than the connection
/// writer's linger after a write (50 us), which keeps the runtime awake too, so that
/// without spinning the runtime must sleep at least once a call (a debug build slept
/// 388 times in 100 calls, about twice per round trip; an answer that comes within
/// the linger spares one of them).
#[test]
fn an_awaited_reply_spins_instead_of_parking_the_runtime() {
    const CALLS: usize = 100;
    const HANDLER_DELAY: Duration = Duration::from_micros(300);
    let server = ctx();
    let rep = RepChannel::new(&server, "spin").unwrap();
    rep.handle("twice", |(x,): (i64,)| {
        std::thread::sleep(HANDLER_DELAY);
        Ok::<_, String>(2 * x)
    });
    rep.set_mode(RepMode::Task);
    let (rt, parks) = counting_runtime();
    rt.block_on(async {
        let a = ctx();
        let req = ReqChannel::new(&a, "spin").unwrap();
        join_async(&a, &server).await;
        let call = |i: i64| {
            let req = &req;
            async move {
                let r = tokio::time::timeout(WAIT, req.call("twice", (i,)).unwrap()).await;
                assert_eq!(r.unwrap().unwrap(), Value::Int(2 * i));
            }
        };
        call(0).await; // warm-up
        let mut parked = Vec::new();
        for spin in [WAIT, Duration::ZERO] {
            req.set_spin(spin);
            let before = parks.load(Ordering::Relaxed);
            for i in 1..=CALLS as i64 {
                call(i).await;
            }
            parked.push(parks.load(Ordering::Relaxed) - before);
        }
        assert!(
            parked[0] < CALLS / 10 && parked[1] >= CALLS,
            "the runtime slept {parked:?} times in {CALLS} calls, spinning / not"
        );
    });
}
