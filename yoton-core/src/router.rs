//! Routing (PROTOCOL.md section 4) as a plain state machine: no sockets, tasks or clocks.
//!
//! The [`Router`] holds the context id, the send sequence, the duplicate-suppression
//! windows, the receive sequence, the set of alive links and the start-up queue. Its
//! methods take a package and call `out(link, package)` for every link the package must
//! go to; the caller does the I/O. Many routers can be wired together in one test to
//! simulate a network (see the tests below).

use std::collections::{HashMap, VecDeque};

use crate::package::Package;

/// A fast keyed hasher for the u64 keys of the routing tables (slot hashes, context
/// ids). SipHash cost a quarter of the receive path's instructions; this is a
/// multiply-rotate per key and a multiply-xorshift finish, keyed with a per-process
/// random seed so that a peer cannot easily choose colliding ids.
#[derive(Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // A full final mix: the multiply of `write_u64` only moves differences
        // upwards, so ids that differ in their top bits alone would share the low
        // bits the table uses, whatever the seed.
        let mut x = self.0;
        x ^= x >> 32;
        x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        x ^ (x >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(23);
    }
}

/// Builds [`IdHasher`]s with the process's seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasherBuilder;

impl std::hash::BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b) | 1
        });
        IdHasher(seed)
    }
}

/// A map keyed by slot hashes or context ids.
pub type IdMap<V> = HashMap<u64, V, IdHasherBuilder>;

/// Identifies a link (connection) within one context.
pub type LinkId = u64;

/// How many sequence numbers below the highest seen are remembered per source.
pub const DEDUP_WINDOW: u64 = 4096;

/// How many sources (context ids) the router keeps a window for (about 0.5 KiB each).
/// When a new source arrives with the table full, the least recently heard half is
/// forgotten: a peer inventing source ids cannot grow the table beyond 2 MiB, and a
/// forgotten source that speaks again starts a fresh window.
pub const MAX_SOURCES: usize = 4096;

/// Default maximum length of the start-up queue.
pub const DEFAULT_STARTUP_QUEUE: usize = 10_000;

/// Recently seen sequence numbers of one source: the highest, plus a bitmap of the
/// [`DEDUP_WINDOW`] numbers below it.
#[derive(Debug, Clone)]
struct SeenWindow {
    highest: u64,
    bits: Vec<u64>,
    /// When this source was last heard (the router's receive count).
    heard: u64,
}

impl SeenWindow {
    fn new() -> Self {
        SeenWindow {
            highest: 0,
            bits: vec![0; (DEDUP_WINDOW / 64) as usize],
            heard: 0,
        }
    }

    #[inline(always)]
    fn bit(&self, seq: u64) -> (usize, u64) {
        let i = seq % DEDUP_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `seq` is the number right after the highest seen (never 0).
    #[inline(always)]
    fn is_next(&self, seq: u64) -> bool {
        seq == self.highest.wrapping_add(1) && seq != 0
    }

    /// Record `seq`, the next number ([`SeenWindow::is_next`]).
    #[inline(always)]
    fn take_next(&mut self, seq: u64) {
        self.highest = seq;
        let (w, m) = self.bit(seq);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= m;
        }
    }

    /// Record `seq`; false when it was seen before or is too old to tell.
    #[inline]
    fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if self.is_next(seq) {
            // The next one of a stream (the common case): no slot to clear in between.
            self.take_next(seq);
            return true;
        }
        if seq > self.highest {
            // Clear the slots of the numbers that the window slides over.
            let gap = seq - self.highest;
            if gap >= DEDUP_WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in self.highest + 1..seq {
                    let (w, m) = self.bit(s);
                    if let Some(word) = self.bits.get_mut(w) {
                        *word &= !m;
                    }
                }
            }
            self.highest = seq;
            let (w, m) = self.bit(seq);
            if let Some(word) = self.bits.get_mut(w) {
                *word |= m;
            }
            return true;
        }
        if self.highest - seq >= DEDUP_WINDOW {
            return false; // too old: treated as a duplicate
        }
        let (w, m) = self.bit(seq);
        match self.bits.get_mut(w) {
            Some(word) if *word & m == 0 => {
                *word |= m;
                true
            }
            _ => false,
        }
    }
}

/// Why the router dropped a received package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Seen before (or older than the window).
    Duplicate,
    /// It came back around a cycle to the context that made it.
    OwnPackage,
}

