#!/usr/bin/env python3
"""Generate hash and address test vectors from the Python Yoton reference.

Run with the reference venv:

    $(bash scripts/python-venv.sh) scripts/gen_hash_vectors.py

Writes
  yoton-core/tests/data/hash_vectors.txt
  yoton-core/tests/data/address_vectors.txt

Every value is computed by calling the reference's own functions
(yoton.misc.slot_hash, yoton.misc.port_hash, yoton.misc.split_address);
nothing is reimplemented here. Channel slot names are additionally
cross-checked against the hashes real yoton channel objects register.
"""

import importlib.util
import os
import sys

# Import yoton from inside the pyzo package without importing pyzo itself.
_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.exit("gen_hash_vectors.py: pyzo not installed; run with the venv from scripts/python-venv.sh")
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402
from yoton.misc import slot_hash, port_hash, split_address  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "yoton-core", "tests", "data")
COMMAND = "$(bash scripts/python-venv.sh) scripts/gen_hash_vectors.py"
REF = "pyzo==4.22.0 (yoton %s)" % yoton.__version__


def hash_names():
    names = [
        # empty and single characters
        "",
        "a",
        "A",
        "z",
        "0",
        " ",
        "\t",
        ".",
        "-",
        "\x00",
        "\x7f",
        "\xe9",  # é (one code point)
        "\xff",
        "\u0100",
        "\uffff",
        "\U0001f600",  # 😀, beyond the BMP: one code point in Python
        "\U0010ffff",
        # the canonical examples
        "test",
        "chat.txt.pub-sub",
        # channel slot names of every pattern and message type
        "chat.txt.sub-pub",
        "chat.bin.pub-sub",
        "chat.bin.sub-pub",
        "chat.obj.pub-sub",
        "chat.obj.sub-pub",
        "service.txt.req-rep",
        "service.txt.rep-req",
        "service.bin.req-rep",
        "service.bin.rep-req",
        "service.obj.req-rep",
        "service.obj.rep-req",
        "status.txt.state",
        "status.bin.state",
        "status.obj.state",
        # slot names used by pyzo itself
        "strm-out.txt.pub-sub",
        "ctrl-command.txt.pub-sub",
        "stat-debug.obj.state",
        "reqp-introspect.obj.req-rep",
        "reqp-introspect.obj.rep-req",
        # mixed case (hashed raw; channels lower() before hashing)
        "Chat.TXT.Pub-Sub",
        "CHAT.TXT.PUB-SUB",
        "Test",
        "TEST",
        # whitespace (hashed raw; channels strip() before hashing)
        " chat.txt.pub-sub",
        "chat.txt.pub-sub ",
        "\tchat.txt.pub-sub\n",
        "chat room.txt.pub-sub",
        "\r\n",
        # non-ASCII
        "caf\xe9",
        "cafe\u0301",  # e + combining acute: 5 code points
        "caf\xe9.txt.pub-sub",
        "\u03ba\u03b1\u03bd\u03ac\u03bb\u03b9.txt.pub-sub",  # κανάλι
        "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3",  # ΣΊΣΥΦΟΣ (final sigma on lower())
        "\u0130",  # İ: lower() gives 2 code points
        "\u9891\u9053.txt.pub-sub",  # 频道
        "\u65e5\u672c\u8a9e",  # 日本語
        "chat\U0001f600.txt.pub-sub",
        "\U0001f600\U0001f680\U0001f30d",
        # address port parts
        "localhost",
        "publichost",
        "test1",
        "test+3",
        "pyzo",
        "1234",
        "port_with_digits_42",
        "a:b",
        # long strings
        # The reference accumulates in an unbounded Python int and reduces only at the
        # end; for ASCII names the accumulator passes 2**64 at about 128 characters
        # (about 50 for code points near 0x10FFFF), so these cross that boundary.
        "a" * 100,
        "a" * 127,
        "a" * 128,
        "a" * 129,
        "a" * 130,
        "a" * 200,
        "\U0010ffff" * 50,
        "\U0001f600" * 100,
        ("abcdefghijklmnopqrstuvwxyz0123456789" * 30)[:1000],
        "x" * 1000,
        ("The quick brown fox jumps over the lazy dog. " * 120)[:5000],
        ("\xe9\u03a9\u9891\U0001f600" * 1250),  # 5000 code points, mixed widths
    ]
    # No duplicates, every name encodable as UTF-8
    assert len(names) == len(set(names)), "duplicate names"
    for n in names:
        n.encode("utf-8")
    return names


