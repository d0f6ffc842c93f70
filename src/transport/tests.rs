//! Real-socket tests on loopback, every listener on port 0.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;

const OPTIONS: &str = "OPTIONS sip:handover.local SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:50612;branch=z9hG4bKopt;alias\r\n\
From: <sip:1001@handover.local>;tag=a1\r\n\
To: <sip:handover.local>\r\n\
Call-ID: opt1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

const MESSAGE: &str = "MESSAGE sip:1001@handover.local SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:50612;branch=z9hG4bKmsg\r\n\
From: <sip:1002@handover.local>;tag=b2\r\n\
To: <sip:1001@handover.local>\r\n\
Call-ID: msg1@127.0.0.1\r\n\
CSeq: 7 MESSAGE\r\n\
Content-Type: text/plain\r\n\
l: 12\r\n\
\r\n\
hello\r\nworld";

const NO_LENGTH: &str = "OPTIONS sip:handover.local SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:50612;branch=z9hG4bKnocl\r\n\
Call-ID: nocl@127.0.0.1\r\n\
CSeq: 2 OPTIONS\r\n\
\r\n";

const REPLY_400: &str = "SIP/2.0 400 Missing Content-Length\r\nContent-Length: 0\r\n\r\n";

const WAIT: Duration = Duration::from_secs(5);

struct ChannelSink(mpsc::UnboundedSender<Inbound>);

impl InboundSink for ChannelSink {
    fn deliver(&self, inbound: Inbound) {
        let _ = self.0.send(inbound);
    }
}

struct Harness {
    transport: Transport,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    shutdown: watch::Sender<bool>,
}

impl Harness {
    async fn start(specs: &[&str], limits: Limits) -> Harness {
        Self::try_start(specs, limits).await.unwrap()
    }

    async fn try_start(specs: &[&str], limits: Limits) -> Result<Harness, TransportError> {
        let specs: Vec<ListenSpec> = specs.iter().map(|s| s.parse().unwrap()).collect();
        let (tx, inbound) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let transport =
            Transport::bind(&specs, limits, Arc::new(ChannelSink(tx)), shutdown_rx).await?;
        Ok(Harness {
            transport,
            inbound,
            shutdown,
        })
    }

    fn addr(&self, protocol: Protocol, ipv6: bool) -> SocketAddr {
        self.transport.local_addr(protocol, ipv6).unwrap()
    }

    async fn next(&mut self) -> Inbound {
        timeout(WAIT, self.inbound.recv()).await.unwrap().unwrap()
    }

    async fn next_message(&mut self) -> (Bytes, Source) {
        match self.next().await {
            Inbound::Message { data, source } => (data, source),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn next_error(&mut self) -> (Bytes, FramingError, Source) {
        match self.next().await {
            Inbound::FramingError {
                head,
                error,
                source,
            } => (head, error, source),
            other => panic!("expected a framing error, got {other:?}"),
        }
    }

    /// Waits until the transport has `n` connections.
    async fn wait_connections(&self, n: usize) {
        timeout(WAIT, async {
            while self.transport.connection_count() != n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "connection count stayed {}",
                self.transport.connection_count()
            )
        });
    }
}

/// Reads exactly `n` bytes.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

/// Reads until EOF (or a reset); returns what was read.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap();
    out
}

fn tcp_dest(addr: SocketAddr, connection: Option<ConnectionId>) -> Destination {
    Destination {
        protocol: Protocol::Tcp,
        addr,
        connection,
    }
}

