//! Hostile payloads at a channel's slot, sent as raw packages over real TCP: a message
//! that does not decode is dropped and counted in `invalid()`, and the channel goes on.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use yoton_channels::object::{self, Value, DEFAULT_MAX_DEPTH};
use yoton_channels::{Object, ObjectOf, PubChannel, SubChannel, Text};
use yoton_core::{channel_slot, Context, Package};

/// `n` nested one-element lists around a None: `[[[...None...]]]`.
fn nested_lists(n: usize) -> Vec<u8> {
    let mut v = b"l\x01".repeat(n);
    v.push(b'n');
    v
}

/// `n` nested one-entry dicts: `{None: {None: ... None}}`.
fn nested_dicts(n: usize) -> Vec<u8> {
    let mut v = b"d\x01n".repeat(n);
    v.push(b'n');
    v
}

/// A count in the long form (255, then a little-endian u64).
fn long_count(tag: u8, n: u64) -> Vec<u8> {
    let mut v = vec![tag, 255];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// Payloads that must not decode as objects (none is empty: an empty payload is None).
fn malformed_objects() -> Vec<(&'static str, Vec<u8>)> {
    let mut lying_string = long_count(b's', u64::MAX);
    lying_string.extend_from_slice(b"abc");
    let mut lying_list = long_count(b'l', 1 << 40);
    lying_list.extend_from_slice(b"nnn");
    vec![
        ("unknown type byte", b"x".to_vec()),
        ("truncated int", b"i\x01\x02".to_vec()),
        ("truncated float", b"f\x00".to_vec()),
        ("truncated string", b"s\x05ab".to_vec()),
        ("invalid UTF-8 string", b"s\x02\xff\xfe".to_vec()),
        ("trailing bytes", b"nn".to_vec()),
        ("list count above the data", b"l\x05n".to_vec()),
        ("dict without its value", b"d\x01n".to_vec()),
        ("string length u64::MAX", lying_string),
        ("list count 2^40", lying_list),
        ("lists nested 100,000 deep", nested_lists(100_000)),
        ("dicts nested 100,000 deep", nested_dicts(100_000)),
        (
            "lists nested one too deep",
            nested_lists(DEFAULT_MAX_DEPTH + 1),
        ),
        ("lone count byte", b"t".to_vec()),
    ]
}

/// A publisher-less context `a` joined to `b`; raw packages go from `a` to `slot`.
fn pair() -> (Context, Context) {
    let (a, b) = (ctx(), ctx());
    join(&a, &b);
    (a, b)
}

fn send_raw(from: &Context, slot: u64, payload: Vec<u8>) {
    from.send(Package::new(slot, Bytes::from(payload))).unwrap();
}

#[test]
fn malformed_and_deeply_nested_objects_are_counted_and_the_channel_goes_on() {
    let (a, b) = pair();
    let sub = SubChannel::<Object>::new(&b, "hostile").unwrap();
    let publisher = PubChannel::<Object>::new(&a, "hostile").unwrap();
    let slot = channel_slot("hostile", "obj", "pub-sub");
    let bad = malformed_objects();
    for (what, payload) in &bad {
        assert!(
            object::decode(payload).is_err(),
            "{what} decodes: the test is wrong"
        );
        send_raw(&a, slot, payload.clone());
    }
    // A good message after all of them arrives, and only it.
    let good = Value::Tuple(vec!["still".into(), 1.into()]);
    publisher.send(good.clone()).unwrap();
    let got = sub.recv_timeout(WAIT).unwrap().expect("the good message");
    assert_eq!(got, good);
    println!(
        "obj channel: {} malformed payloads counted as invalid, then a good one received",
        sub.invalid()
    );
    assert_eq!(sub.invalid(), bad.len() as u64);

    // The deepest accepted nesting goes through (and is dropped without trouble).
    send_raw(&a, slot, nested_lists(DEFAULT_MAX_DEPTH));
    let deep = sub.recv_timeout(WAIT).unwrap().expect("the deep message");
    assert_eq!(deep.depth(), DEFAULT_MAX_DEPTH);
    drop(deep);
    // And the channel keeps working.
    publisher.send(Value::Str("last".into())).unwrap();
    assert_eq!(
        sub.recv_timeout(WAIT).unwrap(),
        Some(Value::Str("last".into()))
    );
    assert_eq!(sub.invalid(), bad.len() as u64);
    assert_eq!(sub.pending(), 0);
}

#[test]
fn serde_typed_obj_channels_refuse_deep_nesting_without_overflowing_the_stack() {
    let (a, b) = pair();
    // serde recurses: its limit is lower (SERDE_MAX_DEPTH); a 100,000-deep payload and
    // a 500-deep one (within the decoder's limit, beyond serde's) must both be refused.
    let sub = SubChannel::<ObjectOf<Vec<Value>>>::new(&b, "typed").unwrap();
    let publisher = PubChannel::<ObjectOf<Vec<Value>>>::new(&a, "typed").unwrap();
    let slot = channel_slot("typed", "obj", "pub-sub");
    send_raw(&a, slot, nested_lists(100_000));
    send_raw(&a, slot, nested_lists(500));
    send_raw(&a, slot, nested_dicts(100_000));
    send_raw(&a, slot, b"s\x03abc".to_vec()); // a string is not a list
    publisher.send(vec![Value::Int(7)]).unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap(), Some(vec![Value::Int(7)]));
    println!("typed obj channel: {} refused", sub.invalid());
    assert_eq!(sub.invalid(), 4);
}

