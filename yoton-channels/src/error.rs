//! The error type of yoton-channels.

/// What can go wrong with a channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// An error of the context (slot taken, context closed, ...).
    #[error(transparent)]
    Core(#[from] yoton_core::Error),
    /// A message could not be encoded or decoded as the channel's message type.
    #[error("cannot {action} a `{type_name}` message: {reason}")]
    Message {
        /// "encode" or "decode".
        action: &'static str,
        /// The message type name (txt, bin, obj, ...).
        type_name: &'static str,
        /// Why.
        reason: String,
    },
    /// The channel was closed.
    #[error("the {0} channel `{1}` is closed")]
    Closed(&'static str, String),
    /// A remote method failed or does not exist (req/rep).
    #[error("remote error: {0}")]
    Remote(String),
    /// The request was cancelled (by the user or its auto-cancel time-out).
    #[error("request cancelled")]
    Cancelled,
    /// A bounded wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// Result alias of yoton-channels.
pub type Result<T, E = ChannelError> = std::result::Result<T, E>;
