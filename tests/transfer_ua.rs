//! Transfers driven by an in-process test UA playing customer, agent 2001 and the target
//! (agent 2002 or the IVR flow), with every message on every leg asserted (DESIGN.md §3).

mod ua;

use std::time::Duration;

use handover::sip::{HeaderName, Method, SipMessage};
use ua::call::{establish_with, Call};
use ua::harness::{agent_sdp, assert_idle, customer_sdp, T};
use ua::{body_text, branch, must_header, sdp_line, tag, UdpUa};

fn target_sdp() -> String {
    ua::sdp(&[
        "v=0",
        "o=target 7000 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 46000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=sendrecv",
    ])
}

/// A `[cdr]` section writing to a fresh temporary file.
fn cdr_section() -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("handover-xfer-cdr-{}.jsonl", fastrand::u64(..)));
    (
        format!("[cdr]\npath = \"{}\"\nflush_ms = 20\n", path.display()),
        path,
    )
}

/// The only CDR line in `path`, once written.
async fn the_cdr(path: &std::path::Path) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            let _ = std::fs::remove_file(path);
            return serde_json::from_str(line).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no CDR written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_2002(port: u16) -> String {
    format!(
        "[[agents]]\nid = \"2002\"\npassword = \"pass2002\"\nskills = [\"sales\"]\ncontact = \"sip:2002@127.0.0.1:{port}\"\n"
    )
}

fn ivr(port: u16) -> String {
    format!(
        "[[ivr]]\nname = \"survey\"\nnumber = \"7000\"\nuri = \"sip:survey@127.0.0.1:{port}\"\n"
    )
}

/// A UA for the target, bound before the server starts so its port can go in the config.
async fn target_ua(user: &str) -> UdpUa {
    UdpUa::bind("127.0.0.1:9".parse().unwrap(), user).await
}

/// The agent sends REFER to `refer_to` and gets 202.
async fn refer(call: &mut Call, cseq: u32, refer_to: &str, extra: &[&str]) -> SipMessage {
    let refer_to = format!("Refer-To: {refer_to}");
    let mut lines = vec![refer_to.as_str(), "Referred-By: <sip:2001@test.local>"];
    lines.extend_from_slice(extra);
    let text = call.agent_request_with("REFER", cseq, &branch(), &lines, "");
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Refer, 202, T).await
}

/// The agent receives a NOTIFY, checks its sipfrag status line, answers 200.
async fn expect_notify(call: &mut Call, status: u16, terminated: bool) {
    let n = call.agent.expect_request(Method::Notify, T).await;
    let body = body_text(&n);
    assert!(
        body.starts_with(&format!("SIP/2.0 {status}")),
        "NOTIFY body: {body}"
    );
    assert_eq!(must_header(&n, HeaderName::Event).trim(), "refer");
    let state = n
        .header_named("Subscription-State")
        .map(|v| v.into_owned())
        .unwrap_or_default();
    assert_eq!(state.starts_with("terminated"), terminated, "{state}");
    assert!(must_header(&n, HeaderName::ContentType).starts_with("message/sipfrag"));
    call.agent.reply(&n, 200, None, &[], None).await;
}

/// The customer receives a re-INVITE whose SDP has `direction`, answers with its SDP
/// (answer direction), and receives the ACK. Returns the re-INVITE.
async fn customer_takes_reinvite(
    call: &mut Call,
    direction: &str,
    answer_dir: &str,
    version: u64,
) -> SipMessage {
    let inv = call.cust.expect_request(Method::Invite, T).await;
    let body = body_text(&inv);
    assert!(
        body.contains(&format!("a={direction}")),
        "re-INVITE SDP:\n{body}"
    );
    assert_eq!(
        inv.call_id(),
        call.ids.cid,
        "the customer keeps its own dialog"
    );
    let answer = customer_sdp(version, answer_dir);
    call.cust
        .reply(&inv, 200, None, &[], Some(("application/sdp", &answer)))
        .await;
    call.cust.expect_request(Method::Ack, T).await;
    inv
}

