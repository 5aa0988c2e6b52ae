//! Which schemes a build has, and the error for the ones it lacks.

use std::time::Duration;

fn connect_error(addr: &str) -> Option<String> {
    let ctx = yoton::context().unwrap();
    ctx.connect(addr, Duration::from_millis(50))
        .err()
        .map(|e| e.to_string())
}

#[test]
fn missing_schemes_name_their_feature() {
    for (scheme, feature, on) in [
        ("tcp", "tcp", cfg!(feature = "tcp")),
        ("ws", "ws", cfg!(feature = "ws")),
        ("wss", "ws", cfg!(feature = "ws")),
        ("quic", "quic", cfg!(feature = "quic")),
    ] {
        let err = connect_error(&format!("{scheme}://127.0.0.1:9")).unwrap_or_default();
        let hint = format!("{scheme}:// needs the `{feature}` feature of yoton");
        assert_eq!(err.contains(&hint), !on, "{scheme}: {err}");
        assert_eq!(yoton::schemes().contains(&scheme), on, "{scheme}");
    }
}

#[test]
fn every_compiled_transport_carries_a_message() {
    use yoton::{PubChannel, SubChannel, Text};
    // Plain-text schemes only here; TLS schemes are tested in their crates.
    let mut addrs = vec!["inproc://facade-test".to_string()];
    if cfg!(feature = "tcp") {
        addrs.push("tcp://127.0.0.1:0".into());
    }
    if cfg!(feature = "ws") {
        addrs.push("ws://127.0.0.1:0".into());
    }
    for addr in addrs {
        let (a, b) = (yoton::context().unwrap(), yoton::context().unwrap());
        let p = PubChannel::<Text>::new(&a, "f").unwrap();
        let s = SubChannel::<Text>::new(&b, "f").unwrap();
        let host = a.bind(&addr).unwrap();
        let target = if addr.starts_with("inproc") {
            addr.clone()
        } else {
            addr.replace(":0", &format!(":{}", host.local().port))
        };
        b.connect(&target, Duration::from_secs(5)).unwrap();
        host.wait_connected(Duration::from_secs(5)).unwrap();
        p.send(format!("via {addr}")).unwrap();
        assert_eq!(
            s.recv_timeout(Duration::from_secs(5)).unwrap(),
            Some(format!("via {addr}")),
            "{addr}"
        );
    }
}
