//! Helpers shared by the QUIC tests: certificates made with rcgen at test time, contexts
//! with a QUIC transport, inboxes. Every wait is bounded.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::sync::mpsc;
use yoton_core::{Connection, Context, Package, SlotGuard};
use yoton_quic::QuicTransport;

pub const WAIT: Duration = Duration::from_secs(10);

/// A context that uses this transport.
pub fn ctx_with(t: QuicTransport) -> Context {
    Context::builder().transport(t).build().unwrap()
}

/// A server with a self-signed certificate and a client that pins it.
pub fn pinned_pair() -> (QuicTransport, QuicTransport) {
    let server = QuicTransport::builder()
        .self_signed_for(["localhost", "127.0.0.1"])
        .build()
        .unwrap();
    let client = QuicTransport::builder()
        .pin_certificate(server.fingerprint().unwrap())
        .build()
        .unwrap();
    (server, client)
}

/// Two contexts: `a` can listen (self-signed), `b` pins `a`'s certificate. Both can
/// connect to servers with that certificate.
pub fn pinned_contexts() -> (Context, Context) {
    let (server, client) = pinned_pair();
    (ctx_with(server), ctx_with(client))
}

/// A transport that can both listen and connect to others made by the same call's
/// clones: a CA-signed certificate for 127.0.0.1, and that CA trusted.
pub fn mesh_transport() -> QuicTransport {
    let ca = Ca::new("yoton mesh CA");
    let (chain, key) = ca.leaf(&["127.0.0.1", "localhost"], None);
    QuicTransport::builder()
        .certificate_der(chain, key)
        .trust_ca_der(&ca.der)
        .build()
        .unwrap()
}

/// Validity of a certificate: (not_before, not_after) as (year, month, day).
pub type Validity = ((i32, u8, u8), (i32, u8, u8));

/// A test CA.
pub struct Ca {
    pub der: Vec<u8>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names`, valid from `not_before` to `not_after`
    /// ((year, month, day)); returns (chain DER, key DER).
    pub fn leaf(&self, names: &[&str], validity: Option<Validity>) -> (Vec<Vec<u8>>, Vec<u8>) {
        let l = self.leaf_pem(names, validity);
        (l.chain, l.key)
    }

    /// A leaf certificate, as DER and PEM.
    pub fn leaf_pem(&self, names: &[&str], validity: Option<Validity>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "yoton test server");
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().to_vec(), self.der.clone()],
            key: key.serialize_der(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A leaf certificate with its chain and key.
pub struct Leaf {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    pub chain_pem: String,
    pub key_pem: String,
}

/// Packages deposited at one slot of a context.
pub struct Inbox {
    pub rx: mpsc::UnboundedReceiver<(Package, u64)>,
    _guards: Vec<SlotGuard>,
}

pub fn inbox(ctx: &Context, slot: u64) -> Inbox {
    inbox_slots(ctx, &[slot])
}

/// One inbox for several slots: packages in the order the context received them.
pub fn inbox_slots(ctx: &Context, slots: &[u64]) -> Inbox {
    let (tx, rx) = mpsc::unbounded_channel();
    let guards = slots
        .iter()
        .map(|&slot| {
            let tx = tx.clone();
            ctx.register_receiver(
                slot,
                "test",
                Arc::new(move |p: Package, seq: u64| {
                    let _ = tx.send((p, seq));
                }),
            )
            .unwrap()
        })
        .collect();
    Inbox {
        rx,
        _guards: guards,
    }
}

impl Inbox {
    pub async fn recv(&mut self) -> Package {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, d: Duration) -> Package {
        tokio::time::timeout(d, self.rx.recv())
            .await
            .expect("timed out waiting for a package")
            .expect("inbox closed")
            .0
    }

    pub async fn recv_text(&mut self) -> String {
        String::from_utf8(self.recv().await.payload.to_vec()).unwrap()
    }
}

/// `a` binds on a free port of 127.0.0.1, `b` connects; both connections returned.
pub async fn join(a: &Context, b: &Context) -> (Connection, Connection) {
    let host = a.bind_async("quic://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    assert_ne!(port, 0);
    let client = b
        .connect_async(&format!("quic://127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    (host, client)
}

/// A payload whose bytes depend on the position (so a shifted or mixed-up byte shows).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}
