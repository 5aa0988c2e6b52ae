//! The error type of yoton-core.

use std::time::Duration;

/// Everything that can go wrong in yoton-core. Messages name the address, slot or
/// setting concerned and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address could not be parsed.
    #[error("invalid address `{address}`: {part}: {what}")]
    Address {
        /// The address as given.
        address: String,
        /// Which part is wrong (scheme, host, port, ...).
        part: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// No transport is registered for the scheme of an address.
    #[error("no transport registered for `{scheme}://` (address `{address}`){hint}")]
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The address as given.
        address: String,
        /// Extra advice, e.g. which cargo feature provides it.
        hint: String,
    },
    /// Binding or listening failed.
    #[error("could not listen at {address}: {reason}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Connecting failed until the time-out.
    #[error("could not connect to {address} within {timeout:?}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// The time-out that elapsed.
        timeout: Duration,
        /// The last reason.
        reason: String,
    },
    /// Connecting failed for a reason that retrying cannot mend, so `connect` did not
    /// wait for its time-out: a refused certificate, an invalid setting, a server that
    /// speaks another protocol (not Yoton, not TLS, a WebSocket upgrade refused with a
    /// 4xx), a refused Yoton authentication, a connection to the context itself. The
    /// reason says what to change.
    #[error("could not connect to {address}: {reason}")]
    ConnectFailed {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// A slot already has a channel of that direction in this context.
    #[error("slot {slot:#x} (`{name}`) already has a {direction} channel in this context; close it first or use another name")]
    SlotTaken {
        /// The slot hash.
        slot: u64,
        /// The slot name.
        name: String,
        /// "sending" or "receiving".
        direction: &'static str,
    },
    /// The context or connection is closed.
    #[error("{0} is closed")]
    Closed(&'static str),

    /// A package without payload cannot be sent: on the wire it would read as a
    /// heartbeat, or as a goodbye that closes the connection.
    #[error("a package for slot {slot:#x} has an empty payload; Yoton cannot carry it (an empty package is a heartbeat or goodbye signal on the wire)")]
    EmptyPayload {
        /// The package's slot.
        slot: u64,
    },
    /// A bounded wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A blocking method was called on a thread of a current-thread tokio runtime.
    #[error("blocking call `{0}` made inside a current-thread tokio runtime would deadlock; call its async version (`{0}_async`) or use a multi-thread runtime")]
    BlockingInRuntime(&'static str),
    /// The context could not start its own runtime.
    #[error("could not start the tokio runtime of the context: {0}")]
    Runtime(std::io::Error),
}

/// Result alias of yoton-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
