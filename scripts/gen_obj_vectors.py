#!/usr/bin/env python3
"""Generate Yoton object-encoding (message type 'obj') test vectors from the
Python Yoton reference.

Run with the reference venv:

    $(bash scripts/python-venv.sh) scripts/gen_obj_vectors.py

Writes
  yoton-channels/tests/data/obj_vectors.txt

Every byte string is produced by the reference's own encoder
(yoton.OBJECT.message_to_bytes, i.e. yoton.channels.message_types.Packer);
nothing is reimplemented here. Each vector is also decoded again with the
reference decoder (message_from_bytes) and compared with the input.

The big values are built from short recipes that the Rust test
(yoton-channels/tests/object_vectors.rs) mirrors exactly:

  ascii(n)     n bytes: chr(ord('a') + i % 26) for i in range(n)
  unicode(n)   n UTF-8 bytes: "a\u00e9\u20ac\U0001F600" * (n // 10) + "a" * (n % 10)
               (the unit is 1 + 2 + 3 + 4 = 10 bytes)
  ints(n)      list(range(n))
  mixed(n)     [i if i % 2 == 0 else str(i) for i in range(n)]
  intdict(n)   {"k%d" % i: i for i in range(n)}
  nest_*(n)    n nested containers around None (see nest() below)

Names starting with "serde_" are the Python equivalents of Rust values that go
through the serde mapping of yoton_channels::object (to_vec / from_slice).
"""

import importlib.util
import math
import os
import struct
import sys

# Import yoton from inside the pyzo package without importing pyzo itself.
_spec = importlib.util.find_spec("pyzo")
if _spec is None:
    sys.exit("gen_obj_vectors.py: pyzo not installed; run with the venv from scripts/python-venv.sh")
sys.path.insert(0, os.path.dirname(_spec.origin))

import yoton  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "yoton-channels", "tests", "data")
COMMAND = "$(bash scripts/python-venv.sh) scripts/gen_obj_vectors.py"
REF = "pyzo==4.22.0 (yoton %s)" % yoton.__version__

encode = yoton.OBJECT.message_to_bytes
decode = yoton.OBJECT.message_from_bytes


# --- recipes (mirrored in the Rust test) ---------------------------------


def ascii_str(n):
    return "".join(chr(ord("a") + i % 26) for i in range(n))


