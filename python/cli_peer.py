#!/usr/bin/env python3
"""Yoton reference peer for the interop tests of the `yoton` command (yoton-cli).

Run with the reference venv (bash scripts/python-venv.sh prints its python):

    cli_peer.py [--timeout SECONDS] pub (--bind|--connect) ADDR SLOT TYPE MESSAGE...
    cli_peer.py [--timeout SECONDS] sub (--bind|--connect) ADDR SLOT TYPE N
    cli_peer.py [--timeout SECONDS] rep (--bind|--connect) ADDR SLOT N
    cli_peer.py [--timeout SECONDS] serve ADDR N
    cli_peer.py [--timeout SECONDS] request ADDR TEXT

TYPE is txt, bin or obj, written as the `yoton` command writes them: txt as is,
bin as base64, obj as JSON (json.loads / json.dumps; tuples print as arrays).

pub    waits until connected (up to --timeout), sends each MESSAGE on a
       yoton.PubChannel(ctx, SLOT, TYPE), flushes, waits 0.5 s and exits.
sub    receives N messages on a yoton.SubChannel(ctx, SLOT, TYPE) and prints
       {"event":"msg","value":VALUE} per message (VALUE: text, base64 or the object).
rep    serves N requests on a yoton.RepChannel subclass in thread mode, then
       flushes and exits. Methods: echo (the reference's built-in), ping() ->
       "pong", add(a, b) -> a + b, fail(text="boom") raises ValueError(text).
serve  a yoton.RequestServer (the reference's default handler: "Requested: "
       + request) that stops after N requests.
request  prints {"event":"reply","reply":REPLY} for yoton.do_request(ADDR, TEXT).

Every stdout line is one JSON object (flushed at once). After binding or
connecting, {"event":"ready","port":PORT} is printed (the listening port for
--bind and serve). The library's own prints go to stderr. Exit codes: 0 ok,
1 error, 2 usage, 3 too few messages/requests within --timeout, 4 not connected
within --timeout.
"""

import argparse
import base64
import importlib.util
import json
import os
import sys
import threading
import time

_OUT = sys.stdout
sys.stdout = sys.stderr

_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.stderr.write("cli_peer.py: pyzo not installed; use the python from scripts/python-venv.sh\n")
    sys.exit(1)
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402

EXIT_ERROR = 1
EXIT_TOO_FEW = 3
EXIT_NOT_CONNECTED = 4

TYPES = {"txt": yoton.TEXT, "bin": yoton.BINARY, "obj": yoton.OBJECT}