async fn customer_bye(call: &mut Call, cseq: u32) {
    let text = call.cust_request("BYE", cseq, &branch(), &[], "");
    call.cust.send_raw(&text).await;
    call.cust.expect_response(Method::Bye, 200, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_transfer_bridges_the_customer_to_the_target_then_releases_the_agent() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;

    refer(&mut call, 1, "<sip:2002@test.local;transfer=success>", &[]).await;
    expect_notify(&mut call, 100, false).await;
    // The customer is held while the target rings.
    let hold = customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let prior = call.cust_answer.clone();
    assert_eq!(
        ua::o_session(&body_text(&hold)),
        ua::o_session(&body_text(&prior)),
        "same o= session id on the customer leg"
    );
    assert_eq!(
        ua::o_version(&body_text(&hold)),
        ua::o_version(&body_text(&prior)) + 1
    );

    // The target gets a late-offer INVITE with Referred-By and the customer's identity.
    let inv = target.expect_request(Method::Invite, T).await;
    assert!(inv.body().is_empty(), "late offer to the target");
    assert!(must_header(&inv, HeaderName::ReferredBy).contains("2001"));
    assert!(must_header(&inv, HeaderName::From).contains("+3215551234"));
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("ringing"));
    let ttag = tag();
    target.reply(&inv, 180, Some(&ttag), &[], None).await;
    expect_notify(&mut call, 180, false).await;
    assert_eq!(
        call.server.agent_state("2001").as_deref(),
        Some("talking"),
        "success: agent stays until the target answers"
    );
    let offer = target_sdp();
    target
        .reply(
            &inv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &offer)),
        )
        .await;

    // The customer is re-INVITEd with the target's media.
    let bridge = customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    assert_eq!(sdp_line(&body_text(&bridge), "m="), sdp_line(&offer, "m="));
    let ack = target.expect_request(Method::Ack, T).await;
    assert!(
        body_text(&ack).contains("m=audio 40000"),
        "the target's ACK carries the customer's answer"
    );

    // Release moment: NOTIFY 200, then BYE to the agent.
    expect_notify(&mut call, 200, true).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("talking"));

    customer_bye(&mut call, 4).await;
    let bye = target.expect_request(Method::Bye, T).await;
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_transfer_to_a_busy_target_rebridges_the_agent() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;

    refer(&mut call, 1, "<sip:2002@test.local;transfer=success>", &[]).await;
    expect_notify(&mut call, 100, false).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let inv = target.expect_request(Method::Invite, T).await;
    target.reply(&inv, 486, Some(&tag()), &[], None).await;
    target.expect_request(Method::Ack, T).await;
    expect_notify(&mut call, 486, true).await;
    // Un-held: back with the agent, whose media it gets again.
    let unhold = customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    assert_eq!(
        sdp_line(&body_text(&unhold), "m="),
        sdp_line(&agent_sdp(1, "sendrecv"), "m=")
    );
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));
    customer_bye(&mut call, 4).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_transfer_releases_the_agent_at_once() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;

    refer(
        &mut call,
        1,
        "<sip:*22002@test.local>",
        &["Refer-Sub: false"],
    )
    .await;
    // Refer-Sub: false → no NOTIFY; the agent is released at once.
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let inv = target.expect_request(Method::Invite, T).await;
    let ttag = tag();
    let offer = target_sdp();
    target
        .reply(
            &inv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &offer)),
        )
        .await;
    customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    target.expect_request(Method::Ack, T).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    let stash = call.agent.clear_stash();
    assert!(
        stash.iter().all(|m| m.method() != Some(&Method::Notify)),
        "Refer-Sub: false must suppress NOTIFYs"
    );
    customer_bye(&mut call, 4).await;
    let bye = target.expect_request(Method::Bye, T).await;
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hanging_up_after_the_202_never_costs_the_customer() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;

    refer(&mut call, 1, "<sip:2002@test.local;transfer=success>", &[]).await;
    // Rule 7: the phone hangs up right after the 202.
    let text = call.agent_request("BYE", 2, &branch());
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Bye, 200, T).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let inv = target.expect_request(Method::Invite, T).await;
    let ttag = tag();
    target
        .reply(
            &inv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    target.expect_request(Method::Ack, T).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    customer_bye(&mut call, 4).await;
    let bye = target.expect_request(Method::Bye, T).await;
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transfers_leave_the_call_as_it_was() {
    let target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;

    // Rule 1: hang-up transfer only to IVR flows.
    let text = call.agent_request_with(
        "REFER",
        1,
        &branch(),
        &["Refer-To: <sip:2002@test.local;transfer=hangup>"],
        "",
    );
    call.agent.send_raw(&text).await;
    let r = call.agent.expect_response(Method::Refer, 403, T).await;
    assert!(
        must_header(&r, HeaderName::Warning).contains("rule 1"),
        "{:?}",
        r.header(HeaderName::Warning)
    );
    // Unknown target.
    let text = call.agent_request_with(
        "REFER",
        2,
        &branch(),
        &["Refer-To: <sip:5999@test.local>"],
        "",
    );
    call.agent.send_raw(&text).await;
    let r = call.agent.expect_response(Method::Refer, 403, T).await;
    assert!(r.header(HeaderName::Warning).is_some());
    // From the customer's side.
    let text = call.cust_request(
        "REFER",
        2,
        &branch(),
        &["Refer-To: <sip:2002@test.local>"],
        "",
    );
    call.cust.send_raw(&text).await;
    call.cust.expect_response(Method::Refer, 403, T).await;
    // Malformed Refer-To.
    let text = call.agent_request_with("REFER", 3, &branch(), &["Refer-To: <sip:"], "");
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Refer, 400, T).await;
    // Nothing changed: the customer hangs up with the agent.
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));
    customer_bye(&mut call, 3).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_to_an_ivr_returns_the_call_to_the_same_agent() {
    let mut ivr_ua = target_ua("survey").await;
    let (cdr, cdr_path) = cdr_section();
    let mut call = establish_with(&format!("{}\n{cdr}", ivr(ivr_ua.port()))).await;
    ivr_ua.server = call.agent.server;

    refer(&mut call, 1, "<sip:*47000@test.local>", &[]).await;
    expect_notify(&mut call, 100, false).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let inv = ivr_ua.expect_request(Method::Invite, T).await;
    assert!(inv.body().is_empty());
    let itag = tag();
    ivr_ua
        .reply(
            &inv,
            200,
            Some(&itag),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    ivr_ua.expect_request(Method::Ack, T).await;
    // The IVR answered: NOTIFY 200, and the phone hangs up itself.
    expect_notify(&mut call, 200, true).await;
    let text = call.agent_request("BYE", 2, &branch());
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Bye, 200, T).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("waiting"));

    // The IVR ends its part with data for the agent.
    let ivr_bye = {
        let from = format!("From: {};tag={itag}", must_header(&inv, HeaderName::To));
        let to = format!("To: {}", must_header(&inv, HeaderName::From));
        let cid = format!("Call-ID: {}", inv.call_id());
        let start = format!(
            "BYE {} SIP/2.0",
            ua::harness::contact_uri(&must_header(&inv, HeaderName::Contact))
        );
        ua::wire(
            &[
                &start,
                "Via: SIP/2.0/UDP {ip}:{port};branch={b};rport",
                "Max-Forwards: 70",
                &from,
                &to,
                &cid,
                "CSeq: 1 BYE",
                "X-Flow-Result: paid",
                "Content-Length: 0",
            ],
            "",
        )
        .replace("{b}", &branch())
    };
    ivr_ua.send_raw(&ivr_bye).await;
    ivr_ua.expect_response(Method::Bye, 200, T).await;
    // handover calls the same agent back, late offer, with the flow's data.
    let back = call.agent.expect_request(Method::Invite, T).await;
    assert_ne!(
        back.call_id(),
        call.agent_invite.call_id(),
        "a new dialog with the agent"
    );
    assert!(back.body().is_empty());
    assert_eq!(back.header_named("X-Flow-Result").as_deref(), Some("paid"));
    let atag = tag();
    call.agent
        .reply(
            &back,
            200,
            Some(&atag),
            &[],
            Some(("application/sdp", &agent_sdp(5, "sendrecv"))),
        )
        .await;
    customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 4).await;
    let ack = call.agent.expect_request(Method::Ack, T).await;
    assert!(
        !ack.body().is_empty(),
        "the agent's ACK carries the customer's answer"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));

    customer_bye(&mut call, 5).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    assert_eq!(bye.call_id(), back.call_id());
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    // The CDR: the hang-up transfer, the IVR leg, the agent's return leg, the flow's data.
    let rec = the_cdr(&cdr_path).await;
    assert_eq!(rec["transfers"][0]["transfer_type"], "hangup");
    assert_eq!(rec["transfers"][0]["target"], "ivr:survey");
    assert_eq!(rec["transfers"][0]["outcome"], "succeeded");
    let roles: Vec<&str> = rec["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["customer", "agent", "ivr", "agent"]);
}

