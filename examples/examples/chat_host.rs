//! The chat host of the overview: it binds `localhost:chat` (the port is hashed
//! from the name "chat", so both ends only need to agree on the name) and publishes
//! on the pub/sub channel "chat". Run a guest in a second terminal, see
//! `chat_guest.rs`; or `cargo run --example chat` for both ends in one process.
//!
//!     cargo run --example chat_host -- --demo   # waits for a guest, sends a few lines, exits
//!     cargo run --example chat_host             # publishes each line typed; Ctrl-D ends
//!
//! A bound context accepts one peer; lines typed before the guest arrives are
//! queued and delivered when it connects.

use std::io::BufRead;
use std::time::Duration;

use yoton_channels::{PubChannel, Text};
use yoton_core::Context;

const ADDRESS: &str = "localhost:chat";
const DEMO_LINES: [&str; 4] = [
    "hello, is anybody there?",
    "this line went through yoton",
    "over TCP, to a port hashed from \"chat\"",
    "bye!",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = std::env::args().any(|a| a == "--demo");
    yoton_tcp::install();

    let ctx = Context::new()?;
    let chat = PubChannel::<Text>::new(&ctx, "chat")?;
    let conn = ctx.bind(ADDRESS)?;
    println!("host: bound {ADDRESS} (port {})", conn.local().port);

    if demo {
        println!("host: waiting for a guest (cargo run --example chat_guest)");
        conn.wait_connected(Duration::from_secs(30))?;
        println!("host: guest {:016x} connected", conn.peer_id());
        for line in DEMO_LINES {
            println!("host> {line}");
            chat.send(line.to_string())?;
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        println!("host: type lines to publish; Ctrl-D to quit");
        for line in std::io::stdin().lock().lines() {
            chat.send(line?)?; // an empty line is not sent
        }
    }

    ctx.close(); // says goodbye: the guest sees "Closed from other end."
    println!("host: closed");
    Ok(())
}