/// What happened to a received package.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Deposit it here; it carries this context's receive sequence number.
    Deposit {
        /// The package.
        package: Package,
        /// Per-context receive sequence number (for ordered merges).
        recv_seq: u64,
    },
    /// Only forwarded (directed at another context).
    Forwarded,
    /// Dropped.
    Dropped(Dropped),
}

/// What [`Router::judge`] decided about a received package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deposit it here, with this context's receive sequence number.
    Deposit(u64),
    /// Only forwarded (directed at another context).
    Forwarded,
    /// Dropped.
    Dropped(Dropped),
}

/// The routing state of one context.
///
/// ```
/// use yoton_core::router::{Router, Received};
/// use yoton_core::Package;
///
/// let mut a: Router<&str> = Router::new(1);
/// let mut b: Router<&str> = Router::new(2);
/// a.add_link(7, "to-b", |_, _| {});
/// let mut wire = vec![];
/// a.send(Package::new(100, "hi"), |_, p| wire.push(p.clone()));
/// let got = b.receive(wire.pop().unwrap(), 7, |_, _| {});
/// assert!(matches!(got, Received::Deposit { recv_seq: 1, .. }));
/// ```
#[derive(Debug)]
pub struct Router<L> {
    id: u64,
    send_seq: u64,
    recv_seq: u64,
    seen: IdMap<SeenWindow>,
    /// The window of the source heard last, outside the table: a stream of packages
    /// from one source needs no table lookup per package.
    hot: Option<(u64, SeenWindow)>,
    /// Packages received (the clock of `SeenWindow::heard`).
    received: u64,
    links: Vec<(LinkId, L)>,
    startup: VecDeque<Package>,
    startup_limit: usize,
    startup_dropped: u64,
}

impl<L> Router<L> {
    /// A router for the context with this id (non-zero).
    pub fn new(id: u64) -> Self {
        Router {
            id,
            send_seq: 0,
            recv_seq: 0,
            seen: IdMap::default(),
            hot: None,
            received: 0,
            links: Vec::new(),
            startup: VecDeque::new(),
            startup_limit: DEFAULT_STARTUP_QUEUE,
            startup_dropped: 0,
        }
    }

    /// The context id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Set the start-up queue limit; when full, the oldest queued package is dropped.
    pub fn set_startup_limit(&mut self, limit: usize) {
        self.startup_limit = limit.max(1);
    }

    /// Packages dropped because the start-up queue was full.
    pub fn startup_dropped(&self) -> u64 {
        self.startup_dropped
    }

    /// Packages waiting for the first link.
    pub fn startup_len(&self) -> usize {
        self.startup.len()
    }

    /// The alive links.
    pub fn links(&self) -> impl Iterator<Item = (LinkId, &L)> {
        self.links.iter().map(|(id, l)| (*id, l))
    }

    /// Number of alive links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// A link became alive (waiting or connected). The start-up queue is handed to it.
    pub fn add_link(&mut self, id: LinkId, link: L, mut out: impl FnMut(&L, Package)) {
        for p in self.startup.drain(..) {
            out(&link, p);
        }
        self.links.push((id, link));
    }

    /// A link is gone; returns its handle.
    pub fn remove_link(&mut self, id: LinkId) -> Option<L> {
        let pos = self.links.iter().position(|(i, _)| *i == id)?;
        Some(self.links.remove(pos).1)
    }

    /// Stamp a package made by this context (source id and next sequence number) and
    /// send it over every alive link, or queue it when there is none.
    pub fn send(&mut self, mut package: Package, mut out: impl FnMut(&L, &Package)) {
        self.send_seq += 1;
        package.source_id = self.id;
        package.source_seq = self.send_seq;
        if self.links.is_empty() {
            if self.startup.len() >= self.startup_limit {
                self.startup.pop_front();
                self.startup_dropped += 1;
            }
            self.startup.push_back(package);
        } else {
            for (_, l) in &self.links {
                out(l, &package);
            }
        }
    }

    /// Stamp a package made here that the caller sends itself: this context's id and
    /// the next sequence number, or `None` (nothing used up) when there is no link,
    /// so that the caller hands an owned package to [`Router::send`] for the
    /// start-up queue. The links are [`Router::links`].
    pub fn stamp(&mut self) -> Option<(u64, u64)> {
        if self.links.is_empty() {
            return None;
        }
        self.send_seq += 1;
        Some((self.id, self.send_seq))
    }

