//! An INVITE with `Replaces` (RFC 3891) from an agent, naming one of its own dialogs with
//! handover: the new dialog takes the old one's place in the call — the agent moves the
//! conversation to another phone or line (call pickup of its own call, a softphone that
//! completes an attended transfer by INVITE). The other party stays in its dialog and is
//! re-INVITEd with the new phone's offer; its answer goes in our 200; then the replaced
//! dialog gets BYE.
//!
//! ```text
//!  agent (new dialog): INVITE + Replaces ─► 100
//!  other party: re-INVITE with the new offer ─► 200 + answer ─► ACK
//!  agent (new dialog): 200 + answer ◄─ ACK;  replaced dialog: BYE (Reason: replaced)
//! ```
//!
//! Only the agent whose dialog it is may replace it (403 otherwise); a dialog that is not
//! confirmed, or not bridged, cannot be replaced (481); a transfer or an INVITE transaction in
//! progress answers 491, and the call stays as it was.

use std::time::Instant;

use super::core::{reliability, Call, Leg, LegId, LegState, Purpose, TxnKey};
use super::dialog::Dialog;
use super::registry::tag_for;
use crate::incoming::IncomingRequest;
use crate::sdp::LegSdpOrigin;
use crate::transaction::{ServerInvite, Transaction};

/// The Reason on the BYE of the replaced dialog.
const REPLACED: &str = "SIP;cause=200;text=\"Replaced\"";

impl Call {
    /// The leg whose dialog `replaces` names (either tag order: phones differ in which
    /// side's tag they call `to-tag`).
    fn leg_for_replaces(&self, replaces: &crate::sip::Replaces) -> Option<LegId> {
        self.legs.iter().position(|l| {
            let d = &l.dialog;
            let remote = d.remote_tag.as_deref().unwrap_or_default();
            d.call_id == replaces.call_id
                && ((d.local_tag == replaces.to_tag && remote == replaces.from_tag)
                    || (d.local_tag == replaces.from_tag && remote == replaces.to_tag))
        })
    }

    /// An INVITE with Replaces from `agent` for one of this call's dialogs.
    pub fn on_replacing_invite(&mut self, req: IncomingRequest, agent: String, now: Instant) {
        let branch: Box<str> = req.msg.branch().unwrap_or_default().into();
        let retransmission = self.txns.iter_mut().find(
            |(k, _)| matches!(k, TxnKey::Server { branch: b, invite: true, .. } if *b == branch),
        );
        if let Some((_, entry)) = retransmission {
            if let Transaction::ServerInvite(m) = &mut entry.machine {
                let actions = m.on_request();
                self.execute(&req.response_destination(), actions);
            }
            return;
        }
        let replaces = match req.msg.replaces() {
            Ok(Some(r)) => r,
            Ok(None) => return self.reply_stateless(&req, 400, "Missing Replaces"),
            Err(e) => return self.reply_stateless(&req, 400, e.reason()),
        };
        let Some(old) = self.leg_for_replaces(&replaces) else {
            return self.reply_stateless(&req, 481, "Call/Transaction Does Not Exist");
        };
        if self.legs.get(old).and_then(|l| l.agent.as_deref()) != Some(agent.as_str()) {
            return self.reply_stateless(&req, 403, "Forbidden");
        }
        let peer = self.peer_of(old).filter(|p| {
            self.legs
                .get(*p)
                .is_some_and(|l| l.state == LegState::Confirmed)
        });
        let old_up = self
            .legs
            .get(old)
            .is_some_and(|l| l.state == LegState::Confirmed);
        let Some(peer) = peer.filter(|_| old_up) else {
            return self.reply_stateless(&req, 481, "Call/Transaction Does Not Exist");
        };
        if self.transfer.is_some()
            || self.replacing.is_some()
            || self.invite_in_progress(old)
            || self.invite_in_progress(peer)
        {
            return self.reply_stateless(&req, 491, "Request Pending");
        }
        if req.msg.body().is_empty() {
            // The other party's re-INVITE needs an offer to relay; a phone that moves a
            // call offers its media (RFC 3891 §3 leaves the offer to the UAC).
            return self.reply_stateless(&req, 488, "Not Acceptable Here");
        }
        let Ok(dialog) = Dialog::from_request(&req, tag_for(self.key)) else {
            return self.reply_stateless(&req, 400, "Bad Request");
        };
        tracing::info!(call = self.key, leg = old, agent = %agent, "dialog replaced by a new INVITE");
        let new = self.legs.len();
        self.legs.push(Leg::incoming(
            dialog,
            LegSdpOrigin::new(fastrand::u64(1..1 << 62)),
            Some(agent),
            now,
        ));
        let dest = req.response_destination();
        let trying = req.response(100, "Trying", None).finish();
        let (machine, actions) = ServerInvite::new(trying, reliability(&dest), self.ep.timers);
        self.execute(&dest, actions);
        let key = TxnKey::Server {
            leg: new,
            branch,
            invite: true,
        };
        self.insert_txn(
            key.clone(),
            new,
            machine.into(),
            Purpose::Relayed {
                request: Box::new(req),
                client: None,
            },
        );
        self.replacing = Some((new, old));
        self.relay_out(new, peer, &key, now);
    }

    /// The other party answered the re-INVITE carrying the new phone's offer (`status` was
    /// relayed to the new dialog already): on 2xx the new dialog takes the old one's place.
    pub(super) fn replacement_answered(&mut self, new: LegId, status: u16, now: Instant) {
        let Some((n, old)) = self.replacing else {
            return;
        };
        if n != new || status < 200 {
            return;
        }
        self.replacing = None;
        if (200..300).contains(&status) {
            let peer = self.peer_of(old);
            self.set_leg_state(new, LegState::Confirmed);
            if let Some(peer) = peer {
                self.bridge = Some((peer, new));
                if self.answered == Some(old) {
                    self.answered = Some(new);
                }
            }
            self.send_bye(old, Some(REPLACED), now);
        } else {
            self.set_leg_state(new, LegState::Ended);
        }
    }
}
