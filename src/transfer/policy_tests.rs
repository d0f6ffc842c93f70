//! The policy table, cell by cell: one test per (type × target kind × direction × history),
//! each asserting the exact [`Policy`] (under both `agent_hangup_during_conversation`
//! settings) or the exact refusal. Expected policies are written out literally here, not
//! taken from `policy.rs`, so a wrong constant there fails a test.

use super::policy::*;
use crate::config::{AgentHangupPolicy, Config, Target, TransferType};
use AgentHangupPolicy::{Cancel, Continue};

type Want = Result<Policy, (u8, &'static str)>;

const PLAIN: History = History {
    customer_left_during_conversation: false,
    from_ivr: false,
};
const LEFT: History = History {
    customer_left_during_conversation: true,
    from_ivr: false,
};
const IVR: History = History {
    customer_left_during_conversation: false,
    from_ivr: true,
};
const IVR_LEFT: History = History {
    customer_left_during_conversation: true,
    from_ivr: true,
};

fn success(_: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::TargetAnswered,
        notify_final_at: ReleaseMoment::TargetAnswered,
        on_target_failure: FailurePath::RebridgeAgent,
        on_return_failure: None,
        agent_after: AgentAfter::IdleOrWrapUp,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
    })
}

fn release(_: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::Immediately,
        notify_final_at: ReleaseMoment::Immediately,
        on_target_failure: FailurePath::FallbackOrRelease,
        on_return_failure: None,
        agent_after: AgentAfter::IdleOrWrapUp,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
    })
}

fn release_to_queue(_: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::QueueAdmitted,
        notify_final_at: ReleaseMoment::QueueAdmitted,
        on_target_failure: FailurePath::AgentKeepsCustomer,
        on_return_failure: None,
        agent_after: AgentAfter::IdleOrWrapUp,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
    })
}

fn conversation(p: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::AgentCompletes,
        notify_final_at: ReleaseMoment::AgentCompletes,
        on_target_failure: FailurePath::RebridgeAgent,
        on_return_failure: None,
        agent_after: AgentAfter::IdleOrWrapUp,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: match p {
            Continue => AgentHangupAction::ContinueAsRelease,
            Cancel => AgentHangupAction::Cancel,
        },
    })
}

fn hangup(_: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::IvrAnswered,
        notify_final_at: ReleaseMoment::IvrAnswered,
        on_target_failure: FailurePath::CustomerBackToAgent,
        on_return_failure: Some(FailurePath::AgentQueueOrFallback),
        agent_after: AgentAfter::Waiting,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: AgentHangupAction::KeepWaiting,
    })
}

fn ivr_return(_: AgentHangupPolicy) -> Want {
    Ok(Policy {
        release: ReleaseMoment::Immediately,
        notify_final_at: ReleaseMoment::Immediately,
        on_target_failure: FailurePath::AgentQueueOrFallback,
        on_return_failure: None,
        agent_after: AgentAfter::Talking,
        hold_customer: true,
        late_offer_to_target: true,
        agent_hangup_before_answer: AgentHangupAction::ContinueAsRelease,
    })
}

fn r1_ivr(_: AgentHangupPolicy) -> Want {
    Err((1, "rule 1: an IVR flow can only return the call to the waiting agent, not transfer it further"))
}

fn r1_hangup(_: AgentHangupPolicy) -> Want {
    Err((1, "rule 1: a hang-up transfer goes only to an IVR flow"))
}

fn r2(_: AgentHangupPolicy) -> Want {
    Err((2, "rule 2: an external number with user number forwarding takes only success and conversation transfers"))
}

fn r3(_: AgentHangupPolicy) -> Want {
    Err((3, "rule 3: no release transfer to a typed number or an external number without user number forwarding on the agent's outbound call"))
}

fn r4(_: AgentHangupPolicy) -> Want {
    Err((4, "rule 4: customer 1 left during the conversation transfer; no transfer to an external number until the agent is back with customer 1"))
}

fn check(req: Request, want: fn(AgentHangupPolicy) -> Want) {
    for p in [Continue, Cancel] {
        let got = decide(&req, p).map_err(|r| (r.rule, r.warning));
        assert_eq!(got, want(p), "{req:?} with {p:?}");
    }
}

