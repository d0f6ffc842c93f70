//! The TCP user agent: one connection to the server, with Content-Length framing of what
//! comes back (RFC 3261 §18.3).

use std::net::SocketAddr;
use std::time::Duration;

use handover::sip::SipMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{parse, raw_status};

/// What reading the connection produced.
#[derive(Debug)]
pub enum TcpRead {
    /// One complete message (raw text).
    Message(String),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing within the timeout.
    Timeout,
}

/// A scripted UA on one TCP connection.
pub struct TcpUa {
    stream: TcpStream,
    local: SocketAddr,
    pub server: SocketAddr,
    buf: Vec<u8>,
}

impl TcpUa {
    pub async fn connect(server: SocketAddr) -> TcpUa {
        let stream = TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        TcpUa {
            stream,
            local,
            server,
            buf: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Fills `{ip}`, `{port}` and `{server}`.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{ip}", &self.local.ip().to_string())
            .replace("{port}", &self.local.port().to_string())
            .replace("{server}", &self.server.to_string())
    }

    /// Writes wire text (placeholders filled). A write error (the server already closed) is
    /// returned, not a panic: some tests send more than the server will read.
    pub async fn send_raw(&mut self, text: &str) -> std::io::Result<()> {
        let filled = self.fill(text);
        self.stream.write_all(filled.as_bytes()).await
    }

    /// One complete message out of the buffer, if there is one.
    fn take_message(&mut self) -> Option<String> {
        // Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
        while self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        if self.buf.len() < end + len {
            return None;
        }
        let msg: Vec<u8> = self.buf.drain(..end + len).collect();
        Some(String::from_utf8_lossy(&msg).into_owned())
    }

    /// The next complete message, or that the connection closed, or a timeout.
    pub async fn read(&mut self, timeout: Duration) -> TcpRead {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.take_message() {
                return TcpRead::Message(m);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return TcpRead::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return TcpRead::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next message as raw text (panics on close or timeout).
    pub async fn recv(&mut self, timeout: Duration) -> String {
        match self.read(timeout).await {
            TcpRead::Message(m) => m,
            other => panic!("TCP UA: expected a message, got {other:?}"),
        }
    }

    /// The next message whose status is `code`, as raw text; provisional responses are
    /// skipped, any other final status fails.
    pub async fn expect_raw_status(&mut self, code: u16, timeout: Duration) -> String {
        loop {
            let m = self.recv(timeout).await;
            match raw_status(&m) {
                Some((s, _)) if s == code => return m,
                Some((s, _)) if s < 200 => continue,
                _ => panic!("TCP UA: expected status {code}, got:\n{m}"),
            }
        }
    }

    /// Like `expect_raw_status`, parsed with handover's codec.
    pub async fn expect_status(&mut self, code: u16, timeout: Duration) -> SipMessage {
        let m = self.expect_raw_status(code, timeout).await;
        parse(m.as_bytes()).unwrap_or_else(|e| panic!("unparseable response ({e}):\n{m}"))
    }

    /// The server closes the connection within `timeout`, sending no further message.
    pub async fn expect_closed(&mut self, timeout: Duration) {
        match self.read(timeout).await {
            TcpRead::Closed => {}
            TcpRead::Message(m) => panic!("TCP UA: expected close, got:\n{m}"),
            TcpRead::Timeout => panic!("TCP UA: connection still open after {timeout:?}"),
        }
    }
}
