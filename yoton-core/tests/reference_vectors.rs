//! Hashes and address parsing against values produced by the Python reference
//! (scripts/gen_hash_vectors.py wrote the data files).

use yoton_core::{port_hash, slot_hash, Address};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn slot_and_port_hashes_match_the_reference() {
    let data = include_str!("data/hash_vectors.txt");
    let mut n = 0;
    let mut long = 0;
    let mut non_ascii = 0;
    for line in data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut f = line.split('\t');
        let name = String::from_utf8(unhex(f.next().unwrap())).unwrap();
        let slot: u64 = f.next().unwrap().parse().unwrap();
        let port: u16 = f.next().unwrap().parse().unwrap();
        assert_eq!(slot_hash(&name), slot, "slot hash of {name:?}");
        assert_eq!(port_hash(&name), port, "port hash of {name:?}");
        n += 1;
        long += usize::from(name.chars().count() >= 1000);
        non_ascii += usize::from(!name.is_ascii());
    }
    assert!(n >= 30, "only {n} vectors");
    assert!(
        long >= 1 && non_ascii >= 3,
        "coverage: {long} long, {non_ascii} non-ASCII"
    );
}

const REFUSED: &[&str] = &[":test", "localhost:", "localhost:١٢٣"];

#[test]
fn addresses_match_the_reference() {
    let data = include_str!("data/address_vectors.txt");
    let mut n = 0;
    for line in data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut f = line.split('\t');
        let text = f.next().unwrap();
        let host = f.next().unwrap();
        let port: i64 = f.next().unwrap().parse().unwrap();
        match Address::parse(text) {
            Ok(a) => {
                assert_eq!(a.host, host, "host of {text:?}");
                assert_eq!(i64::from(a.port), port, "port of {text:?}");
                n += 1;
            }
            // The reference accepts a few forms that we refuse on purpose, with an error
            // naming the part: an empty host or port, '_' separators, non-ASCII digits.
            Err(yoton_core::Error::Address { part, .. }) => assert!(
                REFUSED.contains(&text) && (part == "host" || part == "port"),
                "{text:?} refused ({part})"
            ),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }
    assert!(n >= 10, "only {n} addresses parsed");
}
