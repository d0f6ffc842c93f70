//! The call core: the legs of one call, their transactions, and what happens when a
//! message or a timer arrives (RFC 3261 §12–§17 from the point of view of a B2BUA that is
//! the UA on every leg).
//!
//! ```text
//!  caller leg (UAS)                    handover                     callee legs (UAC, forked)
//!  INVITE ───────────────────────────► 100 Trying ────────────────► INVITE (own Call-ID/tags/o=)
//!  18x ◄────────────────────────────── relay ◄───────────────────── 18x
//!  200 (SDP, retransmitted until ACK) ◄ first 2xx wins ◄──────────── 200 ──► ACK, CANCEL the rest
//!  ACK ────────────────────────────────────────────────────────────► (late offer: ACK+SDP now)
//!  BYE ───► 200                                           BYE ─────► 200   (either direction)
//! ```
//!
//! The core never touches a socket or reads a clock: it is driven with `now` and writes
//! `(destination, bytes)` into its outbox, which the actor flushes. Every transaction of the
//! call lives in `txns`; the call is finished when every leg has ended and every transaction
//! has terminated (Timers D/J/K absorb late retransmissions first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dialog::{copy_passthrough_headers, Dialog};
use super::registry::{branch_for, call_id_for, tag_for, CallKey};
use super::{CallTarget, Caller};
use crate::cc::agents::AgentEvent;
use crate::endpoint::{Endpoint, TransactionCount};
use crate::incoming::IncomingRequest;
use crate::sdp::LegSdpOrigin;
use crate::sip::{default_reason, HeaderName, Method, SipMessage};
use crate::transaction::{
    Action, Actions, ClientInvite, ClientInviteState, ClientNonInvite, Reliability, ServerInvite,
    ServerInviteState, Transaction, Uas2xx,
};
use crate::transport::{Destination, Protocol};

/// Index of a leg in [`Call::legs`]. Leg 0 is always the caller's.
pub type LegId = usize;
pub const CALLER: LegId = 0;

/// Where a leg is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Our INVITE is out, no response with a tag yet.
    Calling,
    /// A provisional response created an early dialog.
    Early,
    /// 2xx sent or received: the dialog exists.
    Confirmed,
    /// We sent BYE or CANCEL and wait for the answer.
    Terminating,
    /// Nothing more will happen on this leg.
    Ended,
}

/// An INVITE handover sent to start a leg, kept to build its CANCEL and ACK.
#[derive(Debug, Clone)]
pub struct OutgoingInvite {
    pub branch: String,
    pub request_uri: String,
    pub cseq: u32,
    pub provisional_seen: bool,
    pub cancel: CancelState,
    /// Another fork answered: the CANCEL says so (RFC 3326 Reason, cause 200), so the phone
    /// does not count a missed call.
    pub answered_elsewhere: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelState {
    No,
    /// Wanted, but RFC 3261 §9.1 says wait for a provisional response first.
    Wanted,
    Sent,
}

/// One leg of the call.
#[derive(Debug)]
pub struct Leg {
    pub dialog: Dialog,
    pub state: LegState,
    pub sdp: LegSdpOrigin,
    /// The agent on this leg, whose state follows the leg.
    pub agent: Option<String>,
    offered: bool,
    talking: bool,
    pub invite: Option<OutgoingInvite>,
    /// The last ACK sent for a 2xx on this leg (re-sent for 2xx retransmissions).
    pub last_ack: Option<(u32, Bytes)>,
    /// `customer`, `agent`, `ivr`, `external` (for CDRs and the control API).
    pub role: &'static str,
    /// The leg's RFC 4028 session timer, once negotiated.
    pub session: Option<super::session_timer::SessionTimer>,
    pub created_at: Option<Instant>,
    pub answered_at: Option<Instant>,
    pub ended_at: Option<Instant>,
}

impl Leg {
    /// A leg a peer started with an INVITE handover answers (the caller's, or a dialog
    /// replacing another, RFC 3891).
    pub fn incoming(dialog: Dialog, sdp: LegSdpOrigin, agent: Option<String>, now: Instant) -> Leg {
        Leg {
            dialog,
            state: LegState::Early,
            sdp,
            agent,
            offered: false,
            talking: false,
            invite: None,
            last_ack: None,
            role: "agent",
            session: None,
            created_at: Some(now),
            answered_at: None,
            ended_at: None,
        }
    }

    /// A leg handover starts with an INVITE.
    pub fn outgoing(
        dialog: Dialog,
        sdp: LegSdpOrigin,
        agent: Option<String>,
        invite: OutgoingInvite,
    ) -> Leg {
        Leg {
            dialog,
            state: LegState::Calling,
            sdp,
            agent,
            offered: false,
            talking: false,
            invite: Some(invite),
            last_ack: None,
            role: "agent",
            session: None,
            created_at: None,
            answered_at: None,
            ended_at: None,
        }
    }
}

/// What a transaction is doing for the call.
#[derive(Debug)]
pub enum Purpose {
    /// The caller's initial INVITE (server).
    CallerInvite(Box<IncomingRequest>),
    /// An INVITE that starts a callee leg (client).
    CalleeInvite,
    /// A request received on a leg and relayed to another (server); the response comes back
    /// from the relay.
    Relayed {
        request: Box<IncomingRequest>,
        client: Option<TxnKey>,
    },
    /// A request relayed on a leg on behalf of a server transaction (client).
    RelayOut {
        server: TxnKey,
        offer_in_request: bool,
    },
    /// A request answered by handover itself (server), or a CANCEL we sent (client).
    Local,
    /// A BYE handover sent (client): the leg ends with its answer.
    Bye,
    /// A 2xx retransmitted until its ACK arrives (UAS core).
    Await2xxAck { cseq: u32 },
    /// The INVITE to a transfer target, or to the agent called back after an IVR flow
    /// (client).
    TransferTarget,
    /// A re-INVITE handover sends itself: hold, bridge, resume (client).
    LocalReinvite(super::transfer::Reinvite),
    /// An in-dialog OPTIONS asking whether the peer is still there (client).
    Keepalive,
    /// Our RFC 4028 session refresh by UPDATE (client).
    SessionRefresh,
    /// A NOTIFY of a REFER subscription (client): the next one waits for its answer.
    Notify,
}

/// Transaction key within one call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    /// A peer's request on `leg` (its branch; `invite` covers INVITE, ACK and CANCEL matching).
    Server {
        leg: LegId,
        branch: Box<str>,
        invite: bool,
    },
    /// One of our requests, by our branch.
    Client(Box<str>),
    /// The 2xx retransmitter of a leg.
    Retransmit2xx(LegId),
}

#[derive(Debug)]
pub struct TxnEntry {
    pub leg: LegId,
    pub machine: Transaction,
    pub purpose: Purpose,
    pub(super) _count: TransactionCount,
}

