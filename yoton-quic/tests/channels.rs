//! The channel patterns of yoton-channels over quic://: pub/sub, req/rep, state.

mod common;

use std::time::{Duration, Instant};

use common::*;
use yoton_channels::{
    Binary, PubChannel, RepChannel, RepMode, ReqChannel, StateChannel, SubChannel, Text,
};
use yoton_core::Context;

/// `host` binds on a free port, `client` connects (blocking style).
fn join_blocking(host: &Context, client: &Context) {
    let c = host.bind("quic://127.0.0.1:0").unwrap();
    client
        .connect(&format!("quic://127.0.0.1:{}", c.local().port), WAIT)
        .unwrap();
    c.wait_connected(WAIT).unwrap();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pub_sub_both_ways_with_large_messages() {
    let (a, b) = pinned_contexts();
    let news_a = PubChannel::<Text>::new(&a, "news").unwrap();
    let news_b = SubChannel::<Text>::new(&b, "news").unwrap();
    let back_b = PubChannel::<Binary>::new(&b, "back").unwrap();
    let back_a = SubChannel::<Binary>::new(&a, "back").unwrap();
    join_blocking(&a, &b);
    for i in 0..50 {
        news_a.send(format!("item {i}")).unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            news_b.recv_timeout(WAIT).unwrap().as_deref(),
            Some(format!("item {i}").as_str())
        );
    }
    let blob = pattern(3 << 20, 9);
    back_b.send(blob.clone().into()).unwrap();
    let got = back_a.recv_timeout(WAIT).unwrap().unwrap();
    assert!(got[..] == blob[..]);
}

#[test]
fn req_rep_calls_across_quic() {
    let (a, b) = pinned_contexts();
    let rep = RepChannel::new(&a, "calc").unwrap();
    rep.handle("add", |(x, y): (i64, i64)| Ok::<_, String>(x + y));
    rep.handle(
        "echo_len",
        |(s,): (String,)| Ok::<_, String>(s.len() as i64),
    );
    rep.set_mode(RepMode::Thread);
    let req = ReqChannel::new(&b, "calc").unwrap();
    join_blocking(&a, &b);
    for i in 0..20i64 {
        let r = req.call("add", (i, 100)).unwrap();
        assert_eq!(r.result_as::<i64>(WAIT).unwrap(), i + 100);
    }
    // A request above the large-message threshold goes on its own stream.
    let long = "x".repeat(200_000);
    let r = req.call("echo_len", (long,)).unwrap();
    assert_eq!(r.result_as::<i64>(WAIT).unwrap(), 200_000);
}

#[test]
fn state_reaches_both_sides_and_a_late_joiner() {
    let t = mesh_transport();
    let (a, b, late) = (ctx_with(t.clone()), ctx_with(t.clone()), ctx_with(t));
    let sa = StateChannel::<Text>::new(&a, "phase").unwrap();
    let sb = StateChannel::<Text>::new(&b, "phase").unwrap();
    join_blocking(&a, &b);
    std::thread::sleep(Duration::from_millis(300));
    sa.send("one".into()).unwrap();
    wait_for("b learns one", || sb.recv().as_deref() == Some("one"));
    sb.send("two".into()).unwrap();
    wait_for("a learns two", || sa.recv().as_deref() == Some("two"));
    let sl = StateChannel::<Text>::new(&late, "phase").unwrap();
    assert_eq!(sl.recv(), None);
    join_blocking(&b, &late);
    wait_for("the newcomer learns two", || {
        sl.recv().as_deref() == Some("two")
    });
}
