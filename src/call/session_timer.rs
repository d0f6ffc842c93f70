//! Session timers (RFC 4028) for one leg, as a plain state machine: what handover puts in
//! its requests and 2xx responses, who refreshes, and when a refresh is due or the session
//! has expired. The call core feeds it requests and responses with `now`; it never sends.
//!
//! A B2BUA negotiates each leg on its own: the customer's INVITE and handover's 2xx decide
//! the caller leg; handover's INVITE (with `Session-Expires`) and the agent's 2xx decide the
//! agent leg. Every 2xx to a re-INVITE or UPDATE on a leg is a refresh of that leg (§7.4,
//! §9). The refresher sends its refresh at half the interval (§7.4); the other side ends
//! the session when no refresh came by `interval − min(32, interval/3)` (§10).

use std::time::{Duration, Instant};

use crate::sip::{HeaderName, Refresher, SessionExpires, SipMessage};

/// What handover is configured to ask for and to accept (`[sip]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Interval asked for on legs handover starts; 0 = none.
    pub session_expires_s: u64,
    /// Smallest interval accepted (`Min-SE`).
    pub min_se_s: u64,
}

impl SessionPolicy {
    pub fn from_config(sip: &crate::config::SipConfig) -> SessionPolicy {
        SessionPolicy {
            session_expires_s: sip.session_expires_s,
            min_se_s: sip.min_se_s.max(1),
        }
    }

    /// Headers for an initial INVITE handover sends (§7.1): no `refresher`, so the answerer
    /// picks (§7.1 lets the UAC leave it open).
    pub fn invite_headers(&self) -> Option<(String, String)> {
        (self.session_expires_s > 0).then(|| {
            (
                self.session_expires_s.max(self.min_se_s).to_string(),
                self.min_se_s.to_string(),
            )
        })
    }
}

/// Who refreshes a leg's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// handover sends the refreshes.
    WeRefresh,
    /// The peer does; handover ends the session if they stop.
    PeerRefreshes,
}

/// The negotiated session timer of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval_s: u64,
    pub role: Role,
    /// The peer accepts UPDATE (its Allow said so): refreshes use UPDATE, else re-INVITE.
    pub peer_allows_update: bool,
    /// When the next thing happens: our refresh is due, or the peer's refresh is overdue.
    pub deadline: Instant,
}

/// What a leg's timer wants at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Refresh,
    Expired,
}

/// The answer handover gives to an INVITE/UPDATE as UAS (§9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasDecision {
    /// No session timer on this leg (neither side asked, or the peer cannot take one).
    None,
    /// Accept: put `Session-Expires: <header>` (and `Require: timer` when `require`) in the
    /// 2xx; the leg's timer becomes `timer`.
    Accept {
        header: String,
        require: bool,
        interval_s: u64,
        role: Role,
    },
    /// The interval asked for is below our `Min-SE`: answer 422 with `Min-SE: min_se_s`.
    TooSmall { min_se_s: u64 },
}

fn allows_update(msg: &SipMessage) -> bool {
    msg.header(HeaderName::Allow).is_some_and(|allow| {
        allow
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
    })
}

fn supports_timer(msg: &SipMessage) -> bool {
    msg.option_tags(HeaderName::Supported)
        .iter()
        .chain(msg.option_tags(HeaderName::Require).iter())
        .any(|t| t == "timer")
}

/// The deadline of a leg's timer after a refresh at `now` (§7.4 and §10).
fn deadline_after(interval_s: u64, role: Role, now: Instant) -> Instant {
    let secs = match role {
        Role::WeRefresh => interval_s / 2,
        Role::PeerRefreshes => interval_s - (interval_s / 3).min(32),
    };
    now + Duration::from_secs(secs.max(1))
}

impl SessionTimer {
    pub fn new(interval_s: u64, role: Role, peer_allows_update: bool, now: Instant) -> Self {
        SessionTimer {
            interval_s,
            role,
            peer_allows_update,
            deadline: deadline_after(interval_s, role, now),
        }
    }

    /// What the timer wants at `now`, if anything.
    pub fn due(&self, now: Instant) -> Option<Due> {
        (self.deadline <= now).then_some(match self.role {
            Role::WeRefresh => Due::Refresh,
            Role::PeerRefreshes => Due::Expired,
        })
    }

    /// A refresh succeeded at `now` (a 2xx to a re-INVITE/UPDATE on the leg).
    pub fn refreshed(&mut self, now: Instant) {
        self.deadline = deadline_after(self.interval_s, self.role, now);
    }

    /// Our refresh could not go out yet (an INVITE transaction is open, or 491): try again
    /// shortly, still well before the peer's expiry at the full interval.
    pub fn retry_soon(&mut self, now: Instant) {
        self.deadline = now + Duration::from_secs(2);
    }

