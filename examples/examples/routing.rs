//! Routing: three contexts in a line, A - B - C, over TCP on 127.0.0.1. B has no
//! channels at all; it only forwards. A publishes and C subscribes; C calls a
//! method whose replier lives at A. Both patterns cross B, whose connections are
//! printed.
//!
//!     cargo run --example routing

use std::time::Duration;

use yoton_channels::{PubChannel, RepChannel, RepMode, ReqChannel, SubChannel, Text};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);

fn shout(text: String) -> Result<String, String> {
    Ok(text.to_uppercase())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    let (a, b, c) = (Context::new()?, Context::new()?, Context::new()?);
    println!(
        "A = {:016x}, B = {:016x}, C = {:016x}",
        a.id(),
        b.id(),
        c.id()
    );

    // A: a publisher and a replier.
    let news = PubChannel::<Text>::new(&a, "news")?;
    let service = RepChannel::new(&a, "service")?;
    service.handle("shout", shout).set_mode(RepMode::Thread);

    // C: a subscriber and a requester.
    let reader = SubChannel::<Text>::new(&c, "news")?;
    let client = ReqChannel::new(&c, "service")?;

    // The line: A binds, B connects to A and binds, C connects to B.
    let ab = a.bind("localhost:0")?;
    b.connect(&format!("localhost:{}", ab.local().port), WAIT)?;
    let bc = b.bind("localhost:0")?;
    c.connect(&format!("localhost:{}", bc.local().port), WAIT)?;
    bc.wait_connected(WAIT)?;

    println!("B's connections (B itself has no channels):");
    for conn in b.connections() {
        let peer = if conn.peer_id() == a.id() { "A" } else { "C" };
        println!(
            "  {:<9} {} <-> {} ({peer})",
            format!("{:?}", conn.status()),
            conn.local(),
            conn.peer()
        );
    }

    // Pub/sub from A reaches C through B.
    for i in 1..=3 {
        news.send(format!("news item {i} from A"))?;
    }
    for _ in 0..3 {
        let item = reader.recv_timeout(WAIT)?.ok_or("no news reached C")?;
        println!("C got    {item:?}");
    }

    // Req/rep from C reaches the replier at A through B.
    let reply = client.call("shout", "hello from C")?;
    let answer: String = reply.result_as(WAIT)?;
    println!(
        "C asked  shout(\"hello from C\") = {answer:?}, answered by {:016x}",
        reply.replier()
    );
    let (_, who): (String, String) = client.call("echo", "where are you?")?.result_as(WAIT)?;
    println!("C asked  echo(..): the replier is context {who} (A)");

    for ctx in [c, b, a] {
        ctx.close();
    }
    Ok(())
}
