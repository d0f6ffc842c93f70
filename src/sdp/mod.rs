//! SDP for a signalling-only B2BUA: validate and inspect what the parties send, and rewrite
//! only what the B2BUA must own. Media flows end to end between the parties.
//!
//! # Bodies (RFC 8866, which replaces RFC 4566)
//! An SDP body is a list of `<type>=<value>` lines (§5): a session part (`v= o= s= [i= u= e=
//! p=] [c=] [b=] t= [r= z=] a=*`) and zero or more media sections, each starting at an `m=`
//! line (`m= [i=] [c=] [b=] a=*`). Attributes at session level apply to every section that
//! does not override them (§5.13), which is how a session-level `a=sendonly` holds them all.
//!
//! # Layout
//! - [`inspect()`](inspect()) (`inspect.rs`, `validate.rs`): validates a body — handover's own
//!   line check plus webrtc-sdp 0.3 — and returns an owned [`SdpSummary`]: media kinds,
//!   ports, protocols, formats and codecs, effective direction, connection address, the
//!   RFC 2543 `c=0.0.0.0` hold flag. A refusal is an [`SdpError`], whose
//!   [`warning_value`](SdpError::warning_value) fits `Warning:` in the 488 answer
//!   (RFC 3261 §20.43). [`check()`](check()) validates the same way without building the
//!   summary, for the call path. The module doc of `inspect.rs` lists what is accepted and why
//!   (bodies without `t=` are relayed; `k=` is not). `shape.rs` remembers, per thread, the
//!   shapes of bodies webrtc-sdp accepted (the body with its per-call fields masked: `o=`
//!   session id, version and address, `c=` address, `m=` port), so that a trunk's or a phone's
//!   usual offer is parsed by it once, not on every call.
//! - `rewrite.rs`: a line-preserving editor, never a re-serialiser (webrtc-sdp output loses
//!   `a=crypto`, T.38 `m=image … udptl`, MSRP sections and unknown attributes):
//!   [`LegSdpOrigin`] gives each leg its own `o=` line and RFC 3264 §8 version (a B2BUA is
//!   the SDP originator on every leg it terminates — RFC 3725 §3 — so each leg must see one
//!   stable origin even when the far party changes on transfer); [`set_direction`] rewrites
//!   the direction of every active section for hold/resume (RFC 3264 §8.4).
//! - `direction.rs`: [`Direction`] and the offer/answer mapping (RFC 3264 §6.1).
//!
//! # Hold / resume, as the call core uses it
//! ```text
//! offer  = set_direction(&leg.last_sent()?, SendOnly)   // hold
//! wire   = leg.apply(&offer, false)                      // o= version + 1 (body changed)
//! answer expected with answer_direction(SendOnly) = RecvOnly
//! offer  = set_direction(&wire, SendRecv); leg.apply(&offer, false)   // resume, version + 1
//! ```

mod direction;
mod error;
mod inspect;
mod lines;
mod rewrite;
mod shape;
mod validate;

pub use direction::{answer_direction, Direction};
pub use error::{LineFault, SdpError, WARN_AGENT, WARN_MEDIA_FORMAT, WARN_MEDIA_TYPE, WARN_MISC};
pub use inspect::{
    check, inspect, Codec, Connection, MediaKind, MediaSummary, SdpSummary, MAX_FORMATS, MAX_MEDIA,
    MAX_SDP_BYTES,
};
pub use rewrite::{
    set_direction, InvalidUsername, LegSdpOrigin, DEFAULT_USERNAME, INITIAL_VERSION,
};
