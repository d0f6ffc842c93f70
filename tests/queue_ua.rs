//! Skill queues driven by in-process UAs (DESIGN.md §2): admission, distribution to the
//! longest-idle agent, ring timeout → next agent, overflow, abandonment.

mod ua;

use std::time::Duration;

use handover::sip::{HeaderName, Method, SipMessage};
use ua::harness::{agent_sdp, assert_idle, customer_sdp, invite, start, Ids, T};
use ua::{must_header, tag, UdpUa};

fn config(agents: &[(&str, Option<u16>)], queue_extra: &str, extra: &str) -> String {
    let mut t = String::from(
        r#"[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "test.local"
t1_ms = 100

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:9"
access_number = "100"
"#,
    );
    for (id, port) in agents {
        t.push_str(&format!(
            "\n[[agents]]\nid = \"{id}\"\npassword = \"p{id}\"\nskills = [\"sales\"]\n"
        ));
        if let Some(p) = port {
            t.push_str(&format!("contact = \"sip:{id}@127.0.0.1:{p}\"\n"));
        }
    }
    t.push_str(&format!(
        "\n[[queues]]\nname = \"sales\"\nnumber = \"8000\"\nskill = \"sales\"\n{queue_extra}\n{extra}"
    ));
    t
}

async fn ua(user: &str) -> UdpUa {
    UdpUa::bind("127.0.0.1:9".parse().unwrap(), user).await
}

/// The agent answers an offered INVITE with 200 + SDP.
async fn answer(agent: &UdpUa, inv: &SipMessage) -> String {
    let t = tag();
    agent
        .reply(
            inv,
            200,
            Some(&t),
            &[],
            Some(("application/sdp", &agent_sdp(1, "sendrecv"))),
        )
        .await;
    t
}

