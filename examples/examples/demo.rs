//! The main demo: a small network of contexts over TCP on 127.0.0.1, showing
//! routing, publish/subscribe, sync mode and state, with a readable summary.
//!
//!     cargo run --example demo

use std::time::{Duration, Instant};

use yoton_channels::{PubChannel, StateChannel, SubChannel, Text};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    println!("yoton-rs demo: three contexts over TCP on 127.0.0.1\n");

    // A - B - C in a line: B routes between A and C.
    let (a, b, c) = (Context::new()?, Context::new()?, Context::new()?);
    let ab = a.bind("localhost:0")?;
    b.connect(&format!("localhost:{}", ab.local().port), WAIT)?;
    let bc = b.bind("localhost:0")?;
    c.connect(&format!("localhost:{}", bc.local().port), WAIT)?;
    ab.wait_connected(WAIT)?;
    bc.wait_connected(WAIT)?;
    println!(
        "network      A({:016x}) - B({:016x}) - C({:016x})",
        a.id(),
        b.id(),
        c.id()
    );

    // Publish/subscribe from A to C, through B.
    let news = PubChannel::<Text>::new(&a, "news")?;
    let reader = SubChannel::<Text>::new(&c, "news")?;
    let n = 20_000;
    let t0 = Instant::now();
    for i in 0..n {
        news.send(format!("headline {i}"))?;
    }
    let mut got = 0;
    while got < n {
        match reader.recv_timeout(WAIT)? {
            Some(_) => got += 1,
            None => break,
        }
    }
    let dt = t0.elapsed();
    println!(
        "pub/sub      {got}/{n} messages A -> C via B in {:.1} ms ({:.0} msgs/s)",
        dt.as_secs_f64() * 1e3,
        f64::from(got) / dt.as_secs_f64()
    );

    // State: C sets it, A (already there) and a newcomer D learn it.
    let state_c = StateChannel::<Text>::new(&c, "mood")?;
    let state_a = StateChannel::<Text>::new(&a, "mood")?;
    state_c.send("sunny".to_string())?;
    let d = Context::new()?;
    let state_d = StateChannel::<Text>::new(&d, "mood")?;
    let cd = c.bind("localhost:0")?;
    d.connect(&format!("localhost:{}", cd.local().port), WAIT)?;
    let t0 = Instant::now();
    while (state_a.recv().is_none() || state_d.recv().is_none()) && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "state        C set \"sunny\"; A sees {:?}; newcomer D sees {:?}",
        state_a.recv().unwrap_or_default(),
        state_d.recv().unwrap_or_default()
    );

    // Connections and close reasons.
    println!(
        "connections  B has {} alive: {:?}",
        b.connection_count(),
        b.connections().iter().map(|c| c.name()).collect::<Vec<_>>()
    );
    a.close();
    let reason = b.connections_all()[0].wait_closed(WAIT)?;
    println!("close        A closed; B was told: {reason:?}");
    println!("\ndemo finished: everything arrived");
    Ok(())
}