/// Whether the caller has been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Callee legs ringing.
    Routing,
    /// A callee answered; legs bridged.
    Connected,
    /// Hanging up; waiting for the last answers and transactions.
    Ending,
}

/// A failure that may become the caller's final response.
#[derive(Debug, Clone)]
struct Failure {
    code: u16,
    reason: String,
}

/// The state of one call.
pub struct Call {
    pub ep: Arc<Endpoint>,
    pub key: CallKey,
    pub caller: Caller,
    pub legs: Vec<Leg>,
    pub txns: HashMap<TxnKey, TxnEntry>,
    pub phase: Phase,
    /// The callee leg bridged to the caller.
    pub answered: Option<LegId>,
    /// The two legs whose media is joined; in-dialog requests are relayed between them.
    pub bridge: Option<(LegId, LegId)>,
    /// The transfer in progress, if any (DESIGN.md §3).
    pub transfer: Option<super::transfer::TransferRun>,
    /// An agent reserved for this call (hang-up transfer: `waiting`).
    pub reserved_agent: Option<String>,
    /// When the reservation runs out (`[[ivr]] max_waiting_s`): the agent is freed, and the
    /// IVR's return goes to the call's queue or the fallback instead.
    pub waiting_until: Option<Instant>,
    /// The skill queue the customer came through (the "agent's queue" of DESIGN.md §3).
    pub via_queue: Option<String>,
    /// The `[transfer] fallback` was tried already (never twice: no loops).
    pub fallback_used: bool,
    /// An INVITE with Replaces in progress: (its new leg, the leg it replaces).
    pub replacing: Option<(LegId, LegId)>,
    /// Data the call carries to every target (DESIGN.md §2): headers set by an IVR flow.
    pub call_data: Vec<(String, String)>,
    /// A resume re-INVITE answered 491, to send again (RFC 3261 §14.1).
    pub unhold_retry: Option<(Instant, LegId)>,
    /// A resume to send once the pending hold re-INVITE on this leg has its final response.
    pub unhold_after_hold: Option<LegId>,
    /// This call gave a leg to another call (attended transfer): its key must keep routing
    /// there after this call ends.
    pub alias_to: Option<super::registry::CallHandle>,
    /// Keys of calls whose legs this call took over (router aliases to drop at the end).
    pub aliases: Vec<CallKey>,
    /// Next in-dialog OPTIONS keep-alive (`[sip] keepalive_s`).
    pub keepalive_at: Option<Instant>,
    /// NOTIFYs waiting for the previous one's answer: (leg, sipfrag status line, terminated).
    pub notify_queue: std::collections::VecDeque<(LegId, String, bool)>,
    /// A BYE to send once the queued NOTIFYs of this leg have been answered.
    pub bye_after_notify: Option<LegId>,
    /// Rule 4 (DESIGN.md §3): customer 1 left during a conversation transfer, so the agent,
    /// now with customer 2, may not transfer to an external number.
    pub customer_left_during_conversation: bool,
    /// The skill queue the caller waits in (or whose agent is being offered the call).
    pub queued: Option<String>,
    /// The agent the queue offered this call to, while its legs ring.
    pub queue_offer: Option<String>,
    /// A late-offer 2xx whose ACK waits for the other leg's ACK (with the answer):
    /// (leg that sent the 2xx, its CSeq).
    pub pending_ack: Option<(LegId, u32)>,
    ring_deadline: Option<Instant>,
    best_failure: Option<Failure>,
    pub started: Instant,
    /// The time of the event being handled (set by the actor before each event), so that
    /// leg timestamps need no clock read inside the core.
    pub now: Instant,
    /// Wall-clock time of `started`, for CDRs (unix ms).
    pub started_unix_ms: u64,
    /// The id that follows the customer across every transfer (the caller's Call-ID).
    pub interaction_id: String,
    /// Every transfer attempt of the call, for its CDR.
    pub transfer_log: Vec<crate::cdr::CdrTransfer>,
    pub end_reason: Option<String>,
    outbox: Vec<(Destination, Bytes)>,
}

pub(super) fn reliability(dest: &Destination) -> Reliability {
    match dest.protocol {
        Protocol::Udp => Reliability::Unreliable,
        Protocol::Tcp => Reliability::Reliable,
    }
}

/// Failure ranking for the caller's final response when every fork failed (RFC 3261
/// §16.7 step 6 in spirit): 6xx first, then busy/decline, then the lowest class.
fn failure_rank(code: u16) -> u16 {
    match code {
        600..=699 => 0,
        486 => 1,
        480 => 3,
        408 => 4,
        400..=499 => 2,
        500..=599 => 5,
        _ => 6,
    }
}

impl Call {
    /// A new call for `req`, the caller's INVITE. Sends 100 Trying and rings every contact
    /// of `target`. Returns the call, or the response to send if it cannot start.
    pub fn start(
        ep: Arc<Endpoint>,
        key: CallKey,
        req: IncomingRequest,
        caller: Caller,
        target: CallTarget,
        now: Instant,
    ) -> Call {
        let caller_is_agent = matches!(caller, Caller::Agent { .. });
        let caller_agent = match &caller {
            Caller::Agent { id } => Some(id.clone()),
            Caller::Customer { .. } => None,
        };
        let local_tag = tag_for(key);
        let dialog = Dialog::from_request(&req, local_tag).unwrap_or_else(|_| {
            // The dispatcher validated From/To before starting the call; this is only a
            // fallback that keeps the types total.
            Dialog::outgoing(
                req.msg.call_id().to_owned(),
                tag_for(key),
                String::new(),
                String::new(),
                String::new(),
                req.response_destination(),
            )
        });
        let mut call = Call {
            ep,
            key,
            caller,
            legs: Vec::with_capacity(2),
            txns: HashMap::new(),
            phase: Phase::Routing,
            answered: None,
            bridge: None,
            transfer: None,
            reserved_agent: None,
            waiting_until: None,
            via_queue: None,
            fallback_used: false,
            replacing: None,
            call_data: Vec::new(),
            unhold_retry: None,
            unhold_after_hold: None,
            alias_to: None,
            aliases: Vec::new(),
            keepalive_at: None,
            notify_queue: std::collections::VecDeque::new(),
            bye_after_notify: None,
            customer_left_during_conversation: false,
            queued: None,
            queue_offer: None,
            pending_ack: None,
            ring_deadline: None,
            best_failure: None,
            started: now,
            now,
            started_unix_ms: 0,
            interaction_id: req.msg.call_id().to_owned(),
            transfer_log: Vec::new(),
            end_reason: None,
            outbox: Vec::with_capacity(4),
        };
        let mut caller_leg = Leg::incoming(
            dialog,
            LegSdpOrigin::new(fastrand::u64(1..1 << 62)),
            caller_agent,
            now,
        );
        caller_leg.role = if caller_is_agent { "agent" } else { "customer" };
        call.legs.push(caller_leg);

        let server_key = TxnKey::Server {
            leg: CALLER,
            branch: req.msg.branch().unwrap_or_default().into(),
            invite: true,
        };
        let trying = req.response(100, "Trying", None).finish();
        let flow = req.response_destination();
        let (machine, actions) = ServerInvite::new(trying, reliability(&flow), call.ep.timers);
        call.execute(&flow, actions);
        let offer = req.msg.body();
        let offer_ok = offer.is_empty() || crate::sdp::inspect(&offer).is_ok();
        call.insert_txn(
            server_key.clone(),
            CALLER,
            machine.into(),
            Purpose::CallerInvite(Box::new(req)),
        );

        if !offer_ok {
            let warning = crate::sdp::inspect(&offer)
                .err()
                .map(|e| e.warning_value())
                .unwrap_or_default();
            call.reject_caller(488, "Not Acceptable Here", Some(&warning), now);
            return call;
        }
        if let Some(queue) = &target.queue {
            call.join_queue(queue, now);
            return call;
        }
        if target.contacts.is_empty() {
            call.reject_caller(480, "Temporarily Unavailable", None, now);
            return call;
        }
        let ring = Duration::from_secs(call.ep.config().sip.ring_timeout_s.max(1));
        call.ring_deadline = Some(now + ring);
        for (uri, flow) in &target.contacts {
            call.add_callee(&target, uri, *flow, &offer, now);
        }
        call
    }

