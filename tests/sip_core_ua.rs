//! SIP core behaviours checked with the in-process UA: registration expiry logs an agent
//! out, a direct call that nobody answers ends with 480 after the ring timeout (the agent's
//! INVITE is CANCELled), UPDATE is relayed inside a call, a second REFER while one runs is
//! 491, and the binary's command line (check-config, --version).

mod ua;

use std::time::Duration;

use handover::registrar::{compute_response, DigestCredentials};
use handover::sip::{HeaderName, Method};
use ua::call::establish_with;
use ua::harness::{assert_idle, customer_sdp, invite, start, Ids, T};
use ua::{branch, must_header, tag, UdpUa};

/// REGISTER as `user` with `expires`, answering the digest challenge.
async fn register(
    ua: &mut UdpUa,
    user: &str,
    password: &str,
    expires: u32,
) -> handover::sip::SipMessage {
    let cid = ua::call_id();
    let ftag = tag();
    let request = |cseq: u32, auth: Option<String>| {
        let mut lines = vec![
            format!("REGISTER sip:test.local SIP/2.0"),
            format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70".to_owned(),
            format!("From: <sip:{user}@test.local>;tag={ftag}"),
            format!("To: <sip:{user}@test.local>"),
            format!("Call-ID: {cid}"),
            format!("CSeq: {cseq} REGISTER"),
            format!("Contact: <sip:{user}@{{ip}}:{{port}}>;expires={expires}"),
        ];
        if let Some(a) = auth {
            lines.push(format!("Authorization: {a}"));
        }
        lines.push("Content-Length: 0".to_owned());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        ua::wire(&refs, "")
    };
    ua.send_raw(&request(1, None)).await;
    let challenge = ua.expect_status(401, T).await;
    let www = challenge
        .header_values(HeaderName::WwwAuthenticate)
        .map(|v| v.into_owned())
        .find(|v| v.contains("MD5"))
        .expect("an MD5 challenge");
    let param = |name: &str| {
        let i = www.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        www[i..].split('"').next().unwrap().to_owned()
    };
    let (nonce, opaque) = (param("nonce"), param("opaque"));
    let draft = format!(
        "Digest username=\"{user}\", realm=\"test.local\", nonce=\"{nonce}\", uri=\"sip:test.local\", response=\"0\", algorithm=MD5, cnonce=\"abc\", qop=auth, nc=00000001, opaque=\"{opaque}\""
    );
    let creds = DigestCredentials::parse(&draft).unwrap();
    let response = compute_response(&creds, "REGISTER", password);
    let auth = draft.replace("response=\"0\"", &format!("response=\"{response}\""));
    ua.send_raw(&request(2, Some(auth))).await;
    ua.expect_status(200, T).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_expiry_logs_the_agent_out() {
    let toml = ua::harness::config("127.0.0.1/32", None, "")
        .replace("[registrar]\n", "[registrar]\nmin_expires_s = 1\n");
    let (server, udp, _) = start(&toml).await;
    let mut phone = UdpUa::bind(udp, "1001").await;
    let ok = register(&mut phone, "1001", "pass1001", 1).await;
    assert!(must_header(&ok, HeaderName::Contact).contains("expires=1"));
    assert_eq!(server.agent_state("1001").as_deref(), Some("idle"));
    assert_eq!(server.stats().registrations, 1);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(server.agent_state("1001").as_deref(), Some("logged_out"));
    assert_eq!(server.stats().registrations, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_that_stops_answering_options_is_logged_out() {
    // T1 = 100 ms: a probe without answer times out after 64·T1 = 6.4 s.
    let toml = ua::harness::config("127.0.0.1/32", None, "keepalive_s = 1");
    let (server, udp, _) = start(&toml).await;
    let mut phone = UdpUa::bind(udp, "1001").await;
    register(&mut phone, "1001", "pass1001", 3600).await;
    assert_eq!(server.agent_state("1001").as_deref(), Some("idle"));
    // The keep-alive: an out-of-dialog OPTIONS to the registered contact, on its flow.
    let probe = phone
        .expect_request(Method::Options, Duration::from_secs(3))
        .await;
    assert_eq!(
        probe.request_uri_str(),
        Some(format!("sip:1001@{}", phone.local_addr()).as_str())
    );
    assert!(probe.to_tag().is_none(), "out of dialog");
    assert!(must_header(&probe, HeaderName::To).contains("sip:1001@test.local"));
    // Any answer keeps the phone registered, even a 405.
    phone.reply(&probe, 405, Some(&tag()), &[], None).await;
    let next = phone
        .expect_request(Method::Options, Duration::from_secs(3))
        .await;
    assert_ne!(
        next.call_id(),
        probe.call_id(),
        "each probe is its own request"
    );
    phone.reply(&next, 200, Some(&tag()), &[], None).await;
    assert_eq!(server.agent_state("1001").as_deref(), Some("idle"));
    // Then the phone vanishes: the next probe goes unanswered (retransmitted over UDP) and
    // the binding is removed — the agent is logged out, nothing is offered into nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while server.agent_state("1001").as_deref() != Some("logged_out") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent still {:?}",
            server.agent_state("1001")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.stats().registrations, 0);
    let unanswered = phone.clear_stash();
    assert!(
        unanswered
            .iter()
            .all(|m| m.method() == Some(&Method::Options)),
        "only probes reached the phone"
    );
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_forks_to_every_registered_phone_and_the_others_hear_completed_elsewhere() {
    let toml = ua::harness::config("127.0.0.1/32", None, "");
    let (server, udp, _) = start(&toml).await;
    let mut desk = UdpUa::bind(udp, "1001").await;
    let mut mobile = UdpUa::bind(udp, "1001").await;
    register(&mut desk, "1001", "pass1001", 3600).await;
    register(&mut mobile, "1001", "pass1001", 3600).await;
    assert_eq!(server.stats().registrations, 2);
    let mut cust = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    cust.send_raw(&invite("1001", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    let on_desk = desk.expect_request(Method::Invite, T).await;
    let on_mobile = mobile.expect_request(Method::Invite, T).await;
    assert_ne!(on_desk.call_id(), on_mobile.call_id(), "a leg per contact");
    // handover's Contact on a UDP leg: its own address, no transport parameter.
    assert_eq!(
        must_header(&on_desk, HeaderName::Contact),
        format!("<sip:handover@{udp}>")
    );
    let mtag = tag();
    mobile.reply(&on_mobile, 180, Some(&mtag), &[], None).await;
    let dtag = tag();
    desk.reply(
        &on_desk,
        200,
        Some(&dtag),
        &[],
        Some(("application/sdp", &ua::harness::agent_sdp(1, "sendrecv"))),
    )
    .await;
    desk.expect_request(Method::Ack, T).await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    assert_eq!(
        must_header(&ok, HeaderName::Contact),
        format!("<sip:handover@{udp}>")
    );
    // The other phone is CANCELled with RFC 3326's "answered elsewhere" (no missed call).
    let cancel = mobile.expect_request(Method::Cancel, T).await;
    let reason = must_header(&cancel, HeaderName::Reason);
    assert!(
        reason.contains("cause=200") && reason.contains("completed elsewhere"),
        "{reason}"
    );
    mobile.reply(&cancel, 200, None, &[], None).await;
    mobile.reply(&on_mobile, 487, Some(&mtag), &[], None).await;
    mobile.expect_request(Method::Ack, T).await;
    assert_eq!(server.agent_state("1001").as_deref(), Some("talking"));
    // The customer hangs up; only the phone that answered gets the BYE.
    let target = ua::harness::contact_uri(&must_header(&ok, HeaderName::Contact));
    let to = must_header(&ok, HeaderName::To);
    let bye = ids.fill(&ua::wire(
        &[
            &format!("BYE {target} SIP/2.0"),
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            &format!("To: {to}"),
            "Call-ID: {cid}",
            "CSeq: 2 BYE",
            "Content-Length: 0",
        ],
        "",
    ));
    cust.send_raw(&cust.fill(&bye)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = desk.expect_request(Method::Bye, T).await;
    desk.reply(&bye, 200, None, &[], None).await;
    mobile.expect_silence(Duration::from_millis(300)).await;
    assert_idle(&server).await;
    assert_eq!(server.agent_state("1001").as_deref(), Some("idle"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_over_tcp_gets_handovers_contact_with_transport_tcp() {
    let toml = ua::harness::config("127.0.0.1/32", None, "");
    let (server, udp, tcp) = start(&toml).await;
    let mut desk = UdpUa::bind(udp, "1001").await;
    register(&mut desk, "1001", "pass1001", 3600).await;
    let mut cust = ua::TcpUa::connect(tcp).await;
    let ids = Ids::new();
    let offer = invite("1001", &ids, &[], &customer_sdp(1, "sendrecv"))
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            "<sip:cust@{ip}:{port}>",
            "<sip:cust@{ip}:{port};transport=tcp>",
        );
    cust.send_raw(&offer).await.unwrap();
    let on_desk = desk.expect_request(Method::Invite, T).await;
    // The agent's leg is UDP: no transport parameter there.
    assert_eq!(
        must_header(&on_desk, HeaderName::Contact),
        format!("<sip:handover@{udp}>")
    );
    desk.reply(
        &on_desk,
        200,
        Some(&tag()),
        &[],
        Some(("application/sdp", &ua::harness::agent_sdp(1, "sendrecv"))),
    )
    .await;
    desk.expect_request(Method::Ack, T).await;
    let ok = cust.expect_status(200, T).await;
    // The customer's leg is TCP: its in-dialog requests must come back over TCP
    // (RFC 3261 §19.1.1 `transport` parameter).
    assert_eq!(
        must_header(&ok, HeaderName::Contact),
        format!("<sip:handover@{tcp};transport=tcp>")
    );
    let target = ua::harness::contact_uri(&must_header(&ok, HeaderName::Contact));
    let to = must_header(&ok, HeaderName::To);
    let in_dialog = |method: &str, cseq: u32| {
        ids.fill(&ua::wire(
            &[
                &format!("{method} {target} SIP/2.0"),
                &format!("Via: SIP/2.0/TCP {{ip}}:{{port}};branch={}", branch()),
                "Max-Forwards: 70",
                "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
                &format!("To: {to}"),
                "Call-ID: {cid}",
                &format!("CSeq: {cseq} {method}"),
                "Content-Length: 0",
            ],
            "",
        ))
    };
    cust.send_raw(&in_dialog("ACK", 1)).await.unwrap();
    cust.send_raw(&in_dialog("BYE", 2)).await.unwrap();
    cust.expect_status(200, T).await;
    let bye = desk.expect_request(Method::Bye, T).await;
    desk.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_direct_call_ends_with_480_after_the_ring_timeout() {
    let mut agent = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2001").await;
    let toml = ua::harness::config("127.0.0.1/32", Some(agent.port()), "ring_timeout_s = 1");
    let (server, udp, _) = start(&toml).await;
    agent.server = udp;
    let mut cust = UdpUa::bind(udp, "cust").await;
    cust.send_raw(&invite(
        "2001",
        &Ids::new(),
        &[],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    let inv = agent.expect_request(Method::Invite, T).await;
    let t = tag();
    agent.reply(&inv, 180, Some(&t), &[], None).await;
    cust.expect_status(180, T).await;
    let cancel = agent
        .expect_request(Method::Cancel, Duration::from_secs(3))
        .await;
    assert!(
        cancel
            .header(HeaderName::Reason)
            .is_none_or(|r| !r.contains("elsewhere")),
        "nobody answered elsewhere"
    );
    agent.reply(&cancel, 200, None, &[], None).await;
    agent.reply(&inv, 487, Some(&t), &[], None).await;
    agent.expect_request(Method::Ack, T).await;
    let r = cust.expect_status(480, T).await;
    assert_eq!(r.reason(), Some("No Answer"));
    assert_idle(&server).await;
    assert_eq!(server.agent_state("2001").as_deref(), Some("idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_is_relayed_with_sdp_and_a_second_refer_gets_491() {
    let target = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2002").await;
    let extra = format!(
        "[[agents]]\nid = \"2002\"\npassword = \"p\"\nskills = [\"sales\"]\ncontact = \"sip:2002@127.0.0.1:{}\"\n",
        target.port()
    );
    let mut call = establish_with(&extra).await;
    // UPDATE from the customer with a new offer: relayed with handover's o= on the agent leg.
    let offer = customer_sdp(2, "sendrecv");
    let text = call.cust_request(
        "UPDATE",
        2,
        &branch(),
        &["Content-Type: application/sdp"],
        &offer,
    );
    call.cust.send_raw(&text).await;
    let upd = call.agent.expect_request(Method::Update, T).await;
    let body = ua::body_text(&upd);
    assert_eq!(ua::sdp_line(&body, "m="), ua::sdp_line(&offer, "m="));
    assert_ne!(ua::sdp_line(&body, "o="), ua::sdp_line(&offer, "o="));
    call.agent
        .reply(
            &upd,
            200,
            None,
            &[],
            Some(("application/sdp", &ua::harness::agent_sdp(2, "sendrecv"))),
        )
        .await;
    let ok = call.cust.expect_response(Method::Update, 200, T).await;
    assert!(ua::body_text(&ok).contains("m=audio 42000"));

    // A REFER while another runs is 491 (RFC 3515 allows one at a time here).
    let r1 = call.agent_request_with(
        "REFER",
        1,
        &branch(),
        &["Refer-To: <sip:2002@test.local;transfer=success>"],
        "",
    );
    call.agent.send_raw(&r1).await;
    call.agent.expect_response(Method::Refer, 202, T).await;
    let r2 = call.agent_request_with(
        "REFER",
        2,
        &branch(),
        &["Refer-To: <sip:2002@test.local;transfer=success>"],
        "",
    );
    call.agent.send_raw(&r2).await;
    call.agent.expect_response(Method::Refer, 491, T).await;
    drop(target);
}

#[test]
fn check_config_and_version_from_the_binary() {
    let bin = env!("CARGO_BIN_EXE_handover");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    let dir = std::env::temp_dir().join(format!("handover-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"x.local\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"x.local\"\n\n[[agents]]\nid = \"1\"\npasword = \"x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":7:") && err.contains("pasword"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_that_stops_answering_keepalives_ends_the_call_cleanly() {
    let mut call = ua::call::establish_full("keepalive_s = 1", "").await;
    // The agent answers the first keep-alive ...
    let opt = call
        .agent
        .expect_request(Method::Options, Duration::from_secs(3))
        .await;
    assert_eq!(
        opt.call_id(),
        call.agent_invite.call_id(),
        "in-dialog OPTIONS"
    );
    call.agent.reply(&opt, 200, None, &[], None).await;
    // ... the customer too ...
    let copt = call
        .cust
        .expect_request(Method::Options, Duration::from_secs(3))
        .await;
    call.cust.reply(&copt, 200, None, &[], None).await;
    // ... then the agent's phone vanishes: the next OPTIONS times out (64·T1) and the
    // customer is released with a Reason; the agent is not left talking.
    // (The customer keeps answering its keep-alives while it waits.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let bye = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no BYE for the customer"
        );
        let Some(m) = call.cust.recv_any(Duration::from_secs(1)).await else {
            continue;
        };
        match m.method() {
            Some(Method::Options) => call.cust.reply(&m, 200, None, &[], None).await,
            Some(Method::Bye) => break m,
            _ => {}
        }
    };
    assert!(
        bye.header(HeaderName::Reason).is_some(),
        "BYE with a Reason"
    );
    call.cust.reply(&bye, 200, None, &[], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
    assert_eq!(call.server.stats().active_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_gets_503_at_the_transaction_limit() {
    let toml = format!(
        "{}\n[limits]\nmax_transactions = 1\n",
        ua::harness::config("127.0.0.1/32", None, "")
    );
    let (server, udp, _) = start(&toml).await;
    let mut ua = UdpUa::bind(udp, "probe").await;
    // The first OPTIONS is answered; its transaction lingers (Timer J) and fills the limit.
    ua.send_raw(&ua::harness::out_of_dialog(
        "OPTIONS",
        &Ids::new(),
        None,
        &[],
        "",
    ))
    .await;
    ua.expect_status(200, T).await;
    assert_eq!(server.stats().transactions, 1);
    // New work is refused with Retry-After while it is full: OPTIONS, REGISTER, INVITE.
    for method in ["OPTIONS", "REGISTER"] {
        ua.send_raw(&ua::harness::out_of_dialog(
            method,
            &Ids::new(),
            None,
            &[],
            "",
        ))
        .await;
        let r = ua.expect_status(503, T).await;
        assert_eq!(r.header_named("Retry-After").as_deref(), Some("5"));
    }
    ua.send_raw(&invite(
        "1001",
        &Ids::new(),
        &[],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    ua.expect_status(503, T).await;
    assert_eq!(server.stats().active_calls, 0);
    // Once the transaction is gone (64·T1), work is accepted again.
    assert_idle(&server).await;
    ua.send_raw(&ua::harness::out_of_dialog(
        "OPTIONS",
        &Ids::new(),
        None,
        &[],
        "",
    ))
    .await;
    ua.expect_status(200, T).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_cut_off_slow_senders_and_refuse_deep_via_stacks() {
    let toml = format!(
        "{}\n[limits]\nslow_sender_timeout_s = 1\nmax_via = 3\n",
        ua::harness::config("127.0.0.1/32", None, "")
    );
    let (server, udp, tcp) = start(&toml).await;
    // Half a message, then silence: the connection is closed after the timeout.
    let mut slow = ua::TcpUa::connect(tcp).await;
    slow.send_raw("OPTIONS sip:x@test.local SIP/2.0\r\nVia: SIP/2.0/TCP ")
        .await
        .unwrap();
    slow.expect_closed(Duration::from_secs(4)).await;

    // Four Via headers with max_via = 3: 400.
    let mut ua = UdpUa::bind(udp, "probe").await;
    let text = ua::wire(
        &[
            "OPTIONS sip:x@{server} SIP/2.0",
            &format!("Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport", branch()),
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa",
            "Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKb",
            "Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKc",
            "Max-Forwards: 70",
            &format!("From: <sip:probe@test.local>;tag={}", tag()),
            "To: <sip:x@test.local>",
            &format!("Call-ID: {}", ua::call_id()),
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ],
        "",
    );
    ua.send_raw(&text).await;
    ua.expect_status(400, T).await;
    server.shutdown().await;
}
