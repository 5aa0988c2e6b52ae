//! Byte-exact vectors from the Python reference encoder
//! (`scripts/gen_obj_vectors.py` -> `tests/data/obj_vectors.txt`), the serde
//! mapping, and decoder robustness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use yoton_channels::object::{
    decode, encode, from_slice, from_value, to_bytes, to_value, to_vec, Decoder, ObjectError,
    Value, DEFAULT_MAX_DEPTH, SERDE_MAX_DEPTH,
};

// --- vector file -----------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() & 1, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load_vectors() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("data/obj_vectors.txt");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, hex) = line.split_once('\t').expect("name<TAB>hex");
        assert!(
            out.insert(name.to_owned(), unhex(hex)).is_none(),
            "duplicate vector {name}"
        );
    }
    out
}

// --- recipes, mirroring scripts/gen_obj_vectors.py -------------------------

fn s(x: &str) -> Value {
    Value::Str(x.to_owned())
}

fn ascii(n: usize) -> Value {
    Value::Str((0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect())
}

fn unicode(n: usize) -> Value {
    let text = "a\u{e9}\u{20ac}\u{1F600}".repeat(n / 10) + &"a".repeat(n % 10);
    assert_eq!(text.len(), n);
    Value::Str(text)
}

fn ints(n: i64) -> Vec<Value> {
    (0..n).map(Value::Int).collect()
}

fn mixed(n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Value::Int(i)
            } else {
                Value::Str(i.to_string())
            }
        })
        .collect()
}

fn intdict(n: i64) -> Value {
    Value::Dict(
        (0..n)
            .map(|i| (s(&format!("k{i}")), Value::Int(i)))
            .collect(),
    )
}

fn nest(n: usize, kind: &str) -> Value {
    let mut v = Value::None;
    for i in 0..n {
        let k = match kind {
            "mixed" => ["list", "tuple", "dict"][i % 3],
            k => k,
        };
        v = match k {
            "list" => Value::List(vec![v]),
            "tuple" => Value::Tuple(vec![v]),
            "dict" => Value::Dict(vec![(s("k"), v)]),
            _ => unreachable!(),
        };
    }
    v
}

/// Every non-serde vector, as in `vectors()` of the generator.
fn expected_values() -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = Vec::new();
    let mut add = |name: &str, value: Value| v.push((name.to_owned(), value));

    add("none", Value::None);
    add("true", Value::Bool(true));
    add("false", Value::Bool(false));

    add("int_0", Value::Int(0));
    add("int_1", Value::Int(1));
    add("int_neg1", Value::Int(-1));
    add("int_254", Value::Int(254));
    add("int_255", Value::Int(255));
    add("int_2p32", Value::Int(1 << 32));
    add("int_neg2p31", Value::Int(-(1 << 31)));
    add("int_min", Value::Int(i64::MIN));
    add("int_max", Value::Int(i64::MAX));

    add("float_0", Value::Float(0.0));
    add("float_neg0", Value::Float(-0.0));
    add("float_1_5", Value::Float(1.5));
    add("float_neg2_25", Value::Float(-2.25));
    add("float_pi", Value::Float(std::f64::consts::PI));
    add("float_1e300", Value::Float(1e300));
    add("float_min_subnormal", Value::Float(5e-324));
    add("float_nan", Value::Float(f64::NAN));
    add("float_neg_nan", Value::Float(-f64::NAN));
    add("float_inf", Value::Float(f64::INFINITY));
    add("float_neg_inf", Value::Float(f64::NEG_INFINITY));

    add("str_empty", s(""));
    add("str_hello", s("hello"));
    add("str_nul", s("\0a\0"));
    add("str_unicode", s("h\u{e9}llo w\u{f6}rld \u{2603} \u{1F600}"));
    for n in [1, 254, 255, 256, 100_000] {
        add(&format!("str_ascii_{n}"), ascii(n));
    }
    for n in [254, 255, 256, 100_000] {
        add(&format!("str_unicode_{n}"), unicode(n));
    }
    add("str_euro_100chars", s(&"\u{20ac}".repeat(100)));

    for n in [0, 1, 254, 255, 300] {
        add(&format!("list_ints_{n}"), Value::List(ints(n)));
        add(&format!("tuple_mixed_{n}"), Value::Tuple(mixed(n)));
    }
    add(
        "list_mixed_3",
        Value::List(vec![Value::None, true.into(), 1.5.into()]),
    );
    add(
        "tuple_of_list",
        Value::Tuple(vec![Value::List(vec![1.into()]), Value::List(vec![])]),
    );

    add("dict_empty", Value::Dict(vec![]));
    add(
        "dict_ab",
        Value::Dict(vec![(s("a"), 1.into()), (s("b"), 2.5.into())]),
    );
    add(
        "dict_order",
        Value::Dict(vec![
            (s("z"), 1.into()),
            (s("a"), 2.into()),
            (s("m"), 3.into()),
        ]),
    );
    add(
        "dict_keys",
        Value::Dict(vec![
            (1.into(), s("one")),
            (2.5.into(), Value::None),
            ((1, "x").into(), Value::List(vec![true.into()])),
            (Value::None, false.into()),
            (s("s"), Value::Dict(vec![(s("n"), Value::Tuple(vec![]))])),
        ]),
    );
    for n in [254, 255, 300] {
        add(&format!("dict_int_{n}"), intdict(n));
    }

    for kind in ["list", "tuple", "dict", "mixed"] {
        add(&format!("nest_{kind}_50"), nest(50, kind));
    }

    add(
        "request",
        Value::Tuple(vec![
            s("echo"),
            ("hello", 0.5).into(),
            Value::Dict(vec![(s("a"), 1.into())]),
        ]),
    );
    v
}

