//! The file wrapper (PROTOCOL.md section 6): a [`PubChannel<Text>`] as a writable
//! text file ([`FileWriter`]) and a [`SubChannel<Text>`] as a readable one
//! ([`FileReader`]), so that a process's standard output (or input) can go over the
//! network. A port of the reference's `FileWrapper`.
//!
//! * [`FileWriter`] implements [`std::io::Write`] (so `write!`/`writeln!` work, and it
//!   fits in a `Box<dyn Write>`), plus [`FileWriter::write_str`] and
//!   [`FileWriter::writelines`]. Each write call is sent at once as one message (no
//!   line buffering, as in the reference), split into messages of at most
//!   [`chunk_size`](FileWriter::with_chunk_size) characters when one is set.
//! * [`FileReader`] implements [`std::io::Read`] and [`std::io::BufRead`] (so
//!   `lines()` works) over the text stream made of the received messages, plus
//!   [`FileReader::read_text`], [`FileReader::readline`] and [`FileReader::readlines`]
//!   that take a [`Block`] (`false`, `true` or a [`Duration`]). What it reads can be
//!   echoed to another [`PubChannel`] ([`FileReader::with_echo`]).
//!
//! ```
//! use std::io::{BufRead, Write};
//! use std::time::Duration;
//! use yoton_core::Context;
//! use yoton_channels::file::{FileReader, FileWriter};
//! use yoton_channels::{PubChannel, SubChannel};
//!
//! let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
//! let mut out = FileWriter::new(PubChannel::new(&a, "stdout").unwrap());
//! let mut input = FileReader::new(SubChannel::new(&b, "stdout").unwrap());
//! input.set_read_timeout(Some(Duration::from_secs(5)));
//! a.bind("inproc://file-module-doc").unwrap();
//! b.connect("inproc://file-module-doc", Duration::from_secs(1)).unwrap();
//!
//! writeln!(out, "x = {}", 42).unwrap();
//! writeln!(out, "done").unwrap();
//! let lines: Vec<String> = input.lines().take(2).map(|l| l.unwrap()).collect();
//! assert_eq!(lines, ["x = 42", "done"]);
//! ```

use std::borrow::Cow;
use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

use crate::error::ChannelError;
use crate::message::Text;
use crate::pubsub::{PubChannel, SubChannel};