macro_rules! cells {
    ($($name:ident: $t:ident $k:ident $d:ident $h:ident => $want:ident;)*) => {
        $(
            #[test]
            fn $name() {
                check(
                    Request {
                        transfer: TransferType::$t,
                        target: TargetKind::$k,
                        direction: Direction::$d,
                        history: $h,
                    },
                    $want,
                );
            }
        )*
        /// Every cell above, for the completeness test.
        const CELLS: &[(TransferType, TargetKind, Direction, History)] = &[
            $((TransferType::$t, TargetKind::$k, Direction::$d, $h),)*
        ];
    };
}

#[rustfmt::skip]
cells! {
    // ---- requests from the agent leg ----
    success_agent_in_plain: Success Agent Inbound PLAIN => success;
    success_agent_out_plain: Success Agent AgentOutbound PLAIN => success;
    success_queue_in_plain: Success Queue Inbound PLAIN => success;
    success_queue_out_plain: Success Queue AgentOutbound PLAIN => success;
    success_ivr_in_plain: Success Ivr Inbound PLAIN => success;
    success_ivr_out_plain: Success Ivr AgentOutbound PLAIN => success;
    success_ext_fwd_in_plain: Success ExternalForwarding Inbound PLAIN => success;
    success_ext_fwd_out_plain: Success ExternalForwarding AgentOutbound PLAIN => success;
    success_ext_nofwd_in_plain: Success ExternalNoForwarding Inbound PLAIN => success;
    success_ext_nofwd_out_plain: Success ExternalNoForwarding AgentOutbound PLAIN => success;
    success_adhoc_in_plain: Success AdhocNumber Inbound PLAIN => success;
    success_adhoc_out_plain: Success AdhocNumber AgentOutbound PLAIN => success;
    success_waiting_agent_in_plain: Success WaitingAgent Inbound PLAIN => success;
    success_waiting_agent_out_plain: Success WaitingAgent AgentOutbound PLAIN => success;
    release_agent_in_plain: Release Agent Inbound PLAIN => release;
    release_agent_out_plain: Release Agent AgentOutbound PLAIN => release;
    release_queue_in_plain: Release Queue Inbound PLAIN => release_to_queue;
    release_queue_out_plain: Release Queue AgentOutbound PLAIN => release_to_queue;
    release_ivr_in_plain: Release Ivr Inbound PLAIN => release;
    release_ivr_out_plain: Release Ivr AgentOutbound PLAIN => release;
    release_ext_fwd_in_plain: Release ExternalForwarding Inbound PLAIN => r2;
    release_ext_fwd_out_plain: Release ExternalForwarding AgentOutbound PLAIN => r2;
    release_ext_nofwd_in_plain: Release ExternalNoForwarding Inbound PLAIN => release;
    release_ext_nofwd_out_plain: Release ExternalNoForwarding AgentOutbound PLAIN => r3;
    release_adhoc_in_plain: Release AdhocNumber Inbound PLAIN => release;
    release_adhoc_out_plain: Release AdhocNumber AgentOutbound PLAIN => r3;
    release_waiting_agent_in_plain: Release WaitingAgent Inbound PLAIN => release;
    release_waiting_agent_out_plain: Release WaitingAgent AgentOutbound PLAIN => release;
    conversation_agent_in_plain: Conversation Agent Inbound PLAIN => conversation;
    conversation_agent_out_plain: Conversation Agent AgentOutbound PLAIN => conversation;
    conversation_queue_in_plain: Conversation Queue Inbound PLAIN => conversation;
    conversation_queue_out_plain: Conversation Queue AgentOutbound PLAIN => conversation;
    conversation_ivr_in_plain: Conversation Ivr Inbound PLAIN => conversation;
    conversation_ivr_out_plain: Conversation Ivr AgentOutbound PLAIN => conversation;
    conversation_ext_fwd_in_plain: Conversation ExternalForwarding Inbound PLAIN => conversation;
    conversation_ext_fwd_out_plain: Conversation ExternalForwarding AgentOutbound PLAIN => conversation;
    conversation_ext_nofwd_in_plain: Conversation ExternalNoForwarding Inbound PLAIN => conversation;
    conversation_ext_nofwd_out_plain: Conversation ExternalNoForwarding AgentOutbound PLAIN => conversation;
    conversation_adhoc_in_plain: Conversation AdhocNumber Inbound PLAIN => conversation;
    conversation_adhoc_out_plain: Conversation AdhocNumber AgentOutbound PLAIN => conversation;
    conversation_waiting_agent_in_plain: Conversation WaitingAgent Inbound PLAIN => conversation;
    conversation_waiting_agent_out_plain: Conversation WaitingAgent AgentOutbound PLAIN => conversation;
    hangup_agent_in_plain: Hangup Agent Inbound PLAIN => r1_hangup;
    hangup_agent_out_plain: Hangup Agent AgentOutbound PLAIN => r1_hangup;
    hangup_queue_in_plain: Hangup Queue Inbound PLAIN => r1_hangup;
    hangup_queue_out_plain: Hangup Queue AgentOutbound PLAIN => r1_hangup;
    hangup_ivr_in_plain: Hangup Ivr Inbound PLAIN => hangup;
    hangup_ivr_out_plain: Hangup Ivr AgentOutbound PLAIN => hangup;
    hangup_ext_fwd_in_plain: Hangup ExternalForwarding Inbound PLAIN => r1_hangup;
    hangup_ext_fwd_out_plain: Hangup ExternalForwarding AgentOutbound PLAIN => r1_hangup;
    hangup_ext_nofwd_in_plain: Hangup ExternalNoForwarding Inbound PLAIN => r1_hangup;
    hangup_ext_nofwd_out_plain: Hangup ExternalNoForwarding AgentOutbound PLAIN => r1_hangup;
    hangup_adhoc_in_plain: Hangup AdhocNumber Inbound PLAIN => r1_hangup;
    hangup_adhoc_out_plain: Hangup AdhocNumber AgentOutbound PLAIN => r1_hangup;
    hangup_waiting_agent_in_plain: Hangup WaitingAgent Inbound PLAIN => r1_hangup;
    hangup_waiting_agent_out_plain: Hangup WaitingAgent AgentOutbound PLAIN => r1_hangup;
    success_agent_in_left: Success Agent Inbound LEFT => success;
    success_agent_out_left: Success Agent AgentOutbound LEFT => success;
    success_queue_in_left: Success Queue Inbound LEFT => success;
    success_queue_out_left: Success Queue AgentOutbound LEFT => success;
    success_ivr_in_left: Success Ivr Inbound LEFT => success;
    success_ivr_out_left: Success Ivr AgentOutbound LEFT => success;
    success_ext_fwd_in_left: Success ExternalForwarding Inbound LEFT => r4;
    success_ext_fwd_out_left: Success ExternalForwarding AgentOutbound LEFT => r4;
    success_ext_nofwd_in_left: Success ExternalNoForwarding Inbound LEFT => r4;
    success_ext_nofwd_out_left: Success ExternalNoForwarding AgentOutbound LEFT => r4;
    success_adhoc_in_left: Success AdhocNumber Inbound LEFT => r4;
    success_adhoc_out_left: Success AdhocNumber AgentOutbound LEFT => r4;
    success_waiting_agent_in_left: Success WaitingAgent Inbound LEFT => success;
    success_waiting_agent_out_left: Success WaitingAgent AgentOutbound LEFT => success;
    release_agent_in_left: Release Agent Inbound LEFT => release;
    release_agent_out_left: Release Agent AgentOutbound LEFT => release;
    release_queue_in_left: Release Queue Inbound LEFT => release_to_queue;
    release_queue_out_left: Release Queue AgentOutbound LEFT => release_to_queue;
    release_ivr_in_left: Release Ivr Inbound LEFT => release;
    release_ivr_out_left: Release Ivr AgentOutbound LEFT => release;
    release_ext_fwd_in_left: Release ExternalForwarding Inbound LEFT => r2;
    release_ext_fwd_out_left: Release ExternalForwarding AgentOutbound LEFT => r2;
    release_ext_nofwd_in_left: Release ExternalNoForwarding Inbound LEFT => r4;
    release_ext_nofwd_out_left: Release ExternalNoForwarding AgentOutbound LEFT => r3;
    release_adhoc_in_left: Release AdhocNumber Inbound LEFT => r4;
    release_adhoc_out_left: Release AdhocNumber AgentOutbound LEFT => r3;
    release_waiting_agent_in_left: Release WaitingAgent Inbound LEFT => release;
    release_waiting_agent_out_left: Release WaitingAgent AgentOutbound LEFT => release;
    conversation_agent_in_left: Conversation Agent Inbound LEFT => conversation;
    conversation_agent_out_left: Conversation Agent AgentOutbound LEFT => conversation;
    conversation_queue_in_left: Conversation Queue Inbound LEFT => conversation;
    conversation_queue_out_left: Conversation Queue AgentOutbound LEFT => conversation;
    conversation_ivr_in_left: Conversation Ivr Inbound LEFT => conversation;
    conversation_ivr_out_left: Conversation Ivr AgentOutbound LEFT => conversation;
    conversation_ext_fwd_in_left: Conversation ExternalForwarding Inbound LEFT => r4;
    conversation_ext_fwd_out_left: Conversation ExternalForwarding AgentOutbound LEFT => r4;
    conversation_ext_nofwd_in_left: Conversation ExternalNoForwarding Inbound LEFT => r4;
    conversation_ext_nofwd_out_left: Conversation ExternalNoForwarding AgentOutbound LEFT => r4;
    conversation_adhoc_in_left: Conversation AdhocNumber Inbound LEFT => r4;
    conversation_adhoc_out_left: Conversation AdhocNumber AgentOutbound LEFT => r4;
    conversation_waiting_agent_in_left: Conversation WaitingAgent Inbound LEFT => conversation;
    conversation_waiting_agent_out_left: Conversation WaitingAgent AgentOutbound LEFT => conversation;
    hangup_agent_in_left: Hangup Agent Inbound LEFT => r1_hangup;
    hangup_agent_out_left: Hangup Agent AgentOutbound LEFT => r1_hangup;
    hangup_queue_in_left: Hangup Queue Inbound LEFT => r1_hangup;
    hangup_queue_out_left: Hangup Queue AgentOutbound LEFT => r1_hangup;
    hangup_ivr_in_left: Hangup Ivr Inbound LEFT => hangup;
    hangup_ivr_out_left: Hangup Ivr AgentOutbound LEFT => hangup;
    hangup_ext_fwd_in_left: Hangup ExternalForwarding Inbound LEFT => r1_hangup;
    hangup_ext_fwd_out_left: Hangup ExternalForwarding AgentOutbound LEFT => r1_hangup;
    hangup_ext_nofwd_in_left: Hangup ExternalNoForwarding Inbound LEFT => r1_hangup;
    hangup_ext_nofwd_out_left: Hangup ExternalNoForwarding AgentOutbound LEFT => r1_hangup;
    hangup_adhoc_in_left: Hangup AdhocNumber Inbound LEFT => r1_hangup;
    hangup_adhoc_out_left: Hangup AdhocNumber AgentOutbound LEFT => r1_hangup;
    hangup_waiting_agent_in_left: Hangup WaitingAgent Inbound LEFT => r1_hangup;
    hangup_waiting_agent_out_left: Hangup WaitingAgent AgentOutbound LEFT => r1_hangup;
    // ---- requests from the IVR leg ----
    success_agent_in_ivr: Success Agent Inbound IVR => r1_ivr;
    success_agent_out_ivr: Success Agent AgentOutbound IVR => r1_ivr;
    success_queue_in_ivr: Success Queue Inbound IVR => r1_ivr;
    success_queue_out_ivr: Success Queue AgentOutbound IVR => r1_ivr;
    success_ivr_in_ivr: Success Ivr Inbound IVR => r1_ivr;
    success_ivr_out_ivr: Success Ivr AgentOutbound IVR => r1_ivr;
    success_ext_fwd_in_ivr: Success ExternalForwarding Inbound IVR => r1_ivr;
    success_ext_fwd_out_ivr: Success ExternalForwarding AgentOutbound IVR => r1_ivr;
    success_ext_nofwd_in_ivr: Success ExternalNoForwarding Inbound IVR => r1_ivr;
    success_ext_nofwd_out_ivr: Success ExternalNoForwarding AgentOutbound IVR => r1_ivr;
    success_adhoc_in_ivr: Success AdhocNumber Inbound IVR => r1_ivr;
    success_adhoc_out_ivr: Success AdhocNumber AgentOutbound IVR => r1_ivr;
    success_waiting_agent_in_ivr: Success WaitingAgent Inbound IVR => ivr_return;
    success_waiting_agent_out_ivr: Success WaitingAgent AgentOutbound IVR => ivr_return;
    release_agent_in_ivr: Release Agent Inbound IVR => r1_ivr;
    release_agent_out_ivr: Release Agent AgentOutbound IVR => r1_ivr;
    release_queue_in_ivr: Release Queue Inbound IVR => r1_ivr;
    release_queue_out_ivr: Release Queue AgentOutbound IVR => r1_ivr;
    release_ivr_in_ivr: Release Ivr Inbound IVR => r1_ivr;
    release_ivr_out_ivr: Release Ivr AgentOutbound IVR => r1_ivr;
    release_ext_fwd_in_ivr: Release ExternalForwarding Inbound IVR => r1_ivr;
    release_ext_fwd_out_ivr: Release ExternalForwarding AgentOutbound IVR => r1_ivr;
    release_ext_nofwd_in_ivr: Release ExternalNoForwarding Inbound IVR => r1_ivr;
    release_ext_nofwd_out_ivr: Release ExternalNoForwarding AgentOutbound IVR => r1_ivr;
    release_adhoc_in_ivr: Release AdhocNumber Inbound IVR => r1_ivr;
    release_adhoc_out_ivr: Release AdhocNumber AgentOutbound IVR => r1_ivr;
    release_waiting_agent_in_ivr: Release WaitingAgent Inbound IVR => ivr_return;
    release_waiting_agent_out_ivr: Release WaitingAgent AgentOutbound IVR => ivr_return;
    conversation_agent_in_ivr: Conversation Agent Inbound IVR => r1_ivr;
    conversation_agent_out_ivr: Conversation Agent AgentOutbound IVR => r1_ivr;
    conversation_queue_in_ivr: Conversation Queue Inbound IVR => r1_ivr;
    conversation_queue_out_ivr: Conversation Queue AgentOutbound IVR => r1_ivr;
    conversation_ivr_in_ivr: Conversation Ivr Inbound IVR => r1_ivr;
    conversation_ivr_out_ivr: Conversation Ivr AgentOutbound IVR => r1_ivr;
    conversation_ext_fwd_in_ivr: Conversation ExternalForwarding Inbound IVR => r1_ivr;
    conversation_ext_fwd_out_ivr: Conversation ExternalForwarding AgentOutbound IVR => r1_ivr;
    conversation_ext_nofwd_in_ivr: Conversation ExternalNoForwarding Inbound IVR => r1_ivr;
    conversation_ext_nofwd_out_ivr: Conversation ExternalNoForwarding AgentOutbound IVR => r1_ivr;
    conversation_adhoc_in_ivr: Conversation AdhocNumber Inbound IVR => r1_ivr;
    conversation_adhoc_out_ivr: Conversation AdhocNumber AgentOutbound IVR => r1_ivr;
    conversation_waiting_agent_in_ivr: Conversation WaitingAgent Inbound IVR => ivr_return;
    conversation_waiting_agent_out_ivr: Conversation WaitingAgent AgentOutbound IVR => ivr_return;
    hangup_agent_in_ivr: Hangup Agent Inbound IVR => r1_ivr;
    hangup_agent_out_ivr: Hangup Agent AgentOutbound IVR => r1_ivr;
    hangup_queue_in_ivr: Hangup Queue Inbound IVR => r1_ivr;
    hangup_queue_out_ivr: Hangup Queue AgentOutbound IVR => r1_ivr;
    hangup_ivr_in_ivr: Hangup Ivr Inbound IVR => r1_ivr;
    hangup_ivr_out_ivr: Hangup Ivr AgentOutbound IVR => r1_ivr;
    hangup_ext_fwd_in_ivr: Hangup ExternalForwarding Inbound IVR => r1_ivr;
    hangup_ext_fwd_out_ivr: Hangup ExternalForwarding AgentOutbound IVR => r1_ivr;
    hangup_ext_nofwd_in_ivr: Hangup ExternalNoForwarding Inbound IVR => r1_ivr;
    hangup_ext_nofwd_out_ivr: Hangup ExternalNoForwarding AgentOutbound IVR => r1_ivr;
    hangup_adhoc_in_ivr: Hangup AdhocNumber Inbound IVR => r1_ivr;
    hangup_adhoc_out_ivr: Hangup AdhocNumber AgentOutbound IVR => r1_ivr;
    hangup_waiting_agent_in_ivr: Hangup WaitingAgent Inbound IVR => ivr_return;
    hangup_waiting_agent_out_ivr: Hangup WaitingAgent AgentOutbound IVR => ivr_return;
    success_agent_in_ivr_left: Success Agent Inbound IVR_LEFT => r1_ivr;
    success_agent_out_ivr_left: Success Agent AgentOutbound IVR_LEFT => r1_ivr;
    success_queue_in_ivr_left: Success Queue Inbound IVR_LEFT => r1_ivr;
    success_queue_out_ivr_left: Success Queue AgentOutbound IVR_LEFT => r1_ivr;
    success_ivr_in_ivr_left: Success Ivr Inbound IVR_LEFT => r1_ivr;
    success_ivr_out_ivr_left: Success Ivr AgentOutbound IVR_LEFT => r1_ivr;
    success_ext_fwd_in_ivr_left: Success ExternalForwarding Inbound IVR_LEFT => r1_ivr;
    success_ext_fwd_out_ivr_left: Success ExternalForwarding AgentOutbound IVR_LEFT => r1_ivr;
    success_ext_nofwd_in_ivr_left: Success ExternalNoForwarding Inbound IVR_LEFT => r1_ivr;
    success_ext_nofwd_out_ivr_left: Success ExternalNoForwarding AgentOutbound IVR_LEFT => r1_ivr;
    success_adhoc_in_ivr_left: Success AdhocNumber Inbound IVR_LEFT => r1_ivr;
    success_adhoc_out_ivr_left: Success AdhocNumber AgentOutbound IVR_LEFT => r1_ivr;
    success_waiting_agent_in_ivr_left: Success WaitingAgent Inbound IVR_LEFT => ivr_return;
    success_waiting_agent_out_ivr_left: Success WaitingAgent AgentOutbound IVR_LEFT => ivr_return;
    release_agent_in_ivr_left: Release Agent Inbound IVR_LEFT => r1_ivr;
    release_agent_out_ivr_left: Release Agent AgentOutbound IVR_LEFT => r1_ivr;
    release_queue_in_ivr_left: Release Queue Inbound IVR_LEFT => r1_ivr;
    release_queue_out_ivr_left: Release Queue AgentOutbound IVR_LEFT => r1_ivr;
    release_ivr_in_ivr_left: Release Ivr Inbound IVR_LEFT => r1_ivr;
    release_ivr_out_ivr_left: Release Ivr AgentOutbound IVR_LEFT => r1_ivr;
    release_ext_fwd_in_ivr_left: Release ExternalForwarding Inbound IVR_LEFT => r1_ivr;
    release_ext_fwd_out_ivr_left: Release ExternalForwarding AgentOutbound IVR_LEFT => r1_ivr;
    release_ext_nofwd_in_ivr_left: Release ExternalNoForwarding Inbound IVR_LEFT => r1_ivr;
    release_ext_nofwd_out_ivr_left: Release ExternalNoForwarding AgentOutbound IVR_LEFT => r1_ivr;
    release_adhoc_in_ivr_left: Release AdhocNumber Inbound IVR_LEFT => r1_ivr;
    release_adhoc_out_ivr_left: Release AdhocNumber AgentOutbound IVR_LEFT => r1_ivr;
    release_waiting_agent_in_ivr_left: Release WaitingAgent Inbound IVR_LEFT => ivr_return;
    release_waiting_agent_out_ivr_left: Release WaitingAgent AgentOutbound IVR_LEFT => ivr_return;
    conversation_agent_in_ivr_left: Conversation Agent Inbound IVR_LEFT => r1_ivr;
    conversation_agent_out_ivr_left: Conversation Agent AgentOutbound IVR_LEFT => r1_ivr;
    conversation_queue_in_ivr_left: Conversation Queue Inbound IVR_LEFT => r1_ivr;
    conversation_queue_out_ivr_left: Conversation Queue AgentOutbound IVR_LEFT => r1_ivr;
    conversation_ivr_in_ivr_left: Conversation Ivr Inbound IVR_LEFT => r1_ivr;
    conversation_ivr_out_ivr_left: Conversation Ivr AgentOutbound IVR_LEFT => r1_ivr;
    conversation_ext_fwd_in_ivr_left: Conversation ExternalForwarding Inbound IVR_LEFT => r1_ivr;
    conversation_ext_fwd_out_ivr_left: Conversation ExternalForwarding AgentOutbound IVR_LEFT => r1_ivr;
    conversation_ext_nofwd_in_ivr_left: Conversation ExternalNoForwarding Inbound IVR_LEFT => r1_ivr;
    conversation_ext_nofwd_out_ivr_left: Conversation ExternalNoForwarding AgentOutbound IVR_LEFT => r1_ivr;
    conversation_adhoc_in_ivr_left: Conversation AdhocNumber Inbound IVR_LEFT => r1_ivr;
    conversation_adhoc_out_ivr_left: Conversation AdhocNumber AgentOutbound IVR_LEFT => r1_ivr;
    conversation_waiting_agent_in_ivr_left: Conversation WaitingAgent Inbound IVR_LEFT => ivr_return;
    conversation_waiting_agent_out_ivr_left: Conversation WaitingAgent AgentOutbound IVR_LEFT => ivr_return;
    hangup_agent_in_ivr_left: Hangup Agent Inbound IVR_LEFT => r1_ivr;
    hangup_agent_out_ivr_left: Hangup Agent AgentOutbound IVR_LEFT => r1_ivr;
    hangup_queue_in_ivr_left: Hangup Queue Inbound IVR_LEFT => r1_ivr;
    hangup_queue_out_ivr_left: Hangup Queue AgentOutbound IVR_LEFT => r1_ivr;
    hangup_ivr_in_ivr_left: Hangup Ivr Inbound IVR_LEFT => r1_ivr;
    hangup_ivr_out_ivr_left: Hangup Ivr AgentOutbound IVR_LEFT => r1_ivr;
    hangup_ext_fwd_in_ivr_left: Hangup ExternalForwarding Inbound IVR_LEFT => r1_ivr;
    hangup_ext_fwd_out_ivr_left: Hangup ExternalForwarding AgentOutbound IVR_LEFT => r1_ivr;
    hangup_ext_nofwd_in_ivr_left: Hangup ExternalNoForwarding Inbound IVR_LEFT => r1_ivr;
    hangup_ext_nofwd_out_ivr_left: Hangup ExternalNoForwarding AgentOutbound IVR_LEFT => r1_ivr;
    hangup_adhoc_in_ivr_left: Hangup AdhocNumber Inbound IVR_LEFT => r1_ivr;
    hangup_adhoc_out_ivr_left: Hangup AdhocNumber AgentOutbound IVR_LEFT => r1_ivr;
    hangup_waiting_agent_in_ivr_left: Hangup WaitingAgent Inbound IVR_LEFT => ivr_return;
    hangup_waiting_agent_out_ivr_left: Hangup WaitingAgent AgentOutbound IVR_LEFT => ivr_return;
}

