//! The object decoder (`yoton_channels::object`) on arbitrary payloads.
//!
//! Checked: decoding never panics (the decoder is iterative and limits nesting, so no
//! stack overflow either); whatever decodes re-encodes to bytes that decode to the same
//! value (floats compared bit for bit); the lenient decoder (trailing bytes allowed)
//! accepts everything the strict one accepts; the serde path (`from_slice`, which
//! recurses but limits depth) does not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yoton_channels::object::{self, Decoder, Value};

fuzz_target!(|data: &[u8]| {
    let strict = object::decode(data);
    let lenient = Decoder::new().allow_trailing_bytes(true).decode(data);
    if let Ok(v) = &strict {
        let l = lenient
            .as_ref()
            .expect("lenient refuses what strict accepts");
        assert!(l.bitwise_eq(v), "lenient and strict decode differently");
        assert!(v.depth() <= object::DEFAULT_MAX_DEPTH);
        let bytes = object::to_bytes(v);
        let back = object::decode(&bytes).expect("re-encoded value does not decode");
        assert!(back.bitwise_eq(v), "round trip changed the value");
        // The encoder is canonical: a second round gives the same bytes.
        assert_eq!(object::to_bytes(&back), bytes);
    }
    // A small depth limit must be enforced, not just the default one.
    if let Ok(v) = Decoder::new().max_depth(3).decode(data) {
        assert!(v.depth() <= 3, "depth {} above the limit 3", v.depth());
    }
    // serde: must not panic or overflow the stack.
    let _ = object::from_slice::<Value>(data);
    let _ = object::from_slice::<(String, Vec<i64>, Option<f64>)>(data);
    let _ = object::from_slice::<std::collections::BTreeMap<String, Value>>(data);
});
