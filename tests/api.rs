//! The operator surface over a real server: control API (auth, calls, agents, queues,
//! transfer through the same policy as REFER), SSE events, Prometheus metrics, CDRs, reload
//! and graceful drain (DESIGN.md §4).

mod ua;

use std::net::SocketAddr;
use std::time::Duration;

use handover::sip::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ua::call::establish_with;
use ua::harness::{assert_idle, customer_sdp, invite, Ids, T};
use ua::{branch, tag, UdpUa};

const TOKEN: &str = "s3cret";

/// One HTTP/1.1 request; returns (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn http_section(cdr: &std::path::Path) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[cdr]\npath = \"{}\"\nflush_ms = 20\n",
        cdr.display()
    )
}

fn agent_2002(port: u16) -> String {
    format!(
        "[[agents]]\nid = \"2002\"\npassword = \"pass2002\"\nskills = [\"sales\"]\ncontact = \"sip:2002@127.0.0.1:{port}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_events_metrics_and_cdr_follow_a_call_and_an_api_transfer() {
    let dir = std::env::temp_dir().join(format!("handover-api-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cdr = dir.join("cdr.jsonl");
    let mut target = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2002").await;
    let extra = format!(
        "{}\n{}\n[[external_numbers]]\nname = \"partner\"\nnumber = \"0049301234567\"\nuser_number_forwarding = true\n",
        agent_2002(target.port()),
        http_section(&cdr)
    );

    // Subscribe to the events before the call: start the server through establish_with and
    // read the SSE stream in the background.
    let mut call = establish_with(&extra).await;
    target.server = call.agent.server;
    let api = call.server.http_addr().expect("[http] configured");

    // Auth: 401 without or with a wrong token; /health open.
    assert_eq!(http(api, "GET", "/api/calls", None, None).await.0, 401);
    assert_eq!(
        http(api, "GET", "/api/calls", Some("wrong"), None).await.0,
        401
    );
    assert_eq!(http(api, "GET", "/health", None, None).await.0, 200);

    let sse = tokio::spawn(async move {
        let mut s = TcpStream::connect(api).await.unwrap();
        let req =
            format!("GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !seen.contains("call_ended") && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The call is listed with its legs.
    let (status, body) = http(api, "GET", "/api/calls", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let calls: serde_json::Value = serde_json::from_str(&body).unwrap();
    let call_id = calls[0]["id"].as_str().expect("one call").to_owned();
    assert_eq!(calls[0]["state"], "connected");
    assert_eq!(calls[0]["legs"].as_array().unwrap().len(), 2);
    let (status, one) = http(
        api,
        "GET",
        &format!("/api/calls/{call_id}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        http(api, "GET", "/api/calls/999999", Some(TOKEN), None)
            .await
            .0,
        404
    );

    // Agents and their states.
    let (status, body) = http(api, "GET", "/api/agents", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    let agents: serde_json::Value = serde_json::from_str(&body).unwrap();
    let state_of = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(state_of("2001").as_deref(), Some("talking"));
    assert_eq!(state_of("2002").as_deref(), Some("idle"));

    // A refused transfer through the API: the same rule as a REFER, the call unchanged.
    let path = format!("/api/calls/{call_id}/transfer");
    let (status, body) = http(
        api,
        "POST",
        &path,
        Some(TOKEN),
        Some(r#"{"type":"hangup","target":"agent:2002"}"#),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let refusal: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["rule"], 1);
    // Rule 2: an external number with user number forwarding takes success and
    // conversation transfers only.
    let (status, body) = http(
        api,
        "POST",
        &path,
        Some(TOKEN),
        Some(r#"{"type":"release","target":"external:partner"}"#),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let refusal: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["rule"], 2);
    // An unknown target and a malformed one.
    let (status, _) = http(
        api,
        "POST",
        &path,
        Some(TOKEN),
        Some(r#"{"type":"success","target":"agent:4242"}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(
        api,
        "POST",
        &path,
        Some(TOKEN),
        Some(r#"{"type":"sideways","target":"agent:2002"}"#),
    )
    .await;
    assert_eq!(status, 400);

    // A success transfer through the API: no REFER subscription, same bridging.
    let (status, body) = http(
        api,
        "POST",
        &path,
        Some(TOKEN),
        Some(r#"{"type":"success","target":"agent:2002"}"#),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let hold = call.cust.expect_request(Method::Invite, T).await;
    assert!(ua::body_text(&hold).contains("a=sendonly"));
    call.cust
        .reply(
            &hold,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(2, "recvonly"))),
        )
        .await;
    call.cust.expect_request(Method::Ack, T).await;
    let inv = target.expect_request(Method::Invite, T).await;
    let ttag = tag();
    target
        .reply(
            &inv,
            200,
            Some(&ttag),
            &[],
            Some(("application/sdp", &ua::harness::agent_sdp(7, "sendrecv"))),
        )
        .await;
    let bridge = call.cust.expect_request(Method::Invite, T).await;
    call.cust
        .reply(
            &bridge,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(3, "sendrecv"))),
        )
        .await;
    call.cust.expect_request(Method::Ack, T).await;
    target.expect_request(Method::Ack, T).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;

    // Hang up through the API: both remaining legs get BYE.
    let (status, _) = http(
        api,
        "POST",
        &format!("/api/calls/{call_id}/hangup"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let b1 = call.cust.expect_request(Method::Bye, T).await;
    assert!(
        b1.header(handover::sip::HeaderName::Reason).is_some(),
        "operator BYE with a Reason"
    );
    call.cust.reply(&b1, 200, None, &[], None).await;
    let b2 = target.expect_request(Method::Bye, T).await;
    target.reply(&b2, 200, None, &[], None).await;
    assert_idle(&call.server).await;

    // Events: agent states, transfer started/succeeded, call ended.
    let seen = sse.await.unwrap();
    for e in [
        "event: call_ended",
        "event: agent_state",
        "event: transfer_started",
        "event: transfer_succeeded",
    ] {
        assert!(seen.contains(e), "missing {e} in:\n{seen}");
    }

    // Metrics after the run.
    let (status, metrics) = http(api, "GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("handover_active_calls 0"), "{metrics}");
    assert!(
        metrics.contains(r#"handover_transfers_total{type="success",outcome="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"handover_transfers_total{type="hangup",outcome="refused"} 1"#),
        "{metrics}"
    );

    // The CDR of the call: parties, both transfer attempts, who released the agent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&cdr).unwrap();
    let line = text.lines().last().expect("a CDR line");
    let rec: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["call_id"], call_id.as_str());
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["transfers"][0]["outcome"], "refused:1");
    assert_eq!(rec["transfers"][1]["outcome"], "refused:2");
    assert_eq!(rec["transfers"][2]["outcome"], "succeeded");
    assert_eq!(rec["transfers"][2]["released_by"], "policy");
    assert!(rec["transfers"][2]["agent_released_ms"].as_u64().is_some());
    assert_eq!(rec["legs"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_state_reload_and_drain() {
    let dir = std::env::temp_dir().join(format!("handover-api-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cdr = dir.join("cdr.jsonl");
    let base = ua::harness::config("127.0.0.1/32", None, "");
    let toml = format!("{base}\n{}", http_section(&cdr));
    let path = dir.join("handover.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = handover::config::Config::from_toml_str(&toml).unwrap();
    let server = handover::app::start_from(config, Some(path.clone()))
        .await
        .unwrap();
    let api = server.http_addr().unwrap();

    // not_ready and back.
    let (s, body) = http(
        api,
        "PUT",
        "/api/agents/1001/state",
        Some(TOKEN),
        Some(r#"{"state":"not_ready"}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("\"logged_out\"") || body.contains("not_ready"),
        "{body}"
    );
    assert_eq!(
        http(
            api,
            "PUT",
            "/api/agents/9999/state",
            Some(TOKEN),
            Some(r#"{"state":"idle"}"#)
        )
        .await
        .0,
        404
    );

    // Reload with a new agent: the API shows it; an invalid file is refused, the old config stays.
    std::fs::write(
        &path,
        format!("{toml}\n[[agents]]\nid = \"1009\"\npassword = \"p\"\nskills = [\"x\"]\n"),
    )
    .unwrap();
    let (s, body) = http(api, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(s, 200, "{body}");
    let (_, agents) = http(api, "GET", "/api/agents", Some(TOKEN), None).await;
    assert!(agents.contains("\"1009\""), "{agents}");
    std::fs::write(
        &path,
        format!("{toml}\n[[agents]]\nid = \"1009\"\npasword = \"typo\"\n"),
    )
    .unwrap();
    let (s, body) = http(api, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(s, 422, "{body}");
    let (_, agents) = http(api, "GET", "/api/agents", Some(TOKEN), None).await;
    assert!(
        agents.contains("\"1009\""),
        "the old config stays: {agents}"
    );

    // Queues endpoint answers (none configured here).
    assert_eq!(
        http(api, "GET", "/api/queues", Some(TOKEN), None).await.0,
        200
    );

    // Drain: new calls get 503 with Retry-After.
    let udp = server.sip_addr(handover::transport::Protocol::Udp).unwrap();
    let ep = server.endpoint().clone();
    ep.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut cust = UdpUa::bind(udp, "cust").await;
    cust.send_raw(&invite(
        "1001",
        &Ids::new(),
        &[],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    let r = cust.expect_status(503, T).await;
    assert!(r.header_named("Retry-After").is_some());
    assert_eq!(http(api, "GET", "/health", None, None).await.0, 503);
    let _ = branch();
    server.drain_and_shutdown(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads the last CDR line of `path`, waiting for the group commit.
async fn last_cdr(path: &std::path::Path, n: usize) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            return serde_json::from_str(lines[n - 1]).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CDR {n} not written: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdr_records_a_release_transfer_and_reload_needs_a_config_file() {
    let dir = std::env::temp_dir().join(format!("handover-cdr-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cdr = dir.join("cdr.jsonl");
    let mut target = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2002").await;
    let extra = format!("{}\n{}", agent_2002(target.port()), http_section(&cdr));
    let mut call = establish_with(&extra).await;
    target.server = call.agent.server;
    let api = call.server.http_addr().unwrap();

    // Reload while the call is up: the call goes on.
    let (s, _) = http(api, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(
        s, 422,
        "establish_with runs on an in-memory config: nothing to reload"
    );

    // A release transfer by REFER: the agent is released at once.
    let refer = call.agent_request_with(
        "REFER",
        1,
        &branch(),
        &[
            "Refer-To: <sip:2002@test.local;transfer=release>",
            "Refer-Sub: false",
        ],
        "",
    );
    call.agent.send_raw(&refer).await;
    call.agent.expect_response(Method::Refer, 202, T).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    let hold = call.cust.expect_request(Method::Invite, T).await;
    call.cust
        .reply(
            &hold,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(2, "recvonly"))),
        )
        .await;
    call.cust.expect_request(Method::Ack, T).await;
    let inv = target.expect_request(Method::Invite, T).await;
    target
        .reply(
            &inv,
            200,
            Some(&tag()),
            &[],
            Some(("application/sdp", &ua::harness::agent_sdp(7, "sendrecv"))),
        )
        .await;
    let bridge = call.cust.expect_request(Method::Invite, T).await;
    call.cust
        .reply(
            &bridge,
            200,
            None,
            &[],
            Some(("application/sdp", &customer_sdp(3, "sendrecv"))),
        )
        .await;
    call.cust.expect_request(Method::Ack, T).await;
    target.expect_request(Method::Ack, T).await;
    let text = call.cust_request("BYE", 4, &branch(), &[], "");
    call.cust.send_raw(&text).await;
    call.cust.expect_response(Method::Bye, 200, T).await;
    let b = target.expect_request(Method::Bye, T).await;
    target.reply(&b, 200, None, &[], None).await;
    assert_idle(&call.server).await;

    let rec = last_cdr(&cdr, 1).await;
    assert_eq!(rec["transfers"][0]["transfer_type"], "release");
    assert_eq!(rec["transfers"][0]["target"], "agent:2002");
    assert_eq!(rec["transfers"][0]["outcome"], "succeeded");
    assert_eq!(rec["transfers"][0]["released_by"], "policy");
    let legs = rec["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 3, "customer, agent 2001, target 2002");
    assert_eq!(legs[1]["agent"], "2001");
    assert_eq!(legs[2]["agent"], "2002");
    assert!(legs[2]["answer_ms"].as_u64().is_some());
    assert!(
        legs[1]["end_ms"].as_u64() <= legs[2]["end_ms"].as_u64(),
        "the agent left first"
    );
    assert_eq!(rec["interaction_id"], call.ids.cid.as_str());
    // The parties as the customer's INVITE wrote them (tags cut), and each leg's own.
    let customer = format!("\"Customer\" <sip:+3215551234@{}>", call.cust.local_addr());
    assert_eq!(rec["from"], customer.as_str());
    assert_eq!(
        rec["to"],
        format!("<sip:2001@{}>", call.cust.server).as_str()
    );
    let roles: Vec<_> = legs.iter().map(|l| (&l["role"], &l["party"])).collect();
    assert_eq!(
        roles,
        [
            (&"customer".into(), &customer.as_str().into()),
            (&"agent".into(), &"<sip:2001@test.local>".into()),
            (&"agent".into(), &"<sip:2002@test.local>".into()),
        ]
    );
    assert!(legs.iter().all(|l| l["end_reason"] == "completed"));
    assert_eq!(legs[0]["agent"], serde_json::Value::Null);
    assert_eq!(rec["release_cause"], "caller hung up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_during_a_call_keeps_the_call() {
    let dir = std::env::temp_dir().join(format!("handover-reload-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cdr = dir.join("cdr.jsonl");
    let mut agent = UdpUa::bind("127.0.0.1:9".parse().unwrap(), "2001").await;
    let base = ua::harness::config("127.0.0.1/32", Some(agent.port()), "");
    let toml = format!("{base}\n{}", http_section(&cdr));
    let path = dir.join("handover.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = handover::config::Config::from_toml_str(&toml).unwrap();
    let server = handover::app::start_from(config, Some(path.clone()))
        .await
        .unwrap();
    let api = server.http_addr().unwrap();
    let udp = server.sip_addr(handover::transport::Protocol::Udp).unwrap();
    agent.server = udp;
    let mut cust = UdpUa::bind(udp, "cust").await;

    // A call, answered.
    let ids = Ids::new();
    cust.send_raw(&invite("2001", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    let inv = agent.expect_request(Method::Invite, T).await;
    agent
        .reply(
            &inv,
            200,
            Some(&tag()),
            &[],
            Some(("application/sdp", &ua::harness::agent_sdp(1, "sendrecv"))),
        )
        .await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    let target =
        ua::harness::contact_uri(&ua::must_header(&ok, handover::sip::HeaderName::Contact));
    let to = format!(
        "To: {}",
        ua::must_header(&ok, handover::sip::HeaderName::To)
    );
    let in_dialog = |method: &str, cseq: u32| {
        ids.fill(&ua::wire(
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
        ))
    };
    cust.send_raw(&in_dialog("ACK", 1)).await;
    agent.expect_request(Method::Ack, T).await;

    // Reload with one more agent and another ring timeout while the call is up.
    std::fs::write(
        &path,
        format!("{toml}\n[[agents]]\nid = \"1009\"\npassword = \"p\"\nskills = [\"x\"]\n")
            .replace("t1_ms = 100", "t1_ms = 100\nring_timeout_s = 20"),
    )
    .unwrap();
    let (s, body) = http(api, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(s, 200, "{body}");
    let (_, calls) = http(api, "GET", "/api/calls", Some(TOKEN), None).await;
    assert!(
        calls.contains("\"connected\""),
        "the call survived the reload: {calls}"
    );

    // The call still works and ends normally.
    cust.send_raw(&in_dialog("BYE", 2)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = agent.expect_request(Method::Bye, T).await;
    agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
    server.shutdown().await;
    let text = std::fs::read_to_string(&cdr).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "the call's CDR was written and flushed: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