#[test]
fn the_cells_above_are_the_whole_table() {
    let table: Vec<_> = table(Continue).collect();
    assert_eq!(table.len(), 4 * 7 * 2 * 4);
    assert_eq!(CELLS.len(), table.len());
    for (req, _) in &table {
        let n = CELLS
            .iter()
            .filter(|c| **c == (req.transfer, req.target, req.direction, req.history))
            .count();
        assert_eq!(n, 1, "{req:?} must have exactly one test");
    }
}

#[test]
fn table_agrees_with_decide() {
    for p in [Continue, Cancel] {
        for (req, outcome) in table(p) {
            assert_eq!(outcome, decide(&req, p));
        }
    }
}

#[test]
fn rule_8_final_notify_is_the_release_moment() {
    for p in [Continue, Cancel] {
        for (req, outcome) in table(p) {
            if let Ok(policy) = outcome {
                assert_eq!(policy.notify_final_at, policy.release, "{req:?}");
            }
        }
    }
}

#[test]
fn rule_5_released_agents_go_idle_or_wrap_up() {
    for (req, outcome) in table(Continue) {
        let Ok(policy) = outcome else { continue };
        let want = match (req.history.from_ivr, req.transfer) {
            (true, _) => AgentAfter::Talking,
            (false, TransferType::Hangup) => AgentAfter::Waiting,
            (false, _) => AgentAfter::IdleOrWrapUp,
        };
        assert_eq!(policy.agent_after, want, "{req:?}");
    }
}