/// How long [`FileWriter`]'s `flush` waits by default (the reference's
/// `Context.flush` default).
///
/// ```
/// assert_eq!(yoton_channels::file::DEFAULT_FLUSH_TIMEOUT.as_secs(), 5);
/// ```
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// An error of a channel as an [`io::Error`] (the channel error is its source).
fn io_error(e: ChannelError) -> io::Error {
    let kind = match &e {
        ChannelError::Closed(..) | ChannelError::Core(yoton_core::Error::Closed(_)) => {
            io::ErrorKind::BrokenPipe
        }
        ChannelError::Timeout(_) | ChannelError::Core(yoton_core::Error::Timeout(_)) => {
            io::ErrorKind::TimedOut
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

// ---------------------------------------------------------------- blocking

/// How long a read of a [`FileReader`] waits for data, as the reference's `block`
/// argument: `false` (do not wait), `true` (wait as long as it takes, until the
/// channel is closed) or a number of seconds (here a [`Duration`]).
///
/// The read methods take `impl Into<Block>`, so `false`, `true` and a `Duration` can
/// be passed directly.
///
/// ```
/// use std::time::Duration;
/// use yoton_channels::file::Block;
/// assert_eq!(Block::from(false), Block::NonBlocking);
/// assert_eq!(Block::from(true), Block::Forever);
/// assert_eq!(Block::from(Duration::from_secs(1)), Block::Timeout(Duration::from_secs(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Do not wait: use what has arrived already.
    NonBlocking,
    /// Wait until the data is there or the channel is closed.
    Forever,
    /// Wait at most this long.
    Timeout(Duration),
}

impl From<bool> for Block {
    fn from(block: bool) -> Self {
        if block {
            Block::Forever
        } else {
            Block::NonBlocking
        }
    }
}

impl From<Duration> for Block {
    fn from(timeout: Duration) -> Self {
        Block::Timeout(timeout)
    }
}

impl From<Option<Duration>> for Block {
    /// `None` waits forever (as a read timeout of `None` does).
    fn from(timeout: Option<Duration>) -> Self {
        timeout.map_or(Block::Forever, Block::Timeout)
    }
}

/// A [`Block`] made absolute.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Forever,
    Until(Instant),
}

impl Wait {
    fn new(block: Block) -> Self {
        match block {
            Block::NonBlocking => Wait::No,
            Block::Forever => Wait::Forever,
            Block::Timeout(t) => Instant::now()
                .checked_add(t)
                .map_or(Wait::Forever, Wait::Until),
        }
    }
}

// ---------------------------------------------------------------- writer

/// A [`PubChannel<Text>`] as a writable text file (the writing half of the
/// reference's `FileWrapper`).
///
/// * Every write call ([`Write::write`], [`FileWriter::write_str`]) sends its text at
///   once as one message; there is no line buffering (as in the reference). A
///   `writeln!` can thus give several messages, one per formatted piece: the reading
///   side sees one text stream anyway. Wrap the writer in a [`std::io::LineWriter`] or
///   [`std::io::BufWriter`] for fewer, larger messages.
/// * With a [`chunk size`](FileWriter::with_chunk_size) of N > 0, a write of more than
///   N characters (Unicode scalar values, as Python's `len`) is sent as several
///   messages of at most N characters each, as the reference does (Pyzo uses 256 for
///   the standard output of its kernels).
/// * The bytes given to [`Write::write`] must be UTF-8. A multi-byte character split
///   across two write calls is fine: its first bytes are held back until the next
///   write completes it. Invalid UTF-8 is an [`io::Error`] of kind
///   [`InvalidData`](io::ErrorKind::InvalidData) naming the byte offset, and nothing
///   of that write is sent.
/// * Writing an empty string sends nothing.
/// * [`Write::flush`] waits until everything queued on the context's connections is
///   written (the reference's `flush`), at most the
///   [`flush timeout`](FileWriter::with_flush_timeout) (5 s by default): running out is
///   an error of kind [`TimedOut`](io::ErrorKind::TimedOut).
///
/// The reference's echo (and its multiprocessing fallback to the real standard
/// output) belongs to reading: see [`FileReader::with_echo`].
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::file::FileWriter;
/// use yoton_channels::{PubChannel, SubChannel, Text};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let mut out = FileWriter::new(PubChannel::new(&a, "out").unwrap()).with_chunk_size(4);
/// let sub = SubChannel::<Text>::new(&b, "out").unwrap();
/// a.bind("inproc://file-writer-doc").unwrap();
/// b.connect("inproc://file-writer-doc", Duration::from_secs(1)).unwrap();
///
/// out.write_all("héllo!".as_bytes()).unwrap(); // 6 characters: two messages
/// out.flush().unwrap();
/// let wait = Duration::from_secs(2);
/// assert_eq!(sub.recv_timeout(wait).unwrap().as_deref(), Some("héll"));
/// assert_eq!(sub.recv_timeout(wait).unwrap().as_deref(), Some("o!"));
/// ```
pub struct FileWriter {
    channel: PubChannel<Text>,
    chunk_size: usize,
    flush_timeout: Duration,
    isatty: bool,
    /// The first bytes of a character that the next write should complete.
    pending: Vec<u8>,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("channel", &self.channel)
            .field("chunk_size", &self.chunk_size)
            .field("pending_bytes", &self.pending.len())
            .finish()
    }
}

impl FileWriter {
    /// A writer sending over `channel`, without chunking.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap());
    /// assert_eq!(out.chunk_size(), 0);
    /// ```
    pub fn new(channel: PubChannel<Text>) -> Self {
        FileWriter {
            channel,
            chunk_size: 0,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            isatty: false,
            pending: Vec::new(),
        }
    }