    /// The `Session-Expires` value of our refresh request (§7.4: we stay the refresher).
    pub fn refresh_header(&self) -> String {
        format!("{};refresher=uac", self.interval_s)
    }
}

/// Decides the caller-side answer to an INVITE or UPDATE handover answers 2xx (§9):
/// honour the peer's `Session-Expires` (422 below our `Min-SE`), else add our own when the
/// peer supports timers; the refresher is the one the request named, else the UAC when it
/// supports timers, else us.
pub fn negotiate_as_uas(req: &SipMessage, policy: SessionPolicy) -> UasDecision {
    let peer_timer = supports_timer(req);
    // An unreadable Session-Expires is treated as absent: the call itself is fine.
    let asked = req.session_expires().unwrap_or_default();
    let (interval_s, refresher) = match asked {
        Some(SessionExpires { secs, refresher }) => {
            let secs = u64::from(secs);
            if secs < policy.min_se_s {
                return UasDecision::TooSmall {
                    min_se_s: policy.min_se_s,
                };
            }
            (secs, refresher)
        }
        None if peer_timer && policy.session_expires_s > 0 => {
            (policy.session_expires_s.max(policy.min_se_s), None)
        }
        None => return UasDecision::None,
    };
    let refresher = match refresher {
        Some(r) => r,
        None if peer_timer => Refresher::Uac,
        None => Refresher::Uas,
    };
    // A UAC that does not support timers cannot be made the refresher (§9).
    let refresher = if peer_timer {
        refresher
    } else {
        Refresher::Uas
    };
    let role = match refresher {
        Refresher::Uac => Role::PeerRefreshes,
        Refresher::Uas => Role::WeRefresh,
    };
    let header = match refresher {
        Refresher::Uac => format!("{interval_s};refresher=uac"),
        Refresher::Uas => format!("{interval_s};refresher=uas"),
    };
    UasDecision::Accept {
        header,
        require: peer_timer,
        interval_s,
        role,
    }
}

/// The leg's timer after a 2xx to an INVITE/UPDATE handover sent (§7.2): the answerer's
/// `Session-Expires` decides; a 2xx without one means no session timer — unless the leg
/// already has one, which the 2xx then refreshes.
pub fn from_uac_response(
    resp: &SipMessage,
    current: Option<&SessionTimer>,
    now: Instant,
) -> Option<SessionTimer> {
    match resp.session_expires() {
        Ok(Some(SessionExpires { secs, refresher })) if secs > 0 => {
            let role = match refresher {
                Some(Refresher::Uas) => Role::PeerRefreshes,
                // §7.2: a 2xx without refresher leaves the refreshes to the UAC.
                Some(Refresher::Uac) | None => Role::WeRefresh,
            };
            let update = allows_update(resp) || current.is_some_and(|c| c.peer_allows_update);
            Some(SessionTimer::new(u64::from(secs), role, update, now))
        }
        _ => current.map(|c| {
            let mut c = c.clone();
            c.refreshed(now);
            c
        }),
    }
}

/// What handover answers to `req` (an INVITE or UPDATE it answers 2xx) and the leg's
/// timer afterwards.
pub fn answer(
    req: &SipMessage,
    policy: SessionPolicy,
    now: Instant,
) -> (UasDecision, Option<SessionTimer>) {
    let decision = negotiate_as_uas(req, policy);
    let timer = from_uas_decision(req, &decision, now);
    (decision, timer)
}

