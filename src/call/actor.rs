//! The tokio task around one [`Call`]: a bounded inbox, one deadline, and a Drop guard that
//! deregisters the call and releases its agents however the task ends (STYLE.md rule 4).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::core::Call;
use super::registry::CallHandle;
use super::{CallEvent, CallTarget, Caller};
use crate::endpoint::Endpoint;
use crate::incoming::IncomingRequest;

/// Inbox size per call: a call sees a handful of messages at a time; a full inbox means the
/// actor is stuck or flooded, and the dispatcher answers 503 / drops retransmissions.
const INBOX: usize = 64;

/// Removes the call from the router when the actor ends, even by panic.
struct Registration {
    ep: Arc<Endpoint>,
    key: u64,
    initial: (String, String),
    /// The call that took this call's leg (attended transfer): the key keeps routing there.
    alias_to: Option<CallHandle>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ep
            .calls
            .release_initial(&self.initial.0, &self.initial.1);
        match self.alias_to.take() {
            Some(handle) => self.ep.calls.alias(self.key, handle),
            None => self.ep.calls.remove(self.key),
        }
    }
}

/// Starts a call actor for the caller's INVITE `req`. Hands `req` back if the same INVITE
/// (Call-ID, From tag) already has a call — the dispatcher routes it there instead.
pub fn spawn_call(
    ep: &Arc<Endpoint>,
    req: IncomingRequest,
    caller: Caller,
    target: CallTarget,
) -> Result<CallHandle, Box<IncomingRequest>> {
    let key = ep.calls.next_key();
    let call_id = req.msg.call_id().to_owned();
    let from_tag = req.msg.from_tag().unwrap_or_default().to_owned();
    if ep.calls.claim_initial(&call_id, &from_tag, key).is_err() {
        return Err(Box::new(req));
    }
    let (tx, rx) = mpsc::channel(INBOX);
    let handle = CallHandle::new(key, tx);
    ep.calls.insert(handle.clone());
    ep.counters
        .calls_started
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ep.counters
        .active_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let registration = Registration {
        ep: Arc::clone(ep),
        key,
        initial: (call_id.clone(), from_tag),
        alias_to: None,
    };
    let span = tracing::info_span!("call", id = key, call_id = %call_id);
    // The call starts here, and its state lives in a box: the task's future then holds a
    // pointer, not the call and the INVITE it started from (a future keeps every local and
    // argument it may need; unboxed it was ~3 KB per call for the call's whole life).
    let call = span.in_scope(|| start(ep, key, req, caller, target));
    let ep = Arc::clone(ep);
    tokio::spawn(
        async move {
            let mut registration = registration;
            registration.alias_to = run(ep, call, rx).await;
        }
        .instrument(span),
    );
    Ok(handle)
}

/// Starts the call for `req`: logs it, publishes it, and has its first answers ready in its
/// outbox.
fn start(
    ep: &Arc<Endpoint>,
    key: u64,
    req: IncomingRequest,
    caller: Caller,
    target: CallTarget,
) -> Box<Call> {
    let started = now();
    tracing::info!(
        from = %Call::describe(&req.msg),
        to = %req.msg.request_uri_str().unwrap_or_default(),
        caller = ?caller,
        "call started"
    );
    // Parties for the CallStarted event, taken before the INVITE moves into the call; only
    // when someone listens (see `EventBus::publish_with`).
    let parties = (ep.events.receiver_count() > 0).then(|| {
        let to = req.msg.request_uri_str().unwrap_or_default().to_owned();
        (Call::describe(&req.msg), to)
    });
    let mut call = Box::new(Call::start(
        Arc::clone(ep),
        key,
        req,
        caller,
        target,
        started,
    ));
    call.started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    if let Some((from, to)) = parties {
        call.publish(|| crate::events::Event::CallStarted {
            call_id: call.call_id(),
            interaction_id: call.interaction_id.clone(),
            direction: call.direction().to_owned(),
            from,
            to,
        });
    }
    call
}

