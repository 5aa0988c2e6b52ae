//! How a command joins the network: `--connect` (the default), `--bind` or
//! `--listen`, and the waits that go with it.

use std::time::{Duration, Instant};

use yoton::{Connection, ConnectionEvent, Context, ContextEvent, Listener};

use crate::error::{CliError, Result};

/// How to join the network at ADDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Connect to a context bound (or listening) at ADDR, retrying until the
    /// time-out.
    Connect,
    /// Bind at ADDR and wait for exactly one peer.
    Bind,
    /// Listen at ADDR and accept any number of peers.
    Listen,
}

/// A point in time by which something must have happened (or never).
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now; None: never.
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
    }

    /// Time left (None: unbounded).
    pub fn left(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Time left, at most `cap`.
    pub fn left_max(&self, cap: Duration) -> Duration {
        self.left().map_or(cap, |l| l.min(cap))
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }
}

/// A context joined to the network at one address.
pub struct Session {
    /// The context.
    pub ctx: Context,
    how: How,
    /// The connection (`--connect`, `--bind`).
    conn: Option<Connection>,
    /// The listener (`--listen`).
    listener: Option<Listener>,
}

/// How long a `--connect` retries when no time-out is given.
const DEFAULT_CONNECT: Duration = Duration::from_secs(10);

impl Session {
    /// Join at `address`. `--connect` retries until `timeout` (10 s when unbounded);
    /// `--bind` and `--listen` return at once (see [`Session::wait_peer`]).
    pub fn join(ctx: Context, how: How, address: &str, timeout: Option<Duration>) -> Result<Self> {
        log_connection_events(&ctx);
        let (conn, listener) = match how {
            How::Connect => {
                let conn = ctx.connect(address, timeout.unwrap_or(DEFAULT_CONNECT))?;
                tracing::info!(address, peer = %format!("{:016x}", conn.peer_id()), "connected");
                (Some(conn), None)
            }
            How::Bind => {
                let conn = ctx.bind(address)?;
                announce("bound", address, conn.local().port);
                (Some(conn), None)
            }
            How::Listen => {
                let listener = ctx.listen(address)?;
                announce("listening", address, listener.local().port);
                (None, Some(listener))
            }
        };
        Ok(Session {
            ctx,
            how,
            conn,
            listener,
        })
    }

    /// Wait until a peer is there: at once for `--connect`; the one peer for
    /// `--bind`; the first peer for `--listen`.
    pub fn wait_peer(&self, deadline: Deadline) -> Result<()> {
        let fail = |timeout| CliError::Timeout {
            what: "no peer connected".into(),
            timeout,
        };
        // Unbounded waits go in slices (the APIs take a duration).
        let slice = Duration::from_secs(3600);
        loop {
            let left = deadline.left_max(slice);
            match (&self.conn, &self.listener) {
                (Some(conn), _) => match conn.wait_connected(left) {
                    Ok(()) => return Ok(()),
                    Err(yoton::Error::Timeout(t)) if deadline.passed() => return Err(fail(t)),
                    Err(yoton::Error::Timeout(_)) => continue,
                    Err(e) => return Err(e.into()),
                },
                (None, Some(listener)) => {
                    if self.ctx.connections().iter().any(|c| c.is_connected()) {
                        return Ok(());
                    }
                    let got = self
                        .ctx
                        .block_on("accept", listener.accept_async(left))
                        .map_err(CliError::from)?;
                    match got {
                        Ok(conn) => {
                            tracing::info!(peer = %format!("{:016x}", conn.peer_id()), "accepted");
                            return Ok(());
                        }
                        Err(yoton::Error::Timeout(t)) if deadline.passed() => return Err(fail(t)),
                        Err(yoton::Error::Timeout(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                (None, None) => return Ok(()),
            }
        }
    }

    /// Whether the network is gone for this command: the one connection of
    /// `--connect` / `--bind` closed (a listener never is).
    pub fn closed(&self) -> bool {
        match self.how {
            How::Listen => false,
            _ => self.conn.as_ref().is_some_and(|c| !c.is_alive()),
        }
    }

    /// Write out what is queued (bounded) and close the context (saying goodbye).
    /// Returns how many packages send queues discarded (a peer that did not read fast
    /// enough); when any were, says so on standard error, per connection.
    pub fn finish(self, flush: Duration) -> u64 {
        if let Err(e) = self.ctx.flush(flush) {
            tracing::warn!(error = %e, "flush did not complete");
        }
        let discarded = self.ctx.discarded();
        if discarded > 0 {
            for c in self.ctx.connections_all() {
                if c.discarded() > 0 {
                    eprintln!(
                        "yoton: {} packages discarded for {} (its send queue was full: the \
                         peer did not read fast enough)",
                        c.discarded(),
                        c.peer()
                    );
                }
            }
        }
        drop(self.listener);
        self.ctx.close();
        discarded
    }
}

/// Log what happens to every connection of `ctx`: time-outs are warnings (always
/// shown), the rest is shown with `-v`.
fn log_connection_events(ctx: &Context) {
    ctx.on_event(|e| {
        let ContextEvent::NewConnection(conn) = e else {
            return;
        };
        tracing::info!(peer = %conn.peer(), name = %conn.name(), "connection up");
        conn.on_event(|c, e| match e {
            ConnectionEvent::TimedOut(true) => tracing::warn!(
                peer = %c.peer(),
                "connection timed out: nothing received for {:?}",
                c.timeout()
            ),
            ConnectionEvent::TimedOut(false) => {
                tracing::warn!(peer = %c.peer(), "connection back: data flows again")
            }
            ConnectionEvent::Closed(reason) => {
                tracing::info!(peer = %c.peer(), reason = %reason, "connection closed")
            }
            ConnectionEvent::Connected => {}
        });
    });
}

/// Tell the user where we are bound (the real port when port 0 was asked for).
fn announce(what: &str, address: &str, port: u16) {
    let shown = match yoton::Address::parse(address) {
        Ok(a) if a.scheme != "inproc" => a.with_port(port).to_string(),
        _ => address.to_owned(),
    };
    eprintln!("yoton: {what} at {shown}");
}
