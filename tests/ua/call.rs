//! A call between a customer and agent 2001, both played by the test UA, brought to the
//! confirmed state with every hop asserted on the way (RFC 3261 §13, B2BUA leg separation).

use handover::app::RunningServer;
use handover::sip::{HeaderName, Method, SipMessage};

use super::harness::{agent_sdp, config, contact_uri, customer_sdp, invite, start, Ids, T};
use super::{body_text, branch, must_header, sdp_line, tag, text, wire, UdpUa};
/// Customer and agent 2001, both played by the UA, with the call established.
pub struct Call {
    pub server: RunningServer,
    pub cust: UdpUa,
    pub agent: UdpUa,
    pub ids: Ids,
    /// The INVITE the agent received.
    pub agent_invite: SipMessage,
    /// The agent's To tag.
    pub agent_tag: String,
    /// handover's To tag towards the customer.
    pub cust_to_tag: String,
    /// handover's Contact towards the customer (Request-URI of the customer's requests).
    pub cust_target: String,
    /// handover's Contact towards the agent.
    pub agent_target: String,
    /// The 200 the customer received.
    pub cust_answer: SipMessage,
}

impl Call {
    /// An in-dialog request from the customer.
    pub fn cust_request(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        extra: &[&str],
        body: &str,
    ) -> String {
        let start = format!("{method} {} SIP/2.0", self.cust_target);
        let to = format!("To: <sip:2001@{{server}}>;tag={}", self.cust_to_tag);
        let cseq = format!("CSeq: {cseq} {method}");
        let via = format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={branch};rport");
        let mut lines = vec![
            start.as_str(),
            via.as_str(),
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            to.as_str(),
            "Call-ID: {cid}",
            cseq.as_str(),
            "Contact: <sip:cust@{ip}:{port}>",
        ];
        lines.extend_from_slice(extra);
        lines.push("Content-Length: {len}");
        self.ids.fill(&wire(&lines, body))
    }

    /// A re-INVITE from the customer offering `sdp`.
    pub fn cust_reinvite(&self, cseq: u32, branch: &str, sdp: &str) -> String {
        self.cust_request(
            "INVITE",
            cseq,
            branch,
            &["Content-Type: application/sdp"],
            sdp,
        )
    }

    /// An in-dialog request from the agent with extra header lines and a body.
    pub fn agent_request_with(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        extra: &[&str],
        body: &str,
    ) -> String {
        let base = self.agent_request(method, cseq, branch);
        let head = base
            .trim_end_matches("\r\n")
            .trim_end_matches("Content-Length: 0");
        let mut out = head.to_owned();
        for line in extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        out
    }

    /// An in-dialog request from the agent.
    pub fn agent_request(&self, method: &str, cseq: u32, branch: &str) -> String {
        let inv = &self.agent_invite;
        let start = format!("{method} {} SIP/2.0", self.agent_target);
        let via = format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={branch};rport");
        let from = format!(
            "From: {};tag={}",
            must_header(inv, HeaderName::To),
            self.agent_tag
        );
        let to = format!("To: {}", must_header(inv, HeaderName::From));
        let cid = format!("Call-ID: {}", inv.call_id());
        let cseq = format!("CSeq: {cseq} {method}");
        wire(
            &[
                start.as_str(),
                via.as_str(),
                "Max-Forwards: 70",
                from.as_str(),
                to.as_str(),
                cid.as_str(),
                cseq.as_str(),
                "Content-Length: 0",
            ],
            "",
        )
    }
}

pub async fn establish() -> Call {
    establish_with("").await
}

/// [`establish`] with `extra` TOML appended to the server config (more agents, IVRs, ...).
pub async fn establish_with(extra: &str) -> Call {
    establish_full("", extra).await
}

/// [`establish_with`] with `sip_extra` lines in the `[sip]` section too.
pub async fn establish_full(sip_extra: &str, extra: &str) -> Call {
    establish_custom(sip_extra, extra, &[], &[]).await
}