async fn run(
    ep: Arc<Endpoint>,
    mut call: Box<Call>,
    mut inbox: mpsc::Receiver<CallEvent>,
) -> Option<CallHandle> {
    flush(&ep, &mut call);
    let mut end_logged = false;
    // One timer for the call's whole life, moved only when the deadline changes: a new
    // timer per message would cost a timer-wheel insert and removal each time.
    let far = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
    let sleep = tokio::time::sleep_until(far);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    while !call.is_finished() {
        if !end_logged && call.all_legs_ended() {
            end_logged = true;
            log_end(&mut call);
        }
        if end_logged && call.hand_over_lingering() {
            break;
        }
        let deadline = call.next_deadline();
        if deadline != armed {
            armed = deadline;
            let at = deadline.map_or(far, tokio::time::Instant::from_std);
            sleep.as_mut().reset(at);
        }
        // Biased, timer first: no random branch order to draw per message, and an expired
        // deadline is handled before more messages (it is re-armed in the future, so it
        // cannot starve the inbox).
        tokio::select! {
            biased;
            _ = &mut sleep, if armed.is_some() => {
                armed = None;
                call.now = now();
                call.handle_timeout(call.now);
            }
            event = inbox.recv() => {
                let at = now();
                call.now = at;
                match event {
                    Some(CallEvent::Request(req)) => call.on_request(*req, at),
                    Some(CallEvent::Response(msg)) => call.on_response(*msg, at),
                    Some(CallEvent::Hangup(cause)) => call.hangup_all(cause.reason(), at),
                    Some(CallEvent::QueueOffer(offer)) => call.on_queue_offer(&offer.agent, &offer.queue, at),
                    Some(CallEvent::QueueOfferTimeout(agent)) => call.on_queue_offer_timeout(&agent, at),
                    Some(CallEvent::QueueOverflow(target)) => call.on_queue_overflow(&target, at),
                    Some(CallEvent::QueueExpired) => call.on_queue_expired(at),
                    Some(CallEvent::Legs(exchange)) => call.on_leg_exchange(*exchange, at),
                    Some(CallEvent::Replace(r)) => {
                        let r = *r;
                        call.on_replacing_invite(r.req, r.agent, at)
                    }
                    Some(CallEvent::Query(reply)) => {
                        let _ = reply.send(call.info());
                    }
                    Some(CallEvent::ApiTransfer(t)) => {
                        let t = *t;
                        let _ = t.reply.send(call.api_transfer(t.transfer, t.target, at));
                    }
                    None => break,
                }
            }
        }
        flush(&ep, &mut call);
    }
    // Whatever is still in the inbox arrived for a call that is over: retransmissions are
    // absorbed by the lingering transactions, anything else gets 481.
    inbox.close();
    while let Ok(event) = inbox.try_recv() {
        if let CallEvent::Request(req) = event {
            crate::dispatch::answer_orphan(&ep, &req);
        }
    }
    call.release_agents();
    for alias in call.aliases() {
        ep.calls.remove_alias(*alias, call.key);
    }
    // A call never stays in a queue after its actor (DESIGN.md §2: hang-up while queued
    // removes it at once; this also covers every other way out).
    ep.queue_leave(call.key);
    if !end_logged {
        log_end(&mut call);
    }
    call.alias_to.take()
}

fn log_end(call: &mut Call) {
    call.report_end();
    call.ep
        .counters
        .active_calls
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        duration_ms = call.started.elapsed().as_millis() as u64,
        reason = call.end_reason.as_deref().unwrap_or("ended"),
        "call ended"
    );
}

/// The clock of the call: tokio's, so tests on paused time drive calls too (STYLE.md rule 9).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sends what the core queued; a destination the transport refuses at once (no socket for
/// its family, connection limit, backpressure) is reported back as a transport error
/// (RFC 3261 §17.1.4), which the core turns into a failed leg.
fn flush(ep: &Endpoint, call: &mut Call) {
    loop {
        // The outbox is taken, not drained in place: a held call then keeps no buffer.
        let outbox = call.take_outbox();
        if outbox.is_empty() {
            return;
        }
        let failed = ep.send_all(&outbox);
        if failed.is_empty() {
            return;
        }
        let now = now();
        for dest in failed {
            call.on_transport_error(&dest, now);
        }
    }
}
