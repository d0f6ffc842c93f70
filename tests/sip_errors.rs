//! Error handling and a full relayed call, driven over real loopback sockets by the in-process
//! test UA (`tests/ua`). Each test asserts the exact status code a request gets (RFC 3261
//! §8.2, §12.2.2, §14.2, §18.3, §21) and that the server is idle afterwards (DESIGN.md §5:
//! no call and no transaction left, nothing else disturbed).

mod ua;

use std::time::Duration;

use handover::sip::{HeaderName, Method};

use ua::call::establish;
use ua::harness::{
    agent_sdp, assert_idle, assert_no_call, config, customer_sdp, invite, out_of_dialog,
    request_final, start, Ids, T,
};
use ua::{
    body_text, branch, must_header, o_session, o_version, raw_status, sdp_line, tag, text as show,
    wire, TcpUa, UdpUa,
};

// ---------------------------------------------------------------------------------- garbage

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_garbage_and_truncated_invite_get_no_answer_and_change_nothing() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let before = server.stats().parse_errors;

    let mut rng = fastrand::Rng::with_seed(7);
    let garbage: Vec<u8> = (0..300).map(|_| rng.u8(..)).collect();
    ua.send_bytes(&garbage).await;
    ua.send_bytes(b"\x00\x01\x02SIP/2.0\r\n\r\n").await;
    // Cut inside the From header: neither Call-ID nor CSeq is there to answer with.
    let ids = Ids::new();
    let full = ua.fill(&invite("2001", &ids, &[], &customer_sdp(1, "sendrecv")));
    let cut = full.find("From:").unwrap() + 12;
    ua.send_bytes(&full.as_bytes()[..cut]).await;
    ua.expect_silence(Duration::from_millis(700)).await;

    let after = server.stats().parse_errors;
    assert!(
        after >= before + 3,
        "parse_errors {before} -> {after}, expected +3"
    );
    assert_no_call(&server);

    // Still serving: an OPTIONS is answered.
    let ids = Ids::new();
    let options = ids.fill(&wire(
        &[
            "OPTIONS sip:test.local SIP/2.0",
            "Via: SIP/2.0/UDP {ip}:{port};branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:probe@{ip}>;tag={ftag}",
            "To: <sip:test.local>",
            "Call-ID: {cid}",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ],
        "",
    ));
    let ok = request_final(&mut ua, &options, 200).await;
    assert!(must_header(&ok, HeaderName::Allow).contains("INVITE"));
    assert_idle(&server).await;
    server.shutdown().await;
}

/// RFC 3261 §18.3: a UDP request whose body is shorter than Content-Length is malformed and
/// SHOULD be answered 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_invite_with_body_shorter_than_content_length_gets_400() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let full = invite("2001", &ids, &[], &customer_sdp(1, "sendrecv"));
    let cut = full.len() - 40;
    ua.send_raw(&full[..cut]).await;
    let raw = ua.recv(T).await.expect("no answer to a truncated body");
    let (code, reason) = raw_status(&raw).unwrap();
    assert_eq!(code, 400, "{raw}");
    assert!(reason.contains("Content-Length"), "{raw}");
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

