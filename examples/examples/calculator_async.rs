//! Request/reply with the async API: the calculator of `calculator.rs` with async
//! handlers (`handle_async`) run as a task on the tokio runtime (`RepMode::Task`),
//! and a requester that awaits its replies (a `Reply` is a future), several
//! requests in flight at once from spawned tasks.
//!
//!     cargo run --example calculator_async

use std::time::{Duration, Instant};

use yoton_channels::{ChannelError, RepChannel, RepMode, ReqChannel};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);

async fn add((x, y): (f64, f64)) -> Result<f64, String> {
    Ok(x + y)
}
async fn mul((x, y): (f64, f64)) -> Result<f64, String> {
    Ok(x * y)
}
async fn div((x, y): (f64, f64)) -> Result<f64, String> {
    if y == 0.0 {
        return Err("ZeroDivisionError: division by zero".into());
    }
    Ok(x / y)
}
/// A slow method: it awaits a timer, so the runtime stays free meanwhile.
async fn slow_square(x: i64) -> Result<i64, String> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(x * x)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    // Contexts made inside a runtime run on it.
    let (server, client) = (Context::new()?, Context::new()?);

    let calc = RepChannel::new(&server, "calc")?;
    calc.handle_async("add", add)
        .handle_async("mul", mul)
        .handle_async("div", div)
        .handle_async("slow_square", slow_square)
        .set_mode(RepMode::Task);
    let host = server.bind_async("localhost:0").await?;

    let req = ReqChannel::new(&client, "calc")?;
    let address = format!("localhost:{}", host.local().port);
    client.connect_async(&address, WAIT).await?;

    // Awaiting a Reply gives the result as a `Value` (or the remote error).
    let sum = req.call("add", (2, 3))?.await?;
    println!("add(2, 3) = {sum:?}");
    let product = req.call("mul", (6, 7))?.await?;
    println!("mul(6, 7) = {product:?}");
    match req.call("div", (1, 0))?.await {
        Ok(v) => println!("div(1, 0) = {v:?}"),
        Err(e) => println!("div(1, 0) -> {e}"),
    }

    // Five requests at once, each from its own task (a ReqChannel is a cheap clone).
    // One replier handles them one at a time, so they take about 5 x 50 ms.
    let t0 = Instant::now();
    let tasks: Vec<_> = (1..=5)
        .map(|i| {
            let req = req.clone();
            // An unanswered request is cancelled after 10 s (set_default_timeout).
            tokio::spawn(
                async move { Ok::<_, ChannelError>((i, req.call("slow_square", i)?.await?)) },
            )
        })
        .collect();
    for task in tasks {
        let (i, square) = task.await??;
        println!("slow_square({i}) = {square:?}");
    }
    println!(
        "5 concurrent calls in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );

    println!("the service handled {} requests", calc.handled());
    client.close_async().await;
    server.close_async().await;
    Ok(())
}
