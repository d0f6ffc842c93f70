//! `GET /metrics`: a [`MetricsSnapshot`] rendered as OpenMetrics text by prometheus-client.
//!
//! A fresh registry is filled from one snapshot per scrape, so the numbers of one scrape are
//! mutually consistent and the server keeps its counters wherever it likes. The encoder writes
//! OpenMetrics 1.0 (counters get the `_total` suffix, the body ends in `# EOF`), so the response
//! carries [`CONTENT_TYPE`]; Prometheus negotiates and parses it natively.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `handover_active_calls` | gauge | |
//! | `handover_calls_total` | counter | `outcome` |
//! | `handover_transfers_total` | counter | `type`, `outcome` |
//! | `handover_registrations` | gauge | |
//! | `handover_agents` | gauge | `state` |
//! | `handover_queue_waiting` | gauge | `queue` |
//! | `handover_queue_longest_wait_seconds` | gauge | `queue` |
//! | `handover_queue_agents_idle` | gauge | `queue` |
//! | `handover_queue_agents_logged_in` | gauge | `queue` |
//! | `handover_transactions` | gauge | |
//! | `handover_retransmissions_total` | counter | |
//! | `handover_parse_errors_total` | counter | |
//! | `handover_rejected_requests_total` | counter | `reason` |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::types::MetricsSnapshot;

/// Content-Type of the `/metrics` body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type UGauge = Gauge<u64, AtomicU64>;
type FGauge = Gauge<f64, AtomicU64>;

fn gauge(v: u64) -> UGauge {
    let g = UGauge::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// Escapes a label value per the exposition format (backslash, double quote, newline):
/// prometheus-client 0.23 writes label values verbatim, and ours come from config and peers.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

fn usize_to_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The OpenMetrics text for `snap`.
pub fn render(snap: &MetricsSnapshot) -> String {
    let mut reg = Registry::with_prefix("handover");

    reg.register(
        "active_calls",
        "Calls in progress",
        gauge(snap.active_calls),
    );

    let calls = Family::<Labels, Counter>::default();
    for (outcome, n) in &snap.calls_by_outcome {
        calls
            .get_or_create(&vec![("outcome", label(outcome))])
            .inc_by(*n);
    }
    reg.register("calls", "Finished calls by outcome", calls);

    let transfers = Family::<Labels, Counter>::default();
    for ((kind, outcome), n) in &snap.transfers {
        transfers
            .get_or_create(&vec![("type", label(kind)), ("outcome", label(outcome))])
            .inc_by(*n);
    }
    reg.register("transfers", "Transfers by type and outcome", transfers);

    reg.register(
        "registrations",
        "Active registrar bindings",
        gauge(snap.registrations),
    );

    let agents = Family::<Labels, UGauge>::default();
    for (state, n) in &snap.agents_by_state {
        agents.get_or_create(&vec![("state", label(state))]).set(*n);
    }
    reg.register("agents", "Agents by state", agents);

    let waiting = Family::<Labels, UGauge>::default();
    let longest = Family::<Labels, FGauge>::default();
    let idle = Family::<Labels, UGauge>::default();
    let logged_in = Family::<Labels, UGauge>::default();
    for q in &snap.queues {
        let l = vec![("queue", label(&q.name))];
        waiting.get_or_create(&l).set(usize_to_u64(q.waiting));
        // Precision loss above 2^53 ms is irrelevant for a wait time.
        longest
            .get_or_create(&l)
            .set(q.longest_wait_ms as f64 / 1000.0);
        idle.get_or_create(&l).set(usize_to_u64(q.agents_idle));
        logged_in
            .get_or_create(&l)
            .set(usize_to_u64(q.agents_logged_in));
    }
    reg.register("queue_waiting", "Calls waiting in the queue", waiting);
    reg.register_with_unit(
        "queue_longest_wait",
        "Wait of the longest-waiting call in the queue",
        Unit::Seconds,
        longest,
    );
    reg.register(
        "queue_agents_idle",
        "Idle agents with the queue's skill",
        idle,
    );
    reg.register(
        "queue_agents_logged_in",
        "Logged-in agents with the queue's skill",
        logged_in,
    );

    reg.register(
        "transactions",
        "Live SIP transactions",
        gauge(snap.transactions),
    );
    reg.register(
        "retransmissions",
        "SIP retransmissions sent",
        counter(snap.retransmissions),
    );
    reg.register(
        "parse_errors",
        "SIP messages that failed to parse",
        counter(snap.parse_errors),
    );

    let rejected = Family::<Labels, Counter>::default();
    for (reason, n) in &snap.rejected_by_reason {
        rejected
            .get_or_create(&vec![("reason", label(reason))])
            .inc_by(*n);
    }
    reg.register(
        "rejected_requests",
        "SIP requests rejected, by reason",
        rejected,
    );

    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        // Writing into a String cannot fail; keep whatever was produced.
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::QueueInfo;

    #[test]
    fn renders_every_metric_with_labels() {
        let mut s = MetricsSnapshot {
            active_calls: 3,
            registrations: 2,
            transactions: 7,
            retransmissions: 11,
            parse_errors: 1,
            ..Default::default()
        };
        s.calls_by_outcome.insert("answered".to_owned(), 5);
        s.transfers
            .insert(("success".to_owned(), "succeeded".to_owned()), 4);
        s.agents_by_state.insert("idle".to_owned(), 2);
        s.rejected_by_reason.insert("acl".to_owned(), 9);
        s.queues.push(QueueInfo {
            name: "sales".to_owned(),
            number: "8000".to_owned(),
            skill: "sales".to_owned(),
            waiting: 1,
            longest_wait_ms: 1500,
            agents_idle: 0,
            agents_logged_in: 2,
        });
        let text = render(&s);
        for line in [
            "# TYPE handover_active_calls gauge",
            "handover_active_calls 3",
            "# TYPE handover_calls counter",
            "handover_calls_total{outcome=\"answered\"} 5",
            "handover_transfers_total{type=\"success\",outcome=\"succeeded\"} 4",
            "handover_registrations 2",
            "handover_agents{state=\"idle\"} 2",
            "handover_queue_waiting{queue=\"sales\"} 1",
            "handover_queue_longest_wait_seconds{queue=\"sales\"} 1.5",
            "handover_queue_agents_logged_in{queue=\"sales\"} 2",
            "handover_transactions 7",
            "handover_retransmissions_total 11",
            "handover_parse_errors_total 1",
            "handover_rejected_requests_total{reason=\"acl\"} 9",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = MetricsSnapshot::default();
        s.rejected_by_reason.insert("a\"b\\c\nd".to_owned(), 1);
        let text = render(&s);
        let want = r#"handover_rejected_requests_total{reason="a\"b\\c\nd"} 1"#;
        assert!(text.lines().any(|l| l == want), "{text}");
    }
}