/// Conversation transfer up to the consultation: the agent talks to the target while the
/// customer is held. Returns the target UA and the target's INVITE and To tag.
async fn consult(call: &mut Call, target: &mut UdpUa) -> (SipMessage, String) {
    refer(call, 1, "<sip:2002@test.local;transfer=conversation>", &[]).await;
    expect_notify(call, 100, false).await;
    customer_takes_reinvite(call, "sendonly", "recvonly", 2).await;
    let inv = target.expect_request(Method::Invite, T).await;
    assert!(inv.body().is_empty());
    let ttag = tag();
    target
        .reply(
            &inv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    // The agent (not the customer) is joined to the target first.
    let reinv = call.agent.expect_request(Method::Invite, T).await;
    assert_eq!(
        sdp_line(&body_text(&reinv), "m="),
        sdp_line(&target_sdp(), "m=")
    );
    call.agent
        .reply(
            &reinv,
            200,
            None,
            &[],
            Some(("application/sdp", &agent_sdp(2, "sendrecv"))),
        )
        .await;
    call.agent.expect_request(Method::Ack, T).await;
    let ack = target.expect_request(Method::Ack, T).await;
    assert!(
        body_text(&ack).contains("m=audio 42000"),
        "the target hears the agent"
    );
    // Rule 8: no final NOTIFY while the agent should still talk to the target.
    call.agent.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("talking"));
    (inv, ttag)
}