#[test]
fn reference_vectors_encode_and_decode() {
    let vectors = load_vectors();
    let expected = expected_values();
    let mut seen = BTreeSet::new();
    for (name, value) in &expected {
        let bytes = vectors
            .get(name)
            .unwrap_or_else(|| panic!("vector {name} missing from obj_vectors.txt"));
        let mut out = Vec::new();
        encode(value, &mut out);
        assert!(out == *bytes, "encode({name}) differs from the reference");
        assert_eq!(&to_bytes(value)[..], &bytes[..], "to_bytes({name})");
        let back = decode(bytes).unwrap_or_else(|e| panic!("decode({name}): {e}"));
        assert!(back.bitwise_eq(value), "decode({name}) = {back:?}");
        if !name.contains("nan") {
            assert_eq!(&back, value, "decode({name})");
        }
        seen.insert(name.clone());
    }
    // Every vector in the file is checked, here or in the serde test.
    for name in vectors.keys() {
        assert!(
            seen.contains(name) || name.starts_with("serde_"),
            "vector {name} is not checked"
        );
    }
    assert!(expected.len() >= 60, "only {} vectors", expected.len());
}

#[test]
fn nan_bits_and_float_equality() {
    let vectors = load_vectors();
    let nan = decode(&vectors["float_nan"]).unwrap();
    let neg_nan = decode(&vectors["float_neg_nan"]).unwrap();
    assert_eq!(nan.as_f64().unwrap().to_bits(), 0x7ff8_0000_0000_0000);
    assert_eq!(neg_nan.as_f64().unwrap().to_bits(), 0xfff8_0000_0000_0000);
    // PartialEq follows IEEE (and Python): NaN != NaN, 0.0 == -0.0.
    assert_ne!(nan, nan.clone());
    assert!(nan.bitwise_eq(&nan.clone()));
    assert!(!nan.bitwise_eq(&neg_nan));
    assert_eq!(Value::Float(0.0), Value::Float(-0.0));
    assert!(!Value::Float(0.0).bitwise_eq(&Value::Float(-0.0)));
}

#[test]
fn empty_payload_is_none() {
    assert_eq!(decode(b"").unwrap(), Value::None);
    assert_eq!(
        Decoder::new()
            .allow_trailing_bytes(true)
            .decode(b"")
            .unwrap(),
        Value::None
    );
}

// --- serde -----------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: i32,
    y: f64,
    name: String,
    tags: Vec<String>,
    maybe: Option<i64>,
    nothing: Option<i64>,
    pair: (u8, bool),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Meters(f64);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Pair(i32, i32);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Unit;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Red,
    Circle(f64),
    Move(i32, i32),
    Rect { w: u32, h: u32 },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Request {
    method: String,
    args: Value,
    kwargs: HashMap<String, i64>,
}

