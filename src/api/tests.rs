//! Real-socket tests of the API: the server on 127.0.0.1:0 against a fake [`Control`], driven
//! by raw HTTP/1.1 over `TcpStream`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::events::{Event, EventBus};

const TOKEN: &str = "t0ken";

struct Fake {
    bus: EventBus,
    agents: Mutex<Vec<AgentInfo>>,
    reload_result: Mutex<Result<(), Vec<String>>>,
    health: Mutex<Health>,
}

fn call(id: &str) -> CallInfo {
    CallInfo {
        id: id.to_owned(),
        interaction_id: format!("i-{id}"),
        direction: "inbound".to_owned(),
        state: "connected".to_owned(),
        started_at_ms: 1_700_000_000_000,
        legs: vec![
            LegInfo {
                id: "l1".to_owned(),
                role: "customer".to_owned(),
                party: "sip:+3215551234@carrier".to_owned(),
                state: "up".to_owned(),
                agent: None,
            },
            LegInfo {
                id: "l2".to_owned(),
                role: "agent".to_owned(),
                party: "sip:1001@handover.local".to_owned(),
                state: "up".to_owned(),
                agent: Some("1001".to_owned()),
            },
        ],
        transfer: None,
        call_data: BTreeMap::from([("lang".to_owned(), "nl".to_owned())]),
    }
}

impl Fake {
    fn new(bus_capacity: usize) -> Arc<Fake> {
        Arc::new(Fake {
            bus: EventBus::new(bus_capacity),
            agents: Mutex::new(vec![AgentInfo {
                id: "1001".to_owned(),
                state: "not_ready".to_owned(),
                skills: vec!["sales".to_owned()],
                registered: true,
            }]),
            reload_result: Mutex::new(Ok(())),
            health: Mutex::new(Health {
                ready: true,
                draining: false,
            }),
        })
    }
}

impl Control for Fake {
    fn list_calls(&self) -> BoxFuture<'_, Vec<CallInfo>> {
        Box::pin(async { vec![call("c1")] })
    }

    fn get_call(&self, id: &str) -> BoxFuture<'_, Option<CallInfo>> {
        let found = (id == "c1").then(|| call(id));
        Box::pin(async move { found })
    }

    fn transfer(
        &self,
        id: &str,
        req: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferAccepted, ApiError>> {
        let id = id.to_owned();
        Box::pin(async move {
            if id != "c1" {
                return Err(ApiError::NotFound(format!("call {id}")));
            }
            if req.target == "agent:9999" {
                return Err(ApiError::Refused {
                    rule: 2,
                    warning: "target agent is not idle".to_owned(),
                });
            }
            Ok(TransferAccepted {
                call_id: id,
                transfer_type: req.transfer_type,
                target: req.target,
            })
        })
    }

    fn hangup(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let ok = id == "c1";
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(ApiError::NotFound("call".to_owned()))
            }
        })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.agents.lock().unwrap().clone()
    }

    fn set_agent_state(&self, id: &str, state: AgentStateRequest) -> Result<AgentInfo, ApiError> {
        let mut agents = self.agents.lock().unwrap();
        let a = agents
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))?;
        a.state = state.state;
        Ok(a.clone())
    }

    fn queues(&self) -> Vec<QueueInfo> {
        vec![QueueInfo {
            name: "sales".to_owned(),
            number: "8000".to_owned(),
            skill: "sales".to_owned(),
            waiting: 2,
            longest_wait_ms: 4200,
            agents_idle: 0,
            agents_logged_in: 1,
        }]
    }

    fn metrics(&self) -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            active_calls: 1,
            registrations: 1,
            ..Default::default()
        };
        m.transfers
            .insert(("release".to_owned(), "succeeded".to_owned()), 2);
        m.queues = self.queues();
        m
    }

    fn reload(&self) -> BoxFuture<'_, Result<(), Vec<String>>> {
        let r = self.reload_result.lock().unwrap().clone();
        Box::pin(async move { r })
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    fn health(&self) -> Health {
        *self.health.lock().unwrap()
    }
}

struct Harness {
    fake: Arc<Fake>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: ApiServer,
}

async fn start(token: Option<&str>, bus_capacity: usize) -> Harness {
    let fake = Fake::new(bus_capacity);
    let (stop, rx) = watch::channel(false);
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        token.map(str::to_owned),
        fake.clone(),
        rx,
    )
    .await
    .unwrap();
    Harness {
        fake,
        addr: server.local_addr(),
        stop,
        server,
    }
}

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Decodes a complete chunked body.
fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        raw = &rest[size + 2..];
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{head}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Resp {
        status,
        head: head.to_owned(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    }
}