    /// Starts one callee leg: INVITE with the caller's offer under this leg's `o=` line.
    pub(super) fn add_callee(
        &mut self,
        target: &CallTarget,
        request_uri: &str,
        flow: Destination,
        offer: &Bytes,
        now: Instant,
    ) {
        let dialog = Dialog::outgoing(
            call_id_for(self.key, &self.ep.config().sip.domain),
            tag_for(self.key),
            target.presented_caller.clone(),
            target.party.clone(),
            request_uri.to_owned(),
            flow,
        );
        let branch = branch_for(self.key);
        let cseq = dialog.local_cseq;
        let mut leg = Leg {
            dialog,
            state: LegState::Calling,
            sdp: LegSdpOrigin::new(fastrand::u64(1..1 << 62)),
            agent: target.agent.clone(),
            offered: false,
            talking: false,
            invite: Some(OutgoingInvite {
                branch: branch.clone(),
                request_uri: request_uri.to_owned(),
                cseq,
                provisional_seen: false,
                cancel: CancelState::No,
                answered_elsewhere: false,
            }),
            last_ack: None,
            role: target.role,
            session: None,
            created_at: Some(now),
            answered_at: None,
            ended_at: None,
        };
        let mut b = leg
            .dialog
            .request(&self.ep, &Method::Invite, request_uri, &branch, cseq);
        b.header("Allow", ALLOW);
        self.add_initial_session_headers(&mut b);
        b.header("User-Agent", &self.ep.user_agent);
        // Call data travels with the call (DESIGN.md §2): the call id, the presented
        // identity towards a trunk, data an IVR flow returned.
        b.header_fmt(
            "Call-Info",
            format_args!("<urn:handover:call:{}>;purpose=info", self.key),
        );
        for (name, value) in &target.headers {
            b.header(name, value);
        }
        for (name, value) in &self.call_data {
            b.header(name, value);
        }
        if let Some(Purpose::CallerInvite(req)) = self.caller_invite_purpose() {
            copy_passthrough_headers(&mut b, &req.msg);
        }
        let bytes = if offer.is_empty() {
            b.finish()
        } else {
            let sdp = leg.sdp.apply(offer, false);
            b.body("application/sdp", &sdp)
        };
        let id = self.legs.len();
        self.legs.push(leg);
        self.set_offered(id, true);
        let (machine, actions) = ClientInvite::new(bytes, reliability(&flow), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            id,
            machine.into(),
            Purpose::CalleeInvite,
        );
    }

    fn caller_invite_purpose(&self) -> Option<&Purpose> {
        self.txns
            .values()
            .find(|e| matches!(e.purpose, Purpose::CallerInvite(_)))
            .map(|e| &e.purpose)
    }

    /// The caller's SDP offer (empty for a late offer).
    pub(super) fn caller_invite_offer(&self) -> Option<Bytes> {
        match self.caller_invite_purpose() {
            Some(Purpose::CallerInvite(req)) => Some(req.msg.body()),
            _ => None,
        }
    }

    /// Rings the callee legs for at most `[sip] ring_timeout_s`.
    pub(super) fn arm_ring_timeout(&mut self, now: Instant) {
        let ring = Duration::from_secs(self.ep.config().sip.ring_timeout_s.max(1));
        self.ring_deadline = Some(now + ring);
    }

    pub(super) fn caller_invite_key(&self) -> Option<TxnKey> {
        self.txns
            .iter()
            .find(|(_, e)| matches!(e.purpose, Purpose::CallerInvite(_)))
            .map(|(k, _)| k.clone())
    }

    pub fn insert_txn(&mut self, key: TxnKey, leg: LegId, machine: Transaction, purpose: Purpose) {
        if machine.is_terminated() {
            return;
        }
        let count = self.ep.count_transaction();
        self.txns.insert(
            key,
            TxnEntry {
                leg,
                machine,
                purpose,
                _count: count,
            },
        );
    }