/// Serializes with `serialize_bytes`, like `serde_bytes::ByteBuf`.
#[derive(Debug, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

struct SerdeChecker {
    vectors: BTreeMap<String, Vec<u8>>,
    seen: BTreeSet<String>,
}

impl SerdeChecker {
    fn check<T>(&mut self, name: &str, value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let bytes = self
            .vectors
            .get(name)
            .unwrap_or_else(|| panic!("vector {name} missing"));
        let out = to_vec(&value).unwrap_or_else(|e| panic!("to_vec({name}): {e}"));
        assert!(out == *bytes, "to_vec({name}) differs from the reference");
        assert!(
            to_value(&value)
                .unwrap()
                .bitwise_eq(&decode(bytes).unwrap()),
            "to_value({name})"
        );
        let back: T = from_slice(bytes).unwrap_or_else(|e| panic!("from_slice({name}): {e}"));
        assert_eq!(back, value, "from_slice({name})");
        self.seen.insert(name.to_owned());
    }
}

#[test]
fn serde_vectors() {
    let mut c = SerdeChecker {
        vectors: load_vectors(),
        seen: BTreeSet::new(),
    };
    c.check(
        "serde_point",
        Point {
            x: 1,
            y: 2.5,
            name: "p\u{e9}".into(),
            tags: vec!["a".into(), "b".into()],
            maybe: Some(7),
            nothing: None,
            pair: (3, true),
        },
    );
    c.check("serde_tuple", (-5i32, "two".to_owned(), false));
    c.check("serde_vec", vec![1i64, 2, 3]);
    c.check("serde_vec_empty", Vec::<i64>::new());
    c.check("serde_array", [1u16, 2, 3]);
    c.check(
        "serde_btreemap",
        BTreeMap::from([("a".to_owned(), 1i64), ("b".into(), 2), ("c".into(), 3)]),
    );
    c.check(
        "serde_hashmap_1",
        HashMap::from([("only".to_owned(), vec![0.5f64])]),
    );
    c.check(
        "serde_map_int_keys",
        BTreeMap::from([(1i32, "x".to_owned()), (2, "y".into())]),
    );
    c.check("serde_some", Some(5i64));
    c.check("serde_none", None::<i64>);
    c.check("serde_unit", ());
    c.check("serde_char", '\u{e9}');
    c.check("serde_f32", 0.1f32);
    c.check("serde_u64_max_ok", i64::MAX as u64);
    c.check("serde_newtype", Meters(1.25));
    c.check("serde_tuple_struct", Pair(1, -2));
    c.check("serde_unit_struct", Unit);
    c.check("serde_enum_unit", Shape::Red);
    c.check("serde_enum_newtype", Shape::Circle(1.5));
    c.check("serde_enum_tuple", Shape::Move(1, 2));
    c.check("serde_enum_struct", Shape::Rect { w: 3, h: 4 });
    c.check("serde_bytes", Bytes(vec![0, 1, 255]));
    c.check(
        "serde_request",
        Request {
            method: "echo".into(),
            // A Value field keeps the tuple a tuple.
            args: ("hello", 0.5).into(),
            kwargs: HashMap::from([("a".to_owned(), 1)]),
        },
    );
    c.check("serde_nested_options", vec![None, Some(1i64), None]);

    for name in c.vectors.keys().filter(|n| n.starts_with("serde_")) {
        assert!(c.seen.contains(name), "serde vector {name} is not checked");
    }
}

#[test]
fn value_round_trips_through_serde() {
    let vectors = load_vectors();
    for (name, value) in expected_values() {
        let via_ser = to_value(&value).unwrap();
        assert!(via_ser.bitwise_eq(&value), "to_value(Value {name})");
        let via_de: Value = from_value(value.clone()).unwrap();
        assert!(via_de.bitwise_eq(&value), "from_value::<Value>({name})");
        let via_bytes: Value = from_slice(&vectors[&name]).unwrap();
        assert!(via_bytes.bitwise_eq(&value), "from_slice::<Value>({name})");
    }
}

