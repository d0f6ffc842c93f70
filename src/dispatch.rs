//! The dispatcher: every message the transport delivers comes through here once (DESIGN.md
//! §1: transport → transaction layer → call router).
//!
//! - Responses go to the call named by their top-Via branch (ours embed the call key).
//! - Requests with our tag in To go to the call named by the tag; unknown → 481.
//! - A new INVITE is checked (Max-Forwards, Require, who is calling, dial plan) and starts
//!   a call actor; its retransmissions and CANCEL go to that actor.
//! - REGISTER goes to the registrar; out-of-dialog OPTIONS is answered here.
//! - REGISTER and out-of-dialog OPTIONS are non-INVITE server transactions of the
//!   dispatcher: retransmissions get the cached response (RFC 3261 §17.2.2) until Timer J.
//!
//! Requests refused before a call exists (400, 403, 404, 420, 480, 483, 501, 503) are
//! answered statelessly: the same request gets the same answer, and an ACK for a refused
//! INVITE has nothing to match and is dropped.

use crate::call::session_timer::{negotiate_as_uas, SessionPolicy, UasDecision};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::call::registry::{key_from_branch, key_from_tag, DeliverError, Undelivered};
use crate::call::{spawn_call, CallEvent, CallTarget, Caller};
use crate::cc::agents::AgentEvent;
use crate::config::Target;
use crate::endpoint::Endpoint;
use crate::incoming::IncomingRequest;
use crate::location::AgentAuth;
use crate::registrar::Transition;
use crate::sip::{HeaderName, Method, ParseError, SipMessage};
use crate::transaction::{Action, Reliability, ServerNonInvite};
use crate::transport::{FramingError, Inbound, InboundSink, Protocol, Source};

/// Option tags handover supports in `Require` (RFC 3261 §8.2.2.3).
const SUPPORTED: &[&str] = &["replaces", "norefersub", "timer"];

/// Routes inbound messages; the transport's sink.
pub struct Dispatcher {
    ep: Arc<Endpoint>,
}

