//! The message adapter: handshake and framing over a transport that carries whole
//! messages (WebSocket), one package per message.
//!
//! The first message each way is the handshake line of PROTOCOL.md section 3
//! (`YOTON!<id hex>.<pid>\r\n`, as UTF-8 bytes); every later message is one package:
//! the 56-byte header followed by the payload, nothing else. A message whose length
//! does not match its header closes the connection.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::handshake::{self, HandshakeError, Hello};
use crate::link::{Endpoint, Link, LinkError, LinkReader, LinkWriter};
use crate::package::{frame_from_parts, Frame, Header, HEADER_SIZE};

/// The receiving half of a message transport.
#[async_trait]
pub trait MessageReader: Send + 'static {
    /// The next message; `Ok(None)` at the end of the stream. Must be cancel-safe.
    async fn recv(&mut self) -> Result<Option<Bytes>, LinkError>;
}

/// The sending half of a message transport.
#[async_trait]
pub trait MessageWriter: Send + 'static {
    /// Send these messages in order, then flush.
    async fn send(&mut self, messages: Vec<Bytes>) -> Result<(), LinkError>;
    /// Close the sending direction.
    async fn close(&mut self) -> Result<(), LinkError>;
}

/// A message link that a transport produced, before the handshake.
pub struct RawMessages {
    /// Receiving half.
    pub reader: Box<dyn MessageReader>,
    /// Sending half.
    pub writer: Box<dyn MessageWriter>,
    /// This end.
    pub local: Endpoint,
    /// The other end.
    pub peer: Endpoint,
}

async fn recv_line(reader: &mut dyn MessageReader) -> Result<String, HandshakeError> {
    let msg = reader
        .recv()
        .await
        .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))?
        .ok_or(HandshakeError::Eof)?;
    if msg.len() > handshake::MAX_LINE {
        return Err(HandshakeError::TooLong);
    }
    let text = std::str::from_utf8(&msg).map_err(|_| HandshakeError::InvalidUtf8)?;
    Ok(text.trim_end_matches("\r\n").to_owned())
}

async fn send_line(writer: &mut dyn MessageWriter, line: &str) -> Result<(), HandshakeError> {
    writer
        .send(vec![Bytes::copy_from_slice(line.as_bytes())])
        .await
        .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))
}

/// Run the handshake over a message link and turn it into a [`Link`].
pub async fn establish_messages(
    mut raw: RawMessages,
    host: bool,
    me: Hello,
    max_message_size: u64,
) -> Result<Link, HandshakeError> {
    let fut = async {
        if host {
            let line = match recv_line(&mut *raw.reader).await {
                Ok(l) => l,
                Err(e @ (HandshakeError::TooLong | HandshakeError::InvalidUtf8)) => {
                    let _ =
                        send_line(&mut *raw.writer, &format!("{}\r\n", handshake::NOT_YOTON)).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let peer = match Hello::parse(&line) {
                Ok(p) => p,
                Err(e) => {
                    let _ =
                        send_line(&mut *raw.writer, &format!("{}\r\n", handshake::NOT_YOTON)).await;
                    let _ = raw.writer.close().await;
                    return Err(e);
                }
            };
            send_line(&mut *raw.writer, &me.line()).await?;
            if peer.id == me.id {
                return Err(HandshakeError::SelfConnect);
            }
            Ok(peer)
        } else {
            send_line(&mut *raw.writer, &me.line()).await?;
            let line = recv_line(&mut *raw.reader).await?;
            let peer = Hello::parse(&line)?;
            if peer.id == me.id {
                return Err(HandshakeError::SelfConnect);
            }
            Ok(peer)
        }
    };
    let peer = tokio::time::timeout(handshake::HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    Ok(Link {
        reader: Box::new(PackageMessages {
            io: raw.reader,
            max: max_message_size,
        }),
        writer: Box::new(MessagePackages { io: raw.writer }),
        local: raw.local,
        peer: raw.peer,
        peer_id: peer.id,
        peer_pid: peer.pid,
    })
}

/// Decode one message as one frame.
pub fn decode_message(msg: Bytes, max: u64) -> Result<Frame, LinkError> {
    let Some(raw) = msg.get(..HEADER_SIZE) else {
        return Err(LinkError::Other(format!(
            "Lost track of the stream: a message of {} bytes is shorter than a package header",
            msg.len()
        )));
    };
    let mut bytes = [0u8; HEADER_SIZE];
    bytes.copy_from_slice(raw);
    let h = Header::from_bytes(&bytes)
        .map_err(|found| crate::codec::CodecError::LostTrack { found })?;
    if h.length > max {
        return Err(crate::codec::CodecError::TooLarge {
            length: h.length,
            max,
        }
        .into());
    }
    let body = (msg.len() - HEADER_SIZE) as u64;
    if body != h.length {
        return Err(LinkError::Other(format!(
            "Lost track of the stream: the header announces {} payload bytes, the message carries {body}",
            h.length
        )));
    }
    Ok(frame_from_parts(h, msg.slice(HEADER_SIZE..)))
}

struct PackageMessages {
    io: Box<dyn MessageReader>,
    max: u64,
}

#[async_trait]
impl LinkReader for PackageMessages {
    async fn read_frames(&mut self, out: &mut Vec<Frame>) -> Result<(), LinkError> {
        let msg = self.io.recv().await?.ok_or(LinkError::Eof)?;
        out.push(decode_message(msg, self.max)?);
        Ok(())
    }
}

struct MessagePackages {
    io: Box<dyn MessageWriter>,
}

#[async_trait]
impl LinkWriter for MessagePackages {
    async fn write_frames(&mut self, frames: &[Frame]) -> Result<(), LinkError> {
        let msgs = frames
            .iter()
            .map(|f| {
                let payload = f.payload();
                let mut m = BytesMut::with_capacity(HEADER_SIZE + payload.len());
                m.extend_from_slice(&f.header());
                m.extend_from_slice(payload);
                m.freeze()
            })
            .collect();
        self.io.send(msgs).await
    }

    async fn shutdown(&mut self) -> Result<(), LinkError> {
        self.io.close().await
    }
}