    /// Split writes of more than `n` characters into messages of at most `n`
    /// characters (the reference's `chunksize`; 0, the default, never splits).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap()).with_chunk_size(256);
    /// assert_eq!(out.chunk_size(), 256);
    /// ```
    pub fn with_chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = n;
        self
    }

    /// The chunk size (0: writes are never split).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap()).with_chunk_size(8);
    /// assert_eq!(out.chunk_size(), 8);
    /// ```
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// How long [`Write::flush`] waits at most (default [`DEFAULT_FLUSH_TIMEOUT`]).
    ///
    /// ```
    /// use std::io::Write;
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap())
    ///     .with_flush_timeout(Duration::from_millis(100));
    /// out.flush().unwrap(); // no connection: nothing to wait for
    /// ```
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Say whether this file stands for a terminal (the reference's `isatty`
    /// argument; Pyzo sets it for the streams of its kernels). Default false.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap()).with_isatty(true);
    /// assert!(out.isatty());
    /// ```
    pub fn with_isatty(mut self, isatty: bool) -> Self {
        self.isatty = isatty;
        self
    }

    /// Whether this file says it is a terminal (see [`FileWriter::with_isatty`]).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// assert!(!FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap()).isatty());
    /// ```
    pub fn isatty(&self) -> bool {
        self.isatty
    }

    /// The channel written to.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap());
    /// assert_eq!(out.channel().name(), "stdout");
    /// ```
    pub fn channel(&self) -> &PubChannel<Text> {
        &self.channel
    }

    /// Number of bytes held back: the start of a character whose remaining bytes
    /// the next [`Write::write`] should bring (0 to 3).
    ///
    /// ```
    /// use std::io::Write;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap());
    /// let euro = "€".as_bytes(); // 3 bytes
    /// out.write_all(&euro[..2]).unwrap();
    /// assert_eq!(out.pending_bytes(), 2);
    /// out.write_all(&euro[2..]).unwrap();
    /// assert_eq!(out.pending_bytes(), 0);
    /// ```
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Send `text` (in chunks when it is longer than the chunk size). An empty
    /// string sends nothing. It errors (kind
    /// [`InvalidData`](io::ErrorKind::InvalidData)) when an earlier
    /// [`Write::write`] left an incomplete character, which a string cannot
    /// complete: those bytes are dropped and `text` is not sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileWriter;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let mut out = FileWriter::new(PubChannel::new(&a, "log").unwrap());
    /// let sub = SubChannel::<Text>::new(&b, "log").unwrap();
    /// a.bind("inproc://file-write-str-doc").unwrap();
    /// b.connect("inproc://file-write-str-doc", Duration::from_secs(1)).unwrap();
    /// out.write_str("").unwrap(); // nothing is sent
    /// out.write_str("hello\n").unwrap();
    /// let got = sub.recv_timeout(Duration::from_secs(2)).unwrap();
    /// assert_eq!(got.as_deref(), Some("hello\n"));
    /// ```
    pub fn write_str(&mut self, text: &str) -> io::Result<()> {
        if !self.pending.is_empty() {
            let n = self.pending.len();
            self.pending.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid UTF-8: {n} byte(s) of an incomplete character left by an earlier write cannot be completed by a string"),
            ));
        }
        self.send_text(Cow::Borrowed(text))
    }

    /// Send each item as its own message, as the reference's `writelines` does: no
    /// newline is added, and (as in the reference) the chunk size does not apply.
    /// Empty items send nothing. The same incomplete-character error as
    /// [`FileWriter::write_str`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileWriter;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let mut out = FileWriter::new(PubChannel::new(&a, "log").unwrap());
    /// let sub = SubChannel::<Text>::new(&b, "log").unwrap();
    /// a.bind("inproc://file-writelines-doc").unwrap();
    /// b.connect("inproc://file-writelines-doc", Duration::from_secs(1)).unwrap();
    /// out.writelines(["one\n", "two\n"]).unwrap();
    /// let wait = Duration::from_secs(2);
    /// assert_eq!(sub.recv_timeout(wait).unwrap().as_deref(), Some("one\n"));
    /// assert_eq!(sub.recv_timeout(wait).unwrap().as_deref(), Some("two\n"));
    /// ```
    pub fn writelines<I>(&mut self, lines: I) -> io::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.write_str("")?;
        for line in lines {
            self.channel
                .send(line.as_ref().to_owned())
                .map_err(io_error)?;
        }
        Ok(())
    }

    /// Close the channel (the reference's `close`): later writes fail with kind
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe). Errors (kind
    /// [`InvalidData`](io::ErrorKind::InvalidData)) when an incomplete character was
    /// held back; it is dropped.
    ///
    /// ```
    /// use std::io::Write;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileWriter, PubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut out = FileWriter::new(PubChannel::new(&ctx, "stdout").unwrap());
    /// out.close().unwrap();
    /// let err = out.write_all(b"late").unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    /// ```
    pub fn close(&mut self) -> io::Result<()> {
        self.channel.close();
        self.write_str("")
    }

    /// Send one text, split into chunks when needed (an owned text that needs no
    /// chunking is sent as it is, without a copy).
    fn send_text(&self, text: Cow<'_, str>) -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        if self.chunk_size == 0 {
            return self.channel.send(text.into_owned()).map_err(io_error);
        }
        let mut rest = text.as_ref();
        while !rest.is_empty() {
            let cut = rest
                .char_indices()
                .nth(self.chunk_size)
                .map_or(rest.len(), |(i, _)| i);
            let (chunk, tail) = rest.split_at_checked(cut).unwrap_or((rest, ""));
            self.channel.send(chunk.to_owned()).map_err(io_error)?;
            rest = tail;
        }
        Ok(())
    }
}

