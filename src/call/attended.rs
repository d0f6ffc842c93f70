//! Attended transfer the way softphones do it (DESIGN.md §3, conversation row, trigger (a)):
//! the agent holds the customer, calls the target itself (a second call through handover),
//! then sends REFER with `Refer-To: <target?Replaces=...>` naming its consultation dialog
//! (RFC 3891, RFC 5589 §7). The two dialogs belong to two calls, so two actors cooperate:
//!
//! ```text
//!  call R (got the REFER)                    call O (owns the dialog named in Replaces)
//!  REFER ─► 202, NOTIFY 100
//!  TakeLeg { replaces, R's handle } ───────► checks the dialog is the agent's, gives the
//!                                            other party's leg (its Dialog, SDP origin,
//!                                            agent accounting), BYEs the agent's leg there,
//!  ◄──────────────────────────────────────── LegGiven { leg }; at exit points its key at R
//!  re-INVITE (no SDP) to the given leg → its offer → re-INVITE the other party here →
//!  answer in the given leg's ACK; NOTIFY 200; BYE the agent's leg here
//! ```
//!
//! The given leg keeps its tags and Call-ID (they embed O's key), so the router keeps an
//! alias from O's key to R while R lives; R drops the alias when it ends.

use std::time::Instant;

use super::core::{Call, Leg, LegId, LegState};
use super::dialog::Dialog;
use super::registry::{key_from_tag, CallHandle, CallKey};
use super::transfer::{Goal, Origin, Rebridge, Reinvite, Stage, TransferRun};
use super::CallEvent;
use crate::config::{Target, TransferType};
use crate::sdp::LegSdpOrigin;
use crate::sip::Replaces;

/// A leg moved from one call to another.
#[derive(Debug)]
pub struct GivenLeg {
    pub leg: Leg,
    /// The key of the call the leg came from (its tags and Call-ID embed it).
    pub from_key: CallKey,
}

/// What the calls tell each other during an attended transfer.
#[derive(Debug)]
pub enum LegExchange {
    /// R asks O for the party on the other side of the dialog `replaces`.
    Take {
        replaces: Replaces,
        agent: Option<String>,
        requester: CallHandle,
    },
    /// O gives the leg.
    Given(Box<GivenLeg>),
    /// O cannot give it (unknown dialog, another agent's dialog, a transaction pending):
    /// the status for the REFER's final NOTIFY.
    Refused { status: u16 },
}

impl Call {
    /// REFER with `Replaces` from the agent's leg `leg`: ask the call that owns the named
    /// dialog for its other party. The REFER was answered 202 already.
    pub(super) fn start_attended(
        &mut self,
        leg: LegId,
        customer_leg: LegId,
        replaces: Replaces,
        origin: Origin,
        now: Instant,
    ) {
        let agent = self.legs.get(leg).and_then(|l| l.agent.clone());
        let policy = crate::transfer::decide(
            &crate::transfer::Request {
                transfer: TransferType::Conversation,
                target: crate::transfer::TargetKind::Agent,
                direction: crate::transfer::Direction::Inbound,
                history: crate::transfer::History::default(),
            },
            self.ep.config().transfer.agent_hangup_during_conversation,
        );
        let Ok(policy) = policy else { return };
        self.transfer = Some(Box::new(TransferRun {
            kind: TransferType::Conversation,
            policy,
            target: Target::Number(replaces.call_id.clone()),
            agent_leg: leg,
            customer_leg,
            target_leg: None,
            notify: origin.notify.then_some(leg),
            hold_pending: false,
            target_offer: None,
            agent_gone: false,
            agent_id: agent.clone(),
            stage: Stage::Calling,
            ringing_notified: false,
            ring_deadline: None,
            retry: None,
            agent_released: false,
            rebridge: None,
        }));
        self.log_transfer("conversation", "replaces", "pending".into());
        self.notify("SIP/2.0 100 Trying", false, now);
        let other = key_from_tag(&replaces.to_tag)
            .or_else(|| key_from_tag(&replaces.from_tag))
            .filter(|k| *k != self.key)
            .and_then(|k| self.ep.calls.get(k));
        let (Some(other), Some(me)) = (other, self.ep.calls.get(self.key)) else {
            return self.attended_failed(481, now);
        };
        let asked = other.deliver(CallEvent::Legs(Box::new(LegExchange::Take {
            replaces,
            agent,
            requester: me,
        })));
        if asked.is_err() {
            self.attended_failed(481, now);
        }
    }

    fn attended_failed(&mut self, status: u16, now: Instant) {
        let reason = crate::sip::default_reason(status);
        self.transfer_outcome(&format!("failed:{status}"));
        self.notify(&format!("SIP/2.0 {status} {reason}"), true, now);
        self.transfer = None;
    }