/// A BYE from the target UA in its dialog with handover.
fn target_bye(inv: &SipMessage, ttag: &str, cseq: u32) -> String {
    let from = format!("From: {};tag={ttag}", must_header(inv, HeaderName::To));
    let to = format!("To: {}", must_header(inv, HeaderName::From));
    let cid = format!("Call-ID: {}", inv.call_id());
    let start = format!(
        "BYE {} SIP/2.0",
        ua::harness::contact_uri(&must_header(inv, HeaderName::Contact))
    );
    let cseq = format!("CSeq: {cseq} BYE");
    ua::wire(
        &[
            &start,
            "Via: SIP/2.0/UDP {ip}:{port};branch={b};rport",
            "Max-Forwards: 70",
            &from,
            &to,
            &cid,
            &cseq,
            "Content-Length: 0",
        ],
        "",
    )
    .replace("{b}", &branch())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_transfer_completes_when_the_agent_hangs_up() {
    let mut target = target_ua("2002").await;
    let (cdr, cdr_path) = cdr_section();
    let mut call = establish_with(&format!("{}\n{cdr}", agent_2002(target.port()))).await;
    target.server = call.agent.server;
    consult(&mut call, &mut target).await;

    let text = call.agent_request("BYE", 2, &branch());
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Bye, 200, T).await;
    // handover asks the target for a fresh offer and gives it to the customer.
    let fetch = target.expect_request(Method::Invite, T).await;
    assert!(
        fetch.body().is_empty(),
        "re-INVITE without SDP asks for an offer"
    );
    target
        .reply(
            &fetch,
            200,
            None,
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    let bridge = customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 3).await;
    assert_eq!(
        sdp_line(&body_text(&bridge), "m="),
        sdp_line(&target_sdp(), "m=")
    );
    let ack = target.expect_request(Method::Ack, T).await;
    assert!(
        body_text(&ack).contains("m=audio 40000"),
        "the target gets the customer's answer"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));

    customer_bye(&mut call, 4).await;
    let bye = target.expect_request(Method::Bye, T).await;
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    // The CDR: one interaction, a conversation transfer completed by the agent.
    let rec = the_cdr(&cdr_path).await;
    assert_eq!(rec["transfers"][0]["transfer_type"], "conversation");
    assert_eq!(rec["transfers"][0]["outcome"], "succeeded");
    assert_eq!(rec["transfers"][0]["target"], "agent:2002");
    assert_eq!(rec["interaction_id"], call.ids.cid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_target_hanging_up_returns_the_agent_to_the_customer() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;
    let (inv, ttag) = consult(&mut call, &mut target).await;

    target.send_raw(&target_bye(&inv, &ttag, 1)).await;
    target.expect_response(Method::Bye, 200, T).await;
    expect_notify(&mut call, 487, true).await;
    // The customer offers afresh; its offer goes to the agent.
    let fetch = call.cust.expect_request(Method::Invite, T).await;
    assert!(fetch.body().is_empty());
    call.cust
        .reply(
            &fetch,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(3, "sendrecv"))),
        )
        .await;
    let reinv = call.agent.expect_request(Method::Invite, T).await;
    assert!(body_text(&reinv).contains("m=audio 40000"));
    call.agent
        .reply(
            &reinv,
            200,
            None,
            &[],
            Some(("application/sdp", &agent_sdp(3, "sendrecv"))),
        )
        .await;
    call.agent.expect_request(Method::Ack, T).await;
    let ack = call.cust.expect_request(Method::Ack, T).await;
    assert!(
        body_text(&ack).contains("m=audio 42000"),
        "the customer gets the agent's answer"
    );
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));

    customer_bye(&mut call, 4).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_leaving_during_consultation_leaves_the_agent_with_the_target_and_rule_4_applies()
{
    let mut target = target_ua("2002").await;
    let extra = format!(
        "{}\n[[external_numbers]]\nname = \"partner\"\nnumber = \"0049301234567\"\nuser_number_forwarding = true\n",
        agent_2002(target.port())
    );
    let mut call = establish_with(&extra).await;
    target.server = call.agent.server;
    let (inv, ttag) = consult(&mut call, &mut target).await;

    customer_bye(&mut call, 3).await;
    expect_notify(&mut call, 487, true).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));
    // Rule 4: the agent, now with customer 2, cannot transfer to an external number.
    let text = call.agent_request_with(
        "REFER",
        2,
        &branch(),
        &["Refer-To: <sip:0049301234567@test.local;transfer=success>"],
        "",
    );
    call.agent.send_raw(&text).await;
    let r = call.agent.expect_response(Method::Refer, 403, T).await;
    assert!(
        must_header(&r, HeaderName::Warning).contains("rule 4"),
        "{:?}",
        r.header(HeaderName::Warning)
    );
    // The target hangs up: the agent gets BYE.
    target.send_raw(&target_bye(&inv, &ttag, 1)).await;
    target.expect_response(Method::Bye, 200, T).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
}

