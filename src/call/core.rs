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
//!
//! This file holds the types (legs, transactions, the call) and starting a call; the rest
//! of the core's `impl Call` lives beside it: [`super::responses`] (responses sent and
//! received), [`super::teardown`] (ending legs and calls), [`super::timers`] (timers and
//! transport errors), [`super::accounting`] (agent states).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};

use super::dialog::{copy_passthrough_headers, Dialog};
use super::registry::{branch_for, call_id_for, tag_for, CallKey};
use super::{CallTarget, Caller};
use crate::endpoint::{Endpoint, TransactionCount};
use crate::incoming::IncomingRequest;
use crate::sdp::LegSdpOrigin;
use crate::sip::{put_decimal, HeaderName, Method, SipMessage};
use crate::transaction::{
    Action, Actions, ClientInvite, ClientInviteState, Reliability, ServerInvite, ServerInviteState,
    Transaction,
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
    pub(super) offered: bool,
    pub(super) talking: bool,
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
pub(super) struct Failure {
    pub(super) code: u16,
    pub(super) reason: String,
}

/// The state of one call.
pub struct Call {
    pub ep: Arc<Endpoint>,
    pub key: CallKey,
    pub caller: Caller,
    pub legs: Vec<Leg>,
    pub txns: super::txn_table::TxnTable<TxnEntry>,
    pub phase: Phase,
    /// The callee leg bridged to the caller.
    pub answered: Option<LegId>,
    /// The two legs whose media is joined; in-dialog requests are relayed between them.
    pub bridge: Option<(LegId, LegId)>,
    /// The transfer in progress, if any (DESIGN.md §3).
    pub transfer: Option<Box<super::transfer::TransferRun>>,
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
    pub(super) ring_deadline: Option<Instant>,
    pub(super) best_failure: Option<Failure>,
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
            txns: super::txn_table::TxnTable::default(),
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
        let offer_refused = if offer.is_empty() {
            None
        } else {
            crate::sdp::check(&offer).err()
        };
        call.insert_txn(
            server_key.clone(),
            CALLER,
            machine.into(),
            Purpose::CallerInvite(Box::new(req)),
        );

        if let Some(refusal) = offer_refused {
            let warning = refusal.warning_value();
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
        b.header_with("Call-Info", |out| {
            out.put_slice(b"<urn:handover:call:");
            put_decimal(out, self.key);
            out.put_slice(b">;purpose=info");
        });
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

    pub(super) fn caller_invite_purpose(&self) -> Option<&Purpose> {
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
                let key = crate::dispatch::LingerKey::new(branch, flow.addr, invite);
                lingering.insert(Arc::new(key), entry.machine, flow, entry._count);
            }
        }
        true
    }

    /// `true` when every leg has ended and every transaction has terminated.
    pub fn is_finished(&self) -> bool {
        self.txns.is_empty() && self.legs.iter().all(|l| l.state == LegState::Ended)
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
