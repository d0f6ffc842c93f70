//! The UDP user agent: one socket on 127.0.0.1:0 talking to one server address.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use handover::sip::{response_to, Method, SipMessage};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{identity, parse, text};

/// Whether a received message is the one a test waits for.
enum Verdict {
    /// This is it.
    Yes,
    /// Not this one; keep it for later.
    No,
    /// A message that proves the expectation wrong (e.g. another final status).
    Wrong,
}

/// A message received, with the address it came from.
#[derive(Debug, Clone)]
pub struct Received {
    pub msg: SipMessage,
    pub from: SocketAddr,
}

/// A scripted UA on one UDP socket.
pub struct UdpUa {
    sock: UdpSocket,
    local: SocketAddr,
    /// Where `send_raw` sends and `reply` answers.
    pub server: SocketAddr,
    /// User part of the Contact this UA puts in its responses.
    pub user: String,
    stash: VecDeque<Received>,
    seen: HashSet<String>,
}

impl UdpUa {
    /// A UA on 127.0.0.1:0 that talks to `server`.
    pub async fn bind(server: SocketAddr, user: &str) -> UdpUa {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        UdpUa {
            sock,
            local,
            server,
            user: user.to_owned(),
            stash: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.local.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This UA's Contact URI.
    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.local)
    }

    /// Fills `{ip}`, `{port}`, `{server}` and `{contact}`.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{ip}", &self.local.ip().to_string())
            .replace("{port}", &self.local.port().to_string())
            .replace("{server}", &self.server.to_string())
            .replace("{contact}", &self.contact())
    }

    /// Sends wire text (placeholders filled) to the server.
    pub async fn send_raw(&self, text: &str) {
        let filled = self.fill(text);
        self.send_bytes(filled.as_bytes()).await;
    }

    /// Sends bytes as they are to the server.
    pub async fn send_bytes(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    /// The next datagram from the socket (never the stash), raw.
    async fn datagram(&self, deadline: Instant) -> Option<(Bytes, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        match tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                buf.truncate(n);
                Some((Bytes::from(buf), from))
            }
            _ => None,
        }
    }

    /// The next datagram as text: stashed messages first, then the socket (duplicates
    /// included). For responses our codec refuses.
    pub async fn recv(&mut self, timeout: Duration) -> Option<String> {
        if let Some(r) = self.stash.pop_front() {
            return Some(text(&r.msg));
        }
        let (bytes, _) = self.datagram(Instant::now() + timeout).await?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The next message, retransmissions included (stash first).
    pub async fn recv_any(&mut self, timeout: Duration) -> Option<SipMessage> {
        if let Some(r) = self.stash.pop_front() {
            return Some(r.msg);
        }
        let (bytes, _) = self.datagram(Instant::now() + timeout).await?;
        let msg = parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "UA {} got an unparseable message ({e}):\n{}",
                self.user,
                String::from_utf8_lossy(&bytes)
            )
        });
        self.seen.insert(identity(&msg));
        Some(msg)
    }

    /// The next message from the socket that is not a retransmission of one seen before.
    async fn next_new(&mut self, deadline: Instant) -> Option<Received> {
        loop {
            let (bytes, from) = self.datagram(deadline).await?;
            let msg = parse(&bytes).unwrap_or_else(|e| {
                panic!(
                    "UA {} got an unparseable message ({e}):\n{}",
                    self.user,
                    String::from_utf8_lossy(&bytes)
                )
            });
            if self.seen.insert(identity(&msg)) {
                return Some(Received { msg, from });
            }
        }
    }

    async fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        judge: impl Fn(&SipMessage) -> Verdict,
    ) -> Received {
        if let Some(i) = self
            .stash
            .iter()
            .position(|r| matches!(judge(&r.msg), Verdict::Yes))
        {
            if let Some(r) = self.stash.remove(i) {
                return r;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(r) = self.next_new(deadline).await else {
                let stashed: Vec<String> = self.stash.iter().map(|r| text(&r.msg)).collect();
                panic!(
                    "UA {}: timed out waiting for {what}; unconsumed:\n{}",
                    self.user,
                    stashed.join("\n----\n")
                );
            };
            match judge(&r.msg) {
                Verdict::Yes => return r,
                Verdict::Wrong => {
                    panic!("UA {}: expected {what}, got:\n{}", self.user, text(&r.msg))
                }
                Verdict::No => self.stash.push_back(r),
            }
        }
    }

    /// The next response with status `code`; another final status (of any method) fails.
    pub async fn expect_status(&mut self, code: u16, timeout: Duration) -> SipMessage {
        self.expect(&format!("status {code}"), timeout, |m| match m.status() {
            Some(s) if s == code => Verdict::Yes,
            Some(s) if s >= 200 => Verdict::Wrong,
            _ => Verdict::No,
        })
        .await
        .msg
    }

    /// The next response with status `code` to a `method` request; another final status to
    /// that method fails; responses to other methods are stashed.
    pub async fn expect_response(
        &mut self,
        method: Method,
        code: u16,
        timeout: Duration,
    ) -> SipMessage {
        self.expect(
            &format!("{code} to {}", method.as_str()),
            timeout,
            |m| match m.status() {
                Some(s) if m.cseq().method == method && s == code => Verdict::Yes,
                Some(s) if m.cseq().method == method && s >= 200 => Verdict::Wrong,
                _ => Verdict::No,
            },
        )
        .await
        .msg
    }

    /// The next new request with this method.
    pub async fn expect_request(&mut self, method: Method, timeout: Duration) -> SipMessage {
        self.expect_request_from(method, timeout).await.msg
    }

    /// The next new request with this method, and where it came from.
    pub async fn expect_request_from(&mut self, method: Method, timeout: Duration) -> Received {
        self.expect(&format!("a {} request", method.as_str()), timeout, |m| {
            if m.method() == Some(&method) {
                Verdict::Yes
            } else {
                Verdict::No
            }
        })
        .await
    }

    /// Nothing at all arrives for `d` (retransmissions included) and nothing is stashed.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Some(r) = self.stash.front() {
            panic!(
                "UA {}: expected silence, have:\n{}",
                self.user,
                text(&r.msg)
            );
        }
        if let Some((bytes, _)) = self.datagram(Instant::now() + d).await {
            panic!(
                "UA {}: expected silence, got:\n{}",
                self.user,
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// Forgets everything stashed (e.g. retransmitted provisionals a test does not care for).
    pub fn clear_stash(&mut self) -> Vec<SipMessage> {
        self.stash.drain(..).map(|r| r.msg).collect()
    }

    /// Answers `req` with `code`: Via/From/To/Call-ID/CSeq copied, `to_tag` added when the
    /// request's To has none, this UA's Contact on 1xx/2xx to INVITE, `headers`, and the
    /// optional `(content type, body)`. Sent to the server.
    pub async fn reply(
        &self,
        req: &SipMessage,
        code: u16,
        to_tag: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) {
        let reason = handover::sip::default_reason(code);
        let mut b = response_to(req, code, reason, to_tag);
        if req.method() == Some(&Method::Invite) && code < 300 {
            b.header("Contact", &self.contact());
        }
        for (n, v) in headers {
            b.header(n, v);
        }
        let bytes = match body {
            Some((ct, body)) => b.body(ct, body.as_bytes()),
            None => b.finish(),
        };
        self.send_bytes(&bytes).await;
    }
}