async fn get(h: &Harness, path: &str) -> Resp {
    request(h.addr, "GET", path, Some(TOKEN), None).await
}

#[tokio::test]
async fn bearer_token_is_required_except_for_health() {
    let h = start(Some(TOKEN), 16).await;
    for path in [
        "/api/calls",
        "/api/agents",
        "/api/events",
        "/metrics",
        "/api/nope",
    ] {
        let r = request(h.addr, "GET", path, None, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"], "unauthorized");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
        let r = request(h.addr, "GET", path, Some("t0ke"), None).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let r = request(h.addr, "POST", "/api/reload", Some("wrong"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        request(h.addr, "GET", "/health", None, None).await.status,
        200
    );
    let r = get(&h, "/api/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
}

#[tokio::test]
async fn without_token_everything_is_open() {
    let h = start(None, 16).await;
    let r = request(h.addr, "GET", "/api/calls", None, None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn calls_list_and_get() {
    let h = start(Some(TOKEN), 16).await;
    let r = get(&h, "/api/calls").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        v[0],
        json!({
            "id": "c1", "interaction_id": "i-c1", "direction": "inbound", "state": "connected",
            "started_at_ms": 1_700_000_000_000u64,
            "legs": [
                {"id": "l1", "role": "customer", "party": "sip:+3215551234@carrier", "state": "up", "agent": null},
                {"id": "l2", "role": "agent", "party": "sip:1001@handover.local", "state": "up", "agent": "1001"}
            ],
            "transfer": null, "call_data": {"lang": "nl"}
        })
    );
    let r = get(&h, "/api/calls/c1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["interaction_id"], "i-c1");
    let r = get(&h, "/api/calls/zz").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let long = format!("/api/calls/{}", "x".repeat(MAX_ID_LEN + 1));
    assert_eq!(get(&h, &long).await.status, 400);
}

#[tokio::test]
async fn transfer_accept_refuse_and_bad_bodies() {
    let h = start(Some(TOKEN), 16).await;
    let post = |path: &'static str, body: &'static str| {
        request(h.addr, "POST", path, Some(TOKEN), Some(body))
    };
    let r = post(
        "/api/calls/c1/transfer",
        r#"{"type":"release","target":"agent:1002"}"#,
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json(),
        json!({"call_id": "c1", "transfer_type": "release", "target": "agent:1002"})
    );

    let r = post(
        "/api/calls/c1/transfer",
        r#"{"type":"success","target":"agent:9999"}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    let v = r.json();
    assert_eq!(v["error"], "refused");
    assert_eq!(v["rule"], 2);
    assert_eq!(v["warning"], "target agent is not idle");

    for bad in [
        r#"{"type":"release""#,
        r#"not json"#,
        r#"{"target":"agent:1002"}"#,
        r#"{"type":"blind","target":"agent:1002"}"#,
        r#"{"type":"release","target":"agent:"}"#,
        r#"{"type":"release","target":"agent:1002","extra":1}"#,
    ] {
        let r = request(
            h.addr,
            "POST",
            "/api/calls/c1/transfer",
            Some(TOKEN),
            Some(bad),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"], "bad_request", "{bad}");
    }

    let r = post(
        "/api/calls/nope/transfer",
        r#"{"type":"release","target":"agent:1002"}"#,
    )
    .await;
    assert_eq!(r.status, 404);

    let big = format!(
        r#"{{"type":"release","target":"agent:{}"}}"#,
        "1".repeat(MAX_BODY_BYTES)
    );
    let r = request(
        h.addr,
        "POST",
        "/api/calls/c1/transfer",
        Some(TOKEN),
        Some(&big),
    )
    .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn hangup() {
    let h = start(Some(TOKEN), 16).await;
    let r = request(h.addr, "POST", "/api/calls/c1/hangup", Some(TOKEN), None).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), json!({"call_id": "c1"}));
    let r = request(h.addr, "POST", "/api/calls/c9/hangup", Some(TOKEN), None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn agents_get_and_set_state() {
    let h = start(Some(TOKEN), 16).await;
    let r = get(&h, "/api/agents").await;
    assert_eq!(
        r.json(),
        json!([{"id": "1001", "state": "not_ready", "skills": ["sales"], "registered": true}])
    );
    let put = |path: &'static str, body: &'static str| {
        request(h.addr, "PUT", path, Some(TOKEN), Some(body))
    };
    let r = put("/api/agents/1001/state", r#"{"state":"idle"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "idle");
    assert_eq!(get(&h, "/api/agents/1001").await.json()["state"], "idle");
    assert_eq!(h.fake.agents()[0].state, "idle");

    let r = put("/api/agents/1001/state", r#"{"state":"busy"}"#).await;
    assert_eq!(r.status, 400);
    let r = put("/api/agents/1001/state", r#"{"state":"#).await;
    assert_eq!(r.status, 400);
    let r = put("/api/agents/7777/state", r#"{"state":"idle"}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(get(&h, "/api/agents/7777").await.status, 404);
    // Wrong method on a known route.
    let r = request(h.addr, "GET", "/api/agents/1001/state", Some(TOKEN), None).await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn queues() {
    let h = start(Some(TOKEN), 16).await;
    let r = get(&h, "/api/queues").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"name": "sales", "number": "8000", "skill": "sales", "waiting": 2,
                "longest_wait_ms": 4200, "agents_idle": 0, "agents_logged_in": 1}])
    );
}

#[tokio::test]
async fn reload_ok_and_errors() {
    let h = start(Some(TOKEN), 16).await;
    let r = request(h.addr, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"reloaded": true}));
    *h.fake.reload_result.lock().unwrap() = Err(vec![
        "line 3: sip.t1_ms: must be > 0".to_owned(),
        "line 9: agents[0].id: duplicate".to_owned(),
    ]);
    let r = request(h.addr, "POST", "/api/reload", Some(TOKEN), None).await;
    assert_eq!(r.status, 422);
    let v = r.json();
    assert_eq!(v["error"], "invalid_config");
    assert_eq!(
        v["errors"],
        json!([
            "line 3: sip.t1_ms: must be > 0",
            "line 9: agents[0].id: duplicate"
        ])
    );
}

#[tokio::test]
async fn health_follows_readiness_and_draining() {
    let h = start(Some(TOKEN), 16).await;
    let r = request(h.addr, "GET", "/health", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"ready": true, "draining": false}));
    h.fake.health.lock().unwrap().draining = true;
    let r = request(h.addr, "GET", "/health", None, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"ready": true, "draining": true}));
    *h.fake.health.lock().unwrap() = Health {
        ready: false,
        draining: false,
    };
    assert_eq!(
        request(h.addr, "GET", "/health", None, None).await.status,
        503
    );
}

#[tokio::test]
async fn metrics_endpoint() {
    let h = start(Some(TOKEN), 16).await;
    let r = get(&h, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some(metrics::CONTENT_TYPE)
    );
    for line in [
        "handover_active_calls 1",
        "handover_registrations 1",
        "handover_transfers_total{type=\"release\",outcome=\"succeeded\"} 2",
        "handover_queue_waiting{queue=\"sales\"} 2",
        "handover_queue_longest_wait_seconds{queue=\"sales\"} 4.2",
        "# EOF",
    ] {
        assert!(r.body.lines().any(|l| l == line), "{line:?} in {}", r.body);
    }
}

/// A streaming SSE reader over a raw connection: decodes the chunked body and splits frames.
struct SseClient {
    stream: TcpStream,
    raw: Vec<u8>,
    text: String,
    ended: bool,
}

impl SseClient {
    async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> SseClient {
        let sock = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            sock.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = sock.connect(addr).await.unwrap();
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut c = SseClient {
            stream,
            raw: Vec::new(),
            text: String::new(),
            ended: false,
        };
        // Read the head: once it is here the handler has subscribed to the bus.
        loop {
            if let Some(pos) = c.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(c.raw[..pos].to_vec()).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert!(head.contains("text/event-stream"), "{head}");
                c.raw.drain(..pos + 4);
                break;
            }
            assert!(c.fill().await > 0, "connection closed before head");
        }
        c
    }

    async fn fill(&mut self) -> usize {
        let mut buf = [0u8; 65536];
        let n = self.stream.read(&mut buf).await.unwrap();
        self.raw.extend_from_slice(&buf[..n]);
        n
    }

    /// Moves complete chunks from `raw` to `text`.
    fn decode(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_line = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.text.push_str(&String::from_utf8(data).unwrap());
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next `(event, data)` frame, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            self.decode();
            if let Some(pos) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..pos + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_owned();
                    }
                }
                if event.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((event, data));
            }
            if self.ended {
                return None;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.fill())
                .await
                .expect("SSE read timed out");
            if n == 0 {
                return None;
            }
        }
    }
}

