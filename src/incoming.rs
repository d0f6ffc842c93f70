//! A request as it arrived: the parsed message, where it came from, and what RFC 3261
//! §18.2.1 / RFC 3581 say about answering it.
//!
//! The server transport records where a request really came from: `received` when the
//! top Via's host differs from the source IP, and `rport` (RFC 3581 §4) when the client asked
//! for it. Responses go back per RFC 3261 §18.2.2: over the same connection for TCP, and for
//! UDP to the source address (rport) or to the received IP and the Via port.

use std::net::SocketAddr;

use crate::sip::{response_to, HeaderName, Host, MessageBuilder, SipMessage, Via};
use crate::transport::{Destination, Protocol, Source};

/// A parsed request plus its transport facts.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    pub msg: SipMessage,
    pub source: Source,
    /// The top Via as parsed (validated by the dispatcher before the request gets here).
    pub via: Via,
}

impl IncomingRequest {
    /// Parses the top Via; a request without a usable Via cannot be answered.
    pub fn new(msg: SipMessage, source: Source) -> Result<Self, crate::sip::ParseError> {
        let via = msg.top_via()?;
        Ok(IncomingRequest { msg, source, via })
    }

    /// Where responses to this request go (RFC 3261 §18.2.2, RFC 3581 §4).
    pub fn response_destination(&self) -> Destination {
        response_destination(&self.via, &self.source)
    }

    /// The top Via with `received`/`rport` filled in, as it must appear in responses.
    pub fn response_top_via(&self) -> String {
        let mut via = self.via.clone();
        let source_ip = self.source.remote.ip();
        let host_is_source = matches!(via.host.ip(), Some(ip) if ip == source_ip);
        let wants_rport = via.rport().is_some();
        via.params.retain(|p| {
            !(p.name.eq_ignore_ascii_case("received")
                || (wants_rport && p.name.eq_ignore_ascii_case("rport")))
        });
        if !host_is_source || wants_rport {
            via.params.push(crate::sip::Param::new(
                "received",
                Some(&source_ip.to_string()),
            ));
        }
        if wants_rport {
            via.params.push(crate::sip::Param::new(
                "rport",
                Some(&self.source.remote.port().to_string()),
            ));
        }
        via.to_string()
    }

    /// A response to this request with the top Via fixed up; `to_tag` is added to To when the
    /// request's To has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> MessageBuilder {
        let needs_fixup = self.via.rport().is_some()
            || !matches!(self.via.host.ip(), Some(ip) if ip == self.source.remote.ip());
        if !needs_fixup {
            return response_to(&self.msg, code, reason, to_tag);
        }
        let mut b = MessageBuilder::response(code, reason);
        b.header("Via", &self.response_top_via());
        // Every further Via value, in order; the first value of the first line is replaced.
        if let Ok(vias) = self.msg.vias() {
            for via in vias.iter().skip(1) {
                b.header("Via", &via.to_string());
            }
        }
        b.copy_headers(&self.msg, HeaderName::From);
        match (to_tag, self.msg.to_tag()) {
            (Some(tag), None) => {
                if let Some(to) = self.msg.header(HeaderName::To) {
                    b.header_fmt("To", format_args!("{to};tag={tag}"));
                }
            }
            _ => {
                b.copy_headers(&self.msg, HeaderName::To);
            }
        }
        b.copy_headers(&self.msg, HeaderName::CallId);
        b.copy_headers(&self.msg, HeaderName::CSeq);
        b
    }
}

/// RFC 3261 §18.2.2 with RFC 3581: where to send a response to a request whose top Via is
/// `via` and that arrived from `source`.
pub fn response_destination(via: &Via, source: &Source) -> Destination {
    match source.protocol {
        Protocol::Tcp => Destination {
            protocol: Protocol::Tcp,
            addr: source.remote,
            connection: source.connection,
        },
        Protocol::Udp => {
            let port = if via.rport().is_some() {
                source.remote.port()
            } else {
                via.port.unwrap_or(5060)
            };
            Destination {
                protocol: Protocol::Udp,
                addr: SocketAddr::new(source.remote.ip(), port),
                connection: None,
            }
        }
    }
}

/// The protocol a URI asks for (`;transport=tcp`), defaulting to UDP.
pub fn uri_protocol(uri: &crate::sip::Uri) -> Protocol {
    match uri.param("transport") {
        Some(Some(t)) if t.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        _ => Protocol::Udp,
    }
}

/// Resolves a SIP URI with an IP-literal host to a destination (no DNS: handover addresses
/// trunks, IVRs and static contacts by IP, which the config validates).
pub fn uri_destination(uri: &crate::sip::Uri) -> Option<Destination> {
    let ip = match &uri.host {
        Host::V4(ip) => std::net::IpAddr::V4(*ip),
        Host::V6(ip) => std::net::IpAddr::V6(*ip),
        Host::Domain(d) => d.parse().ok()?,
    };
    Some(Destination {
        protocol: uri_protocol(uri),
        addr: SocketAddr::new(ip, uri.port.unwrap_or(5060)),
        connection: None,
    })
}
