#!/usr/bin/env python3
"""Scriptable Yoton reference peer for the channel-level interop tests
(yoton-channels/tests/python_interop.rs).

Run with the reference venv (bash scripts/python-venv.sh prints its python):

    interop_peer.py [--bind ADDR]... [--connect ADDR]... [--timeout S] [--life S]
                    [--verbose] [ACTION ARG... ...]

Start-up: a yoton.Context is made; the --bind / --connect options are carried out
in order; then ONE line is printed:

    {"event":"ready","id":HEX16,"pid":PID,"port":PORT|null,"ports":[PORT,...]}

(PORT: the listening port of a --bind, the remote port of a --connect; "port" is
the first one.) Then the ACTIONs given on the command line run in order, and then
further actions are read from stdin, one per line, each line a JSON array of
strings: ["pub","txt","chat","hello"]. At the end of stdin the peer exits (0).
While it waits for stdin it keeps the yoton event loop running
(yoton.process_events()), so signals and event-driven channels work.

Every stdout line is one JSON object (ASCII). Every action prints at least one
line; the simple ones print {"event":"ok","action":NAME,...}. On failure an
{"event":"error","action":NAME,"text":...} line is printed and the process exits
with 1 (usage: 2; too few messages: 3; wait timed out: 4; --life ran out: 5).
What the library itself prints goes to stderr.

Connections (K: 0-based index in the order they were made)
    bind ADDR                  -> {"event":"bound","conn":K,"port":P}
    connect ADDR               -> {"event":"connected","conn":K,"port":P,"id2":HEX16}
    wait-connected K           -> {"event":"connected","conn":K,"id2":HEX16,"pid2":N,"port2":P}
    wait-closed K              -> {"event":"closed","conn":K,"reason":TEXT}
    conn-status K              -> {"event":"conn-status","conn":K,"alive":B,"connected":B,"reason":R|null}
    close-conn K [REASON]      Connection.close(REASON)   -> ok
    close                      Context.close()            -> ok
    flush                      Context.flush(--timeout)   -> ok
    sleep SECONDS              -> ok
    exit                       exit 0 at once (no close)

Values (VALUE) by message type
    txt   the text itself
    bin   hex:HEX | b64:BASE64 | text:TEXT (UTF-8) | gen:N:SEED (see gen_bytes)
    obj   json:JSON | name:NAME (a predefined object, see NAMED) | hex:HEX (decoded
          with the reference decoder)

Publish / subscribe (TYPE: txt | bin | obj; one channel per type and slot)
    pub TYPE SLOT VALUE        -> ok with "secs" (and "hex" for obj, "len"/"sha256" for bin)
    pub-named SLOT NAMES       obj: publish the predefined objects NAMES (comma
                               separated, or "all"); one {"event":"pub","name":..,"hex":..} each
    pubmany SLOT N [INTERVAL]  txt: publish "0".."N-1", as fast as it can or sleeping
                               INTERVAL s after each ->
                               {"event":"published","n":N,"secs":S,"max_send":S}
    pubflood SLOT              txt: publish "0","1",... until killed, printing
                               {"event":"progress","sent":N} after every 1000
    sub-open TYPE SLOT         create the SubChannel -> ok
    sub TYPE SLOT N            receive N messages, one line each:
                               txt {"event":"msg","type":"txt","text":T}
                               bin {"event":"msg","type":"bin","len":N,"sha256":HEX}
                               obj {"event":"msg","type":"obj","hex":HEX,"repr":R}
                               where HEX is the message re-encoded by the reference encoder
    sub-named SLOT NAMES       obj: like sub, for len(NAMES) messages, adding
                               "name" and "same":(HEX == encoding of that predefined object)
    subcount SLOT N            txt: receive N messages, check they are "0".."N-1" ->
                               {"event":"subcount","n":GOT,"in_order":B,"first_bad":X|null}
    sync-sub SLOT N DELAY      txt: SubChannel in sync mode, reading N messages with a
                               sleep of DELAY s after each (events processed meanwhile) ->
                               {"event":"sync-sub","n":..,"in_order":..,"max_pending":..,"secs":..}

Request / reply (one channel per slot)
    rep SLOT MODE              a RepChannel with add(a,b), kw(a,b=2,c=3), fail(),
                               slow(t), record(tag) (and the built-in echo) in MODE
                               (thread | event | off). Every call of these prints
                               {"event":"called","slot":..,"method":..,"args":[..]}
    rep-mode SLOT MODE         switch mode -> ok
    req SLOT METHOD ARGS KWARGS [TIMEOUT]
                               call and wait -> {"event":"reply","ok":true,"hex":HEX,"json":J}
                               or {"event":"reply","ok":false,"error":CLASS,"text":TEXT}
    req-async TAG SLOT METHOD ARGS KWARGS     call, keep the future as TAG -> ok
    cancel TAG                 -> {"event":"cancel","tag":..,"result":B,"cancelled":B}
    result TAG [TIMEOUT]       wait for it -> reply line (with "tag")
    (ARGS: a JSON list, KWARGS: a JSON object)

State
    state-open TYPE SLOT       -> ok
    state-set TYPE SLOT VALUE  -> ok
    state-get TYPE SLOT        -> {"event":"state","value":V}  (obj: "hex" and "json")
    state-wait TYPE SLOT VALUE wait until the state equals VALUE -> state line

Objects
    obj-encode NAME            -> {"event":"obj","name":..,"hex":..}
    obj-names                  -> {"event":"obj-names","names":[..]}

Connect/close cycles (slot "cycle" txt out, "cycle-ack" txt in)
    cycle MODE I CLOSER        MODE: "bind" (prints {"event":"cycle-port","i":I,"port":P})
                               or an address to connect to. Waits until connected,
                               publishes "cycle I", waits for "ack I", then CLOSER
                               "py" closes the connection, "rust" waits until the other
                               end closed it -> {"event":"cycle-done","i":I,"reason":..}
"""

