//! Ending legs and calls (RFC 3261 §9 CANCEL, §15 BYE, RFC 3326 Reason): hanging up one
//! leg (BYE when confirmed, CANCEL while ringing), ending the call when a leg ends, a 2xx
//! never ACKed (§13.3.1.4), and ending everything at once (shutdown, operator).

use std::time::Instant;

use super::core::{
    reliability, Call, CancelState, LegId, LegState, Phase, Purpose, TxnKey, CALLER,
};
use super::registry::branch_for;
use crate::sip::Method;
use crate::transaction::{ClientNonInvite, Transaction};

impl Call {
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

    /// RFC 3261 §13.3.1.4: no ACK for our 2xx within 64*T1 — confirm and BYE the leg, and
    /// end the call.
    pub(super) fn on_no_ack(&mut self, leg: LegId, now: Instant) {
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
}
