//! One dialog of a call as handover sees it (RFC 3261 §12): the identifiers, parties, remote
//! target, route set and CSeq counters of one leg, and the requests built from them.
//!
//! handover is a UA on every leg: on the caller's leg it is the UAS (the dialog is built from
//! the INVITE, §12.1.1), on every leg it starts it is the UAC (§12.1.2). Requests always go
//! to the leg's *flow* — the address and connection the peer used (for the caller) or
//! registered from (for an agent) — so NATed and TCP phones are reached where they are
//! (RFC 5626 in spirit; SIP-NOTES.md: reach TCP phones over the connection they opened).

use crate::endpoint::Endpoint;
use crate::incoming::IncomingRequest;
use bytes::{BufMut, BytesMut};

use crate::sip::{put_decimal, HeaderName, HostPort, MessageBuilder, Method, NameAddr, ParseError};
use crate::transport::{Destination, Protocol};

/// Identifiers and routing state of one dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our party as a name-addr without tag (From of our requests).
    pub local_party: String,
    /// The peer as a name-addr without tag (To of our requests).
    pub remote_party: String,
    /// Request-URI of our requests: the peer's Contact.
    pub remote_target: String,
    /// Route headers for our requests, in order.
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    /// Where our requests go.
    pub flow: Destination,
}

/// `addr` without its `tag` parameter, as a header value.
fn without_tag(mut addr: NameAddr) -> String {
    addr.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
    addr.to_string()
}

impl Dialog {
    /// The UAS side of a dialog created by `req` (RFC 3261 §12.1.1).
    ///
    /// The dispatcher has checked that From and To parse (every initial INVITE passes
    /// `Dispatcher::check_request`), so they are kept as written, without their tags, and
    /// parsed again only where the text cannot be cut safely
    /// ([`SipMessage::party_without_tag`](crate::sip::SipMessage::party_without_tag)), or for
    /// the remote target of a request without Contact.
    pub fn from_request(req: &IncomingRequest, local_tag: String) -> Result<Dialog, ParseError> {
        let msg = &req.msg;
        let local_party = match msg.party_without_tag(HeaderName::To) {
            Some(party) => party,
            None => without_tag(msg.to()?),
        };
        let remote_party = match msg.party_without_tag(HeaderName::From) {
            Some(party) => party,
            None => without_tag(msg.from()?),
        };
        let remote_target = match msg.first_contact_uri() {
            Some(target) => target,
            None => msg.from()?.uri.to_string(),
        };
        let route_set = msg
            .record_routes()?
            .into_iter()
            .map(|r| r.to_string())
            .collect();
        let flow = match req.source.protocol {
            Protocol::Tcp => Destination {
                protocol: Protocol::Tcp,
                addr: req.source.remote,
                connection: req.source.connection,
            },
            Protocol::Udp => Destination {
                protocol: Protocol::Udp,
                addr: req.source.remote,
                connection: None,
            },
        };
        Ok(Dialog {
            call_id: msg.call_id().to_owned(),
            local_tag,
            remote_tag: msg.from_tag().map(str::to_owned),
            local_party,
            remote_party,
            remote_target,
            route_set,
            local_cseq: fastrand::u32(1..10_000),
            remote_cseq: Some(msg.cseq().seq),
            flow,
        })
    }

    /// The UAC side of a dialog handover starts (RFC 3261 §12.1.2); completed by
    /// [`Dialog::confirm`] when the peer answers.
    pub fn outgoing(
        call_id: String,
        local_tag: String,
        local_party: String,
        remote_party: String,
        remote_target: String,
        flow: Destination,
    ) -> Dialog {
        Dialog {
            call_id,
            local_tag,
            remote_tag: None,
            local_party,
            remote_party,
            remote_target,
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            flow,
        }
    }

    /// Records the peer's tag, Contact and (reversed) Record-Route from a response that
    /// creates or confirms the dialog (RFC 3261 §12.1.2).
    pub fn confirm(&mut self, resp: &crate::sip::SipMessage) {
        if let Some(tag) = resp.to_tag() {
            if self.remote_tag.as_deref() != Some(tag) {
                self.remote_tag = Some(tag.to_owned());
            }
        }
        if let Some(target) = resp.first_contact_uri_if_changed(&self.remote_target) {
            self.remote_target = target;
        }
        if let Ok(rr) = resp.record_routes() {
            self.route_set = rr.into_iter().rev().map(|r| r.to_string()).collect();
        }
    }