impl Write for FileWriter {
    /// Send the bytes as one message (or chunks); see [`FileWriter`]. Returns the
    /// whole length: the start of a character split at the end is held back until the
    /// next write.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let held = self.pending.len();
        let mut bytes = Vec::with_capacity(held + buf.len());
        bytes.extend_from_slice(&self.pending);
        bytes.extend_from_slice(buf);
        let (text, tail) = match String::from_utf8(bytes) {
            Ok(text) => (text, Vec::new()),
            Err(e) => {
                let err = e.utf8_error();
                let valid = err.valid_up_to();
                if err.error_len().is_some() {
                    let msg = if valid < held {
                        // The held-back bytes are not continued: they are lost.
                        self.pending.clear();
                        "invalid UTF-8 at byte offset 0 of this write (a character begun by the previous write is not continued)".to_owned()
                    } else {
                        format!(
                            "invalid UTF-8 at byte offset {} of this write",
                            valid - held
                        )
                    };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                // An incomplete character at the end: hold it back.
                let mut bytes = e.into_bytes();
                let tail = bytes.split_off(valid);
                let text = String::from_utf8(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                (text, tail)
            }
        };
        self.send_text(Cow::Owned(text))?;
        self.pending = tail;
        Ok(buf.len())
    }

    /// Wait until everything sent is written to the connections (at most the flush
    /// timeout). Held-back bytes of an incomplete character stay held back.
    fn flush(&mut self) -> io::Result<()> {
        self.channel
            .context()
            .flush(self.flush_timeout)
            .map_err(|e| io_error(e.into()))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            tracing::warn!(
                channel = %self.channel.name(),
                bytes = self.pending.len(),
                "file writer dropped with an incomplete UTF-8 character held back"
            );
        }
    }
}

// ---------------------------------------------------------------- reader

