//! The error type of the `yoton` command and its exit codes.

use std::time::Duration;

/// Exit code: something did not happen (too few messages, remote error, no reply,
/// unknown state) or could not be done (bad address, cannot connect, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is wrong (also what clap uses), or a command that is
/// not implemented yet.
pub const EXIT_USAGE: u8 = 2;

/// What can go wrong in a `yoton` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An error of a context or connection (address, bind, connect, closed, ...).
    #[error(transparent)]
    Core(#[from] yoton::Error),
    /// An error of a channel (slot taken, message does not encode, ...).
    #[error(transparent)]
    Channel(#[from] yoton::ChannelError),
    /// A MESSAGE, ARG or VALUE given on the command line (or on standard input) is
    /// not valid for the message type.
    #[error("{0}")]
    Input(String),
    /// Reading standard input or writing standard output failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A bounded wait ran out.
    #[error("{what} within {}", secs(*.timeout))]
    Timeout {
        /// What did not happen, e.g. "no peer connected".
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// The remote method failed or does not exist (`req`).
    #[error("remote error: {0}")]
    Remote(String),
    /// Something did not happen, with a message already worded for the user.
    #[error("{0}")]
    Failed(String),
    /// Usage error detected after parsing (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// Seconds for messages: `2s`, `0.25s`.
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Result alias of the CLI.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