    /// Sources with a duplicate-suppression window (at most [`MAX_SOURCES`]).
    pub fn source_count(&self) -> usize {
        self.seen.len() + usize::from(self.hot.is_some())
    }

    /// The window of `source`, made the hot one (the table is bounded here).
    fn window(&mut self, source: u64) -> &mut SeenWindow {
        // A stream from one source finds its window in place (nothing moved).
        if !matches!(&self.hot, Some((id, _)) if *id == source) {
            if let Some((id, w)) = self.hot.take() {
                self.seen.insert(id, w);
            }
            let w = match self.seen.remove(&source) {
                Some(w) => w,
                None => {
                    if self.seen.len() + 1 >= MAX_SOURCES {
                        self.forget_oldest_sources();
                    }
                    SeenWindow::new()
                }
            };
            self.hot = Some((source, w));
        }
        &mut self
            .hot
            .get_or_insert_with(|| (source, SeenWindow::new()))
            .1
    }

    /// Forget the least recently heard half of the sources.
    fn forget_oldest_sources(&mut self) {
        let mut heard: Vec<u64> = self.seen.values().map(|w| w.heard).collect();
        let mid = heard.len() / 2;
        let (_, median, _) = heard.select_nth_unstable(mid);
        let median = *median;
        self.seen.retain(|_, w| w.heard > median);
        tracing::debug!(
            kept = self.seen.len(),
            "duplicate-suppression table full: forgot the least recently heard sources"
        );
    }

    /// A package arrived over link `from`: decide whether to deposit it and where to
    /// forward it (`out` is called for each forward).
    pub fn receive(
        &mut self,
        package: Package,
        from: LinkId,
        out: impl FnMut(&L, &Package),
    ) -> Received {
        match self.judge(&package, from, out) {
            Verdict::Deposit(recv_seq) => Received::Deposit { package, recv_seq },
            Verdict::Forwarded => Received::Forwarded,
            Verdict::Dropped(why) => Received::Dropped(why),
        }
    }

    /// [`Router::receive`] for a package the caller keeps: the verdict says whether to
    /// deposit it (with its receive sequence number). The context's reader uses this,
    /// so that a package is not moved into the router and back out.
    ///
    /// ```
    /// use yoton_core::router::{Router, Verdict};
    /// use yoton_core::Package;
    ///
    /// let mut r: Router<()> = Router::new(1);
    /// let mut p = Package::new(5, "hi");
    /// p.source_id = 2;
    /// p.source_seq = 1;
    /// assert_eq!(r.judge(&p, 7, |_, _| {}), Verdict::Deposit(1));
    /// assert!(matches!(r.judge(&p, 7, |_, _| {}), Verdict::Dropped(_))); // a duplicate
    /// ```
    #[inline]
    pub fn judge(
        &mut self,
        package: &Package,
        from: LinkId,
        out: impl FnMut(&L, &Package),
    ) -> Verdict {
        match self.next_of_stream(package, from) {
            Some(verdict) => verdict,
            None => self.judge_any(package, from, out),
        }
    }

    /// The verdict on the next package of the stream of the source heard last, when
    /// it is for everyone and came over the only link (nothing to forward, no table
    /// to look at): what [`Router::judge_any`] would say, in a few instructions.
    /// `None` for any other package.
    #[inline(always)]
    fn next_of_stream(&mut self, package: &Package, from: LinkId) -> Option<Verdict> {
        if !self.is_next_of_stream(package, from) {
            return None;
        }
        let (_, window) = self.hot.as_mut()?;
        self.received += 1;
        window.heard = self.received;
        window.take_next(package.source_seq);
        self.recv_seq += 1;
        Some(Verdict::Deposit(self.recv_seq))
    }