def emit(**obj):
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def fail(code, msg):
    sys.stderr.write("cli_peer.py: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(code)


def parse_message(kind, text):
    if kind == "txt":
        return text
    if kind == "bin":
        return base64.b64decode(text)
    return json.loads(text)


def show_message(kind, message):
    if kind == "bin":
        return base64.b64encode(bytes(message)).decode("ascii")
    return message


def join(context, opts):
    """Bind or connect; print ready; wait until connected."""
    try:
        if opts.bind:
            conn = context.bind(opts.addr)
            port = conn.port1
        else:
            conn = context.connect(opts.addr, timeout=opts.timeout)
            port = conn.port2
    except Exception as e:
        fail(EXIT_ERROR, "cannot join at %s: %s: %s" % (opts.addr, type(e).__name__, e))
    emit(event="ready", port=port)
    deadline = time.time() + opts.timeout
    while conn.is_waiting and time.time() < deadline:
        time.sleep(0.01)
    # id2 is only set by a successful handshake (a quick peer may be gone again)
    if not conn.id2:
        fail(EXIT_NOT_CONNECTED, "not connected within %gs" % opts.timeout)
    return conn


class Replier(yoton.RepChannel):
    def __init__(self, context, slot):
        yoton.RepChannel.__init__(self, context, slot)
        self.handled = 0

    def _handle_request(self, message):
        try:
            return yoton.RepChannel._handle_request(self, message)
        finally:
            self.handled += 1

    def ping(self):
        return "pong"

    def add(self, a, b):
        return a + b

    def fail(self, text="boom"):
        raise ValueError(text)


def cmd_pub(opts):
    context = yoton.Context()
    ch = yoton.PubChannel(context, opts.slot, TYPES[opts.type])
    messages = [parse_message(opts.type, m) for m in opts.messages]
    join(context, opts)
    for m in messages:
        ch.send(m)
    context.flush(opts.timeout)
    time.sleep(0.5)
    return 0


def cmd_sub(opts):
    context = yoton.Context()
    ch = yoton.SubChannel(context, opts.slot, TYPES[opts.type])
    join(context, opts)
    deadline = time.time() + opts.timeout
    got = 0
    while got < opts.n and time.time() < deadline:
        # An empty payload (nothing arrived) decodes as "" / b"" / None.
        m = ch.recv(float(min(max(deadline - time.time(), 0.01), 0.25)))
        if m is None or m == "" or m == b"":
            continue
        got += 1
        emit(event="msg", value=show_message(opts.type, m))
    if got < opts.n:
        fail(EXIT_TOO_FEW, "received %d of %d messages within %gs" % (got, opts.n, opts.timeout))
    return 0


def cmd_rep(opts):
    context = yoton.Context()
    rep = Replier(context, opts.slot)
    rep.set_mode("thread")
    join(context, opts)
    deadline = time.time() + opts.timeout
    while rep.handled < opts.n and time.time() < deadline:
        time.sleep(0.01)
    # The last reply is sent right after it was counted.
    time.sleep(0.2)
    context.flush(opts.timeout)
    time.sleep(0.3)
    if rep.handled < opts.n:
        fail(EXIT_TOO_FEW, "handled %d of %d requests within %gs" % (rep.handled, opts.n, opts.timeout))
    return 0


def cmd_serve(opts):
    handled = []

    class Server(yoton.RequestServer):
        def handle_request(self, request):
            handled.append(request)
            return yoton.RequestServer.handle_request(self, request)

    server = Server(opts.addr)
    emit(event="ready", port=server._bsd_socket.getsockname()[1])
    server.start()
    deadline = time.time() + opts.timeout
    while len(handled) < opts.n and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let the last reply go out
    server.stop()
    if len(handled) < opts.n:
        fail(EXIT_TOO_FEW, "handled %d of %d requests within %gs" % (len(handled), opts.n, opts.timeout))
    return 0


def cmd_request(opts):
    reply = yoton.do_request(opts.addr, opts.text, opts.timeout)
    emit(event="reply", reply=reply)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cli_peer.py", description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=10.0)
    sub = parser.add_subparsers(dest="command", required=True)

    def joined(name):
        p = sub.add_parser(name)
        how = p.add_mutually_exclusive_group(required=True)
        how.add_argument("--bind", action="store_true")
        how.add_argument("--connect", action="store_true")
        p.add_argument("addr")
        p.add_argument("slot")
        return p

    p = joined("pub")
    p.add_argument("type", choices=sorted(TYPES))
    p.add_argument("messages", nargs="+")
    p = joined("sub")
    p.add_argument("type", choices=sorted(TYPES))
    p.add_argument("n", type=int)
    p = joined("rep")
    p.add_argument("n", type=int)
    p = sub.add_parser("serve")
    p.add_argument("addr")
    p.add_argument("n", type=int)
    p = sub.add_parser("request")
    p.add_argument("addr")
    p.add_argument("text")

    opts = parser.parse_args(argv)
    opts.timeout = max(0.01, opts.timeout)
    return {
        "pub": cmd_pub,
        "sub": cmd_sub,
        "rep": cmd_rep,
        "serve": cmd_serve,
        "request": cmd_request,
    }[opts.command](opts)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Daemon threads of the library (replier, server) must not hold the exit up.
    os._exit(code or 0)
