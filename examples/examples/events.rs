//! The Yoton event system, as in the reference (`yoton.start_event_loop()`): a
//! subscriber's `received()` signal is bound to a handler that drains the
//! channel, a periodic `Timer` publishes ticks, `call_later` sends a one-off
//! greeting and arms a safety stop, and `start_event_loop()` runs all the handlers
//! in the main thread until a handler calls `stop_event_loop()` after N messages.
//!
//!     cargo run --example events

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use yoton_channels::{PubChannel, SubChannel, Text};
use yoton_core::events::{call_later, start_event_loop, stop_event_loop, Timer};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);
/// Stop after this many messages.
const N: usize = 6;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    let (a, b) = (Context::new()?, Context::new()?);
    let news = PubChannel::<Text>::new(&a, "ticks")?;
    let inbox = SubChannel::<Text>::new(&b, "ticks")?;
    let host = a.bind("localhost:0")?;
    b.connect(&format!("localhost:{}", host.local().port), WAIT)?;
    host.wait_connected(WAIT)?;
    let t0 = Instant::now();

    // On arrival, drain the channel (one signal may stand for several messages).
    let received = Arc::new(AtomicUsize::new(0));
    let (sub, count) = (inbox.clone(), received.clone());
    inbox.received().bind(move |()| {
        for message in sub.iter() {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            println!(
                "{:>4} ms  received #{n}: {message}",
                t0.elapsed().as_millis()
            );
            if n == N {
                stop_event_loop();
            }
        }
    });

    // A timer that publishes every 100 ms.
    let timer = Timer::new(Duration::from_millis(100), false);
    let (publisher, ticks) = (news.clone(), AtomicUsize::new(0));
    timer.timeout().bind(move |()| {
        let i = ticks.fetch_add(1, Ordering::SeqCst) + 1;
        if let Err(e) = publisher.send(format!("tick {i}")) {
            eprintln!("could not publish: {e}");
        }
    });
    timer.start();

    // A delayed call: a greeting after 50 ms, before the first tick.
    let publisher = news.clone();
    call_later(
        move || {
            if let Err(e) = publisher.send("hello from call_later".into()) {
                eprintln!("could not publish: {e}");
            }
        },
        0.05,
    );
    // A safety net: stop after 5 s whatever happens.
    call_later(
        || {
            eprintln!("safety stop: not everything arrived");
            stop_event_loop();
        },
        5.0,
    );

    start_event_loop(); // runs the handlers here until stop_event_loop()
    timer.stop();
    println!(
        "event loop stopped after {} messages in {} ms",
        received.load(Ordering::SeqCst),
        t0.elapsed().as_millis()
    );
    a.close();
    b.close();
    Ok(())
}