#[test]
fn listen_spec_parsing() {
    let spec: ListenSpec = "udp:127.0.0.1:5060".parse().unwrap();
    assert_eq!(spec.protocol, Protocol::Udp);
    assert_eq!(spec.addr, "127.0.0.1:5060".parse().unwrap());
    let spec: ListenSpec = "TCP:[::1]:5061".parse().unwrap();
    assert_eq!(spec.protocol, Protocol::Tcp);
    assert_eq!(spec.addr, "[::1]:5061".parse().unwrap());
    assert_eq!(spec.to_string(), "tcp:[::1]:5061");
    for bare in ["127.0.0.1:5060", "[::1]:5060"] {
        assert_eq!(
            bare.parse::<ListenSpec>(),
            Err(ListenSpecError::MissingProtocol),
            "{bare}: a bare address lacks the protocol prefix"
        );
    }
    assert_eq!(
        "sctp:127.0.0.1:5060".parse::<ListenSpec>(),
        Err(ListenSpecError::UnknownProtocol("sctp".into()))
    );
    for bad_addr in ["udp:::1:5060", "udp:127.0.0.1", "udp: 127.0.0.1:5060"] {
        assert!(
            matches!(
                bad_addr.parse::<ListenSpec>(),
                Err(ListenSpecError::BadAddress(_))
            ),
            "{bad_addr}"
        );
    }
    for no_protocol in ["udp", "localhost", ":127.0.0.1:5060"] {
        assert_eq!(
            no_protocol.parse::<ListenSpec>(),
            Err(ListenSpecError::MissingProtocol),
            "{no_protocol}"
        );
    }
    assert_eq!(Protocol::Udp.to_string(), "UDP");
    assert_eq!(Protocol::Tcp.as_str(), "tcp");
}

#[tokio::test]
async fn udp_round_trip_both_ways() {
    let mut h = Harness::start(&["udp:127.0.0.1:0"], Limits::default()).await;
    let server = h.addr(Protocol::Udp, false);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Keep-alives are ignored; the message behind them arrives.
    client.send_to(b"\r\n\r\n", server).await.unwrap();
    client.send_to(OPTIONS.as_bytes(), server).await.unwrap();
    let (data, source) = h.next_message().await;
    assert_eq!(data, OPTIONS.as_bytes());
    assert_eq!(source.protocol, Protocol::Udp);
    assert_eq!(source.remote, client.local_addr().unwrap());
    assert_eq!(source.local, server);
    assert_eq!(source.connection, None);

    h.transport
        .send(
            &source.reply_destination(),
            Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
        )
        .unwrap();
    let mut buf = [0u8; 1024];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(from, server);

    // No IPv6 UDP socket bound.
    let v6 = Destination {
        protocol: Protocol::Udp,
        addr: "[::1]:5060".parse().unwrap(),
        connection: None,
    };
    assert!(matches!(
        h.transport.send(&v6, Bytes::new()),
        Err(SendError::NoSocket { .. })
    ));
}

#[tokio::test]
async fn send_all_sends_every_message_in_order_and_reports_failures() {
    let h = Harness::start(&["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], Limits::default()).await;
    let server = h.addr(Protocol::Udp, false);
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carol = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = |peer: &UdpSocket| Destination {
        protocol: Protocol::Udp,
        addr: peer.local_addr().unwrap(),
        connection: None,
    };
    let nowhere = Destination {
        protocol: Protocol::Udp,
        addr: "[::1]:5060".parse().unwrap(),
        connection: None,
    };
    let msg = |text: &'static str| Bytes::from_static(text.as_bytes());
    // Two runs of UDP datagrams (sent in one system call each), split by a TCP message and
    // by a datagram no socket can send.
    let messages = vec![
        (udp(&alice), msg("a1")),
        (udp(&bob), msg("b1")),
        (udp(&alice), msg("a2")),
        (tcp_dest(carol.local_addr().unwrap(), None), msg(OPTIONS)),
        (nowhere, msg("lost")),
        (udp(&bob), msg("b2")),
        (udp(&bob), msg("b3")),
    ];
    let mut failed = Vec::new();
    h.transport.send_all(&messages, &mut |dest, error| {
        failed.push((*dest, error));
    });
    assert!(
        matches!(failed.as_slice(), [(d, SendError::NoSocket { .. })] if *d == nowhere),
        "{failed:?}"
    );
    let mut buf = [0u8; 64];
    for (peer, expected) in [
        (&alice, ["a1", "a2"].as_slice()),
        (&bob, &["b1", "b2", "b3"]),
    ] {
        for text in expected {
            let (n, from) = timeout(WAIT, peer.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), *text);
            assert_eq!(from, server);
        }
    }
    let (mut stream, _) = timeout(WAIT, carol.accept()).await.unwrap().unwrap();
    assert_eq!(read_n(&mut stream, OPTIONS.len()).await, OPTIONS.as_bytes());

    // A run longer than one sendmmsg chunk: every datagram arrives, in order.
    let texts: Vec<String> = (0..19).map(|i| format!("r{i}")).collect();
    let long_run: Vec<_> = texts
        .iter()
        .map(|t| (udp(&alice), Bytes::from(t.clone())))
        .collect();
    h.transport.send_all(&long_run, &mut |dest, error| {
        panic!("{dest:?}: {error:?}");
    });
    for text in &texts {
        let (n, _) = timeout(WAIT, alice.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), text);
    }

    // After shutdown nothing is sent and every message is reported.
    h.shutdown.send(true).unwrap();
    let mut after = 0;
    h.transport.send_all(
        &[(udp(&alice), msg("x")), (udp(&bob), msg("y"))],
        &mut |_, e| {
            assert!(matches!(e, SendError::Shutdown));
            after += 1;
        },
    );
    assert_eq!(after, 2);
}