def check_channel_hashes():
    """Cross-check: real channel objects register slot_hash(name.strip().lower())."""
    ctx = yoton.Context()
    checks = [
        (yoton.PubChannel, yoton.TEXT, "Chat", "txt", "pub-sub", "sub-pub"),
        (yoton.SubChannel, yoton.BINARY, " Chat ", "bin", "sub-pub", "pub-sub"),
        # Req/Rep channels always use the OBJECT message type
        (yoton.ReqChannel, None, "Service", "obj", "req-rep", "rep-req"),
        (yoton.RepChannel, None, "Service", "obj", "rep-req", "req-rep"),
        (yoton.StateChannel, yoton.TEXT, "Status", "txt", "state", "state"),
    ]
    for cls, mt, base, ext, out_pat, in_pat in checks:
        ch = cls(ctx, base) if mt is None else cls(ctx, base, mt)
        out_name = base + "." + ext + "." + out_pat
        in_name = base + "." + ext + "." + in_pat
        assert ch._slot_out == out_name, (ch._slot_out, out_name)
        assert ch._slot_out_h == slot_hash(out_name.strip().lower())
        assert ch._slot_in_h == slot_hash(in_name.strip().lower())
        ch.close()
        # A new context per channel so slots never collide
        ctx = yoton.Context()


def write_hash_vectors(path):
    lines = [
        "# Yoton slot/port hash vectors generated from the Python reference %s by:" % REF,
        "#   %s" % COMMAND,
        "# Format: <hex of the UTF-8 bytes of the name>\\t<slot_hash(name) decimal>\\t<port_hash(name) decimal>",
        "# (the hex field is empty for the empty name). Hashes are of the exact raw string: the",
        "# reference functions iterate over Unicode code points (ord(c)) and use len(name) in code",
        "# points; they do NOT normalise. Channels normalise with slot.strip().lower() before",
        "# calling slot_hash (yoton/channels/channels_base.py:123); split_address passes the",
        "# port part (text before an optional '+offset') to port_hash unchanged (yoton/misc.py:174).",
        "# slot_hash = yoton.misc.slot_hash (8 + val mod (2**64-8)), port_hash = yoton.misc.port_hash",
        "# (49152 + val mod 2**14), where val is the same accumulator in both. val is an unbounded",
        "# Python int (reduced only at the end), so names over ~128 ASCII chars exceed 64 bits.",
    ]
    for name in hash_names():
        bb = name.encode("utf-8")
        lines.append("%s\t%d\t%d" % (bb.hex(), slot_hash(name), port_hash(name)))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def address_inputs():
    return [
        "localhost:test",
        "localhost:test+3",
        "localhost:test+0",
        "localhost:test+-3",
        "127.0.0.1:5000",
        "tcp://localhost:test",
        "TCP://LocalHost:test",
        "itc://localhost:test",
        "localhost:1234+1",  # not an int -> port_hash('1234') + 1 (!)
        "localhost:1234",
        "localhost:0",
        "localhost:Test",
        "localhost:test1",
        "localhost:test2",
        "localhost:chan42+7",
        "192.168.1.5:50000",
        "example.com:pyzo",
        ":test",  # empty host (bind to all interfaces)
        "localhost:",  # empty port name -> port_hash('')
        "localhost:a:b",  # split at first ':' only
        "localhost: 80",  # int(' 80') == 80
        "localhost:1_000",  # int('1_000') == 1000 in Python 3
        "localhost:\u0661\u0662\u0663",  # Arabic-Indic digits: int() gives 123
        "localhost:caf\xe9",
    ]


def address_errors():
    return [
        "localhost",  # no ':'
        "localhost:test+x",  # bad offset
        "localhost:test+",  # empty offset
        "localhost:65536",
        "localhost:test+20000",  # hashed port + offset >= 2**16
    ]


def write_address_vectors(path):
    lines = [
        "# Yoton address vectors generated from the Python reference %s by:" % REF,
        "#   %s" % COMMAND,
        "# Format: <address>\\t<host as resolved by yoton.misc.split_address>\\t<port>",
        "# split_address(address) -> (protocol, host, port); the protocol (text before '://',",
        "# lower-cased, default 'tcp') is not recorded and is ignored by Context.bind/connect.",
        "# 'localhost' (any case) -> 127.0.0.1. 'publichostN' entries are machine specific and omitted.",
        "# Numeric ports go through Python int() (accepts surrounding whitespace, '_' separators and",
        "# non-ASCII decimal digits); otherwise 'name[+offset]' -> port_hash(name) + int(offset).",
        "# Inputs the reference rejects with ValueError (message after '->'):",
    ]
    for addr in address_errors():
        try:
            res = split_address(addr)
        except ValueError as e:
            lines.append("# error: %r -> %s" % (addr, e))
        else:
            raise AssertionError("expected error for %r, got %r" % (addr, res))
    for addr in address_inputs():
        assert "\t" not in addr and "\n" not in addr
        protocol, host, port = split_address(addr)
        lines.append("%s\t%s\t%d" % (addr, host, port))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def main():
    check_channel_hashes()
    os.makedirs(DATA, exist_ok=True)
    p1 = os.path.join(DATA, "hash_vectors.txt")
    p2 = os.path.join(DATA, "address_vectors.txt")
    n1 = write_hash_vectors(p1)
    n2 = write_address_vectors(p2)
    print("wrote %s (%d lines)" % (os.path.relpath(p1, ROOT), n1))
    print("wrote %s (%d lines)" % (os.path.relpath(p2, ROOT), n2))


if __name__ == "__main__":
    main()
