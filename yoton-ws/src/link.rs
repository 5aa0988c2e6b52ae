//! The two halves of a WebSocket as core's message reader and writer.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
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

/// Payloads above this size go as a fragmented message (see
/// [`WsWriter::send_fragmented`]). Below it, joining header and payload costs less
/// than the receiver's reassembly (W2, 1 MiB messages: 3.1-3.5 GB/s joined, 1.9-2.7
/// in 256 KiB frames).
const FRAGMENT_ABOVE: usize = 4 << 20;
/// Payload bytes per continuation frame.
const FRAGMENT: usize = 1 << 20;

/// The sending half: one binary message per package.
struct WsWriter {
    sink: SplitSink<WebSocketStream<Io>, Message>,
}

impl WsWriter {
    /// A large package as one WebSocket message in several frames (RFC 6455 section
    /// 5.4): the header in the first, then the payload in slices of [`FRAGMENT`]
    /// bytes (no copy until tungstenite frames each one). Sent whole, the header and
    /// payload had to be joined into a copy which tungstenite then copied again into
    /// its write buffer: a sender peaked at 3x the message (W4, 256 MiB). Receivers
    /// (tungstenite or any other) put the frames back together into one message.
    async fn send_fragmented(&mut self, header: Bytes, payload: Bytes) -> Result<(), LinkError> {
        let binary = OpCode::Data(Data::Binary);
        self.sink
            .feed(Message::Frame(Frame::message(header, binary, false)))
            .await
            .map_err(link_error)?;
        let mut at = 0;
        while at < payload.len() {
            let end = payload.len().min(at + FRAGMENT);
            let part = payload.slice(at..end);
            let last = end == payload.len();
            self.sink
                .feed(Message::Frame(Frame::message(
                    part,
                    OpCode::Data(Data::Continue),
                    last,
                )))
                .await
                .map_err(link_error)?;
            at = end;
        }
        Ok(())
    }
}

#[async_trait]
impl MessageWriter for WsWriter {
    async fn send(&mut self, messages: Vec<OutMessage>) -> Result<(), LinkError> {
        for m in messages {
            match m {
                OutMessage::Parts(header, payload) if payload.len() > FRAGMENT_ABOVE => {
                    self.send_fragmented(header, payload).await?
                }
                // One WebSocket message per package (parts joined: a small copy).
                m => self
                    .sink
                    .feed(Message::Binary(m.into_bytes()))
                    .await
                    .map_err(link_error)?,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

    /// A receiver that refuses frames above 2 MiB gets a 9 MiB package (so it came in
    /// frames) intact, and a small package whole, in order.
    #[tokio::test]
    async fn a_large_package_goes_in_frames_and_arrives_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let config = WebSocketConfig::default()
                .max_frame_size(Some(2 << 20))
                .max_message_size(Some(64 << 20));
            let mut ws = tokio_tungstenite::accept_async_with_config(s, Some(config))
                .await
                .unwrap();
            let mut got = Vec::new();
            while got.len() < 2 {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => got.push(b),
                    other => panic!("expected a binary message, got {other:?}"),
                }
            }
            got
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), Io::plain(s))
            .await
            .unwrap();
        let (sink, _stream) = ws.split();
        let mut w = WsWriter { sink };
        let payload: Bytes = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
        w.send(vec![
            OutMessage::Parts(Bytes::from_static(b"header"), payload.clone()),
            OutMessage::Parts(Bytes::from_static(b"h2"), Bytes::from_static(b"small")),
        ])
        .await
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the receiver got both messages in time")
            .unwrap();
        assert_eq!(got[0].len(), 6 + payload.len());
        assert_eq!(&got[0][..6], b"header");
        assert!(got[0][6..] == payload[..], "the payload changed on the way");
        assert_eq!(&got[1][..], b"h2small");
    }
}
