//! The leg-release policy of each transfer type: one table, read by the call actor.
//!
//! [`decide`] maps a [`Request`] (transfer type × [`TargetKind`] × [`Direction`] × [`History`])
//! and the operator's [`AgentHangupPolicy`] to a [`Policy`] — when the agent leg is released,
//! when the final NOTIFY goes out, what happens if the target fails, where the agent ends up —
//! or to a [`Refusal`] naming the seed rule that forbids it (answered as 403 with
//! `Warning: 399 handover "<text>"`, leaving the call exactly as it was). [`table`] enumerates
//! every cell, so tests and docs see the same data the actor does.
//!
//! # The types (DESIGN §3)
//!
//! | type | when the agent leg is released | if the target fails (busy, no answer, error) |
//! |---|---|---|
//! | success | when the target answers (for a queue: when a queue agent answers) | NOTIFY carries the failure; the customer is re-bridged to the agent, who keeps talking |
//! | release | at once, after 202 + NOTIFY 200; to a **queue**: only when the queue admits the call | customer goes to the configured fallback (queue/overflow) or is released with a reason; if queue admission fails, the agent keeps the customer |
//! | conversation | by the agent, after the target has answered and the agent has talked to it (agent hangs up, or REFER+Replaces) | consult leg ends; agent is reconnected to the customer |
//! | hangup | when the IVR flow answers — the agent's phone hangs up, the agent stays reserved in `waiting`; when the flow returns the call, handover calls the same agent again and bridges the customer | IVR unreachable → customer back to the agent at once; agent not answering the return call / `waiting` timed out → the customer goes to the agent's queue or fallback |
//!
//! The seed (`seeds/000_68e4c486eef9dbd9.txt`, "Table 1 Call transfer types"):
//! - Success: "the agent releases the call only after the transferred-to agent answers the
//!   call. Otherwise, the system displays a message indicating that the transfer fails and the
//!   agent continues to talk with the customer."
//! - Release: "the agent releases the call immediately, regardless of whether the
//!   transferred-to agent answers the call. However, if an agent transfers the call to a skill
//!   queue, the agent releases the call only after the transfer is successful."
//! - Conversation: "After an agent transfers a call and the transferred-to agent answers the
//!   call, the agent proactively releases the call."
//! - Hang-up: "After an agent transfers a call to an automatic flow, the agent is in waiting
//!   state. After handling the call, the automatic flow transfers the call back to the agent."
//!
//! # The rules
//!
//! 1. **Hang-up transfer only to IVR flows. An IVR can only return the call, not transfer it
//!    further.** Seed: "A transfer diagram element cannot be configured in the IVR flow to
//!    further transfer the call to another device." A request from the IVR leg
//!    ([`History::from_ivr`]) is allowed only towards [`TargetKind::WaitingAgent`], whatever
//!    type it names: a return is a return ([`Policy`] of the return: IVR leg released at
//!    once, waiting agent called again, on failure the agent's queue or fallback).
//! 2. **External number with `user_number_forwarding = true`: success and conversation
//!    only.** Seed: "When User Number Forwarding is set to Yes for the selected external
//!    number, only Success Transfer and Conversation Transfer are supported."
//! 3. **External number without forwarding, or a typed number: release only on inbound calls,
//!    never on the agent's outbound call.** Seed: "When User Number Forwarding is set to No for
//!    the selected external number, Release Transfer is supported for an inbound call and is
//!    not supported for the agent's outbound call." and "If the agent enters an external
//!    number, Release Transfer is supported for an inbound call and is not supported for the
//!    agent's outbound call."
//!
//!    *Our reading:* these two sentences restrict the **release** type only; they do not make
//!    release the only type. Success and conversation to such a number stay allowed in both
//!    directions; hang-up is refused by rule 1. Why: (a) where the seed means "only", it says
//!    so — the forwarding-Yes sentence right above reads "only Success Transfer and
//!    Conversation Transfer are supported", the forwarding-No and typed-number sentences have
//!    no "only" and speak of Release Transfer alone; (b) the seed's own rule-4 example is a
//!    conversation transfer to "customer 2", an external party the agent typically dials by
//!    number — under a release-only reading that example could not happen with a typed
//!    number; (c) a release-only reading would leave the agent's outbound call with no
//!    transfer at all to a typed number, which the seed never says. So the only refused cell
//!    of rule 3 is: release × (external without forwarding | typed number) × agent's
//!    outbound call.
//! 4. **Conversation transfer to customer 2 and customer 1 hangs up: the agent (now with
//!    customer 2) cannot transfer further to an external number. If customer 2 hangs up, the
//!    agent is back with customer 1 and may transfer to an external number.** Seed: "if the
//!    agent transfers the call to customer 2 in Conversation Transfer mode and then customer 1
//!    hangs up, the agent cannot further transfer the call to an external number." The actor
//!    sets [`History::customer_left_during_conversation`] while that holds; every transfer to
//!    a configured or typed external number is then refused, any type, either direction.
//! 5. After any transfer that releases the agent, the agent enters `idle` (or `wrap_up`):
//!    [`AgentAfter::IdleOrWrapUp`]. Seed: "After the transfer, the current agent enters the
//!    Idle state."
//! 6. Agent hangs up during a conversation transfer before the target answers: by default the
//!    attempt goes on as a release transfer to the same target; `[transfer]
//!    agent_hangup_during_conversation = "cancel"` cancels it instead
//!    ([`Policy::agent_hangup_before_answer`]).
//! 7. The agent's BYE at any moment after the 202 never costs the customer: the transfer goes
//!    on as a release transfer ([`AgentHangupAction::ContinueAsRelease`]), the target is never
//!    left ringing into nothing. *Hang-up transfer:* the agent's phone hanging up is that
//!    type's own release (hence its name), so an early BYE keeps the hang-up semantics — the
//!    agent stays reserved in `waiting` and the IVR's return calls them again
//!    ([`AgentHangupAction::KeepWaiting`]); turning it into a release would leave the IVR no
//!    agent to return the call to, which would cost the customer the return.
//! 8. REFER progress is honest (RFC 5589): the final NOTIFY 200 goes out exactly at the release
//!    moment ([`Policy::notify_final_at`] == [`Policy::release`]), never earlier; failures
//!    carry their real status code.
//!
//! When several rules refuse one request, the permanent reason is reported before the
//! transient one (rules 1, 2, 3, then 4): telling an agent "wait until you are back with
//! customer 1" for a request that would still be refused then would mislead.

