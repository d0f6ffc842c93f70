//! Calls: one actor per call owning every leg (DESIGN.md §1, STYLE.md rule 4).
//!
//! - [`registry`]: the call router — (Call-ID, tag, branch) → the owning actor's handle.
//! - [`dialog`]: one leg's dialog state and the requests built from it.
//! - [`core`]: the call's state machine over its legs and transactions; it decides and
//!   writes outgoing messages into an outbox, it never touches a socket or a clock; its
//!   `impl Call` continues in [`responses`] (responses sent and received), [`teardown`]
//!   (ending legs and calls), [`timers`] (timers, transport errors) and [`accounting`]
//!   (agent states).
//! - [`indialog`]: requests inside a dialog (BYE, re-INVITE, UPDATE, INFO, ...), relayed
//!   from one leg to the other.
//! - [`transfer`]: transfers inside a call (DESIGN.md §3) — REFER, policy, NOTIFY; carried
//!   out in [`bridging`] (re-INVITE bridging), [`fallback`] (failure paths, transfer
//!   timers), [`transfer_bye`] (BYE during a transfer) and [`ivr`] (IVR return and send-on).
//! - [`actor`]: the tokio task around a core: inbox, one deadline, shutdown.

pub mod accounting;
pub mod actor;
pub mod attended;
pub mod bridging;
pub mod core;
pub mod dialog;
pub mod fallback;
pub mod indialog;
pub mod ivr;
pub mod liveness;
pub mod queueing;
pub mod registry;
pub mod replace;
pub mod report;
pub mod responses;
pub mod session_timer;
pub mod teardown;
pub mod timers;
pub mod transfer;
pub mod transfer_bye;
pub mod txn_table;

use crate::incoming::IncomingRequest;
use crate::sip::SipMessage;

pub use actor::spawn_call;
pub use registry::{CallHandle, CallKey, CallRegistry};

/// Why the operator side ends a call (the Reason header of its BYEs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    /// The control API released it.
    Operator,
    /// The server is shutting down.
    Shutdown,
}

impl HangupCause {
    pub fn reason(self) -> &'static str {
        match self {
            HangupCause::Operator => "SIP;cause=200;text=\"Released by the operator\"",
            HangupCause::Shutdown => "SIP;cause=503;text=\"Server shutting down\"",
        }
    }
}

/// An INVITE with Replaces for one of a call's dialogs (RFC 3891), from `agent`.
#[derive(Debug)]
pub struct ReplaceRequest {
    pub req: IncomingRequest,
    pub agent: String,
}

/// Everything a call actor is told. Every variant is at most one pointer (payloads are
/// boxed), so an event is 16 bytes and each call's inbox block stays small.
#[derive(Debug)]
pub enum CallEvent {
    /// A request for one of the call's dialogs (or its initial INVITE's retransmission or
    /// CANCEL).
    Request(Box<IncomingRequest>),
    /// A response to one of the call's client transactions (boxed: an inbox slot stays
    /// small, and every call's inbox allocates a block of slots up front).
    Response(Box<SipMessage>),
    /// Operator or shutdown: end the call now.
    Hangup(HangupCause),
    /// The queue offers the waiting call to `agent` (DESIGN.md §2).
    QueueOffer(Box<QueueOffer>),
    /// The offer to `agent` rang too long: cancel it.
    QueueOfferTimeout(Box<String>),
    /// `max_wait_s` passed: go to the queue's overflow target.
    QueueOverflow(Box<crate::config::Target>),
    /// `max_wait_s` passed and there is no overflow: 480.
    QueueExpired,
    /// The control API asks what the call looks like.
    Query(tokio::sync::oneshot::Sender<crate::api::CallInfo>),
    /// The control API asks for a transfer; the same policy as a REFER.
    ApiTransfer(Box<ApiTransfer>),
    /// Another call, during an attended transfer (REFER with Replaces).
    Legs(Box<attended::LegExchange>),
    /// An INVITE with Replaces from `agent` naming one of this call's dialogs (RFC 3891).
    Replace(Box<ReplaceRequest>),
}

/// A queue's offer of the call to an agent.
#[derive(Debug)]
pub struct QueueOffer {
    pub agent: String,
    pub queue: String,
    pub ring_timeout: std::time::Duration,
}

/// A transfer asked for through the control API.
#[derive(Debug)]
pub struct ApiTransfer {
    pub transfer: crate::config::TransferType,
    pub target: crate::config::Target,
    pub reply: tokio::sync::oneshot::Sender<Result<(), crate::api::ApiError>>,
}

/// Who placed the call (DESIGN.md §2 "Who is calling").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A customer's call from a trunk.
    Customer { trunk: String },
    /// An agent's own call.
    Agent { id: String },
}

/// Where a new call goes: the parties to ring, in parallel.
#[derive(Debug, Clone)]
pub struct CallTarget {
    /// Agent id when the target is an agent (its state follows the call).
    pub agent: Option<String>,
    /// The To party on the new leg (name-addr).
    pub party: String,
    /// Contacts to ring at once (forking): Request-URI and flow of each.
    pub contacts: Vec<(String, crate::transport::Destination)>,
    /// Our From party on the new leg (the caller's identity, name-addr without tag).
    pub presented_caller: String,
    /// Further headers for the INVITE (e.g. P-Asserted-Identity towards a trunk).
    pub headers: Vec<(&'static str, String)>,
    /// The skill queue to wait in instead of ringing anyone now.
    pub queue: Option<String>,
    /// What the new leg is: `agent`, `ivr`, `external`, `queue` (CDRs, control API).
    pub role: &'static str,
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_event_is_two_words() {
        assert_eq!(std::mem::size_of::<super::CallEvent>(), 16);
    }
}
