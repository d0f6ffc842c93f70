//! handover — a SIP back-to-back user agent for contact centres.
//!
//! # Layout
//!
//! The modules follow the architecture of DESIGN.md §1:
//!
//! ```text
//!  transport ──► dispatch ──► call (one actor per call) ──► sdp
//!  (UDP/TCP,     (router,      core: legs + transactions     (inspect, o= rewrite)
//!   framing)      registrar,   indialog: relay, BYE, re-INVITE
//!                 new calls)   actor: tokio shell
//!        sip: codec (parse once, byte ranges; builder)      transaction: RFC 3261 §17 sans-IO
//!        registrar: digest (RFC 8760) + bindings            location: REGISTER service
//!        cc: agents (states)                                config, cli, app (start/stop)
//! ```
//!
//! - [`sip`]: our own zero-copy SIP codec.
//! - [`transport`]: UDP/TCP listeners, stream framing, connection reuse; non-blocking send.
//! - [`transaction`]: the four RFC 3261 transaction state machines, sans-IO.
//! - [`dispatch`]: every inbound message passes here once and is routed.
//! - [`call`]: call router and call actors (one tokio task per call, owning every leg).
//! - [`registrar`] + [`location`]: digest auth and the location service.
//! - [`cc`]: contact-centre layer (agent directory).
//! - [`sdp`]: SDP validation and the line-preserving rewriter.
//! - [`config`], [`cli`], [`app`]: configuration, command line, server lifecycle.

pub mod agent_probe;
pub mod api;
pub mod app;
pub mod call;
pub mod cc;
pub mod cdr;
pub mod cli;
pub mod config;
pub mod control;
pub mod dispatch;
pub mod endpoint;
pub mod events;
pub mod incoming;
pub mod location;
pub mod ratelimit;
pub mod registrar;
pub mod sdp;
pub mod sip;
pub mod transaction;
pub mod transfer;
pub mod transport;
