//! One network chaining every transport: A -tcp- B -quic- C -ws- D -inproc- E.
//! Pub/sub, req/rep and state cross all four links end to end.
#![cfg(all(feature = "tcp", feature = "ws", feature = "quic"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use yoton::{
    Context, PubChannel, RepChannel, RepMode, ReqChannel, StateChannel, SubChannel, Text, Value,
};

const WAIT: Duration = Duration::from_secs(10);

fn ctx(quic: &yoton::quic::QuicTransport) -> Context {
    let mut r = yoton::registry();
    r.register(Arc::new(quic.clone()));
    Context::builder().registry(r).build().unwrap()
}

fn port_of(conn: &yoton::Connection) -> u16 {
    conn.local().port
}

#[test]
fn pubsub_reqrep_and_state_cross_tcp_quic_ws_inproc() {
    // B hosts QUIC with a self-signed certificate; C pins it.
    let server = yoton::quic::QuicTransport::builder()
        .self_signed_for(["localhost", "127.0.0.1"])
        .build()
        .unwrap();
    let pin = server.fingerprint().unwrap();
    let client = yoton::quic::QuicTransport::builder()
        .pin_certificate(pin)
        .build()
        .unwrap();
    let a = ctx(&client);
    let b = ctx(&server);
    let c = ctx(&client);
    let d = ctx(&client);
    let e = ctx(&client);

    // Channels at the two ends (the middle contexts only route).
    let publisher = PubChannel::<Text>::new(&a, "chain").unwrap();
    let subscriber = SubChannel::<Text>::new(&e, "chain").unwrap();
    let rep = RepChannel::new(&a, "chain").unwrap();
    rep.set_mode(RepMode::Task);
    let req = ReqChannel::new(&e, "chain").unwrap();
    let state_a = StateChannel::<Text>::new(&a, "chain").unwrap();
    let state_e = StateChannel::<Text>::new(&e, "chain").unwrap();

    let ab = a.bind("tcp://127.0.0.1:0").unwrap();
    b.connect(&format!("tcp://127.0.0.1:{}", port_of(&ab)), WAIT)
        .unwrap();
    let bc = b.bind("quic://127.0.0.1:0").unwrap();
    c.connect(&format!("quic://127.0.0.1:{}", port_of(&bc)), WAIT)
        .unwrap();
    let cd = c.bind("ws://127.0.0.1:0").unwrap();
    d.connect(&format!("ws://127.0.0.1:{}", port_of(&cd)), WAIT)
        .unwrap();
    let de = d.bind("inproc://mixed-chain-test").unwrap();
    e.connect("inproc://mixed-chain-test", WAIT).unwrap();
    for conn in [&ab, &bc, &cd, &de] {
        conn.wait_connected(WAIT).unwrap();
    }

    // pub/sub A -> E, in order.
    for i in 0..200 {
        publisher.send(format!("m{i}")).unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            subscriber.recv_timeout(WAIT).unwrap(),
            Some(format!("m{i}"))
        );
    }

    // req/rep E -> A (the built-in echo names the replier's context).
    let v = req.call("echo", ("across",)).unwrap().result(WAIT).unwrap();
    assert_eq!(
        v,
        Value::Tuple(vec!["across".into(), Value::Str(format!("{:#x}", a.id()))])
    );

    // state both ways.
    state_a.send("from a".into()).unwrap();
    wait_for("the state to cross the chain", || {
        state_e.recv().as_deref() == Some("from a")
    });
    state_e.send("from e".into()).unwrap();
    wait_for("the state to cross back", || {
        state_a.recv().as_deref() == Some("from e")
    });
}

/// Poll `f` (every 5 ms) until it holds; fails after `WAIT`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
