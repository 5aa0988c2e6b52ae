//! `yoton state`.

use std::time::Duration;

use yoton::{Context, StateChannel};

use crate::error::{CliError, Result};
use crate::join::{Deadline, How, Session};
use crate::types::CliType;

/// How long the closing goodbye may take.
const GOODBYE: Duration = Duration::from_secs(1);

/// Print the state of `slot` once it is known (waiting up to `timeout`).
pub fn get<M: CliType>(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    timeout: Duration,
) -> Result<()> {
    let channel = StateChannel::<M>::new(&ctx, slot)?;
    let deadline = Deadline::after(Some(timeout));
    let session = Session::join(ctx, how, address, Some(timeout))?;
    let state = loop {
        if let Some(v) = channel.recv() {
            break Some(v);
        }
        if deadline.passed() || session.closed() {
            break None;
        }
        std::thread::sleep(deadline.left_max(Duration::from_millis(10)));
    };
    channel.close();
    session.finish(GOODBYE);
    match state {
        Some(v) => {
            println!("{}", M::show(v));
            Ok(())
        }
        None => Err(CliError::Timeout {
            what: format!("the state of `{slot}` was not learned"),
            timeout,
        }),
    }
}

/// Set the state of `slot`, then stay up until `timeout` passes (forever when None)
/// or the connection closes, so that contexts joining meanwhile learn it.
pub fn set<M: CliType>(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    value: &str,
    timeout: Option<Duration>,
) -> Result<()> {
    let value = M::parse(value)?;
    let channel = StateChannel::<M>::new(&ctx, slot)?;
    let deadline = Deadline::after(timeout);
    // `--timeout 0` means "set and leave": connecting still gets the usual time.
    let session = Session::join(ctx, how, address, timeout.filter(|t| !t.is_zero()))?;
    // No need to wait for a peer: the value is queued until the first connection,
    // and resent whenever a context joins the network.
    channel.send(value)?;
    while !deadline.passed() && !session.closed() {
        std::thread::sleep(deadline.left_max(Duration::from_millis(50)));
    }
    channel.close();
    session.finish(GOODBYE);
    Ok(())
}
