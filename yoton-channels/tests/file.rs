//! The file wrapper over real TCP.

#[path = "common.rs"]
mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::*;
use yoton_channels::file::{Block, FileReader, FileWriter};
use yoton_channels::{PubChannel, SubChannel, Text};
use yoton_core::Context;

const SHORT: Duration = Duration::from_millis(100);

/// A writer at `a` and a reader at `b` on slot `name`, joined over TCP.
fn pair(name: &str) -> (Context, Context, FileWriter, FileReader) {
    let (a, b) = (ctx(), ctx());
    let writer = FileWriter::new(PubChannel::new(&a, name).unwrap());
    let mut reader = FileReader::new(SubChannel::new(&b, name).unwrap());
    reader.set_read_timeout(Some(WAIT));
    join(&a, &b);
    (a, b, writer, reader)
}

/// A publisher at `a` and a reader at `b`, to send exact messages.
fn publisher_and_reader(name: &str) -> (Context, Context, PubChannel<Text>, FileReader) {
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::new(&a, name).unwrap();
    let mut reader = FileReader::new(SubChannel::new(&b, name).unwrap());
    reader.set_read_timeout(Some(WAIT));
    join(&a, &b);
    (a, b, publisher, reader)
}

/// About `size` bytes of text: many lines of ASCII mixed with 2-, 3- and 4-byte
/// characters.
fn mixed_text(size: usize) -> String {
    let words = [
        "hello",
        "wörld",
        "€uro",
        "日本語",
        "emoji😀",
        "plain",
        "naïve",
        "𝄞clef",
        "x",
        "",
    ];
    let mut s = String::with_capacity(size + 64);
    let mut i = 0usize;
    while s.len() < size {
        s.push_str(words[i % words.len()]);
        s.push(if i % 7 == 6 { '\n' } else { ' ' });
        if i % 1001 == 1000 {
            s.push_str(&"long line ".repeat(500));
            s.push('\n');
        }
        i += 1;
    }
    s.push('\n');
    s
}

/// A small deterministic pseudo-random generator.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % below
    }
}

#[test]
fn ten_megabytes_of_text_arrive_intact() {
    let (a, _b, writer, mut reader) = pair("big");
    reader
        .channel()
        .set_queue_limit(1_000_000, Default::default());
    let text = mixed_text(10 << 20);
    let bytes = text.as_bytes().to_vec();
    let total = bytes.len();

    let sender = std::thread::spawn(move || {
        let mut writer = writer.with_chunk_size(4096);
        let mut rng = Lcg(7);
        let mut split_chars = 0;
        let mut at = 0;
        while at < bytes.len() {
            // Odd sizes, from a byte to ~40 kB: many writes end inside a character.
            let size = match rng.next(4) {
                0 => 1 + rng.next(5),
                1 => 1 + rng.next(300),
                _ => 1 + rng.next(40_000),
            };
            let end = (at + size).min(bytes.len());
            let n = writer.write(&bytes[at..end]).unwrap();
            assert_eq!(n, end - at);
            if writer.pending_bytes() > 0 {
                split_chars += 1;
            }
            at = end;
        }
        assert_eq!(writer.pending_bytes(), 0);
        writer.flush().unwrap();
        split_chars
    });

    let t0 = Instant::now();
    let mut got = Vec::with_capacity(total);
    (&mut reader)
        .take(total as u64)
        .read_to_end(&mut got)
        .unwrap();
    let split_chars = sender.join().unwrap();
    assert!(t0.elapsed() < 3 * WAIT);
    assert!(
        split_chars > 10,
        "only {split_chars} writes split a character"
    );
    assert_eq!(got.len(), total);
    assert!(got == text.as_bytes(), "the text differs");
    assert_eq!(reader.channel().discarded(), 0);
    // Nothing more.
    assert_eq!(reader.readline(SHORT).unwrap(), "");
    drop(a);
}

#[test]
fn many_lines_through_lines() {
    let (_a, _b, mut writer, reader) = pair("lines");
    let text = mixed_text(1 << 20);
    let expected: Vec<&str> = text.lines().collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Writes cut at odd places, mid-line and mid-character.
            let bytes = text.as_bytes();
            for piece in bytes.chunks(997) {
                writer.write_all(piece).unwrap();
            }
            writer.flush().unwrap();
        });
        let got: Vec<String> = reader
            .lines()
            .take(expected.len())
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(got, expected);
    });
}