    /// [`Router::judge`] on a whole read at once, for its usual start: the longest
    /// prefix of `packages` that continues the stream of the source heard last
    /// (consecutive numbers, for everyone, over the only link) is accepted as `judge`
    /// would accept each package of it (deposited, nothing to forward), and each of
    /// them gets its receive sequence number in `.1`. Returns the length of that
    /// prefix; the packages after it are for `judge`.
    ///
    /// ```
    /// use yoton_core::{router::{Router, Verdict}, Package};
    /// let mut r: Router<()> = Router::new(1);
    /// r.add_link(7, (), |_, _| {});
    /// let mut p = Package::new(9, "x");
    /// p.source_id = 2;
    /// p.source_seq = 1;
    /// assert_eq!(r.judge(&p, 7, |_, _| {}), Verdict::Deposit(1)); // the stream's first
    /// let mut read: Vec<(Package, u64)> = (2..=4)
    ///     .chain([9]) // a gap: left to `judge`
    ///     .map(|seq| (Package { source_seq: seq, ..p.clone() }, 0))
    ///     .collect();
    /// assert_eq!(r.accept_stream(&mut read, 7), 3);
    /// assert_eq!(read.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [2, 3, 4, 0]);
    /// assert_eq!(r.judge(&read[3].0, 7, |_, _| {}), Verdict::Deposit(5));
    /// ```
    pub fn accept_stream(&mut self, packages: &mut [(Package, u64)], from: LinkId) -> usize {
        if !matches!(self.links.as_slice(), [(only, _)] if *only == from) {
            return 0;
        }
        let Some((source, window)) = self.hot.as_mut() else {
            return 0;
        };
        let mut accepted = 0usize;
        for (p, recv_seq) in packages.iter_mut() {
            if p.source_id != *source || p.dest_id != 0 || !window.is_next(p.source_seq) {
                break;
            }
            window.take_next(p.source_seq);
            self.recv_seq += 1;
            *recv_seq = self.recv_seq;
            accepted += 1;
        }
        if accepted > 0 {
            self.received += accepted as u64;
            window.heard = self.received;
        }
        accepted
    }

    /// Whether [`Router::next_of_stream`] applies to `package`: the next number of the
    /// source heard last, for everyone, over the only link.
    #[inline(always)]
    fn is_next_of_stream(&self, package: &Package, from: LinkId) -> bool {
        matches!(&self.hot, Some((source, w)) if *source == package.source_id
            && w.is_next(package.source_seq))
            && package.dest_id == 0
            && matches!(self.links.as_slice(), [(only, _)] if *only == from)
    }