/// The agent places its own consultation call to 2002 through handover (as a softphone does
/// for an attended transfer). Returns (Call-ID, agent's tag, handover's tag) of that dialog
/// as the agent sees it, and the target's INVITE and tag.
async fn agent_consults(
    call: &mut Call,
    target: &mut UdpUa,
) -> (String, String, String, SipMessage, String) {
    let cid = ua::call_id();
    let atag = tag();
    let inv = ua::wire(
        &[
            "INVITE sip:2002@{server} SIP/2.0",
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70",
            &format!("From: <sip:2001@test.local>;tag={atag}"),
            "To: <sip:2002@test.local>",
            &format!("Call-ID: {cid}"),
            "CSeq: 1 INVITE",
            "Contact: <sip:2001@{ip}:{port}>",
            "Content-Type: application/sdp",
            "Content-Length: {len}",
        ],
        &agent_sdp(10, "sendrecv"),
    );
    call.agent.send_raw(&inv).await;
    let tinv = target.expect_request(Method::Invite, T).await;
    let ttag = tag();
    target
        .reply(
            &tinv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    let ok = call.agent.expect_response(Method::Invite, 200, T).await;
    let htag = ok.to_tag().unwrap().to_owned();
    let ack = ua::wire(
        &[
            &format!(
                "ACK {} SIP/2.0",
                ua::harness::contact_uri(&must_header(&ok, HeaderName::Contact))
            ),
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70",
            &format!("From: <sip:2001@test.local>;tag={atag}"),
            &format!("To: <sip:2002@test.local>;tag={htag}"),
            &format!("Call-ID: {cid}"),
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ],
        "",
    );
    call.agent.send_raw(&ack).await;
    target.expect_request(Method::Ack, T).await;
    (cid, atag, htag, tinv, ttag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_with_replaces_joins_the_customer_and_the_consulted_target() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;
    let (cid, atag, htag, tinv, _ttag) = agent_consults(&mut call, &mut target).await;
    assert_eq!(call.server.stats().active_calls, 2);

    // REFER on the customer's dialog naming the consultation dialog (pjsua's form).
    let replaces = format!("{cid}%3Bto-tag%3D{htag}%3Bfrom-tag%3D{atag}");
    let refer_to = format!("<sip:2002@test.local?Require=replaces&Replaces={replaces}>");
    refer(&mut call, 1, &refer_to, &[]).await;
    expect_notify(&mut call, 100, false).await;
    // The consulted target is asked for a fresh offer, which goes to the customer.
    let fetch = target.expect_request(Method::Invite, T).await;
    assert_eq!(
        fetch.call_id(),
        tinv.call_id(),
        "the target keeps its dialog"
    );
    assert!(fetch.body().is_empty());
    target
        .reply(
            &fetch,
            200,
            None,
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    let bridge = customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 2).await;
    assert_eq!(
        sdp_line(&body_text(&bridge), "m="),
        sdp_line(&target_sdp(), "m=")
    );
    let ack = target.expect_request(Method::Ack, T).await;
    assert!(body_text(&ack).contains("m=audio 40000"));
    // The agent: NOTIFY 200, then BYE on both of its dialogs.
    expect_notify(&mut call, 200, true).await;
    for _ in 0..2 {
        let bye = call.agent.expect_request(Method::Bye, T).await;
        assert!(bye.call_id() == cid || bye.call_id() == call.agent_invite.call_id());
        call.agent.reply(&bye, 200, None, &[], None).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("talking"));

    // The customer hangs up: the target (whose dialog came from the other call) gets BYE.
    customer_bye(&mut call, 3).await;
    let bye = target.expect_request(Method::Bye, T).await;
    assert_eq!(bye.call_id(), tinv.call_id());
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2002").as_deref(), Some("idle"));
}

fn agent_2003(port: u16) -> String {
    format!(
        "[[agents]]\nid = \"2003\"\npassword = \"pass2003\"\nskills = [\"support\"]\ncontact = \"sip:2003@127.0.0.1:{port}\"\n"
    )
}

/// `target` receives the late-offer INVITE of a transfer, answers 200 with its offer; the
/// customer is re-INVITEd with it and `target` gets the ACK with the customer's answer.
async fn target_answers(call: &mut Call, target: &mut UdpUa, version: u64) -> SipMessage {
    let inv = target.expect_request(Method::Invite, T).await;
    assert!(inv.body().is_empty(), "late offer");
    target
        .reply(
            &inv,
            200,
            Some(&tag()),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    customer_takes_reinvite(call, "sendrecv", "sendrecv", version).await;
    let ack = target.expect_request(Method::Ack, T).await;
    assert!(
        !ack.body().is_empty(),
        "the ACK carries the customer's answer"
    );
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_release_transfer_sends_the_customer_to_the_fallback() {
    let mut target = target_ua("2002").await;
    let mut fallback = target_ua("2003").await;
    let (cdr, cdr_path) = cdr_section();
    let extra = format!(
        "{}{}\n[transfer]\nfallback = \"agent:2003\"\n\n{cdr}",
        agent_2002(target.port()),
        agent_2003(fallback.port())
    );
    let mut call = establish_with(&extra).await;
    target.server = call.agent.server;
    fallback.server = call.agent.server;

    refer(
        &mut call,
        1,
        "<sip:*22002@test.local>",
        &["Refer-Sub: false"],
    )
    .await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    // The target is busy ...
    let inv = target.expect_request(Method::Invite, T).await;
    target.reply(&inv, 486, Some(&tag()), &[], None).await;
    target.expect_request(Method::Ack, T).await;
    // ... so the customer, still held (no second hold), goes to the fallback.
    let finv = target_answers(&mut call, &mut fallback, 3).await;
    assert!(
        finv.header(HeaderName::CallInfo).is_some(),
        "call data travels to the fallback"
    );
    call.cust.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    assert_eq!(call.server.agent_state("2003").as_deref(), Some("talking"));
    customer_bye(&mut call, 4).await;
    let bye = fallback.expect_request(Method::Bye, T).await;
    fallback.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    let rec = the_cdr(&cdr_path).await;
    assert_eq!(rec["transfers"][0]["target"], "agent:2002");
    assert_eq!(rec["transfers"][0]["outcome"], "failed:486");
    assert_eq!(rec["transfers"][1]["transfer_type"], "release");
    assert_eq!(rec["transfers"][1]["target"], "agent:2003");
    assert_eq!(rec["transfers"][1]["outcome"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_release_transfer_without_fallback_releases_the_customer_with_a_reason() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;
    refer(
        &mut call,
        1,
        "<sip:*22002@test.local>",
        &["Refer-Sub: false"],
    )
    .await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 2).await;
    let inv = target.expect_request(Method::Invite, T).await;
    target.reply(&inv, 486, Some(&tag()), &[], None).await;
    target.expect_request(Method::Ack, T).await;
    let bye = call.cust.expect_request(Method::Bye, T).await;
    let reason = must_header(&bye, HeaderName::Reason);
    assert!(reason.contains("cause=486"), "{reason}");
    call.cust.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

/// A hang-up transfer up to the agent `waiting` (IVR answered, the phone hung up). Returns
/// the IVR's INVITE and its To tag.
async fn hangup_to_ivr(call: &mut Call, ivr_ua: &mut UdpUa) -> (SipMessage, String) {
    refer(call, 1, "<sip:*47000@test.local>", &["Refer-Sub: false"]).await;
    customer_takes_reinvite(call, "sendonly", "recvonly", 2).await;
    let inv = ivr_ua.expect_request(Method::Invite, T).await;
    let itag = tag();
    ivr_ua
        .reply(
            &inv,
            200,
            Some(&itag),
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    customer_takes_reinvite(call, "sendrecv", "sendrecv", 3).await;
    ivr_ua.expect_request(Method::Ack, T).await;
    let text = call.agent_request("BYE", 2, &branch());
    call.agent.send_raw(&text).await;
    call.agent.expect_response(Method::Bye, 200, T).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("waiting"));
    (inv, itag)
}

/// The IVR ends its part with BYE carrying `X-Flow-Result: paid`.
async fn ivr_hangs_up(ivr_ua: &mut UdpUa, inv: &SipMessage, itag: &str) {
    let from = format!("From: {};tag={itag}", must_header(inv, HeaderName::To));
    let to = format!("To: {}", must_header(inv, HeaderName::From));
    let cid = format!("Call-ID: {}", inv.call_id());
    let start = format!(
        "BYE {} SIP/2.0",
        ua::harness::contact_uri(&must_header(inv, HeaderName::Contact))
    );
    let text = ua::wire(
        &[
            &start,
            "Via: SIP/2.0/UDP {ip}:{port};branch={b};rport",
            "Max-Forwards: 70",
            &from,
            &to,
            &cid,
            "CSeq: 1 BYE",
            "X-Flow-Result: paid",
            "Content-Length: 0",
        ],
        "",
    )
    .replace("{b}", &branch());
    ivr_ua.send_raw(&text).await;
    ivr_ua.expect_response(Method::Bye, 200, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_whose_agent_does_not_answer_the_return_call_goes_to_the_fallback() {
    let mut ivr_ua = target_ua("survey").await;
    let mut fallback = target_ua("2003").await;
    let extra = format!(
        "{}{}\n[transfer]\nfallback = \"agent:2003\"\n",
        ivr(ivr_ua.port()),
        agent_2003(fallback.port())
    );
    let mut call = establish_with(&extra).await;
    ivr_ua.server = call.agent.server;
    fallback.server = call.agent.server;
    let (inv, itag) = hangup_to_ivr(&mut call, &mut ivr_ua).await;
    ivr_hangs_up(&mut ivr_ua, &inv, &itag).await;
    // The agent is called back but declines ...
    let back = call.agent.expect_request(Method::Invite, T).await;
    call.agent.reply(&back, 480, Some(&tag()), &[], None).await;
    call.agent.expect_request(Method::Ack, T).await;
    // ... so the customer is held and goes to the fallback, with the flow's data.
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 4).await;
    let finv = target_answers(&mut call, &mut fallback, 5).await;
    assert_eq!(finv.header_named("X-Flow-Result").as_deref(), Some("paid"));
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    customer_bye(&mut call, 4).await;
    let bye = fallback.expect_request(Method::Bye, T).await;
    fallback.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_transfer_past_max_waiting_frees_the_agent_and_the_return_goes_to_the_fallback() {
    let mut ivr_ua = target_ua("survey").await;
    let mut fallback = target_ua("2003").await;
    let extra = format!(
        "{}max_waiting_s = 1\n{}\n[transfer]\nfallback = \"agent:2003\"\n",
        ivr(ivr_ua.port()),
        agent_2003(fallback.port())
    );
    let mut call = establish_with(&extra).await;
    ivr_ua.server = call.agent.server;
    fallback.server = call.agent.server;
    let (inv, itag) = hangup_to_ivr(&mut call, &mut ivr_ua).await;
    // `waiting` lasts at most max_waiting_s: then the agent is free for other calls.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    ivr_hangs_up(&mut ivr_ua, &inv, &itag).await;
    // Not called back: the customer goes to the fallback.
    customer_takes_reinvite(&mut call, "sendonly", "recvonly", 4).await;
    target_answers(&mut call, &mut fallback, 5).await;
    call.agent.expect_silence(Duration::from_millis(300)).await;
    customer_bye(&mut call, 4).await;
    let bye = fallback.expect_request(Method::Bye, T).await;
    fallback.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

/// An INVITE from agent 2001's phone with `Replaces` naming `replaces` (wire text, filled).
fn replacing_invite(call: &Call, cid: &str, ftag: &str, replaces: &str, sdp: &str) -> String {
    let lines = [
        "INVITE sip:2001@{server} SIP/2.0".to_owned(),
        format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
        "Max-Forwards: 70".to_owned(),
        format!("From: <sip:2001@test.local>;tag={ftag}"),
        "To: <sip:2001@test.local>".to_owned(),
        format!("Call-ID: {cid}"),
        "CSeq: 1 INVITE".to_owned(),
        "Contact: <sip:2001@{ip}:{port}>".to_owned(),
        format!("Replaces: {replaces}"),
        "Supported: replaces".to_owned(),
        "Content-Type: application/sdp".to_owned(),
        "Content-Length: {len}".to_owned(),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    call.agent.fill(&ua::wire(&refs, sdp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_with_replaces_from_the_agent_moves_its_dialog_to_the_new_one() {
    let (cdr, cdr_path) = cdr_section();
    let mut call = establish_with(&cdr).await;
    let ack = call.cust_request("ACK", 1, &branch(), &[], "");
    call.cust.send_raw(&ack).await;
    let old_cid = call.agent_invite.call_id().to_owned();
    let ours = call.agent_invite.from_tag().unwrap().to_owned();
    let replaces = format!("{old_cid};to-tag={};from-tag={ours}", call.agent_tag);

    // Only the agent whose dialog it is may replace it; an unknown dialog is 481.
    let unknown = replacing_invite(
        &call,
        &ua::call_id(),
        &tag(),
        "nope;to-tag=a;from-tag=b",
        &agent_sdp(1, "sendrecv"),
    );
    call.agent.send_raw(&unknown).await;
    call.agent.expect_status(481, T).await;

    // The agent's phone (a new dialog) replaces its dialog with handover.
    let cid = ua::call_id();
    let ftag = tag();
    let offer = ua::sdp(&[
        "v=0",
        "o=agent2 77 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 43000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=sendrecv",
    ]);
    call.agent
        .send_raw(&replacing_invite(&call, &cid, &ftag, &replaces, &offer))
        .await;
    call.agent.expect_status(100, T).await;
    // The customer stays in its dialog and gets the new phone's media ...
    let reinvite = customer_takes_reinvite(&mut call, "sendrecv", "sendrecv", 2).await;
    assert!(
        body_text(&reinvite).contains("m=audio 43000"),
        "{reinvite:?}"
    );
    // ... and the new dialog is answered with the customer's answer.
    let ok = call.agent.expect_response(Method::Invite, 200, T).await;
    assert_eq!(ok.call_id(), cid);
    assert!(
        body_text(&ok).contains("m=audio 40000"),
        "the customer's media"
    );
    let new_tag = ok.to_tag().unwrap().to_owned();
    let new_target = ua::harness::contact_uri(&must_header(&ok, HeaderName::Contact));
    let ack = ua::wire(
        &[
            &format!("ACK {new_target} SIP/2.0"),
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70",
            &format!("From: <sip:2001@test.local>;tag={ftag}"),
            &format!("To: <sip:2001@test.local>;tag={new_tag}"),
            &format!("Call-ID: {cid}"),
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ],
        "",
    );
    call.agent.send_raw(&ack).await;
    // The replaced dialog ends.
    let bye = call.agent.expect_request(Method::Bye, T).await;
    assert_eq!(bye.call_id(), old_cid);
    assert!(must_header(&bye, HeaderName::Reason).contains("Replaced"));
    call.agent.reply(&bye, 200, None, &[], None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));
    assert_eq!(call.server.stats().active_calls, 1);

    // The customer hangs up: the BYE reaches the new dialog.
    customer_bye(&mut call, 3).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    assert_eq!(bye.call_id(), cid);
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    let rec = the_cdr(&cdr_path).await;
    let roles: Vec<&str> = rec["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["customer", "agent", "agent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_with_replaces_from_anyone_but_the_agent_is_refused() {
    let mut call = establish_with("").await;
    let ack = call.cust_request("ACK", 1, &branch(), &[], "");
    call.cust.send_raw(&ack).await;
    let replaces = format!(
        "{};to-tag={};from-tag={}",
        call.agent_invite.call_id(),
        call.agent_tag,
        call.agent_invite.from_tag().unwrap()
    );
    // The customer's side (a trunk source) may not take the agent's dialog over.
    let text = replacing_invite(
        &call,
        &ua::call_id(),
        &tag(),
        &replaces,
        &agent_sdp(1, "sendrecv"),
    );
    call.cust.send_raw(&text).await;
    call.cust.expect_status(403, T).await;
    call.cust.expect_silence(Duration::from_millis(300)).await;
    call.agent.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("talking"));
    customer_bye(&mut call, 2).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_refer_on_the_consultation_dialog_joins_the_same_two_parties() {
    let mut target = target_ua("2002").await;
    let mut call = establish_with(&agent_2002(target.port())).await;
    target.server = call.agent.server;
    let ack = call.cust_request("ACK", 1, &branch(), &[], "");
    call.cust.send_raw(&ack).await;
    let (cid, atag, htag, tinv, _ttag) = agent_consults(&mut call, &mut target).await;

    // This time the REFER goes on the consultation dialog and names the customer's dialog.
    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        call.agent_invite.call_id(),
        call.agent_invite.from_tag().unwrap(),
        call.agent_tag
    );
    // handover's Contact is the same on both of the agent's calls; the To tag picks the call.
    let consult_target = call.agent_target.clone();
    let refer = ua::wire(
        &[
            &format!("REFER {consult_target} SIP/2.0"),
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70",
            &format!("From: <sip:2001@test.local>;tag={atag}"),
            &format!("To: <sip:2002@test.local>;tag={htag}"),
            &format!("Call-ID: {cid}"),
            "CSeq: 2 REFER",
            "Contact: <sip:2001@{ip}:{port}>",
            &format!("Refer-To: <sip:cust@test.local?Replaces={replaces}>"),
            "Content-Length: 0",
        ],
        "",
    );
    call.agent.send_raw(&refer).await;
    let accepted = call.agent.expect_response(Method::Refer, 202, T).await;
    assert_eq!(accepted.call_id(), cid);
    let n = call.agent.expect_request(Method::Notify, T).await;
    assert_eq!(n.call_id(), cid, "NOTIFYs in the REFER's dialog");
    call.agent.reply(&n, 200, None, &[], None).await;
    // The customer (moved over with its dialog) is asked for a fresh offer; the target gets it.
    let fetch = call.cust.expect_request(Method::Invite, T).await;
    assert_eq!(
        fetch.call_id(),
        call.ids.cid,
        "the customer keeps its dialog"
    );
    assert!(fetch.body().is_empty());
    call.cust
        .reply(
            &fetch,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(2, "sendrecv"))),
        )
        .await;
    let deliver = target.expect_request(Method::Invite, T).await;
    assert_eq!(
        deliver.call_id(),
        tinv.call_id(),
        "the target keeps its dialog"
    );
    assert!(
        body_text(&deliver).contains("m=audio 40000"),
        "the customer's media"
    );
    target
        .reply(
            &deliver,
            200,
            None,
            &[],
            Some(("application/sdp", &target_sdp())),
        )
        .await;
    let cack = call.cust.expect_request(Method::Ack, T).await;
    assert!(
        body_text(&cack).contains("m=audio 46000"),
        "the target's answer"
    );
    target.expect_request(Method::Ack, T).await;
    // The agent: NOTIFY 200 and BYE on both of its dialogs; then idle.
    let mut byes = 0;
    while byes < 2 {
        let m = call
            .agent
            .recv_any(T)
            .await
            .expect("NOTIFY 200 and two BYEs");
        match m.method() {
            Some(Method::Notify) => {
                assert!(body_text(&m).starts_with("SIP/2.0 200"));
                call.agent.reply(&m, 200, None, &[], None).await;
            }
            Some(Method::Bye) => {
                byes += 1;
                call.agent.reply(&m, 200, None, &[], None).await;
            }
            // A 100 Trying of the consultation INVITE left unread by `agent_consults`.
            None if m.status() == Some(100) => {}
            _ => panic!("unexpected {m:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    customer_bye(&mut call, 3).await;
    let bye = target.expect_request(Method::Bye, T).await;
    target.reply(&bye, 200, None, &[], None).await;
    assert_idle(&call.server).await;
}