fn progress(call_id: &str, status: u16) -> Event {
    Event::TransferProgress {
        call_id: call_id.to_owned(),
        status,
    }
}

#[tokio::test]
async fn sse_delivers_events_in_order() {
    let h = start(Some(TOKEN), 16).await;
    let mut c = SseClient::connect(h.addr, None).await;
    h.fake.bus.publish(progress("c1", 180));
    h.fake.bus.publish(Event::AgentState {
        agent: "1001".to_owned(),
        from: "idle".to_owned(),
        to: "busy".to_owned(),
    });
    let (e, d) = c.next().await.unwrap();
    assert_eq!(e, "transfer_progress");
    assert_eq!(
        serde_json::from_str::<Value>(&d).unwrap(),
        json!({"event": "transfer_progress", "call_id": "c1", "status": 180})
    );
    let (e, d) = c.next().await.unwrap();
    assert_eq!(e, "agent_state");
    assert_eq!(serde_json::from_str::<Value>(&d).unwrap()["to"], "busy");
}

/// A client that stops reading is lapped by the bus and dropped; another client keeps
/// receiving every event in order, and publishing never waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_slow_client_is_dropped_fast_client_keeps_receiving() {
    const CAPACITY: usize = 16;
    const EVENTS: usize = 1500;
    let h = start(Some(TOKEN), CAPACITY).await;
    // The stalled client advertises a tiny receive window so the server's writes back up.
    let mut slow = SseClient::connect(h.addr, Some(4096)).await;
    let mut fast = SseClient::connect(h.addr, None).await;
    assert_eq!(h.fake.bus.receiver_count(), 2);

    let (seen_tx, mut seen_rx) = watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < EVENTS {
            let (event, data) = fast.next().await.expect("fast client ended");
            assert_eq!(event, "call_started");
            let v: Value = serde_json::from_str(&data).unwrap();
            ids.push(v["call_id"].as_str().unwrap().parse::<usize>().unwrap());
            seen_tx.send_replace(ids.len());
        }
        (ids, fast)
    });

    // ~8 KiB per event, ~12 MiB in all: far more than the socket buffers hold.
    let pad = "x".repeat(8192);
    for i in 0..EVENTS {
        h.fake.bus.publish(Event::CallStarted {
            call_id: i.to_string(),
            interaction_id: String::new(),
            direction: "inbound".to_owned(),
            from: pad.clone(),
            to: String::new(),
        });
        // Pace the publisher by the fast reader only, so it is never lapped.
        if i % (CAPACITY / 2) == CAPACITY / 2 - 1 {
            tokio::time::timeout(Duration::from_secs(10), seen_rx.wait_for(|n| *n > i))
                .await
                .expect("fast client stalled")
                .unwrap();
        }
    }
    let (ids, _fast) = reader.await.unwrap();
    assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>());

    // The slow client now reads: what was buffered, then `lagged`, then the end of the stream.
    let mut got = Vec::new();
    let mut lagged = false;
    while let Some((event, data)) = slow.next().await {
        if event == "lagged" {
            lagged = true;
            let v: Value = serde_json::from_str(&data).unwrap();
            assert!(v["missed"].as_u64().unwrap() > 0);
            continue;
        }
        assert!(!lagged, "no event after lagged");
        let v: Value = serde_json::from_str(&data).unwrap();
        got.push(v["call_id"].as_str().unwrap().parse::<usize>().unwrap());
    }
    assert!(lagged, "slow client was never told it lagged");
    assert!(got.len() < EVENTS, "slow client got everything");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    // Its subscription is gone; the fast one remains.
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.fake.bus.receiver_count() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("slow subscriber not dropped");
}

#[tokio::test]
async fn shutdown_ends_sse_and_stops_server() {
    let h = start(Some(TOKEN), 16).await;
    let mut c = SseClient::connect(h.addr, None).await;
    h.stop.send(true).unwrap();
    assert_eq!(c.next().await, None);
    tokio::time::timeout(Duration::from_secs(5), h.server.join())
        .await
        .expect("server did not stop")
        .unwrap();
    assert!(TcpStream::connect(h.addr).await.is_err());
}