/// The leg's timer after handover answered 2xx with `decision` to `req`.
pub fn from_uas_decision(
    req: &SipMessage,
    decision: &UasDecision,
    now: Instant,
) -> Option<SessionTimer> {
    match decision {
        UasDecision::Accept {
            interval_s, role, ..
        } => Some(SessionTimer::new(
            *interval_s,
            *role,
            allows_update(req),
            now,
        )),
        UasDecision::None | UasDecision::TooSmall { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const POLICY: SessionPolicy = SessionPolicy {
        session_expires_s: 1800,
        min_se_s: 90,
    };

    fn invite(extra: &str) -> SipMessage {
        let text = format!(
            "INVITE sip:2001@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:c@x>;tag=1\r\nTo: <sip:2001@h>\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n\
             Allow: INVITE, ACK, BYE, UPDATE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse(Bytes::from(text)).unwrap()
    }

    fn ok(extra: &str) -> SipMessage {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:c@x>;tag=1\r\nTo: <sip:2001@h>;tag=2\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn uac_that_asks_and_supports_timers_refreshes_itself() {
        let d = negotiate_as_uas(
            &invite("Supported: timer\r\nSession-Expires: 600\r\n"),
            POLICY,
        );
        assert_eq!(
            d,
            UasDecision::Accept {
                header: "600;refresher=uac".into(),
                require: true,
                interval_s: 600,
                role: Role::PeerRefreshes
            }
        );
    }

    #[test]
    fn the_refresher_the_uac_names_is_kept() {
        let d = negotiate_as_uas(
            &invite("Supported: timer\r\nSession-Expires: 600;refresher=uas\r\n"),
            POLICY,
        );
        assert!(
            matches!(d, UasDecision::Accept { ref header, role: Role::WeRefresh, .. }
            if header == "600;refresher=uas")
        );
    }

    #[test]
    fn a_uac_without_timer_support_is_never_the_refresher_nor_required() {
        // A proxy inserted Session-Expires for a UAC that knows nothing of timers (§8.1).
        let d = negotiate_as_uas(&invite("Session-Expires: 600;refresher=uac\r\n"), POLICY);
        assert_eq!(
            d,
            UasDecision::Accept {
                header: "600;refresher=uas".into(),
                require: false,
                interval_s: 600,
                role: Role::WeRefresh
            }
        );
    }

    #[test]
    fn below_min_se_is_422_and_nothing_asked_is_nothing_unless_the_uac_supports_timers() {
        assert_eq!(
            negotiate_as_uas(
                &invite("Supported: timer\r\nSession-Expires: 60\r\n"),
                POLICY
            ),
            UasDecision::TooSmall { min_se_s: 90 }
        );
        assert_eq!(negotiate_as_uas(&invite(""), POLICY), UasDecision::None);
        // The UAC supports timers but asked for none: we add ours, the UAC refreshes (§9).
        assert!(matches!(
            negotiate_as_uas(&invite("Supported: replaces, timer\r\n"), POLICY),
            UasDecision::Accept {
                interval_s: 1800,
                role: Role::PeerRefreshes,
                ..
            }
        ));
        let off = SessionPolicy {
            session_expires_s: 0,
            ..POLICY
        };
        assert_eq!(
            negotiate_as_uas(&invite("Supported: timer\r\n"), off),
            UasDecision::None
        );
    }

    #[test]
    fn refresher_deadlines_follow_rfc_4028() {
        let t0 = Instant::now();
        let ours = SessionTimer::new(1800, Role::WeRefresh, true, t0);
        assert_eq!(ours.due(t0 + Duration::from_secs(899)), None);
        assert_eq!(ours.due(t0 + Duration::from_secs(900)), Some(Due::Refresh));
        // The peer refreshes: expiry at interval − min(32, interval/3).
        let theirs = SessionTimer::new(1800, Role::PeerRefreshes, true, t0);
        assert_eq!(theirs.due(t0 + Duration::from_secs(1767)), None);
        assert_eq!(
            theirs.due(t0 + Duration::from_secs(1768)),
            Some(Due::Expired)
        );
        let short = SessionTimer::new(90, Role::PeerRefreshes, true, t0);
        assert_eq!(short.deadline, t0 + Duration::from_secs(60));
        let mut refreshed = theirs.clone();
        refreshed.refreshed(t0 + Duration::from_secs(1000));
        assert_eq!(refreshed.due(t0 + Duration::from_secs(1768)), None);
    }

    #[test]
    fn the_answerers_2xx_decides_the_uac_side() {
        let t0 = Instant::now();
        let t = from_uac_response(
            &ok("Session-Expires: 1800;refresher=uac\r\nAllow: INVITE, UPDATE\r\n"),
            None,
            t0,
        )
        .unwrap();
        assert_eq!((t.role, t.peer_allows_update), (Role::WeRefresh, true));
        let t = from_uac_response(&ok("Session-Expires: 900;refresher=uas\r\n"), None, t0).unwrap();
        assert_eq!((t.role, t.interval_s), (Role::PeerRefreshes, 900));
        assert!(!t.peer_allows_update);
        // No Session-Expires in the 2xx: no timer (§7.2) ...
        assert_eq!(from_uac_response(&ok(""), None, t0), None);
        // ... but a leg that has one counts the 2xx as a refresh.
        let later = t0 + Duration::from_secs(500);
        let r = from_uac_response(&ok(""), Some(&t), later).unwrap();
        assert_eq!(r.deadline, later + Duration::from_secs(900 - 32));
    }

    #[test]
    fn our_invite_asks_without_naming_the_refresher() {
        assert_eq!(
            POLICY.invite_headers(),
            Some(("1800".to_owned(), "90".to_owned()))
        );
        let off = SessionPolicy {
            session_expires_s: 0,
            min_se_s: 90,
        };
        assert_eq!(off.invite_headers(), None);
    }
}
