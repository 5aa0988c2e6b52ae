//! The two halves of a WebSocket as core's message reader and writer.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use yoton_core::connection::STOP_EOF;
use yoton_core::messages::{MessageReader, MessageWriter, OutMessage, RawMessages};
use yoton_core::{Endpoint, LinkError};

use std::sync::Arc;

use crate::io::{Budget, Io};

/// Reason sent in the close frame after a goodbye.
const CLOSE_TEXT: &str = "Yoton connection closed";

/// Split an upgraded WebSocket into core's message halves.
pub(crate) fn raw_messages(
    ws: WebSocketStream<Io>,
    local: Endpoint,
    peer: Endpoint,
) -> RawMessages {
    let budget = ws.get_ref().budget();
    let (sink, stream) = ws.split();
    RawMessages {
        reader: Box::new(WsReader { stream, budget }),
        writer: Box::new(WsWriter { sink }),
        local,
        peer,
    }
}

/// The receiving half: binary messages are packages, pings are answered (by
/// tungstenite, on the next read or write), pongs are ignored, a close frame or a
/// vanished stream is the end of the stream, and a text message is an error.
struct WsReader {
    stream: SplitStream<WebSocketStream<Io>>,
    /// Lifted once the Yoton handshake is done.
    budget: Arc<Budget>,
}

#[async_trait]
impl MessageReader for WsReader {
    fn handshake_done(&mut self) {
        self.budget.lift();
    }

    async fn recv(&mut self) -> Result<Option<Bytes>, LinkError> {
        loop {
            // `StreamExt::next` is cancel-safe: a partly received message stays in
            // tungstenite's buffer for the next call.
            match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(t))) => {
                    return Err(LinkError::Other(format!(
                        "Protocol error: the peer sent a WebSocket text message ({} bytes); \
                         Yoton over WebSocket carries binary messages only",
                        t.len()
                    )))
                }
                Some(Ok(Message::Close(frame))) => return closed(frame),
                Some(Err(e)) => return read_error(e),
            }
        }
    }
}

/// A close frame: a normal one is the end of the stream; an unusual code with a
/// reason is reported.
fn closed(frame: Option<CloseFrame>) -> Result<Option<Bytes>, LinkError> {
    match frame {
        Some(f)
            if !matches!(f.code, CloseCode::Normal | CloseCode::Away) && !f.reason.is_empty() =>
        {
            Err(LinkError::Other(format!(
                "{STOP_EOF} (WebSocket close code {}: {})",
                u16::from(f.code),
                f.reason.as_str()
            )))
        }
        _ => Ok(None),
    }
}

fn read_error(e: WsError) -> Result<Option<Bytes>, LinkError> {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ok(None),
        WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        other => Err(link_error(other)),
    }
}

/// A tungstenite error as a link error (close reason).
pub(crate) fn link_error(e: WsError) -> LinkError {
    match e {
        WsError::Io(io) => LinkError::Io(io),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            LinkError::Other(format!(
                "Package too large: a WebSocket message of {size} bytes exceeds the limit of \
                 {max_size} bytes (raise max_message_size of the WebSocket transport and of \
                 the context on both ends)"
            ))
        }
        other => LinkError::Other(format!("WebSocket error: {other}")),
    }
}

/// The sending half: one binary message per package.
struct WsWriter {
    sink: SplitSink<WebSocketStream<Io>, Message>,
}

#[async_trait]
impl MessageWriter for WsWriter {
    async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError> {
        for m in messages {
            // One WebSocket message per package: parts are joined (tungstenite takes
            // a message in one piece).
            self.sink
                .feed(Message::Binary(m.into_bytes()))
                .await
                .map_err(link_error)?;
        }
        self.sink.flush().await.map_err(link_error)
    }

    async fn close(&mut self) -> Result<(), LinkError> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: CLOSE_TEXT.into(),
        };
        match self.sink.send(Message::Close(Some(frame))).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Ok(()),
            Err(e) => Err(link_error(e)),
        }
    }
}
