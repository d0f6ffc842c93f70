//! OPTIONS keep-alives to registered phones (DESIGN.md §3 "Agent state heals itself"): every
//! `[sip] keepalive_s`, each binding that has not re-registered or been asked meanwhile gets
//! an out-of-dialog OPTIONS (RFC 3261 §11) on the flow it registered from. Any response
//! means the phone is there (a 404 or 405 too: something answered); a transaction timeout or
//! a transport error means it vanished, and its binding is removed — the agent goes
//! `logged_out` when it was the last one, so no call is offered into nothing.
//!
//! Sans-IO: the probes are non-INVITE client transactions kept here and driven with `now`
//! by the housekeeping task; responses reach them by their branch prefix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cc::agents::AgentEvent;
use crate::endpoint::{Endpoint, TransactionCount};
use crate::registrar::Transition;
use crate::sip::{MessageBuilder, Method};
use crate::transaction::{Action, ClientNonInvite, Reliability, TimerConfig};
use crate::transport::{Destination, Protocol};

/// Branches of probe OPTIONS start with this (after the magic cookie `z9hG4bK`), so the
/// dispatcher routes their responses here and never to a call.
pub const BRANCH_PREFIX: &str = "z9hG4bKprobe";

/// At most this many probes in flight; further due bindings wait for the next round.
pub const MAX_IN_FLIGHT: usize = 4096;

struct Probe {
    aor: String,
    uri: String,
    dest: Destination,
    machine: ClientNonInvite,
    answered: bool,
    /// Counts the probe in the server's transactions (absent in unit tests).
    _count: Option<TransactionCount>,
}

/// What became of the probes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// Retransmissions to send.
    pub sends: Vec<(Destination, Bytes)>,
    /// (AOR, contact URI) of phones that did not answer at all.
    pub dead: Vec<(String, String)>,
}

/// The probes in flight.
#[derive(Default)]
pub struct AgentProbes {
    pending: HashMap<Box<str>, Probe>,
}

impl AgentProbes {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops every probe in flight (shutdown).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Whether another probe may start.
    pub fn has_room(&self) -> bool {
        self.pending.len() < MAX_IN_FLIGHT
    }

    /// Starts the probe `request` (an OPTIONS whose Via branch is `branch`) to `dest`;
    /// returns the bytes to send now.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        branch: &str,
        aor: String,
        uri: String,
        dest: Destination,
        request: Bytes,
        timers: TimerConfig,
        count: Option<TransactionCount>,
        now: Instant,
    ) -> Vec<Bytes> {
        let reliability = match dest.protocol {
            Protocol::Udp => Reliability::Unreliable,
            Protocol::Tcp => Reliability::Reliable,
        };
        let (machine, actions) = ClientNonInvite::new(request, reliability, timers, now);
        self.pending.insert(
            branch.into(),
            Probe {
                aor,
                uri,
                dest,
                machine,
                answered: false,
                _count: count,
            },
        );
        transmits(actions.iter())
    }

    /// A response to the probe with `branch`: the phone is there.
    pub fn on_response(&mut self, branch: &str, status: u16, now: Instant) {
        let Some(probe) = self.pending.get_mut(branch) else {
            return;
        };
        probe.answered = true;
        let actions = probe.machine.on_response(status, now);
        if actions.is_terminated() {
            self.pending.remove(branch);
        }
    }

    /// A send to `dest` failed: its probes count as unanswered.
    pub fn on_transport_error(&mut self, dest: &Destination) -> Vec<(String, String)> {
        let mut dead = Vec::new();
        self.pending.retain(|_, p| {
            if p.dest.addr == dest.addr && p.dest.protocol == dest.protocol && !p.answered {
                dead.push((p.aor.clone(), p.uri.clone()));
                false
            } else {
                true
            }
        });
        dead
    }

    /// Fires the probes' timers.
    pub fn handle_timeouts(&mut self, now: Instant) -> ProbeResults {
        let mut results = ProbeResults::default();
        self.pending.retain(|_, p| {
            if p.machine.next_deadline().is_none_or(|d| d > now) {
                return true;
            }
            let actions = p.machine.handle_timeout(now);
            for bytes in transmits(actions.iter()) {
                results.sends.push((p.dest, bytes));
            }
            let failed = actions
                .iter()
                .any(|a| matches!(a, Action::Timeout | Action::TransportError));
            if failed && !p.answered {
                results.dead.push((p.aor.clone(), p.uri.clone()));
                return false;
            }
            !actions.is_terminated()
        });
        results
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter_map(|p| p.machine.next_deadline())
            .min()
    }
}