#[test]
fn readline_assembles_lines_across_messages_and_keeps_partial_lines() {
    let (_a, _b, publisher, mut reader) = publisher_and_reader("readline");
    for m in ["hel", "lo\nwor", "ld\n", "tail"] {
        publisher.send(m.to_string()).unwrap();
    }
    assert_eq!(reader.readline(true).unwrap(), "hello\n");
    assert_eq!(reader.readline(WAIT).unwrap(), "world\n");
    wait_for("the last message", || reader.channel().pending() == 1);
    // "tail" has arrived but its line is not complete: not handed out.
    assert_eq!(reader.readline(false).unwrap(), "");
    let t0 = Instant::now();
    assert_eq!(reader.readline(SHORT).unwrap(), "");
    assert!(t0.elapsed() >= SHORT - Duration::from_millis(5));
    assert_eq!(reader.buffered(), 4);
    assert!(!reader.is_eof());
    publisher.send("!\nnext\n".to_string()).unwrap();
    assert_eq!(reader.readline(Block::Forever).unwrap(), "tail!\n");
    // Already buffered: even non-blocking finds it.
    assert_eq!(reader.readline(false).unwrap(), "next\n");

    // Multi-byte characters split across messages come out whole.
    let s = "ü€😀\n";
    let (x, y) = s.as_bytes().split_at(5);
    let mut writer = FileWriter::new(publisher.clone());
    writer.write_all(x).unwrap();
    writer.write_all(y).unwrap();
    assert_eq!(reader.readline(WAIT).unwrap(), s);

    // Blocking readline waits for the end of the line.
    let p = publisher.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        p.send("late ".to_string()).unwrap();
        std::thread::sleep(SHORT);
        p.send("line\n".to_string()).unwrap();
    });
    assert_eq!(reader.readline(true).unwrap(), "late line\n");
    later.join().unwrap();

    // At the end of file the unterminated last line comes out as it is.
    publisher.send("no newline".to_string()).unwrap();
    wait_for("the message", || reader.channel().pending() == 1);
    reader.close();
    assert_eq!(reader.readline(true).unwrap(), "no newline");
    assert_eq!(reader.readline(true).unwrap(), "");
    assert!(reader.is_eof());
}

#[test]
fn readlines_returns_the_whole_lines_available() {
    let (_a, _b, publisher, mut reader) = publisher_and_reader("readlines");
    assert!(reader.readlines(false).unwrap().is_empty());
    let t0 = Instant::now();
    assert!(reader.readlines(SHORT).unwrap().is_empty());
    assert!(t0.elapsed() >= SHORT - Duration::from_millis(5));

    for m in ["a\nb", "\nc\n", "d"] {
        publisher.send(m.to_string()).unwrap();
    }
    wait_for("three messages", || reader.channel().pending() == 3);
    assert_eq!(reader.readlines(false).unwrap(), ["a\n", "b\n", "c\n"]);
    assert!(reader.readlines(false).unwrap().is_empty());
    publisher.send("e\nf\n".to_string()).unwrap();
    assert_eq!(reader.readlines(true).unwrap(), ["de\n", "f\n"]);

    publisher.send("g\nh".to_string()).unwrap();
    wait_for("the message", || reader.channel().pending() == 1);
    reader.close();
    assert_eq!(reader.readlines(true).unwrap(), ["g\n", "h"]);
    assert!(reader.readlines(true).unwrap().is_empty());
}

#[test]
fn read_text_returns_messages_as_sent() {
    let (_a, _b, publisher, mut reader) = publisher_and_reader("read");
    assert_eq!(reader.read_text(false).unwrap(), "");
    let t0 = Instant::now();
    assert_eq!(reader.read_text(SHORT).unwrap(), "");
    assert!(t0.elapsed() >= SHORT - Duration::from_millis(5));

    publisher.send("one".to_string()).unwrap();
    publisher.send("two\nthree".to_string()).unwrap();
    assert_eq!(reader.read_text(true).unwrap(), "one");
    assert_eq!(reader.read_text(WAIT).unwrap(), "two\nthree");

    // Text left in the buffer by a line read comes first.
    publisher.send("x\ny".to_string()).unwrap();
    assert_eq!(reader.readline(WAIT).unwrap(), "x\n");
    publisher.send("z".to_string()).unwrap();
    wait_for("the message", || reader.channel().pending() == 1);
    assert_eq!(reader.read_text(false).unwrap(), "y");
    assert_eq!(reader.read_text(false).unwrap(), "z");
}

