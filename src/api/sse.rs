//! `GET /api/events`: the event bus as Server-Sent Events.
//!
//! Each [`crate::events::Event`] becomes one frame `event: <name>\ndata: <json>\n\n`
//! (the name equals the JSON `event` tag). A comment keep-alive goes out every 15 s so proxies
//! keep the connection open.
//!
//! Slow clients: each client reads its own `broadcast::Receiver`. A client that falls more than
//! the bus capacity behind is lapped; on the next poll the stream sends one final
//! `event: lagged` frame with `{"missed": n}` and ends, so the client learns why and can
//! reconnect. Publishers never wait for a client. The stream also ends when the server shuts
//! down, so graceful shutdown is not held up by open SSE connections.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::events::Event;

/// Interval of the `:` keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE response for one client.
pub fn sse_response(
    rx: broadcast::Receiver<Event>,
    shutdown: watch::Receiver<bool>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    Sse::new(event_stream(rx, shutdown)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

struct StreamState {
    rx: broadcast::Receiver<Event>,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

/// Frames from `rx` until the client is lapped, the bus closes or `shutdown` turns true (or its
/// sender goes away).
pub fn event_stream(
    rx: broadcast::Receiver<Event>,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let state = StreamState {
        rx,
        shutdown,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if *st.shutdown.borrow_and_update() {
                return None;
            }
            let received = tokio::select! {
                r = st.rx.recv() => r,
                changed = st.shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            match received {
                Ok(event) => match frame(&event) {
                    Some(f) => return Some((Ok(f), st)),
                    None => continue,
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "SSE client lagged behind the event bus; dropping it"
                    );
                    st.done = true;
                    let last = SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}"));
                    return Some((Ok(last), st));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// One SSE frame for `event`; `None` only if serialization failed, which a plain enum of
/// strings and integers cannot do.
fn frame(event: &Event) -> Option<SseEvent> {
    match serde_json::to_string(event) {
        Ok(json) => Some(SseEvent::default().event(event.name()).data(json)),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;
    use futures_util::StreamExt;

    fn ev(i: u16) -> Event {
        Event::TransferProgress {
            call_id: "c".to_owned(),
            status: i,
        }
    }

    #[tokio::test]
    async fn stream_yields_then_ends_after_lag() {
        let bus = EventBus::new(2);
        let (_tx, rx) = watch::channel(false);
        let mut s = Box::pin(event_stream(bus.subscribe(), rx));
        bus.publish(ev(100));
        assert!(s.next().await.is_some());
        for i in 0..5 {
            bus.publish(ev(i));
        }
        // Lapped: one final `lagged` frame, then the end.
        assert!(s.next().await.is_some());
        assert!(s.next().await.is_none());
        // The subscription is released as soon as the stream ends.
        assert_eq!(bus.receiver_count(), 0);
    }

    #[tokio::test]
    async fn stream_ends_on_shutdown() {
        let bus = EventBus::new(8);
        let (tx, rx) = watch::channel(false);
        let mut s = Box::pin(event_stream(bus.subscribe(), rx));
        let waiter = tokio::spawn(async move { s.next().await.is_none() });
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn stream_ends_when_shutdown_sender_dropped() {
        let bus = EventBus::new(8);
        let (tx, rx) = watch::channel(false);
        let mut s = Box::pin(event_stream(bus.subscribe(), rx));
        drop(tx);
        assert!(s.next().await.is_none());
    }
}
