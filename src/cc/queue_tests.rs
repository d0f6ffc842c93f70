//! Queue core tests on a fake clock: `t(s)` is `s` seconds after a fixed origin, and the
//! agent directory is driven the way the lead drives it (Offered / OfferEnded / CallStarted).

use super::*;
use crate::cc::agents::AgentEvent;

fn queue(name: &str, skill: &str) -> Queue {
    Queue {
        name: name.to_owned(),
        number: format!("8{}", name.len()),
        skill: skill.to_owned(),
        max_waiting: 3,
        max_wait_s: 60,
        ring_timeout_s: 10,
        overflow: None,
        when_no_agents: WhenNoAgents::Refuse,
        music_uri: None,
        max_missed_offers: 0,
        default_transfer: None,
    }
}

struct Fx {
    t0: Instant,
    agents: AgentDirectory,
    set: QueueSet,
}

impl Fx {
    /// Agents as (id, skills); all logged out, idle_since = t0.
    fn new(queues: &[Queue], agents: &[(&str, &[&str])]) -> Fx {
        let t0 = Instant::now();
        let agents = AgentDirectory::new(
            agents
                .iter()
                .map(|(id, skills)| (*id, skills.iter().map(|s| (*s).to_owned()).collect(), false)),
            t0,
        );
        Fx {
            t0,
            agents,
            set: QueueSet::new(queues),
        }
    }

    fn t(&self, s: u64) -> Instant {
        self.t0 + Duration::from_secs(s)
    }

    fn apply(&mut self, agent: &str, ev: AgentEvent, s: u64) {
        let now = self.t(s);
        self.agents.apply(agent, ev, now);
    }

    fn login(&mut self, agent: &str, s: u64) {
        self.apply(agent, AgentEvent::LoggedIn, s);
    }

    fn join(&mut self, q: &str, call: CallRef, s: u64) -> Result<Admitted, Refused> {
        let now = self.t(s);
        self.set.join(q, call, &self.agents, now)
    }

    fn available(&mut self, s: u64) {
        let now = self.t(s);
        self.set.agent_available(&self.agents, now);
    }

    fn fail(&mut self, call: CallRef, agent: &str, s: u64) -> bool {
        let now = self.t(s);
        self.set
            .offer_failed(call, agent, OfferFailure::NoAnswer, &self.agents, now)
    }

    /// Drains the actions, applying each `Offer` to the directory as the lead does.
    fn drain(&mut self, s: u64) -> Vec<QueueAction> {
        let mut out = Vec::new();
        while let Some(a) = self.set.poll_action() {
            if let QueueAction::Offer { agent, .. } = &a {
                let agent = agent.clone();
                self.apply(&agent, AgentEvent::Offered, s);
            }
            out.push(a);
        }
        out
    }

    /// The (call, agent) pairs offered in the drained actions.
    fn offers(&mut self, s: u64) -> Vec<(CallRef, String)> {
        self.drain(s)
            .into_iter()
            .filter_map(|a| match a {
                QueueAction::Offer { call, agent, .. } => Some((call, agent)),
                _ => None,
            })
            .collect()
    }

    /// The agent answers: the call leaves the queue, the agent talks.
    fn answer(&mut self, call: CallRef, agent: &str, s: u64) {
        let now = self.t(s);
        assert!(self.set.offer_answered(call, agent, now));
        self.apply(agent, AgentEvent::CallStarted, s);
        self.apply(agent, AgentEvent::OfferEnded, s);
    }

    /// The agent's call ends and it becomes idle: the lead triggers distribution.
    fn hang_up(&mut self, agent: &str, s: u64) {
        self.apply(agent, AgentEvent::CallEnded, s);
        self.available(s);
    }
}

fn offer(call: CallRef, agent: &str) -> (CallRef, String) {
    (call, agent.to_owned())
}