#[tokio::test]
async fn udp_oversized_datagram_is_too_large_with_head() {
    let limits = Limits {
        max_message_bytes: 200,
        ..Limits::default()
    };
    let mut h = Harness::start(&["udp:127.0.0.1:0"], limits).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let big = OPTIONS.replace("Content-Length: 0", "Content-Length: 300") + &"x".repeat(300);
    client
        .send_to(big.as_bytes(), h.addr(Protocol::Udp, false))
        .await
        .unwrap();
    let (head, error, source) = h.next_error().await;
    assert_eq!(error, FramingError::TooLarge { limit: 200 });
    assert!(head.starts_with(b"OPTIONS sip:"));
    assert!(head.len() <= 200);
    assert_eq!(source.remote, client.local_addr().unwrap());
    assert_eq!(h.transport.stats().framing_errors, 1);
}

/// Datagrams queued faster than the loop reads them are taken several per system call
/// (`recvmmsg`): each must still arrive once, whole, in order, with its own sender, and a
/// keep-alive or an oversized one among them must not disturb its neighbours.
#[tokio::test]
async fn udp_burst_arrives_whole_in_order_with_each_sender() {
    let limits = Limits {
        max_message_bytes: 600,
        ..Limits::default()
    };
    let mut h = Harness::start(&["udp:127.0.0.1:0"], limits).await;
    let server = h.addr(Protocol::Udp, false);
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Sent without yielding to the receive loop (one thread), so they queue in the socket:
    // more than one batch's worth.
    let mut expected = Vec::new();
    for i in 0..21 {
        let sender = if i % 3 == 0 { &bob } else { &alice };
        let text = match i {
            9 => "\r\n\r\n".to_string(), // keep-alive: ignored
            13 => OPTIONS.replace("Content-Length: 0", "Content-Length: 700") + &"y".repeat(700),
            _ => OPTIONS.replace("opt1@", &format!("burst{i}{}@", "x".repeat(i * 7))),
        };
        sender.send_to(text.as_bytes(), server).await.unwrap();
        if i != 9 {
            expected.push((i, text, sender.local_addr().unwrap()));
        }
    }
    for (i, text, from) in expected {
        match timeout(WAIT, h.inbound.recv()).await.unwrap().unwrap() {
            Inbound::Message { data, source } => {
                assert_ne!(i, 13, "the oversized datagram came as a message");
                assert_eq!(data, text.as_bytes(), "datagram {i}");
                assert_eq!(source.remote, from, "datagram {i}");
                assert_eq!(source.local, server);
            }
            Inbound::FramingError {
                head,
                error,
                source,
            } => {
                assert_eq!(i, 13, "datagram {i} came as a framing error");
                assert_eq!(error, FramingError::TooLarge { limit: 600 });
                assert!(text.as_bytes().starts_with(&head), "datagram {i}");
                assert_eq!(source.remote, from);
            }
        }
    }
    assert_eq!(h.transport.stats().framing_errors, 1);
    assert!(
        timeout(Duration::from_millis(100), h.inbound.recv())
            .await
            .is_err(),
        "nothing more arrives"
    );
}

