//! The UDP side of a QUIC endpoint: sockets with large buffers, and larger packets
//! on loopback.
//!
//! * Every endpoint's socket asks for [`UDP_BUFFER`] bytes of send and receive
//!   buffer (the system caps it: `net.core.rmem_max` / `wmem_max` on Linux). With
//!   the system's default (208 KiB on Linux) a 1 MiB stream over loopback lost
//!   0.3 % of its packets to a full receive buffer (1,400-3,000 per 4 GB), each a
//!   retransmission and a cut of the congestion window; with 4 MiB, none.
//! * A connection over loopback probes for UDP payloads of up to
//!   [`LOOPBACK_UDP_PAYLOAD`] bytes instead of quinn's 1,452: quinn's work is mostly
//!   per packet (header protection, one AEAD call, frame parsing,
//!   acknowledgements), so fewer, larger packets move more bytes on the same CPU.
//!   Endpoints bound to a loopback or an unspecified address (`0.0.0.0`, `::`)
//!   accept packets that large, and a listener gives each connection the
//!   configuration of its path ([`accept_for_path`]): a peer that comes over
//!   loopback gets the large packets whatever address the listener is bound to, a
//!   remote one quinn's defaults (its path's MTU is unknown).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Send and receive buffer asked for on every QUIC socket (the system may give less).
pub const UDP_BUFFER: usize = 4 << 20;

/// The largest UDP payload of a QUIC packet on loopback (quinn's default bound is
/// 1,452). quinn 0.11 hands up to 10 packets of one size to the kernel in one
/// segmentation-offload send, which must stay within 64 KiB: above 6,553 bytes
/// every such send fails (tried: at 6,600 a benchmark's transfer stalled, and this
/// module's test lost a third of its packets), so the bound stays below. A quinn
/// that sends more packets at once needs a smaller bound: the test moves 16 MiB each
/// way at this size and fails if packets are lost or the transfer stalls.
pub const LOOPBACK_UDP_PAYLOAD: u16 = 6500;

/// A configuration for connections over loopback and one for all others.
#[derive(Clone)]
pub(crate) struct PerPath<T> {
    pub(crate) other: T,
    pub(crate) loopback: T,
}

impl<T> PerPath<T> {
    /// Both configurations made into something else.
    pub(crate) fn map<U>(&self, f: impl Fn(&T) -> U) -> PerPath<U> {
        PerPath {
            other: f(&self.other),
            loopback: f(&self.loopback),
        }
    }

    /// The configuration for a peer or local address `ip` (an IPv4 address mapped
    /// into IPv6, as a dual-stack socket reports it, counts as the IPv4 one).
    pub(crate) fn for_ip(&self, ip: IpAddr) -> &T {
        if ip.to_canonical().is_loopback() {
            &self.loopback
        } else {
            &self.other
        }
    }
}

/// The transport configuration `make` makes, as it is for other paths and with MTU
/// discovery up to [`LOOPBACK_UDP_PAYLOAD`] for loopback (made twice: quinn's is
/// not `Clone`).
pub(crate) fn per_path<E>(
    make: impl Fn() -> Result<quinn::TransportConfig, E>,
) -> Result<PerPath<Arc<quinn::TransportConfig>>, E> {
    let mut loopback = make()?;
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(LOOPBACK_UDP_PAYLOAD);
    loopback.mtu_discovery_config(Some(mtu));
    Ok(PerPath {
        other: Arc::new(make()?),
        loopback: Arc::new(loopback),
    })
}

/// A new UDP socket bound to `bind`, with [`UDP_BUFFER`] bytes of buffer asked for.
fn socket(bind: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(bind)?;
    enlarge_buffers(&socket);
    Ok(socket)
}

/// A QUIC endpoint on a new socket bound to `bind` (see [`socket`]; a server when
/// `server` is given), accepting larger packets when it can be reached over
/// loopback: bound to a loopback or an unspecified address. (What an endpoint
/// accepts is no promise to send: each connection's MTU discovery, as its
/// configuration for its path allows, finds the size it sends.)
pub(crate) fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = socket(bind)?;
    let mut config = quinn::EndpointConfig::default();
    let ip = bind.ip().to_canonical();
    if ip.is_loopback() || ip.is_unspecified() {
        config
            .max_udp_payload_size(LOOPBACK_UDP_PAYLOAD)
            .map_err(|e| io::Error::other(format!("QUIC endpoint configuration: {e}")))?;
    }
    let runtime =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no async runtime found"))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// Accept a connection with the server configuration of its path: a peer that comes
