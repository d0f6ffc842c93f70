//! RFC 4028 session timers on both legs of a call, with the in-process UA: what each leg's
//! INVITE and 2xx carry, handover refreshing the legs it is the refresher of (UPDATE, or
//! re-INVITE for a peer that does not allow UPDATE), answering a peer's refresh, 422 below
//! Min-SE, and a leg whose peer stops refreshing ending the call with BYE + Reason on both
//! legs, the agent back to idle. Intervals are seconds long here (`min_se_s = 2`); the
//! production floor is 90.

mod ua;

use std::time::Duration;

use handover::sip::{HeaderName, Method, SipMessage};
use ua::call::establish_custom;
use ua::harness::{assert_idle, customer_sdp, invite, start, Ids, T};
use ua::{body_text, branch, must_header, o_version, UdpUa};

const SESSION_SIP: &str = "session_expires_s = 4\nmin_se_s = 2\nkeepalive_s = 0";

fn header(msg: &SipMessage, name: &str) -> Option<String> {
    msg.headers()
        .find(|(_, raw, _)| raw.eq_ignore_ascii_case(name))
        .map(|(_, _, v)| v.into_owned())
}

/// Waits for the next request of `method` on `ua`, answering every UPDATE/OPTIONS refresh
/// that comes first with 200 (`answer_refreshes`).
async fn next_request(ua: &mut UdpUa, method: Method, within: Duration) -> SipMessage {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {method:?} within {within:?}");
        let Some(m) = ua.recv_any(left).await else {
            continue;
        };
        if m.method() == Some(&method) {
            return m;
        }
        if m.method() == Some(&Method::Update) {
            ua.reply(
                &m,
                200,
                None,
                &[("Session-Expires", "4;refresher=uac")],
                None,
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_legs_negotiate_timers_handover_refreshes_and_a_silent_refresher_ends_the_call() {
    // The customer asks handover to refresh its leg; the agent takes the refreshes of its own.
    let mut call = establish_custom(
        SESSION_SIP,
        "",
        &[
            "Supported: timer",
            "Session-Expires: 4;refresher=uas",
            "Allow: INVITE, ACK, BYE, CANCEL, UPDATE",
        ],
        &[
            ("Session-Expires", "4;refresher=uas"),
            ("Require", "timer"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE"),
        ],
    )
    .await;
    // handover's INVITE to the agent asks for its interval and names its Min-SE.
    let inv = &call.agent_invite;
    assert_eq!(header(inv, "Session-Expires").as_deref(), Some("4"));
    assert_eq!(header(inv, "Min-SE").as_deref(), Some("2"));
    assert!(
        must_header(inv, HeaderName::Supported).contains("timer"),
        "{inv:?}"
    );
    // The customer's 200: the interval it asked for, handover the refresher.
    let ok = &call.cust_answer;
    assert_eq!(
        header(ok, "Session-Expires").as_deref(),
        Some("4;refresher=uas")
    );
    assert_eq!(header(ok, "Require").as_deref(), Some("timer"));
    call.cust
        .send_raw(
            &call
                .ids
                .fill(&call.cust_request("ACK", 1, &branch(), &[], "")),
        )
        .await;

    // handover refreshes the customer's leg by UPDATE at half the interval (2 s).
    let update = call
        .cust
        .expect_request(Method::Update, Duration::from_secs(4))
        .await;
    assert_eq!(update.call_id(), call.ids.cid, "in the customer's dialog");
    assert_eq!(
        header(&update, "Session-Expires").as_deref(),
        Some("4;refresher=uac")
    );
    assert!(update.body().is_empty(), "a refresh UPDATE carries no SDP");
    call.cust
        .reply(
            &update,
            200,
            None,
            &[("Session-Expires", "4;refresher=uac")],
            None,
        )
        .await;

    // The agent refreshes its leg with a body-less UPDATE: answered by handover itself,
    // nothing reaches the customer but handover's own refreshes.
    let refresh = call.agent_request_with(
        "UPDATE",
        2,
        &branch(),
        &["Session-Expires: 4;refresher=uac", "Supported: timer"],
        "",
    );
    call.agent.send_raw(&refresh).await;
    let answer = call.agent.expect_response(Method::Update, 200, T).await;
    assert_eq!(
        header(&answer, "Session-Expires").as_deref(),
        Some("4;refresher=uac")
    );
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));

    // Then the agent's phone goes quiet: 4 − min(32, 4/3) = 3 s after its refresh handover
    // ends the session — BYE with a Reason to both legs (the customer keeps answering its
    // refreshes meanwhile).
    let bye = next_request(&mut call.agent, Method::Bye, Duration::from_secs(6)).await;
    assert!(
        header(&bye, "Reason").is_some_and(|r| r.contains("Session expired")),
        "{bye:?}"
    );
    call.agent.reply(&bye, 200, None, &[], None).await;
    let cbye = next_request(&mut call.cust, Method::Bye, Duration::from_secs(3)).await;
    assert!(header(&cbye, "Reason").is_some(), "{cbye:?}");
    call.cust.reply(&cbye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_update_is_refreshed_by_reinvite_with_its_unchanged_sdp() {
    // No timer asked by the customer (it does not support them); the agent makes handover
    // the refresher of its leg but does not allow UPDATE.
    let mut call = establish_custom(
        SESSION_SIP,
        "",
        &[],
        &[
            ("Session-Expires", "4;refresher=uac"),
            ("Allow", "INVITE, ACK, BYE, CANCEL"),
        ],
    )
    .await;
    assert_eq!(header(&call.cust_answer, "Session-Expires"), None);
    assert_eq!(header(&call.cust_answer, "Require"), None);
    call.cust
        .send_raw(
            &call
                .ids
                .fill(&call.cust_request("ACK", 1, &branch(), &[], "")),
        )
        .await;
    let first = body_text(&call.agent_invite);
    let reinvite = call
        .agent
        .expect_request(Method::Invite, Duration::from_secs(4))
        .await;
    assert_eq!(reinvite.call_id(), call.agent_invite.call_id());
    assert_eq!(
        header(&reinvite, "Session-Expires").as_deref(),
        Some("4;refresher=uac")
    );
    let body = body_text(&reinvite);
    assert_eq!(
        o_version(&body),
        o_version(&first),
        "a refresh offers the same SDP: the o= version stays"
    );
    call.agent
        .reply(
            &reinvite,
            200,
            None,
            &[("Session-Expires", "4;refresher=uac")],
            Some(("application/sdp", &ua::harness::agent_sdp(1, "sendrecv"))),
        )
        .await;
    let ack = call.agent.expect_request(Method::Ack, T).await;
    assert_eq!(ack.cseq().seq, reinvite.cseq().seq);
    // Nothing of the refresh reaches the customer.
    call.cust.expect_silence(Duration::from_millis(500)).await;
    // The customer hangs up: a normal end.
    call.cust
        .send_raw(
            &call
                .ids
                .fill(&call.cust_request("BYE", 2, &branch(), &[], "")),
        )
        .await;
    call.cust.expect_response(Method::Bye, 200, T).await;
    let bye = next_request(&mut call.agent, Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_below_min_se_gets_422_with_ours() {
    let toml = ua::harness::config("127.0.0.1/32", Some(9), SESSION_SIP);
    let (server, udp, _) = start(&toml).await;
    let mut cust = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    cust.send_raw(&invite(
        "2001",
        &ids,
        &["Supported: timer", "Session-Expires: 1"],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    let resp = cust.expect_status(422, T).await;
    assert_eq!(header(&resp, "Min-SE").as_deref(), Some("2"));
    assert_idle(&server).await;
}
