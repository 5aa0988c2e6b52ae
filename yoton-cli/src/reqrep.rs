//! `yoton req` and `yoton rep`.

use std::time::Duration;

use yoton::{ChannelError, Context, RepChannel, RepMode, ReqChannel, Value};

use crate::error::{secs, CliError, Result};
use crate::join::{Deadline, How, Session};
use crate::json;

/// How long the closing goodbye may take.
const GOODBYE: Duration = Duration::from_secs(1);

/// A method call given on the command line.
pub struct Call<'a> {
    /// The method name.
    pub method: &'a str,
    /// Positional arguments (JSON, or else strings).
    pub args: &'a [String],
    /// Keyword arguments NAME=VALUE (VALUE as the positional ones).
    pub kwargs: &'a [(String, String)],
}

/// Make `call` on a replier at `slot` and print the reply as JSON.
pub fn request(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    call: Call<'_>,
    timeout: Duration,
) -> Result<()> {
    let Call {
        method,
        args,
        kwargs,
    } = call;
    let args = Value::Tuple(args.iter().map(|a| json::parse_lenient(a)).collect());
    let kwargs = Value::Dict(
        kwargs
            .iter()
            .map(|(k, v)| (Value::Str(k.clone()), json::parse_lenient(v)))
            .collect(),
    );
    let channel = ReqChannel::new(&ctx, slot)?;
    channel.set_default_timeout(timeout);
    let deadline = Deadline::after(Some(timeout));
    let session = Session::join(ctx, how, address, Some(timeout))?;
    let result = session.wait_peer(deadline).and_then(|()| {
        let reply = channel.call_kw(method, args, kwargs)?;
        match reply.result(deadline.left_max(timeout)) {
            Ok(v) => {
                println!("{}", json::to_line(&v));
                Ok(())
            }
            Err(ChannelError::Remote(e)) => Err(CliError::Remote(e.trim_end().to_owned())),
            Err(ChannelError::Timeout(_) | ChannelError::Cancelled) => Err(CliError::Timeout {
                what: format!("no reply to `{method}` on `{slot}`"),
                timeout,
            }),
            Err(e) => Err(e.into()),
        }
    });
    channel.close();
    session.finish(GOODBYE);
    result
}

/// Serve `echo` (built in) and `ping` at `slot` until `count` requests were handled,
/// the time-out passed or the connection closed.
pub fn reply(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<()> {
    let channel = RepChannel::new(&ctx, slot)?;
    channel.register("ping", |_| Ok(Value::Str("pong".into())));
    channel.set_mode(RepMode::Thread);
    let deadline = Deadline::after(timeout);
    let session = Session::join(ctx, how, address, timeout)?;
    tracing::info!(slot, "serving echo and ping");
    let done = |ch: &RepChannel| count.is_some_and(|n| ch.handled() >= n && !ch.is_busy());
    while !done(&channel) && !deadline.passed() && !session.closed() {
        std::thread::sleep(deadline.left_max(Duration::from_millis(20)));
    }
    let handled = channel.handled();
    tracing::info!(handled, "stopped serving");
    channel.close();
    session.finish(GOODBYE);
    match count {
        Some(n) if handled < n => Err(CliError::Failed(format!(
            "handled {handled} of {n} requests{}",
            timeout.map_or(String::new(), |t| format!(" within {}", secs(t)))
        ))),
        _ => Ok(()),
    }
}
