//! The router (`yoton_core::router::Router`) fed arbitrary packages, as a hostile or
//! confused network would: any source id and sequence number (0, repeats, jumps, its
//! own id), any destination, over links that come and go.
//!
//! Input: a list of operations, each a kind byte and its parameters. Two routers get
//! the same packages: one judges each package alone (`judge`), the other takes a run
//! of packages over one link the way a connection's reader does (`accept_stream` for
//! the run's start, `judge` for the rest). Checked:
//! - nothing panics;
//! - both routers reach the same verdict for every package, with the same receive
//!   sequence numbers, and forward the same packages over the same links;
//! - a package from the router's own id is dropped; sequence number 0 is never
//!   accepted; no (source, sequence number) is accepted twice (the inputs are far
//!   too short to fill the table of sources, which forgets);
//! - a deposit is for everyone or for this router, and takes the next receive
//!   sequence number; a package for this router alone is not forwarded, any other is
//!   forwarded over every link but the one it came over, and nothing else;
//! - the table of sources stays within `MAX_SOURCES`.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use yoton_core::router::{Dropped, LinkId, Router, Verdict, MAX_SOURCES};
use yoton_core::Package;

const ID: u64 = 0x5eed;

/// The packages forwarded by one call: (link handle, source id, source seq).
type Forwards = Vec<(LinkId, u64, u64)>;

struct Model {
    recv_seq: u64,
    accepted: HashSet<(u64, u64)>,
}

/// Check one verdict of the plain router against the rules above.
fn check(
    model: &mut Model,
    p: &Package,
    from: LinkId,
    links: &[LinkId],
    v: Verdict,
    fw: &Forwards,
) {
    if p.source_id == ID {
        assert_eq!(v, Verdict::Dropped(Dropped::OwnPackage));
    }
    let accepted = matches!(v, Verdict::Deposit(_) | Verdict::Forwarded);
    if accepted {
        assert_ne!(p.source_seq, 0, "sequence number 0 accepted");
        assert!(
            model.accepted.insert((p.source_id, p.source_seq)),
            "({:#x}, {}) accepted twice",
            p.source_id,
            p.source_seq
        );
        let expected: Vec<LinkId> = if p.dest_id == ID {
            Vec::new()
        } else {
            links.iter().copied().filter(|l| *l != from).collect()
        };
        let got: Vec<LinkId> = fw.iter().map(|(l, _, _)| *l).collect();
        assert_eq!(got, expected, "forwarded over the wrong links");
    } else {
        assert!(fw.is_empty(), "a dropped package was forwarded");
    }
    match v {
        Verdict::Deposit(seq) => {
            assert!(p.dest_id == 0 || p.dest_id == ID);
            model.recv_seq += 1;
            assert_eq!(seq, model.recv_seq);
        }
        Verdict::Forwarded => assert!(p.dest_id != 0 && p.dest_id != ID),
        Verdict::Dropped(_) => {}
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
}

/// One package from the input, over one of `links` (or a link that is gone).
fn package(input: &mut Input, last_seq: &mut u64) -> Option<Package> {
    let s = input.byte()?;
    let source_id = match s % 8 {
        0 => ID,
        7 => u64::from(input.u16()?) << 32,
        n => u64::from(n),
    };
    // Mostly the next number (a stream), else anything near or far.
    let source_seq = match input.byte()? % 4 {
        0 | 1 => last_seq.wrapping_add(1),
        2 => u64::from(input.u16()?),
        _ => last_seq.wrapping_sub(u64::from(input.byte()?)),
    };
    *last_seq = source_seq;
    let dest_id = match input.byte()? % 6 {
        0 => ID,
        1 => 99,
        _ => 0,
    };
    let mut p = Package::new(7, "x");
    p.source_id = source_id;
    p.source_seq = source_seq;
    p.dest_id = dest_id;
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut plain: Router<LinkId> = Router::new(ID);
    let mut reader: Router<LinkId> = Router::new(ID);
    let mut links: Vec<LinkId> = Vec::new();
    let mut next_link: LinkId = 1;
    let mut model = Model {
        recv_seq: 0,
        accepted: HashSet::new(),
    };
    let mut last_seq = 0u64;
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                plain.add_link(next_link, next_link, |_, _| {});
                reader.add_link(next_link, next_link, |_, _| {});
                links.push(next_link);
                next_link += 1;
            }
            1 => {
                let Some(i) = input.byte() else { break };
                if !links.is_empty() {
                    let id = links.remove(usize::from(i) % links.len());
                    assert_eq!(plain.remove_link(id), Some(id));
                    assert_eq!(reader.remove_link(id), Some(id));
                }
            }
            _ => {
                // A read: up to 8 packages over one link (or one that is gone).
                let Some(l) = input.byte() else { break };
                let from = links
                    .get(usize::from(l % 8))
                    .copied()
                    .unwrap_or(LinkId::from(l) + 1000);
                let n = 1 + usize::from(op / 8 % 8);
                let mut read = Vec::new();
                for _ in 0..n {
                    match package(&mut input, &mut last_seq) {
                        Some(p) => read.push((p, 0u64)),
                        None => break,
                    }
                }
                // The plain router, package by package.
                let mut verdicts = Vec::new();
                for (p, _) in &read {
                    let mut fw = Forwards::new();
                    let v = plain.judge(p, from, |l, q| fw.push((*l, q.source_id, q.source_seq)));
                    check(&mut model, p, from, &links, v, &fw);
                    verdicts.push((v, fw));
                }
                // The reader's way: the start of the run at once, then one by one.
                let taken = reader.accept_stream(&mut read, from);
                assert!(taken <= read.len());
                for (i, ((p, recv_seq), (v, fw))) in read.iter().zip(&verdicts).enumerate() {
                    if i < taken {
                        assert_eq!(*v, Verdict::Deposit(*recv_seq), "accept_stream differs");
                        assert!(fw.is_empty(), "accept_stream skipped a forward");
                    } else {
                        let mut fw2 = Forwards::new();
                        let v2 =
                            reader.judge(p, from, |l, q| fw2.push((*l, q.source_id, q.source_seq)));
                        assert_eq!(v2, *v, "judge after accept_stream differs");
                        assert_eq!(&fw2, fw);
                    }
                }
            }
        }
        assert!(plain.source_count() <= MAX_SOURCES);
        assert_eq!(plain.source_count(), reader.source_count());
    }
});