#[test]
fn admission_refuses_unknown_full_and_duplicate() {
    let mut fx = Fx::new(&[queue("sales", "sales")], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.apply("a", AgentEvent::SetNotReady(true), 0); // logged in but not taking calls
    assert_eq!(
        fx.join("nope", 1, 0),
        Err(Refused::Unknown("nope".to_owned()))
    );
    for (call, pos) in [(1, 1), (2, 2), (3, 3)] {
        assert_eq!(
            fx.join("sales", call, pos),
            Ok(Admitted {
                position: pos as usize
            })
        );
    }
    assert_eq!(
        fx.join("sales", 4, 4),
        Err(Refused::Full("sales".to_owned()))
    );
    assert_eq!(
        fx.join("sales", 2, 4),
        Err(Refused::AlreadyQueued("sales".to_owned()))
    );
    assert!(
        fx.drain(4).is_empty(),
        "a not_ready agent is not offered calls"
    );
    // A call that left frees its place.
    assert!(fx.set.leave(2, fx.t(5)));
    assert_eq!(fx.join("sales", 4, 5), Ok(Admitted { position: 3 }));
}

#[test]
fn no_agents_refuses_or_waits_as_configured() {
    let mut wait = queue("wait", "sales");
    wait.when_no_agents = WhenNoAgents::Wait;
    let mut fx = Fx::new(
        &[queue("refuse", "sales"), wait],
        &[("a", &["sales"]), ("s", &["support"])],
    );
    fx.login("s", 0); // logged in, wrong skill
    assert_eq!(
        fx.join("refuse", 1, 1),
        Err(Refused::NoAgents("refuse".to_owned()))
    );
    assert_eq!(fx.join("wait", 2, 1), Ok(Admitted { position: 1 }));
    assert!(fx.drain(1).is_empty());
    // The agent logs in: the waiting call is offered at once.
    fx.login("a", 5);
    fx.available(5);
    assert_eq!(fx.offers(5), vec![offer(2, "a")]);
    // An agent that is logged in but busy still admits calls to a refusing queue.
    assert_eq!(fx.join("refuse", 3, 6), Ok(Admitted { position: 1 }));
    assert!(fx.drain(6).is_empty(), "a is ringing");
}

#[test]
fn calls_are_served_in_fifo_order() {
    let mut fx = Fx::new(&[queue("sales", "sales")], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.apply("a", AgentEvent::CallStarted, 0); // busy with another call
    for (s, call) in [(1, 7), (2, 5), (3, 9)] {
        fx.join("sales", call, s).unwrap();
    }
    assert_eq!(fx.set.position(7), Some(("sales".to_owned(), 1)));
    assert_eq!(fx.set.position(5), Some(("sales".to_owned(), 2)));
    assert_eq!(fx.set.position(9), Some(("sales".to_owned(), 3)));
    fx.hang_up("a", 20);
    let mut served = Vec::new();
    for s in [21, 31, 41] {
        let offers = fx.offers(s);
        assert_eq!(offers.len(), 1);
        let (call, agent) = offers[0].clone();
        served.push(call);
        fx.answer(call, &agent, s);
        fx.hang_up(&agent, s + 5);
    }
    assert_eq!(served, vec![7, 5, 9]);
}

#[test]
fn longest_idle_agent_is_chosen_over_a_run_of_calls() {
    let mut fx = Fx::new(
        &[queue("sales", "sales")],
        &[("a", &["sales"]), ("b", &["sales"]), ("c", &["sales"])],
    );
    fx.login("b", 1);
    fx.login("c", 2);
    fx.login("a", 3);
    fx.join("sales", 1, 4).unwrap();
    assert_eq!(fx.offers(4), vec![offer(1, "b")]);
    fx.join("sales", 2, 5).unwrap();
    assert_eq!(fx.offers(5), vec![offer(2, "c")]);
    fx.answer(1, "b", 6);
    fx.answer(2, "c", 6);
    // c finishes first, then b: a (idle since 3) is still the longest idle.
    fx.hang_up("c", 10);
    fx.hang_up("b", 12);
    assert!(fx.drain(12).is_empty(), "nothing waits");
    fx.join("sales", 3, 13).unwrap();
    assert_eq!(fx.offers(13), vec![offer(3, "a")]);
    fx.join("sales", 4, 14).unwrap();
    assert_eq!(fx.offers(14), vec![offer(4, "c")]);
    fx.join("sales", 5, 15).unwrap();
    assert_eq!(fx.offers(15), vec![offer(5, "b")]);
}

#[test]
fn only_agents_with_the_skill_are_offered() {
    let mut fx = Fx::new(
        &[queue("sales", "sales"), queue("support", "support")],
        &[("s", &["support"]), ("a", &["sales"])],
    );
    fx.login("s", 0); // longest idle, but wrong skill
    fx.login("a", 5);
    fx.join("sales", 1, 6).unwrap();
    assert_eq!(fx.offers(6), vec![offer(1, "a")]);
    fx.join("sales", 2, 7).unwrap();
    assert!(fx.drain(7).is_empty(), "s has no sales skill");
    fx.join("support", 3, 8).unwrap();
    assert_eq!(fx.offers(8), vec![offer(3, "s")]);
}

#[test]
fn offer_timeout_then_next_agent_and_the_call_keeps_the_head() {
    let mut fx = Fx::new(
        &[queue("sales", "sales")],
        &[("a", &["sales"]), ("b", &["sales"])],
    );
    fx.login("a", 0);
    fx.login("b", 1);
    fx.join("sales", 1, 2).unwrap();
    fx.join("sales", 2, 3).unwrap();
    fx.join("sales", 3, 4).unwrap();
    assert_eq!(fx.offers(4), vec![offer(1, "a"), offer(2, "b")]);
    assert_eq!(fx.set.next_deadline(), Some(fx.t(12)), "a rings for 10 s");

    fx.set.handle_timeout(fx.t(11));
    assert!(fx.drain(11).is_empty());
    fx.set.handle_timeout(fx.t(12));
    assert_eq!(
        fx.drain(12),
        vec![QueueAction::OfferTimeout {
            call: 1,
            agent: "a".to_owned()
        }]
    );
    assert_eq!(
        fx.set.next_deadline(),
        Some(fx.t(13)),
        "b's ring timer next"
    );
    fx.set.handle_timeout(fx.t(12));
    assert!(fx.drain(12).is_empty(), "a timeout fires once");

    // The lead CANCELs a's leg and reports the failure before a shows idle again.
    assert!(fx.fail(1, "a", 12));
    assert!(fx.drain(12).is_empty(), "a still shows ringing, b is busy");
    assert_eq!(fx.set.position(1), Some(("sales".to_owned(), 1)));
    assert_eq!(fx.set.position(3), Some(("sales".to_owned(), 3)));
    // b misses too; call 1 stays ahead of call 2, which is ahead of call 3.
    fx.set.handle_timeout(fx.t(13));
    fx.drain(13);
    assert!(fx.fail(2, "b", 13));
    fx.apply("a", AgentEvent::OfferEnded, 14);
    fx.available(14);
    assert_eq!(fx.offers(14), vec![offer(1, "a")]);
    fx.apply("b", AgentEvent::OfferEnded, 15);
    fx.available(15);
    assert_eq!(fx.offers(15), vec![offer(2, "b")]);
}

#[test]
fn a_failed_offer_goes_to_another_idle_agent_first() {
    let mut fx = Fx::new(
        &[queue("sales", "sales")],
        &[("a", &["sales"]), ("b", &["sales"])],
    );
    fx.login("a", 0);
    fx.join("sales", 1, 1).unwrap();
    // The lead never got to apply `Offered`: the directory still shows a idle since 0.
    assert_eq!(
        fx.set.poll_action().and_then(|a| a.call()),
        Some(1),
        "offered to a"
    );
    fx.login("b", 2);
    fx.available(3);
    assert!(
        fx.drain(3).is_empty(),
        "a is reserved until the outcome; b has nothing to take"
    );
    // a (idle since 0) ranks as idle since its miss at 11, after b (idle since 2).
    assert!(fx.fail(1, "a", 11));
    assert_eq!(fx.offers(11), vec![offer(1, "b")]);
}

#[test]
fn max_missed_offers_puts_the_agent_not_ready_once() {
    let mut q = queue("sales", "sales");
    q.max_missed_offers = 2;
    let mut fx = Fx::new(&[q], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.join("sales", 1, 1).unwrap();
    assert_eq!(fx.offers(1), vec![offer(1, "a")]);
    // First miss: the only agent is rung again.
    fx.apply("a", AgentEvent::OfferEnded, 11);
    assert!(fx.fail(1, "a", 11));
    assert_eq!(fx.drain(11).len(), 1);
    // Second miss in a row: not_ready, and no new offer to a in the same pass.
    fx.apply("a", AgentEvent::OfferEnded, 21);
    assert!(fx.fail(1, "a", 21));
    assert_eq!(
        fx.drain(21),
        vec![QueueAction::AgentNotReady {
            agent: "a".to_owned()
        }]
    );
    fx.apply("a", AgentEvent::SetNotReady(true), 21);
    fx.available(22);
    assert!(fx.drain(22).is_empty());
    // Back to ready: one more miss does not repeat AgentNotReady (the count restarted).
    fx.apply("a", AgentEvent::SetNotReady(false), 30);
    fx.available(30);
    assert_eq!(fx.offers(30), vec![offer(1, "a")]);
    fx.apply("a", AgentEvent::OfferEnded, 40);
    assert!(fx.fail(1, "a", 40));
    assert_eq!(fx.offers(40), vec![offer(1, "a")]);
    // An answer resets the count: the next single miss is not a run of two.
    fx.answer(1, "a", 41);
    fx.hang_up("a", 45);
    fx.join("sales", 2, 46).unwrap();
    assert_eq!(fx.offers(46), vec![offer(2, "a")]);
    fx.apply("a", AgentEvent::OfferEnded, 47);
    assert!(fx.fail(2, "a", 47));
    assert_eq!(fx.offers(47), vec![offer(2, "a")], "no AgentNotReady");
}

#[test]
fn busy_and_error_count_as_misses() {
    let mut q = queue("sales", "sales");
    q.max_missed_offers = 1;
    let mut fx = Fx::new(&[q], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.join("sales", 1, 1).unwrap();
    fx.drain(1);
    let now = fx.t(2);
    assert!(fx
        .set
        .offer_failed(1, "a", OfferFailure::Busy, &fx.agents, now));
    assert_eq!(
        fx.drain(2),
        vec![QueueAction::AgentNotReady {
            agent: "a".to_owned()
        }]
    );
}

#[test]
fn max_wait_overflows_to_the_target_or_expires() {
    let mut with = queue("with", "sales");
    with.when_no_agents = WhenNoAgents::Wait;
    with.overflow = Some(Target::Ivr("survey".to_owned()));
    let mut without = queue("without", "sales");
    without.when_no_agents = WhenNoAgents::Wait;
    without.max_wait_s = 30;
    let mut fx = Fx::new(&[with, without], &[("a", &["sales"])]);
    fx.join("with", 1, 0).unwrap();
    fx.join("without", 2, 10).unwrap();
    assert_eq!(fx.set.next_deadline(), Some(fx.t(40)));
    fx.set.handle_timeout(fx.t(39));
    assert!(fx.drain(39).is_empty());
    fx.set.handle_timeout(fx.t(40));
    assert_eq!(fx.drain(40), vec![QueueAction::Expired { call: 2 }]);
    assert_eq!(fx.set.next_deadline(), Some(fx.t(60)));
    fx.set.handle_timeout(fx.t(61));
    assert_eq!(
        fx.drain(61),
        vec![QueueAction::Overflow {
            call: 1,
            target: Target::Ivr("survey".to_owned())
        }]
    );
    assert_eq!(fx.set.next_deadline(), None);
    assert_eq!(fx.set.position(1), None);
    assert!(fx.set.status(fx.t(61)).iter().all(|s| s.waiting == 0));
    // A call that timed out may join another queue (an overflow to a queue).
    assert!(fx.join("without", 1, 61).is_ok());
}

#[test]
fn max_wait_is_not_enforced_while_ringing_but_applies_on_failure() {
    let mut q = queue("sales", "sales");
    q.max_wait_s = 15;
    q.overflow = Some(Target::Queue("other".to_owned()));
    let mut fx = Fx::new(&[q], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.join("sales", 1, 10).unwrap();
    assert_eq!(fx.offers(10), vec![offer(1, "a")]);
    assert_eq!(
        fx.set.next_deadline(),
        Some(fx.t(20)),
        "only the ring timer"
    );
    fx.set.handle_timeout(fx.t(20));
    assert_eq!(fx.drain(20).len(), 1); // OfferTimeout
    assert_eq!(fx.set.next_deadline(), None);
    fx.apply("a", AgentEvent::OfferEnded, 20);
    assert!(fx.fail(1, "a", 26));
    assert_eq!(
        fx.drain(26),
        vec![QueueAction::Overflow {
            call: 1,
            target: Target::Queue("other".to_owned())
        }],
        "not offered again: its wait ran out"
    );
}

#[test]
fn leave_removes_a_waiting_call_at_once() {
    let mut q = queue("sales", "sales");
    q.when_no_agents = WhenNoAgents::Wait;
    let mut fx = Fx::new(&[q], &[("a", &["sales"])]);
    fx.join("sales", 1, 0).unwrap();
    fx.join("sales", 2, 1).unwrap();
    assert!(fx.set.leave(1, fx.t(2)));
    assert!(!fx.set.leave(1, fx.t(2)), "already gone");
    assert_eq!(fx.set.position(2), Some(("sales".to_owned(), 1)));
    assert_eq!(
        fx.set.next_deadline(),
        Some(fx.t(61)),
        "call 1's timer is gone"
    );
    fx.login("a", 3);
    fx.available(3);
    assert_eq!(fx.offers(3), vec![offer(2, "a")]);
    fx.set.handle_timeout(fx.t(100));
    assert!(
        fx.drain(100).iter().all(|a| a.call() != Some(1)),
        "nothing more about call 1"
    );
}

#[test]
fn leave_while_offered_frees_the_agent_and_drops_the_pending_offer() {
    let mut fx = Fx::new(&[queue("sales", "sales")], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.join("sales", 1, 1).unwrap();
    // The customer hangs up before the lead drained the Offer: it is never delivered.
    assert!(fx.set.leave(1, fx.t(1)));
    assert!(fx.drain(1).is_empty());
    assert_eq!(fx.set.next_deadline(), None, "no ring timer");
    // Offered and then left: the agent is free for the next call once it is idle again.
    fx.join("sales", 2, 2).unwrap();
    assert_eq!(fx.offers(2), vec![offer(2, "a")]);
    fx.join("sales", 3, 3).unwrap();
    assert!(fx.set.leave(2, fx.t(4)));
    assert!(
        !fx.set.offer_answered(2, "a", fx.t(4)),
        "a late answer is stale"
    );
    fx.apply("a", AgentEvent::OfferEnded, 4);
    fx.available(4);
    assert_eq!(fx.offers(4), vec![offer(3, "a")]);
}

#[test]
fn never_two_offers_to_one_agent_nor_one_call_offered_twice() {
    let mut fx = Fx::new(
        &[queue("sales", "sales"), queue("also", "sales")],
        &[("a", &["sales"]), ("b", &["sales"])],
    );
    fx.login("a", 0);
    // The lead has not applied `Offered` to the directory yet: a still shows idle.
    fx.join("sales", 1, 1).unwrap();
    fx.join("also", 2, 2).unwrap();
    fx.available(3);
    fx.available(3);
    let offers: Vec<_> = std::iter::from_fn(|| fx.set.poll_action()).collect();
    assert_eq!(offers.len(), 1, "{offers:?}");
    // A second agent takes the other call; the first call is not offered again.
    fx.login("b", 4);
    fx.available(4);
    fx.available(4);
    assert_eq!(fx.offers(4), vec![offer(2, "b")]);
    assert_eq!(fx.set.offered_to(1), Some("a"));
    assert!(!fx.set.offer_answered(1, "b", fx.t(5)), "wrong agent");
    assert!(!fx.fail(1, "b", 5), "wrong agent");
    assert_eq!(fx.set.offered_to(1), Some("a"));
}

#[test]
fn agent_available_with_nothing_waiting_does_nothing() {
    let mut fx = Fx::new(&[queue("sales", "sales")], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.available(1);
    assert!(fx.drain(1).is_empty());
    assert_eq!(fx.set.next_deadline(), None);
    let st = fx.set.status(fx.t(1));
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].waiting, 0);
}

#[test]
fn shared_agents_serve_the_longest_waiting_call_across_queues() {
    let mut fx = Fx::new(
        &[
            queue("sales", "sales"),
            queue("support", "support"),
            queue("billing", "billing"),
        ],
        &[("a", &["sales", "support", "billing"])],
    );
    fx.login("a", 0);
    fx.apply("a", AgentEvent::CallStarted, 0);
    fx.join("sales", 10, 3).unwrap();
    fx.join("support", 20, 1).unwrap();
    fx.join("billing", 30, 2).unwrap();
    fx.join("support", 21, 4).unwrap();
    let mut served = Vec::new();
    fx.hang_up("a", 5);
    for s in [6, 20, 30, 40] {
        let offers = fx.offers(s);
        assert_eq!(offers.len(), 1);
        served.push(offers[0].0);
        fx.answer(offers[0].0, "a", s);
        fx.hang_up("a", s + 1);
    }
    assert_eq!(served, vec![20, 30, 10, 21]);
}

#[test]
fn status_counts_calls_offers_and_the_longest_wait() {
    let mut sales = queue("sales", "sales");
    sales.max_waiting = 5;
    let mut fx = Fx::new(
        &[sales, queue("support", "support")],
        &[("a", &["sales"]), ("s", &["support"])],
    );
    fx.login("a", 0);
    fx.login("s", 0);
    fx.join("sales", 1, 10).unwrap();
    fx.join("sales", 2, 12).unwrap();
    fx.join("sales", 3, 15).unwrap();
    fx.drain(15);
    let st = fx.set.status(fx.t(20));
    assert_eq!(
        st,
        vec![
            QueueStatus {
                name: "sales".to_owned(),
                waiting: 3,
                longest_wait: Duration::from_secs(10),
                offers_pending: 1,
            },
            QueueStatus {
                name: "support".to_owned(),
                waiting: 0,
                longest_wait: Duration::ZERO,
                offers_pending: 0,
            },
        ]
    );
    fx.answer(1, "a", 20);
    let st = fx.set.status(fx.t(20));
    assert_eq!((st[0].waiting, st[0].offers_pending), (2, 0));
    assert_eq!(st[0].longest_wait, Duration::from_secs(8));
    assert_eq!(fx.set.position(3), Some(("sales".to_owned(), 2)));
}

#[test]
fn an_answer_after_the_offer_timed_out_still_counts() {
    let mut fx = Fx::new(&[queue("sales", "sales")], &[("a", &["sales"])]);
    fx.login("a", 0);
    fx.join("sales", 1, 0).unwrap();
    fx.drain(0);
    fx.set.handle_timeout(fx.t(10));
    assert_eq!(fx.drain(10).len(), 1);
    // The 200 OK crossed the CANCEL.
    fx.answer(1, "a", 10);
    assert_eq!(fx.set.position(1), None);
    assert_eq!(fx.set.status(fx.t(10))[0].waiting, 0);
}