import argparse
import base64
import hashlib
import importlib.util
import json
import math
import os
import select
import struct
import sys
import threading
import time

# Keep the real stdout for our JSON lines; the library's own print()s go to stderr.
_OUT = sys.stdout
sys.stdout = sys.stderr

_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.stderr.write("interop_peer.py: pyzo not installed; use the python from scripts/python-venv.sh\n")
    sys.exit(1)
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402
from yoton.misc import UID  # noqa: E402

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TOO_FEW = 3
EXIT_WAIT_TIMEOUT = 4
EXIT_LIFE = 5

_emit_lock = threading.Lock()


def emit(**obj):
    line = json.dumps(obj)
    with _emit_lock:
        _OUT.write(line + "\n")
        _OUT.flush()


class Fail(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, text)
        self.code = code


def hex_id(i):
    return UID(i).get_hex()


# ----------------------------------------------------------------- test data


def gen_bytes(n, seed):
    """n bytes: the little-endian u64 words (k * 0x9E3779B97F4A7C15) ^ seed for
    k = 0, 1, ...; truncated to n. Every 8-byte word differs from the others, so a
    lost, duplicated or reordered piece changes the content. Mirrored in Rust."""
    words = (n + 7) // 8
    mask = (1 << 64) - 1
    seed &= mask
    mul = 0x9E3779B97F4A7C15
    data = struct.pack("<%dQ" % words, *[((k * mul) & mask) ^ seed for k in range(words)])
    return data[:n]