use crate::config::{AgentHangupPolicy, Config, Target, TransferType};

/// What a transfer goes to, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Agent,
    /// A skill queue: released on admission (release) or when a queue agent answers.
    Queue,
    /// An IVR / automatic flow: the only target of a hang-up transfer.
    Ivr,
    /// A configured external number with `user_number_forwarding = true` (rule 2).
    ExternalForwarding,
    /// A configured external number with `user_number_forwarding = false` (rule 3).
    ExternalNoForwarding,
    /// A number typed by the agent that matched an ad-hoc pattern (rule 3).
    AdhocNumber,
    /// The agent reserved (`waiting`) by this call's hang-up transfer. The actor uses this kind
    /// only for a request from the IVR leg naming that agent (the return, rule 1); from an
    /// agent leg it is treated exactly like [`TargetKind::Agent`].
    WaitingAgent,
}

impl TargetKind {
    pub const ALL: [TargetKind; 7] = [
        TargetKind::Agent,
        TargetKind::Queue,
        TargetKind::Ivr,
        TargetKind::ExternalForwarding,
        TargetKind::ExternalNoForwarding,
        TargetKind::AdhocNumber,
        TargetKind::WaitingAgent,
    ];

    /// Classifies a resolved target. `None` when it names nothing configured (an external
    /// number that is not in `[[external_numbers]]`); [`TargetKind::WaitingAgent`] is never
    /// returned — only the actor knows which agent waits for the call.
    pub fn of(config: &Config, target: &Target) -> Option<TargetKind> {
        Some(match target {
            Target::Agent(_) => TargetKind::Agent,
            Target::Queue(_) => TargetKind::Queue,
            Target::Ivr(_) => TargetKind::Ivr,
            Target::External(name) => {
                if config.external_number(name)?.user_number_forwarding {
                    TargetKind::ExternalForwarding
                } else {
                    TargetKind::ExternalNoForwarding
                }
            }
            Target::Number(_) => TargetKind::AdhocNumber,
        })
    }