fn transmits<'a>(actions: impl Iterator<Item = &'a Action>) -> Vec<Bytes> {
    actions
        .filter_map(|a| match a {
            Action::Transmit(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

/// One round of the housekeeping task: sends the probes that fell due, fires the timers of
/// those in flight, and logs out agents whose phones vanished. Returns the next deadline.
pub fn run(ep: &Arc<Endpoint>, now: Instant) -> Option<Instant> {
    let every = ep.config().sip.keepalive_s;
    let mut dead = Vec::new();
    if every > 0 {
        let every = Duration::from_secs(every);
        let room = MAX_IN_FLIGHT.saturating_sub(ep.probes().len());
        let due = {
            let mut location = ep.location();
            let mut due = location.due_probes(every, now);
            due.truncate(room);
            due
        };
        for (aor, uri, dest) in due {
            let branch = format!("{BRANCH_PREFIX}{:016x}", fastrand::u64(..));
            let request = options_request(ep, &aor, &uri, &dest, &branch);
            let count = ep.count_transaction();
            let first = ep.probes().start(
                &branch,
                aor,
                uri,
                dest,
                request,
                ep.timers,
                Some(count),
                now,
            );
            let mut sent = true;
            for bytes in first {
                sent &= ep.send(&dest, bytes);
            }
            if !sent {
                dead.extend(ep.probes().on_transport_error(&dest));
            }
        }
    }
    let results = ep.probes().handle_timeouts(now);
    for (dest, bytes) in results.sends {
        ep.send(&dest, bytes);
    }
    dead.extend(results.dead);
    for (aor, uri) in dead {
        let transition = ep.location().remove_contact(&aor, &uri, now);
        tracing::info!(agent = %aor, contact = %uri, "phone stopped answering OPTIONS; binding removed");
        if transition == Transition::Logout {
            ep.agent_event(&aor, AgentEvent::LoggedOut);
        }
    }
    let next_due = (every > 0)
        .then(|| ep.location().next_probe(Duration::from_secs(every)))
        .flatten();
    [ep.probes().next_deadline(), next_due]
        .into_iter()
        .flatten()
        .min()
}

/// The out-of-dialog OPTIONS to `uri` (RFC 3261 §11.1), on the flow the phone registered.
fn options_request(ep: &Endpoint, aor: &str, uri: &str, dest: &Destination, branch: &str) -> Bytes {
    let config = ep.config();
    let domain = &config.sip.domain;
    let mut b = MessageBuilder::request(&Method::Options, uri);
    ep.add_via(&mut b, dest, branch);
    b.header("Max-Forwards", "70");
    b.header_fmt(
        "From",
        format_args!("<sip:handover@{domain}>;tag={:016x}", fastrand::u64(..)),
    );
    b.header_fmt("To", format_args!("<sip:{aor}@{domain}>"));
    b.header_fmt(
        "Call-ID",
        format_args!(
            "{:016x}{:016x}@{domain}",
            fastrand::u64(..),
            fastrand::u64(..)
        ),
    );
    b.header("CSeq", "1 OPTIONS");
    b.header("Accept", "application/sdp");
    if !ep.user_agent.is_empty() {
        b.header("User-Agent", &ep.user_agent);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn dest() -> Destination {
        Destination {
            protocol: Protocol::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], 5091)),
            connection: None,
        }
    }

    fn start(probes: &mut AgentProbes, branch: &str, now: Instant) -> Vec<Bytes> {
        probes.start(
            branch,
            "1001".into(),
            "sip:1001@127.0.0.1:5091".into(),
            dest(),
            Bytes::from_static(b"OPTIONS sip:1001@127.0.0.1:5091 SIP/2.0\r\n\r\n"),
            TimerConfig::default(),
            None,
            now,
        )
    }

    #[test]
    fn an_answered_probe_leaves_the_phone_alone() {
        let t0 = Instant::now();
        let mut probes = AgentProbes::default();
        assert_eq!(start(&mut probes, "z9hG4bKprobe1", t0).len(), 1);
        probes.on_response("z9hG4bKprobe1", 405, t0 + Duration::from_millis(20));
        // Timer K absorbs retransmitted responses, then the probe is gone; nobody is dead.
        let r = probes.handle_timeouts(t0 + Duration::from_secs(10));
        assert!(r.dead.is_empty() && r.sends.is_empty());
        assert!(probes.is_empty());
    }

    #[test]
    fn a_silent_phone_is_retransmitted_to_then_declared_dead_at_timer_f() {
        let t0 = Instant::now();
        let mut probes = AgentProbes::default();
        start(&mut probes, "z9hG4bKprobe2", t0);
        let mut sends = 0;
        let mut now = t0;
        let mut dead = Vec::new();
        while dead.is_empty() && now < t0 + Duration::from_secs(40) {
            now = probes.next_deadline().unwrap();
            let r = probes.handle_timeouts(now);
            sends += r.sends.len();
            dead = r.dead;
        }
        assert_eq!(
            dead,
            vec![("1001".to_owned(), "sip:1001@127.0.0.1:5091".to_owned())]
        );
        assert_eq!(
            now,
            t0 + TimerConfig::default().timer_f(),
            "Timer F = 64·T1"
        );
        assert!(sends >= 10, "UDP retransmissions (Timer E): {sends}");
        assert!(probes.is_empty());
    }

    #[test]
    fn a_failed_send_counts_as_no_answer() {
        let t0 = Instant::now();
        let mut probes = AgentProbes::default();
        start(&mut probes, "z9hG4bKprobe3", t0);
        assert_eq!(probes.on_transport_error(&dest()).len(), 1);
        assert!(probes.is_empty());
    }
}