/// [`establish_full`] with extra header lines in the customer's INVITE and the agent's 200.
pub async fn establish_custom(
    sip_extra: &str,
    extra: &str,
    invite_extra: &[&str],
    answer_extra: &[(&str, &str)],
) -> Call {
    let mut agent = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2001").await;
    let toml = format!(
        "{}\n{extra}",
        config("127.0.0.1/32", Some(agent.port()), sip_extra)
    );
    let (server, udp, _) = start(&toml).await;
    agent.server = udp;
    let mut cust = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let offer = customer_sdp(1, "sendrecv");
    cust.send_raw(&invite("2001", &ids, invite_extra, &offer))
        .await;
    cust.expect_status(100, T).await;

    let inv = agent.expect_request(Method::Invite, T).await;
    assert_ne!(
        inv.call_id(),
        ids.cid,
        "handover must use its own Call-ID on the agent leg"
    );
    assert!(inv.to_tag().is_none());
    assert_ne!(
        inv.from_tag(),
        Some(ids.ftag.as_str()),
        "own From tag on the agent leg"
    );
    assert!(
        must_header(&inv, HeaderName::From).contains("+3215551234"),
        "the agent sees the customer's number: {}",
        text(&inv)
    );
    assert_eq!(
        inv.request_uri_str(),
        Some(format!("sip:2001@{}", agent.local_addr()).as_str())
    );
    let got = body_text(&inv);
    assert_ne!(
        sdp_line(&got, "o="),
        sdp_line(&offer, "o="),
        "o= must be handover's own"
    );
    assert_eq!(
        sdp_line(&got, "m="),
        sdp_line(&offer, "m="),
        "m= must be relayed as is"
    );
    assert_eq!(sdp_line(&got, "c="), sdp_line(&offer, "c="));
    assert!(got.contains("a=fmtp:101 0-16"), "{got}");
    assert_eq!(server.agent_state("2001").as_deref(), Some("ringing"));

    let agent_tag = tag();
    agent.reply(&inv, 180, Some(&agent_tag), &[], None).await;
    let ringing = cust.expect_status(180, T).await;
    assert_eq!(ringing.call_id(), ids.cid);
    let cust_to_tag = ringing.to_tag().expect("180 without To tag").to_owned();
    assert_ne!(cust_to_tag, agent_tag, "own To tag on the customer leg");

    let answer = agent_sdp(1, "sendrecv");
    agent
        .reply(
            &inv,
            200,
            Some(&agent_tag),
            answer_extra,
            Some(("application/sdp", &answer)),
        )
        .await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    assert_eq!(
        ok.to_tag(),
        Some(cust_to_tag.as_str()),
        "To tag stable from 180 to 200"
    );
    assert_eq!(ok.call_id(), ids.cid);
    let got = body_text(&ok);
    assert_ne!(sdp_line(&got, "o="), sdp_line(&answer, "o="));
    assert_eq!(sdp_line(&got, "m="), sdp_line(&answer, "m="));
    let cust_target = contact_uri(&must_header(&ok, HeaderName::Contact));

    let mut call = Call {
        server,
        cust,
        agent,
        ids: ids.clone(),
        agent_invite: inv.clone(),
        agent_tag,
        cust_to_tag,
        cust_target,
        agent_target: contact_uri(&must_header(&inv, HeaderName::Contact)),
        cust_answer: ok,
    };
    let text = call.cust_request("ACK", 1, &branch(), &[], "");
    call.cust.send_raw(&text).await;
    let a = call.agent.expect_request(Method::Ack, T).await;
    assert_eq!(a.call_id(), call.agent_invite.call_id());
    assert_eq!(a.cseq().seq, call.agent_invite.cseq().seq);
    assert_eq!(a.to_tag(), Some(call.agent_tag.as_str()));
    call
}
