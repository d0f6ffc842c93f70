//! The SIP message codec (RFC 3261 §7 message format, §20 header fields, §25 grammar;
//! RFC 3891 Replaces, RFC 3515 Refer-To, RFC 4028 Session-Expires).
//!
//! Zero-copy: [`SipMessage::parse`] indexes one `Bytes` into byte ranges; header values are
//! handed out as `&str`/`Cow` slices and typed parsers ([`Uri`], [`NameAddr`], [`Via`],
//! [`CSeq`], [`Replaces`], [`SessionExpires`]) run on demand. [`MessageBuilder`] writes
//! messages and relays received headers byte for byte. Stream framing lives in the transport
//! layer; Digest parameters in the registrar.
//!
//! ```text
//!  bytes ──parse──▶ SipMessage { start line, [HeaderEntry ranges], body }
//!                      │  call_id() cseq() branch() from_tag() to_tag()   (free)
//!                      │  from() to() vias() contacts() refer_to() ...    (on demand)
//!                      ▼
//!  response_to(req) / MessageBuilder ──copy_headers*──▶ Bytes
//! ```

mod builder;
mod error;
mod header;
mod ids;
mod message;
mod method;
mod name_addr;
mod scan;
mod typed;
mod uri;
mod via;

#[cfg(test)]
mod message_tests;

pub(crate) use builder::put_decimal;
pub use builder::{default_reason, response_to, MessageBuilder};
pub use error::ParseError;
pub use header::HeaderName;
pub use ids::{new_branch, new_branch_with, new_call_id, new_call_id_with, new_tag, new_tag_with};
pub use message::{SipMessage, MAX_HEADERS};
pub use method::Method;
pub use name_addr::NameAddr;
pub use typed::{CSeq, Contacts, Refresher, Replaces, SessionExpires};
pub use uri::{Host, HostPort, Param, Scheme, Uri};
pub use via::{SentBy, Via};
