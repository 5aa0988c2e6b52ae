//! `yoton`: publish, subscribe, request, reply and share state with Yoton contexts
//! (Rust or the Python reference) from the command line. See `yoton --help`.

mod bench;
mod clientserver;
mod demo;
mod error;
mod join;
mod json;
mod pubsub;
mod reqrep;
mod state;
mod transport;
mod types;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::{CliError, Result};
use crate::join::How;
use crate::transport::TransportArgs;
use crate::types::{with_type, MsgType};

/// Time-out of the commands that must end (pub, req, state get, request) when
/// `--timeout` is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const ABOUT: &str = "Talk to Yoton contexts (Rust or the Python reference) from the command line";

const LONG_ABOUT: &str = "\
Talk to Yoton contexts (Rust or the Python reference, pyzo's yoton) from the \
command line: publish and subscribe, call and serve methods, get and set state, \
and use the client/server helper.

Each command makes a context with its channel, joins the network at ADDR and does \
its job. Slots are those of the library: `yoton pub ADDR chat` publishes on \
`chat.txt.pub-sub`, where `yoton.PubChannel(ctx, 'chat')` publishes in Python.";

const AFTER_HELP: &str = "\
Addresses: [SCHEME://]HOST:PORT. No scheme means tcp. HOST may be localhost, \
publichost (this machine's first public IPv4 address), an IP address or a host \
name; PORT a number (0: any free port, printed on stderr when binding) or a name \
hashed into a port as the reference does (localhost:chat). inproc://NAME only \
works within one process (see `yoton demo`).

Joining: --connect (the default) connects to a context that binds or listens at \
ADDR, retrying until the time-out; --bind waits there for exactly one peer; \
--listen accepts any number of peers.

Message types (--type, part of the slot name, so both ends must agree):
  txt  UTF-8 text, as is
  bin  bytes, written as base64 (standard alphabet, padded) in arguments, input and output
  obj  None/bool/int/float/str/list/tuple/dict, written as JSON: objects are dicts,
       arrays lists (tuples are printed as arrays, non-string dict keys as their
       JSON text), null is None; NaN and infinities print as null

Exit codes: 0 done; 1 failed (too few messages, remote error, no reply, state not \
learned, cannot connect, bad input); 2 bad command line, or not implemented.

Examples:
  yoton sub --bind localhost:chat chat          # wait for a publisher, print messages
  yoton pub localhost:chat chat hello world     # publish two messages
  echo '{\"x\": [1, 2.5]}' | yoton pub --type obj localhost:data data
  yoton rep --listen localhost:svc svc          # serve echo and ping
  yoton req localhost:svc svc echo '\"hi\"'       # prints [\"hi\",\"0x...\"]
  yoton state --listen localhost:st mood sunny  # set the state, stay up for newcomers
  yoton state localhost:st mood                 # prints sunny
  yoton serve localhost:5000 & yoton request localhost:5000 hello";

#[derive(Parser, Debug)]
#[command(
    name = "yoton",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Log to standard error: -v info, -vv debug, -vvv trace (warnings are always shown)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 100)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

/// How to join the network at ADDR (one of these; --connect when none is given).
#[derive(Args, Debug, Clone, Copy)]
#[group(multiple = false)]
struct JoinArgs {
    /// Connect to a context that binds or listens at ADDR, retrying until the time-out (the default)
    #[arg(long)]
    connect: bool,
    /// Bind at ADDR and wait for exactly one peer (port 0: any free port, printed on stderr)
    #[arg(long)]
    bind: bool,
    /// Listen at ADDR and accept any number of peers (port 0: any free port, printed on stderr)
    #[arg(long)]
    listen: bool,
}

impl JoinArgs {
    fn how(self) -> How {
        if self.bind {
            How::Bind
        } else if self.listen {
            How::Listen
        } else {
            How::Connect
        }
    }
}

/// Parse `--timeout SECONDS` (a non-negative number, fractions allowed).
fn parse_seconds(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}`: give a number of seconds >= 0"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Parse `--kw NAME=VALUE`.
fn parse_kwarg(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}`: expected NAME=VALUE")),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish messages (the arguments, or the lines of standard input), then exit
    #[command(long_about = "\
Publish each MESSAGE, or each line of standard input when no MESSAGE is given \
(empty lines are skipped, lines are sent as they come), on a PubChannel at SLOT; \
then flush and exit.