    /// Queues every `Transmit` of `actions` for `dest`; returns the other actions.
    pub fn execute(&mut self, dest: &Destination, actions: Actions) -> Vec<Action> {
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::Transmit(bytes) => self.outbox.push((*dest, bytes)),
                other => rest.push(other),
            }
        }
        rest
    }

    pub fn send(&mut self, dest: Destination, bytes: Bytes) {
        self.outbox.push((dest, bytes));
    }

    /// Messages to send, in order.
    pub fn take_outbox(&mut self) -> Vec<(Destination, Bytes)> {
        std::mem::take(&mut self.outbox)
    }

    /// The earliest timer of the call.
    pub fn next_deadline(&self) -> Option<Instant> {
        let txn = self
            .txns
            .values()
            .filter_map(|e| e.machine.next_deadline())
            .min();
        let transfer = self.transfer.as_ref().and_then(|t| t.next_deadline());
        [
            txn,
            self.ring_deadline,
            transfer,
            self.unhold_retry.map(|r| r.0),
            self.keepalive_at,
            self.session_deadline(),
            self.waiting_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// `true` when every leg has ended (transactions may still absorb retransmissions).
    pub fn all_legs_ended(&self) -> bool {
        self.legs.iter().all(|l| l.state == LegState::Ended)
    }

    /// Once every leg has ended and no transaction waits for an answer, hands the server
    /// transactions that still absorb retransmissions to the endpoint's lingering table and
    /// drops the rest (their timers only absorb), so the actor can end at once instead of
    /// living on for 64·T1. Returns `true` when it did.
    pub fn hand_over_lingering(&mut self) -> bool {
        if !self.all_legs_ended() {
            return false;
        }
        let busy = self.txns.values().any(|e| txn_active(&e.machine));
        if busy {
            return false;
        }
        let txns = std::mem::take(&mut self.txns);
        let mut lingering = self.ep.lingering();
        for (key, entry) in txns {
            let TxnKey::Server {
                leg,
                branch,
                invite,
            } = key
            else {
                continue;
            };
            let keep = match &entry.machine {
                Transaction::ServerInvite(m) => matches!(
                    m.state(),
                    ServerInviteState::Completed | ServerInviteState::Confirmed
                ),
                Transaction::ServerNonInvite(_) => true,
                _ => false,
            };
            let Some(flow) = self.legs.get(leg).map(|l| l.dialog.flow) else {
                continue;
            };
            if keep {
                let key = crate::dispatch::linger_key(Some(&branch), flow.addr, invite);
                lingering.insert(key, entry.machine, flow, entry._count);
            }
        }
        true
    }

    /// `true` when every leg has ended and every transaction has terminated.
    pub fn is_finished(&self) -> bool {
        self.txns.is_empty() && self.legs.iter().all(|l| l.state == LegState::Ended)
    }

    // ------------------------------------------------------------------ agent accounting

    pub(super) fn set_offered(&mut self, leg: LegId, on: bool) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.offered == on {
            return;
        }
        l.offered = on;
        if let Some(agent) = l.agent.clone() {
            let ev = if on {
                AgentEvent::Offered
            } else {
                AgentEvent::OfferEnded
            };
            self.ep.agent_event(&agent, ev);
        }
    }

    fn set_talking(&mut self, leg: LegId, on: bool) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.talking == on {
            return;
        }
        l.talking = on;
        if let Some(agent) = l.agent.clone() {
            let ev = if on {
                AgentEvent::CallStarted
            } else {
                AgentEvent::CallEnded
            };
            self.ep.agent_event(&agent, ev);
        }
    }

    /// Moves `leg` to `state`, keeping its agent's counters right.
    pub fn set_leg_state(&mut self, leg: LegId, state: LegState) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        l.state = state;
        match state {
            LegState::Confirmed if l.answered_at.is_none() => l.answered_at = Some(self.now),
            LegState::Terminating | LegState::Ended if l.ended_at.is_none() => {
                l.ended_at = Some(self.now)
            }
            _ => {}
        }
        match state {
            LegState::Calling | LegState::Early => {}
            LegState::Confirmed => {
                // Talking first, so the agent goes ringing → talking without an idle blip.
                self.set_talking(leg, true);
                self.set_offered(leg, false);
            }
            LegState::Terminating | LegState::Ended => {
                self.set_offered(leg, false);
                self.set_talking(leg, false);
            }
        }
    }

    // ------------------------------------------------------------------ caller responses

    /// Sends a final non-2xx to the caller's INVITE (if it is still unanswered) and ends
    /// every other leg.
    pub fn reject_caller(&mut self, code: u16, reason: &str, warning: Option<&str>, now: Instant) {
        self.leave_queue();
        if self.end_reason.is_none() {
            self.end_reason = Some(format!("{code} {reason}"));
        }
        self.phase = Phase::Ending;
        if let Some(key) = self.caller_invite_key() {
            self.respond_server(&key, code, reason, None, now, |b| {
                if let Some(w) = warning {
                    b.header("Warning", w);
                }
            });
        }
        self.set_leg_state(CALLER, LegState::Ended);
        for leg in 1..self.legs.len() {
            self.hang_up_leg(leg, now);
        }
    }

    /// Responds on server transaction `key` with `code`; `body` is relayed SDP already
    /// rewritten for that leg (or another body with its content type).
    pub fn respond_server(
        &mut self,
        key: &TxnKey,
        code: u16,
        reason: &str,
        body: Option<(&str, Bytes)>,
        now: Instant,
        extra: impl FnOnce(&mut crate::sip::MessageBuilder),
    ) {
        let Some(entry) = self.txns.get(key) else {
            return;
        };
        let leg = entry.leg;
        let request = match &entry.purpose {
            Purpose::CallerInvite(r) => r,
            Purpose::Relayed { request, .. } => request,
            _ => return,
        };
        let local_tag = self.legs.get(leg).map(|l| l.dialog.local_tag.clone());
        let dest = request.response_destination();
        let is_invite = request.msg.method() == Some(&Method::Invite);
        let is_update = request.msg.method() == Some(&Method::Update);
        let session = ((is_invite || is_update) && (200..300).contains(&code))
            .then(|| super::session_timer::answer(&request.msg, self.session_policy(), now));
        let cseq = request.msg.cseq().seq;
        let mut b = request.response(code, reason, local_tag.as_deref());
        if is_invite && (101..300).contains(&code) {
            if let Some(l) = self.legs.get(leg) {
                b.header("Contact", &l.dialog.contact(&self.ep));
            }
        }
        if code >= 200 && is_invite && code < 300 {
            b.header("Allow", ALLOW);
            b.header("Supported", super::liveness::SUPPORTED);
        }
        if let Some((decision, timer)) = session {
            for (name, value) in self.session_uas_2xx(leg, decision, timer, now) {
                b.header(name, &value);
            }
        }
        b.header("Server", &self.ep.user_agent);
        extra(&mut b);
        let bytes = match body {
            Some((ct, body)) => b.body(ct, &body),
            None => b.finish(),
        };
        let Some(entry) = self.txns.get_mut(key) else {
            return;
        };
        let actions = match &mut entry.machine {
            Transaction::ServerInvite(m) => m.respond(code, bytes.clone(), now),
            Transaction::ServerNonInvite(m) => m.respond(code, bytes.clone(), now),
            _ => return,
        };
        let Ok(actions) = actions else { return };
        let terminated = actions.is_terminated();
        self.execute(&dest, actions);
        if terminated {
            self.txns.remove(key);
        }
        if is_invite && (200..300).contains(&code) {
            // RFC 3261 §13.3.1.4: the UAS core retransmits the 2xx until the ACK.
            let retransmit = Uas2xx::new(bytes, reliability(&dest), self.ep.timers, now);
            self.insert_txn(
                TxnKey::Retransmit2xx(leg),
                leg,
                retransmit.into(),
                Purpose::Await2xxAck { cseq },
            );
        }
    }

    // ------------------------------------------------------------------ ending legs

    /// Ends `leg` from our side: BYE if confirmed, CANCEL if ringing.
    pub fn hang_up_leg(&mut self, leg: LegId, now: Instant) {
        if self.bye_after_notify == Some(leg) {
            // Its BYE follows the NOTIFYs still queued on it.
            return;
        }
        let Some(l) = self.legs.get(leg) else { return };
        match l.state {
            LegState::Confirmed => self.send_bye(leg, None, now),
            LegState::Calling | LegState::Early => self.cancel_leg(leg, now),
            LegState::Terminating | LegState::Ended => {}
        }
    }

    pub fn send_bye(&mut self, leg: LegId, reason: Option<&str>, now: Instant) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let branch = branch_for(self.key);
        let flow = l.dialog.flow;
        let mut b = l.dialog.next_request(&self.ep, &Method::Bye, &branch);
        if let Some(r) = reason {
            b.header("Reason", r);
        }
        b.header("User-Agent", &self.ep.user_agent);
        let bytes = b.finish();
        let (machine, actions) =
            ClientNonInvite::new(bytes, reliability(&flow), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            leg,
            machine.into(),
            Purpose::Bye,
        );
        self.set_leg_state(leg, LegState::Terminating);
    }

    /// CANCELs the INVITE of a callee leg (RFC 3261 §9.1): only after a provisional
    /// response; before that, remembered and sent when one arrives.
    pub fn cancel_leg(&mut self, leg: LegId, now: Instant) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let Some(inv) = l.invite.as_mut() else {
            return;
        };
        if inv.cancel == CancelState::Sent {
            return;
        }
        if !inv.provisional_seen {
            inv.cancel = CancelState::Wanted;
            return;
        }
        inv.cancel = CancelState::Sent;
        let inv = inv.clone();
        let flow = l.dialog.flow;
        // CANCEL copies Request-URI, Call-ID, From, To (without the peer's tag), CSeq number
        // and the top Via of the INVITE (RFC 3261 §9.1).
        let mut untagged = l.dialog.clone();
        untagged.remote_tag = None;
        untagged.route_set.clear();
        let mut b = untagged.request(
            &self.ep,
            &Method::Cancel,
            &inv.request_uri,
            &inv.branch,
            inv.cseq,
        );
        if inv.answered_elsewhere {
            b.header("Reason", "SIP;cause=200;text=\"Call completed elsewhere\"");
        }
        let bytes = b.finish();
        if let Some(entry) = self
            .txns
            .get_mut(&TxnKey::Client(inv.branch.clone().into()))
        {
            if let Transaction::ClientInvite(m) = &mut entry.machine {
                m.cancel_sent(now);
            }
        }
        let cancel_branch: Box<str> = format!("{}-cancel", inv.branch).into();
        let (machine, actions) =
            ClientNonInvite::new(bytes, reliability(&flow), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(cancel_branch),
            leg,
            machine.into(),
            Purpose::Local,
        );
    }

    /// The call is over from the caller's or the callee's point of view: end every other
    /// leg.
    pub fn end_call(&mut self, reason: &str, except: LegId, now: Instant) {
        self.leave_queue();
        if self.end_reason.is_none() {
            self.end_reason = Some(reason.to_owned());
        }
        self.phase = Phase::Ending;
        self.ring_deadline = None;
        for leg in 0..self.legs.len() {
            if leg != except {
                if leg == CALLER && self.legs.get(CALLER).map(|l| l.state) == Some(LegState::Early)
                {
                    self.reject_caller(487, "Request Terminated", None, now);
                } else {
                    self.hang_up_leg(leg, now);
                }
            }
        }
    }

    // ------------------------------------------------------------------ responses

    /// A response to one of our requests.
    pub fn on_response(&mut self, msg: SipMessage, now: Instant) {
        let Some(branch) = msg.branch() else { return };
        let key = TxnKey::Client(branch.into());
        let cancel_key = if msg.cseq().method == Method::Cancel {
            Some(TxnKey::Client(format!("{branch}-cancel").into()))
        } else {
            None
        };
        let key = cancel_key.unwrap_or(key);
        let Some(status) = msg.status() else { return };
        let Some(entry) = self.txns.get_mut(&key) else {
            // A 2xx retransmitted after our INVITE transaction ended: ACK it again.
            if (200..300).contains(&status) && msg.cseq().method == Method::Invite {
                self.reack(&msg);
            } else {
                self.ep
                    .counters
                    .stray_responses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        };
        let leg = entry.leg;
        let flow = self.legs.get(leg).map(|l| l.dialog.flow);
        // A 2xx retransmitted while the INVITE is already Accepted (RFC 6026 §7.2) only
        // needs the same ACK again (RFC 3261 §13.2.2.4); acting on it twice would start a
        // second bridge, relay a second 200, and so on.
        let retransmitted_2xx = (200..300).contains(&status)
            && matches!(&entry.machine, Transaction::ClientInvite(m) if m.state() == ClientInviteState::Accepted);
        if retransmitted_2xx {
            if let Transaction::ClientInvite(m) = &mut entry.machine {
                let _ = m.on_response(status, now);
            }
            return self.reack(&msg);
        }
        let actions = match &mut entry.machine {
            Transaction::ClientInvite(m) => m.on_response(status, now),
            Transaction::ClientNonInvite(m) => m.on_response(status, now),
            _ => return,
        };
        let Some(flow) = flow else { return };
        let rest = self.execute(&flow, actions);
        let mut terminated = false;
        for action in rest {
            match action {
                Action::PassToTu => self.on_transaction_response(&key, leg, &msg, now),
                Action::BuildAck => self.build_non2xx_ack(&key, leg, &msg, now),
                Action::Terminated => terminated = true,
                Action::Timeout | Action::TransportError | Action::NoAck | Action::Transmit(_) => {}
            }
        }
        if terminated {
            self.txns.remove(&key);
        }
    }

    fn reack(&mut self, msg: &SipMessage) {
        let seq = msg.cseq().seq;
        let found = self.legs.iter().find(|l| {
            l.dialog.call_id == msg.call_id() && l.last_ack.as_ref().is_some_and(|(s, _)| *s == seq)
        });
        if let Some(l) = found {
            if let Some((_, ack)) = &l.last_ack {
                let (flow, ack) = (l.dialog.flow, ack.clone());
                self.send(flow, ack);
            }
        }
    }

    /// RFC 3261 §17.1.1.3: the ACK for a non-2xx final response, built once and handed to
    /// the transaction, which re-sends it for retransmitted responses.
    fn build_non2xx_ack(&mut self, key: &TxnKey, leg: LegId, resp: &SipMessage, now: Instant) {
        let Some(l) = self.legs.get(leg) else { return };
        let (request_uri, branch, cseq) = match (&l.invite, key) {
            (Some(inv), TxnKey::Client(b)) if **b == *inv.branch => {
                (inv.request_uri.clone(), inv.branch.clone(), inv.cseq)
            }
            _ => {
                let TxnKey::Client(b) = key else { return };
                (
                    l.dialog.remote_target.clone(),
                    b.to_string(),
                    resp.cseq().seq,
                )
            }
        };
        let mut d = l.dialog.clone();
        d.remote_tag = resp.to_tag().map(str::to_owned);
        if l.invite.as_ref().is_some_and(|i| i.branch == branch) {
            d.route_set.clear();
        }
        let ack = d
            .request(&self.ep, &Method::Ack, &request_uri, &branch, cseq)
            .finish();
        let flow = d.flow;
        if let Some(entry) = self.txns.get_mut(key) {
            if let Transaction::ClientInvite(m) = &mut entry.machine {
                let actions = m.set_ack(ack, now);
                let terminated = actions.is_terminated();
                self.execute(&flow, actions);
                if terminated {
                    self.txns.remove(key);
                }
            }
        }
    }

    /// Sends the ACK for a 2xx on `leg` (RFC 3261 §13.2.2.4: a new transaction of the UAC
    /// core), with `body` when the offer was in the 2xx.
    pub fn send_2xx_ack(&mut self, leg: LegId, cseq: u32, body: Option<Bytes>) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let branch = branch_for(self.key);
        let target = l.dialog.remote_target.clone();
        let b = l
            .dialog
            .request(&self.ep, &Method::Ack, &target, &branch, cseq);
        let ack = match body {
            Some(sdp) if !sdp.is_empty() => {
                let sdp = l.sdp.apply(&sdp, false);
                b.body("application/sdp", &sdp)
            }
            _ => b.finish(),
        };
        l.last_ack = Some((cseq, ack.clone()));
        let flow = l.dialog.flow;
        self.send(flow, ack);
    }

    fn on_transaction_response(
        &mut self,
        key: &TxnKey,
        leg: LegId,
        msg: &SipMessage,
        now: Instant,
    ) {
        let Some(status) = msg.status() else { return };
        if (200..300).contains(&status)
            && matches!(msg.cseq().method, Method::Invite | Method::Update)
        {
            self.session_uac_2xx(leg, msg, now);
        }
        let purpose = match self.txns.get(key).map(|e| &e.purpose) {
            Some(Purpose::CalleeInvite) => 0,
            Some(Purpose::RelayOut { .. }) => 1,
            Some(Purpose::Bye) => 2,
            Some(Purpose::TransferTarget) => 4,
            Some(Purpose::Keepalive) => {
                if matches!(status, 408 | 481) {
                    self.leg_lost(leg, now);
                }
                return;
            }
            Some(Purpose::SessionRefresh) => {
                if status >= 200 {
                    self.on_session_refresh_response(leg, status, now);
                }
                return;
            }
            Some(Purpose::Notify) => {
                if status >= 200 {
                    self.notify_done(leg, now);
                }
                return;
            }
            Some(Purpose::LocalReinvite(kind)) => {
                let kind = *kind;
                return self.on_local_reinvite_response(leg, kind, msg, status, now);
            }
            _ => 3,
        };
        match purpose {
            0 => self.on_callee_invite_response(leg, msg, status, now),
            1 => self.on_relay_response(key, leg, msg, status, now),
            2 if status >= 200 => self.set_leg_state(leg, LegState::Ended),
            4 => self.on_transfer_target_response(leg, msg, status, now),
            _ => {}
        }
    }

    fn on_callee_invite_response(
        &mut self,
        leg: LegId,
        msg: &SipMessage,
        status: u16,
        now: Instant,
    ) {
        match status {
            100 => {}
            101..=199 => {
                let cancel_wanted = match self.legs.get_mut(leg) {
                    Some(l) => {
                        if msg.to_tag().is_some() {
                            l.dialog.confirm(msg);
                            if l.state == LegState::Calling {
                                l.state = LegState::Early;
                            }
                        }
                        match l.invite.as_mut() {
                            Some(inv) => {
                                inv.provisional_seen = true;
                                inv.cancel == CancelState::Wanted
                            }
                            None => false,
                        }
                    }
                    None => false,
                };
                if cancel_wanted {
                    self.cancel_leg(leg, now);
                    return;
                }
                if self.phase == Phase::Routing {
                    self.relay_provisional(msg, status, now);
                }
            }
            200..=299 => self.on_callee_answer(leg, msg, now),
            _ => {
                self.set_leg_state(leg, LegState::Ended);
                let reason = msg
                    .reason()
                    .unwrap_or_else(|| default_reason(status))
                    .to_owned();
                self.callee_failed(status, reason, now);
            }
        }
    }

    /// Relays a callee's 18x to the caller (SDP under the caller leg's `o=` line).
    fn relay_provisional(&mut self, msg: &SipMessage, status: u16, now: Instant) {
        let Some(key) = self.caller_invite_key() else {
            return;
        };
        let body = msg.body();
        let body = if body.is_empty() {
            None
        } else {
            self.legs
                .get_mut(CALLER)
                .map(|l| ("application/sdp", l.sdp.apply(&body, false)))
        };
        let reason = msg
            .reason()
            .unwrap_or_else(|| default_reason(status))
            .to_owned();
        self.respond_server(&key, status, &reason, body, now, |b| {
            copy_passthrough_headers(b, msg)
        });
    }

    fn on_callee_answer(&mut self, leg: LegId, msg: &SipMessage, now: Instant) {
        let cseq = msg.cseq().seq;
        if let Some(l) = self.legs.get_mut(leg) {
            l.dialog.confirm(msg);
        }
        // Queue music answering while an agent's offer rings: the agent wins; the music
        // leg is taken and hung up like a second fork.
        let music_late =
            self.legs.get(leg).is_some_and(|l| l.role == "music") && self.queue_offer.is_some();
        let already = self.answered.is_some_and(|a| a != leg) || music_late;
        if already || self.phase == Phase::Ending {
            // A second fork answered, or the caller left meanwhile: take the 2xx and end the
            // leg (RFC 3261 §13.2.2.4).
            self.set_leg_state(leg, LegState::Confirmed);
            self.send_2xx_ack(leg, cseq, None);
            self.send_bye(
                leg,
                Some("SIP;cause=200;text=\"Call completed elsewhere\""),
                now,
            );
            return;
        }
        if self.answered == Some(leg) {
            return;
        }
        self.answered = Some(leg);
        self.bridge = Some((CALLER, leg));
        self.arm_keepalive(now);
        if let Some(agent) = self.queue_offer.take() {
            self.ep.queue_offer_answered(self.key, &agent);
            if let Some(q) = self.queued.take() {
                self.via_queue = Some(q.clone());
                self.queue_left(q, "answered");
            }
        }
        self.phase = Phase::Connected;
        self.ring_deadline = None;
        self.set_leg_state(leg, LegState::Confirmed);
        let caller_offered = match self.caller_invite_purpose() {
            Some(Purpose::CallerInvite(req)) => !req.msg.body().is_empty(),
            _ => true,
        };
        if caller_offered {
            self.send_2xx_ack(leg, cseq, None);
        } else {
            // Late offer (RFC 3725 flow I): the answer comes in the caller's ACK.
            self.pending_ack = Some((leg, cseq));
        }
        for other in 1..self.legs.len() {
            if other != leg {
                if let Some(inv) = self.legs.get_mut(other).and_then(|l| l.invite.as_mut()) {
                    inv.answered_elsewhere = true;
                }
                self.cancel_leg(other, now);
            }
        }
        let Some(key) = self.caller_invite_key() else {
            return;
        };
        let body = msg.body();
        let body = if body.is_empty() {
            None
        } else {
            self.legs
                .get_mut(CALLER)
                .map(|l| ("application/sdp", l.sdp.apply(&body, false)))
        };
        let reason = msg.reason().unwrap_or("OK").to_owned();
        self.respond_server(&key, 200, &reason, body, now, |b| {
            copy_passthrough_headers(b, msg)
        });
        self.set_leg_state(CALLER, LegState::Confirmed);
        tracing::info!(call = self.key, callee_leg = leg, "call answered");
        if self.legs.get(leg).is_some_and(|l| l.role == "music") {
            self.start_queue_music(leg, now);
        }
        let agent = self.legs.get(leg).and_then(|l| l.agent.clone());
        self.publish(crate::events::Event::CallAnswered {
            call_id: self.call_id(),
            agent,
        });
    }

    fn callee_failed(&mut self, code: u16, reason: String, now: Instant) {
        let better = self
            .best_failure
            .as_ref()
            .is_none_or(|f| failure_rank(code) < failure_rank(f.code));
        if better {
            self.best_failure = Some(Failure { code, reason });
        }
        let ringing = self
            .legs
            .iter()
            .skip(1)
            .any(|l| matches!(l.state, LegState::Calling | LegState::Early));
        if !ringing && self.phase == Phase::Routing {
            if let Some(agent) = self.queue_offer.take() {
                // A queue offer failed: the call goes back to the head of its queue.
                self.best_failure = None;
                return self.ep.queue_offer_failed(
                    self.key,
                    &agent,
                    super::queueing::offer_failure(code),
                );
            }
            let f = self.best_failure.clone().unwrap_or(Failure {
                code: 480,
                reason: "Temporarily Unavailable".into(),
            });
            let code = if (300..400).contains(&f.code) || f.code == 401 || f.code == 407 {
                480
            } else {
                f.code
            };
            self.reject_caller(code, &f.reason, None, now);
        }
    }

    // ------------------------------------------------------------------ timers

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transfer_timeouts(now);
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.send_keepalives(now);
        }
        self.session_timeouts(now);
        if self.ring_deadline.is_some_and(|d| d <= now) {
            self.ring_deadline = None;
            if self.phase == Phase::Routing {
                tracing::info!(call = self.key, "no answer within the ring timeout");
                self.reject_caller(480, "No Answer", None, now);
            }
        }
        let due: Vec<TxnKey> = self
            .txns
            .iter()
            .filter(|(_, e)| e.machine.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(entry) = self.txns.get_mut(&key) else {
                continue;
            };
            let leg = entry.leg;
            let actions = entry.machine.handle_timeout(now);
            let resent = actions
                .iter()
                .filter(|a| matches!(a, Action::Transmit(_)))
                .count() as u64;
            if resent > 0 {
                self.ep
                    .counters
                    .retransmissions
                    .fetch_add(resent, std::sync::atomic::Ordering::Relaxed);
            }
            let dest = self.txn_destination(&key, leg);
            let rest = self.execute(&dest, actions);
            let mut terminated = false;
            for action in rest {
                match action {
                    Action::Timeout | Action::TransportError => self.on_txn_timeout(&key, leg, now),
                    Action::NoAck => self.on_no_ack(leg, now),
                    Action::Terminated => terminated = true,
                    Action::PassToTu | Action::BuildAck | Action::Transmit(_) => {}
                }
            }
            if terminated {
                self.txns.remove(&key);
            }
        }
    }

    /// Where a transaction's retransmissions go: responses to the request's source, requests
    /// to the leg's flow.
    fn txn_destination(&self, key: &TxnKey, leg: LegId) -> Destination {
        let from_request = self.txns.get(key).and_then(|e| match &e.purpose {
            Purpose::CallerInvite(r) => Some(r.response_destination()),
            Purpose::Relayed { request, .. } => Some(request.response_destination()),
            _ => None,
        });
        from_request
            .or_else(|| self.legs.get(leg).map(|l| l.dialog.flow))
            .unwrap_or(Destination {
                protocol: Protocol::Udp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5060)),
                connection: None,
            })
    }

    fn on_txn_timeout(&mut self, key: &TxnKey, leg: LegId, now: Instant) {
        let kind = match self.txns.get(key).map(|e| &e.purpose) {
            Some(Purpose::CalleeInvite) => 0,
            Some(Purpose::RelayOut { .. }) => 1,
            Some(Purpose::Bye) => 2,
            Some(Purpose::CallerInvite(_)) => 3,
            Some(Purpose::TransferTarget) => 5,
            Some(Purpose::Keepalive | Purpose::SessionRefresh) => {
                self.leg_lost(leg, now);
                return;
            }
            Some(Purpose::Notify) => {
                // No answer to a NOTIFY: the subscriber is gone (RFC 6665 §4.2.2); drop the
                // rest and release the agent's leg now.
                self.notify_queue.retain(|n| n.0 != leg);
                self.notify_done(leg, now);
                return;
            }
            Some(Purpose::LocalReinvite(k)) => {
                // A re-INVITE that timed out is treated as refused (RFC 3261 §14.1); the
                // dialog is then presumed gone and the call ends.
                let k = *k;
                if k == super::transfer::Reinvite::Bridge {
                    self.on_transfer_target_response_timeout(now);
                }
                self.set_leg_state(leg, LegState::Ended);
                self.end_call("re-INVITE timed out", leg, now);
                return;
            }
            _ => 4,
        };
        match kind {
            5 => {
                let current = self.transfer.as_ref().and_then(|t| t.target_leg) == Some(leg);
                self.set_leg_state(leg, LegState::Ended);
                if current {
                    self.transfer_failed(408, "Request Timeout", now);
                }
            }
            0 => {
                self.set_leg_state(leg, LegState::Ended);
                self.callee_failed(408, "Request Timeout".into(), now);
            }
            1 => {
                if let Some(Purpose::RelayOut { server, .. }) =
                    self.txns.get(key).map(|e| &e.purpose)
                {
                    let server = server.clone();
                    self.respond_server(&server, 408, "Request Timeout", None, now, |_| {});
                }
            }
            2 => self.set_leg_state(leg, LegState::Ended),
            // Timer H: our final response to the caller was never ACKed.
            3 => self.set_leg_state(leg, LegState::Ended),
            _ => {}
        }
    }

    /// The transport refused to send to `dest`: every client transaction towards it fails
    /// as if timed out (RFC 3261 §17.1.4: the TU sees a 503 equivalent).
    pub fn on_transport_error(&mut self, dest: &Destination, now: Instant) {
        let keys: Vec<(TxnKey, LegId)> = self
            .txns
            .iter()
            .filter(|(k, e)| {
                matches!(k, TxnKey::Client(_))
                    && self.legs.get(e.leg).is_some_and(|l| l.dialog.flow == *dest)
            })
            .map(|(k, e)| (k.clone(), e.leg))
            .collect();
        for (key, leg) in keys {
            let Some(entry) = self.txns.get_mut(&key) else {
                continue;
            };
            let actions = match &mut entry.machine {
                Transaction::ClientInvite(m) => m.on_transport_error(),
                Transaction::ClientNonInvite(m) => m.on_transport_error(),
                _ => continue,
            };
            let terminated = actions.is_terminated();
            if actions.contains(&Action::TransportError) {
                self.on_txn_timeout(&key, leg, now);
            }
            if terminated {
                self.txns.remove(&key);
            }
        }
    }

    /// RFC 3261 §13.3.1.4: no ACK for our 2xx within 64*T1 — confirm and BYE the leg, and
    /// end the call.
    fn on_no_ack(&mut self, leg: LegId, now: Instant) {
        tracing::info!(call = self.key, leg, "no ACK for 2xx; ending the call");
        let reason = "SIP;cause=408;text=\"ACK timeout\"";
        self.send_bye(leg, Some(reason), now);
        // The other legs learn why too (RFC 3326).
        for other in 0..self.legs.len() {
            if other != leg
                && self
                    .legs
                    .get(other)
                    .is_some_and(|l| l.state == LegState::Confirmed)
            {
                self.send_bye(other, Some(reason), now);
            }
        }
        self.end_call("no ACK", leg, now);
    }

    /// Ends everything at once (shutdown, operator): BYE/CANCEL/reject every leg.
    pub fn hangup_all(&mut self, reason: &str, now: Instant) {
        self.end_reason.get_or_insert_with(|| reason.to_owned());
        self.transfer = None;
        self.unreserve_agent();
        if self.legs.get(CALLER).map(|l| l.state) == Some(LegState::Early) {
            self.reject_caller(480, "Temporarily Unavailable", None, now);
        } else {
            // Every confirmed leg learns why (RFC 3326): shutdown, operator.
            for leg in 0..self.legs.len() {
                if self
                    .legs
                    .get(leg)
                    .is_some_and(|l| l.state == LegState::Confirmed)
                {
                    self.send_bye(leg, Some(reason), now);
                } else {
                    self.hang_up_leg(leg, now);
                }
            }
            self.phase = Phase::Ending;
        }
    }

    /// Looks up a leg by a request's dialog identifiers.
    pub fn leg_for_request(&self, msg: &SipMessage) -> Option<LegId> {
        if msg.to_tag().is_none() {
            // The caller's INVITE retransmission or CANCEL.
            let caller = self.legs.get(CALLER)?;
            return (msg.call_id() == caller.dialog.call_id
                && msg.from_tag() == caller.dialog.remote_tag.as_deref())
            .then_some(CALLER);
        }
        self.legs.iter().position(|l| l.dialog.matches_request(msg))
    }

    /// Releases everything the call counted for agents (called when the actor ends, so a
    /// lost message never leaves an agent `talking` or `ringing`).
    pub fn release_agents(&mut self) {
        for leg in 0..self.legs.len() {
            self.set_offered(leg, false);
            self.set_talking(leg, false);
        }
        self.unreserve_agent();
    }

    /// Reserves `agent` for this call (`waiting`, hang-up transfer).
    pub fn reserve_agent(&mut self, agent: &str) {
        if self.reserved_agent.is_none() {
            self.reserved_agent = Some(agent.to_owned());
            self.ep.agent_event(agent, AgentEvent::WaitingStarted);
        }
    }

    pub fn unreserve_agent(&mut self) {
        self.waiting_until = None;
        if let Some(agent) = self.reserved_agent.take() {
            self.ep.agent_event(&agent, AgentEvent::WaitingEnded);
        }
    }

    /// The peer leg bridged to `leg`.
    pub fn peer_of(&self, leg: LegId) -> Option<LegId> {
        let (a, b) = self.bridge?;
        if leg == a {
            Some(b)
        } else if leg == b {
            Some(a)
        } else {
            None
        }
    }

    /// `true` while an INVITE transaction is open on `leg` in either direction.
    pub fn invite_in_progress(&self, leg: LegId) -> bool {
        self.txns.values().any(|e| {
            e.leg == leg
                && match &e.machine {
                    Transaction::ServerInvite(m) => m.state() == ServerInviteState::Proceeding,
                    Transaction::ClientInvite(m) => matches!(
                        m.state(),
                        ClientInviteState::Calling | ClientInviteState::Proceeding
                    ),
                    Transaction::Uas2xx(m) => !m.is_terminated(),
                    _ => false,
                }
        })
    }

    /// The header value of a SIP header in `msg`, for logs.
    pub fn describe(msg: &SipMessage) -> String {
        msg.header(HeaderName::From)
            .map(|f| f.into_owned())
            .unwrap_or_default()
    }
}

/// `true` while a transaction still waits for an answer (as opposed to only absorbing
/// retransmissions in Completed/Confirmed/Accepted).
pub fn txn_active(machine: &Transaction) -> bool {
    match machine {
        Transaction::ServerInvite(m) => m.state() == ServerInviteState::Proceeding,
        Transaction::ServerNonInvite(m) => matches!(
            m.state(),
            crate::transaction::ServerNonInviteState::Trying
                | crate::transaction::ServerNonInviteState::Proceeding
        ),
        Transaction::ClientInvite(m) => matches!(
            m.state(),
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ),
        Transaction::ClientNonInvite(m) => matches!(
            m.state(),
            crate::transaction::ClientNonInviteState::Trying
                | crate::transaction::ClientNonInviteState::Proceeding
        ),
        Transaction::Uas2xx(m) => !m.is_terminated(),
    }
}

/// Methods handover accepts inside a call.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY";