    /// Configured or typed external number (rule 4 applies to all three).
    pub fn is_external(self) -> bool {
        matches!(
            self,
            TargetKind::ExternalForwarding
                | TargetKind::ExternalNoForwarding
                | TargetKind::AdhocNumber
        )
    }
}

/// Who placed the call being transferred (rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A customer's call into the contact centre.
    Inbound,
    /// The agent's own outbound call.
    AgentOutbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::AgentOutbound];
}

/// What already happened in the call that changes what is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct History {
    /// Rule 4: customer 1 hung up while the agent had a conversation transfer to customer 2
    /// up; cleared when the agent is back with customer 1 (customer 2 hung up).
    pub customer_left_during_conversation: bool,
    /// Rule 1: the request comes from the IVR leg of a hang-up transfer.
    pub from_ivr: bool,
}

impl History {
    /// Every combination of the flags, for [`table`].
    pub const ALL: [History; 4] = [
        History {
            customer_left_during_conversation: false,
            from_ivr: false,
        },
        History {
            customer_left_during_conversation: true,
            from_ivr: false,
        },
        History {
            customer_left_during_conversation: false,
            from_ivr: true,
        },
        History {
            customer_left_during_conversation: true,
            from_ivr: true,
        },
    ];
}

/// One cell's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    pub transfer: TransferType,
    pub target: TargetKind,
    pub direction: Direction,
    pub history: History,
}

/// When the transferring leg (the agent's; the IVR's for a return) is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseMoment {
    /// Success: the target answered (for a queue: a queue agent answered).
    TargetAnswered,
    /// Release to an agent, IVR or external number; an IVR's return: right after 202 +
    /// NOTIFY 200 — handover has taken the call over.
    Immediately,
    /// Release to a queue: when the queue admits the call.
    QueueAdmitted,
    /// Conversation: the agent hangs up after the target answered, or sends REFER+Replaces.
    AgentCompletes,
    /// Hang-up: the IVR flow answered.
    IvrAnswered,
}

/// What happens when the target fails (busy, no answer, error, refused admission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePath {
    /// Success, conversation: the NOTIFY carries the failure, the consult/target leg ends and
    /// the customer is re-bridged to the agent, who keeps talking.
    RebridgeAgent,
    /// Release (the agent is gone): the customer goes to the configured fallback (queue
    /// overflow) or is released (BYE) with a `Reason`.
    FallbackOrRelease,
    /// Release to a queue whose admission fails (full, no agent): the agent keeps the
    /// customer; the NOTIFY carries the failure.
    AgentKeepsCustomer,
    /// Hang-up, IVR unreachable: the customer goes back to the agent at once (the agent leg
    /// is re-bridged, or the waiting agent called again if their phone already hung up).
    CustomerBackToAgent,
    /// The waiting agent does not answer the return call, or `waiting` timed out: the
    /// customer goes to the agent's queue (the one the call came through) or the fallback.
    AgentQueueOrFallback,
}

/// The transferring agent's state once the transfer reached its release moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentAfter {
    /// Rule 5: `wrap_up` for `[transfer] wrap_up_s`, then `idle` (straight to `idle` at 0).
    IdleOrWrapUp,
    /// Hang-up: reserved in `waiting` until the IVR returns the call (or `max_waiting_s`).
    Waiting,
    /// An IVR's return: the waiting agent is talking to the customer again.
    Talking,
}

/// What the agent's BYE between the 202 and the release moment does (rules 6 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentHangupAction {
    /// The attempt goes on as a release transfer to the same target: the customer keeps
    /// waiting, and a target failure takes [`FailurePath::FallbackOrRelease`] (the agent is no
    /// longer there to be re-bridged or to keep the customer).
    ContinueAsRelease,
    /// Conversation with `agent_hangup_during_conversation = "cancel"`: the target leg is
    /// cancelled and the customer's call ends with the agent's leg.
    Cancel,
    /// Hang-up: the agent's phone hanging up is this type's own release; the agent stays in
    /// `waiting` and the attempt goes on unchanged. If the IVR then fails, the waiting agent
    /// is called back ([`FailurePath::CustomerBackToAgent`]).
    KeepWaiting,
}

