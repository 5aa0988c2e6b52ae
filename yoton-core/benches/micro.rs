//! Micro-benchmarks of the hot paths of yoton-core, without a harness crate:
//! `cargo bench -p yoton-core` prints ns per operation (median and best of several
//! samples) for
//!
//! * header encode and decode ([`Header::to_bytes`], [`Header::from_bytes`]);
//! * codec decode of a buffer of 10,000 packages of 64 bytes ([`PackageCodec`]);
//! * codec encode of the same packages;
//! * [`slot_hash`] of a channel slot name;
//! * [`Router::receive`] of 10,000 packages (one source, two links: deposit and
//!   forward), and [`Router::send`] to two links.
//!
//! Pass a name filter as the first argument: `cargo bench -p yoton-core -- codec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};
use yoton_core::package::Header;
use yoton_core::router::{Received, Router};
use yoton_core::{slot_hash, Frame, Package, PackageCodec};

/// Packages per batch in the codec and router benchmarks.
const BATCH: usize = 10_000;
/// Samples per benchmark (each at least `SAMPLE_TIME`).
const SAMPLES: usize = 15;
const SAMPLE_TIME: Duration = Duration::from_millis(40);

/// Time `f` (which does `ops` operations per call, after `setup`), print ns/op.
fn bench<S, T>(name: &str, ops: usize, mut setup: S, mut f: impl FnMut(T))
where
    S: FnMut() -> T,
{
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    // Warm up.
    for _ in 0..3 {
        f(setup());
    }
    let mut per_op = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let (mut spent, mut calls) = (Duration::ZERO, 0u64);
        while spent < SAMPLE_TIME {
            let input = setup();
            let t = Instant::now();
            f(input);
            spent += t.elapsed();
            calls += 1;
        }
        per_op.push(spent.as_nanos() as f64 / (calls as f64 * ops as f64));
    }
    per_op.sort_by(f64::total_cmp);
    println!(
        "{name:<52} {:>10.2} ns/op (best {:.2}, {ops} op per call)",
        per_op[SAMPLES / 2],
        per_op[0]
    );
}

fn packages(n: usize, source: u64, first_seq: u64) -> Vec<Package> {
    let slot = slot_hash("bench.bin.pub-sub");
    let payload = Bytes::from(vec![0x5au8; 64]);
    (0..n as u64)
        .map(|i| Package {
            slot,
            source_id: source,
            source_seq: first_seq + i,
            dest_id: 0,
            dest_seq: 0,
            payload: payload.slice(..),
        })
        .collect()
}

fn main() {
    println!("yoton-core micro-benchmarks (median of {SAMPLES} samples)");

    let header = Header {
        slot: slot_hash("bench.bin.pub-sub"),
        source_id: 0x1234_5678_9abc_def0,
        source_seq: 42,
        dest_id: 0,
        dest_seq: 0,
        length: 64,
    };
    bench(
        "header encode (Header::to_bytes)",
        1000,
        || (),
        |()| {
            for i in 0..1000u64 {
                let mut h = header;
                h.source_seq = i;
                black_box(black_box(&h).to_bytes());
            }
        },
    );
    let raw = header.to_bytes();
    bench(
        "header decode (Header::from_bytes)",
        1000,
        || (),
        |()| {
            for _ in 0..1000 {
                let _ = black_box(Header::from_bytes(black_box(&raw)));
            }
        },
    );

    // A read buffer holding 10,000 packages of 64 bytes, as the reader sees it.
    let mut wire = BytesMut::new();
    let mut codec = PackageCodec::default();
    for p in packages(BATCH, 7, 1) {
        codec
            .encode(&Frame::Package(p), &mut wire)
            .expect("encodes");
    }
    let wire = wire.freeze();
    bench(
        "codec decode, 10,000 x 64 B packages",
        BATCH,
        || BytesMut::from(&wire[..]),
        |mut buf| {
            let mut codec = PackageCodec::default();
            let mut n = 0;
            while let Some(f) = codec.decode(&mut buf).expect("decodes") {
                black_box(&f);
                n += 1;
            }
            assert_eq!(n, BATCH);
        },
    );
    bench(
        "codec encode, 10,000 x 64 B packages",
        BATCH,
        || {
            (
                packages(BATCH, 7, 1)
                    .into_iter()
                    .map(Frame::Package)
                    .collect::<Vec<_>>(),
                BytesMut::with_capacity(wire.len()),
            )
        },
        |(frames, mut buf)| {
            let mut codec = PackageCodec::default();
            for f in &frames {
                codec.encode(f, &mut buf).expect("encodes");
            }
            black_box(buf);
        },
    );

    let names: Vec<String> = (0..100)
        .map(|i| format!("channel{i}.bin.pub-sub"))
        .collect();
    bench(
        "slot_hash (\"channelN.bin.pub-sub\")",
        names.len(),
        || (),
        |()| {
            for n in &names {
                black_box(slot_hash(black_box(n)));
            }
        },
    );

    // The router: packages from one source arriving over link 1; link 2 forwards.
    let mut router: Router<u32> = Router::new(99);
    router.add_link(1, 1, |_, _| {});
    router.add_link(2, 2, |_, _| {});
    let mut seq = 1u64;
    bench(
        "router receive, 10,000 packages (deposit + forward)",
        BATCH,
        || {
            let p = packages(BATCH, 7, seq);
            seq += BATCH as u64;
            p
        },
        |ps| {
            let mut forwarded = 0usize;
            let mut deposited = 0usize;
            for p in ps {
                match router.receive(p, 1, |_, p| {
                    forwarded += 1;
                    black_box(p);
                }) {
                    Received::Deposit { package, .. } => {
                        deposited += 1;
                        black_box(package);
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!((forwarded, deposited), (BATCH, BATCH));
        },
    );
    let mut sender: Router<u32> = Router::new(98);
    sender.add_link(1, 1, |_, _| {});
    sender.add_link(2, 2, |_, _| {});
    bench(
        "router send, 10,000 packages to 2 links",
        BATCH,
        || packages(BATCH, 0, 0),
        |ps| {
            for p in ps {
                sender.send(p, |_, p| {
                    black_box(p);
                });
            }
        },
    );
}
