//! The chat pair of `chat_host.rs` and `chat_guest.rs` in one process, for a
//! one-command look: the host thread binds `localhost:chat` and publishes a few
//! lines, the guest thread connects and prints them until the host closes.
//!
//!     cargo run --example chat

use std::thread;
use std::time::Duration;

use yoton_channels::{ChannelError, PubChannel, SubChannel, Text};
use yoton_core::Context;

const ADDRESS: &str = "localhost:chat";
const WAIT: Duration = Duration::from_secs(5);
const LINES: [&str; 3] = ["hi guest", "how are you?", "bye"];

/// The guest: connect, print lines until the host goes; returns how many arrived.
fn guest() -> Result<usize, ChannelError> {
    let ctx = Context::new()?;
    let inbox = SubChannel::<Text>::new(&ctx, "chat")?;
    let conn = ctx.connect(ADDRESS, WAIT)?;
    let mut got = 0;
    loop {
        match inbox.recv_timeout(Duration::from_millis(100))? {
            Some(line) => {
                got += 1;
                println!("    guest got: {line}");
            }
            None if !conn.is_connected() => break,
            None => {}
        }
    }
    println!(
        "    guest: host left ({})",
        conn.close_reason().unwrap_or_default()
    );
    Ok(got)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    let host = Context::new()?;
    let chat = PubChannel::<Text>::new(&host, "chat")?;
    let conn = host.bind(ADDRESS)?;

    let guest = thread::spawn(guest);
    conn.wait_connected(WAIT)?;
    println!(
        "host: bound {ADDRESS} (port {}); guest connected",
        conn.local().port
    );
    for line in LINES {
        println!("host says: {line}");
        chat.send(line.to_string())?;
        thread::sleep(Duration::from_millis(100));
    }
    host.close();

    let got = guest.join().map_err(|_| "the guest thread panicked")??;
    println!("chat: {got}/{} lines arrived", LINES.len());
    Ok(())
}