#[test]
fn rule_6_only_conversation_follows_the_hangup_setting() {
    for (req, outcome) in table(Cancel) {
        let Ok(policy) = outcome else { continue };
        let cancels = policy.agent_hangup_before_answer == AgentHangupAction::Cancel;
        let conversation = req.transfer == TransferType::Conversation && !req.history.from_ivr;
        assert_eq!(cancels, conversation, "{req:?}");
    }
    for (_, outcome) in table(Continue) {
        if let Ok(policy) = outcome {
            assert_ne!(policy.agent_hangup_before_answer, AgentHangupAction::Cancel);
        }
    }
}

#[test]
fn rule_7_early_agent_hangup_never_strands_the_customer() {
    assert_eq!(
        AgentHangupAction::ContinueAsRelease.failure_path(),
        Some(FailurePath::FallbackOrRelease)
    );
    assert_eq!(
        AgentHangupAction::KeepWaiting.failure_path(),
        Some(FailurePath::CustomerBackToAgent)
    );
    assert_eq!(AgentHangupAction::Cancel.failure_path(), None);
}

#[test]
fn rule_4_lifts_when_the_agent_is_back_with_customer_1() {
    // Customer 1 left: every external kind refused, any type, either direction.
    for t in [TransferType::Success, TransferType::Conversation] {
        for k in [
            TargetKind::ExternalForwarding,
            TargetKind::ExternalNoForwarding,
            TargetKind::AdhocNumber,
        ] {
            let mut req = Request {
                transfer: t,
                target: k,
                direction: Direction::Inbound,
                history: LEFT,
            };
            assert_eq!(decide(&req, Continue).unwrap_err().rule, 4);
            // Customer 2 hung up instead: the agent is with customer 1, the flag is clear.
            req.history = PLAIN;
            assert!(decide(&req, Continue).is_ok(), "{req:?}");
        }
    }
}

