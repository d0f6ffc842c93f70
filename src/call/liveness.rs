//! How a call finds dead legs (DESIGN.md §3 "Agent state heals itself"): in-dialog OPTIONS
//! keep-alives (`[sip] keepalive_s`) and RFC 4028 session timers negotiated on every leg
//! ([`super::session_timer`] decides; this file sends the refreshes and ends expired
//! sessions). A leg that stops answering, or whose peer stops refreshing, ends its call
//! cleanly: BYE with a Reason to the others, CDR written, agents released.

use std::time::{Duration, Instant};

use super::core::{reliability, Call, LegId, LegState, Purpose, TxnKey};
use super::registry::branch_for;
use super::session_timer::{
    from_uac_response, Due, Role, SessionPolicy, SessionTimer, UasDecision,
};
use super::transfer::Reinvite;
use crate::sip::{MessageBuilder, Method, SipMessage};
use crate::transaction::ClientNonInvite;

/// Option tags handover supports on every leg (RFC 3891 Replaces, RFC 4028 timers).
pub const SUPPORTED: &str = "replaces, timer";

impl Call {
    /// Arms the next keep-alive round (`[sip] keepalive_s`, 0 = off).
    pub(super) fn arm_keepalive(&mut self, now: Instant) {
        let every = self.ep.config().sip.keepalive_s;
        self.keepalive_at = (every > 0).then(|| now + Duration::from_secs(every));
    }

    /// Sends an in-dialog OPTIONS on every connected leg (RFC 3261 §11: OPTIONS inside a
    /// dialog is answered by the peer's UA; no answer or 481 means the peer lost the dialog).
    pub(super) fn send_keepalives(&mut self, now: Instant) {
        self.arm_keepalive(now);
        for leg in 0..self.legs.len() {
            let Some(l) = self.legs.get_mut(leg) else {
                continue;
            };
            if l.state != LegState::Confirmed {
                continue;
            }
            let pending = self
                .txns
                .values()
                .any(|e| e.leg == leg && matches!(e.purpose, Purpose::Keepalive));
            if pending {
                continue;
            }
            let Some(l) = self.legs.get_mut(leg) else {
                continue;
            };
            let branch = branch_for(self.key);
            let flow = l.dialog.flow;
            let mut b = l.dialog.next_request(&self.ep, &Method::Options, &branch);
            b.header("User-Agent", &self.ep.user_agent);
            let bytes = b.finish();
            let (machine, actions) =
                ClientNonInvite::new(bytes, reliability(&flow), self.ep.timers, now);
            self.execute(&flow, actions);
            self.insert_txn(
                TxnKey::Client(branch.into()),
                leg,
                machine.into(),
                Purpose::Keepalive,
            );
        }
    }

    /// A leg stopped answering (keep-alive timed out, or 408/481): end the call cleanly —
    /// BYE the other legs with a Reason, and the leg's agent is released.
    pub(super) fn leg_lost(&mut self, leg: LegId, now: Instant) {
        if self
            .legs
            .get(leg)
            .is_none_or(|l| l.state != LegState::Confirmed)
        {
            return;
        }
        tracing::info!(
            call = self.key,
            leg,
            "leg stopped answering; ending the call"
        );
        self.set_leg_state(leg, LegState::Ended);
        self.transfer = None;
        self.unreserve_agent();
        self.end_reason
            .get_or_insert_with(|| "peer stopped answering".to_owned());
        let reason = "SIP;cause=408;text=\"The other party stopped answering\"";
        self.bye_connected_legs(reason, now);
        self.end_call("peer stopped answering", leg, now);
    }

    // ------------------------------------------------------------------ session timers

    pub(super) fn session_policy(&self) -> SessionPolicy {
        SessionPolicy::from_config(&self.ep.config().sip)
    }

    /// `Session-Expires`/`Min-SE` of an initial INVITE handover sends (RFC 4028 §7.1).
    pub(super) fn add_initial_session_headers(&self, b: &mut MessageBuilder) {
        b.header("Supported", SUPPORTED);
        if let Some((se, min_se)) = self.session_policy().invite_headers() {
            b.header("Session-Expires", &se);
            b.header("Min-SE", &min_se);
        }
    }