#[tokio::test]
async fn tcp_partial_reads_pipelining_and_ping() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    client.set_nodelay(true).unwrap();
    for byte in MESSAGE.as_bytes() {
        client.write_all(std::slice::from_ref(byte)).await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let (data, source) = h.next_message().await;
    assert_eq!(data, MESSAGE.as_bytes());
    assert_eq!(source.protocol, Protocol::Tcp);
    assert_eq!(source.remote, client.local_addr().unwrap());
    let id = source.connection.unwrap();
    assert!(h.transport.is_open(id));

    client
        .write_all(format!("{OPTIONS}{MESSAGE}").as_bytes())
        .await
        .unwrap();
    assert_eq!(h.next_message().await.0, OPTIONS.as_bytes());
    let (data, second) = h.next_message().await;
    assert_eq!(data, MESSAGE.as_bytes());
    assert_eq!(second.connection, Some(id));

    client.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"\r\n");
    // Nothing was delivered for the ping.
    assert!(h.inbound.try_recv().is_err());
}

#[tokio::test]
async fn tcp_missing_content_length_is_answered_then_closed() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    client.write_all(NO_LENGTH.as_bytes()).await.unwrap();
    let (head, error, source) = h.next_error().await;
    assert_eq!(error, FramingError::MissingContentLength);
    assert_eq!(head, NO_LENGTH.as_bytes());
    h.transport.send_and_close(
        source.connection.unwrap(),
        Bytes::from_static(REPLY_400.as_bytes()),
    );
    assert_eq!(read_to_eof(&mut client).await, REPLY_400.as_bytes());
    drop(client);
    h.wait_connections(0).await;
    assert!(!h.transport.is_open(source.connection.unwrap()));
}

#[tokio::test]
async fn tcp_framing_error_reply_reaches_a_half_closed_peer() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    client.write_all(NO_LENGTH.as_bytes()).await.unwrap();
    client.shutdown().await.unwrap();
    let (_, error, source) = h.next_error().await;
    assert_eq!(error, FramingError::MissingContentLength);
    // Give the reader time to see the EOF before the reply is sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.transport.send_and_close(
        source.connection.unwrap(),
        Bytes::from_static(REPLY_400.as_bytes()),
    );
    assert_eq!(read_to_eof(&mut client).await, REPLY_400.as_bytes());
    h.wait_connections(0).await;
}

#[tokio::test]
async fn tcp_framing_error_without_reply_closes_after_grace() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    client
        .write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: ten\r\n\r\n")
        .await
        .unwrap();
    let (_, error, _) = h.next_error().await;
    assert_eq!(error, FramingError::BadContentLength);
    let started = tokio::time::Instant::now();
    assert!(read_to_eof(&mut client).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(800));
    h.wait_connections(0).await;
}

#[tokio::test]
async fn tcp_oversized_message_is_too_large() {
    let limits = Limits {
        max_message_bytes: 300,
        ..Limits::default()
    };
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], limits).await;
    // Announced too large by Content-Length.
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    let big = OPTIONS.replace("Content-Length: 0", "Content-Length: 5000");
    client.write_all(big.as_bytes()).await.unwrap();
    let (head, error, _) = h.next_error().await;
    assert_eq!(error, FramingError::TooLarge { limit: 300 });
    assert_eq!(head, big.as_bytes());

    // Headers that never end.
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    let endless = format!(
        "INVITE sip:a SIP/2.0\r\n{}",
        "X-Pad: 0123456789\r\n".repeat(40)
    );
    client.write_all(endless.as_bytes()).await.unwrap();
    let (head, error, _) = h.next_error().await;
    assert_eq!(error, FramingError::TooLarge { limit: 300 });
    assert!(head.len() <= 300);
    assert!(read_to_eof(&mut client).await.is_empty());
}

