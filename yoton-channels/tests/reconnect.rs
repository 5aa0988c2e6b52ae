//! The opt-in reconnect policy over real TCP: the host restarts, the guest comes
//! back, re-announces itself and delivers what was queued meanwhile.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use common::*;
use yoton_channels::{PubChannel, StateChannel, SubChannel, Text};
use yoton_core::{ContextEvent, ReconnectPolicy};

#[test]
fn guest_reconnects_after_the_host_restarts() {
    let host = ctx();
    let listener = host.listen("127.0.0.1:0").unwrap();
    let port = listener.local().port;
    let sub = SubChannel::<Text>::new(&host, "log").unwrap();

    let guest = ctx();
    let publisher = PubChannel::<Text>::new(&guest, "log").unwrap();
    let state = StateChannel::<Text>::new(&guest, "mode").unwrap();
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..ReconnectPolicy::default()
    };
    let first = guest
        .connect_with_reconnect(&format!("127.0.0.1:{port}"), WAIT, policy)
        .unwrap();
    wait_for("the host to see the guest", || host.connection_count() == 1);
    state.send("running".into()).unwrap();
    publisher.send("before".into()).unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("before"));

    // The host goes away.
    let mut events = guest.events();
    drop(sub);
    // Once `close` returns the port is free again.
    listener.close();
    host.close();
    drop(host);
    assert!(first.wait_closed(WAIT).is_ok());
    // Sent while nobody is there: kept in the start-up queue.
    for i in 0..5 {
        publisher.send(format!("queued {i}")).unwrap();
    }

    // The host restarts on the same port.
    let host2 = ctx();
    let sub2 = SubChannel::<Text>::new(&host2, "log").unwrap();
    let state2 = StateChannel::<Text>::new(&host2, "mode").unwrap();
    let _listener2 = host2.listen(&format!("127.0.0.1:{port}")).unwrap();
    let reconnected = guest.block_on("test", async {
        loop {
            match tokio::time::timeout(WAIT, events.next()).await {
                Ok(Some(ContextEvent::NewConnection(c))) => return Some(c),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    });
    let conn = reconnected.unwrap().expect("no reconnection");
    assert!(conn.is_connected());
    assert_eq!(conn.peer_id(), host2.id());
    for i in 0..5 {
        assert_eq!(
            sub2.recv_timeout(WAIT).unwrap(),
            Some(format!("queued {i}"))
        );
    }
    // NEW_CONNECTION made the guest's state channel resend its state.
    wait_for("state resent", || {
        state2.recv().as_deref() == Some("running")
    });

    // A close by this end does not reconnect.
    conn.close("done");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(guest.connection_count(), 0);
}
