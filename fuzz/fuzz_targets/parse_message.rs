//! Fuzz target: the SIP codec on arbitrary bytes (DESIGN.md §5: no panic on any input).
//!
//! Parses, then exercises every typed accessor, builds a response with `response_to`,
//! relays the message through `MessageBuilder` the way the B2BUA does, and re-parses what
//! the builder wrote: a message that parsed once must still parse after relaying, with the
//! same Call-ID and CSeq.

#![no_main]

use bytes::Bytes;
use handover::sip::{response_to, HeaderName, MessageBuilder, SipMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = SipMessage::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = msg.is_request();
    let _ = msg.method();
    let _ = msg.status();
    let _ = msg.reason();
    let _ = msg.request_uri_str();
    if let Ok(uri) = msg.request_uri() {
        let _ = uri.host_port();
        let _ = uri.socket_addr();
        let _ = uri.user_str();
        let _ = uri.replaces();
        let _ = uri.header("Replaces");
        let _ = uri.param("transport");
    }
    for (name, written, value) in msg.headers() {
        let _ = (name, written.len(), value.len());
        let _ = msg.header_named(written);
    }
    let _ = msg.body();
    let _ = msg.call_id();
    let _ = msg.cseq();
    let _ = msg.from();
    let _ = msg.to();
    let _ = msg.from_tag();
    let _ = msg.to_tag();
    let _ = msg.vias();
    if let Ok(v) = msg.top_via() {
        let _ = v.branch();
        let _ = v.rport();
        let _ = v.received();
        let _ = v.sent_by();
        let _ = v.to_string();
    }
    let _ = msg.branch();
    let _ = msg.contacts();
    let _ = msg.routes();
    let _ = msg.record_routes();
    let _ = msg.max_forwards();
    let _ = msg.expires();
    let _ = msg.min_se();
    let _ = msg.content_type();
    for h in [
        HeaderName::Require,
        HeaderName::Supported,
        HeaderName::ProxyRequire,
        HeaderName::Unsupported,
    ] {
        let _ = msg.option_tags(h);
    }
    if let Ok(Some(r)) = msg.refer_to() {
        let _ = r.uri.replaces();
        let _ = r.tag();
    }
    let _ = msg.referred_by();
    let _ = msg.replaces();
    let _ = msg.session_expires();

    // A response as the dispatcher builds it; it must parse whenever the request's
    // mandatory headers were copied (they were validated by `parse`).
    if msg.is_request() {
        let resp = response_to(&msg, 400, "Bad Request", Some("fuzztag")).finish();
        let again = SipMessage::parse(resp.clone())
            .unwrap_or_else(|e| panic!("response_to output does not parse: {e:?}\n{resp:?}"));
        assert_eq!(again.call_id(), msg.call_id());
        assert_eq!(again.status(), Some(400));
    }

    // A relay: the start line rebuilt, every header copied byte for byte except
    // Content-Length, the body re-attached with a computed length.
    let relay = match (msg.method(), msg.status()) {
        (Some(m), _) => MessageBuilder::request(m, msg.request_uri_str().unwrap_or("")),
        (None, Some(code)) => MessageBuilder::response(code, msg.reason().unwrap_or("")),
        (None, None) => return,
    };
    let mut relay = relay;
    relay.copy_headers_except(&msg, &[HeaderName::ContentType]);
    let body = msg.body();
    let ct = msg
        .content_type()
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let out = relay.body(&ct, &body);
    let again = SipMessage::parse(out.clone())
        .unwrap_or_else(|e| panic!("relayed message does not parse: {e:?}\n{out:?}"));
    assert_eq!(again.call_id(), msg.call_id());
    assert_eq!(again.cseq(), msg.cseq());
    assert_eq!(again.body(), body);
});