// ------------------------------------------------------------------------- malformed requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_without_call_id_gets_400_naming_it() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let text = invite("5999", &ids, &[], "").replace(&format!("Call-ID: {}\r\n", ids.cid), "");
    assert!(!text.contains("Call-ID"));
    ua.send_raw(&text).await;
    let raw = ua
        .recv(T)
        .await
        .expect("INVITE without Call-ID: no response (expected 400 Missing Call-ID)");
    let (code, reason) = raw_status(&raw).unwrap();
    assert_eq!(code, 400, "{raw}");
    assert!(
        reason.contains("Call-ID"),
        "reason must name Call-ID: {raw}"
    );
    assert_no_call(&server);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_with_broken_cseq_gets_400() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    for bad in ["CSeq: abc INVITE", "CSeq: 1", "CSeq: 99999999999 INVITE"] {
        let text = invite("5999", &Ids::new(), &[], "").replace("CSeq: 1 INVITE", bad);
        ua.send_raw(&text).await;
        let raw = ua
            .recv(T)
            .await
            .unwrap_or_else(|| panic!("no answer to {bad}"));
        let (code, reason) = raw_status(&raw).unwrap();
        assert_eq!(code, 400, "{bad}: {raw}");
        assert!(
            reason.contains("CSeq"),
            "{bad}: reason must name CSeq: {raw}"
        );
    }
    // CSeq method differing from the request method (RFC 3261 §8.1.1.5).
    let text = invite("5999", &Ids::new(), &[], "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    ua.send_raw(&text).await;
    let raw = ua.recv(T).await.expect("no answer to CSeq method mismatch");
    assert_eq!(raw_status(&raw).unwrap().0, 400, "{raw}");
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_with_bad_request_uri_gets_400_or_416() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    for (uri, want) in [
        ("sip:5999@[::1", 400u16),
        ("sip:", 400),
        ("sip:5999@127.0.0.1:99999", 400),
        ("http://example.com/5999", 416),
    ] {
        let text = invite("5999", &Ids::new(), &[], "").replacen(
            "INVITE sip:5999@{server} SIP/2.0",
            &format!("INVITE {uri} SIP/2.0"),
            1,
        );
        ua.send_raw(&text).await;
        let raw = ua
            .recv(T)
            .await
            .unwrap_or_else(|| panic!("no answer to {uri}"));
        let (code, reason) = raw_status(&raw).unwrap();
        assert_eq!(code, want, "Request-URI {uri}: {raw}");
        if want == 400 {
            assert!(
                reason.contains("URI"),
                "{uri}: reason must name the URI: {raw}"
            );
        }
    }
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

// ----------------------------------------------------------------- RFC 3261 §8.2 / §16.3 checks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_with_max_forwards_zero_gets_483() {
    let (server, udp, _) = start(&config("127.0.0.1/32", Some(9), "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let text = invite("2001", &Ids::new(), &[], &customer_sdp(1, "sendrecv"))
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let r = request_final(&mut ua, &text, 483).await;
    assert_eq!(r.reason(), Some("Too Many Hops"));
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_requiring_unknown_extension_gets_420_with_unsupported() {
    let (server, udp, _) = start(&config("127.0.0.1/32", Some(9), "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let text = invite(
        "2001",
        &Ids::new(),
        &["Require: foo"],
        &customer_sdp(1, "sendrecv"),
    );
    let r = request_final(&mut ua, &text, 420).await;
    assert_eq!(must_header(&r, HeaderName::Unsupported).trim(), "foo");
    // A supported tag next to an unknown one: only the unknown one is listed.
    let text = invite(
        "2001",
        &Ids::new(),
        &["Require: replaces, 100rel"],
        &customer_sdp(1, "sendrecv"),
    );
    let r = request_final(&mut ua, &text, 420).await;
    assert_eq!(must_header(&r, HeaderName::Unsupported).trim(), "100rel");
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_gets_501_with_allow_and_options_gets_200_with_allow() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let r = request_final(
        &mut ua,
        &out_of_dialog("FOO", &Ids::new(), None, &[], ""),
        501,
    )
    .await;
    assert_eq!(r.cseq().method.as_str(), "FOO");
    let allow = must_header(&r, HeaderName::Allow);
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"] {
        assert!(allow.contains(m), "Allow lacks {m}: {allow}");
    }
    assert!(!allow.contains("FOO"));

    let r = request_final(
        &mut ua,
        &out_of_dialog("OPTIONS", &Ids::new(), None, &[], ""),
        200,
    )
    .await;
    let allow = must_header(&r, HeaderName::Allow);
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"] {
        assert!(allow.contains(m), "Allow lacks {m}: {allow}");
    }
    assert!(r.to_tag().is_some(), "a 200 must carry a To tag");
    // The OPTIONS retransmitted (same branch): the same 200 again, from its transaction.
    let ids = Ids::new();
    let options = out_of_dialog("OPTIONS", &ids, None, &[], "");
    let first = request_final(&mut ua, &options, 200).await;
    ua.send_raw(&options).await;
    let again = ua
        .recv_any(T)
        .await
        .expect("retransmitted OPTIONS not answered");
    assert_eq!(again.status(), Some(200), "{}", show(&again));
    assert_eq!(
        again.to_tag(),
        first.to_tag(),
        "retransmission answered anew"
    );
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_unknown_dialogs_get_481() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    // BYE without any To tag: no dialog can match.
    let r = request_final(
        &mut ua,
        &out_of_dialog("BYE", &Ids::new(), None, &[], ""),
        481,
    )
    .await;
    assert_eq!(r.cseq().method, Method::Bye);
    // In-dialog requests whose To tag looks like one of handover's (call key 1), and one
    // that does not: the dialog does not exist.
    for (method, to_tag) in [
        ("BYE", "1x2"),
        ("INFO", "1x2"),
        ("INVITE", "1x2"),
        ("UPDATE", "abc"),
        ("BYE", "ffffffffffffffffx1"),
    ] {
        let ids = Ids::new();
        let r = request_final(
            &mut ua,
            &out_of_dialog(method, &ids, Some(to_tag), &[], ""),
            481,
        )
        .await;
        assert_eq!(r.cseq().method.as_str(), method);
        assert_eq!(r.to_tag(), Some(to_tag), "481 must keep the To tag");
        if method == "INVITE" {
            // The ACK for the 481 matches nothing and must be absorbed silently.
            let ack = ids.fill(&wire(
                &[
                    "ACK sip:x@{server} SIP/2.0",
                    "Via: SIP/2.0/UDP {ip}:{port};branch={branch}",
                    "Max-Forwards: 70",
                    "From: <sip:probe@{ip}>;tag={ftag}",
                    &format!("To: <sip:x@test.local>;tag={to_tag}"),
                    "Call-ID: {cid}",
                    "CSeq: 7 ACK",
                    "Content-Length: 0",
                ],
                "",
            ));
            ua.send_raw(&ack).await;
        }
    }
    // CANCEL for an INVITE that does not exist (RFC 3261 §9.2).
    let r = request_final(
        &mut ua,
        &out_of_dialog("CANCEL", &Ids::new(), None, &[], ""),
        481,
    )
    .await;
    assert_eq!(r.cseq().method, Method::Cancel);
    ua.expect_silence(Duration::from_millis(300)).await;
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

/// RFC 3261 §8.2.7: a stateless UAS must generate To tags "in a manner that will generate
/// the same tag for the same request consistently", so a retransmitted INVITE that was
/// refused statelessly gets an identical answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_rejection_answers_a_retransmission_identically() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let text = invite("5999", &ids, &[], &customer_sdp(1, "sendrecv"));
    let first = request_final(&mut ua, &text, 404).await;
    ua.send_raw(&text).await;
    let again = ua
        .recv_any(T)
        .await
        .expect("retransmitted INVITE not answered");
    assert_eq!(again.status(), Some(404), "{}", show(&again));
    assert_eq!(
        again.to_tag(),
        first.to_tag(),
        "stateless To tag must be the same for the same request"
    );
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

// ------------------------------------------------------------------------------ routing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_to_unknown_number_gets_404_and_to_unregistered_agent_480() {
    let (server, udp, _) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let r = request_final(
        &mut ua,
        &invite("5999", &Ids::new(), &[], &customer_sdp(1, "sendrecv")),
        404,
    )
    .await;
    let warning = must_header(&r, HeaderName::Warning);
    assert!(warning.starts_with("399 "), "{warning}");
    assert!(
        warning.contains("5999"),
        "Warning must name the number: {warning}"
    );
    assert_no_call(&server);

    let r = request_final(
        &mut ua,
        &invite("1001", &Ids::new(), &[], &customer_sdp(1, "sendrecv")),
        480,
    )
    .await;
    let warning = must_header(&r, HeaderName::Warning);
    assert!(
        warning.contains("1001"),
        "Warning must name the agent: {warning}"
    );
    assert_eq!(server.agent_state("1001").as_deref(), Some("logged_out"));
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_from_neither_trunk_nor_agent_gets_403_and_agent_identity_gets_407() {
    let (server, udp, _) = start(&config("10.9.9.0/24", None, "")).await;
    let mut ua = UdpUa::bind(udp, "cust").await;
    let r = request_final(
        &mut ua,
        &invite("1001", &Ids::new(), &[], &customer_sdp(1, "sendrecv")),
        403,
    )
    .await;
    assert!(must_header(&r, HeaderName::Warning).contains("trunk"));
    assert_no_call(&server);

    let text = invite("5999", &Ids::new(), &[], &customer_sdp(1, "sendrecv")).replace(
        "From: \"Customer\" <sip:+3215551234@{ip}:{port}>",
        "From: <sip:1001@test.local>",
    );
    assert!(text.contains("From: <sip:1001@test.local>"));
    let r = request_final(&mut ua, &text, 407).await;
    let challenge = must_header(&r, HeaderName::ProxyAuthenticate);
    assert!(challenge.starts_with("Digest "), "{challenge}");
    assert!(challenge.contains("realm=\"test.local\""), "{challenge}");
    assert!(challenge.contains("nonce=\""), "{challenge}");
    assert!(challenge.contains("algorithm=MD5"), "{challenge}");
    assert!(r.header(HeaderName::WwwAuthenticate).is_none());
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_with_unparseable_sdp_gets_488_with_warning_and_agent_sees_nothing() {
    let mut agent = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2001").await;
    let (server, udp, _) = start(&config("127.0.0.1/32", Some(agent.port()), "")).await;
    agent.server = udp;
    let mut cust = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let text = invite("2001", &ids, &[], "this is not sdp");
    assert!(text.contains("Content-Type: application/sdp"));
    cust.send_raw(&text).await;
    let r = cust.expect_status(488, T).await;
    let warning = must_header(&r, HeaderName::Warning);
    assert!(
        warning.starts_with("3"),
        "SDP Warning codes are 3xx: {warning}"
    );
    let to_tag = r.to_tag().expect("488 without To tag").to_owned();
    // ACK for the non-2xx final response: same branch (RFC 3261 §17.1.1.3).
    cust.send_raw(&ids.fill(&wire(
        &[
            "ACK sip:2001@{server} SIP/2.0",
            "Via: SIP/2.0/UDP {ip}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            &format!("To: <sip:2001@{{server}}>;tag={to_tag}"),
            "Call-ID: {cid}",
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ],
        "",
    )))
    .await;
    agent.expect_silence(Duration::from_secs(1)).await;
    // The 488 is not retransmitted once ACKed.
    cust.clear_stash();
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_call_hold_glare_info_and_agent_hangup() {
    let mut c = establish().await;
    assert_eq!(c.server.stats().active_calls, 1);
    assert_eq!(c.server.agent_state("2001").as_deref(), Some("talking"));
    let agent_v0 = o_version(&body_text(&c.agent_invite));
    let agent_session = o_session(&body_text(&c.agent_invite));
    let cust_v0 = o_version(&body_text(&c.cust_answer));
    let cust_session = o_session(&body_text(&c.cust_answer));

    // Hold: re-INVITE with a=sendonly.
    let hold = customer_sdp(2, "sendonly");
    let b2 = branch();
    let text = c.cust_reinvite(2, &b2, &hold);
    c.cust.send_raw(&text).await;
    let re = c.agent.expect_request(Method::Invite, T).await;
    assert_eq!(re.call_id(), c.agent_invite.call_id());
    assert_eq!(
        re.to_tag(),
        Some(c.agent_tag.as_str()),
        "re-INVITE is in the agent dialog"
    );
    assert!(re.cseq().seq > c.agent_invite.cseq().seq);
    assert_eq!(
        re.request_uri_str(),
        Some(format!("sip:2001@{}", c.agent.local_addr()).as_str())
    );
    let got = body_text(&re);
    assert!(got.contains("a=sendonly"), "{got}");
    assert_eq!(
        o_session(&got),
        agent_session,
        "same o= session on the agent leg"
    );
    assert_eq!(o_version(&got), agent_v0 + 1, "o= version +1 (RFC 3264 §8)");
    assert_eq!(sdp_line(&got, "m="), sdp_line(&hold, "m="));

    c.agent
        .reply(
            &re,
            200,
            None,
            &[],
            Some(("application/sdp", &agent_sdp(2, "recvonly"))),
        )
        .await;
    let ok = c.cust.expect_response(Method::Invite, 200, T).await;
    assert_eq!(ok.cseq().seq, 2);
    let got = body_text(&ok);
    assert!(got.contains("a=recvonly"), "{got}");
    assert_eq!(o_session(&got), cust_session);
    assert_eq!(
        o_version(&got),
        cust_v0 + 1,
        "o= version +1 towards the customer"
    );
    c.cust
        .send_raw(&c.cust_request("ACK", 2, &branch(), &[], ""))
        .await;
    let a = c.agent.expect_request(Method::Ack, T).await;
    assert_eq!(a.cseq().seq, re.cseq().seq);

    // Resume, and a second re-INVITE while the resume is still pending at the agent: 491.
    let resume = customer_sdp(3, "sendrecv");
    c.cust
        .send_raw(&c.cust_reinvite(3, &branch(), &resume))
        .await;
    let re3 = c.agent.expect_request(Method::Invite, T).await;
    assert!(body_text(&re3).contains("a=sendrecv"));
    assert_eq!(o_version(&body_text(&re3)), agent_v0 + 2);
    let b4 = branch();
    c.cust
        .send_raw(&c.cust_reinvite(4, &b4, &customer_sdp(4, "inactive")))
        .await;
    let pending = c.cust.expect_response(Method::Invite, 491, T).await;
    assert_eq!(pending.cseq().seq, 4);
    // ACK for the 491: same branch as its INVITE.
    c.cust
        .send_raw(&c.cust_request("ACK", 4, &b4, &[], ""))
        .await;
    c.agent
        .reply(
            &re3,
            200,
            None,
            &[],
            Some(("application/sdp", &agent_sdp(3, "sendrecv"))),
        )
        .await;
    let ok3 = c.cust.expect_response(Method::Invite, 200, T).await;
    assert_eq!(ok3.cseq().seq, 3);
    assert_eq!(o_version(&body_text(&ok3)), cust_v0 + 2);
    c.cust
        .send_raw(&c.cust_request("ACK", 3, &branch(), &[], ""))
        .await;
    c.agent.expect_request(Method::Ack, T).await;
    // The agent never saw the refused re-INVITE.
    let extra: Vec<String> = c
        .agent
        .clear_stash()
        .iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .map(show)
        .collect();
    assert!(
        extra.is_empty(),
        "491'd re-INVITE leaked to the agent: {extra:?}"
    );

    // INFO (DTMF) relayed with its body.
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    c.cust
        .send_raw(&c.cust_request(
            "INFO",
            5,
            &branch(),
            &["Content-Type: application/dtmf-relay"],
            dtmf,
        ))
        .await;
    let info = c.agent.expect_request(Method::Info, T).await;
    assert_eq!(info.call_id(), c.agent_invite.call_id());
    assert_eq!(
        must_header(&info, HeaderName::ContentType),
        "application/dtmf-relay"
    );
    assert_eq!(body_text(&info), dtmf);
    c.agent.reply(&info, 200, None, &[], None).await;
    let ok = c.cust.expect_response(Method::Info, 200, T).await;
    assert_eq!(ok.cseq().seq, 5);

    // The agent hangs up.
    let bye_branch = branch();
    let bye = c.agent_request("BYE", 10, &bye_branch);
    c.agent.send_raw(&bye).await;
    let ok = c.agent.expect_response(Method::Bye, 200, T).await;
    assert_eq!(ok.cseq().seq, 10);
    let cbye = c.cust.expect_request(Method::Bye, T).await;
    assert_eq!(cbye.call_id(), c.ids.cid);
    assert_eq!(cbye.from_tag(), Some(c.cust_to_tag.as_str()));
    assert_eq!(cbye.to_tag(), Some(c.ids.ftag.as_str()));
    assert!(cbye.cseq().seq > 0);
    c.cust.reply(&cbye, 200, None, &[], None).await;

    // The BYE retransmitted (same branch): the transaction answers 200 again, not 481.
    c.agent.send_raw(&bye).await;
    let again = c
        .agent
        .recv_any(T)
        .await
        .expect("retransmitted BYE not answered");
    assert_eq!(again.status(), Some(200), "{}", show(&again));
    assert_eq!(again.cseq().method, Method::Bye);

    assert_idle(&c.server).await;
    let state = c.server.agent_state("2001");
    assert!(
        matches!(state.as_deref(), Some("idle") | Some("wrap_up")),
        "agent 2001 after the call: {state:?}"
    );
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_with_sdp_webrtc_sdp_refuses_gets_488_and_the_call_goes_on() {
    let mut c = establish().await;
    // The offer that set the call up had this shape with an IPv4 address; webrtc-sdp must
    // still judge this one (an IPv6 address on an IP4 line), which handover's own check
    // lets through.
    let refused = customer_sdp(2, "sendonly").replace("c=IN IP4 127.0.0.1", "c=IN IP4 ::1");
    let b2 = branch();
    c.cust.send_raw(&c.cust_reinvite(2, &b2, &refused)).await;
    let r = c.cust.expect_response(Method::Invite, 488, T).await;
    assert_eq!(r.cseq().seq, 2);
    let warning = must_header(&r, HeaderName::Warning);
    assert!(
        warning.starts_with("3"),
        "SDP Warning codes are 3xx: {warning}"
    );
    c.cust
        .send_raw(&c.cust_request("ACK", 2, &b2, &[], ""))
        .await;
    c.agent.expect_silence(Duration::from_millis(500)).await;
    assert_eq!(c.server.stats().active_calls, 1);

    // The call goes on: the customer's BYE reaches the agent in the call's dialog.
    c.cust
        .send_raw(&c.cust_request("BYE", 3, &branch(), &[], ""))
        .await;
    c.cust.expect_response(Method::Bye, 200, T).await;
    let abye = c.agent.expect_request(Method::Bye, T).await;
    assert_eq!(abye.to_tag(), Some(c.agent_tag.as_str()));
    c.agent.reply(&abye, 200, None, &[], None).await;
    assert_idle(&c.server).await;
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_hangup_and_bye_retransmission_is_absorbed() {
    let mut c = establish().await;
    let b = branch();
    let bye = c.cust_request("BYE", 2, &b, &[], "");
    c.cust.send_raw(&bye).await;
    let ok = c.cust.expect_response(Method::Bye, 200, T).await;
    assert_eq!(ok.to_tag(), Some(c.cust_to_tag.as_str()));
    let abye = c.agent.expect_request(Method::Bye, T).await;
    assert_eq!(abye.call_id(), c.agent_invite.call_id());
    assert_eq!(abye.to_tag(), Some(c.agent_tag.as_str()));
    c.agent.reply(&abye, 200, None, &[], None).await;

    c.cust.send_raw(&bye).await;
    let again = c
        .cust
        .recv_any(T)
        .await
        .expect("retransmitted BYE not answered");
    assert_eq!(again.status(), Some(200), "{}", show(&again));
    assert_eq!(again.cseq().method, Method::Bye);
    // The agent is not sent a second BYE for the retransmission.
    let stray: Vec<String> = c.agent.clear_stash().iter().map(show).collect();
    assert!(stray.iter().all(|m| !m.starts_with("BYE")), "{stray:?}");
    assert_idle(&c.server).await;
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_invite_is_absorbed_by_its_transaction() {
    let mut agent = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2001").await;
    let (server, udp, _) = start(&config("127.0.0.1/32", Some(agent.port()), "")).await;
    agent.server = udp;
    let mut cust = UdpUa::bind(udp, "cust").await;
    let ids = Ids::new();
    let inv_text = invite("2001", &ids, &[], &customer_sdp(1, "sendrecv"));
    cust.send_raw(&inv_text).await;
    cust.expect_status(100, T).await;
    let inv = agent.expect_request(Method::Invite, T).await;
    assert_eq!(server.stats().active_calls, 1);

    // Retransmission before any provisional from the agent: the 100 is repeated.
    cust.send_raw(&inv_text).await;
    let again = cust
        .recv_any(T)
        .await
        .expect("retransmitted INVITE not answered");
    assert_eq!(again.status(), Some(100), "{}", show(&again));
    assert_eq!(
        server.stats().active_calls,
        1,
        "a retransmission made a second call"
    );

    let agent_tag = tag();
    agent.reply(&inv, 180, Some(&agent_tag), &[], None).await;
    let ringing = cust.expect_status(180, T).await;
    // After the 180 a retransmission gets the 180 again (RFC 3261 §17.2.1).
    cust.send_raw(&inv_text).await;
    let mut got = None;
    for _ in 0..3 {
        let m = cust
            .recv_any(T)
            .await
            .expect("retransmitted INVITE not answered");
        if m.status() == Some(180) {
            got = Some(m);
            break;
        }
    }
    let again = got.expect("no second 180");
    assert_eq!(again.to_tag(), ringing.to_tag());
    assert_eq!(
        server.stats().active_calls,
        1,
        "a retransmission made a second call"
    );
    // The agent was rung once: no other INVITE with a new branch or Call-ID.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stray: Vec<String> = agent
        .clear_stash()
        .iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .map(show)
        .collect();
    assert!(stray.is_empty(), "agent rung twice: {stray:?}");

    // The agent refuses; the customer gets the failure and ACKs it.
    agent.reply(&inv, 486, Some(&agent_tag), &[], None).await;
    agent.expect_request(Method::Ack, T).await;
    let busy = cust.expect_status(486, T).await;
    let to_tag = busy.to_tag().expect("486 without To tag").to_owned();
    cust.send_raw(&ids.fill(&wire(
        &[
            "ACK sip:2001@{server} SIP/2.0",
            "Via: SIP/2.0/UDP {ip}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            &format!("To: <sip:2001@{{server}}>;tag={to_tag}"),
            "Call-ID: {cid}",
            "CSeq: 1 ACK",
            "Content-Length: 0",
        ],
        "",
    )))
    .await;
    assert_idle(&server).await;
    server.shutdown().await;
}

// ----------------------------------------------------------------------------------- TCP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_request_without_content_length_gets_400_and_is_closed() {
    let (server, _, tcp) = start(&config("127.0.0.1/32", None, "")).await;
    let mut ua = TcpUa::connect(tcp).await;
    let ids = Ids::new();
    let text = ids.fill(&wire(
        &[
            "OPTIONS sip:test.local SIP/2.0",
            "Via: SIP/2.0/TCP {ip}:{port};branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:probe@{ip}>;tag={ftag}",
            "To: <sip:test.local>",
            "Call-ID: {cid}",
            "CSeq: 1 OPTIONS",
        ],
        "",
    ));
    ua.send_raw(&text).await.unwrap();
    let raw = ua.expect_raw_status(400, T).await;
    let (_, reason) = raw_status(&raw).unwrap();
    assert!(reason.contains("Content-Length"), "{raw}");
    assert!(raw.contains(&ids.cid), "400 must copy the Call-ID: {raw}");
    ua.expect_closed(T).await;
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_message_over_max_message_bytes_gets_513_and_is_closed() {
    let (server, _, tcp) = start(&config("127.0.0.1/32", None, "max_message_bytes = 2000")).await;
    let mut ua = TcpUa::connect(tcp).await;
    let ids = Ids::new();
    let body = "x".repeat(3000);
    let text = ids.fill(&wire(
        &[
            "MESSAGE sip:1001@test.local SIP/2.0",
            "Via: SIP/2.0/TCP {ip}:{port};branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:probe@{ip}>;tag={ftag}",
            "To: <sip:1001@test.local>",
            "Call-ID: {cid}",
            "CSeq: 1 MESSAGE",
            "Content-Type: text/plain",
            "Content-Length: {len}",
        ],
        &body,
    ));
    // The server may close before reading all of it.
    let _ = ua.send_raw(&text).await;
    let raw = ua.expect_raw_status(513, T).await;
    assert!(raw.contains(&ids.cid), "513 must copy the Call-ID: {raw}");
    ua.expect_closed(T).await;

    // A header section that never ends and outgrows the limit: 513, closed.
    let mut ua = TcpUa::connect(tcp).await;
    let ids = Ids::new();
    let mut head = ids.fill(
        &[
            "OPTIONS sip:test.local SIP/2.0",
            "Via: SIP/2.0/TCP {ip}:{port};branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:probe@{ip}>;tag={ftag}",
            "To: <sip:test.local>",
            "Call-ID: {cid}",
            "CSeq: 1 OPTIONS",
            "",
        ]
        .join("\r\n"),
    );
    for i in 0..100 {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(40)));
    }
    let _ = ua.send_raw(&head).await;
    let raw = ua.expect_raw_status(513, T).await;
    assert!(raw.contains(&ids.cid), "513 must copy the Call-ID: {raw}");
    ua.expect_closed(T).await;

    // A fresh connection is served normally afterwards.
    let mut ua = TcpUa::connect(tcp).await;
    let ids = Ids::new();
    let text = ids.fill(&wire(
        &[
            "OPTIONS sip:test.local SIP/2.0",
            "Via: SIP/2.0/TCP {ip}:{port};branch={branch}",
            "Max-Forwards: 70",
            "From: <sip:probe@{ip}>;tag={ftag}",
            "To: <sip:test.local>",
            "Call-ID: {cid}",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ],
        "",
    ));
    ua.send_raw(&text).await.unwrap();
    let ok = ua.expect_status(200, T).await;
    assert_eq!(ok.call_id(), ids.cid);
    assert_no_call(&server);
    assert_idle(&server).await;
    server.shutdown().await;
}