impl AgentHangupAction {
    /// The failure path that applies once the agent has hung up early; `None` when the
    /// attempt is cancelled.
    pub fn failure_path(self) -> Option<FailurePath> {
        match self {
            AgentHangupAction::ContinueAsRelease => Some(FailurePath::FallbackOrRelease),
            AgentHangupAction::Cancel => None,
            AgentHangupAction::KeepWaiting => Some(FailurePath::CustomerBackToAgent),
        }
    }
}

/// How the actor carries out one allowed transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// When the transferring leg is released.
    pub release: ReleaseMoment,
    /// When the final NOTIFY 200 goes out (rule 8): always the release moment.
    pub notify_final_at: ReleaseMoment,
    /// What a target failure leads to.
    pub on_target_failure: FailurePath,
    /// Hang-up only: what a failed return leads to (agent not answering the return call,
    /// `waiting` timed out).
    pub on_return_failure: Option<FailurePath>,
    /// The transferring agent's state after the release moment (rule 5).
    pub agent_after: AgentAfter,
    /// The customer is put on hold (`a=sendonly`/`inactive`, same `o=` session id, version
    /// +1) while waiting for the target.
    pub hold_customer: bool,
    /// The target is INVITEd without SDP; its offer is re-INVITEd to the leg it will talk to
    /// (RFC 3725 flow I). True in every cell today; a column so that an exception (a trunk
    /// that demands an early offer) is one cell's change.
    pub late_offer_to_target: bool,
    /// The agent's BYE after the 202 and before the release moment (rules 6, 7).
    pub agent_hangup_before_answer: AgentHangupAction,
}

/// A transfer the seed forbids: 403 with `Warning: 399 handover "<warning>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The DESIGN §3 rule number.
    pub rule: u8,
    /// Warn-text naming the rule (no quotes, no backslashes).
    pub warning: &'static str,
}

impl Refusal {
    /// `399 handover "<warning>"`, the value of the 403's `Warning` header.
    pub fn warning_header_value(&self) -> String {
        super::warning_header_value(self.warning)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.warning)
    }
}

impl std::error::Error for Refusal {}

pub const REFUSE_HANGUP_NOT_IVR: Refusal = Refusal {
    rule: 1,
    warning: "rule 1: a hang-up transfer goes only to an IVR flow",
};
pub const REFUSE_IVR_TRANSFER: Refusal = Refusal {
    rule: 1,
    warning:
        "rule 1: an IVR flow can only return the call to the waiting agent, not transfer it further",
};
pub const REFUSE_FORWARDING_RELEASE: Refusal = Refusal {
    rule: 2,
    warning: "rule 2: an external number with user number forwarding takes only success and conversation transfers",
};
pub const REFUSE_OUTBOUND_RELEASE: Refusal = Refusal {
    rule: 3,
    warning: "rule 3: no release transfer to a typed number or an external number without user number forwarding on the agent's outbound call",
};
pub const REFUSE_AFTER_CUSTOMER_LEFT: Refusal = Refusal {
    rule: 4,
    warning: "rule 4: customer 1 left during the conversation transfer; no transfer to an external number until the agent is back with customer 1",
};

const SUCCESS: Policy = Policy {
    release: ReleaseMoment::TargetAnswered,
    notify_final_at: ReleaseMoment::TargetAnswered,
    on_target_failure: FailurePath::RebridgeAgent,
    on_return_failure: None,
    agent_after: AgentAfter::IdleOrWrapUp,
    hold_customer: true,
    late_offer_to_target: true,
    agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
};

const RELEASE: Policy = Policy {
    release: ReleaseMoment::Immediately,
    notify_final_at: ReleaseMoment::Immediately,
    on_target_failure: FailurePath::FallbackOrRelease,
    ..SUCCESS
};

const RELEASE_TO_QUEUE: Policy = Policy {
    release: ReleaseMoment::QueueAdmitted,
    notify_final_at: ReleaseMoment::QueueAdmitted,
    on_target_failure: FailurePath::AgentKeepsCustomer,
    ..SUCCESS
};

const CONVERSATION: Policy = Policy {
    release: ReleaseMoment::AgentCompletes,
    notify_final_at: ReleaseMoment::AgentCompletes,
    ..SUCCESS
};