    /// [`Router::judge`] for any package.
    fn judge_any(
        &mut self,
        package: &Package,
        from: LinkId,
        mut out: impl FnMut(&L, &Package),
    ) -> Verdict {
        if package.source_id == self.id {
            return Verdict::Dropped(Dropped::OwnPackage);
        }
        self.received += 1;
        let received = self.received;
        let window = self.window(package.source_id);
        window.heard = received;
        if !window.accept(package.source_seq) {
            return Verdict::Dropped(Dropped::Duplicate);
        }
        let deposit = package.dest_id == 0 || package.dest_id == self.id;
        let forward = package.dest_id != self.id;
        if forward {
            for (id, l) in &self.links {
                if *id != from {
                    out(l, package);
                }
            }
        }
        if deposit {
            self.recv_seq += 1;
            Verdict::Deposit(self.recv_seq)
        } else {
            Verdict::Forwarded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A simulated network: routers joined by links that deliver in FIFO order, each
    /// link with a delay in "ticks".
    struct Net {
        nodes: Vec<Router<(usize, LinkId)>>,
        /// (deliver_at, to_node, via_link, package)
        wire: VecDeque<(u64, usize, LinkId, Package)>,
        delays: HashMap<(usize, LinkId), u64>,
        now: u64,
        delivered: Vec<Vec<Package>>,
        next_link: LinkId,
    }

    impl Net {
        fn new(n: usize) -> Self {
            Net {
                nodes: (0..n).map(|i| Router::new(100 + i as u64)).collect(),
                wire: VecDeque::new(),
                delays: HashMap::new(),
                now: 0,
                delivered: vec![vec![]; n],
                next_link: 1,
            }
        }

        fn join(&mut self, a: usize, b: usize, delay: u64) {
            let (la, lb) = (self.next_link, self.next_link + 1);
            self.next_link += 2;
            // Link handle: (peer node, link id at the peer).
            self.nodes[a].add_link(la, (b, lb), |_, _| {});
            self.nodes[b].add_link(lb, (a, la), |_, _| {});
            self.delays.insert((b, lb), delay);
            self.delays.insert((a, la), delay);
        }

        fn push(&mut self, to: (usize, LinkId), p: Package) {
            let at = self.now + self.delays[&to];
            self.wire.push_back((at, to.0, to.1, p));
        }

        fn send(&mut self, node: usize, p: Package) {
            let mut out = vec![];
            self.nodes[node].send(p, |l, p| out.push((*l, p.clone())));
            for (l, p) in out {
                self.push(l, p);
            }
        }

        fn run(&mut self) {
            while !self.wire.is_empty() {
                self.now += 1;
                let due: Vec<_> = {
                    let now = self.now;
                    let (due, later): (Vec<_>, Vec<_>) =
                        self.wire.drain(..).partition(|(at, ..)| *at <= now);
                    self.wire = later.into();
                    due
                };
                for (_, node, link, p) in due {
                    let mut out = vec![];
                    if let Received::Deposit { package, .. } =
                        self.nodes[node].receive(p, link, |l, p| out.push((*l, p.clone())))
                    {
                        self.delivered[node].push(package);
                    }
                    for (l, p) in out {
                        self.push(l, p);
                    }
                }
            }
        }
    }

    fn payloads(ps: &[Package]) -> Vec<String> {
        let mut v: Vec<String> = ps
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn line_routes_broadcast_and_directed() {
        let mut net = Net::new(3);
        net.join(0, 1, 1);
        net.join(1, 2, 1);
        net.send(0, Package::new(9, "all"));
        let c_id = net.nodes[2].id();
        net.send(0, Package::new(9, "to-c").to(c_id, 0));
        net.run();
        assert_eq!(payloads(&net.delivered[1]), vec!["all"]);
        assert_eq!(payloads(&net.delivered[2]), vec!["all", "to-c"]);
        assert!(net.delivered[0].is_empty());
    }

    #[test]
    fn triangle_delivers_exactly_once() {
        for delays in [(1, 1, 1), (1, 5, 1), (7, 1, 2)] {
            let mut net = Net::new(3);
            net.join(0, 1, delays.0);
            net.join(1, 2, delays.1);
            net.join(2, 0, delays.2);
            for i in 0..50 {
                net.send(i % 3, Package::new(9, format!("m{i:02}")));
            }
            net.run();
            for n in 0..3 {
                let expected: Vec<String> = (0..50)
                    .filter(|i| i % 3 != n)
                    .map(|i| format!("m{i:02}"))
                    .collect();
                assert_eq!(
                    payloads(&net.delivered[n]),
                    expected,
                    "node {n}, delays {delays:?}"
                );
            }
        }
    }

    #[test]
    fn a_faster_path_appearing_mid_stream_loses_nothing() {
        // Node 0 reaches node 2 over a slow link; while packages are in flight there, a
        // fast two-hop path appears, so later packages overtake earlier ones. The
        // reference's "newer than the last seen" rule drops the overtaken ones.
        let mut net = Net::new(3);
        net.join(0, 2, 10);
        for i in 0..5 {
            net.send(0, Package::new(9, format!("m{i:02}")));
        }
        net.join(0, 1, 1);
        net.join(1, 2, 1);
        for i in 5..10 {
            net.send(0, Package::new(9, format!("m{i:02}")));
        }
        net.run();
        let arrival: Vec<String> = net.delivered[2]
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        assert_eq!(
            arrival.first().map(String::as_str),
            Some("m05"),
            "later packages overtook"
        );
        let expected: Vec<String> = (0..10).map(|i| format!("m{i:02}")).collect();
        assert_eq!(payloads(&net.delivered[2]), expected);
    }

    #[test]
    fn window_rejects_duplicates_and_very_old() {
        let mut w = SeenWindow::new();
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(!w.accept(5));
        assert!(w.accept(4));
        assert!(w.accept(5 + DEDUP_WINDOW));
        assert!(!w.accept(5));
        assert!(!w.accept(0));
    }

    #[test]
    fn window_takes_a_stream_through_several_turns_of_its_bitmap() {
        let mut w = SeenWindow::new();
        let last = 3 * DEDUP_WINDOW + 7;
        for seq in 1..=last {
            assert!(w.accept(seq), "{seq} refused");
        }
        // Every number of the window is a duplicate now; older ones are too old.
        for seq in last + 1 - DEDUP_WINDOW..=last {
            assert!(!w.accept(seq), "{seq} accepted twice");
        }
        assert!(!w.accept(last - DEDUP_WINDOW));
        // A gap, then the stream goes on.
        assert!(w.accept(last + 3));
        assert!(w.accept(last + 1));
        assert!(w.accept(last + 4));
        assert!(!w.accept(last + 3));
        assert!(w.accept(last + 2));
    }

    #[test]
    fn startup_queue_is_handed_to_the_first_link_and_bounded() {
        let mut r: Router<u8> = Router::new(1);
        r.set_startup_limit(3);
        for i in 0..5u8 {
            r.send(Package::new(9, vec![i + 1]), |_, _| unreachable!());
        }
        assert_eq!(r.startup_dropped(), 2);
        let mut got = vec![];
        r.add_link(1, 0, |_, p| got.push(p.payload[0]));
        assert_eq!(got, vec![3, 4, 5]);
    }

    #[test]
    fn ids_differing_only_in_their_top_bits_spread_over_the_table() {
        use std::hash::BuildHasher;
        let low_bits: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| IdHasherBuilder.hash_one(i << 54) & 1023)
            .collect();
        assert!(
            low_bits.len() > 512,
            "{} distinct buckets of 1024",
            low_bits.len()
        );
    }

    #[test]
    fn the_source_table_is_bounded_and_keeps_the_recent_sources() {
        let mut r: Router<()> = Router::new(1);
        let p = |src: u64, seq: u64| {
            let mut p = Package::new(100, "x");
            p.source_id = src;
            p.source_seq = seq;
            p
        };
        // A regular peer, then a flood of invented sources, the regular one in between.
        assert!(matches!(
            r.receive(p(7, 1), 0, |_, _| {}),
            Received::Deposit { .. }
        ));
        for src in 1000..1000 + 3 * MAX_SOURCES as u64 {
            assert!(matches!(
                r.receive(p(src, 1), 0, |_, _| {}),
                Received::Deposit { .. }
            ));
            assert!(r.source_count() <= MAX_SOURCES);
            if src % 1000 == 0 {
                let seq = src / 1000 + 1;
                assert!(matches!(
                    r.receive(p(7, seq), 0, |_, _| {}),
                    Received::Deposit { .. }
                ));
            }
        }
        assert!(r.source_count() <= MAX_SOURCES);
        assert!(r.source_count() >= MAX_SOURCES / 2);
        // The regular peer was heard recently: still known, duplicates still caught.
        assert_eq!(
            r.receive(p(7, 13), 0, |_, _| {}),
            Received::Dropped(Dropped::Duplicate)
        );
        // The most recent invented source is known too.
        let last = 1000 + 3 * MAX_SOURCES as u64 - 1;
        assert_eq!(
            r.receive(p(last, 1), 0, |_, _| {}),
            Received::Dropped(Dropped::Duplicate)
        );
    }

    #[test]
    fn interleaved_sources_keep_their_own_windows() {
        let mut r: Router<()> = Router::new(1);
        let p = |src: u64, seq: u64| {
            let mut p = Package::new(100, "x");
            p.source_id = src;
            p.source_seq = seq;
            p
        };
        let mut deposited = 0;
        // Each package twice, the sources alternating (the hot window moves each time).
        for seq in 1..=50 {
            for src in [5, 6, 7] {
                for _ in 0..2 {
                    if matches!(
                        r.receive(p(src, seq), 0, |_, _| {}),
                        Received::Deposit { .. }
                    ) {
                        deposited += 1;
                    }
                }
            }
        }
        assert_eq!(deposited, 150);
        assert_eq!(r.source_count(), 3);
    }

    #[test]
    fn the_stream_fast_path_judges_as_the_general_one() {
        // Two routers fed the same packages, one through `judge` (with its fast path),
        // one through `judge_any` only: same verdicts and forwards, package by package.
        // Mostly streams in order (the fast path), with duplicates, gaps, wrap-around,
        // sequence 0, other sources, own packages, addressed packages, and a second link
        // joining and leaving.
        let mut fast: Router<u8> = Router::new(1);
        let mut slow: Router<u8> = Router::new(1);
        for r in [&mut fast, &mut slow] {
            r.add_link(7, 7, |_, _| {});
        }
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut seqs = [0u64, 0, u64::MAX - 3];
        let mut fast_path_taken = 0;
        for i in 0..20_000 {
            if i == 8_000 {
                for r in [&mut fast, &mut slow] {
                    r.add_link(8, 8, |_, _| {});
                }
            }
            if i == 12_000 {
                for r in [&mut fast, &mut slow] {
                    r.remove_link(8);
                }
            }
            let src = [5u64, 6, 9][if next(10) < 8 { 0 } else { next(3) as usize }];
            let k = [5u64, 6, 9].iter().position(|&s| s == src).unwrap_or(0);
            let seq = match next(20) {
                0 => seqs[k].saturating_sub(next(5)),     // a repeat
                1 => seqs[k].wrapping_add(2 + next(100)), // a gap
                2 => 0,
                _ => seqs[k].wrapping_add(1),
            };
            seqs[k] = seqs[k].max(seq);
            let mut p = Package::new(100, "x");
            p.source_id = if next(50) == 0 { 1 } else { src };
            p.source_seq = seq;
            p.dest_id = match next(30) {
                0 => 1,
                1 => 99,
                _ => 0,
            };
            let from = if next(20) == 0 { 8 } else { 7 };
            let taken = fast.is_next_of_stream(&p, from);
            let (mut out_fast, mut out_slow) = (vec![], vec![]);
            let v_fast = fast.judge(&p, from, |l, _| out_fast.push(*l));
            let v_slow = slow.judge_any(&p, from, |l, _| out_slow.push(*l));
            assert_eq!(v_fast, v_slow, "package {i}: {p:?} from {from}");
            assert_eq!(out_fast, out_slow, "package {i}");
            fast_path_taken += usize::from(taken);
        }
        assert!(fast_path_taken > 5_000, "{fast_path_taken}");
        assert!(fast_path_taken < 18_000, "{fast_path_taken}");
    }

    #[test]
    fn accepting_a_stream_at_once_judges_as_package_by_package() {
        // Reads of 1 to 64 packages: one router takes each read's stream prefix with
        // `accept_stream` and judges the rest, the other judges every package with
        // `judge_any`. Same verdicts, same forwards (none for an accepted package).
        let mut run: Router<u8> = Router::new(1);
        let mut slow: Router<u8> = Router::new(1);
        for r in [&mut run, &mut slow] {
            r.add_link(7, 7, |_, _| {});
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut seqs = [0u64, u64::MAX - 40];
        let (mut accepted, mut total) = (0usize, 0usize);
        for read_no in 0..2_000 {
            if read_no == 900 {
                for r in [&mut run, &mut slow] {
                    r.add_link(8, 8, |_, _| {});
                }
            }
            if read_no == 1_100 {
                for r in [&mut run, &mut slow] {
                    r.remove_link(8);
                }
            }
            let from = if next(25) == 0 { 8 } else { 7 };
            let mut read: Vec<(Package, u64)> = (0..1 + next(64))
                .map(|_| {
                    let k = usize::from(next(40) == 0);
                    let seq = match next(80) {
                        0 => seqs[k].saturating_sub(next(3)),
                        1 => seqs[k].wrapping_add(2 + next(10)),
                        2 => 0,
                        _ => seqs[k].wrapping_add(1),
                    };
                    seqs[k] = seqs[k].max(seq);
                    let mut p = Package::new(100, "x");
                    p.source_id = if next(200) == 0 { 1 } else { [5, 6][k] };
                    p.source_seq = seq;
                    p.dest_id = match next(60) {
                        0 => 1,
                        1 => 99,
                        _ => 0,
                    };
                    (p, 0)
                })
                .collect();
            let n = run.accept_stream(&mut read, from);
            for (i, (p, recv_seq)) in read.iter().enumerate() {
                let mut out_slow = vec![];
                let v_slow = slow.judge_any(p, from, |l, _| out_slow.push(*l));
                if i < n {
                    assert_eq!(Verdict::Deposit(*recv_seq), v_slow, "read {read_no}, {i}");
                    assert!(out_slow.is_empty(), "read {read_no}, {i}");
                } else {
                    let mut out_run = vec![];
                    let v_run = run.judge(p, from, |l, _| out_run.push(*l));
                    assert_eq!(v_run, v_slow, "read {read_no}, {i}: {p:?} from {from}");
                    assert_eq!(out_run, out_slow, "read {read_no}, {i}");
                }
            }
            accepted += n;
            total += read.len();
        }
        assert!(accepted > total / 8, "{accepted} of {total}");
        assert!(accepted < total * 9 / 10, "{accepted} of {total}");
    }

    #[test]
    fn own_packages_coming_back_are_dropped() {
        let mut r: Router<u8> = Router::new(1);
        let mut p = Package::new(9, "x");
        p.source_id = 1;
        p.source_seq = 1;
        assert_eq!(
            r.receive(p, 1, |_, _| {}),
            Received::Dropped(Dropped::OwnPackage)
        );
    }
}