    /// Another call's request or answer during an attended transfer.
    pub fn on_leg_exchange(&mut self, exchange: LegExchange, now: Instant) {
        match exchange {
            LegExchange::Take {
                replaces,
                agent,
                requester,
            } => self.give_leg(replaces, agent, requester, now),
            LegExchange::Given(given) => self.take_given_leg(*given, now),
            LegExchange::Refused { status } => {
                if self.transfer.is_some() {
                    self.attended_failed(status, now);
                }
            }
        }
    }

    /// O's side: give the party on the other side of the agent's dialog `replaces`.
    fn give_leg(
        &mut self,
        replaces: Replaces,
        agent: Option<String>,
        requester: CallHandle,
        now: Instant,
    ) {
        let refuse = |status| {
            let _ = requester.deliver(CallEvent::Legs(Box::new(LegExchange::Refused { status })));
        };
        // The named dialog, as the agent sees it: its own tag is the From tag.
        let named = self.legs.iter().position(|l| {
            l.dialog.call_id == replaces.call_id
                && l.dialog.local_tag == replaces.to_tag
                && l.dialog.remote_tag.as_deref() == Some(replaces.from_tag.as_str())
        });
        let Some(named) = named else {
            return refuse(481);
        };
        if self.legs.get(named).and_then(|l| l.agent.clone()) != agent || agent.is_none() {
            // RFC 3891 §3: only the party in the dialog may replace it.
            return refuse(403);
        }
        let Some(other) = self.peer_of(named) else {
            return refuse(481);
        };
        let busy = self
            .txns
            .values()
            .any(|e| e.leg == other && super::core::txn_active(&e.machine))
            || self.transfer.is_some();
        let confirmed = self
            .legs
            .get(other)
            .is_some_and(|l| l.state == LegState::Confirmed);
        if busy || !confirmed {
            return refuse(491);
        }
        let leg = self.take_leg(other);
        tracing::info!(
            call = self.key,
            to = requester.key,
            "leg handed over (attended transfer)"
        );
        let given = GivenLeg {
            leg,
            from_key: self.key,
        };
        if requester
            .deliver(CallEvent::Legs(Box::new(LegExchange::Given(Box::new(
                given,
            )))))
            .is_err()
        {
            return;
        }
        self.alias_to = Some(requester);
        self.bridge = None;
        self.end_reason
            .get_or_insert_with(|| "replaced by an attended transfer".to_owned());
        self.send_bye(named, Some("SIP;cause=200;text=\"Call transferred\""), now);
    }

    /// Moves leg `id` out of this call, leaving an ended placeholder that counts nothing.
    fn take_leg(&mut self, id: LegId) -> Leg {
        let placeholder = Leg::outgoing(
            Dialog::outgoing(
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                self.legs
                    .get(id)
                    .map(|l| l.dialog.flow)
                    .unwrap_or(crate::transport::Destination {
                        protocol: crate::transport::Protocol::Udp,
                        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
                        connection: None,
                    }),
            ),
            LegSdpOrigin::new(1),
            None,
            super::core::OutgoingInvite {
                branch: String::new(),
                request_uri: String::new(),
                cseq: 0,
                provisional_seen: true,
                cancel: super::core::CancelState::Sent,
                answered_elsewhere: false,
            },
        );
        let mut placeholder = placeholder;
        placeholder.state = LegState::Ended;
        match self.legs.get_mut(id) {
            Some(slot) => std::mem::replace(slot, placeholder),
            None => placeholder,
        }
    }

    /// R's side: the other call's party arrived; bridge it to our customer.
    fn take_given_leg(&mut self, given: GivenLeg, now: Instant) {
        let Some(customer) = self.transfer.as_ref().map(|t| t.customer_leg) else {
            // The transfer ended meanwhile: the leg has nobody to join; end it.
            let id = self.legs.len();
            self.legs.push(given.leg);
            self.aliases.push(given.from_key);
            return self.send_bye(id, None, now);
        };
        let id = self.legs.len();
        self.legs.push(given.leg);
        self.aliases.push(given.from_key);
        if let Some(t) = self.transfer.as_mut() {
            t.target_leg = Some(id);
            t.stage = Stage::Bridging;
            t.rebridge = Some(Rebridge {
                offerer: id,
                answerer: customer,
                goal: Goal::CompleteAttended,
                offer: None,
            });
        }
        self.local_reinvite(id, None, Reinvite::FetchOffer, now);
    }

    /// The attended transfer's re-bridge finished: the customer talks to the target.
    pub(super) fn attended_completed(&mut self, now: Instant) {
        tracing::info!(call = self.key, "attended transfer completed");
        self.release_agent(now);
        self.transfer_succeeded("agent completed (REFER with Replaces)");
        self.transfer = None;
    }

    /// Router aliases to drop when this call ends.
    pub fn aliases(&self) -> &[CallKey] {
        &self.aliases
    }
}