With --bind or --listen it first waits for a peer (up to --timeout): a publisher \
with nobody connected would publish into the void. With --type obj each MESSAGE \
is JSON; with --type bin, base64.")]
    Pub {
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        transport: TransportArgs,
        /// Message type of the channel
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = MsgType::Txt)]
        ty: MsgType,
        /// Bound on connecting, waiting for a peer and flushing, in seconds [default: 10]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Where to join the network, e.g. localhost:chat or tcp://127.0.0.1:5000
        #[arg(value_name = "ADDR")]
        address: String,
        /// Base slot name (the channel uses SLOT.TYPE.pub-sub)
        slot: String,
        /// Messages to publish (none: read standard input, one message per line)
        #[arg(value_name = "MESSAGE")]
        messages: Vec<String>,
    },

    /// Print the messages published at a slot, one per line
    #[command(long_about = "\
Subscribe at SLOT and print each message on its own line (txt as is, obj as \
compact JSON, bin as base64), flushing whenever no more are waiting.

The subscriber is in sync mode unless --no-sync is given: when more than 32 \
messages wait to be printed, it asks the publishers to wait (each send up to 1 s), \
so a fast publisher does not overflow its queue (10,000 messages, then the oldest \
are dropped, with a warning).

Stops after --count messages (exit 0, or 1 when the time-out or the end of the \
connection comes first), or, without --count, when --timeout passes or the \
connection closes (exit 0). Without --timeout it waits as long as it takes; \
with --listen only the time-out ends it.")]
    Sub {
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        transport: TransportArgs,
        /// Message type of the channel
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = MsgType::Txt)]
        ty: MsgType,
        /// Give up after this many seconds in all (connecting included) [default: never]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Exit after N messages (exit code 1 when fewer arrive)
        #[arg(short = 'n', long, value_name = "N")]
        count: Option<u64>,
        /// Do not ask publishers to slow down (sync mode is on by default): when more
        /// than 10,000 messages wait to be printed, the oldest are dropped
        #[arg(long)]
        no_sync: bool,
        /// Where to join the network, e.g. localhost:chat or tcp://127.0.0.1:5000
        #[arg(value_name = "ADDR")]
        address: String,
        /// Base slot name (the channel uses SLOT.TYPE.pub-sub)
        slot: String,
    },

    /// Call a method of a replier and print the reply as JSON
    #[command(long_about = "\
Call METHOD with the given arguments on a replier (a RepChannel) at SLOT and print \
the reply as one line of JSON. Each ARG (and each --kw VALUE) is JSON; an ARG that \
is not valid JSON is taken as a string, so `echo hello` and `echo '\"hello\"'` are \
the same call.

A remote error (the method failed or does not exist) is printed on stderr, exit 1; \
so is no reply within --timeout. Any replier works: `yoton rep`, the Python \
reference's RepChannel, or yours. Request/reply always uses --type obj.")]
    Req {
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        transport: TransportArgs,
        /// Bound on connecting, waiting for a peer and the reply, in seconds [default: 10]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// A keyword argument NAME=VALUE (VALUE is JSON, or else a string); repeatable
        #[arg(short = 'k', long = "kw", value_name = "NAME=VALUE", value_parser = parse_kwarg)]
        kwargs: Vec<(String, String)>,
        /// Where to join the network, e.g. localhost:svc or tcp://127.0.0.1:5000
        #[arg(value_name = "ADDR")]
        address: String,
        /// Base slot name (the channel uses SLOT.obj.req-rep)
        slot: String,
        /// The method to call, e.g. echo
        method: String,
        /// Positional arguments, each JSON (or else a string)
        #[arg(value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
    },

    /// Serve `echo` and `ping` to requesters
    #[command(long_about = "\
Serve requests at SLOT with a RepChannel (in a thread of its own): the built-in \
`echo(arg, sleep=0)` returns [arg, hex(context id)] as in the reference, and \
`ping()` returns \"pong\"; other methods give the requester a remote error.

Runs until killed, or until --count requests were answered (exit 0; exit 1 if \
the time-out or the end of the connection comes first), --timeout passes, or the \
connection closes (with --connect / --bind).")]
    Rep {
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        transport: TransportArgs,
        /// Stop after this many seconds [default: never]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Exit after answering N requests (exit code 1 when fewer came)
        #[arg(short = 'n', long, value_name = "N")]
        count: Option<u64>,
        /// Where to join the network, e.g. localhost:svc or tcp://127.0.0.1:5000
        #[arg(value_name = "ADDR")]
        address: String,
        /// Base slot name (the channel listens on SLOT.obj.req-rep)
        slot: String,
    },

    /// Print the state of a slot, or set it
    #[command(long_about = "\