#[tokio::test]
async fn tcp_idle_connection_is_closed() {
    let limits = Limits {
        tcp_idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let h = Harness::start(&["tcp:127.0.0.1:0"], limits).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    h.wait_connections(1).await;
    let started = tokio::time::Instant::now();
    assert!(read_to_eof(&mut client).await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    h.wait_connections(0).await;
}

#[tokio::test]
async fn tcp_connection_that_keeps_talking_is_not_idle() {
    let limits = Limits {
        tcp_idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], limits).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    h.wait_connections(1).await;
    // A message every 200 ms for 1 s: each moves the deadline, so the timer armed at the
    // start (300 ms) must not close the connection.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(OPTIONS.as_bytes()).await.unwrap();
        h.next_message().await;
    }
    assert_eq!(h.transport.connection_count(), 1);
    // Then silence: closed about 300 ms after the last message.
    let started = tokio::time::Instant::now();
    assert!(read_to_eof(&mut client).await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "closed after {waited:?}"
    );
    h.wait_connections(0).await;
}

#[tokio::test]
async fn tcp_reply_goes_back_over_the_inbound_connection() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let mut client = TcpStream::connect(h.addr(Protocol::Tcp, false))
        .await
        .unwrap();
    client.write_all(OPTIONS.as_bytes()).await.unwrap();
    let (_, source) = h.next_message().await;
    let reply = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    h.transport
        .send(&source.reply_destination(), reply.clone())
        .unwrap();
    assert_eq!(read_n(&mut client, reply.len()).await, reply);
    // A request to the phone's address (no id) reuses the connection it opened.
    h.transport
        .send(&tcp_dest(source.remote, None), reply.clone())
        .unwrap();
    assert_eq!(read_n(&mut client, reply.len()).await, reply);
    assert_eq!(h.transport.connection_count(), 1);
}

#[tokio::test]
async fn tcp_send_to_unknown_address_opens_and_reuses_an_outbound_connection() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    h.transport
        .send(
            &tcp_dest(peer_addr, None),
            Bytes::from_static(OPTIONS.as_bytes()),
        )
        .unwrap();
    // Queued while connecting, in order.
    h.transport
        .send(
            &tcp_dest(peer_addr, None),
            Bytes::from_static(MESSAGE.as_bytes()),
        )
        .unwrap();
    let (mut remote, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let expected = format!("{OPTIONS}{MESSAGE}");
    assert_eq!(
        read_n(&mut remote, expected.len()).await,
        expected.as_bytes()
    );

    remote
        .write_all(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let (data, source) = h.next_message().await;
    assert!(data.starts_with(b"SIP/2.0 200 OK"));
    assert_eq!(source.remote, peer_addr);
    assert_eq!(source.local, remote.peer_addr().unwrap());
    let id = source.connection.unwrap();
    assert!(h.transport.is_open(id));
    assert_eq!(h.transport.connection_count(), 1);

    // The peer closes: the connection leaves the table and is not reused.
    drop(remote);
    h.wait_connections(0).await;
    assert!(!h.transport.is_open(id));
}

#[tokio::test]
async fn tcp_connect_failure_drops_the_connection() {
    let h = Harness::start(&["tcp:127.0.0.1:0"], Limits::default()).await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    h.transport
        .send(
            &tcp_dest(closed, None),
            Bytes::from_static(OPTIONS.as_bytes()),
        )
        .unwrap();
    assert_eq!(h.transport.connection_count(), 1);
    h.wait_connections(0).await;
}

#[tokio::test]
async fn tcp_connection_limits_refuse_the_next_connection() {
    for limits in [
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
        Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        },
    ] {
        let mut h = Harness::start(&["tcp:127.0.0.1:0"], limits).await;
        let server = h.addr(Protocol::Tcp, false);
        let mut first = TcpStream::connect(server).await.unwrap();
        let _second = TcpStream::connect(server).await.unwrap();
        h.wait_connections(2).await;
        let mut third = TcpStream::connect(server).await.unwrap();
        assert!(read_to_eof(&mut third).await.is_empty());
        assert_eq!(h.transport.stats().connections_refused, 1);
        assert_eq!(h.transport.connection_count(), 2);
        // The admitted ones still work.
        first.write_all(OPTIONS.as_bytes()).await.unwrap();
        assert_eq!(h.next_message().await.0, OPTIONS.as_bytes());
    }
}

