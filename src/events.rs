//! Operator events: what happened to calls, transfers, agents and queues, as one typed enum,
//! and the bus that carries them to `GET /api/events` (SSE) subscribers.
//!
//! Contract: publishing never blocks and never fails, with or without subscribers. The bus is
//! a bounded `tokio::sync::broadcast` channel: a subscriber that falls more than `capacity`
//! events behind is *lapped* (its next receive reports `Lagged`); the SSE layer then drops that
//! client. A slow consumer therefore never slows a call actor.
//!
//! JSON shape: internally tagged, `{"event":"call_started","call_id":"..",...}`; the tag is
//! also the SSE `event:` name (see [`Event::name`]).

use serde::Serialize;
use tokio::sync::broadcast;

/// One operator-visible event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    CallStarted {
        call_id: String,
        interaction_id: String,
        /// `inbound` or `outbound`.
        direction: String,
        from: String,
        to: String,
    },
    CallAnswered {
        call_id: String,
        agent: Option<String>,
    },
    CallEnded {
        call_id: String,
        reason: String,
        duration_ms: u64,
    },
    TransferStarted {
        call_id: String,
        transfer_type: String,
        target: String,
    },
    TransferProgress {
        call_id: String,
        status: u16,
    },
    TransferSucceeded {
        call_id: String,
        transfer_type: String,
        target: String,
        release_moment: String,
    },
    TransferFailed {
        call_id: String,
        transfer_type: String,
        target: String,
        status: u16,
    },
    AgentState {
        agent: String,
        from: String,
        to: String,
    },
    QueueJoined {
        queue: String,
        call_id: String,
        position: usize,
    },
    QueueLeft {
        queue: String,
        call_id: String,
        outcome: String,
    },
}

impl Event {
    /// The snake_case name, identical to the JSON `event` tag; used as the SSE `event:` field.
    pub fn name(&self) -> &'static str {
        match self {
            Event::CallStarted { .. } => "call_started",
            Event::CallAnswered { .. } => "call_answered",
            Event::CallEnded { .. } => "call_ended",
            Event::TransferStarted { .. } => "transfer_started",
            Event::TransferProgress { .. } => "transfer_progress",
            Event::TransferSucceeded { .. } => "transfer_succeeded",
            Event::TransferFailed { .. } => "transfer_failed",
            Event::AgentState { .. } => "agent_state",
            Event::QueueJoined { .. } => "queue_joined",
            Event::QueueLeft { .. } => "queue_left",
        }
    }
}

/// Default bus capacity: events a subscriber may fall behind before it is dropped.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A cloneable broadcast bus of [`Event`]s.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus keeping at most `capacity` events per subscriber (clamped to at least 1).
    pub fn new(capacity: usize) -> Self {
        let (tx, _rx) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    /// Sends `e` to every current subscriber. Never blocks; without subscribers the event is
    /// simply discarded.
    pub fn publish(&self, e: Event) {
        // `send` only errs when nobody is subscribed, which is a normal state, not a failure.
        let _ = self.tx.send(e);
    }

    /// As [`publish`](Self::publish), building the event only when someone is subscribed:
    /// the events of every call carry several strings, and with no SSE client attached
    /// (the usual case) building them is all the work there is.
    pub fn publish_with(&self, event: impl FnOnce() -> Event) {
        if self.tx.receiver_count() > 0 {
            self.publish(event());
        }
    }

    /// A new subscriber that sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// How many subscribers are attached (SSE clients plus internal listeners).
    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn answered(id: &str) -> Event {
        Event::CallAnswered {
            call_id: id.to_owned(),
            agent: Some("1001".to_owned()),
        }
    }

    #[test]
    fn publish_without_subscribers_is_fine() {
        let bus = EventBus::new(4);
        for i in 0..10 {
            bus.publish(answered(&i.to_string()));
        }
        assert_eq!(bus.receiver_count(), 0);
        // A later subscriber sees only what comes after it subscribed.
        let mut rx = bus.subscribe();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        bus.publish(answered("late"));
        assert_eq!(rx.try_recv().unwrap(), answered("late"));
    }

    #[test]
    fn subscriber_receives_in_order() {
        let bus = EventBus::new(16);
        let mut rx = bus.subscribe();
        let clone = bus.clone();
        bus.publish(answered("a"));
        clone.publish(answered("b"));
        bus.publish(answered("c"));
        for id in ["a", "b", "c"] {
            assert_eq!(rx.try_recv().unwrap(), answered(id));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn lapped_subscriber_sees_lagged_and_publisher_is_not_blocked() {
        let bus = EventBus::new(2);
        let mut rx = bus.subscribe();
        for i in 0..5 {
            bus.publish(answered(&i.to_string()));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(3)));
    }

    #[test]
    fn json_shape_is_internally_tagged_snake_case() {
        let e = Event::TransferFailed {
            call_id: "c1".to_owned(),
            transfer_type: "success".to_owned(),
            target: "agent:1002".to_owned(),
            status: 486,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "event": "transfer_failed",
                "call_id": "c1",
                "transfer_type": "success",
                "target": "agent:1002",
                "status": 486
            })
        );
        assert_eq!(v["event"], e.name());
        let a = serde_json::to_value(Event::CallAnswered {
            call_id: "c2".to_owned(),
            agent: None,
        })
        .unwrap();
        assert_eq!(
            a,
            serde_json::json!({"event": "call_answered", "call_id": "c2", "agent": null})
        );
    }

    #[test]
    fn name_matches_tag_for_every_variant() {
        let s = String::new;
        let all = [
            Event::CallStarted {
                call_id: s(),
                interaction_id: s(),
                direction: s(),
                from: s(),
                to: s(),
            },
            answered("x"),
            Event::CallEnded {
                call_id: s(),
                reason: s(),
                duration_ms: 0,
            },
            Event::TransferStarted {
                call_id: s(),
                transfer_type: s(),
                target: s(),
            },
            Event::TransferProgress {
                call_id: s(),
                status: 180,
            },
            Event::TransferSucceeded {
                call_id: s(),
                transfer_type: s(),
                target: s(),
                release_moment: s(),
            },
            Event::TransferFailed {
                call_id: s(),
                transfer_type: s(),
                target: s(),
                status: 0,
            },
            Event::AgentState {
                agent: s(),
                from: s(),
                to: s(),
            },
            Event::QueueJoined {
                queue: s(),
                call_id: s(),
                position: 1,
            },
            Event::QueueLeft {
                queue: s(),
                call_id: s(),
                outcome: s(),
            },
        ];
        for e in all {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["event"], e.name());
        }
    }
}
