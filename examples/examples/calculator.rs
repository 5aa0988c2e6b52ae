//! Request/reply with the blocking API: a calculator service (a `RepChannel` with
//! add/sub/mul/div, handled by a thread of its own) and a requester that calls it
//! with positional arguments, with keyword arguments (`call_kw`, a struct and a
//! map), calls the built-in `echo`, and gets remote errors back (division by zero,
//! an unknown method). Two contexts over TCP on 127.0.0.1, from a plain `fn main`.
//!
//!     cargo run --example calculator
//!
//! `calculator_async.rs` is the same with tokio and async handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use yoton_channels::{RepChannel, RepMode, ReqChannel, Request, Value};
use yoton_core::Context;

const WAIT: Duration = Duration::from_secs(5);

fn add((x, y): (f64, f64)) -> Result<f64, String> {
    Ok(x + y)
}
fn sub((x, y): (f64, f64)) -> Result<f64, String> {
    Ok(x - y)
}
fn mul((x, y): (f64, f64)) -> Result<f64, String> {
    Ok(x * y)
}
fn div((x, y): (f64, f64)) -> Result<f64, String> {
    if y == 0.0 {
        Err("ZeroDivisionError: division by zero".into())
    } else {
        Ok(x / y)
    }
}

/// `scale(x, factor=1, offset=0)`: keyword arguments need the raw [`Request`].
fn scale(req: Request) -> Result<Value, String> {
    let x: f64 = req.parse()?;
    let kw = |name, default| req.kwarg(name).and_then(Value::as_f64).unwrap_or(default);
    Ok(Value::Float(x * kw("factor", 1.0) + kw("offset", 0.0)))
}

/// Keyword arguments as a struct (a map works as well).
#[derive(Serialize)]
struct Scaling {
    factor: f64,
    offset: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    yoton_tcp::install();
    let (server, client) = (Context::new()?, Context::new()?);

    // The service: typed handlers (serde does the arguments), run in a thread.
    let calc = RepChannel::new(&server, "calc")?;
    calc.handle("add", add)
        .handle("sub", sub)
        .handle("mul", mul)
        .handle("div", div)
        .register("scale", scale)
        .set_mode(RepMode::Thread);
    let host = server.bind("localhost:0")?;

    // The requester: `call` returns a Reply at once; `result*` waits for it.
    let req = ReqChannel::new(&client, "calc")?;
    client.connect(&format!("localhost:{}", host.local().port), WAIT)?;

    for (op, x, y) in [("add", 2, 3), ("sub", 2, 3), ("mul", 6, 7), ("div", 1, 4)] {
        let r: f64 = req.call(op, (x, y))?.result_as(WAIT)?;
        println!("{op}({x}, {y}) = {r}");
    }

    let by_struct = Scaling {
        factor: 10.0,
        offset: 0.5,
    };
    let r: f64 = req.call_kw("scale", 4, by_struct)?.result_as(WAIT)?;
    println!("scale(4, factor=10, offset=0.5) = {r}");
    let by_map = BTreeMap::from([("offset", -1.0)]);
    let r: f64 = req.call_kw("scale", 4, by_map)?.result_as(WAIT)?;
    println!("scale(4, offset=-1) = {r}");

    // Every replier has `echo(arg)`: it returns (arg, the replier's context id).
    let (arg, replier): (String, String) = req.call("echo", "ping")?.result_as(WAIT)?;
    println!(
        "echo(\"ping\") = ({arg:?}, {replier:?}); the server is {:#x}",
        server.id()
    );

    // Errors in the service come back as `ChannelError::Remote`.
    let err = req.call("div", (1, 0))?.exception(WAIT)?;
    println!("div(1, 0) -> remote error: {}", err.unwrap_or_default());
    match req.call("sqrt", 2)?.result(WAIT) {
        Ok(v) => println!("sqrt(2) = {v:?}"),
        Err(e) => println!("sqrt(2) -> {e}"),
    }

    println!("the service handled {} requests", calc.handled());
    client.close();
    server.close();
    Ok(())
}
