//! The chat guest of the overview: it connects to `localhost:chat` and prints what
//! the host publishes on the channel "chat", until the host closes or, with
//! `--count N`, after N messages. Start the host first (`chat_host.rs`):
//!
//!     cargo run --example chat_host -- --demo   # terminal 1
//!     cargo run --example chat_guest            # terminal 2
//!     cargo run --example chat_guest -- --count 2
//!
//! `connect` retries for up to 30 s, so the guest may also be started first.

use std::time::Duration;

use yoton_channels::{SubChannel, Text};
use yoton_core::Context;

const ADDRESS: &str = "localhost:chat";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let count: Option<usize> = match args.iter().position(|a| a == "--count") {
        Some(i) => Some(args.get(i + 1).ok_or("--count needs a number")?.parse()?),
        None => None,
    };
    yoton_tcp::install();

    let ctx = Context::new()?;
    let inbox = SubChannel::<Text>::new(&ctx, "chat")?; // before connecting: nothing is missed
    let conn = ctx.connect(ADDRESS, Duration::from_secs(30))?;
    println!(
        "guest: connected to {ADDRESS} (host {:016x})",
        conn.peer_id()
    );

    let mut got = 0;
    while count.is_none_or(|n| got < n) {
        match inbox.recv_timeout(Duration::from_millis(200))? {
            Some(line) => {
                got += 1;
                println!("guest: {line}");
            }
            // Everything sent before the goodbye is queued by now.
            None if !conn.is_connected() => break,
            None => {}
        }
    }

    match conn.close_reason() {
        Some(reason) => println!("guest: {got} messages; the host left: {reason}"),
        None => {
            println!("guest: {got} messages; leaving");
            ctx.close();
        }
    }
    Ok(())
}
