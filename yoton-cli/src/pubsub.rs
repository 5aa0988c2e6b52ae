//! `yoton pub` and `yoton sub`.

use std::io::{BufRead, Write};
use std::time::Duration;

use yoton::{Context, PubChannel, SubChannel};

use crate::error::{secs, CliError, Result};
use crate::join::{Deadline, How, Session};
use crate::types::CliType;

/// How long the closing goodbye may take when there is nothing else to flush.
const GOODBYE: Duration = Duration::from_secs(1);

/// Publish `messages` (or the lines of standard input when there are none), flush,
/// say goodbye.
pub fn publish<M: CliType>(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    messages: &[String],
    timeout: Duration,
) -> Result<()> {
    // Bad MESSAGEs fail before anything is sent.
    let parsed = messages
        .iter()
        .map(|m| M::parse(m))
        .collect::<Result<Vec<_>>>()?;
    let channel = PubChannel::<M>::new(&ctx, slot)?;
    let deadline = Deadline::after(Some(timeout));
    let session = Session::join(ctx, how, address, Some(timeout))?;
    session.wait_peer(deadline)?;
    let mut sent = 0u64;
    let result = if messages.is_empty() {
        publish_lines::<M>(&channel, &mut sent)
    } else {
        parsed.into_iter().try_for_each(|m| {
            channel.send(m)?;
            sent += 1;
            Ok(())
        })
    };
    tracing::info!(sent, slot, "published");
    let discarded = session.finish(timeout);
    result?;
    if discarded > 0 {
        return Err(CliError::Failed(format!(
            "{discarded} of {sent} messages were discarded on the way out"
        )));
    }
    Ok(())
}

/// Publish each non-empty line of standard input (a trailing `\r` is dropped), as it
/// comes.
fn publish_lines<M: CliType>(channel: &PubChannel<M>, sent: &mut u64) -> Result<()> {
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            continue; // an empty message is never sent
        }
        let message =
            M::parse(line).map_err(|e| CliError::Input(format!("line {}: {e}", n + 1)))?;
        channel.send(message)?;
        *sent += 1;
    }
    Ok(())
}

/// Print each message on its own line until `count` arrived, the time-out passed
/// or the connection closed.
pub fn subscribe<M: CliType>(
    ctx: Context,
    how: How,
    address: &str,
    slot: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    sync: bool,
) -> Result<()> {
    let channel = SubChannel::<M>::new(&ctx, slot)?;
    // Printing is slower than a publisher can send: without sync mode the queue
    // would overflow and drop messages.
    channel.set_sync_mode(sync);
    if sync {
        // Sync mode stops a publisher only after a round trip of its `full` message;
        // a burst already in flight (socket buffers hold thousands of small messages)
        // must still fit: keep room for it.
        channel.set_queue_limit(SYNC_QUEUE_LIMIT, yoton::DiscardMode::Old);
    }
    let deadline = Deadline::after(timeout);
    let session = Session::join(ctx, how, address, timeout)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut got = 0u64;
    let mut stopped = None;
    while count.is_none_or(|n| got < n) && !deadline.passed() {
        // Looked at before receiving: once closed, nothing new can arrive, so an
        // empty receive afterwards means everything was printed.
        let closed = session.closed();
        match channel.recv_timeout(deadline.left_max(Duration::from_millis(100)))? {
            Some(m) => {
                let line = M::show(m);
                // Flushed whenever nothing more is waiting (line by line when slow).
                let written = writeln!(out, "{line}").and_then(|()| {
                    if channel.pending() == 0 {
                        out.flush()
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = written {
                    // The reader went away (e.g. `| head -1`): stop quietly.
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        stopped = Some(CliError::Io(e));
                    }
                    break;
                }
                got += 1;
            }
            None if closed => {
                tracing::info!("the connection closed");
                break;
            }
            None => {}
        }
    }
    let _ = out.flush();
    let dropped = channel.discarded();
    if dropped > 0 {
        eprintln!(
            "yoton: {dropped} messages discarded because the channel's queue was full \
             (sync mode, on unless --no-sync, slows the publisher down instead)"
        );
    }
    session.finish(GOODBYE);
    if let Some(e) = stopped {
        return Err(e);
    }
    match count {
        Some(n) if got < n => Err(CliError::Failed(format!(
            "received {got} of {n} messages{}",
            timeout.map_or(String::new(), |t| format!(" within {}", secs(t)))
        ))),
        _ => Ok(()),
    }
}

/// Queue limit of `yoton sub` in sync mode (messages).
const SYNC_QUEUE_LIMIT: usize = 1_000_000;
