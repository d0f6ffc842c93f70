//! Flood and brute-force protection (robustness issue, items 4 and 8): legitimate calls
//! complete while another address floods INVITEs and REGISTERs; password guessing is slowed
//! by an escalating back-off that answers existing and unknown users alike.

mod ua;

use std::time::Duration;

use handover::sip::{HeaderName, Method, SipMessage};
use tokio::net::UdpSocket;
use ua::call::{establish_with, Call};
use ua::harness::{assert_idle, T};
use ua::{branch, tag};

const LIMITS: &str = "[limits]\nrequests_per_source = 50\nauth_failures_before_backoff = 3\nmax_auth_backoff_s = 4\n";

fn register(user: &str, from: &str, auth: Option<&str>) -> String {
    let mut lines = vec![
        "REGISTER sip:test.local SIP/2.0".to_owned(),
        format!("Via: SIP/2.0/UDP {from};branch={};rport", branch()),
        "Max-Forwards: 70".to_owned(),
        format!("From: <sip:{user}@test.local>;tag={}", tag()),
        format!("To: <sip:{user}@test.local>"),
        format!("Call-ID: {}", ua::call_id()),
        "CSeq: 1 REGISTER".to_owned(),
        format!("Contact: <sip:{user}@{from}>"),
    ];
    if let Some(a) = auth {
        lines.push(format!("Authorization: {a}"));
    }
    lines.push("Content-Length: 0".to_owned());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    ua::wire(&refs, "")
}

fn invite(from: &str) -> String {
    ua::wire(
        &[
            "INVITE sip:2001@test.local SIP/2.0",
            &format!("Via: SIP/2.0/UDP {from};branch={};rport", branch()),
            "Max-Forwards: 70",
            &format!("From: <sip:flood@{from}>;tag={}", tag()),
            "To: <sip:2001@test.local>",
            &format!("Call-ID: {}", ua::call_id()),
            "CSeq: 1 INVITE",
            &format!("Contact: <sip:flood@{from}>"),
            "Content-Length: 0",
        ],
        "",
    )
}

/// A status line's code.
fn status_of(buf: &[u8]) -> Option<u16> {
    SipMessage::parse(bytes::Bytes::copy_from_slice(buf))
        .ok()?
        .status()
}

async fn one_call(call: &mut Call, n: u32) {
    // A BYE from the customer on an established call, answered and relayed.
    let bye = call.cust_request("BYE", 2 + n, &branch(), &[], "");
    call.cust.send_raw(&bye).await;
    call.cust.expect_response(Method::Bye, 200, T).await;
    let b = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&b, 200, None, &[], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_calls_complete_while_another_address_floods() {
    let mut call = establish_with(LIMITS).await;
    let server = call.agent.server;

    // The flooder: a non-trunk address sending INVITEs and REGISTERs as fast as it can for a
    // bounded time (and a bounded count).
    let flooder = UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("127.0.0.2 on loopback");
    let from = flooder.local_addr().unwrap().to_string();
    let flood = tokio::spawn(async move {
        let mut sent = 0u32;
        let mut answers = std::collections::HashMap::<u16, u32>::new();
        let mut buf = vec![0u8; 65_536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline && sent < 30_000 {
            let msg = if sent % 2 == 0 {
                invite(&from)
            } else {
                register("1001", &from, None)
            };
            let _ = flooder.send_to(msg.as_bytes(), server).await;
            sent += 1;
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_micros(1), flooder.recv_from(&mut buf)).await
            {
                if let Some(code) = status_of(&buf[..n]) {
                    *answers.entry(code).or_default() += 1;
                }
            }
            if sent % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        (sent, answers)
    });

    // Meanwhile the customer's established call goes on and ends normally, and new calls
    // from the trunk are set up and answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    one_call(&mut call, 1).await;
    for _ in 0..3 {
        // A new customer call during the flood: INVITE → agent → 200 → ACK → BYE.
        let ids = ua::harness::Ids::new();
        let offer = ua::harness::customer_sdp(1, "sendrecv");
        call.cust
            .send_raw(&ua::harness::invite("2001", &ids, &[], &offer))
            .await;
        let inv = call.agent.expect_request(Method::Invite, T).await;
        let atag = tag();
        call.agent
            .reply(
                &inv,
                200,
                Some(&atag),
                &[],
                Some(("application/sdp", &ua::harness::agent_sdp(1, "sendrecv"))),
            )
            .await;
        let ok = call.cust.expect_response(Method::Invite, 200, T).await;
        let target = ua::harness::contact_uri(&ua::must_header(&ok, HeaderName::Contact));
        let to = format!("To: {}", ua::must_header(&ok, HeaderName::To));
        for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
            let text = ids.fill(&ua::wire(
                &[
                    &format!("{method} {target} SIP/2.0"),
                    &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
                    "Max-Forwards: 70",
                    "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
                    &to,
                    "Call-ID: {cid}",
                    &format!("CSeq: {cseq} {method}"),
                    "Content-Length: 0",
                ],
                "",
            ));
            call.cust.send_raw(&text).await;
        }
        call.agent.expect_request(Method::Ack, T).await;
        call.cust.expect_response(Method::Bye, 200, T).await;
        let b = call.agent.expect_request(Method::Bye, T).await;
        call.agent.reply(&b, 200, None, &[], None).await;
    }
    assert_idle(&call.server).await;

    let (sent, answers) = flood.await.unwrap();
    let limited = answers.get(&503).copied().unwrap_or(0);
    assert!(sent > 200, "the flood ran: {sent}");
    assert!(
        limited > 0,
        "the flood was rate limited (503): {answers:?} of {sent}"
    );
    let allowed: u32 = answers
        .iter()
        .filter(|(c, _)| **c != 503)
        .map(|(_, n)| *n)
        .sum();
    assert!(
        allowed <= 50 * 4 + 50,
        "no more than the rate got through: {answers:?}"
    );
    call.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_backs_off_for_known_and_unknown_users_alike() {
    let call = establish_with(LIMITS).await;
    let server = call.agent.server;
    for (user, addr) in [("1001", "127.0.0.3:0"), ("nobody", "127.0.0.4:0")] {
        let sock = UdpSocket::bind(addr).await.expect("127.0.0.x on loopback");
        let from = sock.local_addr().unwrap().to_string();
        let mut buf = vec![0u8; 65_536];
        let mut codes = Vec::new();
        for _ in 0..5 {
            let auth = format!(
                "Digest username=\"{user}\", realm=\"test.local\", nonce=\"x\", uri=\"sip:test.local\", response=\"00000000000000000000000000000000\", algorithm=MD5"
            );
            sock.send_to(register(user, &from, Some(&auth)).as_bytes(), server)
                .await
                .unwrap();
            let (n, _) = tokio::time::timeout(T, sock.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let msg = SipMessage::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap();
            codes.push(msg.status().unwrap());
            if msg.status() == Some(403) {
                assert!(msg.header(HeaderName::Warning).is_some());
            }
        }
        assert_eq!(
            codes,
            [401, 401, 401, 403, 403],
            "user {user}: three failures, then blocked"
        );
        drop(sock);
    }
    call.server.shutdown().await;
}