#[test]
fn serde_integer_range() {
    let err = to_value(&u64::MAX).unwrap_err();
    assert_eq!(
        err,
        ObjectError::IntOutOfRange {
            value: "18446744073709551615".into()
        }
    );
    assert!(err.to_string().contains("18446744073709551615"));
    assert!(to_value(&(1u64 << 63))
        .unwrap_err()
        .to_string()
        .contains("9223372036854775808"));
    assert!(to_value(&i128::MIN).is_err());
    assert!(to_value(&u128::MAX).is_err());
    assert_eq!(to_value(&-5i128).unwrap(), Value::Int(-5));
    assert_eq!(to_value(&7u128).unwrap(), Value::Int(7));
    // A struct field that does not fit fails the whole value.
    assert!(to_vec(&vec![1u64, u64::MAX]).is_err());
    // Narrowing on the way back is checked too.
    assert!(from_value::<u8>(Value::Int(256)).is_err());
    assert!(from_value::<u64>(Value::Int(-1)).is_err());
    assert_eq!(
        from_value::<u64>(Value::Int(i64::MAX)).unwrap(),
        i64::MAX as u64
    );
    assert_eq!(Value::try_from(u64::MAX).unwrap_err(), err);
}

#[test]
fn serde_lenient_deserialization() {
    // tuple and list are interchangeable for Rust sequences and tuples
    let t = Value::Tuple(vec![1.into(), 2.into()]);
    let l = Value::List(vec![1.into(), 2.into()]);
    assert_eq!(from_value::<Vec<i32>>(t.clone()).unwrap(), vec![1, 2]);
    assert_eq!(from_value::<(i32, i32)>(l.clone()).unwrap(), (1, 2));
    assert_eq!(from_value::<Pair>(l.clone()).unwrap(), Pair(1, 2));
    // int into float
    assert_eq!(from_value::<f64>(Value::Int(3)).unwrap(), 3.0);
    assert_eq!(from_value::<Meters>(Value::Int(3)).unwrap(), Meters(3.0));
    assert_eq!(from_value::<f32>(Value::Int(-2)).unwrap(), -2.0);
    // but not float into int
    assert!(from_value::<i64>(Value::Float(1.0)).is_err());
    // too many or too few items
    assert!(from_value::<(i32, i32)>(Value::Tuple(vec![1.into(); 3])).is_err());
    assert!(from_value::<(i32, i32)>(Value::Tuple(vec![1.into()])).is_err());
    // a struct from a positional tuple
    #[derive(Deserialize, Debug, PartialEq)]
    struct Xy {
        x: i32,
        y: i32,
    }
    assert_eq!(from_value::<Xy>(t).unwrap(), Xy { x: 1, y: 2 });
    // enum forms: unit variant also as {"Red": None} and by index
    assert_eq!(
        from_value::<Shape>(Value::Dict(vec![(s("Red"), Value::None)])).unwrap(),
        Shape::Red
    );
    assert_eq!(from_value::<Shape>(Value::Int(0)).unwrap(), Shape::Red);
    assert!(from_value::<Shape>(s("Blue")).is_err());
    assert!(from_value::<Shape>(s("Circle")).is_err());
    assert!(from_value::<Shape>(Value::Dict(vec![])).is_err());
    // bytes from a str, or a list
    assert_eq!(from_value::<Bytes>(s("ab")).unwrap(), Bytes(b"ab".to_vec()));
    assert_eq!(
        from_value::<Bytes>(Value::Tuple(vec![97.into()])).unwrap(),
        Bytes(b"a".to_vec())
    );
    assert!(from_value::<Bytes>(Value::List(vec![256.into()])).is_err());
    // Vec<u8> is a plain sequence in serde
    assert_eq!(to_value(&vec![1u8]).unwrap(), Value::List(vec![1.into()]));
    // char
    assert_eq!(from_value::<char>(s("x")).unwrap(), 'x');
    assert!(from_value::<char>(s("xy")).is_err());
    // Option<()> cannot tell Some(()) from None, as in Python
    assert_eq!(to_value(&Some(())).unwrap(), Value::None);
    assert_eq!(from_value::<Option<()>>(Value::None).unwrap(), None);
    // unit
    assert!(from_value::<()>(Value::Int(0)).is_err());
    // maps with non-string keys
    let d = Value::Dict(vec![
        (Value::None, 1.into()),
        (Value::Tuple(vec![]), 2.into()),
    ]);
    let back: Vec<(Value, i64)> = from_value::<Value>(d.clone())
        .unwrap()
        .as_dict()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    assert_eq!(back, vec![(Value::None, 1), (Value::Tuple(vec![]), 2)]);
    // missing field error names the field
    let err = from_value::<Xy>(Value::Dict(vec![(s("x"), 1.into())])).unwrap_err();
    assert!(err.to_string().contains("missing field `y`"), "{err}");
    // wrong type error says what was found
    let err = from_value::<String>(Value::Int(5)).unwrap_err();
    assert!(err.to_string().contains("integer `5`"), "{err}");
}