#[test]
fn refusal_warnings_are_header_safe_and_name_their_rule() {
    for (_, outcome) in table(Continue) {
        let Err(r) = outcome else { continue };
        assert!(r.warning.starts_with(&format!("rule {}: ", r.rule)));
        assert!(!r.warning.contains(['"', '\\']));
        assert_eq!(
            r.warning_header_value(),
            format!("399 handover \"{}\"", r.warning)
        );
    }
}

const KINDS_CONF: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "d.local"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:5080"
access_number = "+3215550000"

[[external_numbers]]
name = "partner"
number = "0049301234567"
user_number_forwarding = true

[[external_numbers]]
name = "hotline"
number = "0049307654321"
"#;

#[test]
fn target_kinds_from_config() {
    let c = Config::from_toml_str(KINDS_CONF).unwrap();
    let kind = |s: &str| TargetKind::of(&c, &s.parse::<Target>().unwrap());
    assert_eq!(kind("agent:1001"), Some(TargetKind::Agent));
    assert_eq!(kind("queue:sales"), Some(TargetKind::Queue));
    assert_eq!(kind("ivr:survey"), Some(TargetKind::Ivr));
    assert_eq!(
        kind("external:partner"),
        Some(TargetKind::ExternalForwarding)
    );
    assert_eq!(
        kind("external:hotline"),
        Some(TargetKind::ExternalNoForwarding)
    );
    assert_eq!(kind("external:nobody"), None);
    assert_eq!(kind("number:0033123456789"), Some(TargetKind::AdhocNumber));
    assert!(TargetKind::AdhocNumber.is_external());
    assert!(!TargetKind::WaitingAgent.is_external());
}