/// What a wait for the next message gave.
enum Fetched {
    /// A message (possibly empty) was appended to the buffer.
    Some,
    /// Nothing arrived in time.
    Nothing,
    /// The channel is closed and drained.
    Eof,
}

/// A [`SubChannel<Text>`] as a readable text file (the reading half of the
/// reference's `FileWrapper`).
///
/// The received messages form one text stream. The reader keeps what it received
/// but did not hand out yet in a buffer, which every read method uses first:
///
/// * [`FileReader::read_text`] is the reference's `read(block)`: the next message, as
///   it was sent (or the buffered text, if any).
/// * [`FileReader::readline`] and [`FileReader::readlines`] return whole lines of
///   the stream, ending with `'\n'`, whatever the message boundaries are; a partial
///   line stays buffered until its end arrives (or the channel is closed).
/// * [`Read`] and [`BufRead`] read the same stream as bytes, so `lines()`,
///   `read_line`, `read_to_string`... work. They wait until data arrives, at most the
///   [`read timeout`](FileReader::set_read_timeout) (none by default): running out is
///   an error of kind [`TimedOut`](io::ErrorKind::TimedOut), while the end of file
///   (`Ok(0)`) is the channel closed (with [`FileReader::close`] or
///   [`SubChannel::close`] on a clone) and drained.
///
/// Everything taken from the channel is also sent to the
/// [`echo`](FileReader::with_echo) channel, if any.
///
/// The end of file is local: the protocol has no end-of-stream message, so a remote
/// writer that closes or goes away is not seen as one (bound the waits with a
/// timeout, or close the reader's channel from another thread). A byte read that
/// stops inside a multi-byte character, followed by a text method, gives the rest of
/// that character as U+FFFD.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::file::FileReader;
/// use yoton_channels::{PubChannel, SubChannel, Text};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let publisher = PubChannel::<Text>::new(&a, "stdin").unwrap();
/// let mut input = FileReader::new(SubChannel::new(&b, "stdin").unwrap());
/// a.bind("inproc://file-reader-doc").unwrap();
/// b.connect("inproc://file-reader-doc", Duration::from_secs(1)).unwrap();
///
/// for m in ["hel", "lo\nwor", "ld\n"] {
///     publisher.send(m.to_string()).unwrap();
/// }
/// let wait = Duration::from_secs(2);
/// assert_eq!(input.readline(wait).unwrap(), "hello\n");
/// assert_eq!(input.readline(wait).unwrap(), "world\n");
/// assert_eq!(input.readline(false).unwrap(), ""); // nothing more
/// ```
pub struct FileReader {
    channel: SubChannel<Text>,
    echo: Option<PubChannel<Text>>,
    read_timeout: Option<Duration>,
    isatty: bool,
    /// Received text not handed out yet: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// No `'\n'` in `buf[pos..scan]`.
    scan: usize,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("channel", &self.channel)
            .field("echo", &self.echo)
            .field("read_timeout", &self.read_timeout)
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl FileReader {
    /// A reader of `channel`, without echo or read timeout.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// assert_eq!(input.read_timeout(), None);
    /// ```
    pub fn new(channel: SubChannel<Text>) -> Self {
        FileReader {
            channel,
            echo: None,
            read_timeout: None,
            isatty: false,
            buf: Vec::new(),
            pos: 0,
            scan: 0,
        }
    }

    /// Send every message taken from the channel also to `echo` (the reference's
    /// `echo`: Pyzo's kernels echo what they read from their standard input to the
    /// shell, so the user sees it). The echo happens when the message is taken from
    /// the channel, as one message with the same text; failing to echo is logged,
    /// not an error of the read.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileReader;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let stdin = PubChannel::<Text>::new(&a, "stdin").unwrap();
    /// let echoed = SubChannel::<Text>::new(&a, "echo").unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&b, "stdin").unwrap())
    ///     .with_echo(PubChannel::new(&b, "echo").unwrap());
    /// a.bind("inproc://file-echo-doc").unwrap();
    /// b.connect("inproc://file-echo-doc", Duration::from_secs(1)).unwrap();
    ///
    /// stdin.send("print(1)\n".to_string()).unwrap();
    /// let wait = Duration::from_secs(2);
    /// assert_eq!(input.readline(wait).unwrap(), "print(1)\n");
    /// assert_eq!(echoed.recv_timeout(wait).unwrap().as_deref(), Some("print(1)\n"));
    /// ```
    pub fn with_echo(mut self, echo: PubChannel<Text>) -> Self {
        self.echo = Some(echo);
        self
    }

    /// Say whether this file stands for a terminal (the reference's `isatty`
    /// argument). Default false.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap()).with_isatty(true);
    /// assert!(input.isatty());
    /// ```
    pub fn with_isatty(mut self, isatty: bool) -> Self {
        self.isatty = isatty;
        self
    }

    /// Whether this file says it is a terminal (see [`FileReader::with_isatty`]).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// assert!(!FileReader::new(SubChannel::new(&ctx, "stdin").unwrap()).isatty());
    /// ```
    pub fn isatty(&self) -> bool {
        self.isatty
    }

    /// Bound the waits of [`Read`] and [`BufRead`]: `None` (the default) waits until
    /// data arrives or the channel is closed; `Some(t)` makes a read that got nothing
    /// within `t` fail with kind [`TimedOut`](io::ErrorKind::TimedOut) (not an end of
    /// file; reading again later is fine). The text methods take their own [`Block`].
    ///
    /// ```
    /// use std::io::Read;
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// input.set_read_timeout(Some(Duration::from_millis(50)));
    /// let err = input.read(&mut [0; 16]).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// ```
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// The read timeout of [`Read`] and [`BufRead`] (see
    /// [`FileReader::set_read_timeout`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// input.set_read_timeout(Some(Duration::from_secs(3)));
    /// assert_eq!(input.read_timeout(), Some(Duration::from_secs(3)));
    /// ```
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The channel read from (to set its queue limit or sync mode, for instance).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// input.channel().set_sync_mode(true);
    /// assert!(input.channel().sync_mode());
    /// ```
    pub fn channel(&self) -> &SubChannel<Text> {
        &self.channel
    }

    /// Number of bytes received but not read yet (not counting the messages still
    /// queued in the channel).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// assert_eq!(input.buffered(), 0);
    /// ```
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Close the channel (the reference's `close`). What was received can still be
    /// read; then the reader is at its end of file.
    ///
    /// ```
    /// use std::io::Read;
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// input.close();
    /// assert!(input.is_closed() && input.is_eof());
    /// assert_eq!(input.read(&mut [0; 8]).unwrap(), 0);
    /// ```
    pub fn close(&self) {
        self.channel.close();
    }

    /// Whether the channel was closed (the reference's `closed`).
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// assert!(!input.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// Whether everything was read and nothing more can come: the channel is closed,
    /// drained, and the buffer is empty. The text methods return `""` both when nothing
    /// arrived in time and at the end of file; this tells them apart.
    ///
    /// ```
    /// use yoton_core::Context;
    /// use yoton_channels::{file::FileReader, SubChannel};
    /// let ctx = Context::new().unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&ctx, "stdin").unwrap());
    /// assert_eq!(input.readline(false).unwrap(), "");
    /// assert!(!input.is_eof());
    /// input.close();
    /// assert_eq!(input.readline(true).unwrap(), "");
    /// assert!(input.is_eof());
    /// ```
    pub fn is_eof(&self) -> bool {
        self.buffered() == 0 && self.channel.is_closed() && self.channel.pending() == 0
    }

    /// The reference's `read(block)`: the text of the next message, as it was sent,
    /// waiting as `block` says; `""` when nothing arrived in time or at the end of
    /// file. When the buffer holds text (left by a partial read of another method),
    /// that text is returned at once instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileReader;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let publisher = PubChannel::<Text>::new(&a, "stdin").unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&b, "stdin").unwrap());
    /// a.bind("inproc://file-read-text-doc").unwrap();
    /// b.connect("inproc://file-read-text-doc", Duration::from_secs(1)).unwrap();
    ///
    /// assert_eq!(input.read_text(false).unwrap(), "");
    /// publisher.send("no newline".to_string()).unwrap();
    /// publisher.send("second".to_string()).unwrap();
    /// assert_eq!(input.read_text(Duration::from_secs(2)).unwrap(), "no newline");
    /// assert_eq!(input.read_text(true).unwrap(), "second");
    /// ```
    pub fn read_text(&mut self, block: impl Into<Block>) -> io::Result<String> {
        if self.buffered() == 0 {
            self.fetch(Wait::new(block.into()))?;
        }
        Ok(self.take_rest())
    }

    /// The next line of the text stream, with its `'\n'`. Lines are found in the
    /// received text whatever the message boundaries are. With `block`:
    ///
    /// * `true`: waits until a whole line has arrived;
    /// * `false`: returns a whole line if one has arrived, else `""`;
    /// * a [`Duration`]: waits at most that long for a whole line, else `""`.
    ///
    /// A partial line is never returned while more can come: it stays buffered for
    /// the next call. Once the channel is closed and drained, the last, unterminated
    /// line is returned as it is, and then `""` (see [`FileReader::is_eof`]).
    ///
    /// The reference's `readline` always blocks and takes one message as one line,
    /// adding a `'\n'` when it lacks one; for senders that send whole lines per
    /// message (as Pyzo's shell does) both give the same lines.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileReader;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let publisher = PubChannel::<Text>::new(&a, "stdin").unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&b, "stdin").unwrap());
    /// a.bind("inproc://file-readline-doc").unwrap();
    /// b.connect("inproc://file-readline-doc", Duration::from_secs(1)).unwrap();
    ///
    /// publisher.send("a\nb".to_string()).unwrap();
    /// let wait = Duration::from_secs(2);
    /// assert_eq!(input.readline(wait).unwrap(), "a\n");
    /// assert_eq!(input.readline(Duration::from_millis(50)).unwrap(), ""); // "b" is partial
    /// publisher.send("c\n".to_string()).unwrap();
    /// assert_eq!(input.readline(wait).unwrap(), "bc\n");
    /// ```
    pub fn readline(&mut self, block: impl Into<Block>) -> io::Result<String> {
        let wait = Wait::new(block.into());
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            match self.fetch(wait)? {
                Fetched::Some => {}
                Fetched::Nothing => return Ok(String::new()),
                Fetched::Eof => return Ok(self.take_rest()),
            }
        }
    }

    /// The whole lines available: waits as [`FileReader::readline`] does for the
    /// first one, then adds every further whole line that has arrived already. Empty
    /// when no whole line came in time. A trailing partial line stays buffered, except
    /// at the end of file, where it is the last item. (The reference has no
    /// `readlines`: it reads until the end of file on ordinary files, which a channel
    /// reaches only when closed.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_core::Context;
    /// use yoton_channels::file::FileReader;
    /// use yoton_channels::{PubChannel, SubChannel, Text};
    ///
    /// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
    /// let publisher = PubChannel::<Text>::new(&a, "stdin").unwrap();
    /// let mut input = FileReader::new(SubChannel::new(&b, "stdin").unwrap());
    /// a.bind("inproc://file-readlines-doc").unwrap();
    /// b.connect("inproc://file-readlines-doc", Duration::from_secs(1)).unwrap();
    ///
    /// publisher.send("one\ntwo\nthr".to_string()).unwrap();
    /// assert_eq!(input.readlines(Duration::from_secs(2)).unwrap(), ["one\n", "two\n"]);
    /// input.close();
    /// assert_eq!(input.readlines(true).unwrap(), ["thr"]);
    /// assert!(input.readlines(true).unwrap().is_empty());
    /// ```
    pub fn readlines(&mut self, block: impl Into<Block>) -> io::Result<Vec<String>> {
        let first = self.readline(block)?;
        if first.is_empty() {
            return Ok(Vec::new());
        }
        let mut lines = vec![first];
        // Everything that has arrived already.
        let mut eof = false;
        loop {
            match self.fetch(Wait::No)? {
                Fetched::Some => {}
                Fetched::Nothing => break,
                Fetched::Eof => {
                    eof = true;
                    break;
                }
            }
        }
        while let Some(line) = self.take_line() {
            lines.push(line);
        }
        if eof {
            let rest = self.take_rest();
            if !rest.is_empty() {
                lines.push(rest);
            }
        }
        Ok(lines)
    }

    /// Take the next message from the channel into the buffer (and echo it).
    fn fetch(&mut self, wait: Wait) -> io::Result<Fetched> {
        let got = match wait {
            Wait::No => self.channel.try_recv(),
            Wait::Forever => match self.channel.recv() {
                Ok(m) => Some(m),
                Err(ChannelError::Closed(..)) => None,
                Err(e) => return Err(io_error(e)),
            },
            Wait::Until(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                self.channel.recv_timeout(left).map_err(io_error)?
            }
        };
        let Some(message) = got else {
            return Ok(if self.channel.is_closed() && self.channel.pending() == 0 {
                Fetched::Eof
            } else {
                Fetched::Nothing
            });
        };
        if let Some(echo) = &self.echo {
            if !message.is_empty() {
                if let Err(e) = echo.send(message.clone()) {
                    tracing::warn!(channel = %echo.name(), error = %e, "could not echo what was read");
                }
            }
        }
        if self.pos >= self.buf.len() {
            self.buf = message.into_bytes();
            self.pos = 0;
            self.scan = 0;
        } else {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.scan = self.scan.saturating_sub(self.pos);
                self.pos = 0;
            }
            self.buf.extend_from_slice(message.as_bytes());
        }
        Ok(Fetched::Some)
    }

