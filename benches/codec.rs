//! Codec micro-benchmarks on a 915-byte pjsua-style INVITE (see SIP-NOTES "Figures to
//! beat": rsip 4.4 µs parse / 9.5 µs with key headers; rsipstack 2.4 µs / 4.2 µs).
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use handover::sip::{response_to, SipMessage};

const INVITE: &str = concat!(
    "INVITE sip:1002@192.168.1.10 SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj3f6a1c8e-2b9d-4e7f-8a0b-1c2d3e4f5a6b\r\n",
    "Max-Forwards: 70\r\n",
    "From: <sip:1001@192.168.1.10>;tag=9b1a6c2e-4d3f-4a8b-9c0d-1e2f3a4b5c6d\r\n",
    "To: <sip:1002@192.168.1.10>\r\n",
    "Contact: <sip:1001@192.168.1.20:5060;ob>\r\n",
    "Call-ID: 5f2c9a7e-1b3d-4c6e-8f0a-2b4c6d8e0f1a\r\n",
    "CSeq: 31265 INVITE\r\n",
    "Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS\r\n",
    "Supported: replaces, 100rel, timer, norefersub\r\n",
    "Session-Expires: 1800\r\n",
    "Min-SE: 90\r\n",
    "User-Agent: PJSUA v2.15 Linux-6.8.0/x86_64/glibc-2.39\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 264\r\n",
    "\r\n",
    "v=0\r\n",
    "o=- 3913633480 3913633480 IN IP4 192.168.1.20\r\n",
    "s=pjmedia\r\n",
    "t=0 0\r\n",
    "m=audio 4000 RTP/AVP 0 8 101\r\n",
    "c=IN IP4 192.168.1.20\r\n",
    "a=rtcp:4001 IN IP4 192.168.1.20\r\n",
    "a=sendrecv\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
);

fn codec(c: &mut Criterion) {
    let raw = Bytes::from_static(INVITE.as_bytes());
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(raw.len() as u64));

    g.bench_function("parse", |b| {
        b.iter(|| SipMessage::parse(black_box(raw.clone())).unwrap())
    });

    g.bench_function("parse + key headers", |b| {
        b.iter(|| {
            let m = SipMessage::parse(black_box(raw.clone())).unwrap();
            black_box((
                m.call_id().len(),
                m.cseq(),
                m.branch().map(str::len),
                m.from_tag().map(str::len),
                m.to_tag().map(str::len),
            ));
        })
    });

    g.bench_function("parse + typed From/To/top Via/Request-URI", |b| {
        b.iter(|| {
            let m = SipMessage::parse(black_box(raw.clone())).unwrap();
            black_box((
                m.from().unwrap(),
                m.to().unwrap(),
                m.top_via().unwrap(),
                m.request_uri().unwrap(),
            ));
        })
    });

    let parsed = SipMessage::parse(raw.clone()).unwrap();
    g.bench_function("response_to(...).finish()", |b| {
        b.iter(|| {
            response_to(
                black_box(&parsed),
                180,
                "Ringing",
                Some("hv-5e6f7a8b9c0d1e2f"),
            )
            .finish()
        })
    });
    g.finish();
}

/// The SDP offer of the INVITE above: handover's own line check plus webrtc-sdp, as every
/// new call's offer is validated.
fn sdp(c: &mut Criterion) {
    let body = INVITE
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.as_bytes())
        .unwrap();
    let mut g = c.benchmark_group("sdp");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("inspect (line check + webrtc-sdp)", |b| {
        b.iter(|| handover::sdp::inspect(black_box(body)).unwrap())
    });
    g.bench_function("webrtc-sdp parse_sdp alone", |b| {
        let text = std::str::from_utf8(body).unwrap();
        b.iter(|| webrtc_sdp::parse_sdp(black_box(text), false).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec, sdp);
criterion_main!(benches);