Without VALUE: learn the state at SLOT (a StateChannel: every context with one \
knows the latest value, and newcomers are told) and print it; exit 1 when it is \
not learned within --timeout (default 10 s).

With VALUE: set the state, then stay up so that contexts joining later learn it \
from us, until --timeout passes (default: until killed) or the connection closes \
(with --connect / --bind). --timeout 0 sets the state and leaves as soon as it \
is written out; the others keep it.")]
    State {
        #[command(flatten)]
        join: JoinArgs,
        #[command(flatten)]
        transport: TransportArgs,
        /// Message type of the channel
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = MsgType::Txt)]
        ty: MsgType,
        /// Get: how long to wait for the state [default: 10]. Set: how long to stay up [default: until killed]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Where to join the network, e.g. localhost:st or tcp://127.0.0.1:5000
        #[arg(value_name = "ADDR")]
        address: String,
        /// Base slot name (the channel uses SLOT.TYPE.state)
        slot: String,
        /// The new state (JSON for obj, base64 for bin); none: print the current state
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },

    /// Send one request to a request server and print the reply (client/server helper)
    #[command(long_about = "\
The reference's client/server helper (yoton.do_request): connect to the request \
server at ADDR (plain TCP, HOST:PORT; no context), send TEXT, print the reply. \
Works with `yoton serve`, a Python yoton.RequestServer, or any line-based TCP \
server. Exit 1 when there is no server or no reply within --timeout.")]
    Request {
        /// Bound on connecting and on the reply, in seconds [default: 10]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// The request server, HOST:PORT (e.g. localhost:5000 or localhost:name)
        #[arg(value_name = "ADDR")]
        address: String,
        /// The request
        #[arg(allow_hyphen_values = true)]
        text: String,
    },

    /// Answer requests with "Requested: TEXT" (client/server helper)
    #[command(long_about = "\
The reference's client/server helper (yoton.RequestServer): listen at ADDR \
(plain TCP, HOST:PORT; port 0 picks a free port, printed on stderr) and answer \
each request TEXT with \"Requested: TEXT\", as the reference's default server \
does. Runs until killed, --count requests were answered (exit 0; exit 1 if the \
time-out comes first) or --timeout passes.")]
    Serve {
        /// Stop after this many seconds [default: never]
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Exit after answering N requests
        #[arg(short = 'n', long, value_name = "N")]
        count: Option<u64>,
        /// Where to listen, HOST:PORT (e.g. localhost:5000 or localhost:0)
        #[arg(value_name = "ADDR")]
        address: String,
    },

    /// Show the library at work over every transport in this build, with a summary
    #[command(long_about = "\
For each transport compiled into this build (inproc and tcp, plus ws and quic \
when built with them), a host context binds and a guest connects; then \
publish/subscribe (txt and obj), request/reply (a result and a remote error), \
state (learned by a newcomer, then changed) and closing are shown, each timed, \
in a summary table. Takes well under a few seconds; exit 0 only if everything \
arrived.")]
    Demo {
        /// How many txt messages to publish per transport
        #[arg(long, value_name = "N", default_value_t = 1000)]
        messages: usize,
    },

    /// Measure throughput and latency against a minimal TCP floor, over every transport
    #[command(long_about = "\
Measure yoton between processes over loopback (127.0.0.1), for tcp and every other \
transport compiled in, next to a floor measured in the same run: a minimal framed \
tokio TCP sender/receiver (8-byte length prefix, BufWriter, same payloads; \
ping-pong for latency). Prints a table with medians of --runs runs, their spread, \
the ratio to the floor and the targets of the performance issue.

Workloads: W1 pub/sub throughput, 64 B x 1,000,000; W2 pub/sub throughput, 1 MiB \
x 2,000; W3 req/rep round trips and a pub/sub ping-pong, 64 B x 10,000; W4 one \
256 MiB message (time, peak RSS of both sides); W5 fan-out to 4 subscriber \
processes, both directions at once, a chain of 8 contexts, 1,000 idle connections \
on one listen. --quick uses small counts. Exit 1 when a measurement failed (a \
missed target is not a failure).")]
    Bench(bench::BenchArgs),

    /// A process of `yoton bench` (internal)
    #[command(name = "bench-peer", hide = true)]
    BenchPeer {
        /// The role and its parameters, as JSON
        spec: String,
    },
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .try_init();
}