impl InboundSink for Dispatcher {
    fn deliver(&self, inbound: Inbound) {
        match inbound {
            Inbound::Message { data, source } => self.on_message(data, source),
            Inbound::FramingError {
                head,
                error,
                source,
            } => self.on_framing_error(head, error, source),
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Dispatcher {
    pub fn new(ep: Arc<Endpoint>) -> Arc<Self> {
        Arc::new(Dispatcher { ep })
    }

    /// RFC 3261 §18.3: a stream message without Content-Length, or too large, is answered
    /// (400 / 513) when its head names enough to answer, and the connection is closed.
    fn on_framing_error(&self, head: Bytes, error: FramingError, source: Source) {
        self.ep
            .counters
            .parse_errors
            .fetch_add(1, Ordering::Relaxed);
        let (code, reason) = match error {
            FramingError::TooLarge { .. } => (513, "Message Too Large"),
            FramingError::MissingContentLength => (400, "Missing Content-Length"),
            _ => (400, "Bad Content-Length"),
        };
        tracing::debug!(from = %source.remote, %error, "framing error");
        let reply = minimal_response(&head, code, reason);
        let Some(transport) = self.ep.transport() else {
            return;
        };
        match (source.connection, reply) {
            (Some(conn), Some(bytes)) => transport.send_and_close(conn, bytes),
            (Some(conn), None) => transport.send_and_close(conn, Bytes::new()),
            (None, Some(bytes)) => {
                let dest = crate::transport::Destination {
                    protocol: source.protocol,
                    addr: source.remote,
                    connection: None,
                };
                self.ep.send(&dest, bytes);
            }
            (None, None) => {}
        }
    }

    fn on_message(&self, data: Bytes, source: Source) {
        let msg = match SipMessage::parse(data.clone()) {
            Ok(m) => m,
            Err(e) => return self.on_parse_error(&data, e, source),
        };
        tracing::trace!(from = %source.remote, "{}", msg.method().map(|m| m.as_str().to_owned()).unwrap_or_else(|| msg.status().unwrap_or(0).to_string()));
        if msg.is_request() {
            let config = self.ep.config();
            let too_many_headers = msg.headers().count() > config.sip.max_headers;
            // Counting lines is free; only a line with a comma list needs a parse.
            let via_lines = msg.header_values(HeaderName::Via).count();
            let too_many_vias = via_lines > config.limits.max_via
                || (msg.header_values(HeaderName::Via).any(|v| v.contains(','))
                    && msg.vias().is_ok_and(|v| v.len() > config.limits.max_via));
            if too_many_headers || too_many_vias {
                return self.on_parse_error(&data, ParseError::TooManyHeaders, source);
            }
            match IncomingRequest::new(msg, source) {
                Ok(req) => self.on_request(req),
                Err(_) => {
                    // A top Via that does not parse: answer 400 where the request came from
                    // (RFC 4475 §3.1.2.x expects 400, not silence).
                    self.on_parse_error(&data, ParseError::BadHeader(HeaderName::Via), source);
                }
            }
        } else {
            self.on_response(msg, source);
        }
    }

    /// A request that does not parse gets 400 naming the problem when its Via, From, To,
    /// Call-ID and CSeq can still be found; anything else (garbage, bad responses) is
    /// dropped and counted.
    fn on_parse_error(&self, data: &Bytes, error: ParseError, source: Source) {
        self.ep
            .counters
            .parse_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(from = %source.remote, %error, "unparseable message");
        if data.starts_with(b"SIP/") || data.starts_with(b"ACK ") {
            return;
        }
        if let Some(bytes) = minimal_response(data, error.status_code(), error.reason()) {
            let dest = crate::transport::Destination {
                protocol: source.protocol,
                addr: source.remote,
                connection: source.connection,
            };
            self.ep.send(&dest, bytes);
        }
    }

    fn on_response(&self, msg: SipMessage, _source: Source) {
        if let (Some(branch), Some(status)) = (msg.branch(), msg.status()) {
            if branch.starts_with(crate::agent_probe::BRANCH_PREFIX) {
                self.ep.probes().on_response(branch, status, now());
                return;
            }
        }
        let delivered = match msg.branch().and_then(key_from_branch) {
            Some(key) => match self
                .ep
                .calls
                .deliver(key, CallEvent::Response(Box::new(msg)))
            {
                Err(Undelivered::NoCall(_)) => false,
                Ok(()) | Err(Undelivered::Refused(..)) => true,
            },
            None => false,
        };
        if !delivered {
            self.ep
                .counters
                .stray_responses
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reply(
        &self,
        req: &IncomingRequest,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut crate::sip::MessageBuilder),
    ) {
        if code >= 300 {
            self.ep.count_rejected(code);
        }
        let tag = (req.msg.to_tag().is_none() && code > 100).then(|| stateless_tag(&req.msg));
        let mut b = req.response(code, reason, tag.as_deref());
        b.header("Server", &self.ep.user_agent);
        extra(&mut b);
        self.ep.send(&req.response_destination(), b.finish());
    }

    fn on_request(&self, req: IncomingRequest) {
        let Some(method) = req.msg.method().cloned() else {
            return;
        };
        // In-dialog (or at least addressed to one of our tags): the call decides.
        if let Some(tag) = req.msg.to_tag() {
            let req = match key_from_tag(tag) {
                Some(key) => match self
                    .ep
                    .calls
                    .deliver(key, CallEvent::Request(Box::new(req)))
                {
                    Ok(()) => return,
                    Err(Undelivered::Refused(error, event)) => return self.refused(error, event),
                    Err(Undelivered::NoCall(CallEvent::Request(req))) => *req,
                    Err(Undelivered::NoCall(_)) => return,
                },
                None => req,
            };
            if method == Method::Ack {
                self.absorb_retransmission(&req);
            } else if !self.absorb_retransmission(&req) {
                self.answer_local(req, 481, "Call/Transaction Does Not Exist", |_| {});
            }
            return;
        }
        match method {
            Method::Invite => self.on_invite(req),
            Method::Cancel => {
                let from_tag = req.msg.from_tag().unwrap_or_default();
                match self.ep.calls.find_initial(req.msg.call_id(), from_tag) {
                    Some(handle) => self.deliver(handle, req),
                    None => self.reply(&req, 481, "Call/Transaction Does Not Exist", |_| {}),
                }
            }
            Method::Ack => {}
            Method::Register | Method::Options => {
                if self.absorb_retransmission(&req) {
                    return;
                }
                if !self.within_rate(&req) {
                    return;
                }
                if self.check_request(&req).is_none() {
                    return;
                }
                if self.over_transaction_limit() {
                    return self.reply(&req, 503, "Service Unavailable", |b| {
                        b.header("Retry-After", "5");
                    });
                }
                if method == Method::Register {
                    self.on_register(req);
                } else {
                    self.answer_local(req, 200, "OK", |b| {
                        b.header("Allow", crate::call::core::ALLOW);
                        b.header("Accept", "application/sdp");
                        b.header("Supported", "replaces, timer, norefersub");
                    });
                }
            }
            Method::Bye
            | Method::Refer
            | Method::Notify
            | Method::Update
            | Method::Info
            | Method::Prack => self.reply(&req, 481, "Call/Transaction Does Not Exist", |_| {}),
            _ => self.reply(&req, 501, "Not Implemented", |b| {
                b.header("Allow", crate::call::core::ALLOW);
            }),
        }
    }

    /// The per-source rate limit of new requests (`[limits]`); `false` when the request was
    /// answered 503 or dropped.
    fn within_rate(&self, req: &IncomingRequest) -> bool {
        let config = self.ep.config();
        let ip = req.source.remote.ip();
        if !config.limits.limit_trunks && config.trunk_for_source(ip).is_some() {
            return true;
        }
        if self.ep.rate_limiter().allow(ip, now()) {
            return true;
        }
        self.ep.count_rejected(503);
        if config.limits.over_limit == crate::config::OverLimit::Reply {
            self.reply(req, 503, "Service Unavailable", |b| {
                b.header("Retry-After", "5");
            });
        }
        false
    }

    /// RFC 3261 §8.2.1–8.2.2 checks every new request gets (ACK and CANCEL aside): the
    /// Request-URI scheme (416), From and To (400), `Require` (420). The Request-URI on
    /// success; `None` when the request was answered.
    fn check_request(&self, req: &IncomingRequest) -> Option<crate::sip::Uri> {
        let msg = &req.msg;
        let uri = match msg.request_uri() {
            Ok(u) => u,
            Err(e) => {
                self.reply(req, e.status_code(), e.reason(), |_| {});
                return None;
            }
        };
        if let Err(e) = msg.check_from_to() {
            self.reply(req, 400, e.reason(), |_| {});
            return None;
        }
        let unsupported: Vec<String> = msg
            .option_tags(HeaderName::Require)
            .into_iter()
            .filter(|t| !SUPPORTED.contains(&t.as_str()))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.reply(req, 420, "Bad Extension", |b| {
                b.header("Unsupported", &list);
            });
            return None;
        }
        Some(uri)
    }

    fn deliver(&self, handle: crate::call::CallHandle, req: IncomingRequest) {
        if let Err((error, event)) = handle.deliver_or_return(CallEvent::Request(Box::new(req))) {
            self.refused(error, event);
        }
    }

    /// Answers a request a call could not take (an ACK is dropped).
    fn refused(&self, error: DeliverError, event: CallEvent) {
        let CallEvent::Request(req) = event else {
            return;
        };
        if req.msg.method() == Some(&Method::Ack) {
            return; // an ACK is never answered
        }
        match error {
            DeliverError::Busy => {
                self.reply(&req, 503, "Service Unavailable", |b| {
                    b.header("Retry-After", "1");
                });
            }
            DeliverError::Gone => answer_orphan(&self.ep, &req),
        }
    }

    // ------------------------------------------------------------------ local transactions

    /// A retransmission of a request answered by the dispatcher (or by a call that has
    /// ended since) gets the same answer; an ACK completes a lingering INVITE transaction.
    fn absorb_retransmission(&self, req: &IncomingRequest) -> bool {
        let key = linger_key(
            req.msg.branch(),
            req.source.remote,
            req.msg.cseq().method == Method::Invite || req.msg.method() == Some(&Method::Ack),
        );
        self.ep
            .absorb_lingering(&key, req.msg.method() == Some(&Method::Ack), now())
    }

    /// Answers `req` through a non-INVITE server transaction of the dispatcher.
    fn answer_local(
        &self,
        req: IncomingRequest,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut crate::sip::MessageBuilder),
    ) {
        if code >= 300 {
            self.ep.count_rejected(code);
        }
        let tag = req.msg.to_tag().is_none().then(|| stateless_tag(&req.msg));
        let mut b = req.response(code, reason, tag.as_deref());
        b.header("Server", &self.ep.user_agent);
        extra(&mut b);
        let bytes = b.finish();
        let dest = req.response_destination();
        let reliability = match dest.protocol {
            Protocol::Udp => Reliability::Unreliable,
            Protocol::Tcp => Reliability::Reliable,
        };
        let mut machine = ServerNonInvite::new(reliability, self.ep.timers);
        let actions = match machine.respond(code, bytes, now()) {
            Ok(a) => a,
            Err(_) => return,
        };
        for action in &actions {
            if let Action::Transmit(bytes) = action {
                self.ep.send(&dest, bytes.clone());
            }
        }
        if !actions.is_terminated() {
            let key = linger_key(req.msg.branch(), req.source.remote, false);
            let count = self.ep.count_transaction();
            self.ep
                .lingering()
                .insert(std::sync::Arc::new(key), machine.into(), dest, count);
        }
    }

    /// Fires the timers of the transactions no call owns; returns the next deadline.
    pub fn handle_timeouts(&self, now: Instant) -> Option<Instant> {
        let sends = self.ep.lingering().handle_timeouts(now);
        for (dest, bytes) in sends {
            self.ep.send(&dest, bytes);
        }
        self.ep.lingering().next_deadline()
    }

    // ------------------------------------------------------------------ REGISTER

    fn on_register(&self, req: IncomingRequest) {
        let reply = self.ep.location().register(&req, now());
        if let Some((agent, transition)) = &reply.transition {
            let event = match transition {
                Transition::Login => Some(AgentEvent::LoggedIn),
                Transition::Logout => Some(AgentEvent::LoggedOut),
                Transition::Unchanged => None,
            };
            if let Some(event) = event {
                self.ep.agent_event(agent, event);
            }
        }
        let headers = reply.headers;
        self.answer_local(req, reply.code, reply.reason, |b| {
            for (name, value) in &headers {
                b.header(name, value);
            }
        });
    }

    // ------------------------------------------------------------------ INVITE

    fn on_invite(&self, req: IncomingRequest) {
        let msg = &req.msg;
        if let Some(handle) = self
            .ep
            .calls
            .find_initial(msg.call_id(), msg.from_tag().unwrap_or_default())
        {
            return self.deliver(handle, req);
        }
        if !self.within_rate(&req) {
            return;
        }
        match msg.max_forwards() {
            Ok(Some(0)) => return self.reply(&req, 483, "Too Many Hops", |_| {}),
            Ok(_) => {}
            Err(e) => return self.reply(&req, 400, e.reason(), |_| {}),
        }
        let Some(uri) = self.check_request(&req) else {
            return;
        };
        let sessions = SessionPolicy::from_config(&self.ep.config().sip);
        if let UasDecision::TooSmall { min_se_s } = negotiate_as_uas(&req.msg, sessions) {
            // RFC 4028 §8.1: a session interval below our Min-SE is refused with ours.
            return self.reply(&req, 422, "Session Interval Too Small", |b| {
                b.header_fmt("Min-SE", format_args!("{min_se_s}"));
            });
        }
        if self.ep.draining.load(Ordering::Relaxed) {
            return self.reply(&req, 503, "Service Unavailable", |b| {
                b.header("Retry-After", "60");
                b.header("Warning", "399 handover \"shutting down\"");
            });
        }
        if self.ep.counters.active_calls.load(Ordering::Relaxed) >= self.ep.config().sip.max_calls
            || self.over_transaction_limit()
        {
            return self.reply(&req, 503, "Service Unavailable", |b| {
                b.header("Retry-After", "5");
            });
        }
        let Some(caller) = self.classify_caller(&req) else {
            return;
        };
        if req.msg.header(HeaderName::Replaces).is_some() {
            return self.on_replacing_invite(req, caller);
        }
        let dialled = uri.user_str().to_owned();
        let looks_like_number = !dialled.is_empty()
            && dialled
                .trim_start_matches('+')
                .chars()
                .all(|c| c.is_ascii_digit());
        if matches!(caller, Caller::Agent { .. })
            && looks_like_number
            && self.ep.config().target_for_number(&dialled).is_none()
        {
            // Toll-fraud guard (DESIGN.md §2): an agent may dial only configured external
            // numbers and numbers matching `[external] adhoc_patterns`.
            return self.reply(&req, 403, "Forbidden", |b| {
                b.header_fmt(
                    "Warning",
                    format_args!("399 handover \"{dialled} is not an allowed external number\""),
                );
            });
        }
        let Some(target) = self.ep.config().target_for_number(&dialled) else {
            return self.reply(&req, 404, "Not Found", |b| {
                b.header_fmt(
                    "Warning",
                    format_args!(
                        "399 handover \"no agent, queue, IVR or external number is {dialled}\""
                    ),
                );
            });
        };
        let Some(call_target) = self.resolve_target(&req, &caller, &target) else {
            return;
        };
        if let Err(req) = spawn_call(&self.ep, req, caller, call_target) {
            // Raced with a retransmission of the same INVITE: hand it to the winner.
            if let Some(handle) = self
                .ep
                .calls
                .find_initial(req.msg.call_id(), req.msg.from_tag().unwrap_or_default())
            {
                self.deliver(handle, *req);
            }
        }
    }

    /// `[limits] max_transactions` reached: new work is refused until transactions finish.
    fn over_transaction_limit(&self) -> bool {
        self.ep.counters.transactions.load(Ordering::Relaxed)
            >= self.ep.config().limits.max_transactions
    }

    /// An INVITE with Replaces (RFC 3891): the call owning the named dialog takes it (the
    /// tags handover puts on its dialogs embed the call's key). Only agents replace their
    /// own dialogs.
    fn on_replacing_invite(&self, req: IncomingRequest, caller: Caller) {
        let Caller::Agent { id } = caller else {
            return self.reply(&req, 403, "Forbidden", |b| {
                b.header(
                    "Warning",
                    "399 handover \"only agents may replace a dialog\"",
                );
            });
        };
        let replaces = match req.msg.replaces() {
            Ok(Some(r)) => r,
            Ok(None) => return self.reply(&req, 400, "Bad Replaces", |_| {}),
            Err(e) => return self.reply(&req, 400, e.reason(), |_| {}),
        };
        let call = crate::call::registry::key_from_tag(&replaces.to_tag)
            .or_else(|| crate::call::registry::key_from_tag(&replaces.from_tag))
            .and_then(|k| self.ep.calls.get(k));
        let Some(call) = call else {
            return self.reply(&req, 481, "Call/Transaction Does Not Exist", |_| {});
        };
        let event = CallEvent::Replace(Box::new(crate::call::ReplaceRequest {
            req: req.clone(),
            agent: id,
        }));
        if call.deliver(event).is_err() {
            self.reply(&req, 481, "Call/Transaction Does Not Exist", |_| {});
        }
    }

    /// DESIGN.md §2 "Who is calling": a registered agent's flow, else a trunk source, else
    /// an agent that authenticates (407), else refused (403).
    fn classify_caller(&self, req: &IncomingRequest) -> Option<Caller> {
        let now = now();
        let agent = self.ep.location().agent_for_source(req.source.remote, now);
        if let Some(id) = agent {
            return Some(Caller::Agent { id });
        }
        // A phone that does not register is known by its static contact's address.
        let config = self.ep.config();
        if let Some(a) = config.agent_at_static_contact(req.source.remote) {
            return Some(Caller::Agent { id: a.id.clone() });
        }
        if let Some(trunk) = config.trunk_for_source(req.source.remote.ip()) {
            return Some(Caller::Customer {
                trunk: trunk.name.clone(),
            });
        }
        let from_user = req
            .msg
            .from()
            .map(|f| f.uri.user_str().to_owned())
            .unwrap_or_default();
        if config.agent(&from_user).is_some() {
            let auth = self
                .ep
                .location()
                .authenticate_agent(&req.msg, req.source.remote.ip(), now);
            match auth {
                AgentAuth::Agent(id) => return Some(Caller::Agent { id }),
                AgentAuth::Challenge(reply) => {
                    let headers = reply.headers;
                    self.reply(req, reply.code, reply.reason, |b| {
                        for (n, v) in &headers {
                            b.header(n, v);
                        }
                    });
                    return None;
                }
            }
        }
        self.reply(req, 403, "Forbidden", |b| {
            b.header(
                "Warning",
                "399 handover \"source is neither a trunk nor an agent\"",
            );
        });
        None
    }

    /// Turns a dial-plan target into the contacts to ring; answers the caller itself when
    /// there is nobody to ring.
    fn resolve_target(
        &self,
        req: &IncomingRequest,
        caller: &Caller,
        target: &Target,
    ) -> Option<CallTarget> {
        let presented_caller = req
            .msg
            .party_without_tag(HeaderName::From)
            .or_else(|| {
                let mut from = req.msg.from().ok()?;
                from.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
                Some(from.to_string())
            })
            .unwrap_or_default();
        let from_agent = matches!(caller, Caller::Agent { .. });
        let customer = (!from_agent).then(|| presented_caller.clone());
        match crate::cc::dialplan::call_target(
            &self.ep,
            target,
            presented_caller,
            customer,
            from_agent,
            now(),
        ) {
            Ok(t) => Some(t),
            Err(refuse) => {
                self.reply(req, refuse.code, refuse.reason, |b| {
                    if let Some(w) = &refuse.warning {
                        b.header("Warning", w);
                    }
                });
                None
            }
        }
    }
}

/// A request for a call that has just ended: a retransmission the call's lingering
/// transactions absorb, else 481 (ACKs are dropped).
pub fn answer_orphan(ep: &Endpoint, req: &IncomingRequest) {
    let is_ack = req.msg.method() == Some(&Method::Ack);
    let invite = is_ack || req.msg.cseq().method == Method::Invite;
    let key = linger_key(req.msg.branch(), req.source.remote, invite);
    if ep.absorb_lingering(&key, is_ack, now()) || is_ack {
        return;
    }
    ep.count_rejected(481);
    let tag = req.msg.to_tag().is_none().then(|| stateless_tag(&req.msg));
    let mut b = req.response(481, "Call/Transaction Does Not Exist", tag.as_deref());
    b.header("Server", &ep.user_agent);
    ep.send(&req.response_destination(), b.finish());
}

/// The key of a transaction no call owns: branch, source address and INVITE-or-not (ACK
/// and an INVITE share a key; CANCEL shares the INVITE's branch but not its kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LingerKey {
    branch: Box<str>,
    remote: std::net::SocketAddr,
    invite: bool,
}

impl LingerKey {
    pub fn new(branch: Box<str>, remote: std::net::SocketAddr, invite: bool) -> Self {
        LingerKey {
            branch,
            remote,
            invite,
        }
    }
}

/// The [`LingerKey`] of a request's transaction (no branch: the empty one).
pub fn linger_key(branch: Option<&str>, remote: std::net::SocketAddr, invite: bool) -> LingerKey {
    LingerKey::new(branch.unwrap_or_default().into(), remote, invite)
}

/// The To tag of a response sent without a transaction: the same request always gets the same
/// tag (RFC 3261 §8.2.7), so a retransmission is answered identically. The `s` prefix keeps it
/// apart from call tags, which start with a hex call key.
fn stateless_tag(msg: &SipMessage) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    msg.branch().hash(&mut h);
    msg.from_tag().hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.cseq().seq.hash(&mut h);
    format!("s{:016x}", h.finish())
}

/// A response to a message that did not parse: built from whatever Via, From, To, Call-ID
/// and CSeq lines can be found in its head (RFC 3261 §8.2.2 still wants an answer).
fn minimal_response(head: &[u8], code: u16, reason: &str) -> Option<Bytes> {
    let text = std::str::from_utf8(head.get(..head.len().min(8192))?).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    if first.starts_with("SIP/") || first.starts_with("ACK ") {
        return None;
    }
    let mut found: [Option<&str>; 5] = [None; 5];
    for line in lines.take(256) {
        if line.is_empty() {
            break;
        }
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let slot = match HeaderName::from_bytes(name.trim().as_bytes()) {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        if let Some(s) = found.get_mut(slot) {
            if s.is_none() {
                *s = Some(line);
            }
        }
    }
    // Via and CSeq are what the client matches a response on (RFC 3261 §17.1.3); answer
    // whenever they are there, copying From, To and Call-ID when present.
    if found[0].is_none() || found[4].is_none() {
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in found.iter().flatten() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}