    /// Headers of a re-INVITE or UPDATE handover sends on `leg` (relayed or its own): the
    /// leg's current interval and refresher, so the request also refreshes it (§7.4).
    pub(super) fn session_request_headers(&self, leg: LegId) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Supported", SUPPORTED.to_owned())];
        if let Some(t) = self.legs.get(leg).and_then(|l| l.session.as_ref()) {
            let refresher = match t.role {
                Role::WeRefresh => "uac",
                Role::PeerRefreshes => "uas",
            };
            headers.push((
                "Session-Expires",
                format!("{};refresher={refresher}", t.interval_s),
            ));
        }
        headers
    }

    /// handover answers 2xx to an INVITE or UPDATE on `leg`, negotiated as UAS (§9) by
    /// [`super::session_timer::answer`]: the leg takes the timer, and the 2xx carries the
    /// returned headers.
    pub(super) fn session_uas_2xx(
        &mut self,
        leg: LegId,
        decision: UasDecision,
        timer: Option<SessionTimer>,
        now: Instant,
    ) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        match decision {
            UasDecision::Accept {
                header, require, ..
            } => {
                headers.push(("Session-Expires", header));
                if require {
                    headers.push(("Require", "timer".to_owned()));
                }
            }
            // Too small inside a dialog: the relayed answer is already a 2xx; the leg keeps
            // its current timer, refreshed.
            UasDecision::TooSmall { .. } => {
                if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                    t.refreshed(now);
                }
                return headers;
            }
            UasDecision::None => {}
        }
        if let Some(l) = self.legs.get_mut(leg) {
            l.session = timer;
        }
        headers
    }

    /// A 2xx to an INVITE or UPDATE handover sent on `leg`: the answerer decides (§7.2), and
    /// it refreshes the leg's session.
    pub(super) fn session_uac_2xx(&mut self, leg: LegId, resp: &SipMessage, now: Instant) {
        if let Some(l) = self.legs.get_mut(leg) {
            l.session = from_uac_response(resp, l.session.as_ref(), now);
        }
    }

    /// The earliest session-timer deadline of a connected leg.
    pub(super) fn session_deadline(&self) -> Option<Instant> {
        self.legs
            .iter()
            .filter(|l| l.state == LegState::Confirmed)
            .filter_map(|l| l.session.as_ref().map(|t| t.deadline))
            .min()
    }

    /// Sends due refreshes and ends sessions whose peer stopped refreshing.
    pub(super) fn session_timeouts(&mut self, now: Instant) {
        for leg in 0..self.legs.len() {
            let due = match self.legs.get(leg) {
                Some(l) if l.state == LegState::Confirmed => {
                    l.session.as_ref().and_then(|t| t.due(now))
                }
                _ => None,
            };
            match due {
                Some(Due::Refresh) => self.send_session_refresh(leg, now),
                Some(Due::Expired) => {
                    self.session_expired(leg, now);
                    return;
                }
                None => {}
            }
        }
    }

    /// Our refresh of `leg` (§7.4, §10): UPDATE without a body when the peer allows it, else
    /// a re-INVITE offering the SDP last sent there (unchanged, so its o= version stays).
    fn send_session_refresh(&mut self, leg: LegId, now: Instant) {
        let Some(timer) = self.legs.get(leg).and_then(|l| l.session.clone()) else {
            return;
        };
        let refresh_pending = self.txns.values().any(|e| {
            e.leg == leg
                && matches!(
                    e.purpose,
                    Purpose::SessionRefresh | Purpose::LocalReinvite(Reinvite::Refresh)
                )
        });
        if refresh_pending {
            if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                t.retry_soon(now);
            }
            return;
        }
        if !timer.peer_allows_update {
            if self.invite_in_progress(leg) {
                if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                    t.retry_soon(now);
                }
                return;
            }
            // Until the answer, the next attempt waits a while (a 2xx resets the timer).
            if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                t.refreshed(now);
            }
            let offer = self.legs.get(leg).and_then(|l| l.sdp.last_sent());
            self.local_reinvite(leg, offer, Reinvite::Refresh, now);
            return;
        }
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if let Some(t) = l.session.as_mut() {
            t.refreshed(now);
        }
        let branch = branch_for(self.key);
        let flow = l.dialog.flow;
        let mut b = l.dialog.next_request(&self.ep, &Method::Update, &branch);
        b.header("Session-Expires", &timer.refresh_header());
        b.header("Supported", SUPPORTED);
        b.header("User-Agent", &self.ep.user_agent);
        let bytes = b.finish();
        let (machine, actions) =
            ClientNonInvite::new(bytes, reliability(&flow), self.ep.timers, now);
        self.execute(&flow, actions);
        self.insert_txn(
            TxnKey::Client(branch.into()),
            leg,
            machine.into(),
            Purpose::SessionRefresh,
        );
    }

    /// The answer to our refresh UPDATE (the 2xx already refreshed the timer).
    pub(super) fn on_session_refresh_response(&mut self, leg: LegId, status: u16, now: Instant) {
        match status {
            408 | 481 => self.leg_lost(leg, now),
            // The peer does not take UPDATE after all: refresh with re-INVITE, soon.
            405 | 501 => {
                if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                    t.peer_allows_update = false;
                    t.retry_soon(now);
                }
            }
            491 => {
                if let Some(t) = self.legs.get_mut(leg).and_then(|l| l.session.as_mut()) {
                    t.retry_soon(now);
                }
            }
            _ => {}
        }
    }

    /// The peer of `leg` should have refreshed and did not (§10): BYE every connected leg
    /// with a Reason, and the call ends.
    fn session_expired(&mut self, leg: LegId, now: Instant) {
        tracing::info!(
            call = self.key,
            leg,
            "session expired without a refresh (RFC 4028); ending the call"
        );
        self.transfer = None;
        self.unreserve_agent();
        self.end_reason
            .get_or_insert_with(|| "session expired".to_owned());
        self.bye_connected_legs("SIP;cause=408;text=\"Session expired\"", now);
        self.end_call("session expired", leg, now);
    }

    /// BYE with `reason` to every leg still connected (a lost leg was marked ended first, so
    /// it gets none).
    fn bye_connected_legs(&mut self, reason: &str, now: Instant) {
        for leg in 0..self.legs.len() {
            if self
                .legs
                .get(leg)
                .is_some_and(|l| l.state == LegState::Confirmed)
            {
                self.send_bye(leg, Some(reason), now);
            }
        }
    }
}
