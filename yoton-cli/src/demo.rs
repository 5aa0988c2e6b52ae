//! `yoton demo`: two contexts per compiled-in transport, showing publish/subscribe,
//! request/reply and state, with a summary table. Succeeds only when everything
//! arrived.

use std::time::{Duration, Instant};

use yoton::{
    ChannelError, Context, Object, PubChannel, RepChannel, RepMode, ReqChannel, StateChannel,
    SubChannel, Text, Value,
};

use crate::error::{CliError, Result};
use crate::json;

/// Upper bound of every wait in the demo.
const WAIT: Duration = Duration::from_secs(5);

/// One line of the summary.
struct Row {
    transport: String,
    pattern: &'static str,
    sent: String,
    arrived: String,
    time: String,
    ok: bool,
}

/// Where the host of a transport binds (None: not demonstrated).
fn bind_address(scheme: &str) -> Option<String> {
    match scheme {
        "inproc" => Some(format!("inproc://yoton-demo-{}", std::process::id())),
        "tcp" | "ws" | "quic" => Some(format!("{scheme}://127.0.0.1:0")),
        _ => None,
    }
}

/// Run the demo over every transport in this build; `messages` txt messages each.
pub fn run(messages: usize) -> Result<()> {
    let schemes = yoton::schemes();
    println!(
        "yoton demo: two contexts per transport ({}), host binds, guest connects\n",
        schemes.join(", ")
    );
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for scheme in &schemes {
        let Some(address) = bind_address(scheme) else {
            skipped.push(*scheme);
            continue;
        };
        let mut demo = Demo {
            transport: scheme.to_string(),
            rows: &mut rows,
        };
        if let Err(e) = demo.run(&address, messages) {
            demo.row("error", "", e.to_string(), Duration::ZERO, false);
        }
    }
    print_table(&rows);
    if !skipped.is_empty() {
        println!(
            "\nnot demonstrated: {} (needs certificates or settings the demo does not make)",
            skipped.join(", ")
        );
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    if rows.is_empty() || failed > 0 {
        return Err(CliError::Failed(format!(
            "demo failed: {failed} of {} steps did not complete",
            rows.len()
        )));
    }
    println!("\ndemo finished: everything arrived");
    Ok(())
}

struct Demo<'a> {
    transport: String,
    rows: &'a mut Vec<Row>,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl Demo<'_> {
    fn row(
        &mut self,
        pattern: &'static str,
        sent: impl Into<String>,
        arrived: String,
        d: Duration,
        ok: bool,
    ) {
        self.rows.push(Row {
            transport: self.transport.clone(),
            pattern,
            sent: sent.into(),
            arrived,
            time: ms(d),
            ok,
        });
    }

    fn run(&mut self, address: &str, messages: usize) -> Result<()> {
        let (host, guest) = contexts(&self.transport)?;
        let result = self.steps(&host, &guest, address, messages);
        guest.close();
        host.close();
        result
    }

    fn steps(
        &mut self,
        host: &Context,
        guest: &Context,
        address: &str,
        messages: usize,
    ) -> Result<()> {
        // Channels first, so nothing can arrive before its receiver exists.
        let news = PubChannel::<Text>::new(host, "demo.news")?;
        let inbox = SubChannel::<Text>::new(guest, "demo.news")?;
        let things = PubChannel::<Object>::new(host, "demo.things")?;
        let things_in = SubChannel::<Object>::new(guest, "demo.things")?;
        let calc = RepChannel::new(guest, "demo.calc")?;
        calc.handle("add", |(a, b): (i64, i64)| Ok::<_, String>(a + b));
        calc.register("ping", |_| Ok(Value::Str("pong".into())));
        calc.set_mode(RepMode::Thread);
        let caller = ReqChannel::new(host, "demo.calc")?;
        let mood_host = StateChannel::<Text>::new(host, "demo.mood")?;
        let mood_guest = StateChannel::<Text>::new(guest, "demo.mood")?;
        // Set before the guest joins: it learns it as a newcomer.
        mood_host.send("sunny".into())?;

        // Connect.
        let t0 = Instant::now();
        let conn = host.bind(address)?;
        let target = match yoton::Address::parse(address)? {
            a if a.scheme == "inproc" => a.to_string(),
            a => a.with_port(conn.local().port).to_string(),
        };
        guest.connect(&target, WAIT)?;
        conn.wait_connected(WAIT)?;
        self.row(
            "connect",
            format!("bind + connect {target}"),
            "handshake done".into(),
            t0.elapsed(),
            true,
        );

        // Publish/subscribe, txt.
        let t0 = Instant::now();
        for i in 0..messages {
            news.send(format!("message {i}"))?;
        }
        let mut got = 0;
        let mut in_order = true;
        while got < messages {
            match inbox.recv_timeout(WAIT)? {
                Some(m) => {
                    in_order &= m == format!("message {got}");
                    got += 1;
                }
                None => break,
            }
        }
        let d = t0.elapsed();
        self.row(
            "pub/sub txt",
            format!("{messages} messages"),
            format!(
                "{got}{} ({:.0} msg/s)",
                if in_order {
                    " in order"
                } else {
                    " OUT OF ORDER"
                },
                got as f64 / d.as_secs_f64().max(1e-9)
            ),
            d,
            got == messages && in_order,
        );

        // Publish/subscribe, obj.
        let thing = Value::Dict(vec![
            ("id".into(), Value::Int(7)),
            ("tags".into(), Value::Tuple(vec!["a".into(), Value::None])),
            ("pi".into(), Value::Float(3.25)),
        ]);
        let t0 = Instant::now();
        things.send(thing.clone())?;
        let back = things_in.recv_timeout(WAIT)?;
        self.row(
            "pub/sub obj",
            json::to_line(&thing),
            back.as_ref().map_or("nothing".into(), json::to_line),
            t0.elapsed(),
            back.as_ref() == Some(&thing),
        );

        // Request/reply.
        let t0 = Instant::now();
        let pong = caller.call("ping", ())?.result(WAIT);
        let ok = matches!(&pong, Ok(Value::Str(s)) if s == "pong");
        self.row("req/rep", "ping()", show_reply(&pong), t0.elapsed(), ok);
        let t0 = Instant::now();
        let sum = caller.call("add", (2, 3))?.result(WAIT);
        let ok = matches!(sum, Ok(Value::Int(5)));
        self.row("req/rep", "add(2, 3)", show_reply(&sum), t0.elapsed(), ok);
        let t0 = Instant::now();
        let missing = caller.call("divide", (1, 0))?.result(WAIT);
        let ok = matches!(missing, Err(ChannelError::Remote(_)));
        self.row(
            "req/rep error",
            "divide(1, 0)",
            show_reply(&missing),
            t0.elapsed(),
            ok,
        );

        // State: the newcomer learned it; a change reaches the other side.
        let t0 = Instant::now();
        let learned = wait_state(&mood_guest, "sunny");
        self.row(
            "state newcomer",
            "host: \"sunny\" (before guest joined)",
            format!("guest: {}", show_state(&learned)),
            t0.elapsed(),
            learned.as_deref() == Some("sunny"),
        );
        let t0 = Instant::now();
        mood_guest.send("rainy".into())?;
        let learned = wait_state(&mood_host, "rainy");
        self.row(
            "state update",
            "guest: \"rainy\"",
            format!("host: {}", show_state(&learned)),
            t0.elapsed(),
            learned.as_deref() == Some("rainy"),
        );

        // Closing.
        let t0 = Instant::now();
        guest.close();
        let reason = conn.wait_closed(WAIT);
        let ok = reason.is_ok();
        let arrived = match reason {
            Ok(r) if r.is_empty() => "closed".into(),
            Ok(r) => format!("closed: {r}"),
            Err(e) => e.to_string(),
        };
        self.row("close", "guest closes", arrived, t0.elapsed(), ok);
        Ok(())
    }
}

/// The host and guest contexts for `scheme`.
fn contexts(scheme: &str) -> Result<(Context, Context)> {
    #[cfg(feature = "quic")]
    if scheme == "quic" {
        return quic_contexts();
    }
    let _ = scheme;
    Ok((yoton::context()?, yoton::context()?))
}

/// QUIC needs a server certificate: the host gets a self-signed one, which the guest
/// pins.
#[cfg(feature = "quic")]
fn quic_contexts() -> Result<(Context, Context)> {
    use std::sync::Arc;
    use yoton::quic::{QuicError, QuicTransport};

    let fail = |e: QuicError| CliError::Failed(format!("QUIC: {e}"));
    let server = QuicTransport::builder()
        .self_signed_for(["localhost", "127.0.0.1"])
        .build()
        .map_err(fail)?;
    let pin = server
        .fingerprint()
        .ok_or_else(|| CliError::Failed("QUIC: the server has no certificate".into()))?;
    let client = QuicTransport::builder()
        .pin_certificate(pin)
        .build()
        .map_err(fail)?;
    let with = |t: QuicTransport| -> Result<Context> {
        let mut registry = yoton::registry();
        registry.register(Arc::new(t));
        Ok(Context::builder().registry(registry).build()?)
    };
    Ok((with(server)?, with(client)?))
}

fn show_reply(r: &std::result::Result<Value, ChannelError>) -> String {
    match r {
        Ok(v) => json::to_line(v),
        Err(ChannelError::Remote(e)) => {
            format!("remote error: {}", e.lines().last().unwrap_or_default())
        }
        Err(e) => e.to_string(),
    }
}

fn show_state(s: &Option<String>) -> String {
    s.as_ref().map_or("nothing".into(), |s| format!("{s:?}"))
}

/// Wait (bounded) until `state` is `want`; the state then.
fn wait_state(state: &StateChannel<Text>, want: &str) -> Option<String> {
    let t0 = Instant::now();
    while state.recv().as_deref() != Some(want) && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(2));
    }
    state.recv()
}

/// At most `n` characters, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn print_table(rows: &[Row]) {
    let header = ["transport", "pattern", "sent", "arrived", "time", "ok"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.transport.clone(),
                r.pattern.to_owned(),
                clip(&r.sent, 44),
                clip(&r.arrived, 52),
                r.time.clone(),
                if r.ok { "yes" } else { "NO" }.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            // Right-align the time column.
            let pad = " ".repeat(w - c.chars().count());
            if i == 4 {
                out.push_str(&pad);
                out.push_str(c);
            } else {
                out.push_str(c);
                if i + 1 < cols.len() {
                    out.push_str(&pad);
                }
            }
        }
        println!("{out}");
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|w| "-".repeat(w)));
    let mut last: Option<String> = None;
    for row in cells {
        if last.as_ref().is_some_and(|t| *t != row[0]) {
            println!();
        }
        line(&row);
        last = Some(row[0].clone());
    }
}
