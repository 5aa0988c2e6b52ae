#!/usr/bin/env python3
"""Yoton reference request/reply peer for the interop tests of yoton_tcp::clientserver.

Run with the reference venv (bash scripts/python-venv.sh prints its python):

    clientserver_peer.py serve ADDR [--concurrent]
        Bind a yoton.RequestServer at ADDR (port 0: any free port), print
        {"event":"ready","port":PORT}, then serve until killed. The handler
        prints {"event":"request","text":REQUEST} (the request exactly as the
        reference hands it over, i.e. with its trailing CRLF) and replies with
        the request upper-cased.

    clientserver_peer.py request ADDR TEXT [--timeout SECONDS]
        Call yoton.do_request(ADDR, TEXT, SECONDS) (default 5) and print
        {"event":"reply","reply":REPLY} (REPLY is null when do_request
        returned None), or {"event":"error","error":MESSAGE} with exit code 1
        when it raised.

Every stdout line is one JSON object (ASCII, flushed immediately). Anything the
yoton library itself prints goes to stderr. Exit codes: 0 ok, 1 error, 2 usage.
"""

import argparse
import importlib.util
import json
import os
import sys
import threading

# Keep the real stdout for our JSON lines; the library's own print()s go to stderr.
_OUT = sys.stdout
sys.stdout = sys.stderr
_OUT_LOCK = threading.Lock()

_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.stderr.write(
        "clientserver_peer.py: pyzo not installed; use the python from scripts/python-venv.sh\n"
    )
    sys.exit(1)
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402


def emit(**obj):
    with _OUT_LOCK:
        _OUT.write(json.dumps(obj) + "\n")
        _OUT.flush()


class UpperServer(yoton.RequestServer):
    def handle_request(self, request):
        emit(event="request", text=request)
        return request.upper()


def serve(args):
    server = UpperServer(args.address, args.concurrent)
    # The reference binds in __init__ but only listens in run(): listen now, so that
    # a client connecting right after the ready line is not refused (run() calls
    # listen(1) again, which is harmless).
    server._bsd_socket.listen(1)
    port = server._bsd_socket.getsockname()[1]
    emit(event="ready", port=port)
    server.run()  # in this thread, until the process is killed
    return 0


def request(args):
    try:
        reply = yoton.do_request(args.address, args.text, args.timeout)
    except Exception as e:  # e.g. RuntimeError: No server is listening
        emit(event="error", error="%s: %s" % (type(e).__name__, e))
        return 1
    emit(event="reply", reply=reply)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("address")
    p.add_argument("--concurrent", action="store_true")
    p.set_defaults(run=serve)
    p = sub.add_parser("request")
    p.add_argument("address")
    p.add_argument("text")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(run=request)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
