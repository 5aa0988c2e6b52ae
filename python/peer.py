#!/usr/bin/env python3
"""Yoton reference peer for interop tests.

Run with the reference venv (bash scripts/python-venv.sh prints its python):

    peer.py (--bind ADDR | --connect ADDR) [--timeout SECONDS] [--verbose] ACTION...

Actions, executed in order after the connection is set up:

    pub SLOT TEXT     send TEXT on a yoton.PubChannel(context, SLOT) (txt); one channel per slot
    sub SLOT N        receive N messages on a yoton.SubChannel(context, SLOT) (txt), printing
                      {"event":"msg","slot":SLOT,"text":TEXT} per message; waits at most
                      --timeout seconds for this action; exit code 3 if fewer arrived
    sleep SECONDS     time.sleep(SECONDS)
    flush             context.flush(--timeout)
    close             context.close()
    wait-connected    (extra) wait until the connection is connected (useful after --bind) and
                      print {"event":"connected","id2":HEX,"pid2":PID,"port2":PORT}; exit 4 on timeout
    wait-closed       wait until the connection is closed and print
                      {"event":"closed","reason":REASON}; exit 4 on timeout

All channels are created before binding/connecting (so subscribers exist before
any message can arrive). Then the context binds or connects and
{"event":"ready","id":HEX,"pid":PID,"port":PORT,"local_port":PORT} is printed,
where PORT is the listening port for --bind (the real one, also for port 0) and
the remote port for --connect. --bind does not block: the reference's bind
listens and accepts in a background thread; ready is printed once the socket
listens. --connect retries connecting for up to --timeout seconds.

Every stdout line is one JSON object (ASCII, flushed immediately). Anything the
yoton library itself prints goes to stderr. Errors go to stderr; exit codes:
0 ok, 1 error (e.g. cannot connect), 2 usage, 3 sub got too few messages,
4 wait-connected / wait-closed timed out. The context is NOT closed
automatically at the end (use 'close'); when the process exits without it,
the other end sees the TCP connection drop.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

# Keep the real stdout for our JSON lines; the library's own print()s go to stderr.
_OUT = sys.stdout
sys.stdout = sys.stderr

_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.stderr.write("peer.py: pyzo not installed; use the python from scripts/python-venv.sh\n")
    sys.exit(1)
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402
from yoton.misc import UID  # noqa: E402

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TOO_FEW = 3
EXIT_WAIT_TIMEOUT = 4

# action name -> number of arguments
ACTIONS = {
    "pub": 2,
    "sub": 2,
    "sleep": 1,
    "flush": 0,
    "close": 0,
    "wait-connected": 0,
    "wait-closed": 0,
}


def emit(**obj):
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def fail(code, msg):
    sys.stderr.write("peer.py: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(code)


def parse_actions(tokens):
    actions = []
    i = 0
    while i < len(tokens):
        name = tokens[i]
        if name not in ACTIONS:
            fail(EXIT_USAGE, "unknown action %r (known: %s)" % (name, ", ".join(ACTIONS)))
        n = ACTIONS[name]
        args = tokens[i + 1 : i + 1 + n]
        if len(args) != n:
            fail(EXIT_USAGE, "action %r needs %d argument(s)" % (name, n))
        i += 1 + n
        if name == "sub":
            try:
                args = [args[0], int(args[1])]
            except ValueError:
                fail(EXIT_USAGE, "sub: N must be an integer, got %r" % args[1])
        elif name == "sleep":
            try:
                args = [float(args[0])]
            except ValueError:
                fail(EXIT_USAGE, "sleep: SECONDS must be a number, got %r" % args[0])
        actions.append((name, args))
    return actions


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="peer.py",
        description="Yoton reference peer for interop tests.",
        usage="%(prog)s (--bind ADDR | --connect ADDR) [--timeout SECONDS] [--verbose] ACTION...",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--bind", metavar="ADDR")
    group.add_argument("--connect", metavar="ADDR")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="yoton verbose output (stderr)")
    parser.add_argument("actions", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    actions = parse_actions(opts.actions)
    timeout = max(0.01, float(opts.timeout))

    context = yoton.Context(verbose=opts.verbose)

    # Create all channels first (one per slot and kind)
    pubs, subs = {}, {}
    for name, args in actions:
        if name == "pub" and args[0] not in pubs:
            pubs[args[0]] = yoton.PubChannel(context, args[0])
        elif name == "sub" and args[0] not in subs:
            subs[args[0]] = yoton.SubChannel(context, args[0])

    # Record the close reason via the closed signal (dispatched by process_events)
    closed_reasons = []

    def on_closed(conn, reason):
        closed_reasons.append(reason)

    try:
        if opts.bind is not None:
            conn = context.bind(opts.bind)
            conn.closed.bind(on_closed)
            port = conn.port1
        else:
            conn = context.connect(opts.connect, timeout=timeout)
            conn.closed.bind(on_closed)
            port = conn.port2
    except Exception as e:
        fail(EXIT_ERROR, "%s failed: %s: %s" % ("bind" if opts.bind is not None else "connect", type(e).__name__, e))

    emit(event="ready", id=UID(context.id).get_hex(), pid=os.getpid(), port=port, local_port=conn.port1)

    for name, args in actions:
        if name == "pub":
            pubs[args[0]].send(args[1])
        elif name == "sub":
            slot, n = args
            ch = subs[slot]
            deadline = time.time() + timeout
            got = 0
            while got < n:
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                # block must be a float (an int is rejected by PackageQueue.pop)
                text = ch.recv(float(min(remaining, 0.25)))
                if text:  # empty means nothing arrived (empty messages are never sent)
                    got += 1
                    emit(event="msg", slot=slot, text=text)
            if got < n:
                fail(EXIT_TOO_FEW, "sub %s: received %d of %d messages within %gs" % (slot, got, n, timeout))
        elif name == "sleep":
            time.sleep(args[0])
        elif name == "flush":
            try:
                context.flush(timeout)
            except Exception as e:
                fail(EXIT_ERROR, "flush failed: %s" % e)
        elif name == "close":
            context.close()
        elif name == "wait-connected":
            deadline = time.time() + timeout
            while conn.is_waiting and time.time() < deadline:
                yoton.process_events()
                time.sleep(0.01)
            # id2 is only set by a successful handshake (the connection may
            # already have been closed again by the time we look)
            if not conn.id2:
                if conn.is_waiting:
                    fail(EXIT_WAIT_TIMEOUT, "wait-connected: not connected within %gs" % timeout)
                fail(EXIT_WAIT_TIMEOUT, "wait-connected: connection closed without connecting")
            emit(event="connected", id2=UID(conn.id2).get_hex(), pid2=conn.pid2, port2=conn.port2)
        elif name == "wait-closed":
            deadline = time.time() + timeout
            while conn.is_alive and time.time() < deadline:
                yoton.process_events()
                time.sleep(0.01)
            # Let the closed signal's event be dispatched
            end = time.time() + 0.5
            while not closed_reasons and not conn.is_alive and time.time() < end:
                yoton.process_events(0.05)
            if conn.is_alive:
                fail(EXIT_WAIT_TIMEOUT, "wait-closed: connection still open after %gs" % timeout)
            emit(event="closed", reason=closed_reasons[0] if closed_reasons else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