    /// Hand out `buf[pos..end]` as text (a read of raw bytes may have stopped inside
    /// a character: its remaining bytes become U+FFFD).
    fn take_until(&mut self, end: usize) -> String {
        let text = self
            .buf
            .get(self.pos..end)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        self.pos = end.max(self.pos);
        self.scan = self.scan.max(self.pos);
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.scan = 0;
        }
        text
    }

    /// The next whole line of the buffer, if it has one.
    fn take_line(&mut self) -> Option<String> {
        let from = self.scan.max(self.pos);
        let found = self
            .buf
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'));
        match found {
            Some(i) => Some(self.take_until(from + i + 1)),
            None => {
                self.scan = self.buf.len();
                None
            }
        }
    }

    /// All of the buffer.
    fn take_rest(&mut self) -> String {
        self.take_until(self.buf.len())
    }
}

impl Read for FileReader {
    /// Read received bytes; waits for a message when none is buffered (see
    /// [`FileReader::set_read_timeout`]). `Ok(0)` is the end of file: the channel
    /// is closed and drained.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut available = self.fill_buf()?;
        let n = available.read(out)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for FileReader {
    /// The buffered bytes; when there are none, waits for the next message (see
    /// [`Read::read`] for [`FileReader`]). Empty at the end of file.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let wait = Wait::new(self.read_timeout.into());
        while self.buffered() == 0 {
            match self.fetch(wait)? {
                Fetched::Some => {}
                Fetched::Eof => break,
                Fetched::Nothing => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "nothing to read from `{}` within {:?}",
                            self.channel.name(),
                            self.read_timeout.unwrap_or_default()
                        ),
                    ))
                }
            }
        }
        Ok(self.buf.get(self.pos..).unwrap_or_default())
    }

    fn consume(&mut self, amt: usize) {
        self.pos = self.pos.saturating_add(amt).min(self.buf.len());
        self.scan = self.scan.max(self.pos);
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.scan = 0;
        }
    }
}