#[test]
fn value_fields_keep_tuples() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Holder {
        a: Value,
        b: Option<Value>,
        c: Vec<Value>,
    }
    let h = Holder {
        a: Value::Tuple(vec![Value::Tuple(vec![]), Value::List(vec![])]),
        b: Some(Value::Tuple(vec![1.into()])),
        c: vec![Value::Tuple(vec![]), Value::List(vec![])],
    };
    let bytes = to_vec(&h).unwrap();
    let back: Holder = from_slice(&bytes).unwrap();
    assert_eq!(back, h);
    assert_eq!(to_vec(&back).unwrap(), bytes);
}

#[test]
fn from_impls() {
    assert_eq!(Value::from(()), Value::None);
    assert_eq!(Value::from(None::<i32>), Value::None);
    assert_eq!(Value::from(Some(3u8)), Value::Int(3));
    assert_eq!(Value::from('c'), s("c"));
    assert_eq!(Value::from(1.5f32), Value::Float(1.5));
    assert_eq!(
        Value::from(vec!["a", "b"]),
        Value::List(vec![s("a"), s("b")])
    );
    assert_eq!(Value::from(&[1i32][..]), Value::List(vec![1.into()]));
    assert_eq!(
        Value::from((1, "x", true)),
        Value::Tuple(vec![1.into(), s("x"), true.into()])
    );
    assert_eq!(
        Value::from(BTreeMap::from([(2, "b"), (1, "a")])),
        Value::Dict(vec![(1.into(), s("a")), (2.into(), s("b"))])
    );
    assert_eq!(Value::try_from(5usize).unwrap(), Value::Int(5));
    assert!(Value::try_from(u128::MAX).is_err());
    let d = Value::Dict(vec![(s("k"), 1.into()), (s("k"), 2.into())]);
    assert_eq!(d.get("k"), Some(&Value::Int(2)), "last duplicate wins");
    assert_eq!(d.get("x"), None);
    assert_eq!(d.type_name(), "dict");
    assert_eq!(Value::default(), Value::None);
}

// --- decoder behaviour and robustness ------------------------------------

#[test]
fn decoder_quirks_match_reference() {
    // any non-zero bool byte is True
    assert_eq!(decode(b"b\x02").unwrap(), Value::Bool(true));
    assert_eq!(decode(b"b\xff").unwrap(), Value::Bool(true));
    // the long length form is accepted for short lengths
    assert_eq!(decode(b"s\xff\x01\0\0\0\0\0\0\0a").unwrap(), s("a"));
    assert_eq!(
        decode(b"l\xff\0\0\0\0\0\0\0\0").unwrap(),
        Value::List(vec![])
    );
    // duplicate and unhashable keys are kept as received
    let v = decode(b"d\x02l\x00ns\x01ab\x01").unwrap();
    assert_eq!(
        v,
        Value::Dict(vec![
            (Value::List(vec![]), Value::None),
            (s("a"), true.into())
        ])
    );
    // trailing bytes: the reference ignores them, decode() refuses them
    assert_eq!(
        decode(b"nxyz").unwrap_err(),
        ObjectError::TrailingBytes {
            offset: 1,
            count: 3
        }
    );
    assert_eq!(
        Decoder::new()
            .allow_trailing_bytes(true)
            .decode(b"i\x01\0\0\0\0\0\0\0zz")
            .unwrap(),
        Value::Int(1)
    );
}