#[test]
fn invalid_utf8_on_a_txt_channel_is_counted_and_the_channel_goes_on() {
    let (a, b) = pair();
    let sub = SubChannel::<Text>::new(&b, "texts").unwrap();
    let publisher = PubChannel::<Text>::new(&a, "texts").unwrap();
    let slot = channel_slot("texts", "txt", "pub-sub");
    let bad: Vec<&[u8]> = vec![
        b"\xff\xfe",
        b"abc\xc3",            // truncated sequence
        b"\xc0\xaf",           // overlong '/'
        b"\xed\xa0\x80",       // a surrogate
        b"ok until here \x80", // lone continuation byte
    ];
    for p in &bad {
        send_raw(&a, slot, p.to_vec());
    }
    publisher.send("héllo ✓".to_string()).unwrap();
    assert_eq!(sub.recv_timeout(WAIT).unwrap().as_deref(), Some("héllo ✓"));
    println!(
        "txt channel: {} invalid UTF-8 payloads counted",
        sub.invalid()
    );
    assert_eq!(sub.invalid(), bad.len() as u64);
    publisher.send("again".to_string()).unwrap();
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(5)).unwrap().as_deref(),
        Some("again")
    );
}

/// Peak virtual memory of this process, in KiB.
fn vm_peak_kib() -> u64 {
    yoton_testkit::proc::status_kib("VmPeak")
}

/// Regression test of a library issue found while fuzzing (now fixed: reservations
/// are capped at 1,024 items and grow with what is actually decoded): the object
/// decoder reserved `Vec::with_capacity(count)` for every container, with
/// the count bounded only by the bytes left in the payload. Each `Value` is 32 bytes
/// and each dict entry 64, so every nesting level of a P-byte payload may reserve
/// 32·P bytes before a single item is read: 200 levels of lists that each claim all
/// the remaining bytes reserve about 6,400 times the payload. The pages are not
/// touched (VmRSS stays low), but the address space is, and under strict overcommit
/// (vm.overcommit_memory=2), or once 32·P exceeds RAM + swap, the allocation fails and
/// the process aborts. It reads VmPeak, which only grows: the other tests of this
/// file allocate far less than its threshold.
#[test]
fn object_decoder_reservations_stay_proportional_to_the_payload() {
    let payload_len: u64 = 4 << 20;
    let depth = 200;
    let mut p = Vec::new();
    for i in 0..depth {
        // each level claims every byte that follows it
        let left = payload_len - 10 * (i + 1);
        p.extend_from_slice(&long_count(b'l', left));
    }
    p.resize(payload_len as usize, b'n');
    let before = vm_peak_kib();
    let result = object::decode(&p);
    let after = vm_peak_kib();
    println!(
        "{} byte payload, {depth} levels: {:?}; VmPeak {before} -> {after} KiB (+{} MiB)",
        p.len(),
        result.as_ref().map(|v| v.depth()),
        (after - before) / 1024
    );
    assert!(
        after - before < 64 * 4 * 1024,
        "decoding {} bytes reserved {} MiB of address space",
        p.len(),
        (after - before) / 1024
    );
}