#[test]
fn read_times_out_then_reaches_the_end_of_file() {
    let (_a, _b, publisher, mut reader) = publisher_and_reader("eof");
    reader.set_read_timeout(Some(SHORT));
    let t0 = Instant::now();
    let err = reader.read(&mut [0; 32]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(t0.elapsed() >= SHORT - Duration::from_millis(5));

    // A timeout is not the end: data sent later is read.
    publisher.send("späť".to_string()).unwrap();
    reader.set_read_timeout(Some(WAIT));
    let mut two = [0; 2];
    reader.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"sp");
    assert_eq!(reader.buffered(), 4);

    // Without a timeout, read blocks until data arrives...
    reader.set_read_timeout(None);
    let p = publisher.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        p.send("!".to_string()).unwrap();
    });
    let mut rest = String::new();
    let mut buf = [0; 64];
    while rest != "äť!" {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0);
        rest.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    later.join().unwrap();

    // ... or until the channel is closed (from another thread): then Ok(0).
    let channel = reader.channel().clone();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        channel.close();
    });
    let mut all = String::new();
    assert_eq!(reader.read_to_string(&mut all).unwrap(), 0);
    closer.join().unwrap();
    assert!(reader.is_eof());
    assert_eq!(reader.read(&mut buf).unwrap(), 0);
}

#[test]
fn chunking_splits_long_writes_into_messages_of_at_most_the_chunk_size() {
    let (a, b) = (ctx(), ctx());
    let mut writer = FileWriter::new(PubChannel::new(&a, "chunks").unwrap()).with_chunk_size(100);
    let sub = SubChannel::<Text>::new(&b, "chunks").unwrap();
    join(&a, &b);

    // 1050 characters (of 1, 2, 3 and 4 bytes): 11 messages, counted in characters.
    let text: String = "aé€😀".chars().cycle().take(1050).collect();
    writer.write_all(text.as_bytes()).unwrap();
    let mut parts = Vec::new();
    while parts.len() < 11 {
        parts.push(sub.recv_timeout(WAIT).unwrap().expect("a chunk"));
    }
    assert!(parts[..10].iter().all(|p| p.chars().count() == 100));
    assert_eq!(parts[10].chars().count(), 50);
    assert_eq!(parts.concat(), text);

    // Exactly the chunk size, or less: one message.
    writer.write_str(&"x".repeat(100)).unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap().unwrap().len(), 100);
    writer.write_str("short").unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("short"));

    // writelines sends each item as one message, without chunking (as the reference).
    writer
        .writelines(["y".repeat(250), "z\n".to_string(), String::new()])
        .unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap().unwrap(), "y".repeat(250));
    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("z\n"));

    // Empty writes send nothing; no line buffering: every write is a message.
    writer.write_str("").unwrap();
    assert_eq!(writer.write(b"").unwrap(), 0);
    write!(writer, "{}-{}", 1, 2).unwrap();
    writer.flush().unwrap();
    let mut got = String::new();
    while got != "1-2" {
        got.push_str(&sub.recv_timeout(WAIT).unwrap().expect("a piece"));
    }
    assert_eq!(sub.recv_timeout(SHORT).unwrap(), None);
}

