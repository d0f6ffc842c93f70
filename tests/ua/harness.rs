//! Shared scaffolding of the error tests: a server config generator, start and drain
//! helpers, the customer's INVITE template and the identifiers of one dialog.

use std::net::SocketAddr;
use std::time::Duration;

use handover::app::RunningServer;
use handover::sip::SipMessage;
use handover::transport::Protocol;

use super::{branch, call_id, sdp, tag, wire, UdpUa};
/// How long any single expected message may take.
pub const T: Duration = Duration::from_secs(3);
/// How long the server may take to drain its calls and transactions (Timer J/H = 64*T1).
pub const DRAIN: Duration = Duration::from_secs(12);

/// A server config: SIP on loopback port 0, one trunk with source `trunk_source`, agent 1001
/// (must register), and agent 2001 with a static contact when `agent_port` is given.
pub fn config(trunk_source: &str, agent_port: Option<u16>, sip_extra: &str) -> String {
    let mut t = format!(
        r#"[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "test.local"
t1_ms = 100
{sip_extra}

[registrar]
algorithms = ["MD5"]

[[trunks]]
name = "carrier"
sources = ["{trunk_source}"]
outbound = "sip:127.0.0.1:9"
access_number = "100"

[[agents]]
id = "1001"
password = "pass1001"
skills = ["sales"]
"#
    );
    if let Some(port) = agent_port {
        t.push_str(&format!(
            r#"
[[agents]]
id = "2001"
password = "pass2001"
skills = ["sales"]
contact = "sip:2001@127.0.0.1:{port}"
"#
        ));
    }
    t
}

pub async fn start(toml: &str) -> (RunningServer, SocketAddr, SocketAddr) {
    let config = handover::config::Config::from_toml_str(toml).unwrap();
    let server = handover::app::start(config).await.unwrap();
    let udp = server.sip_addr(Protocol::Udp).unwrap();
    let tcp = server.sip_addr(Protocol::Tcp).unwrap();
    (server, udp, tcp)
}

/// Polls until no call and no transaction is left.
pub async fn assert_idle(server: &RunningServer) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let s = server.stats();
        if s.active_calls == 0 && s.transactions == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("server not idle after {DRAIN:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A customer's INVITE to `user` at the server, with `extra` header lines and an SDP body
/// (Content-Type only when the body is not empty). `{branch}`, `{ftag}`, `{cid}` are filled
/// from `ids`.
pub fn invite(user: &str, ids: &Ids, extra: &[&str], body: &str) -> String {
    let mut lines = vec![
        "INVITE sip:{user}@{server} SIP/2.0",
        "Via: SIP/2.0/UDP {ip}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
        "To: <sip:{user}@{server}>",
        "Call-ID: {cid}",
        "CSeq: 1 INVITE",
        "Contact: <sip:cust@{ip}:{port}>",
    ];
    lines.extend_from_slice(extra);
    if !body.is_empty() {
        lines.push("Content-Type: application/sdp");
    }
    lines.push("Content-Length: {len}");
    ids.fill(&wire(&lines, body)).replace("{user}", user)
}

/// The identifiers of one dialog as the customer UA wrote them.
#[derive(Clone)]
pub struct Ids {
    pub branch: String,
    pub ftag: String,
    pub cid: String,
}

impl Ids {
    pub fn new() -> Ids {
        Ids {
            branch: branch(),
            ftag: tag(),
            cid: call_id(),
        }
    }

    pub fn fill(&self, text: &str) -> String {
        text.replace("{branch}", &self.branch)
            .replace("{ftag}", &self.ftag)
            .replace("{cid}", &self.cid)
    }
}

pub fn customer_sdp(version: u64, direction: &str) -> String {
    sdp(&[
        "v=0",
        &format!("o=cust 4711 {version} IN IP4 127.0.0.1"),
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        &format!("a={direction}"),
    ])
}

pub fn agent_sdp(version: u64, direction: &str) -> String {
    sdp(&[
        "v=0",
        &format!("o=agent 9000 {version} IN IP4 127.0.0.1"),
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 42000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        &format!("a={direction}"),
    ])
}

/// Strips `<>` and header parameters off a Contact value.
pub fn contact_uri(contact: &str) -> String {
    let c = contact.trim();
    match (c.find('<'), c.find('>')) {
        (Some(a), Some(b)) if a < b => c[a + 1..b].to_owned(),
        _ => c.split(';').next().unwrap_or(c).to_owned(),
    }
}

/// Sends one request and returns the (parsed) first final response; provisionals skipped.
pub async fn request_final(ua: &mut UdpUa, text: &str, code: u16) -> SipMessage {
    ua.send_raw(text).await;
    ua.expect_status(code, T).await
}

/// Asserts a request refused before any call exists created none.
pub fn assert_no_call(server: &RunningServer) {
    assert_eq!(
        server.stats().active_calls,
        0,
        "a refused request made a call"
    );
}

pub fn out_of_dialog(
    method: &str,
    ids: &Ids,
    to_tag: Option<&str>,
    extra: &[&str],
    body: &str,
) -> String {
    let to = match to_tag {
        Some(t) => format!("To: <sip:x@test.local>;tag={t}"),
        None => "To: <sip:x@test.local>".to_owned(),
    };
    let start = format!("{method} sip:x@{{server}} SIP/2.0");
    let cseq = format!("CSeq: 7 {method}");
    let mut lines = vec![
        start.as_str(),
        "Via: SIP/2.0/UDP {ip}:{port};branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:probe@{ip}>;tag={ftag}",
        to.as_str(),
        "Call-ID: {cid}",
        cseq.as_str(),
        "Contact: <sip:probe@{ip}:{port}>",
    ];
    lines.extend_from_slice(extra);
    lines.push("Content-Length: {len}");
    ids.fill(&wire(&lines, body))
}
