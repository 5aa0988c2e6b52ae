//! State channels over real TCP.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use common::*;
use yoton_channels::{ObjectOf, StateChannel, Text};

/// A `NEW_CONNECTION` makes every state channel resend its state. One that is still
/// in flight when a test sets a new state can overwrite it later (last writer wins:
/// the protocol has no ordering between contexts), so the tests let it settle.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn state_reaches_a_context_that_joins_later() {
    let (a, b, late) = (ctx(), ctx(), ctx());
    let sa = StateChannel::<Text>::new(&a, "phase").unwrap();
    let sb = StateChannel::<Text>::new(&b, "phase").unwrap();
    join(&a, &b);
    settle();
    sa.send("one".into()).unwrap();
    wait_for("b learns one", || sb.recv().as_deref() == Some("one"));
    sb.send("two".into()).unwrap();
    wait_for("a learns two", || sa.recv().as_deref() == Some("two"));
    // A newcomer connects to b and learns the state without anyone sending it again.
    let sl = StateChannel::<Text>::new(&late, "phase").unwrap();
    assert_eq!(sl.recv(), None);
    join(&b, &late);
    wait_for("newcomer learns two", || {
        sl.recv().as_deref() == Some("two")
    });
}

#[test]
fn unchanged_state_is_not_resent() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug, Clone)]
    struct Pos(i64, i64);
    let (a, b) = (ctx(), ctx());
    let sa = StateChannel::<ObjectOf<Pos>>::new(&a, "pos").unwrap();
    let sb = StateChannel::<ObjectOf<Pos>>::new(&b, "pos").unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    sb.on_received(move |_| {
        c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    join(&a, &b);
    settle();
    for _ in 0..5 {
        sa.send(Pos(1, 2)).unwrap();
    }
    wait_for("b learns", || sb.recv() == Some(Pos(1, 2)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}