def unicode_str(n):
    s = "a\u00e9\u20ac\U0001F600" * (n // 10) + "a" * (n % 10)
    assert len(s.encode("utf-8")) == n
    return s


def ints(n):
    return list(range(n))


def mixed(n):
    return [i if i % 2 == 0 else str(i) for i in range(n)]


def intdict(n):
    return {"k%d" % i: i for i in range(n)}


def nest(n, kind):
    v = None
    for i in range(n):
        if kind == "list":
            v = [v]
        elif kind == "tuple":
            v = (v,)
        elif kind == "dict":
            v = {"k": v}
        elif kind == "mixed":
            # innermost level is i == 0; cycle list, tuple, dict
            v = [[v], (v,), {"k": v}][i % 3]
        else:
            raise ValueError(kind)
    return v


# --- the vectors -----------------------------------------------------------


def vectors():
    v = []
    add = lambda name, value: v.append((name, value))  # noqa: E731

    add("none", None)
    add("true", True)
    add("false", False)

    for name, i in [
        ("int_0", 0),
        ("int_1", 1),
        ("int_neg1", -1),
        ("int_254", 254),
        ("int_255", 255),
        ("int_2p32", 2**32),
        ("int_neg2p31", -(2**31)),
        ("int_min", -(2**63)),
        ("int_max", 2**63 - 1),
    ]:
        add(name, i)

    for name, f in [
        ("float_0", 0.0),
        ("float_neg0", -0.0),
        ("float_1_5", 1.5),
        ("float_neg2_25", -2.25),
        ("float_pi", math.pi),
        ("float_1e300", 1e300),
        ("float_min_subnormal", 5e-324),
        ("float_nan", float("nan")),
        ("float_neg_nan", -float("nan")),
        ("float_inf", float("inf")),
        ("float_neg_inf", float("-inf")),
    ]:
        add(name, f)

    add("str_empty", "")
    add("str_hello", "hello")
    add("str_nul", "\x00a\x00")
    add("str_unicode", "h\u00e9llo w\u00f6rld \u2603 \U0001F600")
    for n in [1, 254, 255, 256, 100000]:
        add("str_ascii_%d" % n, ascii_str(n))
    for n in [254, 255, 256, 100000]:
        add("str_unicode_%d" % n, unicode_str(n))
    # 100 characters but 300 bytes: the length prefix counts bytes
    add("str_euro_100chars", "\u20ac" * 100)

    for n in [0, 1, 254, 255, 300]:
        add("list_ints_%d" % n, ints(n))
        add("tuple_mixed_%d" % n, tuple(mixed(n)))
    add("list_mixed_3", [None, True, 1.5])
    add("tuple_of_list", ([1], []))

    add("dict_empty", {})
    add("dict_ab", {"a": 1, "b": 2.5})
    add("dict_order", {"z": 1, "a": 2, "m": 3})
    add(
        "dict_keys",
        {1: "one", 2.5: None, (1, "x"): [True], None: False, "s": {"n": ()}},
    )
    for n in [254, 255, 300]:
        add("dict_int_%d" % n, intdict(n))

    for kind in ["list", "tuple", "dict", "mixed"]:
        add("nest_%s_50" % kind, nest(50, kind))

    add("request", ("echo", ("hello", 0.5), {"a": 1}))

    # --- serde mapping (see yoton-channels/tests/object_vectors.rs) ---
    # struct Point { x: i32, y: f64, name: String, tags: Vec<String>,
    #                maybe: Option<i64>, nothing: Option<i64>, pair: (u8, bool) }
    add(
        "serde_point",
        {
            "x": 1,
            "y": 2.5,
            "name": "p\u00e9",
            "tags": ["a", "b"],
            "maybe": 7,
            "nothing": None,
            "pair": (3, True),
        },
    )
    add("serde_tuple", (-5, "two", False))  # (i32, String, bool)
    add("serde_vec", [1, 2, 3])  # Vec<i64>
    add("serde_vec_empty", [])  # Vec<i64>
    add("serde_array", (1, 2, 3))  # [u16; 3]  (serde: a tuple)
    add("serde_btreemap", {"a": 1, "b": 2, "c": 3})  # BTreeMap<String, i64>
    add("serde_hashmap_1", {"only": [0.5]})  # HashMap<String, Vec<f64>>
    add("serde_map_int_keys", {1: "x", 2: "y"})  # BTreeMap<i32, String>
    add("serde_some", 5)  # Option<i64> Some(5)
    add("serde_none", None)  # Option<i64> None
    add("serde_unit", None)  # ()
    add("serde_char", "\u00e9")  # char
    add("serde_f32", struct.unpack("<f", struct.pack("<f", 0.1))[0])  # 0.1f32 widened to f64
    add("serde_u64_max_ok", 2**63 - 1)  # u64 i64::MAX
    add("serde_newtype", 1.25)  # struct Meters(f64)
    add("serde_tuple_struct", (1, -2))  # struct Pair(i32, i32)
    add("serde_unit_struct", None)  # struct Unit;
    add("serde_enum_unit", "Red")  # Shape::Red
    add("serde_enum_newtype", {"Circle": 1.5})  # Shape::Circle(1.5)
    add("serde_enum_tuple", {"Move": (1, 2)})  # Shape::Move(1, 2)
    add("serde_enum_struct", {"Rect": {"w": 3, "h": 4}})  # Shape::Rect { w: 3, h: 4 }
    add("serde_bytes", [0, 1, 255])  # serialize_bytes(&[0, 1, 255])
    add(
        "serde_request",  # Request { method: "echo", args: ("hello", 0.5), kwargs: {"a": 1} }
        {"method": "echo", "args": ("hello", 0.5), "kwargs": {"a": 1}},
    )
    add("serde_nested_options", [None, 1, None])  # Vec<Option<i64>>
    return v


def same(a, b):
    """Equality that treats NaN as equal to NaN and keeps list/tuple apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    return a == b


def main():
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, "obj_vectors.txt")
    lines = [
        "# Yoton object-encoding ('obj') vectors generated from the Python reference %s by:" % REF,
        "#   " + COMMAND,
        "# Format: <name>\\t<hex of yoton.OBJECT.message_to_bytes(value)>",
        "# The values are listed (as Python) in scripts/gen_obj_vectors.py; the Rust test",
        "# yoton-channels/tests/object_vectors.rs rebuilds each one by name.",
    ]
    names = set()
    for name, value in vectors():
        assert name not in names, name
        names.add(name)
        bb = encode(value)
        back = decode(bb)
        assert same(back, value), name
        lines.append("%s\t%s" % (name, bb.hex()))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d vectors to %s" % (len(names), os.path.relpath(path, ROOT)))


if __name__ == "__main__":
    main()