#[test]
fn decoder_errors_name_the_offset() {
    let cases: &[(&[u8], ObjectError, &str)] = &[
        (
            b"l\x02nz",
            ObjectError::UnknownType {
                offset: 3,
                byte: b'z',
            },
            "unknown type byte 0x7a at byte 3",
        ),
        (
            b"t\x01s\x03a\xffb",
            ObjectError::InvalidUtf8 { offset: 5 },
            "invalid UTF-8 in string at byte 5",
        ),
        (
            b"s\x03\xed\xa0\x80",
            ObjectError::InvalidUtf8 { offset: 2 },
            "at byte 2",
        ),
        (
            b"i\x01\x02",
            ObjectError::UnexpectedEof {
                offset: 1,
                what: "int",
                needed: 6,
            },
            "unexpected end of input at byte 1: int needs 6 more byte(s)",
        ),
        (
            b"d\x01s\x00",
            ObjectError::UnexpectedEof {
                offset: 4,
                what: "type byte",
                needed: 1,
            },
            "at byte 4: type byte needs 1 more byte(s)",
        ),
        (
            b"l\x02n",
            ObjectError::LengthTooLarge {
                offset: 1,
                what: "list count",
                declared: 2,
                remaining: 1,
            },
            "list count at byte 1 declares 2, but only 1 byte(s) of input remain",
        ),
        (
            b"d\x02nnn",
            ObjectError::LengthTooLarge {
                offset: 1,
                what: "dict count",
                declared: 2,
                remaining: 3,
            },
            "dict count",
        ),
        (
            b"s\xff\xff\xff\xff\xff\xff\xff\xff\xffabc",
            ObjectError::LengthTooLarge {
                offset: 1,
                what: "string length",
                declared: u64::MAX,
                remaining: 3,
            },
            "string length at byte 1 declares 18446744073709551615",
        ),
        (
            b"t\xff\x00\x00\x00\x00\x00\x00\x00\x80",
            ObjectError::LengthTooLarge {
                offset: 1,
                what: "tuple count",
                declared: 1 << 63,
                remaining: 0,
            },
            "tuple count",
        ),
        (
            b"l\xff\x01\x00",
            ObjectError::UnexpectedEof {
                offset: 2,
                what: "list count",
                needed: 6,
            },
            "list count needs 6",
        ),
    ];
    for (input, err, text) in cases {
        let got = decode(input).unwrap_err();
        assert_eq!(&got, err, "decode({input:?})");
        assert!(got.to_string().contains(text), "{got} / {text}");
    }
}

fn nested(depth: usize, open: &[u8]) -> Vec<u8> {
    let mut v = open.repeat(depth);
    v.push(b'n');
    v
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in [&b"l\x01"[..], b"t\x01", b"d\x01n"] {
        // exactly the limit is fine, and decodes in a thread with a small stack
        let ok = nested(DEFAULT_MAX_DEPTH, open);
        let v = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || decode(&ok).map(|v| to_bytes(&v)))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(v[..], nested(DEFAULT_MAX_DEPTH, open)[..]);
        // one more is not
        assert_eq!(
            decode(&nested(DEFAULT_MAX_DEPTH + 1, open)).unwrap_err(),
            ObjectError::TooDeep {
                offset: DEFAULT_MAX_DEPTH * open.len(),
                limit: DEFAULT_MAX_DEPTH
            }
        );
        // 100,000 deep
        let err = decode(&nested(100_000, open)).unwrap_err();
        assert!(matches!(err, ObjectError::TooDeep { .. }), "{err}");
        assert!(err.to_string().contains("nested deeper than 1000"), "{err}");
    }
    // custom limit; depth counts containers only
    let d = Decoder::new().max_depth(2);
    assert!(d.decode(b"l\x01l\x01n").is_ok());
    assert!(d.decode(b"l\x01l\x01l\x00").is_err());
    assert!(Decoder::new().max_depth(0).decode(b"l\x00").is_err());
    assert!(Decoder::new().max_depth(0).decode(b"s\x01a").is_ok());
}