const CONVERSATION_CANCEL: Policy = Policy {
    agent_hangup_before_answer: AgentHangupAction::Cancel,
    ..CONVERSATION
};

const HANGUP: Policy = Policy {
    release: ReleaseMoment::IvrAnswered,
    notify_final_at: ReleaseMoment::IvrAnswered,
    on_target_failure: FailurePath::CustomerBackToAgent,
    on_return_failure: Some(FailurePath::AgentQueueOrFallback),
    agent_after: AgentAfter::Waiting,
    hold_customer: true,
    late_offer_to_target: true,
    agent_hangup_before_answer: AgentHangupAction::KeepWaiting,
};

/// The IVR returns the call to the waiting agent: the IVR leg is released at once (handover
/// has the call; a failed return never goes back to the IVR), the agent is called again.
const IVR_RETURN: Policy = Policy {
    release: ReleaseMoment::Immediately,
    notify_final_at: ReleaseMoment::Immediately,
    on_target_failure: FailurePath::AgentQueueOrFallback,
    on_return_failure: None,
    agent_after: AgentAfter::Talking,
    hold_customer: true,
    late_offer_to_target: true,
    agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
};

/// THE table. Rows are tried top to bottom; the first matching row decides. `_` = any.
///
/// Columns: requester is the IVR? · type · target · direction · customer 1 left? → outcome.
#[rustfmt::skip]
pub fn decide(req: &Request, on_agent_hangup: AgentHangupPolicy) -> Result<Policy, Refusal> {
    use AgentHangupPolicy::{Cancel, Continue};
    use Direction::AgentOutbound;
    use TargetKind::{AdhocNumber as Adhoc, ExternalForwarding as ExtFwd};
    use TargetKind::{ExternalNoForwarding as ExtNoFwd, Ivr, Queue, WaitingAgent};
    use TransferType::{Conversation, Hangup, Release, Success};

    let h = req.history;
    match (h.from_ivr, req.transfer, req.target, req.direction, h.customer_left_during_conversation) {
        // ivr?  type          target               direction      c1 left → outcome
        (true,   _,            WaitingAgent,        _,             _)     => Ok(IVR_RETURN),
        (true,   _,            _,                   _,             _)     => Err(REFUSE_IVR_TRANSFER),
        (false,  Hangup,       Ivr,                 _,             _)     => Ok(HANGUP),
        (false,  Hangup,       _,                   _,             _)     => Err(REFUSE_HANGUP_NOT_IVR),
        (false,  Release,      ExtFwd,              _,             _)     => Err(REFUSE_FORWARDING_RELEASE),
        (false,  Release,      ExtNoFwd | Adhoc,    AgentOutbound, _)     => Err(REFUSE_OUTBOUND_RELEASE),
        (false,  _,            ExtFwd|ExtNoFwd|Adhoc, _,           true)  => Err(REFUSE_AFTER_CUSTOMER_LEFT),
        (false,  Success,      _,                   _,             _)     => Ok(SUCCESS),
        (false,  Release,      Queue,               _,             _)     => Ok(RELEASE_TO_QUEUE),
        (false,  Release,      _,                   _,             _)     => Ok(RELEASE),
        (false,  Conversation, _,                   _,             _)     => Ok(match on_agent_hangup {
            Continue => CONVERSATION,
            Cancel => CONVERSATION_CANCEL,
        }),
    }
}

/// Every cell of the table (4 types × 7 target kinds × 2 directions × 4 histories = 224), in
/// a stable order, with its outcome under `on_agent_hangup`.
pub fn table(
    on_agent_hangup: AgentHangupPolicy,
) -> impl Iterator<Item = (Request, Result<Policy, Refusal>)> {
    TransferType::ALL.into_iter().flat_map(move |transfer| {
        TargetKind::ALL.into_iter().flat_map(move |target| {
            Direction::ALL.into_iter().flat_map(move |direction| {
                History::ALL.into_iter().map(move |history| {
                    let req = Request {
                        transfer,
                        target,
                        direction,
                        history,
                    };
                    (req, decide(&req, on_agent_hangup))
                })
            })
        })
    })
}