#[test]
fn utf8_errors() {
    let (a, b) = (ctx(), ctx());
    let mut writer = FileWriter::new(PubChannel::new(&a, "utf8").unwrap());
    let sub = SubChannel::<Text>::new(&b, "utf8").unwrap();
    join(&a, &b);

    // Invalid byte: an InvalidData error naming the offset, nothing sent.
    let err = writer.write(b"abc\xffdef").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(err.to_string().contains("offset 3"), "{err}");

    // A character begun by one write and not continued by the next.
    writer.write_all(&"é".as_bytes()[..1]).unwrap();
    assert_eq!(writer.pending_bytes(), 1);
    let err = writer.write(b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(err.to_string().contains("offset 0"), "{err}");
    assert_eq!(writer.pending_bytes(), 0);

    // The offset counts from the start of this write, after held-back bytes.
    writer.write_all(&"€".as_bytes()[..2]).unwrap();
    let mut bad = "€".as_bytes()[2..].to_vec();
    bad.extend_from_slice(b"ok\xc3(");
    let err = writer.write(&bad).unwrap_err();
    assert!(err.to_string().contains("offset 3"), "{err}");
    // The held-back bytes survive an error in the new bytes.
    assert_eq!(writer.pending_bytes(), 2);
    writer.write_all(&"€".as_bytes()[2..]).unwrap();

    // A string cannot complete held-back bytes.
    writer.write_all(&"😀".as_bytes()[..3]).unwrap();
    let err = writer.write_str("x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    writer.write_str("fine").unwrap();

    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("€"));
    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("fine"));
    assert_eq!(sub.recv_timeout(SHORT).unwrap(), None);

    writer.close().unwrap();
    assert_eq!(
        writer.write(b"late").unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
}

#[test]
fn echo_sends_what_is_read_to_another_channel() {
    // The kernel (b) reads its stdin from the shell (a) and echoes it back.
    let (a, b) = (ctx(), ctx());
    let stdin = PubChannel::<Text>::new(&a, "stdin").unwrap();
    let echoed = SubChannel::<Text>::new(&a, "echo").unwrap();
    let mut reader = FileReader::new(SubChannel::new(&b, "stdin").unwrap())
        .with_echo(PubChannel::new(&b, "echo").unwrap());
    join(&a, &b);

    stdin.send("first line\n".to_string()).unwrap();
    stdin.send("sec".to_string()).unwrap();
    stdin.send("ond\n".to_string()).unwrap();
    assert_eq!(reader.readline(WAIT).unwrap(), "first line\n");
    assert_eq!(reader.readline(WAIT).unwrap(), "second\n");
    // Echoed as received, one message each.
    for m in ["first line\n", "sec", "ond\n"] {
        assert_eq!(echoed.recv_timeout(WAIT).unwrap().as_deref(), Some(m));
    }
    // Every read method echoes.
    stdin.send("bytes".to_string()).unwrap();
    let mut buf = [0; 5];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(echoed.recv_timeout(WAIT).unwrap().as_deref(), Some("bytes"));
    // Nothing read, nothing echoed.
    assert_eq!(reader.read_text(SHORT).unwrap(), "");
    assert_eq!(echoed.recv_timeout(SHORT).unwrap(), None);
}

/// Some code that reports through whatever output it is given.
fn report(out: &mut dyn Write, items: &[(&str, f64)]) -> std::io::Result<()> {
    writeln!(out, "report of {} items", items.len())?;
    for (name, value) in items {
        writeln!(out, "  {name:<8}= {value:>8.3}")?;
    }
    write!(out, "end")?;
    writeln!(out)?;
    out.flush()
}

#[test]
fn redirected_output_reaches_the_remote_lines() {
    let (a, b) = (ctx(), ctx());
    let mut out: Box<dyn Write + Send> =
        Box::new(FileWriter::new(PubChannel::new(&a, "stdout").unwrap()).with_chunk_size(256));
    let mut reader = FileReader::new(SubChannel::new(&b, "stdout").unwrap());
    reader.set_read_timeout(Some(WAIT));
    join(&a, &b);

    let items = [("alpha", 1.0), ("bêta", 2.5), ("γάμμα", -3.25)];
    let sender = std::thread::spawn(move || {
        report(&mut *out, &items).unwrap();
        // Also through a LineWriter, which gives one message per line.
        let mut lw = std::io::LineWriter::new(out);
        report(&mut lw, &items[..1]).unwrap();
    });
    let lines: Vec<String> = reader.lines().take(8).map(|l| l.unwrap()).collect();
    sender.join().unwrap();
    assert_eq!(
        lines,
        [
            "report of 3 items",
            "  alpha   =    1.000",
            "  bêta    =    2.500",
            "  γάμμα   =   -3.250",
            "end",
            "report of 1 items",
            "  alpha   =    1.000",
            "end",
        ]
    );
}