fn ack_and_bye(ids: &Ids, ok: &SipMessage, method: &str, cseq: u32) -> String {
    let target = ua::harness::contact_uri(&must_header(ok, HeaderName::Contact));
    let to = format!("To: {}", must_header(ok, HeaderName::To));
    let start = format!("{method} {target} SIP/2.0");
    let cseq = format!("CSeq: {cseq} {method}");
    let branch = format!(
        "Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport",
        ua::branch()
    );
    ids.fill(&ua::wire(
        &[
            &start,
            &branch,
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            &to,
            "Call-ID: {cid}",
            &cseq,
            "Content-Length: 0",
        ],
        "",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_goes_to_an_idle_agent_and_a_missed_offer_to_the_next() {
    let mut a1 = ua("2001").await;
    let mut a2 = ua("2002").await;
    let toml = config(
        &[("2001", Some(a1.port())), ("2002", Some(a2.port()))],
        "ring_timeout_s = 1\nmax_missed_offers = 1",
        "",
    );
    let (server, udp, _) = start(&toml).await;
    a1.server = udp;
    a2.server = udp;
    let mut cust = ua("cust").await;
    cust.server = udp;
    let ids = Ids::new();
    cust.send_raw(&invite("8000", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    cust.expect_status(180, T).await;

    // One of the two idle agents is offered the call; it rings and does not answer.
    let (first, first_id, second_id) = tokio::select! {
        m = a1.expect_request(Method::Invite, T) => (m, "2001", "2002"),
        m = a2.expect_request(Method::Invite, T) => (m, "2002", "2001"),
    };
    let missed = if first_id == "2001" { &mut a1 } else { &mut a2 };
    missed.reply(&first, 180, Some(&tag()), &[], None).await;
    // Ring timeout: the offer is cancelled.
    let cancel = missed
        .expect_request(Method::Cancel, Duration::from_secs(4))
        .await;
    missed.reply(&cancel, 200, None, &[], None).await;
    missed.reply(&first, 487, Some(&tag()), &[], None).await;
    missed.expect_request(Method::Ack, T).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.agent_state(first_id).as_deref(),
        Some("not_ready"),
        "max_missed_offers = 1"
    );
    // The other agent gets it and answers.
    let other = if second_id == "2001" {
        &mut a1
    } else {
        &mut a2
    };
    let inv = other.expect_request(Method::Invite, T).await;
    answer(other, &inv).await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    cust.send_raw(&ack_and_bye(&ids, &ok, "ACK", 1)).await;
    other.expect_request(Method::Ack, T).await;
    assert_eq!(server.agent_state(second_id).as_deref(), Some("talking"));
    cust.send_raw(&ack_and_bye(&ids, &ok, "BYE", 2)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = other.expect_request(Method::Bye, T).await;
    other.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
    assert_eq!(server.agent_state(second_id).as_deref(), Some("idle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_without_agents_or_when_full() {
    // No logged-in agent with the skill, refuse: 480 with a Warning.
    let toml = config(&[("1001", None)], "", "");
    let (server, udp, _) = start(&toml).await;
    let mut cust = ua("cust").await;
    cust.server = udp;
    cust.send_raw(&invite(
        "8000",
        &Ids::new(),
        &[],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    let r = cust.expect_status(480, T).await;
    assert!(r.header(HeaderName::Warning).is_some());
    assert_idle(&server).await;

    // when_no_agents = wait, max_waiting = 1: the first waits, the second is refused 486.
    let toml = config(
        &[("1001", None)],
        "when_no_agents = \"wait\"\nmax_waiting = 1",
        "",
    );
    let (server, udp, _) = start(&toml).await;
    let mut c1 = ua("c1").await;
    c1.server = udp;
    let ids1 = Ids::new();
    c1.send_raw(&invite("8000", &ids1, &[], &customer_sdp(1, "sendrecv")))
        .await;
    c1.expect_status(180, T).await;
    let mut c2 = ua("c2").await;
    c2.server = udp;
    c2.send_raw(&invite(
        "8000",
        &Ids::new(),
        &[],
        &customer_sdp(1, "sendrecv"),
    ))
    .await;
    let r = c2.expect_status(486, T).await;
    assert!(must_header(&r, HeaderName::Warning).contains("sales"));
    // The first customer abandons: CANCEL → 487, the queue is empty at once.
    let cancel = ids1.fill(&ua::wire(
        &[
            "CANCEL sip:8000@{server} SIP/2.0",
            "Via: SIP/2.0/UDP {ip}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            "From: \"Customer\" <sip:+3215551234@{ip}:{port}>;tag={ftag}",
            "To: <sip:8000@{server}>",
            "Call-ID: {cid}",
            "CSeq: 1 CANCEL",
            "Content-Length: 0",
        ],
        "",
    ));
    c1.send_raw(&cancel).await;
    c1.expect_response(Method::Cancel, 200, T).await;
    c1.expect_response(Method::Invite, 487, T).await;
    assert_eq!(server.endpoint().queue_status()[0].waiting, 0);
    assert_idle(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_sends_the_caller_to_the_overflow_target() {
    let mut ivr = ua("survey").await;
    let extra = format!(
        "[[ivr]]\nname = \"survey\"\nnumber = \"7000\"\nuri = \"sip:survey@127.0.0.1:{}\"\n",
        ivr.port()
    );
    let toml = config(
        &[("1001", None)],
        "when_no_agents = \"wait\"\nmax_wait_s = 1\noverflow = \"ivr:survey\"",
        &extra,
    );
    let (server, udp, _) = start(&toml).await;
    ivr.server = udp;
    let mut cust = ua("cust").await;
    cust.server = udp;
    let ids = Ids::new();
    cust.send_raw(&invite("8000", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    cust.expect_status(180, T).await;
    assert_eq!(server.endpoint().queue_status()[0].waiting, 1);
    let inv = ivr
        .expect_request(Method::Invite, Duration::from_secs(4))
        .await;
    answer(&ivr, &inv).await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    cust.send_raw(&ack_and_bye(&ids, &ok, "ACK", 1)).await;
    ivr.expect_request(Method::Ack, T).await;
    cust.send_raw(&ack_and_bye(&ids, &ok, "BYE", 2)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = ivr.expect_request(Method::Bye, T).await;
    ivr.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
}

/// REGISTER `user` from `ua` with digest auth (MD5, qop=auth).
async fn register(ua: &mut UdpUa, user: &str, password: &str) {
    use handover::registrar::{compute_response, DigestCredentials};
    let cid = ua::call_id();
    let ftag = tag();
    let request = |cseq: u32, auth: Option<String>| {
        let mut lines = vec![
            "REGISTER sip:test.local SIP/2.0".to_owned(),
            format!(
                "Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport",
                ua::branch()
            ),
            "Max-Forwards: 70".to_owned(),
            format!("From: <sip:{user}@test.local>;tag={ftag}"),
            format!("To: <sip:{user}@test.local>"),
            format!("Call-ID: {cid}"),
            format!("CSeq: {cseq} REGISTER"),
            format!("Contact: <sip:{user}@{{ip}}:{{port}}>"),
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
        .unwrap();
    let param = |name: &str| {
        let i = www.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        www[i..].split('"').next().unwrap().to_owned()
    };
    let draft = format!(
        "Digest username=\"{user}\", realm=\"test.local\", nonce=\"{}\", uri=\"sip:test.local\", response=\"0\", algorithm=MD5, cnonce=\"abc\", qop=auth, nc=00000001, opaque=\"{}\"",
        param("nonce"),
        param("opaque")
    );
    let creds = DigestCredentials::parse(&draft).unwrap();
    let response = compute_response(&creds, "REGISTER", password);
    ua.send_raw(&request(
        2,
        Some(draft.replace("response=\"0\"", &format!("response=\"{response}\""))),
    ))
    .await;
    ua.expect_status(200, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_music_answers_the_caller_until_an_agent_takes_the_call() {
    let mut music = ua("music").await;
    let toml = config(
        &[("1001", None)],
        &format!(
            "when_no_agents = \"wait\"\nmusic_uri = \"sip:music@127.0.0.1:{}\"",
            music.port()
        ),
        "[registrar]\nalgorithms = [\"MD5\"]\n",
    );
    let (server, udp, _) = start(&toml).await;
    music.server = udp;
    let mut cust = ua("cust").await;
    cust.server = udp;
    let ids = Ids::new();
    cust.send_raw(&invite("8000", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    cust.expect_status(180, T).await;
    // The music server answers the caller while nobody can take the call.
    let minv = music.expect_request(Method::Invite, T).await;
    answer(&music, &minv).await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    cust.send_raw(&ack_and_bye(&ids, &ok, "ACK", 1)).await;
    music.expect_request(Method::Ack, T).await;
    assert_eq!(
        server.endpoint().queue_status()[0].waiting,
        1,
        "still queued"
    );

    // An agent logs in: it is offered the call (late offer) and the caller is moved over.
    let mut agent = ua("1001").await;
    agent.server = udp;
    register(&mut agent, "1001", "p1001").await;
    let inv = agent.expect_request(Method::Invite, T).await;
    assert!(
        inv.body().is_empty(),
        "late offer: the caller's dialog is already up"
    );
    agent
        .reply(
            &inv,
            200,
            Some(&tag()),
            &[],
            Some(("application/sdp", &agent_sdp(1, "sendrecv"))),
        )
        .await;
    let reinv = cust.expect_request(Method::Invite, T).await;
    assert!(
        ua::body_text(&reinv).contains("m=audio 42000"),
        "the agent's media"
    );
    cust.reply(
        &reinv,
        200,
        None,
        &[],
        Some(("application/sdp", &customer_sdp(2, "sendrecv"))),
    )
    .await;
    cust.expect_request(Method::Ack, T).await;
    agent.expect_request(Method::Ack, T).await;
    let mbye = music.expect_request(Method::Bye, T).await;
    music.reply(&mbye, 200, None, &[], None).await;
    assert_eq!(server.endpoint().queue_status()[0].waiting, 0);
    assert_eq!(server.agent_state("1001").as_deref(), Some("talking"));

    cust.send_raw(&ack_and_bye(&ids, &ok, "BYE", 3)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = agent.expect_request(Method::Bye, T).await;
    agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_reached_directly_sends_the_caller_on_to_an_agent_but_not_elsewhere() {
    let mut ivr = ua("survey").await;
    let mut agent = ua("2001").await;
    let extra = format!(
        "[[ivr]]\nname = \"survey\"\nnumber = \"7000\"\nuri = \"sip:survey@127.0.0.1:{}\"\n\n[external]\nadhoc_patterns = [\"^00[1-9][0-9]{{6,14}}$\"]\n",
        ivr.port()
    );
    let toml = config(&[("2001", Some(agent.port()))], "", &extra);
    let (server, udp, _) = start(&toml).await;
    ivr.server = udp;
    agent.server = udp;
    let mut cust = ua("cust").await;
    cust.server = udp;
    let ids = Ids::new();
    cust.send_raw(&invite("7000", &ids, &[], &customer_sdp(1, "sendrecv")))
        .await;
    let inv = ivr.expect_request(Method::Invite, T).await;
    let itag = answer(&ivr, &inv).await;
    let ok = cust.expect_response(Method::Invite, 200, T).await;
    cust.send_raw(&ack_and_bye(&ids, &ok, "ACK", 1)).await;
    ivr.expect_request(Method::Ack, T).await;

    let refer = |cseq: u32, to: &str| {
        ua::wire(
            &[
                &format!(
                    "REFER {} SIP/2.0",
                    ua::harness::contact_uri(&must_header(&inv, HeaderName::Contact))
                ),
                &format!(
                    "Via: SIP/2.0/UDP {{ip}}:{{port}};branch={};rport",
                    ua::branch()
                ),
                "Max-Forwards: 70",
                &format!("From: {};tag={itag}", must_header(&inv, HeaderName::To)),
                &format!("To: {}", must_header(&inv, HeaderName::From)),
                &format!("Call-ID: {}", inv.call_id()),
                &format!("CSeq: {cseq} REFER"),
                &format!("Refer-To: <sip:{to}@test.local>"),
                "Content-Length: 0",
            ],
            "",
        )
    };
    // To an external number: refused (rule 1, an IVR flow cannot transfer to a device).
    ivr.send_raw(&refer(1, "0049301234567")).await;
    let r = ivr.expect_response(Method::Refer, 403, T).await;
    assert!(must_header(&r, HeaderName::Warning).contains("rule 1"));
    // To an agent's number: accepted as a release transfer.
    ivr.send_raw(&refer(2, "2001")).await;
    ivr.expect_response(Method::Refer, 202, T).await;
    let hold = cust.expect_request(Method::Invite, T).await;
    cust.reply(
        &hold,
        200,
        None,
        &[],
        Some(("application/sdp", &customer_sdp(2, "recvonly"))),
    )
    .await;
    cust.expect_request(Method::Ack, T).await;
    let ainv = agent.expect_request(Method::Invite, T).await;
    agent
        .reply(
            &ainv,
            200,
            Some(&tag()),
            &[],
            Some(("application/sdp", &agent_sdp(1, "sendrecv"))),
        )
        .await;
    let bridge = cust.expect_request(Method::Invite, T).await;
    assert!(ua::body_text(&bridge).contains("m=audio 42000"));
    cust.reply(
        &bridge,
        200,
        None,
        &[],
        Some(("application/sdp", &customer_sdp(3, "sendrecv"))),
    )
    .await;
    cust.expect_request(Method::Ack, T).await;
    agent.expect_request(Method::Ack, T).await;
    // The IVR was released (NOTIFYs and BYE; answer whatever comes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the IVR leg was not released"
        );
        let Some(m) = ivr.recv_any(Duration::from_millis(500)).await else {
            continue;
        };
        match m.method() {
            Some(Method::Notify) => ivr.reply(&m, 200, None, &[], None).await,
            Some(Method::Bye) => {
                ivr.reply(&m, 200, None, &[], None).await;
                break;
            }
            _ => {}
        }
    }
    cust.send_raw(&ack_and_bye(&ids, &ok, "BYE", 4)).await;
    cust.expect_response(Method::Bye, 200, T).await;
    let bye = agent.expect_request(Method::Bye, T).await;
    agent.reply(&bye, 200, None, &[], None).await;
    assert_idle(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_wrap_up_after_a_call_then_become_idle() {
    let mut call = ua::call::establish_with("[transfer]\nwrap_up_s = 1\n").await;
    let text = call.cust_request("BYE", 2, &ua::branch(), &[], "");
    call.cust.send_raw(&text).await;
    call.cust.expect_response(Method::Bye, 200, T).await;
    let bye = call.agent.expect_request(Method::Bye, T).await;
    call.agent.reply(&bye, 200, None, &[], None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("wrap_up"));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(call.server.agent_state("2001").as_deref(), Some("idle"));
}