    /// A target refresh (re-INVITE/UPDATE with Contact, RFC 3261 §12.2.2).
    pub fn refresh_target(&mut self, req: &crate::sip::SipMessage) {
        if let Some(target) = req.first_contact_uri_if_changed(&self.remote_target) {
            self.remote_target = target;
        }
    }

    /// `true` if `msg` (a request received on this leg) belongs to this dialog.
    pub fn matches_request(&self, msg: &crate::sip::SipMessage) -> bool {
        msg.call_id() == self.call_id
            && msg.to_tag() == Some(self.local_tag.as_str())
            && (self.remote_tag.is_none() || msg.from_tag() == self.remote_tag.as_deref())
    }

    /// Next CSeq number for a new request (not ACK/CANCEL, which reuse the INVITE's).
    pub fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        self.local_cseq
    }

    /// A new in-dialog request (next CSeq) to the remote target: see [`Dialog::request`].
    pub fn next_request(&mut self, ep: &Endpoint, method: &Method, branch: &str) -> MessageBuilder {
        let cseq = self.next_cseq();
        let target = self.remote_target.clone();
        self.request(ep, method, &target, branch, cseq)
    }

    /// Start line, Via, Max-Forwards, Route, From, To, Call-ID, CSeq, and Contact for
    /// methods that carry one. The caller adds further headers and the body.
    pub fn request(
        &self,
        ep: &Endpoint,
        method: &Method,
        request_uri: &str,
        branch: &str,
        cseq: u32,
    ) -> MessageBuilder {
        let mut b = MessageBuilder::request(method, request_uri);
        ep.add_via(&mut b, &self.flow, branch);
        b.header("Max-Forwards", "70");
        for route in &self.route_set {
            b.header("Route", route);
        }
        let tagged = |out: &mut BytesMut, party: &str, tag: &str| {
            out.put_slice(party.as_bytes());
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
        };
        b.header_with("From", |out| {
            tagged(out, &self.local_party, &self.local_tag)
        });
        match &self.remote_tag {
            Some(tag) => b.header_with("To", |out| tagged(out, &self.remote_party, tag)),
            None => b.header("To", &self.remote_party),
        };
        b.header("Call-ID", &self.call_id);
        let cseq_method = if *method == Method::Ack {
            "ACK"
        } else {
            method.as_str()
        };
        b.header_with("CSeq", |out| {
            put_decimal(out, u64::from(cseq));
            out.put_u8(b' ');
            out.put_slice(cseq_method.as_bytes());
        });
        if matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Refer | Method::Notify
        ) {
            self.add_contact(ep, &mut b);
        }
        b
    }

    /// Appends handover's Contact on this leg to `b` (`<sip:handover@addr:port>`, with
    /// `;transport=tcp` over TCP).
    pub fn add_contact(&self, ep: &Endpoint, b: &mut MessageBuilder) {
        let local = HostPort(ep.local_addr_for(&self.flow));
        b.header_with("Contact", |out| {
            out.put_slice(b"<sip:handover@");
            local.put(out);
            if matches!(self.flow.protocol, Protocol::Tcp) {
                out.put_slice(b";transport=tcp");
            }
            out.put_u8(b'>');
        });
    }
}

/// Copies the headers that describe the body (Content-Type aside, which `body()` writes)
/// and application data that must travel with a relayed request or response.
pub fn copy_passthrough_headers(b: &mut MessageBuilder, msg: &crate::sip::SipMessage) {
    for (name, raw_name, value) in msg.headers() {
        let pass = match name {
            HeaderName::Other => {
                let n = raw_name;
                n.len() > 2 && n.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
                    || n.eq_ignore_ascii_case("User-to-User")
                    || n.eq_ignore_ascii_case("Content-Disposition")
                    || n.eq_ignore_ascii_case("Info-Package")
                    || n.eq_ignore_ascii_case("Subject")
            }
            HeaderName::Reason | HeaderName::CallInfo => true,
            _ => false,
        };
        if pass {
            b.header(raw_name, &value);
        }
    }
}
