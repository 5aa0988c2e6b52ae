//! `yoton request` and `yoton serve`: the client/server helper of the reference
//! (`yoton.do_request`, `yoton.RequestServer`): one request and one reply per TCP
//! connection, no context involved.

use std::time::Duration;

use crate::error::Result;

#[cfg(feature = "tcp")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use yoton::tcp::clientserver::{do_request, RequestServer};

    use crate::error::{secs, CliError, Result};
    use crate::join::Deadline;

    /// The reply of `yoton serve`, as the reference's default `handle_request`.
    fn echo_reply(request: &str) -> String {
        format!("Requested: {request}")
    }

    pub fn request(address: &str, text: &str, timeout: Duration) -> Result<()> {
        match do_request(address, text, timeout) {
            Ok(Some(reply)) => {
                println!("{reply}");
                Ok(())
            }
            Ok(None) => Err(CliError::Timeout {
                what: format!("no reply from {address}"),
                timeout,
            }),
            Err(e) => Err(CliError::Failed(e.to_string())),
        }
    }

    pub fn serve(address: &str, count: Option<u64>, timeout: Option<Duration>) -> Result<()> {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let server = RequestServer::bind(address, move |request: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            tracing::info!(request, "request");
            echo_reply(request)
        })
        .map_err(|e| CliError::Failed(e.to_string()))?;
        let local = server.local();
        eprintln!("yoton: serving requests at {}:{}", local.host, local.port);
        let handle = server
            .serve_in_thread()
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let deadline = Deadline::after(timeout);
        let done = || count.is_some_and(|n| seen.load(Ordering::SeqCst) >= n);
        while !done() && !deadline.passed() && !handle.is_stopped() {
            std::thread::sleep(deadline.left_max(Duration::from_millis(20)));
        }
        // Stopping lets the connections in progress finish (their replies go out).
        handle.stop();
        let t0 = Instant::now();
        while !handle.is_stopped() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let handled = seen.load(Ordering::SeqCst);
        match count {
            Some(n) if handled < n => Err(CliError::Failed(format!(
                "handled {handled} of {n} requests{}",
                timeout.map_or(String::new(), |t| format!(" within {}", secs(t)))
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(not(feature = "tcp"))]
mod imp {
    use std::time::Duration;

    use crate::error::{CliError, Result};

    fn missing() -> CliError {
        CliError::Usage(
            "request/serve need TCP: this yoton was built without the `tcp` feature".into(),
        )
    }

    pub fn request(_: &str, _: &str, _: Duration) -> Result<()> {
        Err(missing())
    }

    pub fn serve(_: &str, _: Option<u64>, _: Option<Duration>) -> Result<()> {
        Err(missing())
    }
}

/// Send `text` to the request server at `address` and print its reply.
pub fn request(address: &str, text: &str, timeout: Duration) -> Result<()> {
    imp::request(address, text, timeout)
}

/// Answer requests at `address` with "Requested: TEXT" until `count` requests were
/// answered or the time-out passed (forever when both are None).
pub fn serve(address: &str, count: Option<u64>, timeout: Option<Duration>) -> Result<()> {
    imp::serve(address, count, timeout)
}