/// The help text about addresses, with the schemes of this build.
fn schemes_help() -> String {
    #[allow(unused_mut)]
    let mut text = format!(
        "{AFTER_HELP}\n\nSchemes in this build: {}",
        yoton::schemes()
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    text.push_str(
        "\n\ntls://, wss:// and quic:// take the same options: binding or listening needs a \
         certificate (--cert and --key, or --self-signed; quic:// always encrypts, so it \
         always needs one), and a client must trust the server (a public CA, --ca, --pin \
         with the fingerprint --self-signed prints, or --insecure).",
    );
    text
}

fn run(command: Command) -> Result<()> {
    let or_default = |t: Option<Duration>| t.unwrap_or(DEFAULT_TIMEOUT);
    match command {
        Command::Pub {
            join,
            transport,
            ty,
            timeout,
            address,
            slot,
            messages,
        } => {
            let (ctx, how, timeout) = (transport.context()?, join.how(), or_default(timeout));
            with_type!(ty, M => pubsub::publish::<M>(ctx, how, &address, &slot, &messages, timeout))
        }
        Command::Sub {
            join,
            transport,
            ty,
            timeout,
            count,
            no_sync,
            address,
            slot,
        } => {
            let (ctx, how, sync) = (transport.context()?, join.how(), !no_sync);
            with_type!(ty, M => pubsub::subscribe::<M>(ctx, how, &address, &slot, count, timeout, sync))
        }
        Command::Req {
            join,
            transport,
            timeout,
            kwargs,
            address,
            slot,
            method,
            args,
        } => reqrep::request(
            transport.context()?,
            join.how(),
            &address,
            &slot,
            reqrep::Call {
                method: &method,
                args: &args,
                kwargs: &kwargs,
            },
            or_default(timeout),
        ),
        Command::Rep {
            join,
            transport,
            timeout,
            count,
            address,
            slot,
        } => reqrep::reply(
            transport.context()?,
            join.how(),
            &address,
            &slot,
            count,
            timeout,
        ),
        Command::State {
            join,
            transport,
            ty,
            timeout,
            address,
            slot,
            value,
        } => {
            let (ctx, how) = (transport.context()?, join.how());
            match value {
                None => {
                    let timeout = or_default(timeout);
                    with_type!(ty, M => state::get::<M>(ctx, how, &address, &slot, timeout))
                }
                Some(v) => {
                    with_type!(ty, M => state::set::<M>(ctx, how, &address, &slot, &v, timeout))
                }
            }
        }
        Command::Request {
            timeout,
            address,
            text,
        } => clientserver::request(&address, &text, or_default(timeout)),
        Command::Serve {
            timeout,
            count,
            address,
        } => clientserver::serve(&address, count, timeout),
        Command::Demo { messages } => demo::run(messages),
        Command::Bench(_) | Command::BenchPeer { .. } => Err(CliError::Usage("unreachable".into())),
    }
}

fn main() -> ExitCode {
    let mut command = Cli::command().after_long_help(schemes_help());
    for name in ["pub", "sub", "req", "rep", "state"] {
        command = command.mut_subcommand(name, |c| {
            c.after_help("Addresses, message types and exit codes: see `yoton --help`.")
        });
    }
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose);
    match &cli.command {
        Command::Bench(args) => return bench::run(args),
        Command::BenchPeer { spec } => return bench::peer_main(spec),
        _ => {}
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yoton: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds(" 3 "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "nan", "inf", "soon", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kwargs() {
        assert_eq!(parse_kwarg("sleep=0.5"), Ok(("sleep".into(), "0.5".into())));
        assert_eq!(parse_kwarg("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kwarg("=1").is_err());
        assert!(parse_kwarg("novalue").is_err());
    }

    #[test]
    fn join_flags() {
        let cli = Cli::try_parse_from(["yoton", "sub", "--listen", "a:1", "s"]).unwrap();
        let Command::Sub { join, ty, .. } = cli.command else {
            panic!("not sub")
        };
        assert_eq!((join.how(), ty), (How::Listen, MsgType::Txt));
        let cli = Cli::try_parse_from(["yoton", "pub", "a:1", "s", "--type", "obj"]).unwrap();
        let Command::Pub { join, ty, .. } = cli.command else {
            panic!("not pub")
        };
        assert_eq!((join.how(), ty), (How::Connect, MsgType::Obj));
    }
}