/// over loopback gets the loopback one (larger packets) also from a listener bound to
/// an unspecified address, whose own configuration is the one for other paths.
pub(crate) fn accept_for_path(
    incoming: quinn::Incoming,
    configs: &PerPath<Arc<quinn::ServerConfig>>,
) -> Result<quinn::Connecting, quinn::ConnectionError> {
    let config = configs.for_ip(incoming.remote_address().ip()).clone();
    incoming.accept_with(config)
}

/// Ask for [`UDP_BUFFER`] bytes of buffer each way; what the system gives is logged
/// (a smaller buffer only costs speed).
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let recv = s.set_recv_buffer_size(UDP_BUFFER);
    let send = s.set_send_buffer_size(UDP_BUFFER);
    tracing::debug!(
        asked = UDP_BUFFER,
        recv = ?recv.and_then(|()| s.recv_buffer_size()),
        send = ?send.and_then(|()| s.send_buffer_size()),
        "QUIC socket buffers"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuicTransport;
    use std::time::{Duration, Instant};
    use yoton_testkit::child::LineChild;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// What the system grants at most (Linux: `net.core.rmem_max`, `wmem_max`).
    #[cfg(target_os = "linux")]
    fn system_max(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sockets_get_the_buffers_asked_for_as_far_as_the_system_allows() {
        let s = socket(SocketAddr::new(LOCAL, 0)).unwrap();
        let sock = socket2::SockRef::from(&s);
        let (recv, send) = (
            sock.recv_buffer_size().unwrap(),
            sock.send_buffer_size().unwrap(),
        );
        // Linux reports twice what it grants (its bookkeeping included).
        let want_recv = UDP_BUFFER.min(system_max("rmem_max"));
        let want_send = UDP_BUFFER.min(system_max("wmem_max"));
        assert!(recv >= want_recv, "receive buffer {recv} < {want_recv}");
        assert!(send >= want_send, "send buffer {send} < {want_send}");
    }

    /// A server transport with a self-signed certificate and a client that pins it.
    fn transports() -> (QuicTransport, QuicTransport) {
        let server_t = QuicTransport::builder()
            .self_signed_for(["127.0.0.1"])
            .build()
            .unwrap();
        let client_t = QuicTransport::builder()
            .pin_certificate(server_t.fingerprint().unwrap())
            .build()
            .unwrap();
        (server_t, client_t)
    }

    /// A server endpoint bound to `bind` that accepts as the transport's listener does
    /// ([`accept_for_path`]), a client connected to it over loopback, and the two
    /// connections (client, server) once both have found packets of
    /// [`LOOPBACK_UDP_PAYLOAD`] bytes (MTU discovery probes after the handshake, each
    /// end on its own; no data needed). Each wait is bounded (10 s).
    async fn loopback_pair_with_large_packets(
        bind: IpAddr,
    ) -> (quinn::Connection, quinn::Connection) {
        let (server_t, client_t) = transports();
        let configs = server_t
            .inner
            .server
            .as_ref()
            .unwrap()
            .map(|c| Arc::new(c.clone()));
        let server_config = configs.for_ip(bind).as_ref().clone();
        let server = endpoint(SocketAddr::new(bind, 0), Some(server_config)).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = endpoint(SocketAddr::new(LOCAL, 0), None).unwrap();
        let client_config = client_t.inner.client.as_ref().unwrap().for_ip(LOCAL);
        let connecting = client
            .connect_with(
                client_config.clone(),
                SocketAddr::new(LOCAL, port),
                "127.0.0.1",
            )
            .unwrap();
        let accepting = async {
            let incoming = server.accept().await.unwrap();
            accept_for_path(incoming, &configs).unwrap().await.unwrap()
        };
        let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(connecting, accepting)
        })
        .await
        .unwrap();
        let (a, b) = (a.unwrap(), b);
        let t0 = Instant::now();
        let mtus = || (a.stats().path.current_mtu, b.stats().path.current_mtu);
        while mtus() != (LOOPBACK_UDP_PAYLOAD, LOOPBACK_UDP_PAYLOAD) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "path MTU (client, server) still {:?} after 10 s, server bound to {bind}",
                mtus()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (a, b)
    }

    #[test]
    fn a_v4_address_mapped_into_v6_takes_the_path_of_the_v4_one() {
        let p = PerPath {
            other: "other",
            loopback: "loopback",
        };
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(*p.for_ip(mapped), "loopback");
        assert_eq!(*p.for_ip("::1".parse().unwrap()), "loopback");
        assert_eq!(*p.for_ip("::ffff:192.0.2.1".parse().unwrap()), "other");
        assert_eq!(*p.for_ip("0.0.0.0".parse().unwrap()), "other");
    }

    /// Set in the run of this test binary inside a network namespace of its own.
    const IN_NETNS: &str = "YOTON_QUIC_TEST_IN_NETNS";

    /// A listener bound to every address (`0.0.0.0`) gives a peer that comes over
    /// loopback packets as large as a listener on `127.0.0.1` does, both ways: its
    /// endpoint accepts them, and the connection gets the loopback configuration.
    /// (Before, such a peer got quinn's 1,452 bytes. W2 quic pairs in a network
    /// namespace: 1.01-1.08 GB/s before, 1.38-1.67 after, 1.34-1.56 with a listener
    /// on 127.0.0.1.) Tests bind every address only where nothing but loopback is:
    /// this test runs itself again in a network namespace of its own (`unshare -rn`
    /// of util-linux, `ip` of iproute2 to bring `lo` up).
    #[tokio::test]
    async fn a_listener_on_every_address_gives_loopback_peers_large_packets() {
        if std::env::var_os(IN_NETNS).is_some() {
            let any = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
            loopback_pair_with_large_packets(any).await;
            return;
        }
        let name = "udp::tests::a_listener_on_every_address_gives_loopback_peers_large_packets";
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["-rn", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(IN_NETNS, "1");
        let label = "this test in a network namespace (unshare -rn)";
        let mut run = LineChild::spawn(label, &mut cmd, Duration::from_secs(60));
        let summary = loop {
            let line = run.next_line().await;
            if line.starts_with("test result:") {
                break line;
            }
        };
        if !summary.starts_with("test result: ok. 1 passed") {
            run.fail(&format!("its summary: {summary}"));
        }
        run.expect_success().await;
    }

    #[tokio::test]
    async fn loopback_connections_find_the_larger_packet_size() {
        let (a, b) = loopback_pair_with_large_packets(LOCAL).await;
        let mtus = || (a.stats().path.current_mtu, b.stats().path.current_mtu);
        // Large messages go through at that size, both ways at once (a quinn whose
        // offload sends passed 64 KiB at this size would lose packets, checked below,
        // or stall: bounded).
        const SIZE: usize = 16 << 20;
        let exchange = async {
            let (mut tx, mut rx) = a.open_bi().await.unwrap();
            let send = async {
                tx.write_all(&vec![7u8; SIZE]).await.unwrap();
                tx.finish().unwrap();
            };
            let echo = async {
                let (mut btx, mut brx) = b.accept_bi().await.unwrap();
                let got = brx.read_to_end(2 * SIZE).await.unwrap();
                assert!(got.len() == SIZE && got.iter().all(|&x| x == 7));
                btx.write_all(&got).await.unwrap();
                btx.finish().unwrap();
            };
            let back = async { rx.read_to_end(2 * SIZE).await.unwrap().len() };
            tokio::join!(send, echo, back).2
        };
        let back = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .unwrap_or_else(|_| panic!("16 MiB each way not through in 60 s at {:?}", mtus()));
        assert_eq!(back, SIZE);
        // Loopback loses next to nothing (0 of about 2,660 packets each way here); a
        // quinn whose offload sends passed 64 KiB lost about 30 % (at 6,600 bytes).
        for (end, c) in [("client", &a), ("server", &b)] {
            let path = c.stats().path;
            assert!(
                path.lost_packets * 20 < path.sent_packets,
                "{end} lost {} of {} packets at {:?}",
                path.lost_packets,
                path.sent_packets,
                mtus()
            );
        }
        assert_eq!(mtus(), (LOOPBACK_UDP_PAYLOAD, LOOPBACK_UDP_PAYLOAD));
    }
}
