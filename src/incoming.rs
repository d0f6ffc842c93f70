//! A request as it arrived: the parsed message, where it came from, and what RFC 3261
//! §18.2.1 / RFC 3581 say about answering it.
//!
//! The server transport records where a request really came from: `received` when the
//! top Via's host differs from the source IP, and `rport` (RFC 3581 §4) when the client asked
//! for it. Responses go back per RFC 3261 §18.2.2: over the same connection for TCP, and for
//! UDP to the source address (rport) or to the received IP and the Via port.

use std::cell::OnceCell;
use std::net::SocketAddr;

use crate::sip::{response_to, HeaderName, Host, MessageBuilder, SentBy, SipMessage, Via};
use crate::transport::{Destination, Protocol, Source};

/// A parsed request plus its transport facts.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    pub msg: SipMessage,
    pub source: Source,
    /// What answering needs of the top Via (the whole value is checked when the request is
    /// read).
    pub via: SentBy,
    /// The Via values of a response: the top one with `received`/`rport` filled in, then the
    /// others as written. Built for the first response that needs them and reused by the
    /// next (100, 180 and 200 of one INVITE). `None` if the top one does not parse (which
    /// `new`'s check rules out) or there are more than a list may hold.
    response_vias: OnceCell<Option<Vec<String>>>,
}

impl IncomingRequest {
    /// Parses the top Via; a request without a usable Via cannot be answered.
    pub fn new(msg: SipMessage, source: Source) -> Result<Self, crate::sip::ParseError> {
        let via = msg.top_sent_by()?;
        Ok(IncomingRequest {
            msg,
            source,
            via,
            response_vias: OnceCell::new(),
        })
    }

    /// Where responses to this request go (RFC 3261 §18.2.2, RFC 3581 §4).
    pub fn response_destination(&self) -> Destination {
        response_destination(&self.via, &self.source)
    }

    /// A response to this request with the top Via fixed up; `to_tag` is added to To when the
    /// request's To has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> MessageBuilder {
        // RFC 3261 §18.2.1 / RFC 3581 §4: `received` when the Via's host is not the source
        // address, `received` and `rport` when the client asked for rport.
        let needs_fill_in = self.via.rport || self.via.ip != Some(self.source.remote.ip());
        if !needs_fill_in {
            return response_to(&self.msg, code, reason, to_tag);
        }
        let vias = self.response_vias.get_or_init(|| {
            // Every Via value in order; only the top one is read (and filled in): a proxy's
            // Via below it goes back as it came, even one handover's parser would refuse.
            let mut vias = self.msg.via_texts().ok()?;
            let top = vias.first_mut()?;
            *top = fill_in_source(Via::parse(top).ok()?, &self.source);
            Some(vias)
        });
        let Some(vias) = vias else {
            return response_to(&self.msg, code, reason, to_tag);
        };
        let mut b = MessageBuilder::response(code, reason);
        for via in vias {
            b.header("Via", via);
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

/// `via` with `received` and, when asked for, `rport` filled in from where the request came
/// from; for a Via that needs it (see [`IncomingRequest::response`]).
fn fill_in_source(mut via: Via, source: &Source) -> String {
    let wants_rport = via.rport().is_some();
    via.params.retain(|p| {
        !(p.name.eq_ignore_ascii_case("received")
            || (wants_rport && p.name.eq_ignore_ascii_case("rport")))
    });
    via.params.push(crate::sip::Param::new(
        "received",
        Some(&source.remote.ip().to_string()),
    ));
    if wants_rport {
        via.params.push(crate::sip::Param::new(
            "rport",
            Some(&source.remote.port().to_string()),
        ));
    }
    via.to_string()
}

/// RFC 3261 §18.2.2 with RFC 3581: where to send a response to a request whose top Via is
/// `via` and that arrived from `source`.
pub fn response_destination(via: &SentBy, source: &Source) -> Destination {
    match source.protocol {
        Protocol::Tcp => Destination {
            protocol: Protocol::Tcp,
            addr: source.remote,
            connection: source.connection,
        },
        Protocol::Udp => {
            let port = if via.rport {
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(via: &str, remote: &str) -> IncomingRequest {
        request_below(via, "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKproxy", remote)
    }

    /// A request whose top Via is `via` and whose second Via line is `below`.
    fn request_below(via: &str, below: &str, remote: &str) -> IncomingRequest {
        let text = format!(
            "INVITE sip:2001@192.0.2.1 SIP/2.0\r\nVia: {via}\r\n\
             Via: {below}\r\n\
             From: <sip:1001@example.com>;tag=a\r\nTo: <sip:2001@192.0.2.1>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = SipMessage::parse(Bytes::from(text)).unwrap();
        let source = Source {
            protocol: Protocol::Udp,
            remote: remote.parse().unwrap(),
            local: "192.0.2.1:5060".parse().unwrap(),
            connection: None,
        };
        IncomingRequest::new(msg, source).unwrap()
    }

    fn vias(response: Bytes) -> Vec<String> {
        let msg = SipMessage::parse(response).unwrap();
        msg.header_values(HeaderName::Via)
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn responses_carry_where_the_request_came_from() {
        // Behind NAT, asking for rport: both filled in, on every response, the same.
        let nat = request(
            "SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bKa",
            "203.0.113.9:40000",
        );
        for code in [100, 180, 200] {
            assert_eq!(
                vias(nat.response(code, "X", Some("t")).finish()),
                [
                    "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa;received=203.0.113.9;rport=40000",
                    "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKproxy",
                ]
            );
        }
        assert_eq!(
            nat.response_destination().addr,
            "203.0.113.9:40000".parse().unwrap()
        );
        // Another host than the source, no rport: `received`, and the Via's port.
        let moved = request(
            "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKb",
            "203.0.113.9:40000",
        );
        assert_eq!(
            vias(moved.response(180, "Ringing", None).finish())[0],
            "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKb;received=203.0.113.9"
        );
        assert_eq!(
            moved.response_destination().addr,
            "203.0.113.9:5062".parse().unwrap()
        );
        // From the Via's own host but another port, asking for rport: the port it came from.
        let natted_port = request(
            "SIP/2.0/UDP 203.0.113.9:5070;rport;branch=z9hG4bKd",
            "203.0.113.9:40000",
        );
        assert_eq!(
            vias(natted_port.response(200, "OK", None).finish())[0],
            "SIP/2.0/UDP 203.0.113.9:5070;branch=z9hG4bKd;received=203.0.113.9;rport=40000"
        );
        // A proxy's Via below that handover's parser refuses (an empty parameter name), and
        // a comma list: the top one filled in, every other one back as it came, in order.
        let odd = request_below(
            "SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bKe",
            "SIP/2.0/UDP 198.51.100.7;;branch=z9hG4bKodd , SIP/2.0/TCP edge.example;branch=z9hG4bKf",
            "203.0.113.9:40000",
        );
        assert_eq!(
            vias(odd.response(180, "Ringing", None).finish()),
            [
                "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKe;received=203.0.113.9;rport=40000",
                "SIP/2.0/UDP 198.51.100.7;;branch=z9hG4bKodd",
                "SIP/2.0/TCP edge.example;branch=z9hG4bKf",
            ]
        );
        // Sent from where its Via says, no rport: copied as written.
        let direct = request(
            "SIP/2.0/UDP 203.0.113.9:5070 ; branch=z9hG4bKc",
            "203.0.113.9:5070",
        );
        assert_eq!(
            vias(direct.response(200, "OK", None).finish())[0],
            "SIP/2.0/UDP 203.0.113.9:5070 ; branch=z9hG4bKc"
        );
    }
}