#[test]
fn encoding_a_very_deep_value_does_not_overflow() {
    let mut v = Value::None;
    for _ in 0..100_000 {
        v = Value::List(vec![v]);
    }
    let bytes = to_bytes(&v);
    assert_eq!(bytes[..], nested(100_000, b"l\x01")[..]);
    // dismantle iteratively: dropping a value this deep would recurse
    while let Value::List(mut items) = v {
        v = items.pop().unwrap_or(Value::None);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let vectors = load_vectors();
    for name in [
        "request",
        "dict_keys",
        "nest_mixed_50",
        "str_unicode_256",
        "tuple_mixed_300",
        "dict_int_255",
        "float_nan",
        "true",
        "serde_point",
    ] {
        let bytes = &vectors[name];
        for len in 1..bytes.len() {
            let prefix = &bytes[..len];
            assert!(decode(prefix).is_err(), "{name}[..{len}] decoded");
            assert!(
                Decoder::new()
                    .allow_trailing_bytes(true)
                    .decode(prefix)
                    .is_err(),
                "{name}[..{len}] decoded leniently"
            );
        }
        assert!(decode(bytes).is_ok());
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Decoding arbitrary bytes never panics, and whatever decodes re-encodes to
/// something that decodes to the same value.
#[test]
fn random_input_never_panics() {
    const ALPHABET: &[u8] = b"nbifsltd\x00\x01\x02\x03\xfe\xff";
    let vectors = load_vectors();
    let seeds: Vec<&Vec<u8>> = ["request", "dict_keys", "nest_mixed_50", "serde_point"]
        .iter()
        .map(|n| &vectors[*n])
        .collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut ok = 0usize;
    for i in 0..100_000 {
        let input: Vec<u8> = if i % 2 == 0 {
            // fresh bytes, mostly from the interesting alphabet
            let len = rng.below(48);
            (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r & 3 == 0 {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect()
        } else {
            // a valid encoding with a few bytes changed
            let mut v = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(v.len());
                v[at] = rng.next() as u8;
            }
            v
        };
        for decoder in [
            Decoder::new(),
            Decoder::new().allow_trailing_bytes(true).max_depth(8),
        ] {
            if let Ok(value) = decoder.decode(&input) {
                ok += 1;
                let again = decode(&to_bytes(&value)).unwrap();
                assert!(again.bitwise_eq(&value), "{input:?}");
            }
        }
    }
    assert!(ok > 1000, "only {ok} random inputs decoded");
}

#[test]
fn serde_depth_is_limited() {
    for open in [&b"l\x01"[..], b"t\x01", b"d\x01n"] {
        // SERDE_MAX_DEPTH levels deserialize in a thread with a small stack
        // (serde recursion is heavy in debug builds)
        let input = nested(SERDE_MAX_DEPTH, open);
        let back = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || from_slice::<Value>(&input).map(|v| to_bytes(&v)))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(back[..], nested(SERDE_MAX_DEPTH, open)[..]);
        let deeper = nested(SERDE_MAX_DEPTH + 1, open);
        assert_eq!(
            from_slice::<Value>(&deeper).unwrap_err(),
            ObjectError::TooDeep {
                offset: SERDE_MAX_DEPTH * open.len(),
                limit: SERDE_MAX_DEPTH
            }
        );
        // decode() itself allows more, and from_value refuses it
        let v = decode(&nested(DEFAULT_MAX_DEPTH, open)).unwrap();
        assert_eq!(v.depth(), DEFAULT_MAX_DEPTH);
        let err = from_value::<Value>(v).unwrap_err();
        assert_eq!(
            err,
            ObjectError::ValueTooDeep {
                depth: DEFAULT_MAX_DEPTH,
                limit: SERDE_MAX_DEPTH
            }
        );
        assert!(from_slice::<Value>(&nested(100_000, open)).is_err());
    }
    assert_eq!(Value::None.depth(), 0);
    assert_eq!(Value::List(vec![]).depth(), 1);
    assert_eq!(decode(b"d\x02nnnl\x01t\x00").unwrap().depth(), 3);
}