def _f(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _mixed(i):
    r = i % 5
    if r == 0:
        return i
    if r == 1:
        return i / 2.0
    if r == 2:
        return "s%d" % i
    if r == 3:
        return None
    return [i]


def _nested(kind, depth):
    v = "leaf"
    for i in range(depth):
        if kind == "list":
            v = [v]
        elif kind == "tuple":
            v = (v,)
        elif kind == "dict":
            v = {"d": v}
        elif i % 3 == 0:
            v = [i, v]
        elif i % 3 == 1:
            v = (v, i)
        else:
            v = {"k": v, "i": i}
    return v


def named_objects():
    """The predefined test objects, in order. Built the same way in Rust
    (yoton-channels/tests/pypeer.rs, named_values)."""
    return [
        ("none", None),
        ("true", True),
        ("false", False),
        ("int_zero", 0),
        ("int_one", 1),
        ("int_neg_one", -1),
        ("int_2_32", 2**32),
        ("int_max", 2**63 - 1),
        ("int_min", -(2**63)),
        ("float_zero", 0.0),
        ("float_neg_zero", -0.0),
        ("float_pi", 3.141592653589793),
        ("float_third", 1.0 / 3.0),
        ("float_tiny", 5e-324),
        ("float_max", 1.7976931348623157e308),
        ("float_inf", float("inf")),
        ("float_neg_inf", float("-inf")),
        ("float_nan", _f(0x7FF8000000000000)),
        ("float_neg_nan", _f(0xFFF8000000000000)),
        ("float_nan_payload", _f(0x7FF80000DEADBEEF)),
        ("float_snan", _f(0x7FF0000000000001)),
        ("str_0", ""),
        ("str_1", "a"),
        ("str_254", "x" * 254),
        ("str_255", "x" * 255),
        ("str_256", "x" * 256),
        ("str_255_utf8", "\u00e9" * 127 + "a"),  # 255 bytes, 128 characters
        ("str_non_ascii", "h\u00e9llo w\u00f6rld \u2713 \U0001f980\U0001f40d \u65e5\u672c\u8a9e \u0000 nul"),
        ("str_100000", "\u03b1\u03b2\u03b3\U0001f980x" * 9090 + "\u03b1\u03b2\u03b3\U0001f980"),
        ("list_empty", []),
        ("tuple_empty", ()),
        ("dict_empty", {}),
        ("list_254", list(range(254))),
        ("list_255", list(range(255))),
        ("list_256", list(range(256))),
        ("tuple_255", tuple(range(255))),
        ("tuple_300_mixed", tuple(_mixed(i) for i in range(300))),
        ("list_mixed", [None, True, 1, 1.5, "s", [1], (2,), {"k": "v"}]),
        (
            "dict_mixed",
            {
                "a": 1,
                "b": [1, 2],
                3: "int key",
                None: "none key",
                2.5: "float key",
                (1, "x"): "tuple key",
                "nested": {"x": (1, [2, {"y": None}])},
            },
        ),
        ("dict_300", dict(("k%d" % i, i) for i in range(300))),
        ("nested_list_100", _nested("list", 100)),
        ("nested_tuple_100", _nested("tuple", 100)),
        ("nested_dict_100", _nested("dict", 100)),
        ("nested_mixed_100", _nested("mixed", 100)),
    ]


NAMED = dict(named_objects())


def obj_encode(obj):
    return yoton.OBJECT.message_to_bytes(obj)


def obj_decode(bb):
    return yoton.OBJECT.message_from_bytes(bb)


def jsonable(obj):
    """A JSON-friendly view of a decoded object (tuples become lists, non-string
    keys their repr, non-finite floats their repr). For exact checks use "hex"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return [jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return dict((k if isinstance(k, str) else repr(k), jsonable(v)) for k, v in obj.items())
    return obj


def parse_value(mtype, spec):
    if mtype == "txt":
        return spec
    if mtype == "bin":
        kind, _, rest = spec.partition(":")
        if kind == "hex":
            return bytes.fromhex(rest)
        if kind == "b64":
            return base64.b64decode(rest)
        if kind == "text":
            return rest.encode("utf-8")
        if kind == "gen":
            n, seed = rest.split(":")
            return gen_bytes(int(n), int(seed))
        raise Fail(EXIT_USAGE, "bad bin value %r" % spec[:80])
    if mtype == "obj":
        kind, _, rest = spec.partition(":")
        if kind == "json":
            return json.loads(rest)
        if kind == "name":
            if rest not in NAMED:
                raise Fail(EXIT_USAGE, "no predefined object %r" % rest)
            return NAMED[rest]
        if kind == "hex":
            return obj_decode(bytes.fromhex(rest))
        raise Fail(EXIT_USAGE, "bad obj value %r" % spec[:80])
    raise Fail(EXIT_USAGE, "bad message type %r" % mtype)


def message_type(mtype):
    try:
        return {"txt": yoton.TEXT, "bin": yoton.BINARY, "obj": yoton.OBJECT}[mtype]
    except KeyError:
        raise Fail(EXIT_USAGE, "bad message type %r" % mtype)


def describe(mtype, m):
    """The fields printed for a received message."""
    if mtype == "txt":
        return {"text": m}
    if mtype == "bin":
        return {"len": len(m), "sha256": hashlib.sha256(m).hexdigest()}
    r = repr(m)
    return {"hex": obj_encode(m).hex(), "repr": r if len(r) <= 300 else r[:300] + "..."}


# ----------------------------------------------------------------- replier


class TestReplier(yoton.RepChannel):
    """The methods a requester can call (plus RepChannel.echo)."""

    def _note(self, method, *args):
        emit(event="called", slot=self._slot_name, method=method, args=jsonable(list(args)))

    def add(self, a, b):
        self._note("add", a, b)
        return a + b

    def kw(self, a, b=2, c=3):
        self._note("kw", a, b, c)
        return {"a": a, "b": b, "c": c}

    def fail(self, *args):
        self._note("fail", *args)
        raise RuntimeError("boom: failing on purpose \u2713")

    def slow(self, t):
        start = time.time()
        self._note("slow", t)
        time.sleep(t)
        return {"who": "python", "id": hex(self._context.id), "start": start, "end": time.time()}

    def record(self, tag):
        self._note("record", tag)
        return tag


# ----------------------------------------------------------------- the peer


class Peer:
    def __init__(self, opts):
        self.timeout = max(0.01, float(opts.timeout))
        self.context = yoton.Context(verbose=opts.verbose)
        self.conns = []
        self.closed_reasons = {}
        self.pubs = {}
        self.subs = {}
        self.reps = {}
        self.reqs = {}
        self.states = {}
        self.futures = {}

    # --- connections

    def _track(self, conn):
        k = len(self.conns)
        self.conns.append(conn)

        def on_closed(c, reason, k=k):
            self.closed_reasons[k] = reason

        conn.closed.bind(on_closed)
        return k

    def bind(self, addr):
        conn = self.context.bind(addr)
        return self._track(conn), conn.port1

    def connect(self, addr):
        conn = self.context.connect(addr, timeout=self.timeout)
        return self._track(conn), conn.port2

    def conn(self, k):
        try:
            return self.conns[int(k)]
        except (IndexError, ValueError):
            raise Fail(EXIT_USAGE, "no connection %r" % (k,))

    def wait_connected(self, k):
        conn = self.conn(k)
        deadline = time.time() + self.timeout
        while conn.is_waiting and time.time() < deadline:
            yoton.process_events()
            time.sleep(0.005)
        # id2 is only set by a successful handshake
        if not conn.id2:
            raise Fail(EXIT_WAIT_TIMEOUT, "connection %s: not connected within %gs" % (k, self.timeout))
        return conn

    def wait_closed(self, k):
        k = int(k)
        conn = self.conn(k)
        deadline = time.time() + self.timeout
        while (conn.is_alive or k not in self.closed_reasons) and time.time() < deadline:
            yoton.process_events(0.01)
        if conn.is_alive:
            raise Fail(EXIT_WAIT_TIMEOUT, "connection %s still open after %gs" % (k, self.timeout))
        return self.closed_reasons.get(k)

    # --- channels

    def pub(self, mtype, slot):
        key = (mtype, slot)
        if key not in self.pubs:
            self.pubs[key] = yoton.PubChannel(self.context, slot, message_type(mtype))
        return self.pubs[key]

    def sub(self, mtype, slot):
        key = (mtype, slot)
        if key not in self.subs:
            self.subs[key] = yoton.SubChannel(self.context, slot, message_type(mtype))
        return self.subs[key]

    def state(self, mtype, slot):
        key = (mtype, slot)
        if key not in self.states:
            self.states[key] = yoton.StateChannel(self.context, slot, message_type(mtype))
        return self.states[key]

    def req(self, slot):
        if slot not in self.reqs:
            self.reqs[slot] = yoton.ReqChannel(self.context, slot)
        return self.reqs[slot]

    def recv(self, ch, deadline):
        """(True, message), or (False, None) when the deadline passed. Events are
        processed while waiting (signals need them). Uses the channel's _recv:
        SubChannel.recv cannot tell an obj None message from nothing."""
        while True:
            yoton.process_events()
            remaining = deadline - time.time()
            if remaining <= 0:
                return False, None
            # block must be a float (an int is rejected by PackageQueue.pop)
            package = ch._recv(float(min(remaining, 0.05)))
            if package is not None:
                return True, ch.message_from_bytes(package._data)

    def receive_n(self, mtype, slot, n, each):
        ch = self.sub(mtype, slot)
        deadline = time.time() + self.timeout
        got = 0
        while got < n:
            ok, m = self.recv(ch, deadline)
            if not ok:
                raise Fail(EXIT_TOO_FEW, "sub %s %s: received %d of %d messages within %gs" % (mtype, slot, got, n, self.timeout))
            each(got, m)
            got += 1

    # --- req/rep

    def reply_line(self, fut, timeout, **extra):
        try:
            result = fut.result(timeout)
        except Exception as e:
            emit(event="reply", ok=False, error=type(e).__name__, text=str(e), **extra)
        else:
            emit(event="reply", ok=True, hex=obj_encode(result).hex(), json=jsonable(result), **extra)

    # --- actions

    def run(self, name, args):
        def need(n):
            if len(args) < n:
                raise Fail(EXIT_USAGE, "%s needs %d argument(s), got %r" % (name, n, args))

        if name == "bind":
            need(1)
            k, port = self.bind(args[0])
            emit(event="bound", conn=k, port=port)
        elif name == "connect":
            need(1)
            k, port = self.connect(args[0])
            emit(event="connected", conn=k, port=port, id2=hex_id(self.conns[k].id2))
        elif name == "wait-connected":
            need(1)
            conn = self.wait_connected(args[0])
            emit(event="connected", conn=int(args[0]), id2=hex_id(conn.id2), pid2=conn.pid2, port2=conn.port2)
        elif name == "wait-closed":
            need(1)
            reason = self.wait_closed(args[0])
            emit(event="closed", conn=int(args[0]), reason=reason)
        elif name == "conn-status":
            need(1)
            conn = self.conn(args[0])
            emit(event="conn-status", conn=int(args[0]), alive=conn.is_alive, connected=conn.is_connected,
                 reason=self.closed_reasons.get(int(args[0])))
        elif name == "close-conn":
            need(1)
            reason = args[1] if len(args) > 1 else None
            self.conn(args[0]).close(reason)
            emit(event="ok", action=name)
        elif name == "close":
            self.context.close()
            emit(event="ok", action=name)
        elif name == "flush":
            self.context.flush(self.timeout)
            emit(event="ok", action=name)
        elif name == "sleep":
            need(1)
            end = time.time() + float(args[0])
            while time.time() < end:
                yoton.process_events(0.01)
            emit(event="ok", action=name)
        elif name == "exit":
            _OUT.flush()
            os._exit(0)

        elif name == "pub":
            need(3)
            mtype, slot = args[0], args[1]
            value = parse_value(mtype, args[2])
            ch = self.pub(mtype, slot)
            t0 = time.time()
            ch.send(value)
            extra = {}
            if mtype == "obj":
                extra["hex"] = obj_encode(value).hex()
            elif mtype == "bin":
                extra["len"] = len(value)
                extra["sha256"] = hashlib.sha256(value).hexdigest()
            emit(event="ok", action=name, secs=time.time() - t0, **extra)
        elif name == "pub-named":
            need(2)
            names = [n for n, _ in named_objects()] if args[1] == "all" else args[1].split(",")
            ch = self.pub("obj", args[0])
            for n in names:
                obj = parse_value("obj", "name:" + n)
                ch.send(obj)
                emit(event="pub", name=n, hex=obj_encode(obj).hex())
        elif name == "pubmany":
            need(2)
            ch = self.pub("txt", args[0])
            n = int(args[1])
            interval = float(args[2]) if len(args) > 2 else 0.0
            t0 = time.time()
            max_send = 0.0
            for i in range(n):
                t1 = time.time()
                ch.send(str(i))
                max_send = max(max_send, time.time() - t1)
                if interval:
                    time.sleep(interval)
            emit(event="published", n=n, secs=time.time() - t0, max_send=max_send)
        elif name == "pubflood":
            need(1)
            ch = self.pub("txt", args[0])
            i = 0
            while True:
                ch.send(str(i))
                i += 1
                if i % 1000 == 0:
                    emit(event="progress", sent=i)
        elif name == "sub-open":
            need(2)
            self.sub(args[0], args[1])
            emit(event="ok", action=name)
        elif name == "sub":
            need(3)
            mtype, slot = args[0], args[1]

            def each(i, m):
                emit(event="msg", type=mtype, slot=slot, **describe(mtype, m))

            self.receive_n(mtype, slot, int(args[2]), each)
            emit(event="ok", action=name)
        elif name == "sub-named":
            need(2)
            names = [n for n, _ in named_objects()] if args[1] == "all" else args[1].split(",")

            def each(i, m):
                hx = obj_encode(m).hex()
                same = hx == obj_encode(parse_value("obj", "name:" + names[i])).hex()
                emit(event="msg", type="obj", name=names[i], same=same, hex=hx)

            self.receive_n("obj", args[0], len(names), each)
            emit(event="ok", action=name)
        elif name == "subcount":
            need(2)
            state = {"in_order": True, "first_bad": None}

            def each(i, m):
                if m != str(i) and state["in_order"]:
                    state["in_order"] = False
                    state["first_bad"] = [i, m]

            n = int(args[1])
            self.receive_n("txt", args[0], n, each)
            emit(event="subcount", n=n, in_order=state["in_order"], first_bad=state["first_bad"])
        elif name == "sync-sub":
            need(3)
            ch = self.sub("txt", args[0])
            n, delay = int(args[1]), float(args[2])
            ch.set_sync_mode(True)
            t0 = time.time()
            deadline = t0 + self.timeout
            got, in_order, max_pending = 0, True, 0
            while got < n:
                if time.time() > deadline:
                    raise Fail(EXIT_TOO_FEW, "sync-sub %s: received %d of %d within %gs" % (args[0], got, n, self.timeout))
                # The event loop runs (the received signal checks the queue status),
                # and the public recv() checks it too, as a user's reading loop would.
                yoton.process_events()
                max_pending = max(max_pending, ch.pending)
                m = ch.recv(0.05)  # "" when nothing came (empty messages are never sent)
                if not m:
                    continue
                in_order = in_order and m == str(got)
                got += 1
                time.sleep(delay)
            secs = time.time() - t0
            ch.set_sync_mode(False)  # unlocks the publishers if they are locked
            emit(event="sync-sub", n=got, in_order=in_order, max_pending=max_pending, secs=secs)
        elif name == "rep":
            need(2)
            slot = args[0]
            if slot not in self.reps:
                rep = TestReplier(self.context, slot)
                rep._slot_name = slot
                self.reps[slot] = rep
            self.reps[slot].set_mode(args[1])
            emit(event="ok", action=name)
        elif name == "rep-mode":
            need(2)
            self.reps[args[0]].set_mode(args[1])
            emit(event="ok", action=name)
        elif name == "req":
            need(4)
            fut = getattr(self.req(args[0]), args[1])(*json.loads(args[2]), **json.loads(args[3]))
            timeout = float(args[4]) if len(args) > 4 else self.timeout
            self.reply_line(fut, timeout)
        elif name == "req-async":
            need(5)
            tag = args[0]
            self.futures[tag] = getattr(self.req(args[1]), args[2])(*json.loads(args[3]), **json.loads(args[4]))
            emit(event="ok", action=name, tag=tag)
        elif name == "cancel":
            need(1)
            fut = self.futures[args[0]]
            result = fut.cancel()
            emit(event="cancel", tag=args[0], result=result, cancelled=fut.cancelled())
        elif name == "result":
            need(1)
            timeout = float(args[1]) if len(args) > 1 else self.timeout
            self.reply_line(self.futures[args[0]], timeout, tag=args[0])

        elif name == "state-open":
            need(2)
            self.state(args[0], args[1])
            emit(event="ok", action=name)
        elif name == "state-set":
            need(3)
            self.state(args[0], args[1]).send(parse_value(args[0], args[2]))
            emit(event="ok", action=name)
        elif name in ("state-get", "state-wait"):
            need(2 if name == "state-get" else 3)
            mtype = args[0]
            ch = self.state(mtype, args[1])
            if name == "state-wait":
                want = parse_value(mtype, args[2])
                enc = obj_encode if mtype == "obj" else (lambda v: v)
                deadline = time.time() + self.timeout
                while enc(ch.recv()) != enc(want) and time.time() < deadline:
                    yoton.process_events(0.005)
                if enc(ch.recv()) != enc(want):
                    raise Fail(EXIT_WAIT_TIMEOUT, "state %s is %r, not %r after %gs" % (args[1], ch.recv(), want, self.timeout))
            value = ch.recv()
            if mtype == "obj":
                emit(event="state", hex=obj_encode(value).hex(), json=jsonable(value))
            elif mtype == "bin":
                emit(event="state", value=value.hex())
            else:
                emit(event="state", value=value)

        elif name == "obj-encode":
            need(1)
            emit(event="obj", name=args[0], hex=obj_encode(parse_value("obj", "name:" + args[0])).hex())
        elif name == "obj-names":
            emit(event="obj-names", names=[n for n, _ in named_objects()])

        elif name == "cycle":
            need(3)
            self.cycle(args[0], int(args[1]), args[2])
        else:
            raise Fail(EXIT_USAGE, "unknown action %r" % name)

    def cycle(self, mode, i, closer):
        pub = self.pub("txt", "cycle")
        ack = self.sub("txt", "cycle-ack")
        if mode == "bind":
            k, port = self.bind("127.0.0.1:0")
            emit(event="cycle-port", i=i, port=port)
            self.wait_connected(k)
        else:
            k, _ = self.connect(mode)
        pub.send("cycle %d" % i)
        deadline = time.time() + self.timeout
        while True:
            ok, m = self.recv(ack, deadline)
            if not ok:
                raise Fail(EXIT_TOO_FEW, "cycle %d: no ack within %gs" % (i, self.timeout))
            if m == "ack %d" % i:
                break
            # anything else is a stale ack of an earlier cycle: not expected
            raise Fail(EXIT_ERROR, "cycle %d: unexpected %r" % (i, m))
        if closer == "py":
            self.conns[k].close("cycle %d closed by python" % i)
        reason = self.wait_closed(k)
        emit(event="cycle-done", i=i, reason=reason)


def parse_argv_actions(tokens, arity):
    """Split the command-line tokens into actions (name, args)."""
    actions = []
    i = 0
    while i < len(tokens):
        name = tokens[i]
        if name not in arity:
            raise Fail(EXIT_USAGE, "unknown action %r on the command line" % name)
        n = arity[name]
        args = tokens[i + 1 : i + 1 + n]
        if len(args) != n:
            raise Fail(EXIT_USAGE, "action %r needs %d argument(s)" % (name, n))
        actions.append((name, args))
        i += 1 + n
    return actions


# Number of arguments of each action on the command line (stdin lines may add
# the optional ones).
ARITY = {
    "bind": 1, "connect": 1, "wait-connected": 1, "wait-closed": 1, "conn-status": 1, "close-conn": 1,
    "close": 0, "flush": 0, "sleep": 1, "exit": 0,
    "pub": 3, "pub-named": 2, "pubmany": 2, "pubflood": 1, "sub-open": 2, "sub": 3,
    "sub-named": 2, "subcount": 2, "sync-sub": 3,
    "rep": 2, "rep-mode": 2, "req": 4, "req-async": 5, "cancel": 1, "result": 1,
    "state-open": 2, "state-set": 3, "state-get": 2, "state-wait": 3,
    "obj-encode": 1, "obj-names": 0, "cycle": 3,
}  # fmt: skip


def stdin_actions():
    """Actions from stdin (one JSON array per line), processing yoton events while
    waiting for input. Ends at the end of stdin."""
    fd = sys.stdin.fileno()
    buf = b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
        r, _, _ = select.select([fd], [], [], 0.02)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                if buf.strip():
                    yield buf
                return
            buf += chunk
        else:
            yoton.process_events()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="interop_peer.py", description="Scriptable Yoton reference peer.")
    parser.add_argument("--bind", metavar="ADDR", action="append", default=[])
    parser.add_argument("--connect", metavar="ADDR", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=10.0, help="bound of every wait (s)")
    parser.add_argument("--life", type=float, default=120.0, help="exit (5) after this long, whatever happens")
    parser.add_argument("--verbose", action="store_true", help="yoton verbose output (stderr)")
    parser.add_argument("actions", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)

    def watchdog():
        time.sleep(opts.life)
        sys.stderr.write("interop_peer.py: --life of %gs ran out\n" % opts.life)
        sys.stderr.flush()
        os._exit(EXIT_LIFE)

    threading.Thread(target=watchdog, daemon=True).start()

    name = "start-up"
    try:
        actions = parse_argv_actions(opts.actions, ARITY)
        peer = Peer(opts)
        ports = []
        for addr in opts.bind:
            ports.append(peer.bind(addr)[1])
        for addr in opts.connect:
            ports.append(peer.connect(addr)[1])
        emit(event="ready", id=hex_id(peer.context.id), pid=os.getpid(), port=ports[0] if ports else None, ports=ports)

        for name, args in actions:
            peer.run(name, args)
        for line in stdin_actions():
            tokens = json.loads(line.decode("utf-8"))
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
                raise Fail(EXIT_USAGE, "a stdin line must be a JSON array of strings: %r" % line[:200])
            name = tokens[0]
            peer.run(name, tokens[1:])
    except Fail as e:
        emit(event="error", action=name, text=str(e))
        sys.stderr.write("interop_peer.py: %s: %s\n" % (name, e))
        sys.stderr.flush()
        return e.code
    except Exception as e:
        emit(event="error", action=name, text="%s: %s" % (type(e).__name__, e))
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    code = main()
    _OUT.flush()
    sys.stderr.flush()
    # Daemon threads of the library (and ours) must not delay the exit.
    os._exit(code)