#[tokio::test]
async fn shutdown_stops_listeners_and_closes_connections() {
    let mut h = Harness::start(&["tcp:127.0.0.1:0", "udp:127.0.0.1:0"], Limits::default()).await;
    let server = h.addr(Protocol::Tcp, false);
    let mut client = TcpStream::connect(server).await.unwrap();
    h.wait_connections(1).await;
    // The UDP receiver delivers before shutdown and stops after it, even while idle.
    let udp_server = h.addr(Protocol::Udp, false);
    let udp_client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_client
        .send_to(OPTIONS.as_bytes(), udp_server)
        .await
        .unwrap();
    h.next_message().await;
    h.shutdown.send_replace(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    udp_client
        .send_to(OPTIONS.as_bytes(), udp_server)
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(200), h.inbound.recv())
            .await
            .is_err(),
        "a datagram was delivered after shutdown"
    );
    assert!(read_to_eof(&mut client).await.is_empty());
    h.wait_connections(0).await;
    let dest = Destination {
        protocol: Protocol::Udp,
        addr: "127.0.0.1:9".parse().unwrap(),
        connection: None,
    };
    assert_eq!(
        h.transport.send(&dest, Bytes::new()),
        Err(SendError::Shutdown)
    );
    // The listener is gone (refused), or at least nothing is accepted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Ok(mut late) = TcpStream::connect(server).await {
        assert!(read_to_eof(&mut late).await.is_empty());
    }
    assert_eq!(h.transport.connection_count(), 0);
}

#[tokio::test]
async fn ipv6_loopback_udp_and_tcp() {
    let Ok(mut h) = Harness::try_start(&["udp:[::1]:0", "tcp:[::1]:0"], Limits::default()).await
    else {
        eprintln!("no ::1 on this machine; skipping");
        return;
    };
    assert!(h.transport.local_addr(Protocol::Udp, false).is_none());
    let udp_server = h.addr(Protocol::Udp, true);
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    client
        .send_to(OPTIONS.as_bytes(), udp_server)
        .await
        .unwrap();
    let (_, source) = h.next_message().await;
    assert!(source.remote.is_ipv6());
    h.transport
        .send(&source.reply_destination(), Bytes::from_static(b"pong"))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"pong");

    let mut tcp = TcpStream::connect(h.addr(Protocol::Tcp, true))
        .await
        .unwrap();
    tcp.write_all(MESSAGE.as_bytes()).await.unwrap();
    let (data, source) = h.next_message().await;
    assert_eq!(data, MESSAGE.as_bytes());
    assert!(source.remote.is_ipv6() && source.local.is_ipv6());
    h.transport
        .send(&source.reply_destination(), Bytes::from_static(b"pong"))
        .unwrap();
    assert_eq!(read_n(&mut tcp, 4).await, b"pong");
}

#[tokio::test]
async fn bind_reports_the_failing_listener() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("tcp:{}", taken.local_addr().unwrap());
    let error = Harness::try_start(&[spec.as_str()], Limits::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(
        error,
        TransportError::Bind {
            protocol: Protocol::Tcp,
            ..
        }
    ));
}
